//go:build race

package main

// raceBuild: the tests run under the race detector, so the daemon they
// start is built with it too.
const raceBuild = true

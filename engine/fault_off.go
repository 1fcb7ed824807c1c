//go:build !medicfault

package engine

// workerFault is a test hook that only builds with -tags medicfault; in
// every other build it does nothing and compiles away.
func workerFault() {}

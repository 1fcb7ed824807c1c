//go:build !medicfault

package engine

// workerFault and decisionFault are test hooks that only build with -tags
// medicfault; in every other build they do nothing and compile away.
func workerFault()   {}
func decisionFault() {}

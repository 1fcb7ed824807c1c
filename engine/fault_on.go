//go:build medicfault

package engine

import (
	"os"
	"time"
)

// workerFault wedges the worker while the file named by
// MEDIC_FAULT_WEDGE_FILE exists, so that the systemd watchdog test can
// prove a wedged worker stops the watchdog pings. It exists only in builds
// with -tags medicfault.
func workerFault() { wedgeWhile("MEDIC_FAULT_WEDGE_FILE") }

// decisionFault holds the decision loop while the file named by
// MEDIC_FAULT_HOLD_DECISIONS_FILE exists, so that a test can fill the
// decision queue before anything is decided.
func decisionFault() { wedgeWhile("MEDIC_FAULT_HOLD_DECISIONS_FILE") }

func wedgeWhile(env string) {
	p := os.Getenv(env)
	if p == "" {
		return
	}
	for {
		if _, err := os.Stat(p); err != nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

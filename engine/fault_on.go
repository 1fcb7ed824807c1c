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
func workerFault() {
	p := os.Getenv("MEDIC_FAULT_WEDGE_FILE")
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

package engine

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"golang.org/x/sys/unix"

	"medic/state"
)

// systemd: the daemon tells the service manager when it is ready, reloading
// and stopping, and feeds its watchdog only while it makes progress.

const (
	sdReady     = daemon.SdNotifyReady
	sdReloading = daemon.SdNotifyReloading
	sdStopping  = daemon.SdNotifyStopping
)

// sdNotify sends sd_notify lines when NOTIFY_SOCKET is set; elsewhere it
// does nothing.
func sdNotify(logger *slog.Logger, lines ...string) {
	if _, err := daemon.SdNotify(false, strings.Join(lines, "\n")); err != nil {
		logger.Warn("sd_notify failed", "err", err)
	}
}

func statusLine(store *state.Store) string {
	return fmt.Sprintf("STATUS=%d open incidents, inbox depth %d", store.OpenIncidents(), store.InboxDepth())
}

// monotonicUsec is the MONOTONIC_USEC= line systemd wants with RELOADING=1.
func monotonicUsec() string {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return ""
	}
	return fmt.Sprintf("MONOTONIC_USEC=%d", ts.Nano()/1000)
}

// statusEvery is how often STATUS= is refreshed without a watchdog.
const statusEvery = 10 * time.Second

// runWatchdog sends WATCHDOG=1 at half of WatchdogSec, but only while the
// HTTP server is serving and the worker loop went round within a watchdog
// period: a wedged worker stops the pings, and systemd restarts medic. It
// refreshes STATUS= on the way.
func runWatchdog(logger *slog.Logger, eng *Engine, serving func() bool, stop <-chan struct{}) {
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		logger.Warn("reading the systemd watchdog settings failed", "err", err)
	}
	tick := statusEvery
	maxAge := time.Duration(0)
	if interval > 0 {
		tick = interval / 2
		maxAge = max(interval, 3*time.Second)
		logger.Info("systemd watchdog enabled", "interval", interval)
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	wedged := false
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		if interval == 0 {
			sdNotify(logger, statusLine(eng.store))
			continue
		}
		alive := serving() && eng.WorkerAlive(maxAge)
		if !alive {
			if !wedged {
				logger.Error("withholding the systemd watchdog ping: the HTTP server or the worker is not making progress")
			}
			wedged = true
			continue
		}
		wedged = false
		sdNotify(logger, daemon.SdNotifyWatchdog, statusLine(eng.store))
	}
}

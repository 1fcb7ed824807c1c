package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/exporter-toolkit/web"
	"golang.org/x/net/netutil"
	"golang.org/x/sys/unix"

	"medic/actions"
	"medic/rules"
	"medic/state"
)

// The daemon: medic serve's parts run together here, as Alertmanager's
// app package runs its own. RunDaemon starts the HTTP listener, the worker,
// the remediator and the audit checkpoints, tells systemd how it goes,
// swaps the config-scoped objects (the config, and the decider with its
// runbooks, policy and LLM) in one step on a reload, and stops them in the
// order that loses nothing.

// ErrConfig marks a configuration, runbook or policy the daemon refused
// at start.
var ErrConfig = errors.New("invalid configuration")

// DaemonOptions configure RunDaemon.
type DaemonOptions struct {
	Logger   *slog.Logger
	Store    *state.Store
	AuditKey []byte
	// Load reads the configuration, at start and for each reload.
	Load func() (*Config, error)
	// DryRun forces shadow mode (serve's --dry-run).
	DryRun bool
	// MaxConnections bounds the listener's open connections.
	MaxConnections int
	// DrainTimeout bounds the HTTP shutdown and the worker's final drain.
	DrainTimeout time.Duration
}

// RunDaemon serves until ctx ends or a part fails. Each signal on reload
// (SIGHUP) asks for a reload; POST /-/reload asks too. The state stays open
// for the caller to close.
func RunDaemon(ctx context.Context, o DaemonOptions, reload <-chan os.Signal) error {
	logger, store := o.Logger, o.Store
	cfg, err := o.Load()
	if err != nil {
		logger.Error("invalid configuration", "err", err)
		return fmt.Errorf("%w: %v", ErrConfig, err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(versioncollector.NewCollector("medic"), collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reloadCh := make(chan chan error)
	eng := New(Options{Logger: logger, Registerer: reg, Gatherer: reg, Store: store, Reload: reloadCh, AuditKey: o.AuditKey})
	if err := eng.ApplyConfig(cfg); err != nil {
		logger.Error("invalid configuration", "err", err)
		return fmt.Errorf("%w: %v", ErrConfig, err)
	}
	eng.ReloadResult(nil)
	decider, err := BuildDecider(cfg, logger)
	if err != nil {
		logger.Error("invalid runbooks or policy", "err", err)
		return fmt.Errorf("%w: %v", ErrConfig, err)
	}
	eng.InstrumentLLM(decider)
	var current atomic.Pointer[Decider]
	current.Store(decider)
	rem := &Remediator{Logger: logger, Store: store, Decider: current.Load, DryRun: o.DryRun,
		Executors: Executors{Exec: &actions.Exec{}, HTTP: &actions.HTTPExec{}, Notifier: &actions.Notifier{}}}
	eng.SetRemediator(rem)
	if err := rem.Recover(); err != nil {
		logger.Error("recovering the action journal failed", "err", err)
		return err
	}

	srv, addr, srvErr, serving, err := listen(cfg, eng, o, logger)
	if err != nil {
		return err
	}

	workCtx, stopWork := context.WithCancel(context.Background())
	workDone := make(chan error, 1)
	go func() { workDone <- eng.Run(workCtx, RunOptions{DrainTimeout: o.DrainTimeout}) }()
	remCtx, stopRemediation := context.WithCancel(context.Background())
	remDone := make(chan struct{})
	go func() {
		defer close(remDone)
		rem.Run(remCtx, cfg.Remediation.Parallel)
	}()

	eng.SetReady(true)
	logger.Info("medic is ready", "address", addr, "storage", cfg.Storage.Path,
		"inbox_depth", store.InboxDepth(), "open_incidents", store.OpenIncidents())
	// systemd: READY=1 only now, with the state open, the config loaded and
	// the listener bound.
	sdNotify(logger, sdReady, statusLine(store))
	stop := make(chan struct{})
	watchdogDone := make(chan struct{})
	go func() {
		defer close(watchdogDone)
		runWatchdog(logger, eng, serving.Load, stop)
	}()
	checkpointsDone := make(chan struct{})
	go func() {
		defer close(checkpointsDone)
		checkpoints(eng, logger, stop)
	}()

	apply := func() error {
		sdNotify(logger, sdReloading, monotonicUsec())
		defer sdNotify(logger, sdReady, statusLine(store))
		d, err := reloadConfig(eng, o.Load, logger)
		if err == nil {
			current.Store(d)
		}
		eng.ReloadResult(err)
		if err != nil {
			logger.Error("reload failed; keeping the previous configuration", "err", err)
			return err
		}
		logger.Info("configuration reloaded")
		return nil
	}

	var failed error
loop:
	for {
		select {
		case <-reload:
			_ = apply()
		case rc := <-reloadCh:
			rc <- apply()
		case <-ctx.Done():
			logger.Info("stopping: draining")
			break loop
		case err := <-srvErr:
			if !errors.Is(err, http.ErrServerClosed) {
				logger.Error("HTTP server failed", "err", err)
				failed = err
			}
			break loop
		case err := <-workDone:
			logger.Error("worker stopped unexpectedly", "err", err)
			workDone <- err
			failed = fmt.Errorf("worker stopped: %v", err)
			break loop
		}
	}

	// Stop intake first: requests in flight finish and get their answer,
	// new ones are refused. Then let the worker drain, then stop the
	// remediations, then write the last checkpoint.
	sdNotify(logger, sdStopping, "STATUS=draining")
	close(stop)
	<-watchdogDone
	<-checkpointsDone
	eng.SetReady(false)
	sctx, cancel := context.WithTimeout(context.Background(), o.DrainTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		logger.Warn("HTTP shutdown timed out; closing connections", "err", err)
		srv.Close()
	}
	stopWork()
	defer func() {
		// Remediations in flight finish their call; none starts after this.
		stopRemediation()
		<-remDone
		// The last checkpoint covers everything this run wrote.
		if err := eng.Checkpoint(); err != nil {
			logger.Error("writing an audit checkpoint failed", "err", err)
		}
	}()
	select {
	case err := <-workDone:
		if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
			logger.Error("worker failed", "err", err)
		}
	case <-time.After(o.DrainTimeout + 5*time.Second):
		logger.Error("worker did not stop in time")
		return errors.New("worker did not stop in time")
	}
	logger.Info("medic stopped", "inbox_depth", store.InboxDepth())
	return failed
}

// listen binds the listener and serves the engine's handler on it, under
// the web config file's TLS and auth; serving turns false when the server
// stops.
func listen(cfg *Config, eng *Engine, o DaemonOptions, logger *slog.Logger) (*http.Server, string, <-chan error, *atomic.Bool, error) {
	ln, err := net.Listen("tcp", cfg.Web.ListenAddress)
	if err != nil {
		logger.Error("cannot listen", "address", cfg.Web.ListenAddress, "err", err)
		return nil, "", nil, nil, err
	}
	ln = netutil.LimitListener(ln, connectionLimit(o.MaxConnections, logger))
	srv := &http.Server{
		Handler:           eng.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	noSocket := false
	webCfg := cfg.Web.ConfigFile
	srvErr := make(chan error, 1)
	serving := new(atomic.Bool)
	serving.Store(true)
	go func() {
		defer serving.Store(false)
		srvErr <- web.Serve(ln, srv, &web.FlagConfig{
			WebListenAddresses: &[]string{cfg.Web.ListenAddress},
			WebSystemdSocket:   &noSocket,
			WebConfigFile:      &webCfg,
		}, logger)
	}()
	return srv, ln.Addr().String(), srvErr, serving, nil
}

// checkpoints writes an audit checkpoint every CheckpointInterval until
// stop closes.
func checkpoints(eng *Engine, logger *slog.Logger, stop <-chan struct{}) {
	t := time.NewTicker(CheckpointInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			if err := eng.Checkpoint(); err != nil {
				logger.Error("writing an audit checkpoint failed", "err", err)
			}
		}
	}
}

// BuildDecider is NewDecider with its diagnostics as an error, for the log.
func BuildDecider(cfg *Config, logger *slog.Logger) (*Decider, error) {
	d, diags := NewDecider(cfg, logger)
	if diags.HasErrors() {
		var b strings.Builder
		rules.WriteDiagnostics(&b, diags)
		return nil, fmt.Errorf("runbooks or policy:\n%s", b.String())
	}
	return d, nil
}

// reloadConfig is all or nothing: a config with any error leaves the running
// one in place. Every other setting applies at once. Settings bound at start
// (listener, state file, web config file, audit files, the number of
// parallel decisions) need a restart: a change to one of them refuses the
// whole reload, naming it.
func reloadConfig(eng *Engine, load func() (*Config, error), logger *slog.Logger) (*Decider, error) {
	cfg, err := load()
	if err != nil {
		return nil, err
	}
	cur := eng.Config()
	var restart []string
	if cfg.Web.ListenAddress != cur.Web.ListenAddress {
		restart = append(restart, "web.listen_address")
	}
	if cfg.Web.ConfigFile != cur.Web.ConfigFile {
		restart = append(restart, "web.config_file")
	}
	if cfg.Storage.Path != cur.Storage.Path {
		restart = append(restart, "storage.path")
	}
	if cfg.Remediation.Parallel != cur.Remediation.Parallel {
		restart = append(restart, "remediation.parallel")
	}
	k, c := cfg.Storage.AuditFiles()
	if k2, c2 := cur.Storage.AuditFiles(); k != k2 || c != c2 {
		restart = append(restart, "storage.audit_key_file or storage.audit_checkpoint_file")
	}
	if len(restart) > 0 {
		return nil, fmt.Errorf("%s changed; these need a restart, and nothing was reloaded", strings.Join(restart, ", "))
	}
	// The runbooks and the policy load with the config, or nothing changes;
	// ApplyConfig checks the listener's exposure and the tokens.
	d, err := BuildDecider(cfg, logger)
	if err != nil {
		return nil, err
	}
	eng.InstrumentLLM(d)
	return d, eng.ApplyConfig(cfg)
}

// fdReserve is how many file descriptors serve keeps free of connections:
// the state file, tools' pipes and sockets, queries and notifications.
const fdReserve = 256

// connectionLimit is --web.max-connections, lowered when the process's
// file descriptor limit would leave fewer than fdReserve for the rest: idle
// connections must never make a remediation fail with "too many open
// files".
func connectionLimit(want int, logger *slog.Logger) int {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return want
	}
	room := int(min(rl.Cur, 1<<30)) - fdReserve
	if want > room {
		limit := max(room, 1)
		logger.Warn("--web.max-connections lowered to keep file descriptors for tools; raise LimitNOFILE to allow more",
			"requested", want, "max_connections", limit, "nofile", rl.Cur, "reserve", fdReserve)
		return limit
	}
	return want
}

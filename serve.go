package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"syscall"

	"github.com/prometheus/common/version"

	"medic/engine"
	"medic/rules"
	"medic/state"
)

// loadConfig reads the file and lays the flags over it, so that flags
// override the file as the issue and Alertmanager's users expect.
func loadConfig(sf serveFlags, stderr io.Writer) (*engine.Config, error) {
	cfg, diags := engine.LoadConfig(sf.configFile)
	rules.WriteDiagnostics(stderr, diags)
	if diags.HasErrors() {
		return nil, fmt.Errorf("config file %s has %d error(s)", sf.configFile, len(diags.Errs()))
	}
	if sf.listenAddress != "" {
		cfg.Web.ListenAddress = sf.listenAddress
	}
	if sf.webConfigFile != "" {
		cfg.Web.ConfigFile = sf.webConfigFile
	}
	if sf.storagePath != "" {
		cfg.Storage.Path = sf.storagePath
	}
	if sf.insecure {
		cfg.Web.Insecure = true
	}
	return cfg, nil
}

// extraProcs is added to GOMAXPROCS by serve. Every inbox commit parks its
// goroutine, and with it a P, in fdatasync until sysmon takes the P back; on
// two cores that idled half the machine. Measured with BenchmarkIntake on 2
// cores: 5,900 notifications/s at GOMAXPROCS=2, 8,300 at 4 (README).
const extraProcs = 2

func runServe(sf serveFlags, logger *slog.Logger, stderr io.Writer) int {
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(runtime.NumCPU() + extraProcs)
	}
	logger.Info("starting medic", "version", version.Info(), "build_context", version.BuildContext(), "gomaxprocs", runtime.GOMAXPROCS(0))
	if sf.maxConns < 1 {
		fmt.Fprintf(stderr, "medic: error: --web.max-connections must be at least 1, got %d\n", sf.maxConns)
		return exitError
	}
	cfg, err := loadConfig(sf, stderr)
	if err != nil {
		logger.Error("invalid configuration", "err", err)
		return exitFailed
	}
	exposure, err := engine.CheckExposure(cfg.Web)
	if err != nil {
		logger.Error("insecure listener refused", "err", err)
		return exitFailed
	}
	if len(exposure.Auth) == 0 {
		logger.Warn("no authentication configured; anyone who can reach the listener can post alerts and read incidents",
			"address", cfg.Web.ListenAddress)
	}

	if err := checkStateFile(cfg.Storage.Path); err != nil && !errors.Is(err, state.ErrLocked) {
		logger.Error("the state file cannot be used; restore the last backup (GET /api/v1/admin/backup) in its place, or move it away to start empty; `medic storage check --storage.path FILE` checks a file",
			"path", cfg.Storage.Path, "err", err)
		return exitFailed
	}
	keyFile, _ := cfg.Storage.AuditFiles()
	if err := os.MkdirAll(filepath.Dir(keyFile), 0o750); err != nil {
		logger.Error("cannot create the audit key's directory", "err", err)
		return exitError
	}
	auditKey, created, err := engine.LoadAuditKey(keyFile)
	if err != nil {
		logger.Error("cannot load the audit key", "err", err)
		return exitError
	}
	if created {
		logger.Warn("created a new audit key; keep a copy off this machine, and the file where whoever can write the state file cannot read it", "file", keyFile)
	}
	opts := state.DefaultOptions
	opts.AuditKey = auditKey
	store, err := state.Open(cfg.Storage.Path, opts)
	if err != nil {
		logger.Error("cannot open state", "path", cfg.Storage.Path, "err", err)
		return exitError
	}
	defer func() {
		if err := store.Close(); err != nil {
			logger.Error("closing state failed", "err", err)
		}
	}()

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	// The config is checked above; a reload reads the file again.
	load := func() (*engine.Config, error) { return loadConfig(sf, stderr) }
	err = engine.RunDaemon(ctx, engine.DaemonOptions{Logger: logger, Store: store, AuditKey: auditKey, Load: load, DryRun: sf.dryRun,
		MaxConnections: sf.maxConns, DrainTimeout: sf.drainTimeout}, hup)
	switch {
	case errors.Is(err, engine.ErrConfig):
		return exitFailed
	case err != nil:
		return exitError
	}
	return exitOK
}

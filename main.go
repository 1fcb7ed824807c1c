// Command medic is a self-healing incident responder for teams that run
// Prometheus. This file owns the CLI, the wiring and the signals; the logic
// lives in engine/ and state/.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/hashicorp/hcl/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/common/promslog"
	promslogflag "github.com/prometheus/common/promslog/flag"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web"
	"golang.org/x/net/netutil"
	"golang.org/x/sys/unix"

	"medic/actions"
	"medic/engine"
	"medic/rules"
	"medic/state"
)

// Exit codes, as DESIGN.md fixes them.
const (
	exitOK     = 0
	exitFailed = 1
	exitError  = 2
)

func main() {
	if path := os.Getenv(checkWorkerEnv); path != "" {
		os.Exit(checkWorker(path, os.Stderr))
	}
	if version.Version == "" {
		// Set by scripts/build.sh through -ldflags; a plain go build says so.
		version.Version = "devel"
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

type serveFlags struct {
	configFile    string
	listenAddress string
	webConfigFile string
	storagePath   string
	insecure      bool
	dryRun        bool
	drainTimeout  time.Duration
	maxConns      int
}

type clientFlags struct {
	url        string
	tokenFile  string
	token      string
	httpConfig string
	timeout    time.Duration
}

type incidentsFlags struct {
	id     string
	state  string
	limit  int
	output string
}

// exitRequest carries kingpin's request to exit (after --help, say) out of
// the parser, so that run returns the code instead of the process exiting.
type exitRequest int

func run(args []string, stdout, stderr io.Writer) (code int) {
	app := kingpin.New("medic", "A self-healing incident responder for Prometheus alerts.")
	app.UsageWriter(stderr)
	app.ErrorWriter(stderr)
	app.Terminate(func(c int) { panic(exitRequest(c)) })
	defer func() {
		if r := recover(); r != nil {
			e, ok := r.(exitRequest)
			if !ok {
				panic(r)
			}
			code = int(e)
		}
	}()
	app.HelpFlag.Short('h')
	logCfg := &promslog.Config{}
	promslogflag.AddFlags(app, logCfg)

	var sf serveFlags
	serve := app.Command("serve", "Run the daemon: receive Alertmanager webhooks and track incidents.")
	serve.Flag("config.file", "medic configuration file (HCL). Without one, built-in defaults apply.").StringVar(&sf.configFile)
	serve.Flag("web.listen-address", "Address to listen on; overrides web.listen_address. Default "+engine.DefaultListenAddress+".").StringVar(&sf.listenAddress)
	serve.Flag("web.config.file", "Web config file for TLS and basic auth (Prometheus exporter-toolkit format); overrides web.config_file.").StringVar(&sf.webConfigFile)
	serve.Flag("storage.path", "Path of the state file; overrides storage.path. Default data/medic.db.").StringVar(&sf.storagePath)
	serve.Flag("web.insecure", "Allow a non-loopback listener with no authentication.").BoolVar(&sf.insecure)
	serve.Flag("dry-run", "Decide and record, but run no tool: shadow mode everywhere.").BoolVar(&sf.dryRun)
	serve.Flag("web.max-connections", "Maximum number of simultaneous connections, as Prometheus has; the file descriptors past it stay free for tools.").Default("512").IntVar(&sf.maxConns)
	serve.Flag("shutdown.timeout", "How long SIGTERM waits for requests and inbox work in flight.").Default("15s").DurationVar(&sf.drainTimeout)

	app.Command("version", "Print version and build information.")

	var checkFiles []string
	var checkOutput string
	check := app.Command("check", "Validate medic.hcl and runbook files: tools, runbooks, expr conditions, templates.")
	check.Arg("files", "Files to check; a medic.hcl is checked with the runbook files it names. Default runbooks.hcl.").StringsVar(&checkFiles)
	check.Flag("output", "Output format: text or json.").Short('o').Default("text").EnumVar(&checkOutput, "text", "json")

	var testFiles []string
	var testRun string
	testCmd := app.Command("test", "Run runbook unit tests: alerts and stubbed queries in, expected decisions and calls out, in dry-run.")
	testCmd.Flag("run", "Only run the tests whose name matches this regular expression.").StringVar(&testRun)
	var testOutput string
	testCmd.Flag("output", "Output format: text or junit.").Short('o').Default("text").EnumVar(&testOutput, "text", "junit")
	testCmd.Arg("files", "Test files (HCL).").Required().StringsVar(&testFiles)

	var rf replayFlags
	replay := app.Command("replay", "Run one webhook payload through the whole decision path, in dry-run: nothing executes, the live state is not touched.")
	replay.Flag("config.file", "medic configuration file (HCL). Without one, built-in defaults apply.").StringVar(&rf.configFile)
	replay.Flag("series", "Answer PromQL queries from this JSON file instead of the configured Prometheus.").StringVar(&rf.series)
	replay.Flag("at", "The time of the decision, RFC 3339. Default now.").StringVar(&rf.at)
	replay.Flag("output", "Output format: text or json.").Short('o').Default("text").EnumVar(&rf.output, "text", "json")
	replay.Flag("dir", "Replay every *.json payload of this folder (NAME.series.json beside a payload is its series file) and print a summary.").StringVar(&rf.dir)
	replay.Flag("llm", "on: ask the configured LLM, as serve would (a real, billed request); off: show the escalation that happens instead.").Default("on").EnumVar(&rf.llm, "on", "off")
	replay.Arg("payload", "The webhook body, as Alertmanager would send it.").StringVar(&rf.payload)

	var storagePath string
	storageCmd := app.Command("storage", "Work on the state file offline.")
	storageCheck := storageCmd.Command("check", "Check the state file: its meta pages, its length, and every page. Exits 1 when it is damaged.")
	storageCheck.Flag("storage.path", "Path of the state file.").Default(engine.DefaultConfig().Storage.Path).StringVar(&storagePath)

	var cf clientFlags
	var inf incidentsFlags
	incidents := app.Command("incidents", "List incidents, or show one, through the daemon's HTTP API.")
	incidents.Flag("state", "Which incidents to list: open, closed or all.").Default("open").EnumVar(&inf.state, "open", "closed", "all")
	incidents.Flag("limit", "List at most this many incidents, newest first; 0 lists all, page by page.").Default("0").IntVar(&inf.limit)
	incidents.Flag("output", "Output format: text or json.").Short('o').Default("text").EnumVar(&inf.output, "text", "json")
	incidents.Arg("id", "Show this incident in full.").StringVar(&inf.id)

	var af auditFlags
	audit := app.Command("audit", "Print the audit log, or verify its hash chain, through the daemon's HTTP API.")
	audit.Flag("incident", "Only this incident's entries.").Uint64Var(&af.incident)
	audit.Flag("since", "Only entries at or after this RFC 3339 time.").StringVar(&af.since)
	audit.Flag("verify", "Check the hash chain; exit 1 if it is broken.").BoolVar(&af.verify)
	audit.Flag("output", "Output format: text or json (JSON lines).").Short('o').Default("text").EnumVar(&af.output, "text", "json")
	audit.Flag("storage.path", "With --verify: check this state file offline, with no daemon (one holding the file must be stopped).").StringVar(&af.storage)
	audit.Flag("audit.key-file", "With --storage.path: the audit key. Default audit.key beside the state file.").StringVar(&af.keyFile)
	audit.Flag("audit.checkpoint-file", "With --storage.path: the checkpoints. Default audit.checkpoints beside the state file.").StringVar(&af.checkpointFile)
	var apf approveFlags
	approve := app.Command("approve", "Approve an incident's pending call; it is re-checked against the policy, then runs.")
	approve.Arg("id", "The incident.").Required().Uint64Var(&apf.id)
	deny := app.Command("deny", "Deny an incident's pending call, with a reason.")
	deny.Arg("id", "The incident.").Required().Uint64Var(&apf.id)
	deny.Flag("reason", "Why; recorded in the audit log.").Required().StringVar(&apf.reason)
	for _, c := range []*kingpin.CmdClause{approve, deny} {
		c.Flag("medic.approver-token-file", "File holding the approver token.").Envar("MEDIC_APPROVER_TOKEN_FILE").StringVar(&apf.tokenFile)
		c.Flag("by", "Who decides, for the audit log.").Default(os.Getenv("USER")).StringVar(&apf.by)
	}
	for _, c := range []*kingpin.CmdClause{incidents, audit, approve, deny} {
		c.Flag("medic.url", "URL of the medic daemon.").Default("http://" + engine.DefaultListenAddress).Envar("MEDIC_URL").StringVar(&cf.url)
		c.Flag("medic.token-file", "File holding the daemon's bearer token.").Envar("MEDIC_TOKEN_FILE").StringVar(&cf.tokenFile)
		c.Flag("http.config.file", "HTTP client configuration (Prometheus format: TLS, basic auth), as amtool takes it.").StringVar(&cf.httpConfig)
		c.Flag("medic.timeout", "Timeout of the request.").Default("30s").DurationVar(&cf.timeout)
	}

	cmd, err := app.Parse(args)
	if err != nil {
		fmt.Fprintf(stderr, "medic: error: %v, try --help\n", err)
		return exitError
	}
	cf.token = os.Getenv("MEDIC_TOKEN")

	switch cmd {
	case "version":
		fmt.Fprintln(stdout, version.Print("medic"))
		return exitOK
	case "serve":
		return runServe(sf, promslog.New(logCfg), stderr)
	case "check":
		if len(checkFiles) == 0 {
			checkFiles = []string{"runbooks.hcl"}
		}
		return runCheck(checkFiles, checkOutput, stdout, stderr)
	case "incidents":
		return runIncidents(cf, inf, stdout, stderr)
	case "audit":
		return runAudit(cf, af, stdout, stderr)
	case "replay":
		return runReplay(rf, stdout, stderr)
	case "approve", "deny":
		return runApprove(cf, apf, cmd == "approve", stdout, stderr)
	case "test":
		return runTests(testFiles, testRun, testOutput, stdout, stderr)
	case "storage check":
		return runStorageCheck(storagePath, stdout, stderr)
	}
	fmt.Fprintf(stderr, "medic: unknown command %q\n", cmd)
	return exitError
}

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

	reg := prometheus.NewRegistry()
	reg.MustRegister(versioncollector.NewCollector("medic"), collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reloadCh := make(chan chan error)
	eng := engine.New(engine.Options{Logger: logger, Registerer: reg, Gatherer: reg, Store: store, Reload: reloadCh, AuditKey: auditKey})
	if err := eng.ApplyConfig(cfg); err != nil {
		logger.Error("invalid configuration", "err", err)
		return exitFailed
	}
	eng.ReloadResult(nil)

	decider, err := buildDecider(cfg, logger)
	if err != nil {
		logger.Error("invalid runbooks or policy", "err", err)
		return exitFailed
	}
	eng.InstrumentLLM(decider)
	var current atomic.Pointer[engine.Decider]
	current.Store(decider)
	rem := &engine.Remediator{Logger: logger, Store: store, Decider: current.Load, DryRun: sf.dryRun,
		Executors: engine.Executors{Exec: &actions.Exec{}, HTTP: &actions.HTTPExec{}, Notifier: &actions.Notifier{}}}
	eng.SetRemediator(rem)
	if err := rem.Recover(); err != nil {
		logger.Error("recovering the action journal failed", "err", err)
		return exitError
	}

	ln, err := net.Listen("tcp", cfg.Web.ListenAddress)
	if err != nil {
		logger.Error("cannot listen", "address", cfg.Web.ListenAddress, "err", err)
		return exitError
	}
	ln = netutil.LimitListener(ln, connectionLimit(sf.maxConns, logger))
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
	var serving atomic.Bool
	serving.Store(true)
	go func() {
		defer serving.Store(false)
		srvErr <- web.Serve(ln, srv, &web.FlagConfig{
			WebListenAddresses: &[]string{cfg.Web.ListenAddress},
			WebSystemdSocket:   &noSocket,
			WebConfigFile:      &webCfg,
		}, logger)
	}()

	workCtx, stopWork := context.WithCancel(context.Background())
	workDone := make(chan error, 1)
	go func() { workDone <- eng.Run(workCtx, engine.RunOptions{DrainTimeout: sf.drainTimeout}) }()
	remCtx, stopRemediation := context.WithCancel(context.Background())
	remDone := make(chan struct{})
	go func() {
		defer close(remDone)
		rem.Run(remCtx, cfg.Remediation.Parallel)
	}()

	eng.SetReady(true)
	logger.Info("medic is ready", "address", ln.Addr().String(), "storage", cfg.Storage.Path,
		"inbox_depth", store.InboxDepth(), "open_incidents", store.OpenIncidents())
	// systemd: READY=1 only now, with the state open, the config loaded and
	// the listener bound.
	notify(logger, daemon.SdNotifyReady, statusLine(store))
	stopWatchdog := make(chan struct{})
	watchdogDone := make(chan struct{})
	go func() {
		defer close(watchdogDone)
		runWatchdog(logger, eng, store, serving.Load, stopWatchdog)
	}()
	checkpointsDone := make(chan struct{})
	go func() {
		defer close(checkpointsDone)
		t := time.NewTicker(engine.CheckpointInterval)
		defer t.Stop()
		for {
			select {
			case <-stopWatchdog:
				return
			case <-t.C:
				if err := eng.Checkpoint(); err != nil {
					logger.Error("writing an audit checkpoint failed", "err", err)
				}
			}
		}
	}()

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM, os.Interrupt)
	defer signal.Stop(hup)
	defer signal.Stop(term)

	reload := func() error {
		notify(logger, daemon.SdNotifyReloading, monotonicUsec())
		defer notify(logger, daemon.SdNotifyReady, statusLine(store))
		d, err := reloadConfig(sf, eng, logger, stderr)
		if err == nil {
			current.Store(d)
		}
		eng.ReloadResult(err)
		if err != nil {
			logger.Error("reload failed; keeping the previous configuration", "err", err)
			return err
		}
		logger.Info("configuration reloaded", "file", sf.configFile)
		return nil
	}

	code := exitOK
loop:
	for {
		select {
		case <-hup:
			_ = reload()
		case rc := <-reloadCh:
			rc <- reload()
		case sig := <-term:
			logger.Info("received signal, draining", "signal", sig.String())
			break loop
		case err := <-srvErr:
			if !errors.Is(err, http.ErrServerClosed) {
				logger.Error("HTTP server failed", "err", err)
				code = exitError
			}
			break loop
		case err := <-workDone:
			logger.Error("worker stopped unexpectedly", "err", err)
			workDone <- err
			code = exitError
			break loop
		}
	}

	// Stop intake first: requests in flight finish and get their answer,
	// new ones are refused. Then let the worker drain, then close the state.
	notify(logger, daemon.SdNotifyStopping, "STATUS=draining")
	close(stopWatchdog)
	<-watchdogDone
	<-checkpointsDone
	eng.SetReady(false)
	ctx, cancel := context.WithTimeout(context.Background(), sf.drainTimeout)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
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
	case <-time.After(sf.drainTimeout + 5*time.Second):
		logger.Error("worker did not stop in time")
		return exitError
	}
	logger.Info("medic stopped", "inbox_depth", store.InboxDepth())
	return code
}

// checkWorkerEnv makes the binary check one state file and exit: the child
// process of checkStateFile.
const checkWorkerEnv = "MEDIC_CHECK_STATE_FILE"

// exitLocked is what the check worker exits with when a running medic holds
// the file.
const exitLocked = 4

// checkWorker checks a state file and says how it went in its exit code.
func checkWorker(path string, stderr io.Writer) int {
	err := state.CheckFile(path)
	if err != nil {
		fmt.Fprintln(stderr, err)
	}
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, state.ErrLocked):
		return exitLocked
	case errors.Is(err, state.ErrCorrupt):
		return exitFailed
	}
	return exitError
}

func runStorageCheck(path string, stdout, stderr io.Writer) int {
	err := checkStateFile(path)
	switch {
	case err == nil:
		fmt.Fprintf(stdout, "%s: OK\n", path)
		return exitOK
	case errors.Is(err, state.ErrCorrupt):
		fmt.Fprintf(stderr, "medic: %v\nrestore the last backup (GET /api/v1/admin/backup) in its place, or move it away to start empty\n", err)
		return exitFailed
	}
	fmt.Fprintf(stderr, "medic: %v\n", err)
	return exitError
}

// checkStateFile checks an existing state file in a child process: bbolt
// can panic or fault (SIGBUS past a truncated end) on a damaged file, and
// that must end the check, not medic. A crash is damage too. A file that a
// running medic holds is state.ErrLocked.
func checkStateFile(path string) error {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding medic's own binary to check the state file: %w", err)
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), checkWorkerEnv+"="+path)
	out, err := cmd.CombinedOutput()
	msg := strings.TrimSpace(string(out))
	first, _, _ := strings.Cut(msg, "\n")
	var ee *exec.ExitError
	switch {
	case err == nil:
		return nil
	case !errors.As(err, &ee):
		return fmt.Errorf("running the state file check: %w", err)
	case ee.ExitCode() == exitLocked:
		return fmt.Errorf("%s: %w", path, state.ErrLocked)
	case ee.ExitCode() == exitFailed:
		// CheckFile's error, which began with ErrCorrupt's text.
		return fmt.Errorf("%w: %s", state.ErrCorrupt, strings.TrimPrefix(msg, state.ErrCorrupt.Error()+": "))
	}
	// A panic or a fault: the first line says what broke.
	return fmt.Errorf("%w: %s: reading it crashed the check (%s): %s", state.ErrCorrupt, path, ee.ProcessState, first)
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

// reloadConfig is all or nothing: a config with any error leaves the running
// one in place. Every other setting applies at once. Settings bound at start
// (listener, state file, web config file, the number of parallel decisions)
// need a restart: a change to one of them refuses the whole reload, naming
// it.
func reloadConfig(sf serveFlags, eng *engine.Engine, logger *slog.Logger, stderr io.Writer) (*engine.Decider, error) {
	cfg, err := loadConfig(sf, stderr)
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
	d, err := buildDecider(cfg, logger)
	if err != nil {
		return nil, err
	}
	eng.InstrumentLLM(d)
	return d, eng.ApplyConfig(cfg)
}

// diagRecord is one diagnostic of `medic check --output json`.
type diagRecord struct {
	Severity string `json:"severity"`
	Summary  string `json:"summary"`
	Detail   string `json:"detail,omitempty"`
	File     string `json:"file,omitempty"`
	Line     int    `json:"line,omitempty"`
	Column   int    `json:"column,omitempty"`
}

func runCheck(files []string, output string, stdout, stderr io.Writer) int {
	results := engine.Check(files)
	failed := false
	type fileRecord struct {
		engine.CheckResult
		Valid       bool         `json:"valid"`
		Diagnostics []diagRecord `json:"diagnostics"`
	}
	var records []fileRecord
	for _, r := range results {
		bad := r.Diags.HasErrors()
		failed = failed || bad
		if output == "json" {
			rec := fileRecord{CheckResult: r, Valid: !bad, Diagnostics: []diagRecord{}}
			for _, d := range r.Diags {
				dr := diagRecord{Severity: "error", Summary: d.Summary, Detail: d.Detail}
				if d.Severity == hcl.DiagWarning {
					dr.Severity = "warning"
				}
				if d.Subject != nil {
					dr.File, dr.Line, dr.Column = d.Subject.Filename, d.Subject.Start.Line, d.Subject.Start.Column
				}
				rec.Diagnostics = append(rec.Diagnostics, dr)
			}
			records = append(records, rec)
			continue
		}
		fmt.Fprintf(stdout, "Checking %s\n", r.File)
		rules.WriteDiagnostics(stderr, r.Diags)
		if bad {
			fmt.Fprintf(stdout, "  FAILED: %d error(s)\n\n", len(r.Diags.Errs()))
			continue
		}
		fmt.Fprintf(stdout, "  SUCCESS: %d tools, %d runbooks\n\n", r.Tools, r.Runbooks)
	}
	if output == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(records)
	}
	if failed {
		return exitFailed
	}
	return exitOK
}

// apiGet is a client command's request to the daemon. It returns the body
// of a 200, or prints the daemon's error and returns the exit code: 1 for a
// 404, 2 for everything else.
func apiGet(cf clientFlags, path string, q url.Values, stderr io.Writer) ([]byte, int) {
	return apiRequest(cf, http.MethodGet, path, q, nil, stderr)
}

// apiRequest is apiGet for any method, with an optional JSON body.
func apiRequest(cf clientFlags, method, path string, q url.Values, reqBody []byte, stderr io.Writer) ([]byte, int) {
	base, err := url.Parse(cf.url)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		fmt.Fprintf(stderr, "medic: --medic.url %q is not an http(s) URL\n", cf.url)
		return nil, exitError
	}
	token := cf.token
	if cf.tokenFile != "" {
		token, err = engine.ReadToken(cf.tokenFile)
		if err != nil {
			fmt.Fprintf(stderr, "medic: %v\n", err)
			return nil, exitError
		}
	}
	u := base.JoinPath(path)
	u.RawQuery = q.Encode()
	ctx, cancel := context.WithTimeout(context.Background(), cf.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, u.String(), bytes.NewReader(reqBody))
	if err != nil {
		fmt.Fprintf(stderr, "medic: %v\n", err)
		return nil, exitError
	}
	if reqBody != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("User-Agent", version.ComponentUserAgent("medic"))
	client := http.DefaultClient
	if cf.httpConfig != "" {
		if client, err = engine.HTTPClientFromFile(cf.httpConfig); err != nil {
			fmt.Fprintf(stderr, "medic: --http.config.file: %v\n", err)
			return nil, exitError
		}
	}
	resp, err := client.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "medic: %v\n", err)
		return nil, exitError
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		fmt.Fprintf(stderr, "medic: reading response: %v\n", err)
		return nil, exitError
	}
	if resp.StatusCode != http.StatusOK {
		var eb struct {
			Error string `json:"error"`
		}
		msg := strings.TrimSpace(string(body))
		if json.Unmarshal(body, &eb) == nil && eb.Error != "" {
			msg = eb.Error
		}
		fmt.Fprintf(stderr, "medic: %s: %s\n", resp.Status, msg)
		if resp.StatusCode == http.StatusNotFound {
			return nil, exitFailed
		}
		return nil, exitError
	}
	return body, exitOK
}

func runIncidents(cf clientFlags, f incidentsFlags, stdout, stderr io.Writer) int {
	if f.id != "" {
		body, code := apiGet(cf, "/api/v1/incidents/"+url.PathEscape(f.id), nil, stderr)
		if code != exitOK {
			return code
		}
		var env struct {
			Data json.RawMessage `json:"data"`
		}
		if err := json.Unmarshal(body, &env); err != nil {
			fmt.Fprintf(stderr, "medic: decoding response: %v\n", err)
			return exitError
		}
		if f.output == "json" {
			return printJSON(stdout, env.Data)
		}
		var inc state.Incident
		if err := json.Unmarshal(env.Data, &inc); err != nil {
			fmt.Fprintf(stderr, "medic: decoding incident: %v\n", err)
			return exitError
		}
		printIncident(stdout, &inc)
		return exitOK
	}
	// The API pages its lists; follow the pages up to the limit.
	var incs []engine.IncidentSummary
	var before uint64
	for {
		q := url.Values{"state": {f.state}, "limit": {fmt.Sprint(engine.MaxPageSize)}}
		if f.limit > 0 {
			q.Set("limit", fmt.Sprint(min(f.limit-len(incs), engine.MaxPageSize)))
		}
		if before != 0 {
			q.Set("before", fmt.Sprint(before))
		}
		body, code := apiGet(cf, "/api/v1/incidents", q, stderr)
		if code != exitOK {
			return code
		}
		var page struct {
			Data []engine.IncidentSummary `json:"data"`
			Next uint64                   `json:"next"`
		}
		if err := json.Unmarshal(body, &page); err != nil {
			fmt.Fprintf(stderr, "medic: decoding incidents: %v\n", err)
			return exitError
		}
		incs = append(incs, page.Data...)
		if before = page.Next; before == 0 || (f.limit > 0 && len(incs) >= f.limit) {
			break
		}
	}
	if f.output == "json" {
		b, _ := json.Marshal(incs)
		return printJSON(stdout, b)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tOUTCOME\tOPENED\tUPDATED\tALERTS\tKEY")
	for _, inc := range incs {
		outcome := inc.Outcome
		if outcome == "" {
			outcome = "-"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", inc.ID, inc.State, outcome, inc.OpenedAt.UTC().Format(time.RFC3339),
			inc.UpdatedAt.UTC().Format(time.RFC3339), strings.Join(inc.Alertnames, ","), inc.Key)
	}
	tw.Flush()
	return exitOK
}

// printJSON prints raw JSON indented.
func printJSON(w io.Writer, raw []byte) int {
	var pretty any
	_ = json.Unmarshal(raw, &pretty)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(pretty)
	return exitOK
}

func printIncident(w io.Writer, inc *state.Incident) {
	fmt.Fprintf(w, "Incident %d (%s)\n  key:     %s\n  opened:  %s\n  updated: %s\n", inc.ID, inc.State, inc.Key,
		inc.OpenedAt.UTC().Format(time.RFC3339), inc.UpdatedAt.UTC().Format(time.RFC3339))
	if inc.ClosedAt != nil {
		fmt.Fprintf(w, "  closed:  %s\n", inc.ClosedAt.UTC().Format(time.RFC3339))
	}
	if inc.Outcome != "" {
		fmt.Fprintf(w, "  outcome: %s\n", inc.Outcome)
	}
	if inc.RecoveredAt != nil {
		fmt.Fprintf(w, "  recovered: %s (%s after opening)\n", inc.RecoveredAt.UTC().Format(time.RFC3339), inc.RecoveredAt.Sub(inc.OpenedAt).Round(time.Millisecond))
	}
	fmt.Fprintln(w, "Alerts:")
	for _, a := range inc.Alerts {
		keys := make([]string, 0, len(a.Labels))
		for k := range a.Labels {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var ls []string
		for _, k := range keys {
			ls = append(ls, fmt.Sprintf("%s=%q", k, a.Labels[k]))
		}
		fmt.Fprintf(w, "  %s %-8s since %s {%s}\n", a.Fingerprint, a.Status, a.StartsAt.UTC().Format(time.RFC3339), strings.Join(ls, ", "))
	}
	fmt.Fprintln(w, "Timeline:")
	for _, e := range inc.Timeline {
		fmt.Fprintf(w, "  %s  %-15s %s\n", e.Time.UTC().Format(time.RFC3339), e.Kind, e.Message)
	}
	if inc.TimelineDropped > 0 {
		fmt.Fprintf(w, "  (%d older events dropped)\n", inc.TimelineDropped)
	}
}

type auditFlags struct {
	incident uint64
	since    string
	verify   bool
	output   string
	// storage, with verify, checks a state file offline.
	storage        string
	keyFile        string
	checkpointFile string
}

// verifyOffline checks a state file's audit log without a daemon: the
// chain, the MACs under the key, and the checkpoints.
func verifyOffline(f auditFlags, stdout, stderr io.Writer) int {
	sc := engine.StorageConfig{Path: f.storage, AuditKeyFile: f.keyFile, AuditCheckpointFile: f.checkpointFile}
	keyFile, checkpoints := sc.AuditFiles()
	key, err := engine.ReadAuditKey(keyFile)
	if err != nil {
		fmt.Fprintf(stderr, "medic: the audit key is needed to verify: %v\n", err)
		return exitError
	}
	if err := checkStateFile(f.storage); err != nil {
		fmt.Fprintf(stderr, "medic: %v\n", err)
		return exitFailed
	}
	store, err := state.Open(f.storage, state.Options{ReadOnly: true, LockTimeout: time.Second})
	if err != nil {
		fmt.Fprintf(stderr, "medic: %v\n", err)
		return exitError
	}
	defer store.Close()
	n, err := engine.VerifyAudit(store, key, checkpoints)
	if err != nil {
		fmt.Fprintf(stdout, "FAILED: the audit log is not intact after %d good entries: %s\n", n, err)
		return exitFailed
	}
	fmt.Fprintf(stdout, "SUCCESS: %d entries, hash chain, MACs and checkpoints intact\n", n)
	return exitOK
}

// runAudit prints the audit log, or checks its hash chain with --verify
// (exit 1 when broken).
func runAudit(cf clientFlags, f auditFlags, stdout, stderr io.Writer) int {
	if f.storage != "" {
		if !f.verify {
			fmt.Fprintln(stderr, "medic: error: --storage.path goes with --verify")
			return exitError
		}
		return verifyOffline(f, stdout, stderr)
	}
	if f.verify {
		body, code := apiGet(cf, "/api/v1/audit/verify", nil, stderr)
		if code != exitOK {
			return code
		}
		var r struct {
			Data struct {
				Valid   bool   `json:"valid"`
				Entries int    `json:"entries"`
				Error   string `json:"error"`
			} `json:"data"`
		}
		if err := json.Unmarshal(body, &r); err != nil {
			fmt.Fprintf(stderr, "medic: decoding response: %v\n", err)
			return exitError
		}
		if !r.Data.Valid {
			fmt.Fprintf(stdout, "FAILED: the audit chain is broken after %d good entries: %s\n", r.Data.Entries, r.Data.Error)
			return exitFailed
		}
		fmt.Fprintf(stdout, "SUCCESS: %d entries, hash chain, MACs and checkpoints intact\n", r.Data.Entries)
		return exitOK
	}
	q := url.Values{}
	if f.incident > 0 {
		q.Set("incident", fmt.Sprint(f.incident))
	}
	if f.since != "" {
		q.Set("since", f.since)
	}
	body, code := apiGet(cf, "/api/v1/audit", q, stderr)
	if code != exitOK {
		return code
	}
	if f.output == "json" {
		stdout.Write(body)
		return exitOK
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tTIME\tINCIDENT\tKIND\tACTOR\tDETAILS")
	dec := json.NewDecoder(bytes.NewReader(body))
	for dec.More() {
		var e state.AuditEntry
		if err := dec.Decode(&e); err != nil {
			fmt.Fprintf(stderr, "medic: decoding the audit log: %v\n", err)
			return exitError
		}
		fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%s\t%s\n", e.Seq, e.Time.UTC().Format(time.RFC3339), e.Incident, e.Kind, e.Actor, e.Details)
	}
	tw.Flush()
	return exitOK
}

type replayFlags struct {
	configFile, series, at, output, payload, dir, llm string
}

// runReplay decides one payload in dry-run. It exits 0 with the decision,
// whatever it is, and 2 when the payload, config, runbooks or series cannot
// be read.
func runReplay(f replayFlags, stdout, stderr io.Writer) int {
	now := time.Now()
	if f.at != "" {
		t, err := time.Parse(time.RFC3339, f.at)
		if err != nil {
			fmt.Fprintf(stderr, "medic: --at %q is not an RFC 3339 time\n", f.at)
			return exitError
		}
		now = t
	}
	cfg, diags := engine.LoadConfig(f.configFile)
	rules.WriteDiagnostics(stderr, diags)
	if diags.HasErrors() {
		return exitError
	}
	if (f.payload == "") == (f.dir == "") {
		fmt.Fprintln(stderr, "medic: replay takes one PAYLOAD or --dir DIR")
		return exitError
	}
	// The same runbooks, policy and sources as serve builds from the config.
	if f.llm == "off" {
		cfg.LLM.Provider = ""
	}
	base, err := buildDecider(cfg, slog.New(slog.NewTextHandler(stderr, nil)))
	if err != nil {
		fmt.Fprintf(stderr, "medic: %v\n", err)
		return exitError
	}
	ctx := context.Background()
	// decide replays one payload with the series file given, if any.
	decide := func(payload, series string) (engine.Trace, error) {
		d := *base
		if series != "" {
			sf, err := engine.LoadSeriesFile(series)
			if err != nil {
				return engine.Trace{}, err
			}
			d.Sources.Prom, d.QueryStubs = sf, sf.Queries
		}
		body, err := os.ReadFile(payload)
		if err != nil {
			return engine.Trace{}, err
		}
		return d.DecidePayload(ctx, body, now), nil
	}
	if f.dir != "" {
		return replayDir(f, decide, stdout, stderr)
	}
	t, err := decide(f.payload, f.series)
	if err != nil {
		fmt.Fprintf(stderr, "medic: %v\n", err)
		return exitError
	}

	if f.output == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(t)
		return exitOK
	}
	fmt.Fprintf(stdout, "decision: %s\n", t.Decision)
	if t.Error != "" {
		fmt.Fprintf(stdout, "  rejected by the intake: %s\n", t.Error)
	}
	for _, a := range t.Alerts {
		fmt.Fprintf(stdout, "alert %s (%s): %s", a.Alertname, a.Fingerprint, a.Decision)
		if a.Reason != "" {
			fmt.Fprintf(stdout, ": %s", a.Reason)
		}
		fmt.Fprintln(stdout)
		if a.Runbook != "" {
			fmt.Fprintf(stdout, "  runbook %s, confidence %.2f, target %s (%d queries, %.1f ms)\n", a.Runbook, a.Confidence, a.Target, a.Queries, a.EnrichMillis)
		}
		for _, o := range a.Considered {
			fmt.Fprintf(stdout, "  considered %s: %s\n", o.Name, o.Reason)
		}
		for _, o := range a.LowConfidence {
			fmt.Fprintf(stdout, "  low confidence %s: %s\n", o.Name, o.Reason)
		}
		if l := a.LLM; l != nil {
			ex := l.Exchange
			fmt.Fprintf(stdout, "  llm %s %s: %s (prompt %d tokens estimated, %d reported; reply %d tokens; %d tries)\n",
				ex.Provider, ex.Model, l.Result, ex.Prompt.Tokens, ex.PromptTokens, ex.OutputTokens, ex.Tries)
			if l.Diagnosis != nil {
				fmt.Fprintf(stdout, "    hypothesis (confidence %.2f): %s\n", l.Diagnosis.Confidence, l.Diagnosis.RootCause)
			}
			if l.Reason != "" {
				fmt.Fprintf(stdout, "    %s\n", l.Reason)
			}
		}
		for _, c := range a.Calls {
			fmt.Fprintf(stdout, "  call %s %q: policy %s (%s)\n", c.Tool, c.Argv, c.Policy.Result, strings.Join(c.Policy.Reasons, "; "))
			if c.Rollback != nil {
				fmt.Fprintf(stdout, "    rollback %s %q: policy %s\n", c.Rollback.Tool, c.Rollback.Argv, c.RollbackPolicy.Result)
			}
		}
	}
	return exitOK
}

// runTests prints SUCCESS or FAILED per file, as promtool test rules does,
// with a line per difference. Exit 0 when all pass, 1 when any fails, 2 when
// a file cannot be loaded.
func runTests(files []string, run, output string, stdout, stderr io.Writer) int {
	var re *regexp.Regexp
	if run != "" {
		var err error
		if re, err = regexp.Compile(run); err != nil {
			fmt.Fprintf(stderr, "medic: --run: %v\n", err)
			return exitError
		}
	}
	results := engine.RunTests(files, re)
	if output == "junit" {
		return writeJUnit(results, stdout, stderr)
	}
	code := exitOK
	for _, r := range results {
		fmt.Fprintf(stdout, "Unit Testing: %s\n", r.File)
		if r.Diags.HasErrors() {
			rules.WriteDiagnostics(stderr, r.Diags)
			fmt.Fprintf(stdout, "  FAILED: the file could not be loaded\n\n")
			code = exitError
			continue
		}
		if !r.Failed() {
			fmt.Fprintf(stdout, "  SUCCESS (%d tests)\n\n", len(r.Results))
			continue
		}
		fmt.Fprintln(stdout, "  FAILED:")
		for _, t := range r.Results {
			if len(t.Diffs) == 0 {
				continue
			}
			fmt.Fprintf(stdout, "    test %q:\n", t.Name)
			for _, d := range t.Diffs {
				fmt.Fprintf(stdout, "      %s\n", d)
			}
		}
		fmt.Fprintln(stdout)
		if code == exitOK {
			code = exitFailed
		}
	}
	return code
}

type junitSuites struct {
	XMLName xml.Name     `xml:"testsuites"`
	Suites  []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name     string      `xml:"name,attr"`
	Tests    int         `xml:"tests,attr"`
	Failures int         `xml:"failures,attr"`
	Errors   int         `xml:"errors,attr"`
	Cases    []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      float64       `xml:"time,attr"`
	Failure   *junitFailure `xml:"failure,omitempty"`
}

type junitFailure struct {
	Message string `xml:"message,attr"`
	Text    string `xml:",chardata"`
}

// writeJUnit prints the results as JUnit XML for CI systems; a file that
// cannot load is a suite with one error.
func writeJUnit(results []engine.TestFileResult, stdout, stderr io.Writer) int {
	code := exitOK
	var out junitSuites
	for _, r := range results {
		s := junitSuite{Name: r.File}
		if r.Diags.HasErrors() {
			rules.WriteDiagnostics(stderr, r.Diags)
			s.Errors = 1
			code = exitError
		}
		for _, t := range r.Results {
			c := junitCase{Name: t.Name, Classname: r.File, Time: t.Duration.Seconds()}
			if len(t.Diffs) > 0 {
				c.Failure = &junitFailure{Message: t.Diffs[0], Text: strings.Join(t.Diffs, "\n")}
				s.Failures++
				if code == exitOK {
					code = exitFailed
				}
			}
			s.Cases = append(s.Cases, c)
		}
		s.Tests = len(s.Cases)
		out.Suites = append(out.Suites, s)
	}
	fmt.Fprint(stdout, xml.Header)
	enc := xml.NewEncoder(stdout)
	enc.Indent("", "  ")
	_ = enc.Encode(out)
	fmt.Fprintln(stdout)
	return code
}

// replayDir replays every payload of a folder and prints a summary table,
// or a JSON list of {file, trace}.
func replayDir(f replayFlags, decide func(payload, series string) (engine.Trace, error), stdout, stderr io.Writer) int {
	all, err := filepath.Glob(filepath.Join(f.dir, "*.json"))
	if err != nil {
		fmt.Fprintf(stderr, "medic: %v\n", err)
		return exitError
	}
	type entry struct {
		File  string       `json:"file"`
		Trace engine.Trace `json:"trace"`
	}
	var entries []entry
	for _, p := range all {
		if strings.HasSuffix(p, ".series.json") {
			continue
		}
		series := f.series
		if sib := strings.TrimSuffix(p, ".json") + ".series.json"; series == "" {
			if _, err := os.Stat(sib); err == nil {
				series = sib
			}
		}
		t, err := decide(p, series)
		if err != nil {
			fmt.Fprintf(stderr, "medic: %s: %v\n", p, err)
			return exitError
		}
		entries = append(entries, entry{File: p, Trace: t})
	}
	if f.output == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(entries)
		return exitOK
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FILE\tDECISION\tRUNBOOK\tREASON")
	for _, e := range entries {
		runbook, reason := "", e.Trace.Error
		if len(e.Trace.Alerts) > 0 {
			runbook, reason = e.Trace.Alerts[0].Runbook, e.Trace.Alerts[0].Reason
		}
		if len(reason) > 100 {
			reason = reason[:100] + "…"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", filepath.Base(e.File), e.Trace.Decision, runbook, reason)
	}
	tw.Flush()
	return exitOK
}

// notify sends sd_notify lines when NOTIFY_SOCKET is set; elsewhere it does
// nothing.
func notify(logger *slog.Logger, lines ...string) {
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
func runWatchdog(logger *slog.Logger, eng *engine.Engine, store *state.Store, serving func() bool, stop <-chan struct{}) {
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
			notify(logger, statusLine(store))
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
		notify(logger, daemon.SdNotifyWatchdog, statusLine(store))
	}
}

type approveFlags struct {
	id        uint64
	reason    string
	by        string
	tokenFile string
}

// runApprove approves or denies a pending call with the approver token
// (from --medic.approver-token-file or $MEDIC_APPROVER_TOKEN).
func runApprove(cf clientFlags, f approveFlags, approve bool, stdout, stderr io.Writer) int {
	cf.tokenFile, cf.token = f.tokenFile, os.Getenv("MEDIC_APPROVER_TOKEN")
	verb := "deny"
	if approve {
		verb = "approve"
	}
	body, _ := json.Marshal(map[string]string{"by": f.by, "reason": f.reason})
	out, code := apiRequest(cf, http.MethodPost, fmt.Sprintf("/api/v1/incidents/%d/%s", f.id, verb), nil, body, stderr)
	if code != exitOK {
		return code
	}
	var r struct {
		Data    state.Approval `json:"data"`
		Message string         `json:"message"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		fmt.Fprintf(stderr, "medic: decoding response: %v\n", err)
		return exitError
	}
	fmt.Fprintf(stdout, "incident %d: %s %s: %s\n", f.id, r.Data.Tool, r.Data.State, r.Message)
	return exitOK
}

// buildDecider is engine.NewDecider with its diagnostics as an error, for
// the log.
func buildDecider(cfg *engine.Config, logger *slog.Logger) (*engine.Decider, error) {
	d, diags := engine.NewDecider(cfg, logger)
	if diags.HasErrors() {
		var b strings.Builder
		rules.WriteDiagnostics(&b, diags)
		return nil, fmt.Errorf("runbooks or policy:\n%s", b.String())
	}
	return d, nil
}

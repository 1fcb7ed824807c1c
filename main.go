// Command medic is a self-healing incident responder for teams that run
// Prometheus. main.go parses the command line and hands each subcommand to
// its file, as promtool does: serve.go (the daemon), check.go (check, test,
// replay), storage.go (storage check) and client.go (the API clients). The
// logic lives in engine/ and state/.
package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/promslog"
	promslogflag "github.com/prometheus/common/promslog/flag"
	"github.com/prometheus/common/version"

	"medic/engine"
)

// Exit codes: success, a failed check or refused input, an error.
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
	// Help and --version are results, on stdout, as promtool's and amtool's
	// are; errors go to stderr.
	app.UsageWriter(stdout)
	app.ErrorWriter(stderr)
	app.Version(version.Print("medic"))
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
	replay.Flag("hostname", "Decide as if medic ran on the host with this node name, as node_exporter's node_uname_info reports it, instead of this machine.").StringVar(&rf.hostname)
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

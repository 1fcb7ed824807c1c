package rules

import "time"

// Env is what `when` and `confidence` see. A missing label reads as "";
// `'k' in labels` tests whether it exists.
type Env struct {
	Labels      map[string]string `expr:"labels"`
	Annotations map[string]string `expr:"annotations"`
	// Query holds the results of the runbook's promql queries, by name.
	Query map[string][]Sample `expr:"query"`
	// Logs holds the lines of its logql queries, by name.
	Logs map[string][]LogLine `expr:"logs"`
	// Tool holds the decoded JSON output of its tool queries, by name.
	Tool     map[string]any `expr:"tool"`
	Incident History        `expr:"incident"`
	// Host is the machine medic runs on, which its systemd tools act on.
	Host Host `expr:"host"`
	// Now is passed in, so that tests are deterministic.
	Now time.Time `expr:"now"`
}

// Sample is one series of a PromQL instant query result.
type Sample struct {
	Labels map[string]string `expr:"labels" json:"labels"`
	Value  float64           `expr:"value" json:"value"`
}

// LogLine is one line of a LogQL query result.
type LogLine struct {
	Labels map[string]string `expr:"labels" json:"labels"`
	Time   time.Time         `expr:"time" json:"time"`
	Line   string            `expr:"line" json:"line"`
}

// History is what medic knows of the incident so far.
type History struct {
	// Attempts is how many times this runbook already acted on it.
	Attempts int `expr:"attempts"`
	// Firing is how long the oldest alert has fired.
	Firing time.Duration `expr:"firing"`
	// Alerts is the number of alerts in the incident.
	Alerts int `expr:"alerts"`
}

// VerifyEnv is what a verify block's `expect` sees.
type VerifyEnv struct {
	Before float64 `expr:"before"`
	After  float64 `expr:"after"`
}

// Host is what conditions know of the machine medic runs on, so that a
// runbook whose tools act on this machine can tell whether the alert is
// about it, without naming hosts in the runbook.
type Host struct {
	// Name is the kernel's node name: the nodename label of node_exporter's
	// node_uname_info on this machine.
	Name string `expr:"name"`
	// Names are the host parts a scrape target on this machine may carry
	// in its instance label: Name, localhost, and the addresses of its
	// interfaces, IPv6 in brackets (instance "[::1]:9100").
	Names []string `expr:"names"`
}

// HostNamed describes a host known only by its node name, reached on
// loopback: what `medic test` decides for, and `medic replay --hostname`.
func HostNamed(name string) Host {
	return Host{Name: name, Names: []string{name, "localhost", "127.0.0.1", "[::1]"}}
}

// TestHost is the host `medic test` decides for, so that tests do not
// depend on the machine they run on.
var TestHost = HostNamed("medic-test-host")

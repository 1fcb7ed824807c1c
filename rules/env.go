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

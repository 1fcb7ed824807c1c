package rules

import (
	"regexp"
	"time"

	"github.com/expr-lang/expr/vm"
	"github.com/hashicorp/hcl/v2"
)

// Mode says what medic does with a runbook's plan.
type Mode string

// The modes.
const (
	ModeAuto    Mode = "auto"
	ModeApprove Mode = "approve"
	ModeShadow  Mode = "shadow"
)

// QueryKind is the source of an enrichment query.
type QueryKind string

// The query kinds.
const (
	QueryPromQL QueryKind = "promql"
	QueryLogQL  QueryKind = "logql"
	QueryTool   QueryKind = "tool"
)

// Runbook is one distilled runbook: which alerts it recognises, how sure it
// is, and what it does about them.
type Runbook struct {
	Name        string
	Description string
	Mode        Mode
	Priority    int
	// Match holds exact label matchers; MatchRE regular expressions,
	// anchored as in Prometheus.
	Match   map[string]string
	MatchRE map[string]*regexp.Regexp
	// Target renders the incident key, e.g. namespace/deployment.
	Target  *Template
	Queries []*Query
	// When is a boolean expr program; nil means always.
	When *Condition
	// Confidence is a float expr program in [0, 1].
	Confidence *Condition
	Threshold  float64
	Steps      []*Step
	Verify     *Verify
	// MaxAttempts bounds how often the steps are tried.
	MaxAttempts int
	// Escalate marks a runbook that never acts: it only recognises and
	// escalates.
	Escalate bool

	DefRange hcl.Range
}

// Query is an enrichment query, run only for candidate runbooks.
type Query struct {
	Name    string
	Kind    QueryKind
	Expr    *Template // the PromQL or LogQL text
	Limit   int       // LogQL line limit
	Range   time.Duration
	Call    *Call // for tool queries
	Timeout time.Duration

	DefRange hcl.Range
}

// Step is one planned tool call.
type Step struct {
	Name     string
	Call     Call
	Rollback *Call

	DefRange hcl.Range
}

// Verify says how medic checks that a step worked.
type Verify struct {
	PromQL  *Template
	Expect  *Condition
	Wait    time.Duration
	Timeout time.Duration

	DefRange hcl.Range
}

// Condition is an expr program compiled once at load time. Programs are
// safe to share between goroutines.
type Condition struct {
	Source  string
	Program *vm.Program

	Range hcl.Range
}

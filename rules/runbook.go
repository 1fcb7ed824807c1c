package rules

import (
	"fmt"
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/vm"
	"github.com/hashicorp/hcl/v2"
	"github.com/prometheus/alertmanager/pkg/labels"
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
	// Matchers select the alerts the runbook recognises, all of them at
	// once, in Alertmanager's matcher syntax (regular expressions anchored
	// as in Prometheus).
	Matchers labels.Matchers
	// Target renders the incident key, e.g. namespace/deployment.
	Target *Template
	// targetFromLabels is set when Target reads only the alert's labels
	// and annotations, so it renders before any query runs.
	targetFromLabels bool
	Queries          []*Query
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
	// EscalateTo names the notify tool that gets this runbook's
	// escalation briefs instead of medic.hcl's routes; empty: the routes.
	EscalateTo      string
	EscalateToRange hcl.Range
	// MinFiring holds an alert that has fired for less than this: medic
	// waits until it has, and decides again.
	MinFiring time.Duration
	// Critical is a boolean expr program over the same env as When: true
	// marks the alert's service as critical for the policy (peak hours).
	// nil means not critical.
	Critical *Condition
	// BlastRadius says what fleet the runbook's targets belong to; nil
	// leaves the fleet unknown, and the policy bounds the spread by count.
	BlastRadius *BlastRadius

	DefRange hcl.Range
}

// BlastRadius declares a runbook's fleet: Fleet is PromQL whose value
// (summed over its series) is the fleet's size, e.g.
// count(kube_deployment_created{namespace="${labels.namespace}"}); Group
// renders the fleet's name, and the targets acted on in the last hour with
// the same group count towards the share. Group defaults to the runbook's
// name.
type BlastRadius struct {
	Fleet   *Template
	Group   *Template
	Timeout time.Duration

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

// Verify says how medic checks that a step worked: the PromQL's value just
// before the step is `before`, and its value `wait` after the step is
// `after`. Expect true means recovered; else Worse true means the step made
// things worse and its rollback runs; else nothing changed.
type Verify struct {
	PromQL *Template
	Expect *Condition
	Worse  *Condition
	Wait   time.Duration
	// Interval, when set, checks every Interval until Wait is up: the first
	// check where expect holds settles the step, and one where worse holds
	// rolls it back. Zero checks once, when Wait is up.
	Interval time.Duration
	Timeout  time.Duration

	DefRange hcl.Range
}

// Condition is an expr program compiled once at load time. Programs are
// safe to share between goroutines.
type Condition struct {
	Source  string
	Program *vm.Program

	Range hcl.Range
}

// Eval runs a verify condition.
func (c *Condition) Eval(env VerifyEnv) (bool, error) {
	out, err := vm.Run(c.Program, env)
	if err != nil {
		return false, fmt.Errorf("%s: %w", c.Source, err)
	}
	b, ok := out.(bool)
	if !ok {
		return false, fmt.Errorf("%s: gave %T, not a bool", c.Source, out)
	}
	return b, nil
}

// DefaultWorse is a verify block's worse condition when it sets none: the
// PromQL measures something bad, such as restarts, lag or errors.
const DefaultWorse = "after > before"

var defaultWorse = func() *Condition {
	prog, err := expr.Compile(DefaultWorse, expr.Env(VerifyEnv{}), expr.AsBool())
	if err != nil {
		panic(err)
	}
	return &Condition{Source: DefaultWorse, Program: prog}
}()

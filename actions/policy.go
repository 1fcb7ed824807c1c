package actions

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
)

//go:embed default.rego
var defaultPolicy string

// Result is the policy's verdict on one call.
type Result string

// The verdicts.
const (
	Allow         Result = "allow"
	Deny          Result = "deny"
	NeedsApproval Result = "needs_approval"
)

// Decision is a verdict with its reasons. Every refusal has a reason.
type Decision struct {
	Result  Result   `json:"result"`
	Reasons []string `json:"reasons"`
}

// Call is one tool call as the policy sees it.
type Call struct {
	Tool   string            `json:"tool"`
	Type   string            `json:"type"` // the executor kind
	Args   map[string]string `json:"args"`
	Risk   string            `json:"risk"`
	Target string            `json:"target"`
}

// Input is the policy's input document; the README documents it.
type Input struct {
	Call       Call    `json:"call"`
	Source     string  `json:"source"` // runbook or llm
	Runbook    string  `json:"runbook,omitempty"`
	Confidence float64 `json:"confidence"`
	Mode       string  `json:"mode"`
	// Rollback marks an undo, which rate limits and the storm brake let
	// through.
	Rollback bool `json:"rollback,omitempty"`
	// Escalation marks the notification of an escalation brief, which rate
	// limits and the storm brake let through as well.
	Escalation bool `json:"escalation,omitempty"`
	// Approved re-checks a call a human approved: approval requirements are
	// met, denials still hold.
	Approved    bool         `json:"approved,omitempty"`
	State       State        `json:"state"`
	Service     Service      `json:"service"`
	Idempotency Idempotency  `json:"idempotency"`
	Config      PolicyConfig `json:"config"`
}

// State holds the counts the policy reads, taken from medic's state.
type State struct {
	ExecutionsTargetHour int     `json:"executions_target_hour"`
	ActionsFleet10m      int     `json:"actions_fleet_10m"`
	ToolRuns             int     `json:"tool_runs"`
	ToolSuccessRate      float64 `json:"tool_success_rate"`
	TargetsAffected      int     `json:"targets_affected"`
	FleetSize            int     `json:"fleet_size"`
	// The runbook's recent outcomes: verified recoveries count as
	// successes; escalations after acting and fixes that did not hold as
	// failures.
	RunbookRuns        int     `json:"runbook_runs"`
	RunbookSuccessRate float64 `json:"runbook_success_rate"`
}

// Service describes what the target belongs to.
type Service struct {
	Critical bool `json:"critical"`
}

// Idempotency says whether the call repeats a key within its window.
type Idempotency struct {
	Key    string `json:"key,omitempty"`
	Repeat bool   `json:"repeat"`
}

// PolicyConfig carries the tunables from medic.hcl into the policy.
type PolicyConfig struct {
	MaxPerTargetHour int `json:"max_per_target_hour,omitempty"`
	StormLimit       int `json:"storm_limit,omitempty"`
	// MaxTargetsPerHour bounds the distinct targets of a group acted on
	// in an hour when the fleet's size is unknown.
	MaxTargetsPerHour int        `json:"max_targets_per_hour,omitempty"`
	PeakHours         *PeakHours `json:"peak_hours,omitempty"`
}

// PeakHours is a daily window, [Start, End) in hours of Timezone.
type PeakHours struct {
	Start    int    `json:"start"`
	End      int    `json:"end"`
	Timezone string `json:"timezone"`
}

// Allowed is the proof that the gate allowed a call. Only Gate.Evaluate
// makes one, and executors take nothing else.
type Allowed struct {
	call     Call
	decision Decision
}

// Call is the call that was allowed.
func (a *Allowed) Call() Call { return a.call }

// permits reports whether a is an allow for tool. Every executor asks it
// before doing anything.
func (a *Allowed) permits(tool string) bool {
	return a != nil && a.call.Tool != "" && a.call.Tool == tool
}

// EvalTimeout bounds one policy evaluation. A policy that takes longer is
// broken, and the call is denied.
const EvalTimeout = 250 * time.Millisecond

// Gate evaluates calls against a prepared policy. It is safe for
// concurrent use, and Load swaps the policy atomically.
type Gate struct {
	query atomic.Pointer[rego.PreparedEvalQuery]
}

// PolicyError is a policy that does not compile, with its positions.
type PolicyError struct {
	File   string
	Errors []PolicyProblem
}

// PolicyProblem is one compile error of a policy.
type PolicyProblem struct {
	Row, Col int
	Message  string
}

func (e *PolicyError) Error() string {
	var b strings.Builder
	for i, p := range e.Errors {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%s:%d:%d: %s", e.File, p.Row, p.Col, p.Message)
	}
	return b.String()
}

func keepTerm(t *ast.Term, _ *rego.EvalContext) (any, error) { return t, nil }

// capabilities are OPA's built-ins without the ones that reach outside:
// no http.send, no net.*, no opa.runtime.
func capabilities() *ast.Capabilities {
	c := ast.CapabilitiesForThisVersion()
	c.Builtins = slices.DeleteFunc(c.Builtins, func(b *ast.Builtin) bool {
		return b.Name == "http.send" || strings.HasPrefix(b.Name, "net.") || b.Name == "opa.runtime"
	})
	return c
}

// NewGate prepares the policy in path, or the default policy when path is
// empty.
func NewGate(ctx context.Context, path string) (*Gate, error) {
	g := &Gate{}
	if err := g.Load(ctx, path); err != nil {
		return nil, err
	}
	return g, nil
}

// Load prepares a policy and swaps it in; on error the previous one stays.
func (g *Gate) Load(ctx context.Context, path string) error {
	name, src := "default.rego", defaultPolicy
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("read policy: %w", err)
		}
		name, src = path, string(b)
	}
	q, err := Prepare(ctx, name, src)
	if err != nil {
		return err
	}
	g.query.Store(q)
	return nil
}

// Prepare compiles a policy into the one query medic evaluates,
// data.medic.policy.decision. Compile errors come back as a *PolicyError
// with file, row and column.
func Prepare(ctx context.Context, name, src string) (*rego.PreparedEvalQuery, error) {
	q, err := rego.New(
		rego.Query("data.medic.policy.decision"),
		rego.Module(name, src),
		rego.Capabilities(capabilities()),
		rego.StrictBuiltinErrors(true),
	).PrepareForEval(ctx)
	if err != nil {
		var errs ast.Errors
		if errors.As(err, &errs) {
			pe := &PolicyError{File: name}
			for _, e := range errs {
				p := PolicyProblem{Message: e.Message}
				if e.Location != nil {
					p.Row, p.Col = e.Location.Row, e.Location.Col
				}
				pe.Errors = append(pe.Errors, p)
			}
			return nil, pe
		}
		return nil, fmt.Errorf("prepare policy %s: %w", name, err)
	}
	return &q, nil
}

// Evaluate decides one call. It fails closed: an undefined result, a result
// of the wrong shape, an error or a timeout is a deny with the reason. Only
// an allow comes with an *Allowed.
func (g *Gate) Evaluate(ctx context.Context, in Input, now time.Time) (Decision, *Allowed) {
	d := g.decide(ctx, in, now)
	if d.Result != Allow {
		return d, nil
	}
	return d, &Allowed{call: in.Call, decision: d}
}

func (g *Gate) decide(ctx context.Context, in Input, now time.Time) Decision {
	q := g.query.Load()
	if q == nil {
		return Decision{Result: Deny, Reasons: []string{"no policy loaded"}}
	}
	input := in.value()
	ctx, cancel := context.WithTimeout(ctx, EvalTimeout)
	defer cancel()
	// Keep the result as an AST term: converting it to Go values through
	// JSON cost a quarter of the evaluation.
	rs, err := q.Eval(ctx, rego.EvalParsedInput(input), rego.EvalTime(now), rego.EvalGenerateJSON(keepTerm))
	if err != nil {
		return Decision{Result: Deny, Reasons: []string{"policy evaluation failed: " + err.Error()}}
	}
	if len(rs) != 1 || len(rs[0].Expressions) != 1 {
		return Decision{Result: Deny, Reasons: []string{"policy gave no decision (undefined means deny)"}}
	}
	term, _ := rs[0].Expressions[0].Value.(*ast.Term)
	var obj ast.Object
	if term != nil {
		obj, _ = term.Value.(ast.Object)
	}
	if obj == nil {
		return Decision{Result: Deny, Reasons: []string{"policy decision is not an object"}}
	}
	var res string
	if t := obj.Get(ast.InternedTerm("result")); t != nil {
		if s, ok := t.Value.(ast.String); ok {
			res = string(s)
		}
	}
	var reasons []string
	if t := obj.Get(ast.InternedTerm("reasons")); t != nil {
		if arr, ok := t.Value.(*ast.Array); ok {
			arr.Foreach(func(e *ast.Term) {
				if s, ok := e.Value.(ast.String); ok {
					reasons = append(reasons, string(s))
				}
			})
		}
	}
	switch Result(res) {
	case Allow, Deny, NeedsApproval:
		if len(reasons) == 0 {
			return Decision{Result: Deny, Reasons: []string{fmt.Sprintf("policy decision %q has no reasons", res)}}
		}
		return Decision{Result: Result(res), Reasons: reasons}
	}
	return Decision{Result: Deny, Reasons: []string{fmt.Sprintf("policy result %q is not allow, deny or needs_approval", res)}}
}

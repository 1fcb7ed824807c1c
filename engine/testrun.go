package engine

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/expr-lang/expr"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
	"github.com/zclconf/go-cty/cty/gocty"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/prometheus/alertmanager/notify/webhook"
	"github.com/prometheus/alertmanager/template"

	"medic/actions"
	"medic/rules"
	"medic/state"
)

// DefaultTestTime is the clock of a test that sets no `at`, so that results
// do not depend on when the tests run.
var DefaultTestTime = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

type testFile struct {
	// Runbooks lists runbook files; without it, the config's runbooks.
	Runbooks *[]string `hcl:"runbooks,optional"`
	// Config is a medic.hcl whose ignore rules and runbooks apply.
	Config *string `hcl:"config,optional"`
	// Policy replaces the default policy.
	Policy *string     `hcl:"policy,optional"`
	At     *string     `hcl:"at,optional"`
	Tests  []testBlock `hcl:"test,block"`
	Range  hcl.Range   `hcl:",def_range"`
}

type testBlock struct {
	Name  string     `hcl:"name,label"`
	At    *string    `hcl:"at,optional"`
	Alert alertBlock `hcl:"alert,block"`
	// Queries stub promql results by query name; Series by query text.
	Queries map[string][]sampleLiteral `hcl:"queries,optional"`
	Series  map[string][]sampleLiteral `hcl:"series,optional"`
	State   *stateBlock                `hcl:"state,block"`
	Verify  *verifyBlock               `hcl:"verify,block"`
	Expect  expectBlock                `hcl:"expect,block"`
	Range   hcl.Range                  `hcl:",def_range"`
}

// stateBlock is the prior state a test assumes: the counts the policy
// reads, and the runbook's attempts so far.
type stateBlock struct {
	ExecutionsTargetHour *int     `hcl:"executions_target_hour,optional"`
	ActionsFleet10m      *int     `hcl:"actions_fleet_10m,optional"`
	ToolRuns             *int     `hcl:"tool_runs,optional"`
	ToolSuccessRate      *float64 `hcl:"tool_success_rate,optional"`
	TargetsAffected      *int     `hcl:"targets_affected,optional"`
	FleetSize            *int     `hcl:"fleet_size,optional"`
	Attempts             *int     `hcl:"attempts,optional"`
}

// verifyBlock gives the verification query's values before and after.
type verifyBlock struct {
	Before float64 `hcl:"before"`
	After  float64 `hcl:"after"`
}

type sampleLiteral struct {
	Labels map[string]string `cty:"labels"`
	Value  float64           `cty:"value"`
}

type alertBlock struct {
	Labels      map[string]string `hcl:"labels"`
	Annotations map[string]string `hcl:"annotations,optional"`
	Status      *string           `hcl:"status,optional"`
	// StartsAt defaults to five minutes before the test's time.
	StartsAt *string `hcl:"starts_at,optional"`
}

type expectBlock struct {
	Decision   string   `hcl:"decision"`
	Runbook    *string  `hcl:"runbook,optional"`
	Confidence *float64 `hcl:"confidence,optional"`
	Target     *string  `hcl:"target,optional"`
	// Calls is a list of objects: tool (required), args, argv, policy and
	// reasons (substrings the policy's reasons must contain), each
	// optional.
	Calls hcl.Expression `hcl:"calls,optional"`
	// Verified says whether the runbook's expect holds for the test's
	// verify values.
	Verified *bool `hcl:"verified,optional"`
}

type callExpect struct {
	Tool    string
	Args    map[string]string
	Argv    []string
	Policy  string
	Reasons []string
}

// TestResult is one test's outcome: the differences between what was
// expected and what the decision path did, one line each.
type TestResult struct {
	Name string
	// Runbook is the runbook the test expects, if it names one.
	Runbook  string
	Decision string
	Diffs    []string
	Duration time.Duration
}

// TestFileResult is one file's outcome.
type TestFileResult struct {
	File    string
	Diags   hcl.Diagnostics
	Results []TestResult
}

// Failed reports whether any test of the file failed.
func (r *TestFileResult) Failed() bool {
	for _, t := range r.Results {
		if len(t.Diffs) > 0 {
			return true
		}
	}
	return false
}

// RunTests runs the tests of each file through the production decision path
// (Decider) with stubbed queries, in dry-run: nothing executes. Paths in a
// file are relative to it. run, when set, selects tests by name.
func RunTests(paths []string, run *regexp.Regexp) []TestFileResult {
	out := make([]TestFileResult, 0, len(paths))
	for _, p := range paths {
		out = append(out, runTestFile(p, run))
	}
	return out
}

func runTestFile(path string, run *regexp.Regexp) TestFileResult {
	r := TestFileResult{File: path}
	src, err := os.ReadFile(path)
	if err != nil {
		r.Diags = hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Cannot read test file", Detail: err.Error()}}
		return r
	}
	f, diags := hclparse.NewParser().ParseHCL(src, path)
	if diags.HasErrors() {
		r.Diags = diags
		return r
	}
	var tf testFile
	if diags = gohcl.DecodeBody(f.Body, nil, &tf); diags.HasErrors() {
		r.Diags = diags
		return r
	}
	dir := filepath.Dir(path)
	rel := func(p string) string {
		if filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	cfg := DefaultConfig()
	if tf.Config != nil {
		c, d := LoadConfig(rel(*tf.Config))
		if d.HasErrors() {
			r.Diags = d
			return r
		}
		cfg = c
	}
	// A test file names what it tests: its runbooks must exist.
	cfg.RunbooksSet = true
	if tf.Runbooks != nil {
		cfg.Runbooks = nil
		for _, rb := range *tf.Runbooks {
			cfg.Runbooks = append(cfg.Runbooks, rel(rb))
		}
	}
	if tf.Policy != nil {
		cfg.Policy = rel(*tf.Policy)
	}
	// Queries go to stubs only, never to a Prometheus the config names;
	// and no test asks an LLM: a test is deterministic and costs nothing.
	// What no runbook takes shows as the escalation it is without one.
	cfg.Prometheus, cfg.Loki = SourceConfig{}, SourceConfig{}
	cfg.LLM = LLMConfig{}
	base, diags := NewDecider(cfg, slog.New(slog.DiscardHandler))
	if diags.HasErrors() {
		r.Diags = diags
		return r
	}
	base.Host = rules.TestHost
	fileAt := DefaultTestTime
	if tf.At != nil {
		if fileAt, err = time.Parse(time.RFC3339, *tf.At); err != nil {
			r.Diags = hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Invalid at", Detail: err.Error(), Subject: tf.Range.Ptr()}}
			return r
		}
	}
	wantCalls := make([][]callExpect, len(tf.Tests))
	for i, tb := range tf.Tests {
		var d hcl.Diagnostics
		wantCalls[i], d = decodeCallExpects(tb.Expect.Calls)
		r.Diags = append(r.Diags, d...)
	}
	if r.Diags.HasErrors() {
		return r
	}
	for i, tb := range tf.Tests {
		if run != nil && !run.MatchString(tb.Name) {
			continue
		}
		start := time.Now()
		tr := runTest(base, tb, wantCalls[i], fileAt)
		tr.Duration = time.Since(start)
		r.Results = append(r.Results, tr)
	}
	return r
}

func samples(in []sampleLiteral) []rules.Sample {
	out := make([]rules.Sample, 0, len(in))
	for _, s := range in {
		out = append(out, rules.Sample{Labels: s.Labels, Value: s.Value})
	}
	return out
}

func runTest(base *Decider, tb testBlock, want []callExpect, at time.Time) TestResult {
	res := TestResult{Name: tb.Name}
	if tb.Expect.Runbook != nil {
		res.Runbook = *tb.Expect.Runbook
	}
	if tb.At != nil {
		t, err := time.Parse(time.RFC3339, *tb.At)
		if err != nil {
			res.Diffs = append(res.Diffs, fmt.Sprintf("at: %v", err))
			return res
		}
		at = t
	}
	stubs := map[string][]rules.Sample{}
	for name, s := range tb.Queries {
		stubs[name] = samples(s)
	}
	series := &SeriesFile{series: map[string][]rules.Sample{}, what: "the test (stub it in queries by name or series by text)"}
	for q, s := range tb.Series {
		series.series[q] = samples(s)
	}
	status := "firing"
	if tb.Alert.Status != nil {
		status = *tb.Alert.Status
	}
	startsAt := at.Add(-5 * time.Minute)
	if tb.Alert.StartsAt != nil {
		t, err := time.Parse(time.RFC3339, *tb.Alert.StartsAt)
		if err != nil {
			res.Diffs = append(res.Diffs, fmt.Sprintf("alert.starts_at: %v", err))
			return res
		}
		startsAt = t
	}
	alert := template.Alert{Status: status, Labels: tb.Alert.Labels, Annotations: tb.Alert.Annotations,
		StartsAt: startsAt, Fingerprint: "0000000000000000"}
	msg := &webhook.Message{Data: &template.Data{Status: status, Alerts: template.Alerts{alert}}, Version: WebhookVersion}
	d := *base
	d.QueryStubs, d.Sources = stubs, rules.Sources{Prom: series}
	if st := tb.State; st != nil {
		stub := actions.State{ToolSuccessRate: 1}
		setInt(&stub.ExecutionsTargetHour, st.ExecutionsTargetHour)
		setInt(&stub.ActionsFleet10m, st.ActionsFleet10m)
		setInt(&stub.ToolRuns, st.ToolRuns)
		setInt(&stub.TargetsAffected, st.TargetsAffected)
		setInt(&stub.FleetSize, st.FleetSize)
		if st.ToolSuccessRate != nil {
			stub.ToolSuccessRate = *st.ToolSuccessRate
		}
		d.Counts = func(in *actions.Input, _ state.CountQuery) {
			fleet := in.State.FleetSize
			in.State = stub
			if st.FleetSize == nil {
				in.State.FleetSize = fleet
			}
		}
		if st.Attempts != nil {
			d.History = &rules.History{Attempts: *st.Attempts, Alerts: 1, Firing: 5 * time.Minute}
		}
	}
	tr := d.DecideMessage(context.Background(), msg, at)
	a := tr.Alerts[0]
	res.Decision = tr.Decision
	diff := func(field, got, want string) {
		if got != want {
			res.Diffs = append(res.Diffs, fmt.Sprintf("%s: got %q, want %q", field, got, want))
		}
	}
	diff("decision", tr.Decision, tb.Expect.Decision)
	if tb.Expect.Runbook != nil {
		diff("runbook", a.Runbook, *tb.Expect.Runbook)
	}
	if tb.Expect.Confidence != nil && a.Confidence != *tb.Expect.Confidence {
		res.Diffs = append(res.Diffs, fmt.Sprintf("confidence: got %v, want %v", a.Confidence, *tb.Expect.Confidence))
	}
	if tb.Expect.Target != nil {
		diff("target", a.Target, *tb.Expect.Target)
	}
	if want != nil {
		if len(a.Calls) != len(want) {
			res.Diffs = append(res.Diffs, fmt.Sprintf("calls: got %d, want %d", len(a.Calls), len(want)))
		}
		for i := 0; i < min(len(a.Calls), len(want)); i++ {
			got, w := a.Calls[i], want[i]
			field := fmt.Sprintf("calls[%d]", i)
			diff(field+".tool", got.Tool, w.Tool)
			if w.Args != nil {
				for _, k := range sortedKeys(w.Args) {
					diff(field+".args."+k, got.Args[k], w.Args[k])
				}
				for _, k := range sortedKeys(got.Args) {
					if _, ok := w.Args[k]; !ok {
						res.Diffs = append(res.Diffs, fmt.Sprintf("%s.args.%s: got %q, not expected", field, k, got.Args[k]))
					}
				}
			}
			if w.Argv != nil {
				diff(field+".argv", fmt.Sprintf("%q", got.Argv), fmt.Sprintf("%q", w.Argv))
			}
			if w.Policy != "" {
				diff(field+".policy", string(got.Policy.Result), w.Policy)
			}
			for _, r := range w.Reasons {
				if !slices.ContainsFunc(got.Policy.Reasons, func(s string) bool { return strings.Contains(s, r) }) {
					res.Diffs = append(res.Diffs, fmt.Sprintf("%s.reasons: %q not among %q", field, r, got.Policy.Reasons))
				}
			}
		}
	}
	if tb.Expect.Verified != nil {
		switch {
		case tb.Verify == nil:
			res.Diffs = append(res.Diffs, "verified: the test has no verify block")
		case a.Verify == nil || a.Verify.Expect == nil:
			res.Diffs = append(res.Diffs, "verified: the chosen runbook has no verify block")
		default:
			out, err := expr.Run(a.Verify.Expect.Program, rules.VerifyEnv{Before: tb.Verify.Before, After: tb.Verify.After})
			got, _ := out.(bool)
			if err != nil {
				res.Diffs = append(res.Diffs, fmt.Sprintf("verified: %v", err))
			} else if got != *tb.Expect.Verified {
				res.Diffs = append(res.Diffs, fmt.Sprintf("verified: got %v, want %v (expect = %q)", got, *tb.Expect.Verified, a.Verify.Expect.Source))
			}
		}
	}
	if len(res.Diffs) > 0 && a.Reason != "" {
		res.Diffs = append(res.Diffs, "(reason given: "+a.Reason+")")
	}
	return res
}

func setInt(dst *int, v *int) {
	if v != nil {
		*dst = *v
	}
}

// decodeCallExpects reads expect.calls: a list of objects whose keys are
// tool, args, argv, policy and reasons, all but tool optional.
func decodeCallExpects(e hcl.Expression) ([]callExpect, hcl.Diagnostics) {
	if e == nil {
		return nil, nil
	}
	v, diags := e.Value(nil)
	if diags.HasErrors() || v.IsNull() {
		return nil, diags
	}
	bad := func(msg string) hcl.Diagnostics {
		return hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Invalid calls", Detail: msg, Subject: e.Range().Ptr()}}
	}
	if !v.Type().IsTupleType() && !v.Type().IsListType() {
		return nil, bad("calls must be a list of objects.")
	}
	out := []callExpect{}
	for it := v.ElementIterator(); it.Next(); {
		_, ev := it.Element()
		if !ev.Type().IsObjectType() && !ev.Type().IsMapType() {
			return nil, bad("each call must be an object with tool, and optionally args, argv, policy and reasons.")
		}
		var c callExpect
		for k, av := range ev.AsValueMap() {
			var err error
			switch k {
			case "tool":
				err = gocty.FromCtyValue(av, &c.Tool)
			case "policy":
				err = gocty.FromCtyValue(av, &c.Policy)
			case "args":
				var m map[string]string
				if cv, cerr := convert.Convert(av, cty.Map(cty.String)); cerr == nil {
					err = gocty.FromCtyValue(cv, &m)
				} else {
					err = cerr
				}
				c.Args = m
			case "argv", "reasons":
				var l []string
				if cv, cerr := convert.Convert(av, cty.List(cty.String)); cerr == nil {
					err = gocty.FromCtyValue(cv, &l)
				} else {
					err = cerr
				}
				if k == "argv" {
					c.Argv = l
				} else {
					c.Reasons = l
				}
			default:
				return nil, bad(fmt.Sprintf("unknown key %q in a call; use tool, args, argv, policy, reasons.", k))
			}
			if err != nil {
				return nil, bad(fmt.Sprintf("%s: %v.", k, err))
			}
		}
		if c.Tool == "" {
			return nil, bad("each call needs a tool.")
		}
		out = append(out, c)
	}
	return out, nil
}

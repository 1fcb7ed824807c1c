package engine

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/prometheus/alertmanager/notify/webhook"
	"github.com/prometheus/alertmanager/template"

	"medic/actions"
	"medic/rules"
)

// DefaultTestTime is the clock of a test that sets no `at`, so that results
// do not depend on when the tests run.
var DefaultTestTime = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

type testFile struct {
	Runbooks []string    `hcl:"runbooks"`
	At       *string     `hcl:"at,optional"`
	Tests    []testBlock `hcl:"test,block"`
}

type testBlock struct {
	Name    string                     `hcl:"name,label"`
	At      *string                    `hcl:"at,optional"`
	Alert   alertBlock                 `hcl:"alert,block"`
	Queries map[string][]sampleLiteral `hcl:"queries,optional"`
	Expect  expectBlock                `hcl:"expect,block"`
	Range   hcl.Range                  `hcl:",def_range"`
}

type sampleLiteral struct {
	Labels map[string]string `cty:"labels"`
	Value  float64           `cty:"value"`
}

type alertBlock struct {
	Labels      map[string]string `hcl:"labels"`
	Annotations map[string]string `hcl:"annotations,optional"`
	Status      *string           `hcl:"status,optional"`
}

type expectBlock struct {
	Decision   string        `hcl:"decision"`
	Runbook    *string       `hcl:"runbook,optional"`
	Confidence *float64      `hcl:"confidence,optional"`
	Target     *string       `hcl:"target,optional"`
	Calls      *[]callExpect `hcl:"calls,optional"`
}

type callExpect struct {
	Tool   string            `cty:"tool"`
	Args   map[string]string `cty:"args"`
	Policy string            `cty:"policy"`
}

// TestResult is one test's outcome: the differences between what was
// expected and what the decision path did, one line each.
type TestResult struct {
	Name  string
	Diffs []string
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
	files := make([]string, len(tf.Runbooks))
	for i, rb := range tf.Runbooks {
		files[i] = rb
		if !filepath.IsAbs(rb) {
			files[i] = filepath.Join(dir, rb)
		}
	}
	set, diags := rules.Load(files...)
	if diags.HasErrors() {
		r.Diags = diags
		return r
	}
	gate, err := actions.NewGate(context.Background(), "")
	if err != nil {
		r.Diags = hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Policy", Detail: err.Error()}}
		return r
	}
	fileAt := DefaultTestTime
	if tf.At != nil {
		if fileAt, err = time.Parse(time.RFC3339, *tf.At); err != nil {
			r.Diags = hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Invalid at", Detail: err.Error()}}
			return r
		}
	}
	for _, tb := range tf.Tests {
		if run != nil && !run.MatchString(tb.Name) {
			continue
		}
		r.Results = append(r.Results, runTest(set, gate, tb, fileAt))
	}
	return r
}

func runTest(set *rules.Set, gate *actions.Gate, tb testBlock, at time.Time) TestResult {
	res := TestResult{Name: tb.Name}
	if tb.At != nil {
		t, err := time.Parse(time.RFC3339, *tb.At)
		if err != nil {
			res.Diffs = append(res.Diffs, fmt.Sprintf("at: %v", err))
			return res
		}
		at = t
	}
	stubs := map[string][]rules.Sample{}
	for name, samples := range tb.Queries {
		for _, s := range samples {
			stubs[name] = append(stubs[name], rules.Sample{Labels: s.Labels, Value: s.Value})
		}
		if stubs[name] == nil {
			stubs[name] = []rules.Sample{}
		}
	}
	status := "firing"
	if tb.Alert.Status != nil {
		status = *tb.Alert.Status
	}
	alert := template.Alert{Status: status, Labels: tb.Alert.Labels, Annotations: tb.Alert.Annotations,
		StartsAt: at.Add(-5 * time.Minute), Fingerprint: "0000000000000000"}
	msg := &webhook.Message{Data: &template.Data{Status: status, Alerts: template.Alerts{alert}}, Version: WebhookVersion}
	cfg := DefaultConfig()
	d := &Decider{Config: cfg, Rules: set, Gate: gate, QueryStubs: stubs, Sources: rules.Sources{Prom: noQueries{}}}
	tr := d.DecideMessage(context.Background(), msg, at)
	a := tr.Alerts[0]
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
	if tb.Expect.Calls != nil {
		want := *tb.Expect.Calls
		if len(a.Calls) != len(want) {
			res.Diffs = append(res.Diffs, fmt.Sprintf("calls: got %d, want %d", len(a.Calls), len(want)))
		}
		for i := 0; i < min(len(a.Calls), len(want)); i++ {
			got, w := a.Calls[i], want[i]
			field := fmt.Sprintf("calls[%d]", i)
			diff(field+".tool", got.Tool, w.Tool)
			for _, k := range sortedKeys(w.Args) {
				diff(field+".args."+k, got.Args[k], w.Args[k])
			}
			for _, k := range sortedKeys(got.Args) {
				if _, ok := w.Args[k]; !ok && len(w.Args) > 0 {
					res.Diffs = append(res.Diffs, fmt.Sprintf("%s.args.%s: got %q, not expected", field, k, got.Args[k]))
				}
			}
			if w.Policy != "" {
				diff(field+".policy", string(got.Policy.Result), w.Policy)
			}
		}
	}
	if len(res.Diffs) > 0 && a.Reason != "" {
		res.Diffs = append(res.Diffs, "(reason given: "+a.Reason+")")
	}
	return res
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// noQueries fails every PromQL query a test did not stub, so that a missing
// stub shows up as a runbook that did not match, with the query named.
type noQueries struct{}

func (noQueries) Query(_ context.Context, q string, _ time.Time) ([]rules.Sample, error) {
	return nil, fmt.Errorf("no stub for this query (add it to queries by name): %s", strings.TrimSpace(q))
}

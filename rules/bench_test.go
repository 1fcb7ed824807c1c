package rules

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/expr-lang/expr/vm"
)

// generated writes a runbook file with n runbooks, each with its own
// alertname, a regex matcher, a query, a when, a confidence and one step.
func generated(tb testing.TB, n int) string {
	var b strings.Builder
	b.WriteString(`tool "restart" {
  description = "Restart a deployment."
  risk        = "medium"
  param "namespace" { pattern = "[a-z0-9]([-a-z0-9]*[a-z0-9])?" }
  param "deployment" { pattern = "[a-z0-9]([-a-z0-9.]*[a-z0-9])?" }
  exec {
    command = ["kubectl", "-n", "${param.namespace}", "rollout", "restart", "deployment/${param.deployment}"]
  }
}
`)
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, `
runbook "rb_%d" {
  description = "Generated runbook %d."
  matchers = ["alertname=\"Alert%d\"", "namespace=~\"prod-.*\""]
  target = "${labels.namespace}/${labels.deployment}"
  query "restarts" {
    promql = "increase(kube_pod_container_status_restarts_total{namespace=\"${labels.namespace}\"}[15m])"
  }
  when       = "labels.severity in ['warning', 'critical'] && sum(query.restarts, .value) >= 2"
  confidence = "labels.severity == 'critical' ? 0.9 : 0.75"
  step "restart" {
    tool = "restart"
    args = { namespace = "${labels.namespace}", deployment = "${labels.deployment}" }
  }
}
`, i, i, i)
	}
	p := filepath.Join(tb.TempDir(), "runbooks.hcl")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		tb.Fatal(err)
	}
	return p
}

// BenchmarkLoad500 is the load and compile time of 500 runbooks.
func BenchmarkLoad500(b *testing.B) {
	p := generated(b, 500)
	b.ResetTimer()
	for b.Loop() {
		if _, diags := Load(p); diags.HasErrors() {
			b.Fatal(diags)
		}
	}
}

// BenchmarkMatchRender is one alert through candidates, conditions, the
// choice and the rendered plan, with 500 runbooks loaded and the query
// results already at hand.
func BenchmarkMatchRender(b *testing.B) {
	set, diags := Load(generated(b, 500))
	if diags.HasErrors() {
		b.Fatal(diags)
	}
	labels := map[string]string{"alertname": "Alert250", "namespace": "prod-eu", "deployment": "api", "severity": "critical", "pod": "api-0"}
	env := &Env{Labels: labels, Query: map[string][]Sample{"restarts": {{Value: 3}}}, Now: time.Now()}
	b.ReportAllocs()
	for b.Loop() {
		d := set.Decide(set.Candidates(labels), env, nil)
		if d.Chosen == nil {
			b.Fatal("no match")
		}
		if _, err := set.Plan(d.Chosen.Runbook, Vars{Labels: labels}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCondition is one compiled `when` evaluated.
func BenchmarkCondition(b *testing.B) {
	set, diags := Load(generated(b, 1))
	if diags.HasErrors() {
		b.Fatal(diags)
	}
	env := &Env{Labels: map[string]string{"severity": "critical"}, Query: map[string][]Sample{"restarts": {{Value: 3}}}}
	prog := set.Runbooks[0].When.Program
	var m vm.VM
	b.ReportAllocs()
	for b.Loop() {
		if out, err := m.Run(prog, env); err != nil || out != true {
			b.Fatal(out, err)
		}
	}
}

// BenchmarkCandidates is one alert's candidate runbooks among 500: 400
// match an exact alertname, 100 a regular expression on it (sets of names,
// literal prefixes, and patterns that need a literal somewhere inside).
func BenchmarkCandidates(b *testing.B) {
	var src strings.Builder
	src.WriteString(`tool "noop" {
  description = "Does nothing."
  risk        = "low"
  exec { command = ["/bin/true"] }
}
`)
	for i := range 500 {
		var match string
		switch {
		case i < 400:
			match = fmt.Sprintf("match { alertname = \"Alert%d\" }", i)
		case i < 440:
			match = fmt.Sprintf("match_re { alertname = \"Set%dA|Set%dB|Set%dC\" }", i, i, i)
		case i < 480:
			match = fmt.Sprintf("match_re { alertname = \"Prefix%d.*\" }", i)
		default:
			match = fmt.Sprintf("match_re { alertname = \".*Storm%d.*\" }", i)
		}
		fmt.Fprintf(&src, "runbook \"rb_%d\" {\n  description = \"Generated.\"\n  %s\n  target = \"x\"\n  step \"noop\" { tool = \"noop\" }\n}\n", i, match)
	}
	set, diags := Parse("candidates.hcl", []byte(src.String()))
	if diags.HasErrors() {
		b.Fatal(diags)
	}
	labels := map[string]string{"alertname": "Alert250", "namespace": "prod-eu", "severity": "critical", "pod": "api-0"}
	b.ReportAllocs()
	for b.Loop() {
		if c := set.Candidates(labels); len(c) != 1 {
			b.Fatalf("%d candidates", len(c))
		}
	}
}

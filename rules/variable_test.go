package rules

import (
	"strings"
	"testing"
)

const variableRunbooks = `
variable "stall_window" {
  description = "How long the offset must stand still."
  default     = "10m"
}
tool "page" {
  description = "Page."
  risk        = "low"
  notify {
    channel  = "webhook"
    url_file = "hook"
  }
}
runbook "stall" {
  description = "A stalled partition."
  matchers    = ["alertname=\"Lag\""]
  target      = "${labels.group}"
  query "stuck" {
    promql = "changes(offset{group=\"${labels.group}\"}[${var.stall_window}]) == 0"
  }
  when = "len(query.stuck) == 1"
  step "page" { tool = "page" }
}
`

// TestVariables: a variable renders its default, the config overrides it,
// an undeclared override is refused, and a value is escaped as any other
// value is, so an operator's typo cannot change the query's shape.
func TestVariables(t *testing.T) {
	set, diags := Parse("v.hcl", []byte(variableRunbooks))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	q := set.Runbook("stall").Queries[0].Expr
	render := func() (string, error) {
		return q.RenderQuery(Vars{Labels: map[string]string{"group": "billing"}, Var: set.Var})
	}
	if got, err := render(); err != nil || got != `changes(offset{group="billing"}[10m]) == 0` {
		t.Fatalf("default: %q %v", got, err)
	}
	if err := set.Override(map[string]string{"stall_window": "20s"}); err != nil {
		t.Fatal(err)
	}
	if got, err := render(); err != nil || got != `changes(offset{group="billing"}[20s]) == 0` {
		t.Fatalf("overridden: %q %v", got, err)
	}
	if err := set.Override(map[string]string{"stall_windw": "1m", "other": "x"}); err == nil ||
		!strings.Contains(err.Error(), "variable other, stall_windw; declared: stall_window") {
		t.Fatalf("undeclared override: %v", err)
	}
	if set.Var["stall_window"] != "20s" {
		t.Fatalf("a refused override changed the value: %q", set.Var["stall_window"])
	}
	set.Override(map[string]string{"stall_window": "1m]) or vector(1"})
	if got, err := render(); err == nil {
		t.Fatalf("a value that is no plain token rendered: %q", got)
	}
}

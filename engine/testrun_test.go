package engine

import (
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"medic/rules"
)

// TestShippedTestsCoverEveryRunbook runs examples/tests and checks that
// every runbook of runbooks.hcl is the expected runbook of a passing test.
// With -v it prints the runbook to tests listing.
func TestShippedTestsCoverEveryRunbook(t *testing.T) {
	files, _ := filepath.Glob("../examples/tests/*.hcl")
	set, diags := rules.Load("../runbooks.hcl")
	if diags.HasErrors() || len(files) == 0 {
		t.Fatal(diags, files)
	}
	byRunbook := map[string][]string{}
	for _, r := range RunTests(files, nil) {
		if r.Diags.HasErrors() {
			t.Fatal(r.Diags)
		}
		for _, tr := range r.Results {
			if len(tr.Diffs) > 0 {
				t.Errorf("%s: %q failed: %v", r.File, tr.Name, tr.Diffs)
			}
			if tr.Runbook != "" {
				byRunbook[tr.Runbook] = append(byRunbook[tr.Runbook], tr.Name)
			}
		}
	}
	var names []string
	for _, rb := range set.Runbooks {
		names = append(names, rb.Name)
	}
	sort.Strings(names)
	for _, n := range names {
		if len(byRunbook[n]) == 0 {
			t.Errorf("runbook %s has no test that expects it", n)
			continue
		}
		t.Logf("%-32s %s", n, strings.Join(byRunbook[n], "; "))
	}
}

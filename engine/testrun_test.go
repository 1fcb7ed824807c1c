package engine

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
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

// TestTestsNeverAskTheLLM: a test file whose config has an llm block still
// decides without the model; an unmatched alert shows the escalation.
func TestTestsNeverAskTheLLM(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		http.Error(w, `{"error":{"message":"no"}}`, http.StatusInternalServerError)
	}))
	defer srv.Close()
	write("medic.hcl", fmt.Sprintf("llm {\n  provider = \"openai\"\n  model = \"m\"\n  base_url = %q\n  retries = 0\n}\n", srv.URL+"/v1"))
	write("runbooks.hcl", "")
	p := write("t.hcl", `
config   = "medic.hcl"
runbooks = ["runbooks.hcl"]
test "unmatched escalates, no model" {
  alert {
    labels = { alertname = "Nobody" }
  }
  expect {
    decision = "escalate"
  }
}
`)
	res := RunTests([]string{p}, nil)
	if res[0].Diags.HasErrors() || len(res[0].Results) != 1 || len(res[0].Results[0].Diffs) != 0 || calls.Load() != 0 {
		t.Fatalf("%v %+v, %d model calls", res[0].Diags, res[0].Results, calls.Load())
	}
}

package rules

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzLoad: no runbook source crashes the loader, and what loads has its
// conditions compiled and its calls resolved.
func FuzzLoad(f *testing.F) {
	for _, p := range []string{"testdata/good.runbooks.hcl", "testdata/bad.expr_column_after_escapes.hcl", "testdata/bad.unknown_tool.hcl"} {
		src, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(src)
	}
	f.Add([]byte(matchSrc))
	f.Add([]byte(`runbook "x" { when = "$${" }`))
	f.Fuzz(func(t *testing.T, src []byte) {
		set, diags := Parse("fuzz.hcl", src)
		if diags.HasErrors() {
			if set != nil {
				t.Fatal("a set with errors")
			}
			return
		}
		for _, rb := range set.Runbooks {
			if rb.When != nil && rb.When.Program == nil || rb.Confidence != nil && rb.Confidence.Program == nil {
				t.Fatalf("runbook %s has an uncompiled condition", rb.Name)
			}
			for _, st := range rb.Steps {
				if set.Tools[st.Call.Tool] == nil {
					t.Fatalf("runbook %s calls unknown tool %s", rb.Name, st.Call.Tool)
				}
			}
		}
	})
}

// FuzzRenderHostileLabels: whatever the labels hold, a plan either fails or
// holds only arguments that pass their parameters, in an argv of fixed
// shape.
func FuzzRenderHostileLabels(f *testing.F) {
	for _, v := range hostileValues {
		f.Add(v, "api")
	}
	f.Add("shop", "api")
	set := mustParse(f, matchSrc)
	rb := set.Runbooks[slicesIndex(set.Runbooks, "crashloop_restart")]
	tool := set.Tools["restart"]
	f.Fuzz(func(t *testing.T, ns, dep string) {
		calls, err := set.Plan(rb, Vars{Labels: map[string]string{"namespace": ns, "deployment": dep}})
		if err != nil {
			return
		}
		c := calls[0]
		if len(c.Argv) != 6 || c.Argv[2] != ns || c.Argv[5] != "deployment/"+dep {
			t.Fatalf("argv %q for %q %q", c.Argv, ns, dep)
		}
		for name, v := range c.Args {
			p := tool.Param(name)
			if !p.Pattern.MatchString(v) || strings.HasPrefix(v, "-") || strings.IndexFunc(v, IsControl) >= 0 {
				t.Fatalf("%s = %q passed", name, v)
			}
		}
	})
}

// FuzzCandidatesIndex: for any pattern and any alertname, the index finds a
// runbook exactly when its matcher matches.
func FuzzCandidatesIndex(f *testing.F) {
	for _, s := range [][2]string{{"A|B", "A"}, {"Node.*", "NodeDown"}, {".*Storm.*", "BigStorm"}, {"(?i)x", "X"}, {"(A|B)(C|D)", "BD"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, name string) {
		if _, err := regexp.Compile(pattern); err != nil || !utf8.ValidString(name) {
			return
		}
		src := fmt.Sprintf("tool \"noop\" {\n  description = \"x\"\n  risk = \"low\"\n  exec { command = [\"/bin/true\"] }\n}\n"+
			"runbook \"r\" {\n  description = \"x\"\n  match_re { alertname = %q }\n  target = \"x\"\n  step \"s\" { tool = \"noop\" }\n}\n", pattern)
		set, diags := Parse("f.hcl", []byte(src))
		if diags.HasErrors() {
			return
		}
		labels := map[string]string{"alertname": name}
		if got, want := len(set.Candidates(labels)) == 1, matches(set.Runbooks[0], labels); got != want {
			t.Fatalf("pattern %q, name %q: index says %v, matcher %v", pattern, name, got, want)
		}
	})
}

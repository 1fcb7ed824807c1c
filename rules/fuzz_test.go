package rules

import (
	"os"
	"strings"
	"testing"
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

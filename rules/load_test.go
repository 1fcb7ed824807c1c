package rules

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden diagnostics in testdata")

func TestGoodFiles(t *testing.T) {
	files, _ := filepath.Glob("testdata/good.*.hcl")
	for _, f := range files {
		t.Run(f, func(t *testing.T) {
			set, diags := Load(f)
			if diags.HasErrors() {
				var b bytes.Buffer
				WriteDiagnostics(&b, diags)
				t.Fatal(b.String())
			}
			if len(set.Runbooks) == 0 || len(set.Tools) == 0 {
				t.Fatalf("loaded %d runbooks, %d tools", len(set.Runbooks), len(set.Tools))
			}
		})
	}
}

// TestBadFiles loads each testdata/bad.<case>.hcl, which holds one mistake,
// and compares the diagnostics with bad.<case>.golden: every mistake must be
// reported, at the right file:line:col.
func TestBadFiles(t *testing.T) {
	files, _ := filepath.Glob("testdata/bad.*.hcl")
	if len(files) < 15 {
		t.Fatalf("only %d broken fixtures", len(files))
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".hcl"), func(t *testing.T) {
			set, diags := Load(f)
			if set != nil || !diags.HasErrors() {
				t.Fatal("loaded without an error")
			}
			var b bytes.Buffer
			WriteDiagnostics(&b, diags)
			golden := strings.TrimSuffix(f, ".hcl") + ".golden"
			if *update {
				if err := os.WriteFile(golden, b.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if got := b.String(); got != string(want) {
				t.Errorf("diagnostics differ from %s\n--- got\n%s\n--- want\n%s", golden, got, want)
			}
		})
	}
}

package llm

import (
	"go/parser"
	"go/token"
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestImports keeps the layering (README, Layout) from rotting: this package may
// import only the medic packages listed here.
func TestImports(t *testing.T) {
	var allowed map[string]bool = nil
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if (p == "medic" || strings.HasPrefix(p, "medic/")) && !allowed[p] {
				t.Errorf("%s imports %s, which the layering forbids", name, p)
			}
		}
	}
}

package rules

import (
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

func queryTemplate(t testing.TB, src string) *Template {
	t.Helper()
	e, diags := hclsyntax.ParseTemplate([]byte(src), "q.hcl", hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	return newTemplate(e)
}

// forged is the label value that, spliced in, turned an empty lag query
// into a constant 5000.
const forged = `orders"} or label_replace(vector(5000), "topic", "x", "", "") or {x="y`

func TestRenderQueryEscapesByContext(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, src, value, want, err string
	}{
		{"double quoted", `lag{topic="${labels.v}"}`, forged,
			`lag{topic="orders\"} or label_replace(vector(5000), \"topic\", \"x\", \"\", \"\") or {x=\"y"}`, ""},
		{"single quoted", `lag{topic='${labels.v}'}`, `a'b\c`, `lag{topic='a\'b\\c'}`, ""},
		{"control characters", `x{a="${labels.v}"}`, "l1\nl2\t\x00", `x{a="l1\nl2\t\x00"}`, ""},
		{"regexp matcher", `x{a=~"${labels.v}.*"}`, `a"|.*`, `x{a=~"a\"|.*.*"}`, ""},
		{"function call", `x{a="${lower(labels.v)}"}`, `A"B`, `x{a="a\"b"}`, ""},
		{"escaped quote before", `x{a="\"${labels.v}"}`, `q"`, `x{a="\"q\""}`, ""},
		{"number outside", `x > ${labels.v}`, "0.5", `x > 0.5`, ""},
		{"duration outside", `rate(x[${labels.v}])`, "5m", `rate(x[5m])`, ""},
		{"code outside", `x > ${labels.v}`, "0 or vector(1)", "", "outside a string literal"},
		{"empty outside", `x > ${labels.v}`, "", "", "outside a string literal"},
		{"whole query", `${labels.v}`, "up", "up", ""},
		{"raw string", "x{a=`${labels.v}`}", "a\"b", "x{a=`a\"b`}", ""},
		{"raw string end", "x{a=`${labels.v}`}", "a`} or vector(1) or {b=`", "", "raw string"},
		{"comment", "x # ${labels.v}\n", "a\nvector(1)", "", "comment"},
		{"logql line filter", `{job="${labels.v}"} |= "${labels.v}"`, `a"b`, `{job="a\"b"} |= "a\"b"`, ""},
		{"quote in the author's comment", "x # it's\n+ on(a) y{a=\"${labels.v}\"}", `"`, "x # it's\n+ on(a) y{a=\"\\\"\"}", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := queryTemplate(t, tc.src).RenderQuery(Vars{Labels: map[string]string{"v": tc.value}})
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %q, %v; want an error with %q", got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v\nwant %q", got, err, tc.want)
			}
		})
	}
}

// FuzzRenderQuery: whatever a label holds, inside a string literal it
// comes back out of Go's unquoting (which PromQL and LogQL use) as exactly
// itself, and the text after it is still the template's.
func FuzzRenderQuery(f *testing.F) {
	for _, v := range append(hostileValues, forged, `\`, `"`, "\n", "a\\\"b") {
		f.Add(v)
	}
	tm := queryTemplate(f, `x{a="${labels.v}"} + y{b='${labels.v}'}`)
	f.Fuzz(func(t *testing.T, v string) {
		got, err := tm.RenderQuery(Vars{Labels: map[string]string{"v": v}})
		if err != nil {
			t.Fatalf("%q: %v", v, err)
		}
		rest, ok := strings.CutPrefix(got, `x{a=`)
		if !ok {
			t.Fatalf("%q", got)
		}
		lit, err := strconv.QuotedPrefix(rest)
		if err != nil {
			t.Fatalf("%q: %v", got, err)
		}
		if s, _ := strconv.Unquote(lit); s != v {
			t.Fatalf("%q unquotes to %q, want %q", lit, s, v)
		}
		rest = rest[len(lit):]
		if !strings.HasPrefix(rest, `} + y{b='`) || !strings.HasSuffix(rest, `'}`) {
			t.Fatalf("the template's text moved: %q", got)
		}
		var lx queryLexer
		var b strings.Builder
		lx.literal(&b, rest[len(`} + y{b=`):])
		if lx.quote != 0 || lx.escaped {
			t.Fatalf("the single-quoted literal does not close where the template closes it: %q", got)
		}
	})
}

package rules

import (
	"fmt"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/tryfunc"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"
)

// Template is an HCL template kept unevaluated until run time, when it
// renders against one alert. Its variables were checked at load time.
type Template struct {
	Expr  hcl.Expression
	Range hcl.Range

	fast   []part
	isFast bool
}

// functions are the only functions templates may call: pure string and
// collection helpers, never file, env or exec.
var functions = map[string]function.Function{
	"lookup":     stdlib.LookupFunc,
	"try":        tryfunc.TryFunc,
	"can":        tryfunc.CanFunc,
	"coalesce":   stdlib.CoalesceFunc,
	"lower":      stdlib.LowerFunc,
	"upper":      stdlib.UpperFunc,
	"trimspace":  stdlib.TrimSpaceFunc,
	"trimprefix": stdlib.TrimPrefixFunc,
	"trimsuffix": stdlib.TrimSuffixFunc,
	"replace":    stdlib.ReplaceFunc,
	"regex":      stdlib.RegexFunc,
	"split":      stdlib.SplitFunc,
	"join":       stdlib.JoinFunc,
	"substr":     stdlib.SubstrFunc,
	"format":     stdlib.FormatFunc,
	"length":     stdlib.LengthFunc,
	"element":    stdlib.ElementFunc,
	"floor":      stdlib.FloorFunc,
	"ceil":       stdlib.CeilFunc,
	"min":        stdlib.MinFunc,
	"max":        stdlib.MaxFunc,
	"abs":        stdlib.AbsoluteFunc,
}

// scope says which variables a template may use: each root, and for the
// roots whose attribute names are known at load time (param), those names.
type scope struct {
	roots map[string]cty.Type
	// attrs lists the allowed attribute names under a root; a root absent
	// here takes any attribute.
	attrs map[string]map[string]bool
	// what names the place for messages, e.g. "a tool's templates".
	what string
}

// checkTemplate reports traversals outside the scope and evaluates the
// template against unknown values of the right types, which catches unknown
// functions and type errors without rendering anything.
func checkTemplate(t *Template, sc scope) hcl.Diagnostics {
	var diags hcl.Diagnostics
	for _, tr := range t.Expr.Variables() {
		root := tr.RootName()
		if _, ok := sc.roots[root]; !ok {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Unknown variable",
				Detail:   fmt.Sprintf("There is no variable %q in %s; use %s.", root, sc.what, listRoots(sc)),
				Subject:  tr.SourceRange().Ptr(),
			})
			continue
		}
		allowed, restricted := sc.attrs[root]
		if !restricted || len(tr) < 2 {
			continue
		}
		var name string
		switch step := tr[1].(type) {
		case hcl.TraverseAttr:
			name = step.Name
		case hcl.TraverseIndex:
			if step.Key.Type() == cty.String {
				name = step.Key.AsString()
			}
		}
		if name != "" && !allowed[name] {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Unknown " + root,
				Detail:   fmt.Sprintf("%s.%s is not declared here; declared: %s.", root, name, listNames(allowed)),
				Subject:  tr.SourceRange().Ptr(),
			})
		}
	}
	if diags.HasErrors() {
		return diags
	}
	vars := map[string]cty.Value{}
	for root, ty := range sc.roots {
		vars[root] = cty.UnknownVal(ty)
	}
	v, d := t.Expr.Value(&hcl.EvalContext{Variables: vars, Functions: functions})
	diags = append(diags, d...)
	if !d.HasErrors() && v.Type() != cty.DynamicPseudoType {
		if _, err := convert.Convert(v, cty.String); err != nil {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Not a string",
				Detail:   fmt.Sprintf("The template must render to a string: %v.", err),
				Subject:  t.Range.Ptr(),
			})
		}
	}
	return diags
}

func listRoots(sc scope) string {
	names := make([]string, 0, len(sc.roots))
	for r := range sc.roots {
		names = append(names, r)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

func listNames(m map[string]bool) string {
	if len(m) == 0 {
		return "none"
	}
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// Vars are the values a template renders against.
type Vars struct {
	Labels      map[string]string
	Annotations map[string]string
	Params      map[string]string
	// Var holds the runbook variables' values (Set.Var).
	Var map[string]string
	// Query holds promql results, for step arguments.
	Query map[string][]Sample
}

func queryValue(q map[string][]Sample) cty.Value {
	attrs := make(map[string]cty.Value, len(q))
	for name, samples := range q {
		if len(samples) == 0 {
			attrs[name] = cty.ListValEmpty(sampleType)
			continue
		}
		vals := make([]cty.Value, len(samples))
		for i, s := range samples {
			vals[i] = cty.ObjectVal(map[string]cty.Value{"labels": stringMap(s.Labels), "value": cty.NumberFloatVal(s.Value)})
		}
		attrs[name] = cty.ListVal(vals)
	}
	return cty.ObjectVal(attrs)
}

func stringMap(m map[string]string) cty.Value {
	if len(m) == 0 {
		return cty.MapValEmpty(cty.String)
	}
	vals := make(map[string]cty.Value, len(m))
	for k, v := range m {
		vals[k] = cty.StringVal(v)
	}
	return cty.MapVal(vals)
}

// Render evaluates the template. A failure is an error, never a partial
// string: a call whose argument cannot render does not run.
func (t *Template) Render(v Vars) (string, error) {
	val, diags := t.Expr.Value(evalContext(v))
	if diags.HasErrors() {
		return "", fmt.Errorf("render %s: %s", t.Range, diagsText(diags))
	}
	if val.IsNull() || !val.IsKnown() {
		return "", fmt.Errorf("render %s: no value", t.Range)
	}
	s, err := convert.Convert(val, cty.String)
	if err != nil {
		return "", fmt.Errorf("render %s: %v", t.Range, err)
	}
	return s.AsString(), nil
}

// evalContext is a fresh context for one render: the values, and only the
// pure functions.
func evalContext(v Vars) *hcl.EvalContext {
	return &hcl.EvalContext{
		Variables: map[string]cty.Value{
			"labels":      stringMap(v.Labels),
			"annotations": stringMap(v.Annotations),
			"param":       stringMap(v.Params),
			"var":         stringMap(v.Var),
			"query":       queryValue(v.Query),
		},
		Functions: functions,
	}
}

func diagsText(diags hcl.Diagnostics) string {
	var parts []string
	for _, d := range diags {
		if d.Severity == hcl.DiagError {
			parts = append(parts, strings.TrimSuffix(d.Summary+": "+d.Detail, "."))
		}
	}
	return strings.Join(parts, "; ")
}

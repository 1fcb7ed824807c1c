package rules

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/prometheus/alertmanager/pkg/labels"
	"github.com/prometheus/common/model"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
	"github.com/zclconf/go-cty/cty/gocty"
)

// Set is a loaded, validated registry of tools and runbooks.
type Set struct {
	Tools     map[string]*Tool
	Runbooks  []*Runbook
	Variables map[string]*Variable
	// Var holds each variable's value: its default, or the config's.
	Var map[string]string
	// Files are the sources, for printing diagnostics with snippets.
	Files map[string]*hcl.File

	index  *index
	byName map[string]*Runbook
}

// Tool returns the tool with the name, or nil.
func (s *Set) Tool(name string) *Tool { return s.Tools[name] }

// Runbook returns the runbook with the name, or nil.
func (s *Set) Runbook(name string) *Runbook { return s.byName[name] }

// Load reads, validates and compiles the runbook files. Every problem found
// in every file is returned; the Set is nil when any is an error. A glob in
// paths is expanded, and a glob that matches nothing is an error, as a typo
// in a path would otherwise load no runbooks at all.
func Load(paths ...string) (*Set, hcl.Diagnostics) {
	var files []string
	var diags hcl.Diagnostics
	for _, p := range paths {
		matches, err := filepath.Glob(p)
		if err != nil || len(matches) == 0 {
			if _, serr := os.Stat(p); serr == nil {
				matches = []string{p}
			} else {
				diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "No runbook files", Detail: fmt.Sprintf("%s matches no file.", p)})
				continue
			}
		}
		files = append(files, matches...)
	}
	l := newLoader()
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Cannot read runbook file", Detail: err.Error() + "."})
			continue
		}
		diags = append(diags, l.add(f, src)...)
	}
	return l.finish(diags)
}

// Parse loads runbooks from one in-memory file; see Load.
func Parse(filename string, src []byte) (*Set, hcl.Diagnostics) {
	l := newLoader()
	return l.finish(l.add(filename, src))
}

func newLoader() *loader {
	return &loader{parser: hclparse.NewParser(), set: &Set{Tools: map[string]*Tool{}, Variables: map[string]*Variable{}, Var: map[string]string{}}, srcs: map[string][]byte{}, runbooks: map[string]*Runbook{}, varNames: map[string]bool{}}
}

// add parses one file; finish decodes it.
func (l *loader) add(filename string, src []byte) hcl.Diagnostics {
	hf, diags := l.parser.ParseHCL(src, filename)
	if hf == nil || diags.HasErrors() {
		return diags
	}
	l.srcs[filename] = src
	l.files = append(l.files, hf)
	return diags
}

// finish decodes the parsed files, variables first so that any file may
// use a variable another declares, resolves what needs every file, and
// returns the Set, or nil when any diagnostic is an error.
func (l *loader) finish(diags hcl.Diagnostics) (*Set, hcl.Diagnostics) {
	var blocks []*hcl.Block
	for _, f := range l.files {
		content, d := f.Body.Content(fileSchema)
		diags = append(diags, d...)
		for _, b := range content.Blocks {
			if !nameRE.MatchString(b.Labels[0]) {
				diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid name",
					Detail:  fmt.Sprintf("%q must be snake_case: a lowercase letter, then lowercase letters, digits or underscores, 63 at most.", b.Labels[0]),
					Subject: b.LabelRanges[0].Ptr()})
				continue
			}
			if b.Type == "variable" {
				diags = append(diags, l.variable(b)...)
				continue
			}
			blocks = append(blocks, b)
		}
	}
	for _, b := range blocks {
		switch b.Type {
		case "tool":
			diags = append(diags, l.tool(b)...)
		case "runbook":
			diags = append(diags, l.runbook(b)...)
		}
	}
	diags = append(diags, l.resolve()...)
	l.set.Files = l.parser.Files()
	if diags.HasErrors() {
		return nil, diags
	}
	return l.set, diags
}

type loader struct {
	parser   *hclparse.Parser
	set      *Set
	srcs     map[string][]byte
	runbooks map[string]*Runbook
	files    []*hcl.File
	// varNames are the declared variables, for template scopes.
	varNames map[string]bool
	// calls are checked once every tool is known.
	calls []pendingCall
}

type pendingCall struct {
	call  *Call
	where string
	vars  scope
	// readOnly requires a read-only, low-risk tool (enrichment queries).
	readOnly bool
	// inherited lists the arguments a rollback took from its step; those
	// its tool does not take are dropped instead of reported.
	inherited map[string]bool
	// precheck marks a tool's precheck, whose tool may not have one itself.
	precheck bool
}

var fileSchema = &hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{
	{Type: "tool", LabelNames: []string{"name"}},
	{Type: "runbook", LabelNames: []string{"name"}},
	{Type: "variable", LabelNames: []string{"name"}},
}}

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}$`)

func (l *loader) src(r hcl.Range) []byte { return l.srcs[r.Filename] }

// resolve checks what needs every file loaded: tool references.
func (l *loader) resolve() hcl.Diagnostics {
	var diags hcl.Diagnostics
	for _, rb := range l.set.Runbooks {
		if rb.EscalateTo == "" {
			continue
		}
		if t := l.set.Tools[rb.EscalateTo]; t == nil || t.Executor.Kind != NotifyKind {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid escalate_to",
				Detail:  fmt.Sprintf("runbook %q: escalate_to = %q must name a notify tool.", rb.Name, rb.EscalateTo),
				Subject: rb.EscalateToRange.Ptr()})
		}
	}
	for _, pc := range l.calls {
		t := l.set.Tools[pc.call.Tool]
		if t == nil {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Unknown tool",
				Detail:  fmt.Sprintf("%s names tool %q, which no file defines; defined: %s.", pc.where, pc.call.Tool, listNames(toolNames(l.set.Tools))),
				Subject: pc.call.ToolRange.Ptr()})
			continue
		}
		if pc.precheck && t.Precheck != nil {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Nested precheck",
				Detail:  fmt.Sprintf("%s uses tool %q, which has a precheck of its own.", pc.where, t.Name),
				Subject: pc.call.ToolRange.Ptr()})
		}
		if pc.readOnly && (!t.ReadOnly || t.Risk != RiskLow) {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Tool not read-only",
				Detail:  fmt.Sprintf("%s runs tool %q, but only low-risk tools with read_only = true may run there.", pc.where, t.Name),
				Subject: pc.call.ToolRange.Ptr()})
		}
		for name, arg := range pc.call.Args {
			if t.Param(name) == nil && pc.inherited[name] {
				delete(pc.call.Args, name)
				continue
			}
			if t.Param(name) == nil {
				diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Unknown argument",
					Detail:  fmt.Sprintf("Tool %q has no parameter %q; its parameters: %s.", t.Name, name, listNames(paramNames(t))),
					Subject: arg.Range.Ptr()})
				continue
			}
			diags = append(diags, checkTemplate(arg, pc.vars)...)
		}
		for _, p := range t.Params {
			if _, ok := pc.call.Args[p.Name]; !ok && !p.Optional {
				diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Missing argument",
					Detail:  fmt.Sprintf("%s calls tool %q without its required parameter %q.", pc.where, t.Name, p.Name),
					Subject: pc.call.DefRange.Ptr()})
			}
		}
	}
	sort.SliceStable(l.set.Runbooks, func(i, j int) bool { return l.set.Runbooks[i].Name < l.set.Runbooks[j].Name })
	l.set.index = buildIndex(l.set.Runbooks)
	l.set.byName = l.runbooks
	return diags
}

func toolNames(m map[string]*Tool) map[string]bool {
	out := map[string]bool{}
	for n := range m {
		out[n] = true
	}
	return out
}

func paramNames(t *Tool) map[string]bool {
	out := map[string]bool{}
	for _, p := range t.Params {
		out[p.Name] = true
	}
	return out
}

// attrs is a block's attributes, with helpers that report problems at the
// attribute.
type attrs struct {
	m     hcl.Attributes
	diags hcl.Diagnostics
}

func (a *attrs) has(name string) bool { _, ok := a.m[name]; return ok }

func (a *attrs) str(name, def string) string {
	attr, ok := a.m[name]
	if !ok {
		return def
	}
	v, d := attr.Expr.Value(nil)
	a.diags = append(a.diags, d...)
	if d.HasErrors() {
		return def
	}
	if v.IsNull() || v.Type() != cty.String {
		a.diags = append(a.diags, attrDiag(attr, "Invalid value", fmt.Sprintf("%s must be a string.", name)))
		return def
	}
	return v.AsString()
}

func (a *attrs) oneOf(name, def string, allowed ...string) string {
	s := a.str(name, def)
	if !slices.Contains(allowed, s) {
		a.diags = append(a.diags, attrDiag(a.m[name], "Invalid "+name, fmt.Sprintf("%q is not one of %v.", s, allowed)))
		return def
	}
	return s
}

func (a *attrs) boolean(name string, def bool) bool {
	b := def
	a.decode(name, cty.Bool, &b, "true or false")
	return b
}

func (a *attrs) number(name string) *float64 {
	var f float64
	if !a.decode(name, cty.Number, &f, "a number") {
		return nil
	}
	return &f
}

func (a *attrs) integer(name string, def, lo, hi int) int {
	f := a.number(name)
	if f == nil {
		return def
	}
	if *f != float64(int(*f)) || int(*f) < lo || int(*f) > hi {
		a.diags = append(a.diags, attrDiag(a.m[name], "Invalid "+name, fmt.Sprintf("%s must be a whole number from %d to %d.", name, lo, hi)))
		return def
	}
	return int(*f)
}

func (a *attrs) duration(name string, def time.Duration) time.Duration {
	if !a.has(name) {
		return def
	}
	s := a.str(name, "")
	d, err := model.ParseDuration(s)
	if err != nil || d <= 0 {
		a.diags = append(a.diags, attrDiag(a.m[name], "Invalid duration", fmt.Sprintf("%s = %q is not a positive duration such as \"30s\" or \"5m\".", name, s)))
		return def
	}
	return time.Duration(d)
}

func (a *attrs) strings(name string) []string {
	var out []string
	a.decode(name, cty.List(cty.String), &out, "a list of strings")
	return out
}

// decode reads an attribute with no EvalContext, converts it to ty and
// stores it in dst. It reports a diagnostic and returns false when the
// attribute is there but unusable; it returns false, silently, when absent.
func (a *attrs) decode(name string, ty cty.Type, dst any, want string) bool {
	attr, ok := a.m[name]
	if !ok {
		return false
	}
	v, d := attr.Expr.Value(nil)
	a.diags = append(a.diags, d...)
	if d.HasErrors() {
		return false
	}
	cv, err := convert.Convert(v, ty)
	if err == nil {
		err = gocty.FromCtyValue(cv, dst)
	}
	if err != nil {
		a.diags = append(a.diags, attrDiag(attr, "Invalid value", fmt.Sprintf("%s must be %s.", name, want)))
		return false
	}
	return true
}

func (a *attrs) template(name string) *Template {
	attr, ok := a.m[name]
	if !ok {
		return nil
	}
	return newTemplate(attr.Expr)
}

func newTemplate(e hcl.Expression) *Template {
	t := &Template{Expr: e, Range: e.Range()} // the only constructor
	t.compileFast()
	return t
}

// templateList reads a list whose elements are templates.
func (a *attrs) templateList(name string) []*Template {
	attr, ok := a.m[name]
	if !ok {
		return nil
	}
	exprs, d := hcl.ExprList(attr.Expr)
	a.diags = append(a.diags, d...)
	out := make([]*Template, 0, len(exprs))
	for _, e := range exprs {
		out = append(out, newTemplate(e))
	}
	return out
}

// templateMap reads an object whose values are templates and whose keys are
// plain names.
func (a *attrs) templateMap(name string) (map[string]*Template, map[string]hcl.Range) {
	attr, ok := a.m[name]
	if !ok {
		return nil, nil
	}
	return templateMapOf(attr.Expr, &a.diags)
}

func templateMapOf(e hcl.Expression, diags *hcl.Diagnostics) (map[string]*Template, map[string]hcl.Range) {
	pairs, d := hcl.ExprMap(e)
	*diags = append(*diags, d...)
	out := map[string]*Template{}
	keys := map[string]hcl.Range{}
	for _, kv := range pairs {
		k, d := kv.Key.Value(nil)
		if d.HasErrors() || k.Type() != cty.String {
			*diags = append(*diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid key", Detail: "Keys must be plain names.", Subject: kv.Key.Range().Ptr()})
			continue
		}
		name := k.AsString()
		if prev, dup := keys[name]; dup {
			*diags = append(*diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Duplicate key",
				Detail: fmt.Sprintf("%q is already set at %s.", name, prev), Subject: kv.Key.Range().Ptr()})
			continue
		}
		keys[name] = kv.Key.Range()
		out[name] = newTemplate(kv.Value)
	}
	return out, keys
}

func (a *attrs) regexp(name string) *regexp.Regexp {
	if !a.has(name) {
		return nil
	}
	s := a.str(name, "")
	if _, err := regexp.Compile(s); err != nil {
		a.diags = append(a.diags, attrDiag(a.m[name], "Invalid regular expression", fmt.Sprintf("%s: %v.", name, err)))
		return nil
	}
	// Anchored, as in Prometheus: a pattern must match the whole value, so
	// that "[a-z]+" cannot pass "a; rm -rf /".
	return regexp.MustCompile("^(?:" + s + ")$")
}

// matchers reads a list of Alertmanager matchers, each element one matcher
// or a list of them ("{a=\"b\", c=~\"d\"}"), as Alertmanager's route
// matchers are read. An empty list would match every alert.
func (a *attrs) matchers(name string) labels.Matchers {
	var lines []string
	if !a.decode(name, cty.List(cty.String), &lines, "a list of matcher strings") {
		return nil
	}
	var out labels.Matchers
	for i, line := range lines {
		ms, err := labels.ParseMatchers(line)
		if err == nil && len(ms) == 0 {
			err = fmt.Errorf("no matcher")
		}
		for _, m := range ms {
			if err == nil && !IsLabelName(m.Name) {
				err = fmt.Errorf("%q is not a valid Prometheus label name", m.Name)
			}
		}
		if err != nil {
			a.diags = append(a.diags, attrDiag(a.m[name], "Invalid matcher",
				fmt.Sprintf("Element %d, %q, is not an Alertmanager matcher such as alertname=~\"A|B\": %v.", i, line, err)))
			continue
		}
		out = append(out, ms...)
	}
	if len(lines) == 0 {
		a.diags = append(a.diags, attrDiag(a.m[name], "No matchers", "matchers needs at least one matcher; an empty list would match every alert."))
	}
	return out
}

// matcher reads one attribute of a match or match_re block as a matcher.
func (a *attrs) matcher(name string, ty labels.MatchType) *labels.Matcher {
	v := a.str(name, "")
	if ty == labels.MatchRegexp {
		if _, err := regexp.Compile(v); err != nil {
			a.diags = append(a.diags, attrDiag(a.m[name], "Invalid regular expression", fmt.Sprintf("%s: %v.", name, err)))
			return nil
		}
	}
	m, err := labels.NewMatcher(ty, name, v)
	if err != nil {
		a.diags = append(a.diags, attrDiag(a.m[name], "Invalid regular expression", fmt.Sprintf("%s: %v.", name, err)))
		return nil
	}
	return m
}

func duplicate(kind, name string, first hcl.Range, subject hcl.Range) *hcl.Diagnostic {
	return &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Duplicate " + kind,
		Detail: fmt.Sprintf("%s %q is already defined at %s.", kind, name, first), Subject: subject.Ptr()}
}

// statuses reads a list of HTTP status codes.
func (a *attrs) statuses(name string) []int {
	var out []int
	if !a.decode(name, cty.List(cty.Number), &out, "a list of status codes") {
		return nil
	}
	for _, c := range out {
		if c < 100 || c > 599 {
			a.diags = append(a.diags, attrDiag(a.m[name], "Invalid status", fmt.Sprintf("%d is not an HTTP status code.", c)))
		}
	}
	return out
}

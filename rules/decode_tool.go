package rules

import (
	"fmt"
	"net/http"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/prometheus/common/model"
	"github.com/zclconf/go-cty/cty"
)

var toolSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "description", Required: true},
		{Name: "risk", Required: true},
		{Name: "llm"}, {Name: "read_only"}, {Name: "timeout"},
		{Name: "idempotency_key"}, {Name: "idempotency_window"},
	},
	Blocks: []hcl.BlockHeaderSchema{
		{Type: "param", LabelNames: []string{"name"}},
		{Type: string(ExecKind)}, {Type: string(HTTPKind)}, {Type: string(SilenceKind)},
		{Type: string(NotifyKind)}, {Type: string(SystemdKind)},
		{Type: "rollback"},
		{Type: "precheck"},
	},
}

var paramSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
	{Name: "description"}, {Name: "type"}, {Name: "pattern"}, {Name: "enum"},
	{Name: "min"}, {Name: "max"}, {Name: "max_length"}, {Name: "optional"}, {Name: "default"},
	{Name: "allow_leading_dash"},
}}

var executorSchemas = map[ExecutorKind]*hcl.BodySchema{
	ExecKind: {Attributes: []hcl.AttributeSchema{
		{Name: "command", Required: true}, {Name: "dry_run"}, {Name: "env"}, {Name: "dir"},
	}},
	HTTPKind: {Attributes: []hcl.AttributeSchema{
		{Name: "url", Required: true}, {Name: "method"}, {Name: "headers"}, {Name: "body_json"}, {Name: "expect_status"},
		{Name: "http_config_file"},
	}},
	SilenceKind: {Attributes: []hcl.AttributeSchema{{Name: "duration", Required: true}, {Name: "comment"}}},
	NotifyKind: {Attributes: []hcl.AttributeSchema{
		{Name: "channel", Required: true}, {Name: "message"}, {Name: "url_file"}, {Name: "routing_key_file"}, {Name: "severity"},
	}},
	SystemdKind: {Attributes: []hcl.AttributeSchema{{Name: "unit", Required: true}, {Name: "action", Required: true}, {Name: "memory_max_mib"}}},
}

var callSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "tool", Required: true}, {Name: "args"}}}

// DefaultToolTimeout bounds a tool that sets no timeout.
const DefaultToolTimeout = time.Minute

func (l *loader) tool(b *hcl.Block) hcl.Diagnostics {
	name := b.Labels[0]
	content, diags := b.Body.Content(toolSchema)
	if prev, dup := l.set.Tools[name]; dup {
		return append(diags, duplicate("tool", name, prev.DefRange, b.DefRange))
	}
	a := &attrs{m: content.Attributes}
	t := &Tool{
		Name:              name,
		Description:       a.str("description", ""),
		Risk:              Risk(a.oneOf("risk", string(RiskHigh), string(RiskLow), string(RiskMedium), string(RiskHigh))),
		LLM:               a.boolean("llm", false),
		ReadOnly:          a.boolean("read_only", false),
		Timeout:           a.duration("timeout", DefaultToolTimeout),
		IdempotencyKey:    a.template("idempotency_key"),
		IdempotencyWindow: a.duration("idempotency_window", 0),
		DefRange:          b.DefRange,
	}
	if t.IdempotencyKey != nil && t.IdempotencyWindow == 0 {
		diags = append(diags, attrDiag(a.m["idempotency_key"], "Missing idempotency_window", "An idempotency_key needs an idempotency_window."))
	}
	if t.ReadOnly && t.Risk != RiskLow {
		diags = append(diags, attrDiag(a.m["read_only"], "Read-only tool with risk", fmt.Sprintf("A read_only tool must have risk \"low\", not %q.", t.Risk)))
	}
	params := map[string]hcl.Range{}
	for _, pb := range content.Blocks.OfType("param") {
		p, d := decodeParam(pb)
		diags = append(diags, d...)
		if prev, dup := params[p.Name]; dup {
			diags = append(diags, duplicate("param", p.Name, prev, pb.DefRange))
			continue
		}
		params[p.Name] = pb.DefRange
		t.Params = append(t.Params, p)
	}
	sc := scope{what: "a tool's templates", roots: map[string]cty.Type{"param": cty.Map(cty.String)},
		attrs: map[string]map[string]bool{"param": paramNames(t)}}
	var executors []*hcl.Block
	for kind := range executorSchemas {
		executors = append(executors, content.Blocks.OfType(string(kind))...)
	}
	switch {
	case len(executors) == 0:
		diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Missing executor",
			Detail: "A tool needs exactly one executor block: exec, http, silence, notify or systemd.", Subject: b.DefRange.Ptr()})
	case len(executors) > 1:
		sortBlocks(executors)
		diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Several executors",
			Detail: fmt.Sprintf("A tool has exactly one executor block; %s is a second one.", executors[1].Type), Subject: executors[1].DefRange.Ptr()})
	default:
		ex, d := decodeExecutor(executors[0], sc)
		diags = append(diags, d...)
		t.Executor = ex
	}
	if t.IdempotencyKey != nil {
		diags = append(diags, checkTemplate(t.IdempotencyKey, sc)...)
	}
	if rbs := content.Blocks.OfType("rollback"); len(rbs) > 0 {
		c, d := decodeCall(rbs[0])
		diags = append(diags, d...)
		if c != nil {
			t.Rollback = c
			l.calls = append(l.calls, pendingCall{call: c, where: fmt.Sprintf("the rollback of tool %q", name), vars: sc})
		}
	}
	if pcs := content.Blocks.OfType("precheck"); len(pcs) > 0 {
		// A read-only call against live state that must succeed first,
		// e.g. that the deployment exists in that namespace.
		c, d := decodeCall(pcs[0])
		diags = append(diags, d...)
		if c != nil {
			t.Precheck = c
			l.calls = append(l.calls, pendingCall{call: c, where: fmt.Sprintf("the precheck of tool %q", name), vars: sc, readOnly: true, precheck: true})
		}
	}
	diags = append(diags, a.diags...)
	l.set.Tools[name] = t
	return diags
}

func sortBlocks(bs []*hcl.Block) {
	slices.SortFunc(bs, func(a, b *hcl.Block) int { return a.DefRange.Start.Byte - b.DefRange.Start.Byte })
}

func decodeParam(b *hcl.Block) (*Param, hcl.Diagnostics) {
	content, diags := b.Body.Content(paramSchema)
	a := &attrs{m: content.Attributes}
	p := &Param{
		Name:        b.Labels[0],
		Description: a.str("description", ""),
		Type:        ParamType(a.oneOf("type", string(TypeString), string(TypeString), string(TypeInt), string(TypeNumber), string(TypeBool), string(TypeDuration))),
		Pattern:     a.regexp("pattern"),
		Enum:        a.strings("enum"),
		MaxLength:   a.integer("max_length", DefaultMaxLength, 1, 1<<20),
		Optional:    a.boolean("optional", false),
		DefRange:    b.DefRange,

		AllowLeadingDash: a.boolean("allow_leading_dash", false),
	}
	if !nameRE.MatchString(p.Name) {
		diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid name",
			Detail: fmt.Sprintf("Parameter %q must be snake_case.", p.Name), Subject: b.LabelRanges[0].Ptr()})
	}
	for _, bound := range []struct {
		name string
		dst  **float64
	}{{"min", &p.Min}, {"max", &p.Max}} {
		if !a.has(bound.name) {
			continue
		}
		switch p.Type {
		case TypeInt, TypeNumber:
			*bound.dst = a.number(bound.name)
		case TypeDuration:
			s := a.str(bound.name, "")
			d, err := model.ParseDuration(s)
			if err != nil {
				a.diags = append(a.diags, attrDiag(a.m[bound.name], "Invalid duration", fmt.Sprintf("%s = %q is not a duration.", bound.name, s)))
				continue
			}
			secs := time.Duration(d).Seconds()
			*bound.dst = &secs
		default:
			a.diags = append(a.diags, attrDiag(a.m[bound.name], "Bound on a "+string(p.Type), fmt.Sprintf("%s applies to int, number and duration parameters.", bound.name)))
		}
	}
	if p.Min != nil && p.Max != nil && *p.Min > *p.Max {
		a.diags = append(a.diags, attrDiag(a.m["min"], "Empty range", fmt.Sprintf("min %v is above max %v.", *p.Min, *p.Max)))
	}
	if p.Type == TypeString && !a.has("pattern") && !a.has("enum") {
		diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Unbounded string parameter",
			Detail:  fmt.Sprintf("String parameter %q needs a pattern or an enum: alert labels reach it.", p.Name),
			Subject: b.DefRange.Ptr()})
	}
	if a.has("default") {
		d := a.str("default", "")
		if _, err := p.Validate(d); err != nil {
			a.diags = append(a.diags, attrDiag(a.m["default"], "Invalid default", err.Error()+"."))
		}
		p.Default = &d
		p.Optional = true
	}
	return p, append(diags, a.diags...)
}

// shells are programs that interpret an argument as a script.
var shells = map[string]bool{"sh": true, "bash": true, "dash": true, "zsh": true, "ksh": true, "ash": true, "mksh": true, "fish": true, "busybox": true}

// checkShell refuses a template in the script argument of a shell (the one
// after -c): a value spliced into a script is code, whatever its parameter's
// pattern allows. It warns about a shell with templated arguments at all:
// "$1" in a script with the value as its own argument is the safe form, and
// still worth a second look.
func checkShell(argv []*Template) hcl.Diagnostics {
	prog, ok := literal(argv[0])
	if !ok || !shells[filepath.Base(prog)] {
		return nil
	}
	var diags hcl.Diagnostics
	warned := false
	for i := 1; i < len(argv); i++ {
		if len(argv[i].Expr.Variables()) == 0 {
			continue
		}
		if prev, _ := literal(argv[i-1]); strings.HasPrefix(prev, "-") && strings.Contains(prev, "c") && !strings.HasPrefix(prev, "--") {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Template in a shell script",
				Detail:  fmt.Sprintf("%s would run this argument as a script, so a value from an alert would be code. Keep the script literal and pass values as its arguments (\"$1\").", prog),
				Subject: argv[i].Range.Ptr()})
			continue
		}
		if !warned {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagWarning, Summary: "Shell with templated arguments",
				Detail:  fmt.Sprintf("%s runs with values from alerts as arguments; make sure its script only reads them as data (quoted \"$1\"), or call the program directly.", prog),
				Subject: argv[i].Range.Ptr()})
			warned = true
		}
	}
	return diags
}

// literal is a template's text when it has no interpolation.
func literal(t *Template) (string, bool) {
	if len(t.Expr.Variables()) > 0 {
		return "", false
	}
	v, d := t.Expr.Value(nil)
	if d.HasErrors() || !v.IsKnown() || v.IsNull() || v.Type() != cty.String {
		return "", false
	}
	return v.AsString(), true
}

// dangerousEnv reports the variables that choose what code a child runs.
func dangerousEnv(k string) bool {
	switch k {
	case "PATH", "LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT", "PYTHONPATH", "PERL5LIB", "RUBYLIB", "NODE_OPTIONS", "BASH_ENV", "ENV", "IFS", "GCONV_PATH":
		return true
	}
	return strings.HasPrefix(k, "LD_") || strings.HasPrefix(k, "DYLD_")
}

func decodeExecutor(b *hcl.Block, sc scope) (Executor, hcl.Diagnostics) {
	kind := ExecutorKind(b.Type)
	content, diags := b.Body.Content(executorSchemas[kind])
	a := &attrs{m: content.Attributes}
	ex := Executor{Kind: kind, DefRange: b.DefRange}
	var templates []*Template
	switch kind {
	case ExecKind:
		ex.Command = a.templateList("command")
		ex.DryRun = a.templateList("dry_run")
		ex.Env, _ = a.templateMap("env")
		ex.Dir = a.str("dir", "")
		for _, argv := range [][]*Template{ex.Command, ex.DryRun} {
			if argv == nil {
				continue
			}
			if len(argv) == 0 {
				diags = append(diags, attrDiag(a.m["command"], "Empty command", "The argv list needs at least the program."))
				continue
			}
			// The program itself is never templated: a label must not choose
			// what runs.
			if vars := argv[0].Expr.Variables(); len(vars) > 0 {
				diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Templated program",
					Detail: "The first argv element names the program and must be a literal.", Subject: argv[0].Range.Ptr()})
			}
			diags = append(diags, checkShell(argv)...)
			templates = append(templates, argv...)
		}
		envKeys := make([]string, 0, len(ex.Env))
		for k := range ex.Env {
			envKeys = append(envKeys, k)
		}
		sort.Strings(envKeys)
		for _, k := range envKeys {
			t := ex.Env[k]
			if dangerousEnv(k) && len(t.Expr.Variables()) > 0 {
				diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagWarning, Summary: "Templated " + k,
					Detail: fmt.Sprintf("%s decides what code the child loads or runs; a value from an alert should not set it. Make it a literal.", k), Subject: t.Range.Ptr()})
			}
			templates = append(templates, t)
		}
	case HTTPKind:
		ex.URL = a.template("url")
		ex.Method = a.oneOf("method", http.MethodPost, http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete)
		ex.Headers, _ = a.templateMap("headers")
		ex.BodyJSON, _ = a.templateMap("body_json")
		ex.HTTPConfigFile = relTo(b.DefRange.Filename, a.str("http_config_file", ""))
		ex.ExpectStatus = a.statuses("expect_status")
		if ex.URL != nil {
			// Like an argv's program, the scheme and host are never
			// templated: a label must not choose where a request goes.
			if !ex.URL.isFast {
				diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Complex url template",
					Detail:  "A url may only join literals and ${param.x} lookups, so that each value can be escaped.",
					Subject: ex.URL.Range.Ptr()})
			} else if !fixedOrigin(ex.URL) {
				diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Templated origin",
					Detail:  "The url must start with a literal scheme, host and \"/\", such as \"https://api.example.com/\", before any ${…}.",
					Subject: ex.URL.Range.Ptr()})
			}
			templates = append(templates, ex.URL)
		}
		for _, t := range ex.Headers {
			templates = append(templates, t)
		}
		for _, t := range ex.BodyJSON {
			templates = append(templates, t)
		}
	case SilenceKind:
		ex.Duration = a.duration("duration", time.Hour)
		ex.Comment = a.template("comment")
		if ex.Comment != nil {
			templates = append(templates, ex.Comment)
		}
	case NotifyKind:
		ex.Channel = a.oneOf("channel", "webhook", "slack", "pagerduty", "webhook")
		ex.Message = a.template("message")
		// Relative to the runbook file, as Prometheus resolves its files.
		ex.URLFile = relTo(b.DefRange.Filename, a.str("url_file", ""))
		ex.RoutingKeyFile = relTo(b.DefRange.Filename, a.str("routing_key_file", ""))
		ex.Severity = a.oneOf("severity", "error", "critical", "error", "warning", "info")
		switch {
		case ex.Channel == "pagerduty" && ex.RoutingKeyFile == "":
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Missing routing_key_file",
				Detail: "A pagerduty notify needs routing_key_file, the file holding the integration key.", Subject: b.DefRange.Ptr()})
		case ex.Channel != "pagerduty" && ex.URLFile == "":
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Missing url_file",
				Detail: "A slack or webhook notify needs url_file, the file holding the URL (a secret).", Subject: b.DefRange.Ptr()})
		}
		if ex.Message != nil {
			templates = append(templates, ex.Message)
		}
	case SystemdKind:
		ex.Unit = a.template("unit")
		ex.Action = a.oneOf("action", "restart", "restart", "start", "stop", "reload", "set-memory-max")
		ex.MemoryMaxMiB = a.template("memory_max_mib")
		templates = append(templates, ex.Unit, ex.MemoryMaxMiB)
		if (ex.Action == "set-memory-max") != (ex.MemoryMaxMiB != nil) {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid systemd block",
				Detail:  "memory_max_mib, the new limit in MiB, goes with action \"set-memory-max\" and only with it.",
				Subject: b.DefRange.Ptr()})
		}
	}
	for _, t := range templates {
		if t != nil {
			diags = append(diags, checkTemplate(t, sc)...)
		}
	}
	return ex, append(diags, a.diags...)
}

func decodeCall(b *hcl.Block) (*Call, hcl.Diagnostics) {
	content, diags := b.Body.Content(callSchema)
	if diags.HasErrors() {
		return nil, diags
	}
	a := &attrs{m: content.Attributes}
	c := &Call{Tool: a.str("tool", ""), ToolRange: a.m["tool"].Expr.Range(), DefRange: b.DefRange}
	c.Args, _ = a.templateMap("args")
	if c.Args == nil {
		c.Args = map[string]*Template{}
	}
	return c, append(diags, a.diags...)
}

var originRE = regexp.MustCompile(`^https?://[^/${}%]+/`)

// fixedOrigin reports whether a url template starts with a literal
// scheme://host/.
func fixedOrigin(t *Template) bool {
	var first hclsyntax.Expression
	switch e := t.Expr.(type) {
	case *hclsyntax.TemplateExpr:
		if len(e.Parts) == 0 {
			return false
		}
		first = e.Parts[0]
	case *hclsyntax.LiteralValueExpr:
		first = e
	default:
		return false
	}
	lit, ok := first.(*hclsyntax.LiteralValueExpr)
	if !ok || lit.Val.Type() != cty.String || lit.Val.IsNull() {
		return false
	}
	return originRE.MatchString(lit.Val.AsString())
}

func relTo(file, p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(filepath.Dir(file), p)
}

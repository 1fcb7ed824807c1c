package rules

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// part is one piece of a template on the fast path: a literal, or a lookup
// of one key under a root (labels.x, param.y).
type part struct {
	lit  string
	root string
	key  string
}

// compileFast prepares the fast path for templates made only of literals and
// one-level lookups, which is nearly all of them. Others keep the general
// HCL evaluation. Both give the same result and the same failures.
func (t *Template) compileFast() {
	var exprs []hclsyntax.Expression
	switch e := t.Expr.(type) {
	case *hclsyntax.TemplateExpr:
		exprs = e.Parts
	case *hclsyntax.TemplateWrapExpr:
		exprs = []hclsyntax.Expression{e.Wrapped}
	case *hclsyntax.LiteralValueExpr, *hclsyntax.ScopeTraversalExpr:
		exprs = []hclsyntax.Expression{e.(hclsyntax.Expression)}
	default:
		return
	}
	parts := make([]part, 0, len(exprs))
	for _, e := range exprs {
		switch e := e.(type) {
		case *hclsyntax.LiteralValueExpr:
			if e.Val.Type() != cty.String || e.Val.IsNull() {
				return
			}
			parts = append(parts, part{lit: e.Val.AsString()})
		case *hclsyntax.ScopeTraversalExpr:
			switch root := e.Traversal.RootName(); {
			case len(e.Traversal) != 2, root != "labels" && root != "annotations" && root != "param" && root != "var":
				return
			}
			var key string
			switch step := e.Traversal[1].(type) {
			case hcl.TraverseAttr:
				key = step.Name
			case hcl.TraverseIndex:
				if step.Key.Type() != cty.String {
					return
				}
				key = step.Key.AsString()
			default:
				return
			}
			parts = append(parts, part{root: e.Traversal.RootName(), key: key})
		default:
			return
		}
	}
	t.fast = parts
	t.isFast = true
}

// renderEscaped renders a fast-path template with every looked-up value
// passed through esc; literals stay as written. It is for URLs, where a
// value must not add a path segment or a query parameter.
func (t *Template) renderEscaped(v *Vars, esc func(string) string) (string, error) {
	if !t.isFast {
		return "", fmt.Errorf("render %s: this template may only join literals and ${param.x} lookups", t.Range)
	}
	var b strings.Builder
	for i := range t.fast {
		s, err := t.lookup(&t.fast[i], v)
		if err != nil {
			return "", err
		}
		if t.fast[i].root != "" {
			s = esc(s)
		}
		b.WriteString(s)
	}
	return b.String(), nil
}

// render is Render without the general path's allocations when it can.
func (t *Template) render(v *Vars) (string, error) {
	if !t.isFast {
		return t.Render(*v)
	}
	if len(t.fast) == 1 {
		return t.lookup(&t.fast[0], v)
	}
	var b strings.Builder
	for i := range t.fast {
		s, err := t.lookup(&t.fast[i], v)
		if err != nil {
			return "", err
		}
		b.WriteString(s)
	}
	return b.String(), nil
}

func (t *Template) lookup(p *part, v *Vars) (string, error) {
	if p.root == "" {
		return p.lit, nil
	}
	var m map[string]string
	switch p.root {
	case "labels":
		m = v.Labels
	case "annotations":
		m = v.Annotations
	case "param":
		m = v.Params
	case "var":
		m = v.Var
	}
	s, ok := m[p.key]
	if !ok {
		return "", fmt.Errorf("render %s: %s has no %q", t.Range, p.root, p.key)
	}
	return s, nil
}

// PlannedCall is a step rendered for one alert: every argument validated
// against its parameter, and the executor's templates filled in. Nothing
// here came from a label without passing validation.
type PlannedCall struct {
	Step string            `json:"step,omitempty"`
	Tool string            `json:"tool"`
	Risk Risk              `json:"risk"`
	Args map[string]string `json:"args"`
	// Argv is the exec command, element by element; nothing splits or
	// interprets an element.
	Argv   []string `json:"argv,omitempty"`
	DryRun []string `json:"dry_run,omitempty"`
	// Env is the exec tool's environment, rendered; nothing else is
	// passed to the child.
	Env map[string]string `json:"env,omitempty"`
	// IdempotencyKey is the tool's key, rendered; empty when it has none.
	IdempotencyKey string `json:"idempotency_key,omitempty"`
	// HTTP is the rendered request of an http tool.
	HTTP *PlannedHTTP `json:"http,omitempty"`
	// Message is a notify tool's rendered message, or a silence tool's
	// rendered comment.
	Message string `json:"message,omitempty"`
	// Unit and UnitAction are a systemd tool's unit, rendered, and what
	// to do to it. The executor checks the unit name before it runs.
	Unit       string `json:"unit,omitempty"`
	UnitAction string `json:"unit_action,omitempty"`
	// MemoryMax is set-memory-max's limit, in bytes.
	MemoryMax uint64 `json:"memory_max,omitempty"`
	// Rollback is the rendered rollback, when the step or the tool has one.
	Rollback *PlannedCall `json:"rollback,omitempty"`
	// Precheck is the rendered precheck, when the tool has one.
	Precheck *PlannedCall `json:"precheck,omitempty"`
}

// PlannedHTTP is an http tool's request, rendered from validated
// arguments. Body is JSON produced by an encoder, never by splicing text.
type PlannedHTTP struct {
	Method       string            `json:"method"`
	URL          string            `json:"url"`
	Headers      map[string]string `json:"headers,omitempty"`
	Body         json.RawMessage   `json:"body,omitempty"`
	ExpectStatus []int             `json:"expect_status,omitempty"`
}

// Plan renders the runbook's steps for one alert. It fails closed: the
// first argument that does not render or validate rejects the whole plan,
// with the reason, and nothing runs.
func (s *Set) Plan(rb *Runbook, v Vars) ([]PlannedCall, error) {
	calls := make([]PlannedCall, 0, len(rb.Steps))
	for _, st := range rb.Steps {
		pc, err := s.renderCall(&st.Call, &v)
		if err != nil {
			return nil, fmt.Errorf("step %q: %w", st.Name, err)
		}
		pc.Step = st.Name
		rbCall := st.Rollback
		if rbCall == nil {
			rbCall = s.Tools[st.Call.Tool].Rollback
		}
		if rbCall != nil {
			vars := v
			if st.Rollback == nil {
				// A tool's own rollback renders against the tool's arguments.
				vars = Vars{Params: pc.Args}
			}
			r, err := s.renderCall(rbCall, &vars)
			if err != nil {
				return nil, fmt.Errorf("step %q rollback: %w", st.Name, err)
			}
			pc.Rollback = &r
		}
		calls = append(calls, pc)
	}
	return calls, nil
}

func (s *Set) renderCall(c *Call, v *Vars) (PlannedCall, error) {
	t := s.Tools[c.Tool]
	if t == nil {
		return PlannedCall{}, fmt.Errorf("unknown tool %q", c.Tool)
	}
	args, err := validArgs(t, func(name string) (string, bool, error) {
		tmpl, ok := c.Args[name]
		if !ok {
			return "", false, nil
		}
		raw, err := tmpl.render(v)
		return raw, true, err
	})
	if err != nil {
		return PlannedCall{}, err
	}
	return s.plan(t, args)
}

// validArgs fills a tool's parameters from value, which gives a parameter's
// raw value and whether the call sets it: a missing one takes its default,
// is left out when optional, or fails; every value passes its parameter's
// validation.
func validArgs(t *Tool, value func(name string) (string, bool, error)) (map[string]string, error) {
	args := make(map[string]string, len(t.Params))
	for _, p := range t.Params {
		raw, ok, err := value(p.Name)
		if err != nil {
			return nil, fmt.Errorf("tool %s: %w", t.Name, err)
		}
		if !ok {
			if p.Default != nil {
				args[p.Name] = *p.Default
				continue
			}
			if p.Optional {
				continue
			}
			return nil, fmt.Errorf("tool %s: missing parameter %s", t.Name, p.Name)
		}
		val, err := p.Validate(raw)
		if err != nil {
			return nil, fmt.Errorf("tool %s: %w", t.Name, err)
		}
		args[p.Name] = val
	}
	return args, nil
}

// PlanTool plans a call of a tool from plain argument values, as a model
// proposes them: every value passes its parameter's validation, an
// argument the tool does not declare is refused, and a missing one takes
// its default or fails.
func (s *Set) PlanTool(name string, raw map[string]string) (PlannedCall, error) {
	t := s.Tools[name]
	if t == nil {
		return PlannedCall{}, fmt.Errorf("unknown tool %q", name)
	}
	for k := range raw {
		if t.Param(k) == nil {
			return PlannedCall{}, fmt.Errorf("tool %s has no parameter %q", name, k)
		}
	}
	args, err := validArgs(t, func(name string) (string, bool, error) {
		v, ok := raw[name]
		return v, ok, nil
	})
	if err != nil {
		return PlannedCall{}, err
	}
	return s.plan(t, args)
}

// plan renders a tool's executor from validated arguments.
func (s *Set) plan(t *Tool, args map[string]string) (PlannedCall, error) {
	pc := PlannedCall{Tool: t.Name, Risk: t.Risk, Args: args}
	pv := &Vars{Params: args}
	var err error
	if pc.Argv, err = renderArgv(t.Executor.Command, pv); err != nil {
		return PlannedCall{}, fmt.Errorf("tool %s: %w", t.Name, err)
	}
	if pc.DryRun, err = renderArgv(t.Executor.DryRun, pv); err != nil {
		return PlannedCall{}, fmt.Errorf("tool %s: %w", t.Name, err)
	}
	if len(t.Executor.Env) > 0 {
		pc.Env = map[string]string{}
		for k, tm := range t.Executor.Env {
			if pc.Env[k], err = tm.render(pv); err != nil {
				return PlannedCall{}, fmt.Errorf("tool %s: env %s: %w", t.Name, k, err)
			}
		}
	}
	if t.IdempotencyKey != nil {
		if pc.IdempotencyKey, err = t.IdempotencyKey.render(pv); err != nil {
			return PlannedCall{}, fmt.Errorf("tool %s: idempotency key: %w", t.Name, err)
		}
	}
	if t.Executor.Kind == HTTPKind {
		if pc.HTTP, err = renderHTTP(&t.Executor, pv); err != nil {
			return PlannedCall{}, fmt.Errorf("tool %s: %w", t.Name, err)
		}
	}
	if t.Executor.Kind == NotifyKind && t.Executor.Message != nil {
		if pc.Message, err = t.Executor.Message.render(pv); err != nil {
			return PlannedCall{}, fmt.Errorf("tool %s: message: %w", t.Name, err)
		}
	}
	if t.Executor.Kind == SilenceKind && t.Executor.Comment != nil {
		if pc.Message, err = t.Executor.Comment.render(pv); err != nil {
			return PlannedCall{}, fmt.Errorf("tool %s: comment: %w", t.Name, err)
		}
	}
	if t.Executor.Kind == SystemdKind {
		if pc.Unit, err = t.Executor.Unit.render(pv); err != nil {
			return PlannedCall{}, fmt.Errorf("tool %s: unit: %w", t.Name, err)
		}
		pc.UnitAction = t.Executor.Action
		if t.Executor.MemoryMaxMiB != nil {
			s, err := t.Executor.MemoryMaxMiB.render(pv)
			if err != nil {
				return PlannedCall{}, fmt.Errorf("tool %s: memory_max_mib: %w", t.Name, err)
			}
			mib, err := strconv.ParseUint(s, 10, 32)
			if err != nil || mib == 0 {
				return PlannedCall{}, fmt.Errorf("tool %s: memory_max_mib %q is not a whole number of MiB above 0", t.Name, s)
			}
			pc.MemoryMax = mib << 20
		}
	}
	if t.Precheck != nil {
		pre, err := s.renderCall(t.Precheck, &Vars{Params: args})
		if err != nil {
			return PlannedCall{}, fmt.Errorf("tool %s: precheck: %w", t.Name, err)
		}
		pc.Precheck = &pre
	}
	return pc, nil
}

func renderHTTP(ex *Executor, v *Vars) (*PlannedHTTP, error) {
	// Each value is path-escaped: "a/../b" or "x?admin=1" stays one
	// segment of the tool author's URL. "." and ".." escape to themselves,
	// and a server resolves them, so a URL with such a segment is refused.
	u, err := ex.URL.renderEscaped(v, url.PathEscape)
	if err != nil {
		return nil, err
	}
	pu, err := url.ParseRequestURI(u)
	if err != nil {
		return nil, fmt.Errorf("url %q: %w", u, err)
	}
	for _, seg := range strings.Split(pu.EscapedPath(), "/") {
		if seg == "." || seg == ".." {
			return nil, fmt.Errorf("url %q: a %q path segment would climb out of the tool's path", u, seg)
		}
	}
	h := &PlannedHTTP{Method: ex.Method, URL: u, ExpectStatus: ex.ExpectStatus}
	if len(ex.Headers) > 0 {
		h.Headers = map[string]string{}
		for k, t := range ex.Headers {
			if h.Headers[k], err = t.render(v); err != nil {
				return nil, err
			}
		}
	}
	if ex.BodyJSON != nil {
		body := map[string]string{}
		for k, t := range ex.BodyJSON {
			if body[k], err = t.render(v); err != nil {
				return nil, err
			}
		}
		if h.Body, err = json.Marshal(body); err != nil {
			return nil, err
		}
	}
	return h, nil
}

func renderArgv(ts []*Template, v *Vars) ([]string, error) {
	if len(ts) == 0 {
		return nil, nil
	}
	argv := make([]string, len(ts))
	for i, t := range ts {
		s, err := t.render(v)
		if err != nil {
			return nil, err
		}
		argv[i] = s
	}
	return argv, nil
}

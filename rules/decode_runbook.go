package rules

import (
	"fmt"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/prometheus/alertmanager/pkg/labels"
	"github.com/prometheus/common/model"
	"github.com/zclconf/go-cty/cty"
)

var runbookSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "description", Required: true},
		{Name: "mode"}, {Name: "priority"}, {Name: "target"}, {Name: "when"},
		{Name: "confidence"}, {Name: "threshold"}, {Name: "max_attempts"}, {Name: "escalate"},
		{Name: "escalate_to"}, {Name: "min_firing"}, {Name: "critical"}, {Name: "matchers"},
	},
	Blocks: []hcl.BlockHeaderSchema{
		{Type: "match"}, {Type: "match_re"}, {Type: "blast_radius"},
		{Type: "query", LabelNames: []string{"name"}},
		{Type: "step", LabelNames: []string{"name"}},
		{Type: "verify"},
	},
}

var querySchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
	{Name: "promql"}, {Name: "logql"}, {Name: "tool"}, {Name: "args"},
	{Name: "limit"}, {Name: "range"}, {Name: "timeout"},
}}

var stepSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "tool", Required: true}, {Name: "args"}},
	Blocks:     []hcl.BlockHeaderSchema{{Type: "rollback"}},
}

var blastRadiusSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
	{Name: "fleet", Required: true}, {Name: "group"}, {Name: "timeout"},
}}

var verifySchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
	{Name: "promql", Required: true}, {Name: "expect", Required: true}, {Name: "worse"}, {Name: "wait"}, {Name: "interval"}, {Name: "timeout"},
}}

// Defaults of a runbook's optional settings.
const (
	DefaultThreshold     = 0.7
	DefaultQueryTimeout  = 5 * time.Second
	DefaultLogLimit      = 100
	DefaultLogRange      = 15 * time.Minute
	DefaultVerifyWait    = time.Minute
	DefaultVerifyTimeout = 30 * time.Second
)

// alertScope is what runbook templates may use: the alert, and the
// variables the runbook files declare.
func (l *loader) alertScope() scope {
	return l.withVars(scope{what: "a runbook's templates", roots: map[string]cty.Type{
		"labels": cty.Map(cty.String), "annotations": cty.Map(cty.String),
	}})
}

// sampleType is a PromQL sample as templates see it.
var sampleType = cty.Object(map[string]cty.Type{"labels": cty.Map(cty.String), "value": cty.Number})

// stepScope is what step and rollback arguments may use: the alert, and the
// results of the runbook's promql queries, e.g.
// "${floor(query.limit[0].value * 1.25 / 1048576)}".
func (l *loader) stepScope(promql map[string]bool, what string) scope {
	attrs := map[string]cty.Type{}
	for name := range promql {
		attrs[name] = cty.List(sampleType)
	}
	sc := scope{what: what, roots: map[string]cty.Type{
		"labels": cty.Map(cty.String), "annotations": cty.Map(cty.String), "query": cty.Object(attrs),
	}, attrs: map[string]map[string]bool{"query": promql}}
	return l.withVars(sc)
}

func (l *loader) runbook(b *hcl.Block) hcl.Diagnostics {
	name := b.Labels[0]
	content, diags := b.Body.Content(runbookSchema)
	if prev, dup := l.runbooks[name]; dup {
		return append(diags, duplicate("runbook", name, prev.DefRange, b.DefRange))
	}
	a := &attrs{m: content.Attributes}
	rb := &Runbook{
		Name:        name,
		Description: a.str("description", ""),
		Mode:        Mode(a.oneOf("mode", string(ModeAuto), string(ModeAuto), string(ModeApprove), string(ModeShadow))),
		Priority:    a.integer("priority", 0, -1000, 1000),
		Target:      a.template("target"),
		MaxAttempts: a.integer("max_attempts", 1, 1, 10),
		Escalate:    a.boolean("escalate", false),
		EscalateTo:  a.str("escalate_to", ""),
		MinFiring:   a.duration("min_firing", 0),
		Threshold:   DefaultThreshold,
		DefRange:    b.DefRange,
	}
	if t := a.number("threshold"); t != nil {
		if *t < 0 || *t > 1 {
			diags = append(diags, attrDiag(a.m["threshold"], "Invalid threshold", "The threshold is a confidence, from 0 to 1."))
		}
		rb.Threshold = *t
	}

	// Matchers.
	rb.Matchers = a.matchers("matchers")
	blockMatchers := 0
	for _, kind := range []string{"match", "match_re"} {
		blocks := content.Blocks.OfType(kind)
		if len(blocks) > 1 {
			diags = append(diags, duplicate(kind+" block", name, blocks[0].DefRange, blocks[1].DefRange))
		}
		for _, mb := range blocks {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagWarning, Summary: "Deprecated " + kind + " block",
				Detail:  fmt.Sprintf("Write the runbook's matchers in Alertmanager's syntax, as ignore and escalation routes do: matchers = [\"alertname=~\\\"A|B\\\"\", \"severity!=\\\"info\\\"\"]. A %s block still works.", kind),
				Subject: mb.DefRange.Ptr()})
			at, d := mb.Body.JustAttributes()
			diags = append(diags, d...)
			blockMatchers += len(at)
			ma := &attrs{m: at}
			for label, attr := range at {
				if !IsLabelName(label) {
					diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid label name",
						Detail: fmt.Sprintf("%q is not a valid Prometheus label name.", label), Subject: attr.NameRange.Ptr()})
					continue
				}
				ty := labels.MatchEqual
				if kind == "match_re" {
					ty = labels.MatchRegexp
				}
				if m := ma.matcher(label, ty); m != nil {
					rb.Matchers = append(rb.Matchers, m)
				}
			}
			diags = append(diags, ma.diags...)
		}
	}
	// An empty match block, like no matchers at all, would match every
	// alert; a matchers attribute that is empty or invalid says so itself.
	if blockMatchers == 0 && !a.has("matchers") {
		diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "No matchers",
			Detail: "A runbook needs matchers, e.g. matchers = [\"alertname=\\\"KubePodCrashLooping\\\"\"]; it would otherwise match every alert.", Subject: b.DefRange.Ptr()})
	}

	// Queries, before the conditions that read them.
	decl := declared{"query": {}, "logs": {}, "tool": {}}
	seen := map[string]hcl.Range{}
	for _, qb := range content.Blocks.OfType("query") {
		q, d := l.query(qb, name)
		diags = append(diags, d...)
		if prev, dup := seen[q.Name]; dup {
			diags = append(diags, duplicate("query", q.Name, prev, qb.DefRange))
			continue
		}
		seen[q.Name] = qb.DefRange
		rb.Queries = append(rb.Queries, q)
		switch q.Kind {
		case QueryPromQL:
			decl["query"][q.Name] = true
		case QueryLogQL:
			decl["logs"][q.Name] = true
		case QueryTool:
			decl["tool"][q.Name] = true
		}
	}
	if rb.Target != nil {
		diags = append(diags, checkTemplate(rb.Target, l.stepScope(decl["query"], "a runbook's target"))...)
		rb.targetFromLabels = true
		for _, tr := range rb.Target.Expr.Variables() {
			if root := tr.RootName(); root != "labels" && root != "annotations" {
				rb.targetFromLabels = false
			}
		}
	}
	src := l.src(b.DefRange)
	if attr, ok := a.m["escalate_to"]; ok {
		rb.EscalateToRange = attr.Expr.Range()
	}
	if attr, ok := a.m["when"]; ok {
		c, d := compileCondition(attr, src, condBool, Env{}, decl)
		diags = append(diags, d...)
		rb.When = c
	}
	if attr, ok := a.m["confidence"]; ok {
		c, d := compileCondition(attr, src, condFloat, Env{}, decl)
		diags = append(diags, d...)
		rb.Confidence = c
	}
	if attr, ok := a.m["critical"]; ok {
		c, d := compileCondition(attr, src, condBool, Env{}, decl)
		diags = append(diags, d...)
		rb.Critical = c
	}
	if bbs := content.Blocks.OfType("blast_radius"); len(bbs) > 0 {
		if len(bbs) > 1 {
			diags = append(diags, duplicate("blast_radius block", name, bbs[0].DefRange, bbs[1].DefRange))
		}
		bc, d := bbs[0].Body.Content(blastRadiusSchema)
		diags = append(diags, d...)
		ba := &attrs{m: bc.Attributes}
		br := &BlastRadius{Fleet: ba.template("fleet"), Group: ba.template("group"), Timeout: ba.duration("timeout", DefaultQueryTimeout), DefRange: bbs[0].DefRange}
		for _, t := range []*Template{br.Fleet, br.Group} {
			if t != nil {
				diags = append(diags, checkTemplate(t, l.alertScope())...)
			}
		}
		diags = append(diags, ba.diags...)
		rb.BlastRadius = br
	}

	// Steps.
	steps := content.Blocks.OfType("step")
	if rb.Escalate && len(steps) > 0 {
		diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Steps in an escalate-only runbook",
			Detail: "A runbook with escalate = true never acts; remove its steps or the flag.", Subject: steps[0].DefRange.Ptr()})
	}
	if !rb.Escalate && len(steps) == 0 {
		diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "No steps",
			Detail: "A runbook needs at least one step, or escalate = true.", Subject: b.DefRange.Ptr()})
	}
	if !rb.Escalate && rb.Target == nil {
		diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Missing target",
			Detail: "A runbook that acts needs a target template, the key that serialises remediation.", Subject: b.DefRange.Ptr()})
	}
	seen = map[string]hcl.Range{}
	for _, sb := range steps {
		if prev, dup := seen[sb.Labels[0]]; dup {
			diags = append(diags, duplicate("step", sb.Labels[0], prev, sb.DefRange))
			continue
		}
		seen[sb.Labels[0]] = sb.DefRange
		st, d := l.step(sb, name, l.stepScope(decl["query"], "a step's arguments"))
		diags = append(diags, d...)
		if st != nil {
			rb.Steps = append(rb.Steps, st)
		}
	}

	if vbs := content.Blocks.OfType("verify"); len(vbs) > 0 {
		if len(vbs) > 1 {
			diags = append(diags, duplicate("verify block", name, vbs[0].DefRange, vbs[1].DefRange))
		}
		vc, d := vbs[0].Body.Content(verifySchema)
		diags = append(diags, d...)
		va := &attrs{m: vc.Attributes}
		v := &Verify{PromQL: va.template("promql"), Wait: va.duration("wait", DefaultVerifyWait),
			Interval: va.duration("interval", 0), Timeout: va.duration("timeout", DefaultVerifyTimeout), DefRange: vbs[0].DefRange}
		if v.Interval > v.Wait {
			diags = append(diags, attrDiag(vc.Attributes["interval"], "Invalid interval",
				fmt.Sprintf("interval (%s) is longer than wait (%s): verification would check only once, when wait is up.", model.Duration(v.Interval), model.Duration(v.Wait))))
		}
		if v.PromQL != nil {
			diags = append(diags, checkTemplate(v.PromQL, l.alertScope())...)
		}
		if attr, ok := vc.Attributes["expect"]; ok {
			c, d := compileCondition(attr, src, condBool, VerifyEnv{}, nil)
			diags = append(diags, d...)
			v.Expect = c
		}
		v.Worse = defaultWorse
		if attr, ok := vc.Attributes["worse"]; ok {
			c, d := compileCondition(attr, src, condBool, VerifyEnv{}, nil)
			diags = append(diags, d...)
			v.Worse = c
		}
		diags = append(diags, va.diags...)
		rb.Verify = v
	}
	diags = append(diags, a.diags...)
	l.runbooks[name] = rb
	l.set.Runbooks = append(l.set.Runbooks, rb)
	return diags
}

func (l *loader) query(b *hcl.Block, runbook string) (*Query, hcl.Diagnostics) {
	content, diags := b.Body.Content(querySchema)
	a := &attrs{m: content.Attributes}
	q := &Query{Name: b.Labels[0], Timeout: a.duration("timeout", DefaultQueryTimeout), DefRange: b.DefRange}
	var kinds []QueryKind
	for _, k := range []QueryKind{QueryPromQL, QueryLogQL, QueryTool} {
		if a.has(string(k)) {
			kinds = append(kinds, k)
		}
	}
	if len(kinds) != 1 {
		return q, append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid query",
			Detail: "A query has exactly one of promql, logql or tool.", Subject: b.DefRange.Ptr()})
	}
	q.Kind = kinds[0]
	switch q.Kind {
	case QueryPromQL, QueryLogQL:
		q.Expr = a.template(string(q.Kind))
		diags = append(diags, checkTemplate(q.Expr, l.alertScope())...)
		if q.Kind == QueryLogQL {
			q.Limit = a.integer("limit", DefaultLogLimit, 1, 5000)
			q.Range = a.duration("range", DefaultLogRange)
		}
	case QueryTool:
		q.Call = &Call{Tool: a.str("tool", ""), ToolRange: a.m["tool"].Expr.Range(), DefRange: b.DefRange}
		q.Call.Args, _ = a.templateMap("args")
		l.calls = append(l.calls, pendingCall{call: q.Call, where: fmt.Sprintf("query %q of runbook %q", q.Name, runbook), vars: l.alertScope(), readOnly: true})
	}
	for _, other := range []string{"limit", "range"} {
		if a.has(other) && q.Kind != QueryLogQL {
			diags = append(diags, attrDiag(a.m[other], "Not a logql query", other+" applies to logql queries only."))
		}
	}
	if a.has("args") && q.Kind != QueryTool {
		diags = append(diags, attrDiag(a.m["args"], "Not a tool query", "args applies to tool queries only."))
	}
	return q, append(diags, a.diags...)
}

func (l *loader) step(b *hcl.Block, runbook string, sc scope) (*Step, hcl.Diagnostics) {
	content, diags := b.Body.Content(stepSchema)
	if diags.HasErrors() {
		return nil, diags
	}
	a := &attrs{m: content.Attributes}
	st := &Step{Name: b.Labels[0], DefRange: b.DefRange}
	st.Call = Call{Tool: a.str("tool", ""), ToolRange: a.m["tool"].Expr.Range(), DefRange: b.DefRange}
	st.Call.Args, _ = a.templateMap("args")
	if st.Call.Args == nil {
		st.Call.Args = map[string]*Template{}
	}
	where := fmt.Sprintf("step %q of runbook %q", st.Name, runbook)
	l.calls = append(l.calls, pendingCall{call: &st.Call, where: where, vars: sc})
	if rbs := content.Blocks.OfType("rollback"); len(rbs) > 0 {
		c, d := decodeCall(rbs[0])
		diags = append(diags, d...)
		if c != nil {
			// A rollback takes the step's arguments for the parameters it
			// does not set itself.
			inherited := map[string]bool{}
			for k, v := range st.Call.Args {
				if _, set := c.Args[k]; !set {
					c.Args[k] = v
					inherited[k] = true
				}
			}
			st.Rollback = c
			l.calls = append(l.calls, pendingCall{call: c, where: "the rollback of " + where, vars: sc, inherited: inherited})
		}
	}
	return st, append(diags, a.diags...)
}

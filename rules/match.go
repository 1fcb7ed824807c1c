package rules

import (
	"cmp"
	"fmt"
	"regexp"
	"regexp/syntax"
	"slices"
	"strings"

	"github.com/expr-lang/expr/vm"
	"github.com/prometheus/alertmanager/pkg/labels"
)

// index finds the candidate runbooks of an alert by its alertname, so that
// the cost of a match does not grow with the number of runbooks, as
// Prometheus's FastRegexMatcher does for label matchers: an exact
// alertname, or a regular expression that is a set of names, is looked up;
// a regular expression with a literal prefix is checked only for names with
// that prefix; one that needs literals anywhere is checked only for names
// that contain them. The rest are checked on every alert.
type index struct {
	byName map[string][]*Runbook
	prefix []guarded
	rest   []guarded
}

// guarded is a runbook with literals that an alertname must contain (or,
// in index.prefix, start with) before its matchers are worth running.
type guarded struct {
	rb    *Runbook
	needs []string
}

func buildIndex(rbs []*Runbook) *index {
	ix := &index{byName: map[string][]*Runbook{}}
	for _, rb := range rbs {
		m := alertnameMatcher(rb.Matchers)
		if m == nil {
			ix.rest = append(ix.rest, guarded{rb: rb})
			continue
		}
		if m.Type == labels.MatchEqual {
			ix.byName[m.Value] = append(ix.byName[m.Value], rb)
			continue
		}
		set, prefix, needs := literals(regexp.MustCompile("^(?:" + m.Value + ")$"))
		switch {
		case set != nil:
			for _, name := range set {
				ix.byName[name] = append(ix.byName[name], rb)
			}
		case prefix != "":
			ix.prefix = append(ix.prefix, guarded{rb: rb, needs: []string{prefix}})
		default:
			ix.rest = append(ix.rest, guarded{rb: rb, needs: needs})
		}
	}
	return ix
}

// alertnameMatcher is the matcher on alertname the index can use: an
// equality, else a regular expression (anchored, as Alertmanager anchors
// it); nil when there is neither.
func alertnameMatcher(ms labels.Matchers) *labels.Matcher {
	var re *labels.Matcher
	for _, m := range ms {
		switch {
		case m.Name != "alertname":
		case m.Type == labels.MatchEqual:
			return m
		case m.Type == labels.MatchRegexp && re == nil:
			re = m
		}
	}
	return re
}

// literals reads what an anchored pattern says about the names it can
// match: the whole set when it is a list of literal names, else a literal
// prefix every match starts with, else literals every match contains. A
// pattern that ignores case says nothing.
func literals(re *regexp.Regexp) (set []string, prefix string, needs []string) {
	tree, err := syntax.Parse(re.String(), syntax.Perl)
	if err != nil {
		return nil, "", nil
	}
	tree = tree.Simplify()
	// The pattern is ^(?:…)$: keep what is between the anchors, which the
	// parser may have flattened into one concatenation with them.
	n := len(tree.Sub)
	if tree.Op != syntax.OpConcat || n < 3 || tree.Sub[0].Op != syntax.OpBeginText || tree.Sub[n-1].Op != syntax.OpEndText {
		return nil, "", nil
	}
	if n == 3 {
		tree = tree.Sub[1]
	} else {
		tree = &syntax.Regexp{Op: syntax.OpConcat, Sub: tree.Sub[1 : n-1]}
	}
	if names, ok := literalSet(tree); ok {
		return names, "", nil
	}
	if tree.Op != syntax.OpConcat {
		return nil, "", nil
	}
	for i, sub := range tree.Sub {
		if sub.Op != syntax.OpLiteral || sub.Flags&syntax.FoldCase != 0 {
			continue
		}
		if i == 0 {
			return nil, string(sub.Rune), nil
		}
		needs = append(needs, string(sub.Rune))
	}
	return nil, "", needs
}

// literalSet reads a pattern that is one literal name or an alternation of
// them; the parser factors common prefixes out of alternations, so literals
// concatenated with alternations of literals count too, up to
// maxLiteralSet names.
func literalSet(re *syntax.Regexp) ([]string, bool) {
	switch re.Op {
	case syntax.OpLiteral:
		if re.Flags&syntax.FoldCase != 0 {
			return nil, false
		}
		return []string{string(re.Rune)}, true
	case syntax.OpEmptyMatch:
		return []string{""}, true
	case syntax.OpCapture:
		return literalSet(re.Sub[0])
	case syntax.OpAlternate:
		var out []string
		for _, sub := range re.Sub {
			names, ok := literalSet(sub)
			if !ok || len(out)+len(names) > maxLiteralSet {
				return nil, false
			}
			out = append(out, names...)
		}
		return out, true
	case syntax.OpConcat:
		out := []string{""}
		for _, sub := range re.Sub {
			names, ok := literalSet(sub)
			if !ok || len(out)*len(names) > maxLiteralSet {
				return nil, false
			}
			var next []string
			for _, a := range out {
				for _, b := range names {
					next = append(next, a+b)
				}
			}
			out = next
		}
		return out, true
	}
	return nil, false
}

// maxLiteralSet bounds the names a pattern is expanded into.
const maxLiteralSet = 256

// Candidates returns the runbooks whose label matchers all match, in name
// order. Only these have their queries run.
func (s *Set) Candidates(labels map[string]string) []*Runbook {
	var out []*Runbook
	name := labels["alertname"]
	for _, rb := range s.index.byName[name] {
		if matches(rb, labels) {
			out = append(out, rb)
		}
	}
	for _, g := range s.index.prefix {
		if strings.HasPrefix(name, g.needs[0]) && matches(g.rb, labels) {
			out = append(out, g.rb)
		}
	}
rest:
	for _, g := range s.index.rest {
		for _, lit := range g.needs {
			if !strings.Contains(name, lit) {
				continue rest
			}
		}
		if matches(g.rb, labels) {
			out = append(out, g.rb)
		}
	}
	if len(out) > 1 {
		slices.SortFunc(out, func(a, b *Runbook) int { return cmp.Compare(a.Name, b.Name) })
	}
	return out
}

// LabelTarget renders the target of the candidate runbook that would win
// on priority, then name, among those whose target reads only the alert's
// labels and annotations: the key of the alert's incident, known before any
// query runs. It returns "" when no candidate has such a target, with the
// candidates.
func (s *Set) LabelTarget(labels, annotations map[string]string) (string, []*Runbook) {
	var best *Runbook
	cands := s.Candidates(labels)
	for _, rb := range cands {
		if rb.targetFromLabels && (best == nil || rb.Priority > best.Priority) {
			best = rb
		}
	}
	if best == nil {
		return "", cands
	}
	t, err := best.Target.render(&Vars{Labels: labels, Annotations: annotations, Var: s.Var})
	if err != nil {
		return "", cands
	}
	return t, cands
}

// Acts reports whether a runbook plans steps that run: it neither only
// escalates nor runs in shadow mode.
func (rb *Runbook) Acts() bool { return !rb.Escalate && rb.Mode != ModeShadow }

func matches(rb *Runbook, ls map[string]string) bool {
	for _, m := range rb.Matchers {
		if !m.Matches(ls[m.Name]) {
			return false
		}
	}
	return true
}

// Results are the enrichment query results for one candidate, by query name.
// A query that failed or timed out has an entry in Errors instead.
type Results struct {
	Query  map[string][]Sample
	Logs   map[string][]LogLine
	Tool   map[string]any
	Errors map[string]string
}

// Outcome is what one candidate runbook made of an alert.
type Outcome struct {
	Runbook    *Runbook `json:"-"`
	Name       string   `json:"runbook"`
	Matched    bool     `json:"matched"`
	Confidence float64  `json:"confidence"`
	Target     string   `json:"target,omitempty"`
	// Reason says why it did not match, was below its threshold, or lost
	// to the chosen runbook.
	Reason string `json:"reason,omitempty"`
}

// Decision is the choice between the candidates for one alert.
type Decision struct {
	// Chosen is the matched runbook at or above its threshold that wins on
	// priority, then confidence, then name; nil when none.
	Chosen *Outcome `json:"chosen,omitempty"`
	// LowConfidence lists runbooks that matched below their threshold: the
	// incident goes to the LLM or to escalation, with these as hints.
	LowConfidence []Outcome `json:"low_confidence,omitempty"`
	// Alternatives are the other candidates, each with its reason.
	Alternatives []Outcome `json:"alternatives,omitempty"`
}

// Decide evaluates each candidate's conditions and picks one. Each runbook
// sees its own results from results (by runbook name), over env; a runbook
// with no entry there sees env's Query, Logs and Tool as they are. A query
// listed in Errors, or missing, means the runbook does not match, with the
// reason recorded: missing data never counts as a match.
func (s *Set) Decide(cands []*Runbook, env *Env, results map[string]*Results) Decision {
	var d Decision
	var won []Outcome
	for _, rb := range cands {
		e, res := env, results[rb.Name]
		if res != nil {
			own := *env
			own.Query, own.Logs, own.Tool = res.Query, res.Logs, res.Tool
			e = &own
		}
		o := s.evaluate(rb, e, res)
		switch {
		case !o.Matched:
			d.Alternatives = append(d.Alternatives, o)
		case o.Confidence < rb.Threshold:
			o.Matched = false
			o.Reason = fmt.Sprintf("confidence %.2f is below the threshold %.2f", o.Confidence, rb.Threshold)
			d.LowConfidence = append(d.LowConfidence, o)
		default:
			won = append(won, o)
		}
	}
	if len(won) == 0 {
		return d
	}
	slices.SortStableFunc(won, func(a, b Outcome) int {
		return cmp.Or(cmp.Compare(b.Runbook.Priority, a.Runbook.Priority), cmp.Compare(b.Confidence, a.Confidence), cmp.Compare(a.Name, b.Name))
	})
	d.Chosen = &won[0]
	for _, o := range won[1:] {
		switch {
		case o.Runbook.Priority != d.Chosen.Runbook.Priority:
			o.Reason = fmt.Sprintf("lost to %s on priority (%d < %d)", d.Chosen.Name, o.Runbook.Priority, d.Chosen.Runbook.Priority)
		case o.Confidence != d.Chosen.Confidence:
			o.Reason = fmt.Sprintf("lost to %s on confidence (%.2f < %.2f)", d.Chosen.Name, o.Confidence, d.Chosen.Confidence)
		default:
			o.Reason = fmt.Sprintf("lost to %s on name order", d.Chosen.Name)
		}
		o.Matched = false
		d.Alternatives = append(d.Alternatives, o)
	}
	return d
}

// IsCritical runs the runbook's critical condition against env with the
// runbook's own query results. A runbook without one is not critical.
func (rb *Runbook) IsCritical(env *Env, res *Results) (bool, error) {
	if rb.Critical == nil {
		return false, nil
	}
	e := *env
	if res != nil {
		e.Query, e.Logs, e.Tool = res.Query, res.Logs, res.Tool
	}
	out, err := vm.Run(rb.Critical.Program, &e)
	if err != nil {
		return false, fmt.Errorf("critical: %w", err)
	}
	b, _ := out.(bool)
	return b, nil
}

func (s *Set) evaluate(rb *Runbook, env *Env, res *Results) Outcome {
	o := Outcome{Runbook: rb, Name: rb.Name}
	for _, q := range rb.Queries {
		if res != nil {
			if msg, failed := res.Errors[q.Name]; failed {
				o.Reason = fmt.Sprintf("query %s failed: %s", q.Name, msg)
				return o
			}
		}
		var present bool
		switch q.Kind {
		case QueryPromQL:
			_, present = env.Query[q.Name]
		case QueryLogQL:
			_, present = env.Logs[q.Name]
		case QueryTool:
			_, present = env.Tool[q.Name]
		}
		if !present {
			o.Reason = fmt.Sprintf("query %s has no result", q.Name)
			return o
		}
	}
	var vmach vm.VM
	if rb.When != nil {
		out, err := vmach.Run(rb.When.Program, env)
		if err != nil {
			o.Reason = fmt.Sprintf("when failed: %v", err)
			return o
		}
		if ok, _ := out.(bool); !ok {
			o.Reason = "when is false"
			return o
		}
	}
	o.Confidence = 1
	if rb.Confidence != nil {
		out, err := vmach.Run(rb.Confidence.Program, env)
		if err != nil {
			o.Reason = fmt.Sprintf("confidence failed: %v", err)
			return o
		}
		f, _ := out.(float64)
		if f < 0 || f > 1 || f != f {
			o.Reason = fmt.Sprintf("confidence %v is outside 0..1", f)
			return o
		}
		o.Confidence = f
	}
	if rb.Target != nil {
		t, err := rb.Target.render(&Vars{Labels: env.Labels, Annotations: env.Annotations, Query: env.Query, Var: s.Var})
		if err != nil {
			o.Reason = fmt.Sprintf("target: %v", err)
			return o
		}
		o.Target = t
	}
	o.Matched = true
	return o
}

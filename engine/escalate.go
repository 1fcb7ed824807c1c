package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/alertmanager/template"
	"github.com/prometheus/common/model"

	"medic/actions"
	"medic/rules"
	"medic/state"
)

// Escalation: whatever medic cannot fix is settled as escalated and handed
// to a human with a brief, through the notify tool the routing picks.

// escalate settles the incident as escalated, with the reason, and queues
// its brief for a human, in one commit with the records before it.
func (r *Remediator) escalate(ctx context.Context, run *loopRun, code, reason string) {
	now := r.now()
	if run.at != nil {
		run.pending.Runbook = run.at.Runbook
	}
	run.pending.Escalated = true
	run.event(now, "escalated", "escalated: "+reason)
	run.record(now, "escalation", "medic", map[string]string{"reason_code": code, "reason": reason})
	run.settle(state.PhaseSettled, now)
	r.queueBrief(run, code, reason)
	c, err := r.commit(run)
	if err != nil {
		return
	}
	if r.metrics != nil {
		r.metrics.escalations.WithLabelValues(code).Inc()
		if c.Prev != state.OutcomeEscalated {
			r.metrics.incidents.WithLabelValues(state.OutcomeEscalated).Inc()
		}
	}
	if c.Brief != nil {
		r.briefQueued(*c.Brief)
	}
}

// briefSteps lists every step medic ran on the incident, with its output
// and verification.
func (r *Remediator) briefSteps(incident uint64) []actions.BriefStep {
	acts, err := r.Store.Actions(incident)
	if err != nil {
		r.Logger.Error("reading the incident's steps for its brief failed", "component", "remediator", "incident", incident, "err", err)
		return nil
	}
	var steps []actions.BriefStep
	for _, a := range acts {
		s := actions.BriefStep{Step: a.Step, Tool: a.Tool, Policy: a.Policy, Result: string(a.State), Output: a.Output}
		if a.Rollback {
			s.Result = "rollback " + s.Result
		}
		if v := a.Verification; v != nil {
			s.Verify, s.Before, s.After = v.Result, v.Before, v.After
		}
		steps = append(steps, s)
	}
	return steps
}

// route picks the notify tool for a brief: the runbook's escalate_to, the
// first matching route, or the default; empty means the log only.
func (d *Decider) route(rb *rules.Runbook, alert *template.Alert) string {
	if rb != nil && rb.EscalateTo != "" {
		return rb.EscalateTo
	}
	if alert != nil {
		ls := make(model.LabelSet, len(alert.Labels))
		for k, v := range alert.Labels {
			ls[model.LabelName(k)] = model.LabelValue(v)
		}
		for _, rt := range d.Config.Escalation.Routes {
			if rt.Matchers.Matches(ls) {
				return rt.Notify
			}
		}
	}
	return d.Config.Escalation.Notify
}

// brief assembles what a human needs: the alerts, the enrichment, the
// hypothesis and the runner-up runbooks, links, and the commands for a
// pending approval. The steps are read from the journal when the brief is
// sent (briefSteps), so that they include the escalation's own commit.
func (r *Remediator) brief(run *loopRun, inc *state.Incident, code, reason string, commands []string) *actions.Brief {
	at := run.at
	if at == nil {
		at = &AlertTrace{}
	}
	b := &actions.Brief{Incident: inc.ID, ReasonCode: code, Reason: reason, Target: at.Target, Severity: "error", Commands: commands}
	subject := at.Target
	if subject == "" && len(inc.Alerts) > 0 {
		subject = inc.Alerts[0].Labels["instance"]
	}
	b.Title = at.Alertname
	if b.Title == "" && len(inc.Alerts) > 0 {
		b.Title = inc.Alerts[0].Labels["alertname"]
	}
	if subject != "" {
		b.Title += " on " + subject
	}
	seen := map[string]bool{}
	for _, a := range inc.Alerts {
		ba := actions.BriefAlert{Name: a.Labels["alertname"], Status: a.Status, Labels: keyLabels(a.Labels), StartsAt: a.StartsAt.UTC().Format(time.RFC3339),
			Generator: a.GeneratorURL, Runbook: a.Annotations["runbook_url"]}
		ba.Summary = a.Annotations["summary"]
		if ba.Summary == "" {
			ba.Summary = a.Annotations["description"]
		}
		b.Alerts = append(b.Alerts, ba)
		switch a.Labels["severity"] {
		case "critical", "page":
			b.Severity = "critical"
		case "warning":
			if b.Severity != "critical" {
				b.Severity = "warning"
			}
		case "info", "none":
		}
		for _, l := range []struct {
			u   string
			dst *[]string
		}{{a.GeneratorURL, &b.Links.Generators}, {ba.Runbook, &b.Links.Runbooks}} {
			if l.u != "" && !seen[l.u] {
				seen[l.u] = true
				*l.dst = append(*l.dst, l.u)
			}
		}
	}
	for _, k := range sortedKeys(at.Enrichment) {
		b.Enrichment = append(b.Enrichment, actions.BriefQuery{Name: k, Value: at.Enrichment[k]})
	}
	switch {
	case at.LLM != nil && at.LLM.Diagnosis != nil:
		dg := at.LLM.Diagnosis
		b.Hypothesis = fmt.Sprintf("LLM hypothesis (%s %s, confidence %.2f; a model's guess, not verified by medic): %s — %s",
			at.LLM.Exchange.Provider, at.LLM.Exchange.Model, dg.Confidence, dg.RootCause, dg.Reasoning)
		for _, h := range dg.Hypotheses {
			b.Alternatives = append(b.Alternatives, actions.BriefCandidate{Runbook: "LLM alternative", Why: fmt.Sprintf("%s (probability %.2f)", h.Cause, h.Probability)})
		}
	case at.Runbook != "":
		b.Hypothesis = fmt.Sprintf("runbook %s matched with confidence %.2f", at.Runbook, at.Confidence)
	case at.Reason != "":
		b.Hypothesis = "no runbook applies: " + at.Reason
	}
	for _, o := range append(append([]rules.Outcome{}, at.Considered...), at.LowConfidence...) {
		if o.Name == at.Runbook {
			continue
		}
		why := o.Reason
		if why == "" {
			why = fmt.Sprintf("confidence %.2f", o.Confidence)
		}
		b.Alternatives = append(b.Alternatives, actions.BriefCandidate{Runbook: o.Name, Why: why})
	}
	b.Links.Incident = fmt.Sprintf("%s/api/v1/incidents/%d", run.d.externalURL(), inc.ID)
	return b
}

// externalURL is how the brief links back to medic.
func (d *Decider) externalURL() string {
	if u := d.Config.Escalation.ExternalURL; u != "" {
		return u
	}
	return "http://" + d.Config.Web.ListenAddress
}

// keyLabels keeps the labels a human reads first, at most 12.
func keyLabels(l map[string]string) map[string]string {
	keys := sortedKeys(l)
	prefer := []string{"alertname", "severity", "namespace", "service", "job", "instance", "pod", "deployment", "container"}
	sort.SliceStable(keys, func(i, j int) bool {
		pi, pj := slices.Index(prefer, keys[i]), slices.Index(prefer, keys[j])
		if pi < 0 {
			pi = len(prefer)
		}
		if pj < 0 {
			pj = len(prefer)
		}
		return pi < pj
	})
	out := map[string]string{}
	for _, k := range keys {
		if len(out) == 12 {
			break
		}
		out[k] = l[k]
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}

// summarise turns enrichment results into short text for the trace and
// the brief.
func summarise(res *rules.Results) map[string]string {
	if res == nil {
		return nil
	}
	out := map[string]string{}
	for name, samples := range res.Query {
		parts := make([]string, 0, 3)
		for i, s := range samples {
			if i == 3 {
				parts = append(parts, fmt.Sprintf("… %d series in all", len(samples)))
				break
			}
			ls := make(model.LabelSet, len(s.Labels))
			for k, v := range s.Labels {
				ls[model.LabelName(k)] = model.LabelValue(v)
			}
			parts = append(parts, fmt.Sprintf("%s %g", ls.String(), s.Value))
		}
		if len(samples) == 0 {
			parts = append(parts, "no data")
		}
		out[name] = strings.Join(parts, "; ")
	}
	for name, lines := range res.Logs {
		out[name] = fmt.Sprintf("%d log lines", len(lines))
		if len(lines) > 0 {
			out[name] += ", last: " + rules.Quote(lines[len(lines)-1].Line)
		}
	}
	for name, v := range res.Tool {
		b, _ := json.Marshal(v)
		out[name] = rules.Quote(string(b))
	}
	for name, e := range res.Errors {
		out[name] = "error: " + e
	}
	return out
}

// sendNotify sends a shadow notice through a notify tool the gate
// allowed. Like briefs, it is audited but not journalled, since it changes
// nothing medic remediates.
func (r *Remediator) sendNotify(ctx context.Context, run *loopRun, tool *rules.Tool, c rules.PlannedCall, allowed *actions.Allowed) (actions.NotifyResult, error) {
	spec, err := notifySpec(tool, c, run.incident, run.at)
	if err != nil {
		return actions.NotifyResult{}, err
	}
	return r.Executors.Notifier.Notify(ctx, allowed, spec)
}

func (m *metrics) escalated(code string) {
	if m != nil {
		m.escalations.WithLabelValues(code).Inc()
	}
}

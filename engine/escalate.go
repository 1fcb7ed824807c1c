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

// escalate settles the incident as escalated, with the reason, in one
// commit with the records before it, and hands it to a human with a brief.
func (r *Remediator) escalate(ctx context.Context, run *loopRun, code, reason string) {
	now := r.now()
	if run.at != nil {
		run.pending.Runbook = run.at.Runbook
	}
	run.pending.Escalated = true
	run.event(now, "escalated", "escalated: "+reason)
	run.record(now, "escalation", "medic", map[string]string{"reason_code": code, "reason": reason})
	run.settle(state.PhaseSettled, now)
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
	r.tellHuman(ctx, run, c.Written, code, reason, nil)
}

// tellHuman builds the brief, logs it, and sends it through the notify
// tool the routing picks, under the policy and the hourly budget. What
// happened to the brief is one commit.
func (r *Remediator) tellHuman(ctx context.Context, run *loopRun, inc *state.Incident, code, reason string, commands []string) {
	now := r.now()
	if run.alert == nil && len(inc.Alerts) > 0 {
		a := inc.Alerts[0]
		run.alert = &template.Alert{Status: a.Status, Labels: a.Labels, Annotations: a.Annotations, StartsAt: a.StartsAt, Fingerprint: a.Fingerprint}
	}
	b := r.brief(run, inc, code, reason, commands)
	r.Logger.Warn("escalation brief", "component", "remediator", "incident", run.incident, "reason", code, "brief", b.Text())
	defer r.commit(run)
	d := run.d
	name := d.route(run.rb, run.alert)
	if name == "" {
		run.record(now, "brief", "medic", map[string]any{"channel": "log", "brief": b})
		return
	}
	ok, err := r.Store.TakeEscalation(now, d.Config.Escalation.MaxPerHour)
	if err != nil || !ok {
		why := fmt.Sprintf("max_escalations_per_hour (%d) reached", d.Config.Escalation.MaxPerHour)
		if err != nil {
			why = err.Error()
		}
		run.event(now, "brief_suppressed", "the brief went only to the log: "+why)
		run.record(now, "brief", "medic", map[string]any{"channel": "log", "suppressed": why, "brief": b})
		return
	}
	tool := d.Rules.Tool(name)
	target := ""
	if run.at != nil {
		target = run.at.Target
	}
	in := actions.Input{Call: actions.Call{Tool: name, Type: string(rules.NotifyKind), Risk: string(tool.Risk), Target: target, Args: map[string]string{}},
		Source: "medic", Mode: string(rules.ModeAuto), Escalation: true, Confidence: 1}
	if run.at != nil {
		in.Runbook = run.at.Runbook
	}
	r.counts(&in, state.CountQuery{Tool: name, Target: target})
	dec, allowed := r.evaluate(ctx, d, in, now)
	if dec.Result != actions.Allow {
		run.event(now, "brief_suppressed", fmt.Sprintf("the brief went only to the log: policy %s: %s", dec.Result, strings.Join(dec.Reasons, "; ")))
		run.record(now, "brief", "medic", map[string]any{"channel": "log", "policy": dec, "brief": b})
		return
	}
	res, err := r.sendNotify(ctx, run, tool, rules.PlannedCall{Tool: name}, b, allowed)
	details := map[string]any{"tool": name, "channel": tool.Executor.Channel, "result": res, "brief": b}
	if err != nil {
		details["error"] = err.Error()
		run.event(now, "brief_failed", fmt.Sprintf("sending the brief through %s failed: %v", name, err))
	} else {
		run.event(now, "brief_sent", fmt.Sprintf("brief sent through %s (%s)", name, tool.Executor.Channel))
	}
	run.record(now, "brief", "medic", details)
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

// brief assembles what a human needs: the alerts, the enrichment, every
// step with its output and verification, the hypothesis and the runner-up
// runbooks, links, and the commands for a pending approval.
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
	if acts, err := r.Store.Actions(inc.ID); err == nil {
		for _, a := range acts {
			s := actions.BriefStep{Step: a.Step, Tool: a.Tool, Policy: a.Policy, Result: string(a.State), Output: a.Output}
			if a.Rollback {
				s.Result = "rollback " + s.Result
			}
			if v := a.Verification; v != nil {
				s.Verify, s.Before, s.After = v.Result, v.Before, v.After
			}
			b.Steps = append(b.Steps, s)
		}
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

// sendNotify sends through a notify tool what the gate allowed: c's
// message, or the brief b. It is the path of briefs and shadow notices,
// which are audited but not journalled, since they change nothing medic
// remediates.
func (r *Remediator) sendNotify(ctx context.Context, run *loopRun, tool *rules.Tool, c rules.PlannedCall, b *actions.Brief, allowed *actions.Allowed) (actions.NotifyResult, error) {
	spec, err := notifySpec(tool, c, run.incident, run.at)
	if err != nil {
		return actions.NotifyResult{}, err
	}
	if b != nil {
		spec.Brief, spec.Severity = b, b.Severity
	}
	return r.Executors.Notifier.Notify(ctx, allowed, spec)
}

func (m *metrics) escalated(code string) {
	if m != nil {
		m.escalations.WithLabelValues(code).Inc()
	}
}

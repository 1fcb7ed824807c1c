package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
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

// The closed loop: each step's effect is measured in Prometheus, a step
// that made things worse is rolled back, and whatever medic cannot fix is
// handed to a human with a brief.

// measure runs a verify block's PromQL for the alert and returns its one
// value. No data, several series, NaN or an unreachable Prometheus are
// errors: "unverifiable", never success.
func (r *Remediator) measure(ctx context.Context, d *Decider, v *rules.Verify, alert *template.Alert) (float64, error) {
	if d.Sources.Prom == nil {
		return 0, errors.New("no prometheus is configured")
	}
	q, err := v.PromQL.RenderQuery(rules.Vars{Labels: alert.Labels, Annotations: alert.Annotations})
	if err != nil {
		return 0, fmt.Errorf("render the verify query: %w", err)
	}
	timeout := v.Timeout
	if timeout <= 0 {
		timeout = rules.DefaultVerifyTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	samples, err := d.Sources.Prom.Query(ctx, q, r.now())
	switch {
	case err != nil:
		return 0, err
	case len(samples) == 0:
		return 0, fmt.Errorf("%s returned no data (add `or vector(0)` if no series means zero)", q)
	case len(samples) > 1:
		return 0, fmt.Errorf("%s returned %d series, not one", q, len(samples))
	case math.IsNaN(samples[0].Value):
		return 0, fmt.Errorf("%s returned NaN", q)
	}
	return samples[0].Value, nil
}

// stepOutcome is what verification made of one step.
type stepOutcome int

const (
	stepUnchanged stepOutcome = iota
	stepRecovered
	stepStopped // worse, unverifiable or past the deadline: escalated
	stepShutdown
)

// verifyStep waits the verify block's wait, measures again and acts on the
// result: recovered settles the incident, worse rolls the step back and
// escalates, unverifiable escalates, unchanged lets the plan go on.
func (r *Remediator) verifyStep(ctx context.Context, run *loopRun, c rules.PlannedCall, actionID uint64, before float64) stepOutcome {
	v := run.verify
	wait := v.Wait
	late := false
	if left := run.deadline.Sub(r.now()); left < wait {
		wait, late = max(left, 0), true
	}
	// The wait gives up the job's parallel slot; the check takes it again.
	sl, _ := ctx.Value(slotKey{}).(*slot)
	if sl != nil {
		sl.release()
	}
	t := time.NewTimer(wait)
	select {
	case <-t.C:
	case <-ctx.Done():
		t.Stop()
		return stepShutdown
	}
	if sl != nil && !sl.acquire(ctx) {
		return stepShutdown
	}
	if late {
		r.verification(run, actionID, state.Verification{Result: verifyUnverifiable, Before: &before, Error: "the incident's deadline passed", At: r.now()})
		r.escalate(ctx, run, escDeadline, fmt.Sprintf("the deadline of %s passed while verifying step %s", run.d.Config.Remediation.Deadline, c.Step))
		return stepStopped
	}
	after, err := r.measure(ctx, run.d, v, run.alert)
	if err != nil {
		if ctx.Err() != nil {
			return stepShutdown
		}
		r.verification(run, actionID, state.Verification{Result: verifyUnverifiable, Before: &before, Error: err.Error(), At: r.now()})
		r.escalate(ctx, run, escUnverifiable, fmt.Sprintf("step %s could not be verified: %v", c.Step, err))
		return stepStopped
	}
	env := rules.VerifyEnv{Before: before, After: after}
	recovered, err := v.Expect.Eval(env)
	if err != nil {
		r.verification(run, actionID, state.Verification{Result: verifyUnverifiable, Before: &before, After: &after, Error: err.Error(), At: r.now()})
		r.escalate(ctx, run, escUnverifiable, fmt.Sprintf("step %s: expect failed: %v", c.Step, err))
		return stepStopped
	}
	worse := false
	if !recovered && v.Worse != nil {
		if worse, err = v.Worse.Eval(env); err != nil {
			r.Logger.Error("the worse condition failed; treating the step as unchanged", "component", "remediator", "err", err)
		}
	}
	now := r.now()
	switch {
	case recovered:
		r.verification(run, actionID, state.Verification{Result: verifyRecovered, Before: &before, After: &after, At: now})
		r.recovered(run, v, before, after, now)
		return stepRecovered
	case worse:
		r.verification(run, actionID, state.Verification{Result: verifyWorse, Before: &before, After: &after, At: now})
		what := r.rollback(ctx, run, c)
		r.escalate(ctx, run, escWorse, fmt.Sprintf("step %s made it worse (%s: before %g, after %g); %s", c.Step, v.Worse.Source, before, after, what))
		return stepStopped
	}
	r.verification(run, actionID, state.Verification{Result: verifyUnchanged, Before: &before, After: &after, At: now})
	return stepUnchanged
}

// verification records a check on the action, the timeline and the metrics.
func (r *Remediator) verification(run *loopRun, actionID uint64, v state.Verification) {
	if err := r.Store.VerifyAction(actionID, v); err != nil {
		r.Logger.Error("recording a verification failed", "component", "remediator", "err", err)
	}
	r.metrics.verified(v.Result)
	msg := fmt.Sprintf("verification of action %d: %s", actionID, v.Result)
	if v.Before != nil && v.After != nil {
		msg += fmt.Sprintf(" (before %g, after %g)", *v.Before, *v.After)
	}
	if v.Error != "" {
		msg += ": " + v.Error
	}
	r.event(run.incident, v.At, "verified", msg)
	r.record(v.At, run.incident, "verification", "medic", map[string]any{"action": actionID, "verification": v})
}

// recovered settles the incident as remediated and remembers the fix on
// the target, so that a re-fire soon after counts against it.
func (r *Remediator) recovered(run *loopRun, v *rules.Verify, before, after float64, now time.Time) {
	var tools []string
	if acts, err := r.Store.Actions(run.incident); err == nil {
		for _, a := range acts {
			if a.State == state.ActionSucceeded && !a.Rollback && !slices.Contains(tools, a.Tool) {
				tools = append(tools, a.Tool)
			}
		}
	}
	opened := now
	if inc, err := r.Store.Incident(run.incident); err == nil {
		opened = inc.OpenedAt
	}
	ttr := now.Sub(opened)
	msg := fmt.Sprintf("recovered: %s held (before %g, after %g); %s after the incident opened", v.Expect.Source, before, after, ttr.Round(time.Millisecond))
	prev, err := r.Store.Remediated(run.incident, run.at.Target, state.Fix{Incident: run.incident, Runbook: run.at.Runbook, Tools: tools, At: now},
		state.Event{Time: now, Kind: "recovered", Message: msg})
	if err != nil {
		r.Logger.Error("recording the recovery failed", "component", "remediator", "err", err)
	}
	r.record(now, run.incident, "outcome", "runbook:"+run.at.Runbook, map[string]any{"outcome": state.OutcomeRemediated,
		"time_to_recovery_seconds": ttr.Seconds(), "before": before, "after": after})
	if r.metrics != nil {
		if prev != state.OutcomeRemediated {
			// Counted once: the close may have counted it already.
			r.metrics.incidents.WithLabelValues(state.OutcomeRemediated).Inc()
		}
		r.metrics.remediationDuration.Observe(ttr.Seconds())
	}
	r.Logger.Info("incident remediated", "component", "remediator", "incident", run.incident, "runbook", run.at.Runbook,
		"target", run.at.Target, "time_to_recovery", ttr)
}

// rollback runs a step's rollback under the policy, marked as a rollback,
// which the default policy lets past the rate limit and the storm brake.
// It says what happened, for the escalation.
func (r *Remediator) rollback(ctx context.Context, run *loopRun, c rules.PlannedCall) string {
	if c.Rollback == nil {
		return "the step has no rollback"
	}
	rc := *c.Rollback
	rc.Step = c.Step + " rollback"
	now := r.now()
	in := run.d.PolicyInput(rc, run.at, run.rb)
	in.Rollback = true
	dec, _ := r.evaluate(ctx, run.d, in, now)
	r.record(now, run.incident, "policy", "runbook:"+run.at.Runbook, map[string]any{"step": rc.Step, "tool": rc.Tool, "args": rc.Args, "rollback": true, "policy": dec})
	if dec.Result != actions.Allow {
		return fmt.Sprintf("its rollback %s was not run: policy %s: %s", rc.Tool, dec.Result, strings.Join(dec.Reasons, "; "))
	}
	if r.metrics != nil {
		r.metrics.rollbacks.Inc()
	}
	if _, ok, why, _ := r.execute(ctx, run, rc, in, true, now); !ok {
		return fmt.Sprintf("its rollback %s failed: %s", rc.Tool, why)
	}
	return fmt.Sprintf("its rollback %s ran", rc.Tool)
}

// escalate settles the incident as escalated, with the reason, and hands
// it to a human with a brief.
func (r *Remediator) escalate(ctx context.Context, run *loopRun, code, reason string) {
	now := r.now()
	runbook := ""
	if run.at != nil {
		runbook = run.at.Runbook
	}
	inc, prev, err := r.Store.Escalated(run.incident, runbook, state.Event{Time: now, Kind: "escalated", Message: "escalated: " + reason})
	if err != nil {
		r.Logger.Error("recording the escalation failed", "component", "remediator", "incident", run.incident, "err", err)
		return
	}
	r.record(now, run.incident, "escalation", "medic", map[string]string{"reason_code": code, "reason": reason})
	if r.metrics != nil {
		r.metrics.escalations.WithLabelValues(code).Inc()
		if prev != state.OutcomeEscalated {
			r.metrics.incidents.WithLabelValues(state.OutcomeEscalated).Inc()
		}
	}
	r.tellHuman(ctx, run, inc, code, reason, nil)
}

// tellHuman builds the brief, logs it, and sends it through the notify
// tool the routing picks, under the policy and the hourly budget.
func (r *Remediator) tellHuman(ctx context.Context, run *loopRun, inc *state.Incident, code, reason string, commands []string) {
	now := r.now()
	if run.alert == nil && len(inc.Alerts) > 0 {
		a := inc.Alerts[0]
		run.alert = &template.Alert{Status: a.Status, Labels: a.Labels, Annotations: a.Annotations, StartsAt: a.StartsAt, Fingerprint: a.Fingerprint}
	}
	b := r.brief(run, inc, code, reason, commands)
	r.Logger.Warn("escalation brief", "component", "remediator", "incident", run.incident, "reason", code, "brief", b.Text())
	d := run.d
	name := d.route(run.rb, run.alert)
	if name == "" {
		r.record(now, run.incident, "brief", "medic", map[string]any{"channel": "log", "brief": b})
		return
	}
	ok, err := r.Store.TakeEscalation(now, d.Config.Escalation.MaxPerHour)
	if err != nil || !ok {
		why := fmt.Sprintf("max_escalations_per_hour (%d) reached", d.Config.Escalation.MaxPerHour)
		if err != nil {
			why = err.Error()
		}
		r.event(run.incident, now, "brief_suppressed", "the brief went only to the log: "+why)
		r.record(now, run.incident, "brief", "medic", map[string]any{"channel": "log", "suppressed": why, "brief": b})
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
		r.event(run.incident, now, "brief_suppressed", fmt.Sprintf("the brief went only to the log: policy %s: %s", dec.Result, strings.Join(dec.Reasons, "; ")))
		r.record(now, run.incident, "brief", "medic", map[string]any{"channel": "log", "policy": dec, "brief": b})
		return
	}
	res, err := r.sendNotify(ctx, run, tool, rules.PlannedCall{Tool: name}, b, allowed)
	details := map[string]any{"tool": name, "channel": tool.Executor.Channel, "result": res, "brief": b}
	if err != nil {
		details["error"] = err.Error()
		r.event(run.incident, now, "brief_failed", fmt.Sprintf("sending the brief through %s failed: %v", name, err))
	} else {
		r.event(run.incident, now, "brief_sent", fmt.Sprintf("brief sent through %s (%s)", name, tool.Executor.Channel))
	}
	r.record(now, run.incident, "brief", "medic", details)
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
			s := actions.BriefStep{Step: a.Step, Tool: a.Tool, Policy: a.Policy, Result: string(a.State), Output: actionOutput(a.Result)}
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

// actionOutput is what an executor printed or answered, for the brief.
func actionOutput(raw json.RawMessage) string {
	var r struct {
		Stdout string `json:"stdout"`
		Stderr string `json:"stderr"`
		Error  string `json:"error"`
		Job    string `json:"job"`
		Status int    `json:"status"`
	}
	if json.Unmarshal(raw, &r) != nil {
		return ""
	}
	var parts []string
	for _, p := range []string{r.Error, strings.TrimSpace(r.Stdout), strings.TrimSpace(r.Stderr)} {
		if p != "" {
			parts = append(parts, p)
		}
	}
	if r.Job != "" {
		parts = append(parts, "job "+r.Job)
	}
	if r.Status != 0 {
		parts = append(parts, fmt.Sprintf("HTTP %d", r.Status))
	}
	return strings.Join(parts, "\n")
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

func (m *metrics) verified(result string) {
	if m != nil {
		m.verifications.WithLabelValues(result).Inc()
	}
}

// evaluate asks the gate about a call medic is about to make, and counts
// the verdict.
func (r *Remediator) evaluate(ctx context.Context, d *Decider, in actions.Input, now time.Time) (actions.Decision, *actions.Allowed) {
	dec, allowed := d.Gate.Evaluate(ctx, in, now)
	if r.metrics != nil {
		r.metrics.policyDecisions.WithLabelValues(string(dec.Result)).Inc()
	}
	return dec, allowed
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

func (m *metrics) proposal(result string) {
	if m != nil {
		m.llmProposals.WithLabelValues(result).Inc()
	}
}

package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/prometheus/alertmanager/template"

	"medic/rules"
	"medic/state"
)

// Verification: each step's effect is measured in Prometheus before and
// after it, and a step that made things worse is rolled back.

// measure runs a verify block's PromQL for the alert and returns its one
// value. No data, several series, NaN or an unreachable Prometheus are
// errors: "unverifiable", never success.
func (r *Remediator) measure(ctx context.Context, d *Decider, v *rules.Verify, alert *template.Alert) (float64, error) {
	if d.Sources.Prom == nil {
		return 0, errors.New("no prometheus is configured")
	}
	q, err := v.PromQL.RenderQuery(rules.Vars{Labels: alert.Labels, Annotations: alert.Annotations, Var: d.Rules.Var})
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

// verifyStep moves the run to verifying, with what a restart needs to
// resume it, waits until until, measures again and acts on the result:
// recovered settles the incident, worse rolls the step back and escalates,
// unverifiable escalates, unchanged lets the plan go on. With an interval
// it also measures every interval before until: the first check that is
// recovered or worse decides at once, and only the last may be unchanged
// or unverifiable.
func (r *Remediator) verifyStep(ctx context.Context, run *loopRun, c rules.PlannedCall, actionID uint64, before float64, attempt int, until time.Time) stepOutcome {
	v := run.verify
	late := false
	if run.deadline.Before(until) {
		until, late = run.deadline, true
	}
	var undo json.RawMessage
	if c.Rollback != nil {
		undo, _ = json.Marshal(c.Rollback)
	}
	run.phase(state.PhaseVerifying, r.now(), func(p *state.Remediation) {
		p.Step, p.Attempt, p.Action, p.Verify, p.Before, p.Until, p.Rollback = c.Step, attempt, actionID, true, &before, &until, undo
	})
	if _, err := r.commit(run); err != nil {
		r.escalate(ctx, run, escUnverifiable, fmt.Sprintf("step %s could not be verified: recording its phase failed: %v", c.Step, err))
		return stepStopped
	}
	// Each wait gives up the job's place; each check takes one again.
	sl := jobSlot(ctx)
	for {
		next := until
		if v.Interval > 0 {
			if n := r.now().Add(v.Interval); n.Before(until) {
				next = n
			}
		}
		final := !next.Before(until)
		sl.release()
		t := time.NewTimer(max(next.Sub(r.now()), 0))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return stepShutdown
		}
		if !sl.act(ctx) {
			return stepShutdown
		}
		if final && late {
			r.verification(run, actionID, state.Verification{Result: verifyUnverifiable, Before: &before, Error: "the incident's deadline passed", At: r.now()})
			r.escalate(ctx, run, escDeadline, fmt.Sprintf("the deadline of %s passed while verifying step %s", run.d.Config.Remediation.Deadline, c.Step))
			return stepStopped
		}
		after, err := r.measure(ctx, run.d, v, run.alert)
		if err != nil {
			if ctx.Err() != nil {
				return stepShutdown
			}
			if !final {
				continue // a check before the last may miss; the last may not
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
		case final:
			r.verification(run, actionID, state.Verification{Result: verifyUnchanged, Before: &before, After: &after, At: now})
			return stepUnchanged
		}
	}
}

// resumeVerification takes up a verification that a restart cut off, from
// the incident's phase: it measures when the phase says, and settles the
// incident on the result. The plan's remaining steps are not run again:
// an unchanged result escalates.
func (r *Remediator) resumeVerification(ctx context.Context, inc *state.Incident, j state.DecisionJob) {
	p := inc.Remediation
	run := r.resumedRun(inc.ID, j.Seq, p.Runbook, p.Target)
	run.deadline = inc.OpenedAt.Add(run.d.Config.Remediation.Deadline)
	if rec := decisionAlert(inc, j.Fingerprint); rec != nil || len(inc.Alerts) > 0 {
		if rec == nil {
			rec = &inc.Alerts[0]
		}
		run.alert = &template.Alert{Status: rec.Status, Labels: rec.Labels, Annotations: rec.Annotations, StartsAt: rec.StartsAt, Fingerprint: rec.Fingerprint}
		run.at.Alertname = rec.Labels["alertname"]
	}
	now := r.now()
	if run.rb == nil || run.rb.Verify == nil || p.Before == nil || p.Until == nil || run.alert == nil {
		r.escalate(ctx, run, escRestart, fmt.Sprintf("medic restarted while verifying step %s (action %d), and runbook %s can no longer verify it", p.Step, p.Action, p.Runbook))
		return
	}
	if !r.claim(p.Target) {
		return // the job stays queued; the next turn of the loop tries again
	}
	defer r.release(p.Target)
	run.verify = run.rb.Verify
	c := rules.PlannedCall{Step: p.Step}
	if len(p.Rollback) > 0 {
		var undo rules.PlannedCall
		if err := json.Unmarshal(p.Rollback, &undo); err == nil {
			c.Rollback = &undo
		}
	}
	run.event(now, "resumed", fmt.Sprintf("medic restarted while verifying step %s (action %d); it is verified at %s", p.Step, p.Action, p.Until.UTC().Format(time.RFC3339)))
	if r.verifyStep(ctx, run, c, p.Action, *p.Before, p.Attempt, *p.Until) == stepUnchanged {
		r.escalate(ctx, run, escRestart, fmt.Sprintf("step %s changed nothing, and medic restarted during the plan: its remaining steps are not run again", p.Step))
	}
}

// verification records a check on the action, the timeline and the
// metrics, in the run's next commit.
func (r *Remediator) verification(run *loopRun, actionID uint64, v state.Verification) {
	run.pending.Verified = &state.Verified{Action: actionID, Verification: v}
	r.metrics.verified(v.Result)
	msg := fmt.Sprintf("verification of action %d: %s", actionID, v.Result)
	if v.Before != nil && v.After != nil {
		msg += fmt.Sprintf(" (before %g, after %g)", *v.Before, *v.After)
	}
	if v.Error != "" {
		msg += ": " + v.Error
	}
	run.event(v.At, "verified", msg)
	run.record(v.At, "verification", "medic", map[string]any{"action": actionID, "verification": v})
}

// recovered settles the incident as remediated and remembers the fix on
// the target, so that a re-fire soon after counts against it: one commit.
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
	run.event(now, "recovered", msg)
	run.record(now, "outcome", "runbook:"+run.at.Runbook, map[string]any{"outcome": state.OutcomeRemediated,
		"time_to_recovery_seconds": ttr.Seconds(), "before": before, "after": after})
	run.pending.Remediated = &state.Fix{Incident: run.incident, Runbook: run.at.Runbook, Tools: tools, At: now}
	run.pending.Target = run.at.Target
	run.settle(state.PhaseSettled, now)
	c, err := r.commit(run)
	if err != nil {
		return
	}
	if r.metrics != nil {
		if c.Prev != state.OutcomeRemediated {
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
	id, ok, why, refused := r.execute(ctx, run, rc, in, state.PhaseRollingBack, 0, nil, now)
	if refused != nil || id == 0 {
		return fmt.Sprintf("its rollback %s was not run: %s", rc.Tool, why)
	}
	if r.metrics != nil {
		r.metrics.rollbacks.Inc()
	}
	if !ok {
		return fmt.Sprintf("its rollback %s failed: %s", rc.Tool, why)
	}
	return fmt.Sprintf("its rollback %s ran", rc.Tool)
}

func (m *metrics) verified(result string) {
	if m != nil {
		m.verifications.WithLabelValues(result).Inc()
	}
}

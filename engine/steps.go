package engine

import (
	"context"
	"fmt"
	"strings"
	"time"

	"medic/actions"
	"medic/rules"
	"medic/state"
)

// Steps: a plan's calls run one by one, each checked by the policy right
// before it runs; shadow mode records what would have run instead.

// runCalls runs the plan from call from of attempt attempt. approved
// marks the call at from as approved by a human: the policy re-checks it
// without the approval requirement. Each call is policy-checked right
// before it runs; with a verify block, each step's effect is measured and
// the plan stops at a recovery, a worse result, an unverifiable one or the
// deadline, and runs again up to max_attempts while nothing changes. A
// step whose tool ran and failed starts the next attempt too, while there
// is one. Every way out settles the run in its last commit, except
// shutdown, which leaves the phase for the next start to read.
func (r *Remediator) runCalls(ctx context.Context, run *loopRun, from, attempt int, approved bool) {
	d, at, rb := run.d, run.at, run.rb
	shadowMode := r.DryRun || d.Config.Remediation.DryRun || rb.Mode == rules.ModeShadow
	run.verify = rb.Verify
	attempts := 1
	if shadowMode {
		run.verify = nil
	} else {
		attempts = max(rb.MaxAttempts, 1)
		if !jobSlot(ctx).act(ctx) {
			return // shutdown: the next start decides again
		}
	}
	var shadowed []string
attempts:
	for ; attempt <= attempts; attempt++ {
		for i := from; i < len(at.Calls); i++ {
			now := r.now()
			c := at.Calls[i].PlannedCall
			in := d.PolicyInput(c, at, rb)
			in.Approved = approved && i == from
			if shadowMode {
				// Shadow decides and records, never asks and never acts; an
				// exec tool's dry_run argv runs when the policy allows the call.
				in.Mode = string(rules.ModeShadow)
				dec, allowed := r.evaluate(ctx, d, in, now)
				run.record(now, "policy", "runbook:"+at.Runbook, map[string]any{"step": c.Step, "tool": c.Tool, "args": c.Args, "attempt": attempt, "policy": dec})
				shadowed = append(shadowed, r.shadow(ctx, run, c, dec, allowed, now))
				continue
			}
			// The policy's verdict on a call that acts is the one taken as
			// its intent is journalled (claimAction), with the counts of
			// every call allowed before it.
			var before *float64
			if run.verify != nil {
				v, err := r.measure(ctx, d, run.verify, run.alert)
				if err != nil {
					if ctx.Err() != nil {
						r.commit(run)
						return
					}
					r.metrics.verified(verifyUnverifiable)
					r.escalate(ctx, run, escUnverifiable, fmt.Sprintf("could not measure before step %s, so it did not run: %v", c.Step, err))
					return
				}
				before = &v
			}
			id, ok, why, refused := r.execute(ctx, run, c, in, state.PhaseExecuting, attempt, before, now)
			switch {
			case refused != nil && refused.Result == actions.NeedsApproval:
				r.askApproval(ctx, run, i, attempt, c, *refused, now)
				return
			case refused != nil:
				r.escalate(ctx, run, escDenied, fmt.Sprintf("policy denied %s: %s", c.Tool, strings.Join(refused.Reasons, "; ")))
				return
			}
			if !ok && id != 0 && attempt < attempts && ctx.Err() == nil {
				// The tool ran and failed: the next attempt starts over. A
				// failed call is not done, so it is no idempotent repeat.
				run.event(r.now(), "retry", fmt.Sprintf("attempt %d of %d failed at step %s (%s); attempt %d starts over", attempt, attempts, c.Step, why, attempt+1))
				r.commit(run)
				from, approved = 0, false
				continue attempts
			}
			if !ok {
				if ctx.Err() != nil {
					r.commit(run)
					return
				}
				code := escFailed
				if strings.HasPrefix(why, "precheck") {
					code = escPrecheck
				}
				r.escalate(ctx, run, code, why)
				return
			}
			if run.verify == nil {
				if i == len(at.Calls)-1 {
					// No verify block: Alertmanager's resolution settles it.
					run.settle(state.PhaseAwaitingResolution, r.now())
				}
				r.commit(run)
				continue
			}
			switch r.verifyStep(ctx, run, c, id, *before, attempt, r.now().Add(run.verify.Wait)) {
			case stepRecovered, stepStopped, stepShutdown:
				return
			}
		}
		if run.verify == nil {
			break // every step ran; nothing to verify
		}
		from, approved = 0, false
	}
	switch {
	case shadowMode:
		run.settle(state.PhaseSettled, r.now())
		if _, err := r.commit(run); err == nil && r.metrics != nil {
			r.metrics.shadowRuns.Inc()
		}
		if len(shadowed) > 0 {
			r.notifyShadow(ctx, run, shadowed)
		}
	case run.verify != nil:
		r.escalate(ctx, run, escExhausted, fmt.Sprintf("verification saw no recovery after %d attempt(s) of %d step(s)", attempts, len(at.Calls)))
	case len(at.Calls) == 0:
		run.settle(state.PhaseAwaitingResolution, r.now())
		r.commit(run)
	}
}

// shadow records what would have run, and runs an exec tool's dry_run argv
// when the policy allows the call. It returns the record's message.
func (r *Remediator) shadow(ctx context.Context, run *loopRun, c rules.PlannedCall, dec actions.Decision, allowed *actions.Allowed, now time.Time) string {
	tool := run.d.Rules.Tool(c.Tool)
	msg := fmt.Sprintf("shadow: would run %s (policy %s)", describeCall(tool, c), dec.Result)
	if len(c.DryRun) > 0 && allowed != nil && tool.Executor.Kind == rules.ExecKind {
		res, err := r.Executors.Exec.Run(ctx, allowed, actions.ExecSpec{Tool: c.Tool, Argv: c.DryRun, Env: c.Env, Dir: tool.Executor.Dir, Timeout: tool.Timeout})
		if err != nil {
			res.Err = err.Error()
		}
		msg += fmt.Sprintf("; dry run %q exited %d", c.DryRun, res.ExitCode)
		run.record(r.now(), "dry_run", "medic", res)
	}
	run.event(now, "shadow", msg)
	return msg
}

// describeCall says exactly what a call does, in the terms of its executor.
func describeCall(tool *rules.Tool, c rules.PlannedCall) string {
	switch tool.Executor.Kind {
	case rules.ExecKind:
		return fmt.Sprintf("%s: exec %q", c.Tool, c.Argv)
	case rules.HTTPKind:
		if c.HTTP != nil {
			return fmt.Sprintf("%s: %s %s body %s", c.Tool, c.HTTP.Method, c.HTTP.URL, c.HTTP.Body)
		}
	case rules.SystemdKind:
		if c.UnitAction == actions.SetMemoryMax {
			return fmt.Sprintf("%s: systemd %s %s %dMiB", c.Tool, c.UnitAction, c.Unit, c.MemoryMax>>20)
		}
		return fmt.Sprintf("%s: systemd %s %s", c.Tool, c.UnitAction, c.Unit)
	case rules.SilenceKind:
		return fmt.Sprintf("%s: silence the incident's alerts for %s", c.Tool, tool.Executor.Duration)
	case rules.NotifyKind:
		return fmt.Sprintf("%s: notify %s %q", c.Tool, tool.Executor.Channel, c.Message)
	}
	return c.Tool
}

// notifyShadow sends what shadow mode would have run to the shadow_notify
// tool, once per incident. The notification passes the policy gate; it is
// audited, not journalled, since it changes nothing medic remediates.
func (r *Remediator) notifyShadow(ctx context.Context, run *loopRun, lines []string) {
	d, at := run.d, run.at
	name := d.Config.Remediation.ShadowNotify
	if name == "" {
		return
	}
	tool := d.Rules.Tool(name)
	c := rules.PlannedCall{Step: "shadow_notify", Tool: name, Risk: tool.Risk, Args: map[string]string{},
		Message: fmt.Sprintf("medic shadow mode, incident %d (%s on %s), runbook %s:\n%s", run.incident, at.Alertname, at.Target, at.Runbook, strings.Join(lines, "\n"))}
	now := r.now()
	in := d.PolicyInput(c, at, run.rb)
	in.Mode = string(rules.ModeAuto)
	dec, allowed := r.evaluate(ctx, d, in, now)
	defer r.commit(run)
	run.record(now, "policy", "medic", map[string]any{"step": c.Step, "tool": c.Tool, "policy": dec})
	if dec.Result != actions.Allow {
		run.event(now, "shadow", fmt.Sprintf("shadow notification not sent: policy %s: %s", dec.Result, reasonOr(strings.Join(dec.Reasons, "; "), "no reason")))
		return
	}
	res, err := r.sendNotify(ctx, run, tool, c, allowed)
	details := map[string]any{"tool": name, "result": res}
	if err != nil {
		details["error"] = err.Error()
		run.event(now, "shadow", "shadow notification failed: "+err.Error())
	}
	run.record(now, "shadow_notify", "medic", details)
}

package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/alertmanager/template"
	promconfig "github.com/prometheus/common/config"

	"medic/actions"
	"medic/rules"
	"medic/state"
)

// Execution: a call the gate allowed runs here, after its precheck and the
// claim that journals its intent, through the executor of its tool's kind.

// precheck runs a tool's read-only precheck under the policy; it reports
// whether the tool may run, and the reason when not.
func (r *Remediator) precheck(ctx context.Context, d *Decider, at *AlertTrace, c *rules.PlannedCall, now time.Time) (bool, string) {
	pre := c.Precheck
	tool := d.Rules.Tool(pre.Tool)
	in := d.PolicyInput(*pre, at, d.runbook(at.Runbook))
	dec, allowed := d.Gate.Evaluate(ctx, in, now)
	if allowed == nil {
		return false, fmt.Sprintf("precheck %s refused by the policy: %s", pre.Tool, strings.Join(dec.Reasons, "; "))
	}
	if tool.Executor.Kind != rules.ExecKind {
		return false, fmt.Sprintf("precheck %s: only exec tools can be prechecks", pre.Tool)
	}
	res, err := r.Executors.Exec.Run(ctx, allowed, actions.ExecSpec{Tool: pre.Tool, Argv: pre.Argv, Env: pre.Env, Dir: tool.Executor.Dir, Timeout: tool.Timeout})
	if err != nil {
		return false, err.Error()
	}
	if !res.Succeeded() {
		out := strings.TrimSpace(res.Stderr + " " + res.Stdout)
		if res.Err != "" {
			out = res.Err
		}
		return false, fmt.Sprintf("precheck %s failed (exit %d): %s", pre.Tool, res.ExitCode, out)
	}
	return true, ""
}

// execute runs a call the gate allowed on input in: its precheck, then the
// claim, which journals the intent and moves the run to phase (executing,
// or rolling_back) in one commit, then the tool. The result goes into the
// run's pending transition: the caller commits it with the phase that
// follows. It returns the action's ID, whether the call succeeded, and why
// not; the caller escalates. A non-nil decision is the claim's re-check
// refusing the call.
func (r *Remediator) execute(ctx context.Context, run *loopRun, c rules.PlannedCall, in actions.Input, phase state.Phase, attempt int, before *float64, now time.Time) (uint64, bool, string, *actions.Decision) {
	d, incident, alert, at := run.d, run.incident, run.alert, run.at
	rollback := phase == state.PhaseRollingBack
	tool := d.Rules.Tool(c.Tool)
	if c.Precheck != nil {
		if ok, why := r.precheck(ctx, d, at, &c, now); !ok {
			run.record(now, "precheck", "runbook:"+at.Runbook, map[string]string{"tool": c.Tool, "reason": why})
			return 0, false, why, nil
		}
	}
	act := &state.Action{Incident: incident, Runbook: at.Runbook, Step: c.Step, Tool: c.Tool, Target: at.Target, Group: at.Group,
		Args: c.Args, Argv: c.Argv, IdempotencyKey: c.IdempotencyKey, StartedAt: now, Rollback: rollback,
		Verify: run.verify != nil && !rollback}
	run.phase(phase, now, func(p *state.Remediation) {
		p.Step, p.Attempt, p.Verify, p.Before = c.Step, attempt, act.Verify, before
	})
	allowed, dec, err := r.claimAction(ctx, run, act, in, tool.IdempotencyWindow, attempt)
	switch {
	case errors.Is(err, state.ErrIdempotentRepeat):
		run.event(now, "skipped", err.Error())
		return 0, false, "skipped: " + err.Error(), nil
	case err != nil:
		return 0, false, "journalling the action failed: " + err.Error(), nil
	case allowed == nil:
		return 0, false, fmt.Sprintf("policy %s %s: %s", dec.Result, c.Tool, strings.Join(dec.Reasons, "; ")), &dec
	}
	rep := r.executor(run, tool, c, incident, alert, at).Execute(ctx, allowed)
	raw, _ := json.Marshal(rep)
	ok, st := rep.Succeeded(), state.ActionFailed
	if ok {
		st = state.ActionSucceeded
	}
	fin := r.now()
	run.pending.Finish = &state.Finished{Action: act.ID, State: st, Result: raw, Output: rep.Summary(), At: fin}
	run.record(fin, "exec", "runbook:"+at.Runbook, map[string]any{"action": act.ID, "tool": c.Tool, "state": st, "rollback": rollback, "result": json.RawMessage(raw)})
	msg := fmt.Sprintf("%s %s (action %d)", c.Tool, st, act.ID)
	run.event(fin, "action_"+string(st), msg)
	if r.metrics != nil {
		r.metrics.actions.WithLabelValues(c.Tool, string(st)).Inc()
	}
	return act.ID, ok, msg, nil
}

// executor binds a planned call to the runner of its tool's kind, with the
// runners and secrets in force now. A call that cannot be bound gets an
// executor that reports why.
func (r *Remediator) executor(run *loopRun, tool *rules.Tool, c rules.PlannedCall, incident uint64, alert *template.Alert, at *AlertTrace) actions.Executor {
	fail := func(format string, args ...any) actions.Executor {
		why := fmt.Sprintf(format, args...)
		return actions.ExecutorFunc(func(context.Context, *actions.Allowed) actions.Report { return actions.Failure{Err: why} })
	}
	d := run.d
	switch tool.Executor.Kind {
	case rules.ExecKind:
		return r.Executors.Exec.Call(actions.ExecSpec{Tool: c.Tool, Argv: c.Argv, Env: c.Env, Dir: tool.Executor.Dir, Timeout: tool.Timeout})
	case rules.HTTPKind:
		if r.Executors.HTTP == nil || c.HTTP == nil {
			return fail("no http executor")
		}
		hx := r.Executors.HTTP
		if f := tool.Executor.HTTPConfigFile; f != "" {
			client, err := HTTPClientFromFile(f)
			if err != nil {
				return fail("%v", err)
			}
			hx = &actions.HTTPExec{Client: client}
		}
		return hx.Call(actions.HTTPSpec{Tool: c.Tool, Method: c.HTTP.Method, URL: c.HTTP.URL, Headers: c.HTTP.Headers,
			Body: c.HTTP.Body, ExpectStatus: c.HTTP.ExpectStatus, Timeout: tool.Timeout})
	case rules.SilenceKind:
		if d.Silencer == nil {
			return fail("no Alertmanager configured for silences")
		}
		comment := fmt.Sprintf("medic incident %d", incident)
		if c.Message != "" {
			comment = c.Message + " (" + comment + ")"
		}
		return d.Silencer.Call(actions.SilenceSpec{Tool: c.Tool, Labels: alert.Labels, Duration: tool.Executor.Duration, Comment: comment}, r.now)
	case rules.NotifyKind:
		spec, err := notifySpec(tool, c, incident, at)
		if err != nil || r.Executors.Notifier == nil {
			return fail("notify: %v", err)
		}
		return r.Executors.Notifier.Call(spec)
	case rules.SystemdKind:
		// The bus comes from the current config, so a reload applies it.
		sx := &actions.Systemd{Address: d.Config.Remediation.SystemdBus}
		return sx.Call(actions.SystemdSpec{Tool: c.Tool, Unit: c.Unit, Action: c.UnitAction, MemoryMax: c.MemoryMax, Timeout: tool.Timeout})
	}
	return fail("no executor for %s tools", tool.Executor.Kind)
}

// claimAction checks the limits and takes them in one step: under claimMu
// it counts again, asks the gate again, and, when the gate allows, commits
// the run's pending transition with the intent journalled. Parallel
// decisions therefore never pass a brake together. It returns the allow,
// or the refusing decision.
func (r *Remediator) claimAction(ctx context.Context, run *loopRun, act *state.Action, in actions.Input, window time.Duration, attempt int) (*actions.Allowed, actions.Decision, error) {
	d := run.d
	r.claimMu.Lock()
	defer r.claimMu.Unlock()
	if d.Counts != nil {
		d.Counts(&in, state.CountQuery{Tool: act.Tool, Target: act.Target, Group: act.Group, IdempotencyKey: act.IdempotencyKey, IdempotencyWindow: window})
	}
	dec, allowed := r.evaluate(ctx, d, in, r.now())
	run.record(act.StartedAt, "policy", "runbook:"+run.at.Runbook, map[string]any{"step": act.Step, "tool": act.Tool, "args": act.Args, "attempt": attempt,
		"rollback": act.Rollback, "policy": dec})
	if allowed == nil {
		run.pending.Phase = nil
		return nil, dec, nil
	}
	act.Policy = string(dec.Result)
	run.pending.Begin, run.pending.Window = act, window
	if run.job == 0 {
		// A run resumed by an approval has no job: queue one with the
		// intent, so that a restart finds the incident by its phase.
		run.pending.Queue = &state.DecisionJob{Incident: run.incident, Fingerprint: run.alert.Fingerprint, QueuedAt: act.StartedAt}
	}
	c, err := r.commit(run)
	if err != nil {
		run.pending.Begin, run.pending.Phase, run.pending.Queue = nil, nil, nil
		return nil, dec, err
	}
	if c.Queue != nil {
		run.job = c.Queue.Seq
	}
	return allowed, dec, nil
}

// notifySpec reads a notify tool's secrets from their files, now, so that a
// rotated key is picked up without a reload.
func notifySpec(tool *rules.Tool, c rules.PlannedCall, incident uint64, at *AlertTrace) (actions.NotifySpec, error) {
	ex := tool.Executor
	s := actions.NotifySpec{Tool: c.Tool, Channel: ex.Channel, Incident: incident, Action: "trigger", Severity: ex.Severity,
		Source: "medic:" + at.Runbook, Summary: c.Message, Details: c.Args}
	if s.Summary == "" {
		s.Summary = fmt.Sprintf("%s on %s", at.Alertname, at.Target)
	}
	if ex.URLFile != "" {
		u, err := ReadToken(ex.URLFile)
		if err != nil {
			return s, err
		}
		s.URL = u
	}
	if ex.RoutingKeyFile != "" {
		k, err := ReadToken(ex.RoutingKeyFile)
		if err != nil {
			return s, err
		}
		s.RoutingKey = k
	}
	return s, nil
}

// HTTPClientFromFile builds a client from a Prometheus HTTP client config
// file. http tools read theirs when the call runs, so rotated credentials
// need no reload; the CLI's --http.config.file uses it too.
func HTTPClientFromFile(path string) (*http.Client, error) {
	hc, _, err := promconfig.LoadHTTPConfigFile(path)
	if err != nil {
		return nil, fmt.Errorf("http config file %s: %w", path, err)
	}
	return promconfig.NewClientFromConfig(*hc, "medic")
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

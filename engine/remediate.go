package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/alertmanager/template"
	promconfig "github.com/prometheus/common/config"

	"medic/actions"
	"medic/rules"
	"medic/state"
)

// Executors run the calls the gate allowed.
type Executors struct {
	Exec     *actions.Exec
	HTTP     *actions.HTTPExec
	Silencer *actions.Silencer
	Notifier *actions.Notifier
}

// Remediator decides each new incident and runs what its runbook plans,
// call by call, each one checked by the policy right before it runs, with
// the intent journalled first. Only one remediation runs on a target at a
// time: an incident whose target is busy is merged into the running one.
type Remediator struct {
	Logger    *slog.Logger
	Store     *state.Store
	Executors Executors
	// Decider returns the decision path in force (it changes on reload).
	Decider func() *Decider
	Now     func() time.Time
	// DryRun forces shadow mode everywhere: decide, record, run nothing.
	DryRun bool
	// ApprovalTTL is how long a pending call waits for a human.
	ApprovalTTL time.Duration

	mu   sync.Mutex
	busy map[string]bool
	wake chan struct{}
	wg   sync.WaitGroup
	// ctx is Run's context, which approved calls also run under, so that
	// shutdown cancels them too.
	ctx context.Context
}

// DefaultApprovalTTL bounds the wait for a human when the config sets none.
const DefaultApprovalTTL = time.Hour

func (r *Remediator) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// Wake tells the loop that jobs are queued.
func (r *Remediator) Wake() {
	r.mu.Lock()
	wake := r.wake
	r.mu.Unlock()
	if wake == nil {
		return // Run has not started; it reads the queue when it does
	}
	select {
	case wake <- struct{}{}:
	default:
	}
}

// Recover runs once at start, before Run: every action a crash left
// running is marked interrupted, its incident is escalated with that
// fact, and the incident's queued decision is dropped, so that nothing is
// re-run blindly.
func (r *Remediator) Recover() error {
	now := r.now()
	interrupted, err := r.Store.MarkInterrupted(now)
	if err != nil {
		return err
	}
	jobs, err := r.Store.DecisionJobs(1 << 20)
	if err != nil {
		return err
	}
	for _, a := range interrupted {
		r.Logger.Error("an action was interrupted by a restart; escalating, not re-running", "component", "remediator",
			"incident", a.Incident, "tool", a.Tool, "action", a.ID)
		msg := fmt.Sprintf("escalated: %s (action %d) was interrupted by a restart and is not re-run", a.Tool, a.ID)
		if err := r.Store.AddIncidentEvent(a.Incident, state.Event{Time: now, Kind: "escalated", Message: msg}); err != nil && !errors.Is(err, state.ErrNotFound) {
			return err
		}
		details, _ := json.Marshal(map[string]any{"action": a.ID, "tool": a.Tool, "target": a.Target, "state": "interrupted"})
		if _, err := r.Store.Audit(state.AuditEntry{Time: now, Incident: a.Incident, Kind: "escalation", Actor: "medic", Details: details}); err != nil {
			return err
		}
		for _, j := range jobs {
			if j.Incident == a.Incident {
				if err := r.Store.DoneDecision(j.Seq, nil); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// Run decides queued incidents until ctx ends, at most parallel at a time,
// and waits for the ones in flight.
func (r *Remediator) Run(ctx context.Context, parallel int) {
	wake := make(chan struct{}, 1)
	r.mu.Lock()
	r.ctx = ctx
	r.busy = map[string]bool{}
	r.wake = wake
	r.mu.Unlock()
	sem := make(chan struct{}, parallel)
	inFlight := map[uint64]bool{}
	var mu sync.Mutex
	poll := time.NewTicker(pollInterval)
	defer poll.Stop()
	for {
		jobs, err := r.Store.DecisionJobs(256)
		if err != nil {
			r.Logger.Error("reading the decision queue failed", "component", "remediator", "err", err)
		}
		for _, j := range jobs {
			mu.Lock()
			if inFlight[j.Seq] {
				mu.Unlock()
				continue
			}
			inFlight[j.Seq] = true
			mu.Unlock()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				r.wg.Wait()
				return
			}
			r.wg.Add(1)
			go func() {
				defer r.wg.Done()
				defer func() { <-sem }()
				r.handle(ctx, j)
				mu.Lock()
				delete(inFlight, j.Seq)
				mu.Unlock()
			}()
		}
		select {
		case <-ctx.Done():
			r.wg.Wait()
			return
		case <-wake:
		case <-poll.C:
		}
	}
}

func (r *Remediator) audit(now time.Time, incident uint64, kind, actor string, details any) *state.AuditEntry {
	b, _ := json.Marshal(details)
	return &state.AuditEntry{Time: now, Incident: incident, Kind: kind, Actor: actor, Details: b}
}

// record appends to the audit log; a failure is logged, and the
// remediation goes on, since the journal already holds the action.
func (r *Remediator) record(now time.Time, incident uint64, kind, actor string, details any) {
	if _, err := r.Store.Audit(*r.audit(now, incident, kind, actor, details)); err != nil {
		r.Logger.Error("audit failed", "component", "remediator", "incident", incident, "err", err)
	}
}

// event appends to an incident's timeline, logging a failure.
func (r *Remediator) event(incident uint64, now time.Time, kind, msg string) {
	if err := r.Store.AddIncidentEvent(incident, state.Event{Time: now, Kind: kind, Message: msg}); err != nil {
		r.Logger.Error("adding a timeline event failed", "component", "remediator", "incident", incident, "err", err)
	}
}

// handle decides one job and, when the decision is to act, acts.
func (r *Remediator) handle(ctx context.Context, j state.DecisionJob) {
	now := r.now()
	inc, err := r.Store.Incident(j.Incident)
	if err != nil {
		r.Logger.Error("decision job for a missing incident", "component", "remediator", "incident", j.Incident, "err", err)
		_ = r.Store.DoneDecision(j.Seq, nil)
		return
	}
	i := inc.AlertIndex(j.Fingerprint)
	if inc.State != state.StateOpen || i < 0 {
		_ = r.Store.DoneDecision(j.Seq, r.audit(now, j.Incident, "decision", "medic", map[string]any{"decision": "none", "reason": "the incident closed before it was decided"}))
		return
	}
	rec := inc.Alerts[i]
	alert := template.Alert{Status: rec.Status, Labels: rec.Labels, Annotations: rec.Annotations, StartsAt: rec.StartsAt, Fingerprint: rec.Fingerprint}
	d := *r.Decider()
	d.State = r.counts(now)
	at := d.DecideAlert(ctx, &alert, now)
	actor := "medic"
	if at.Runbook != "" {
		actor = "runbook:" + at.Runbook
	}
	if at.Decision != DecisionRemediate && at.Decision != DecisionApprove {
		r.event(j.Incident, now, at.Decision, reasonOr(at.Reason, at.Decision))
		_ = r.Store.DoneDecision(j.Seq, r.audit(now, j.Incident, "decision", actor, at))
		return
	}
	// A job still queued for an incident that already has journal entries
	// was cut off by a restart between two steps. Re-running its plan would
	// repeat the steps that finished; escalate instead.
	if acts, err := r.Store.Actions(j.Incident); err != nil || len(acts) > 0 {
		msg := "escalated: medic restarted during this incident's remediation; its plan is not re-run"
		if err != nil {
			msg = "escalated: reading the journal failed: " + err.Error()
		}
		r.event(j.Incident, now, "escalated", msg)
		_ = r.Store.DoneDecision(j.Seq, r.audit(now, j.Incident, "escalation", "medic", map[string]any{"reason": msg}))
		return
	}
	if !r.claim(at.Target) {
		msg := fmt.Sprintf("merged: a remediation is already running on %s", at.Target)
		r.event(j.Incident, now, "merged", msg)
		_ = r.Store.DoneDecision(j.Seq, r.audit(now, j.Incident, "decision", actor, map[string]any{"decision": "merged", "target": at.Target}))
		return
	}
	defer r.release(at.Target)
	r.record(now, j.Incident, "decision", actor, at)
	r.runCalls(ctx, &d, j.Incident, &alert, &at, 0, false)
	_ = r.Store.DoneDecision(j.Seq, nil)
}

func reasonOr(reason, def string) string {
	if reason != "" {
		return reason
	}
	return def
}

// counts reads the policy's counts from the journal.
func (r *Remediator) counts(now time.Time) func(tool, target string) actions.State {
	return func(tool, target string) actions.State {
		c, err := r.Store.CountActions(tool, target, now)
		if err != nil {
			r.Logger.Error("reading action counts failed", "component", "remediator", "err", err)
		}
		rate, runs := c.Tool.Rate()
		return actions.State{ExecutionsTargetHour: c.TargetHour, ActionsFleet10m: c.Fleet10m, ToolRuns: runs, ToolSuccessRate: rate}
	}
}

func (r *Remediator) claim(target string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.busy == nil {
		r.busy = map[string]bool{}
	}
	if r.busy[target] {
		return false
	}
	r.busy[target] = true
	return true
}

func (r *Remediator) release(target string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.busy, target)
}

// runCalls runs the calls from index from on. approved marks the call at
// from as approved by a human: the policy re-checks it without the approval
// requirement. It stops at the first call that is denied, needs approval,
// or fails.
func (r *Remediator) runCalls(ctx context.Context, d *Decider, incident uint64, alert *template.Alert, at *AlertTrace, from int, approved bool) {
	rb := d.Rules.Runbook(at.Runbook)
	var shadowed []string
	defer func() {
		if len(shadowed) > 0 {
			r.notifyShadow(ctx, d, incident, at, shadowed)
		}
	}()
	for i := from; i < len(at.Calls); i++ {
		now := r.now()
		c := at.Calls[i].PlannedCall
		in := d.PolicyInput(c, at, rb)
		in.Approved = approved && i == from
		if r.DryRun || rb.Mode == rules.ModeShadow {
			in.Mode = string(rules.ModeShadow)
		}
		dec, allowed := d.Gate.Evaluate(ctx, in, now)
		r.record(now, incident, "policy", "runbook:"+at.Runbook, map[string]any{"step": c.Step, "tool": c.Tool, "args": c.Args, "policy": dec})
		if in.Mode == string(rules.ModeShadow) {
			// Shadow decides and records, never asks and never acts; an
			// exec tool's dry_run argv runs when the policy allows the call.
			shadowed = append(shadowed, r.shadow(ctx, d, incident, c, dec, allowed, now))
			continue
		}
		switch {
		case dec.Result == actions.Deny:
			r.event(incident, now, "escalated", fmt.Sprintf("policy denied %s: %s", c.Tool, dec.Reasons[0]))
			return
		case dec.Result == actions.NeedsApproval:
			call, _ := json.Marshal(struct {
				Index int        `json:"index"`
				Trace AlertTrace `json:"trace"`
				Alert any        `json:"alert"`
			}{i, *at, alert})
			ttl := r.ApprovalTTL
			if ttl <= 0 {
				ttl = DefaultApprovalTTL
			}
			err := r.Store.PutApproval(state.Approval{Incident: incident, Runbook: at.Runbook, Step: c.Step, Tool: c.Tool, Target: at.Target,
				Call: call, Reasons: dec.Reasons, CreatedAt: now, ExpiresAt: now.Add(ttl)})
			if err != nil {
				r.Logger.Error("storing the approval failed", "component", "remediator", "err", err)
				return
			}
			r.event(incident, now, "approval_pending",
				fmt.Sprintf("%s waits for approval until %s: %s", c.Tool, now.Add(ttl).UTC().Format(time.RFC3339), dec.Reasons[0]))
			return
		}
		if !r.execute(ctx, d, incident, alert, at, c, allowed, now) {
			return
		}
	}
}

// shadow records what would have run, and runs an exec tool's dry_run argv
// when the policy allows the call. It returns the record's message.
func (r *Remediator) shadow(ctx context.Context, d *Decider, incident uint64, c rules.PlannedCall, dec actions.Decision, allowed *actions.Allowed, now time.Time) string {
	tool := d.Rules.Tool(c.Tool)
	msg := fmt.Sprintf("shadow: would run %s (policy %s)", describeCall(tool, c), dec.Result)
	if len(c.DryRun) > 0 && allowed != nil && tool.Executor.Kind == rules.ExecKind {
		res, err := r.Executors.Exec.Run(ctx, allowed, actions.ExecSpec{Tool: c.Tool, Argv: c.DryRun, Env: c.Env, Dir: tool.Executor.Dir, Timeout: tool.Timeout})
		if err != nil {
			res.Err = err.Error()
		}
		msg += fmt.Sprintf("; dry run %q exited %d", c.DryRun, res.ExitCode)
		r.record(r.now(), incident, "dry_run", "medic", res)
	}
	r.event(incident, now, "shadow", msg)
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
		return fmt.Sprintf("%s: systemd %s %s", c.Tool, c.UnitAction, c.Unit)
	case rules.SilenceKind:
		return fmt.Sprintf("%s: silence the incident's alerts for %s", c.Tool, tool.Executor.Duration)
	case rules.NotifyKind:
		return fmt.Sprintf("%s: notify %s %q", c.Tool, tool.Executor.Channel, c.Message)
	}
	return c.Tool
}

// notifyShadow sends what shadow mode would have run to the shadow_notify
// tool, once per incident. The notification is a real action, so it passes
// the policy gate and is journalled like any other.
func (r *Remediator) notifyShadow(ctx context.Context, d *Decider, incident uint64, at *AlertTrace, lines []string) {
	name := d.Config.Remediation.ShadowNotify
	if name == "" {
		return
	}
	tool := d.Rules.Tool(name)
	c := rules.PlannedCall{Step: "shadow_notify", Tool: name, Risk: tool.Risk, Args: map[string]string{},
		Message: fmt.Sprintf("medic shadow mode, incident %d (%s on %s), runbook %s:\n%s", incident, at.Alertname, at.Target, at.Runbook, strings.Join(lines, "\n"))}
	now := r.now()
	in := d.PolicyInput(c, at, d.Rules.Runbook(at.Runbook))
	in.Mode = string(rules.ModeAuto)
	dec, allowed := d.Gate.Evaluate(ctx, in, now)
	r.record(now, incident, "policy", "medic", map[string]any{"step": c.Step, "tool": c.Tool, "policy": dec})
	if dec.Result != actions.Allow {
		r.event(incident, now, "shadow", fmt.Sprintf("shadow notification not sent: policy %s: %s", dec.Result, reasonOr(strings.Join(dec.Reasons, "; "), "no reason")))
		return
	}
	r.execute(ctx, d, incident, nil, at, c, allowed, now)
}

// precheck runs a tool's read-only precheck under the policy; it reports
// whether the tool may run, and the reason when not.
func (r *Remediator) precheck(ctx context.Context, d *Decider, at *AlertTrace, c *rules.PlannedCall, now time.Time) (bool, string) {
	pre := c.Precheck
	tool := d.Rules.Tool(pre.Tool)
	in := d.PolicyInput(*pre, at, d.Rules.Runbook(at.Runbook))
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
	if !res.OK() {
		out := strings.TrimSpace(res.Stderr + " " + res.Stdout)
		if res.Err != "" {
			out = res.Err
		}
		return false, fmt.Sprintf("precheck %s failed (exit %d): %s", pre.Tool, res.ExitCode, out)
	}
	return true, ""
}

// execute journals the intent, runs the call and records the result. It
// reports whether the next call may run.
func (r *Remediator) execute(ctx context.Context, d *Decider, incident uint64, alert *template.Alert, at *AlertTrace, c rules.PlannedCall, allowed *actions.Allowed, now time.Time) bool {
	tool := d.Rules.Tool(c.Tool)
	if c.Precheck != nil {
		if ok, why := r.precheck(ctx, d, at, &c, now); !ok {
			r.event(incident, now, "escalated", "escalated: "+why)
			r.record(now, incident, "precheck", "runbook:"+at.Runbook, map[string]string{"tool": c.Tool, "reason": why})
			return false
		}
	}
	act := &state.Action{Incident: incident, Runbook: at.Runbook, Step: c.Step, Tool: c.Tool, Target: at.Target,
		Args: c.Args, Argv: c.Argv, IdempotencyKey: c.IdempotencyKey, StartedAt: now}
	if err := r.Store.BeginAction(act, tool.IdempotencyWindow); err != nil {
		if errors.Is(err, state.ErrIdempotentRepeat) {
			r.event(incident, now, "skipped", err.Error())
			return false
		}
		r.Logger.Error("journalling the action failed; not running it", "component", "remediator", "err", err)
		return false
	}
	var result any
	ok := false
	switch tool.Executor.Kind {
	case rules.ExecKind:
		res, err := r.Executors.Exec.Run(ctx, allowed, actions.ExecSpec{Tool: c.Tool, Argv: c.Argv, Env: c.Env, Dir: tool.Executor.Dir, Timeout: tool.Timeout})
		if err != nil {
			res.Err = err.Error()
		}
		result, ok = res, res.OK()
	case rules.HTTPKind:
		if r.Executors.HTTP == nil || c.HTTP == nil {
			result = map[string]string{"error": "no http executor"}
			break
		}
		hx := r.Executors.HTTP
		if f := tool.Executor.HTTPConfigFile; f != "" {
			client, err := HTTPClientFromFile(f)
			if err != nil {
				result = map[string]string{"error": err.Error()}
				break
			}
			hx = &actions.HTTPExec{Client: client}
		}
		res, err := hx.Do(ctx, allowed, actions.HTTPSpec{Tool: c.Tool, Method: c.HTTP.Method, URL: c.HTTP.URL, Headers: c.HTTP.Headers,
			Body: c.HTTP.Body, ExpectStatus: c.HTTP.ExpectStatus, Timeout: tool.Timeout})
		if err != nil {
			res.Err = err.Error()
		}
		result, ok = res, res.OK
	case rules.SilenceKind:
		if r.Executors.Silencer == nil {
			result = map[string]string{"error": "no Alertmanager configured for silences"}
			break
		}
		res, err := r.Executors.Silencer.Silence(ctx, allowed, actions.SilenceSpec{Tool: c.Tool, Labels: alert.Labels, Duration: tool.Executor.Duration,
			Comment: fmt.Sprintf("medic incident %d", incident)}, now)
		if err != nil {
			result = map[string]string{"error": err.Error()}
			break
		}
		result, ok = res, true
	case rules.NotifyKind:
		spec, err := notifySpec(tool, c, incident, at)
		if err != nil || r.Executors.Notifier == nil {
			result = map[string]string{"error": fmt.Sprint("notify: ", err)}
			break
		}
		res, err := r.Executors.Notifier.Notify(ctx, allowed, spec)
		if err != nil {
			result = map[string]string{"error": err.Error()}
			break
		}
		result, ok = res, true
	case rules.SystemdKind:
		// The bus comes from the current config, so a reload applies it.
		sx := &actions.Systemd{Address: d.Config.Remediation.SystemdBus}
		res, err := sx.Run(ctx, allowed, actions.SystemdSpec{Tool: c.Tool, Unit: c.Unit, Action: c.UnitAction, Timeout: tool.Timeout})
		if err != nil {
			res.Err = err.Error()
		}
		result, ok = res, res.OK()
	default:
		result = map[string]string{"error": fmt.Sprintf("no executor for %s tools", tool.Executor.Kind)}
	}
	raw, _ := json.Marshal(result)
	st := state.ActionFailed
	if ok {
		st = state.ActionSucceeded
	}
	fin := r.now()
	if err := r.Store.FinishAction(act.ID, st, raw, fin); err != nil {
		r.Logger.Error("recording the action result failed", "component", "remediator", "err", err)
	}
	r.record(fin, incident, "exec", "runbook:"+at.Runbook, map[string]any{"action": act.ID, "tool": c.Tool, "state": st, "result": json.RawMessage(raw)})
	msg := fmt.Sprintf("%s %s (action %d)", c.Tool, st, act.ID)
	r.event(incident, fin, "action_"+string(st), msg)
	if !ok {
		r.event(incident, fin, "escalated", "escalated: "+msg)
	}
	return ok
}

// Resume runs an approved call and the steps after it. It is called after
// DecideApproval approved the incident's pending call.
func (r *Remediator) Resume(ctx context.Context, a state.Approval) error {
	r.mu.Lock()
	if r.ctx != nil {
		ctx = r.ctx
	}
	r.mu.Unlock()
	var saved struct {
		Index int            `json:"index"`
		Trace AlertTrace     `json:"trace"`
		Alert template.Alert `json:"alert"`
	}
	if err := json.Unmarshal(a.Call, &saved); err != nil {
		return fmt.Errorf("approval of incident %d: %w", a.Incident, err)
	}
	if !r.claim(saved.Trace.Target) {
		return fmt.Errorf("a remediation is running on %s; approve again once it ends", saved.Trace.Target)
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer r.release(saved.Trace.Target)
		d := *r.Decider()
		d.State = r.counts(r.now())
		r.runCalls(ctx, &d, a.Incident, &saved.Alert, &saved.Trace, saved.Index, true)
	}()
	return nil
}

// Wait waits for the remediations in flight.
func (r *Remediator) Wait() { r.wg.Wait() }

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

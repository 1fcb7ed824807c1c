package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/alertmanager/template"

	"medic/actions"
	"medic/rules"
	"medic/state"
)

// A call the policy says needs a human waits as an approval: pending, then
// approved, denied, expired or cancelled, each transition one transaction
// (state.Store). An approved call is not the saved one: it is rendered again
// from its arguments against the tools in force, refused when what would
// run is not what the human was shown, and checked by the policy again
// before it runs. A denial, an expiry or a refusal escalates the incident
// with its brief; the incident's close cancels a pending approval.

// savedCall is what an approval keeps to resume the plan: the call's
// place, and the decision with its planned calls as the human saw them.
type savedCall struct {
	Index   int            `json:"index"`
	Attempt int            `json:"attempt,omitempty"`
	Trace   AlertTrace     `json:"trace"`
	Alert   template.Alert `json:"alert"`
}

// ApprovalError is a refused approve or deny: the HTTP status and what
// happened, in words a human can act on.
type ApprovalError struct {
	Status int
	Msg    string
}

func (e *ApprovalError) Error() string { return e.Msg }

func conflict(format string, args ...any) *ApprovalError {
	return &ApprovalError{Status: http.StatusConflict, Msg: fmt.Sprintf(format, args...)}
}

// askApproval stores a call that needs a human, with its expiry, and
// sends the brief with the commands to decide it.
func (r *Remediator) askApproval(ctx context.Context, run *loopRun, index, attempt int, c rules.PlannedCall, dec actions.Decision, now time.Time) {
	call, _ := json.Marshal(savedCall{Index: index, Attempt: attempt, Trace: *run.at, Alert: *run.alert})
	ttl := run.d.Config.Remediation.ApprovalTTL
	if ttl <= 0 {
		ttl = DefaultApprovalTTL
	}
	run.pending.Ask = &state.Approval{Incident: run.incident, Runbook: run.at.Runbook, Step: c.Step, Tool: c.Tool, Target: run.at.Target,
		Call: call, Reasons: dec.Reasons, CreatedAt: now, ExpiresAt: now.Add(ttl)}
	reason := fmt.Sprintf("%s waits for approval until %s: %s", c.Tool, now.Add(ttl).UTC().Format(time.RFC3339), dec.Reasons[0])
	run.event(now, "approval_pending", reason)
	run.settle(state.PhaseAwaitingApproval, now)
	written, err := r.commit(run)
	if err != nil {
		return
	}
	r.metrics.escalated(escApproval)
	inc := written.Written
	r.tellHuman(ctx, run, inc, escApproval, reason, []string{
		fmt.Sprintf("medic approve %d --medic.url=%s", run.incident, run.d.externalURL()),
		fmt.Sprintf("medic deny %d --reason '…' --medic.url=%s", run.incident, run.d.externalURL()),
	})
}

// Approve approves an incident's pending call and starts it. Nothing about
// the approval changes unless the call can run now: a busy target leaves it
// pending, to approve again. A call that can never run (its incident
// closed, its runbook or tool changed) is cancelled and the incident
// escalates. The message says what happens next.
func (r *Remediator) Approve(id uint64, by string) (state.Approval, string, error) {
	now := r.now()
	a, run, err := r.prepare(id, now)
	if err != nil {
		return a, "", err
	}
	if !r.claim(run.at.Target) {
		return a, "", conflict("a remediation is running on %s; the approval stays pending: approve again once it ends", run.at.Target)
	}
	a, err = r.Store.DecideApproval(id, true, by, "", now, state.AuditEntry{Time: now, Incident: id, Kind: "approval", Actor: by})
	if err != nil {
		r.release(run.at.Target)
		return a, "", r.notDecided(a, err)
	}
	run.event(now, "approval_approved", fmt.Sprintf("%s approved by %s", a.Tool, by))
	saved := run.saved
	r.mu.Lock()
	ctx := r.ctx
	r.mu.Unlock()
	if ctx == nil {
		ctx = context.Background()
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer r.release(run.at.Target)
		r.runCalls(ctx, run.loopRun, saved.Index, saved.Attempt, true)
	}()
	return a, fmt.Sprintf("%s approved by %s: it runs now, once the policy checks it again (see the incident's timeline)", a.Tool, by), nil
}

// Deny denies an incident's pending call, and the incident escalates with
// the reason.
func (r *Remediator) Deny(id uint64, by, reason string) (state.Approval, error) {
	now := r.now()
	a, err := r.Store.DecideApproval(id, false, by, reason, now, state.AuditEntry{Time: now, Incident: id, Kind: "approval", Actor: by})
	if err != nil {
		return a, r.notDecided(a, err)
	}
	r.escalateApproval(a, fmt.Sprintf("%s was denied by %s: %s; nothing ran", a.Tool, by, reason),
		state.Event{Time: now, Kind: "approval_denied", Message: fmt.Sprintf("%s denied by %s: %s", a.Tool, by, reason)})
	return a, nil
}

// approvedRun is a prepared resumption: the plan rendered again, ready to
// run from the approved call.
type approvedRun struct {
	*loopRun
	saved savedCall
}

// prepare checks that an incident's pending approval can still run, and
// renders its plan against the tools in force. An approval that can never
// run is cancelled (or found expired) and its incident escalated.
func (r *Remediator) prepare(id uint64, now time.Time) (state.Approval, approvedRun, error) {
	a, err := r.Store.Approval(id)
	if errors.Is(err, state.ErrNotFound) {
		return a, approvedRun{}, &ApprovalError{Status: http.StatusNotFound, Msg: fmt.Sprintf("incident %d has no approval", id)}
	}
	if err != nil {
		return a, approvedRun{}, err
	}
	if a.State != state.ApprovalPending {
		return a, approvedRun{}, conflict("incident %d's approval is %s, not pending", id, a.State)
	}
	if !now.Before(a.ExpiresAt) {
		return a, approvedRun{}, r.cancel(a, now, "")
	}
	inc, err := r.Store.Incident(id)
	if err != nil {
		return a, approvedRun{}, err
	}
	if inc.State != state.StateOpen || inc.Outcome != "" {
		return a, approvedRun{}, r.cancel(a, now, fmt.Sprintf("incident %d is %s", id, reasonOr(inc.Outcome, string(inc.State))))
	}
	var saved savedCall
	if err := json.Unmarshal(a.Call, &saved); err != nil {
		return a, approvedRun{}, fmt.Errorf("approval of incident %d: %w", id, err)
	}
	saved.Attempt = max(saved.Attempt, 1)
	d := r.decider()
	rb := d.runbook(saved.Trace.Runbook)
	if rb == nil {
		return a, approvedRun{}, r.cancel(a, now, fmt.Sprintf("runbook %s is gone since the approval was asked", saved.Trace.Runbook))
	}
	at := saved.Trace
	calls, err := replan(d.Rules, at.Calls)
	if err == nil && saved.Index < len(calls) && whatRuns(calls[saved.Index].PlannedCall) != whatRuns(at.Calls[saved.Index].PlannedCall) {
		err = fmt.Errorf("%s would now run %s, not the %s that was approved", a.Tool, whatRuns(calls[saved.Index].PlannedCall), whatRuns(at.Calls[saved.Index].PlannedCall))
	}
	if err != nil || saved.Index >= len(calls) {
		return a, approvedRun{}, r.cancel(a, now, fmt.Sprintf("the tools changed since the approval was asked: %v", err))
	}
	at.Calls = calls
	run := &loopRun{d: d, incident: id, alert: &saved.Alert, at: &at, rb: rb, deadline: now.Add(d.Config.Remediation.Deadline)}
	return a, approvedRun{loopRun: run, saved: saved}, nil
}

// notDecided turns a failed decision into its answer. Only the expiry that
// the decision itself found is settled here; an approval someone else
// decided, expired or cancelled was settled by them.
func (r *Remediator) notDecided(a state.Approval, err error) error {
	switch {
	case errors.Is(err, state.ErrExpired):
		return r.settleApproval(a, "it expired")
	case errors.Is(err, state.ErrNotPending):
		return conflict("%s was not run: the approval is %s", a.Tool, a.State)
	}
	return err
}

// cancel ends an approval that can never run, escalates its incident, and
// returns the conflict that says so. An empty reason means it expired.
func (r *Remediator) cancel(a state.Approval, now time.Time, reason string) error {
	to, why := state.ApprovalCancelled, reason
	if reason == "" {
		to, why = state.ApprovalExpired, "nobody decided before the expiry"
	}
	a, err := r.Store.EndApproval(a.Incident, to, why, now)
	if err != nil {
		return r.notDecided(a, err)
	}
	return r.settleApproval(a, reasonOr(reason, "it expired"))
}

// settleApproval records on the timeline that an approval ended without
// running, escalates its incident unless it is settled already (a close
// that cancelled it settled it), and returns the conflict that tells the
// caller.
func (r *Remediator) settleApproval(a state.Approval, why string) error {
	msg := fmt.Sprintf("%s was not run: the approval is %s (%s)", a.Tool, a.State, why)
	if a.State == state.ApprovalExpired {
		msg = fmt.Sprintf("%s was not run: nobody decided before the approval expired at %s", a.Tool, a.ExpiresAt.UTC().Format(time.RFC3339))
	}
	if a.State == state.ApprovalExpired || a.State == state.ApprovalCancelled {
		r.escalateApproval(a, msg, state.Event{Time: r.now(), Kind: "approval_" + string(a.State), Message: msg})
	}
	return conflict("%s", msg)
}

// escalateApproval records how an approval ended on its incident's
// timeline and escalates the incident with its brief, unless it is settled
// already.
func (r *Remediator) escalateApproval(a state.Approval, reason string, ended state.Event) {
	inc, err := r.Store.Incident(a.Incident)
	if err != nil {
		return
	}
	if inc.Outcome != "" {
		r.commitNow(&state.Change{Incident: a.Incident, Events: []state.Event{ended}})
		return
	}
	run := r.resumedRun(a.Incident, 0, a.Runbook, a.Target)
	var saved savedCall
	if json.Unmarshal(a.Call, &saved) == nil {
		run.at, run.alert = &saved.Trace, &saved.Alert
	}
	run.pending.Events = append(run.pending.Events, ended)
	r.escalate(context.Background(), run, escNoApproval, reason)
}

// expireApprovals ends every pending approval past its expiry and
// escalates its incident: nobody decided, and nothing ran.
func (r *Remediator) expireApprovals() {
	expired, err := r.Store.ExpireApprovals(r.now())
	if err != nil {
		r.Logger.Error("expiring approvals failed", "component", "remediator", "err", err)
		return
	}
	for _, a := range expired {
		_ = r.settleApproval(a, "it expired")
	}
}

// replan renders saved calls again from their validated arguments against
// the tools in force, rollbacks included: an approved call runs what the
// tools say now, never a saved argv.
func replan(set *rules.Set, saved []CallTrace) ([]CallTrace, error) {
	out := make([]CallTrace, len(saved))
	for i, c := range saved {
		pc, err := set.PlanTool(c.Tool, c.Args)
		if err != nil {
			return nil, fmt.Errorf("step %s: %w", c.Step, err)
		}
		pc.Step = c.Step
		if c.Rollback != nil {
			rb, err := set.PlanTool(c.Rollback.Tool, c.Rollback.Args)
			if err != nil {
				return nil, fmt.Errorf("step %s rollback: %w", c.Step, err)
			}
			pc.Rollback = &rb
		}
		out[i] = CallTrace{PlannedCall: pc, Policy: c.Policy, RollbackPolicy: c.RollbackPolicy}
	}
	return out, nil
}

// whatRuns says what a planned call would do, to compare an approved call
// with its rendering now.
func whatRuns(c rules.PlannedCall) string {
	b, _ := json.Marshal(struct {
		Risk       rules.Risk
		Argv       []string
		Env        map[string]string
		HTTP       *rules.PlannedHTTP
		Unit       string
		UnitAction string
		MemoryMax  uint64
		Message    string
	}{c.Risk, c.Argv, c.Env, c.HTTP, c.Unit, c.UnitAction, c.MemoryMax, c.Message})
	return string(b)
}

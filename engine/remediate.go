package engine

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/alertmanager/template"

	"medic/actions"
	"medic/state"
)

// Executors run the calls the gate allowed. Silences go through the
// Decider's Silencer, which the config in force builds.
type Executors struct {
	Exec     *actions.Exec
	HTTP     *actions.HTTPExec
	Notifier *actions.Notifier
}

// Remediator decides each new incident and runs what its runbook plans,
// call by call, each one checked by the policy right before it runs, with
// the intent journalled first, moving the incident through its phases
// (state.Phase). Only one remediation runs on a target at a time: a new
// incident whose target is still busy is held until it is free.
type Remediator struct {
	Logger    *slog.Logger
	Store     *state.Store
	Executors Executors
	// Decider returns the decision path in force (it changes on reload).
	Decider func() *Decider
	Now     func() time.Time
	// DryRun forces shadow mode everywhere: decide, record, run nothing.
	// It is serve's --dry-run flag; remediation.dry_run in the config in
	// force does the same, and a reload can turn that on or off.
	DryRun bool

	// metrics is the engine's, set by Engine.SetRemediator; nil counts
	// nothing.
	metrics *metrics

	// claimMu makes checking the limits and taking them one step: the
	// counts a call is allowed on include every call allowed before it.
	claimMu sync.Mutex

	mu        sync.Mutex
	held      map[uint64]time.Time
	busy      map[string]bool
	wake      chan struct{}
	briefWake chan struct{}
	// briefs are the queued briefs the sender has yet to send, by group,
	// in queue order, without the briefs themselves.
	briefs map[string][]state.BriefJob
	wg     sync.WaitGroup
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
	poke(wake)
}

// poke wakes a loop without waiting; a nil channel is a loop that has not
// started, and reads its queue when it does.
func poke(wake chan struct{}) {
	select {
	case wake <- struct{}{}:
	default:
	}
}

// Recover runs once at start, before Run: every action a crash left
// running (phase executing or rolling_back) is marked interrupted, and its
// incident is escalated with that fact and its queued decision dropped, in
// one transaction, so that nothing is re-run blindly. A verification cut
// off by the crash is resumed by Run, from the phase.
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
		if _, err := r.Store.Incident(a.Incident); err != nil {
			continue
		}
		run := r.resumedRun(a.Incident, 0, a.Runbook, a.Target)
		for _, j := range jobs {
			if j.Incident == a.Incident {
				run.job = j.Seq
			}
		}
		run.record(now, "interrupted", "medic", map[string]any{"action": a.ID, "tool": a.Tool, "target": a.Target, "state": "interrupted"})
		r.escalate(context.Background(), run, escRestart, fmt.Sprintf("%s (action %d) was interrupted by a restart and is not re-run", a.Tool, a.ID))
	}
	return nil
}

// decisionsAtOnce bounds the decisions in flight. A decision (matching,
// enrichment queries, the policy, and the commit of an escalation, a hold
// or a shadow run) changes nothing outside medic, and waits mostly on
// queries and on the shared commit; many at once keep a storm's commits
// full. Acting takes one of the config's parallel places besides.
const decisionsAtOnce = 64

// jobsPerRead bounds the decision jobs one read of the queue returns.
const jobsPerRead = 256

// backlogDefer bounds how long decisions that are not urgent wait for the
// worker to drain the inbox; past it, under a flood the worker cannot keep
// up with, they start anyway.
const backlogDefer = time.Second

// Run decides queued incidents until ctx ends, up to decisionsAtOnce at a
// time, of which at most parallel act at once, sends the queued briefs,
// and waits for the runs in flight.
func (r *Remediator) Run(ctx context.Context, parallel int) {
	wake, briefWake := make(chan struct{}, 1), make(chan struct{}, 1)
	r.mu.Lock()
	r.ctx = ctx
	r.busy = map[string]bool{}
	r.wake, r.briefWake = wake, briefWake
	r.mu.Unlock()
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.sendBriefs(ctx)
	}()
	deciding, acting := make(chan struct{}, decisionsAtOnce), make(chan struct{}, parallel)
	inFlight := map[uint64]bool{}
	var mu sync.Mutex
	poll := time.NewTicker(pollInterval)
	defer poll.Stop()
	var processed uint64
	var drainSince time.Time
	for {
		decisionFault()
		r.expireApprovals()
		jobs, err := r.Store.DecisionJobs(jobsPerRead)
		if err != nil {
			r.Logger.Error("reading the decision queue failed", "component", "remediator", "err", err)
		}
		now := r.now()
		// While the worker drains a backlog in the inbox, only urgent
		// decisions start, for up to backlogDefer: the worker then has the
		// writer lock and the CPU to itself, and an alert a runbook acts
		// on, behind a storm in the inbox, is queued and decided sooner.
		p := r.Store.InboxProcessed()
		switch {
		case r.Store.InboxDepth() == 0:
			drainSince = time.Time{}
		case p != processed && drainSince.IsZero():
			drainSince = now
		}
		processed = p
		urgentOnly := !drainSince.IsZero() && now.Sub(drainSince) < backlogDefer
		started := 0
		for _, j := range jobs {
			if r.heldNow(j.Seq, now) || (urgentOnly && !j.Urgent) {
				continue
			}
			mu.Lock()
			if inFlight[j.Seq] {
				mu.Unlock()
				continue
			}
			inFlight[j.Seq] = true
			mu.Unlock()
			started++
			select {
			case deciding <- struct{}{}:
			case <-ctx.Done():
				r.wg.Wait()
				return
			}
			r.wg.Add(1)
			go func() {
				defer r.wg.Done()
				sl := &slot{acting: acting, held: deciding}
				defer sl.release()
				r.handle(context.WithValue(ctx, slotKey{}, sl), j)
				mu.Lock()
				delete(inFlight, j.Seq)
				mu.Unlock()
			}()
		}
		if started > 0 && len(jobs) == jobsPerRead {
			// More are queued, and the loop waited for places while it
			// started these: read on at once.
			continue
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

// slot is a job's place: among the decisions in flight while it decides,
// then among the parallel remediations once it acts. A job gives its place
// up while it only waits for a verification, so that a long verify.wait
// does not hold back the decisions of other incidents.
type slot struct {
	acting chan struct{}
	// held is the place the job holds: a decision's, acting, or nil.
	held chan struct{}
}

type slotKey struct{}

// jobSlot is the job's place, nil for a run outside the loop (an approved
// call's).
func jobSlot(ctx context.Context) *slot {
	sl, _ := ctx.Value(slotKey{}).(*slot)
	return sl
}

func (s *slot) release() {
	if s != nil && s.held != nil {
		<-s.held
		s.held = nil
	}
}

// act trades the job's place for a place among those that act; it
// reports false when ctx ended first. A job waiting to act keeps its
// decision place, so the waiting jobs stay bounded.
func (s *slot) act(ctx context.Context) bool {
	if s == nil || s.held == s.acting {
		return true
	}
	select {
	case s.acting <- struct{}{}:
		s.release()
		s.held = s.acting
		return true
	case <-ctx.Done():
		return false
	}
}

// handle decides one job and, when the decision is to act, acts. The
// incident's phase says what is safe after a restart: a decision not yet
// taken, or held, is taken again; a verification is resumed; anything else
// is settled and only the job is left to drop.
func (r *Remediator) handle(ctx context.Context, j state.DecisionJob) {
	now := r.now()
	inc, err := r.Store.Incident(j.Incident)
	if err != nil {
		r.Logger.Error("decision job for a missing incident", "component", "remediator", "incident", j.Incident, "err", err)
		r.commitNow(&state.Change{Done: j.Seq})
		return
	}
	switch inc.Remediation.Phase {
	case "", state.PhaseDeciding, state.PhaseHeld:
	case state.PhaseVerifying:
		r.resumeVerification(ctx, inc, j)
		return
	case state.PhaseExecuting, state.PhaseRollingBack:
		// Between two steps when medic stopped (a step cut off while its
		// tool ran was escalated by Recover): re-running the plan would
		// repeat the steps that finished.
		if inc.Outcome == "" {
			run := r.resumedRun(inc.ID, j.Seq, inc.Remediation.Runbook, inc.Remediation.Target)
			r.escalate(ctx, run, escRestart, "medic restarted during this incident's remediation; its plan is not re-run")
			return
		}
		r.commitNow(&state.Change{Done: j.Seq})
		return
	default:
		r.commitNow(&state.Change{Done: j.Seq})
		return
	}
	rec := decisionAlert(inc, j.Fingerprint)
	if inc.Outcome != "" {
		r.commitNow(&state.Change{Done: j.Seq})
		return
	}
	if inc.State != state.StateOpen || rec == nil {
		r.commitNow(&state.Change{Incident: j.Incident, Done: j.Seq, Phase: &state.Remediation{Phase: state.PhaseSettled, Since: now},
			Audit: []state.AuditEntry{auditEntry(now, j.Incident, "decision", "medic", map[string]any{"decision": "none", "reason": "the incident closed before it was decided"})}})
		return
	}
	alert := template.Alert{Status: rec.Status, Labels: rec.Labels, Annotations: rec.Annotations, StartsAt: rec.StartsAt, Fingerprint: rec.Fingerprint,
		GeneratorURL: rec.GeneratorURL}
	d := r.decider()
	at := d.DecideAlert(ctx, &alert, now)
	if at.Target != "" && at.Source == "" && inc.Key != TargetKey(at.Target) {
		// The incident is keyed by what is broken, as its runbook renders
		// it (never as a model proposes it): an incident opened under
		// another key joins the open incident of its target, if any.
		into, err := r.Store.Rekey(j.Incident, TargetKey(at.Target), j.Seq, now)
		if err != nil {
			r.Logger.Error("keying the incident by its target failed", "component", "remediator", "incident", j.Incident, "err", err)
		} else if into != j.Incident {
			r.Logger.Info("incident folded into the open incident of its target", "component", "remediator", "incident", j.Incident, "into", into, "target", at.Target)
			return
		}
	}
	actor := "medic"
	if at.Runbook != "" {
		actor = "runbook:" + at.Runbook
	}
	run := &loopRun{d: d, incident: j.Incident, job: j.Seq, alert: &alert, at: &at, rb: d.runbook(at.Runbook),
		deadline: inc.OpenedAt.Add(d.Config.Remediation.Deadline)}
	run.record(now, "decision", actor, at)
	switch at.Decision {
	case DecisionRemediate, DecisionApprove:
	case DecisionEscalate:
		code := escNoRunbook
		if at.Runbook != "" {
			code = escRunbook
		}
		r.escalate(ctx, run, code, reasonOr(at.Reason, at.Decision))
		return
	case DecisionReject:
		// A plan that did not render has no calls; the policy denied one
		// that did.
		code := escDenied
		if len(at.Calls) == 0 {
			code = escPlan
		}
		r.escalate(ctx, run, code, reasonOr(at.Reason, at.Decision))
		return
	default:
		run.event(now, at.Decision, reasonOr(at.Reason, at.Decision))
		run.settle(state.PhaseSettled, now)
		r.commit(run)
		return
	}
	// A noisy alert is never acted on: one that flaps escalates; one that
	// has not fired for its runbook's min_firing yet is held.
	if fp, err := r.Store.FingerprintRecord(alert.Fingerprint); err == nil {
		cfg := d.Config.Remediation
		n := 0
		for _, t := range fp.Starts {
			if now.Sub(t) <= cfg.FlapWindow {
				n++
			}
		}
		if n >= cfg.FlapCount {
			r.escalate(ctx, run, escFlapping, fmt.Sprintf("noisy alert: it started firing %d times in %s (flap_count %d); medic does not act on it", n, cfg.FlapWindow, cfg.FlapCount))
			return
		}
	}
	if mf := run.rb.MinFiring; mf > 0 && now.Sub(alert.StartsAt) < mf {
		until := alert.StartsAt.Add(mf)
		r.hold(run, inc, until, fmt.Sprintf("held: %s has fired for %s, less than runbook %s's min_firing %s; deciding again at %s",
			at.Alertname, now.Sub(alert.StartsAt).Round(time.Second), at.Runbook, mf, until.UTC().Format(time.RFC3339)))
		return
	}
	// A target that fires again soon after medic fixed it: the fix did not
	// hold. Count it as failed and hand it over rather than loop.
	if fix, err := r.Store.LastFix(at.Target); err == nil && fix.Incident != j.Incident && now.Sub(fix.At) < d.Config.Remediation.RefireWindow {
		if err := r.Store.FixFailed(at.Target, fix); err != nil {
			r.Logger.Error("counting a failed fix failed", "component", "remediator", "err", err)
		}
		r.escalate(ctx, run, escRefire, fmt.Sprintf("%s fired again %s after medic fixed it in incident %d (runbook %s); the fix did not hold",
			at.Target, now.Sub(fix.At).Round(time.Second), fix.Incident, fix.Runbook))
		return
	}
	if !r.claim(at.Target) {
		// The remediation of an incident that closed meanwhile still runs
		// on the target; decide again once it is done.
		r.hold(run, inc, now.Add(busyRetry), fmt.Sprintf("held: a remediation is already running on %s; deciding again once it ends", at.Target))
		return
	}
	defer r.release(at.Target)
	r.runCalls(ctx, run, 0, 1, false)
}

// decider is the decision path in force, wired to this remediator's state:
// the journal's counts, the runbooks' outcomes, past incidents, tool
// queries and the LLM's proposal metrics.
func (r *Remediator) decider() *Decider {
	d := *r.Decider()
	d.Counts, d.RunbookState, d.Similar = r.counts, r.runbookState, r.similar
	d.Sources.Tools = toolQueries{d: &d, exec: r.Executors.Exec}
	d.OnProposal = r.metrics.proposal
	return &d
}

// resumedRun is a run taken up from what was stored of it (the incident's
// phase, an action, an approval): its runbook and target, under the
// decision path in force.
func (r *Remediator) resumedRun(incident, job uint64, runbook, target string) *loopRun {
	d := r.decider()
	return &loopRun{d: d, incident: incident, job: job, at: &AlertTrace{Runbook: runbook, Target: target}, rb: d.runbook(runbook)}
}

// busyRetry is how soon a decision held for a busy target is taken again.
const busyRetry = 5 * time.Second

// TargetKey is the incident key of a runbook's rendered target.
func TargetKey(target string) string { return "target:" + target }

// decisionAlert is the alert an incident's decision is about: the job's
// alert while it fires, else the first firing one; nil when none fires.
func decisionAlert(inc *state.Incident, fingerprint string) *state.Alert {
	if i := inc.AlertIndex(fingerprint); i >= 0 && inc.Alerts[i].Status == "firing" {
		return &inc.Alerts[i]
	}
	for i := range inc.Alerts {
		if inc.Alerts[i].Status == "firing" {
			return &inc.Alerts[i]
		}
	}
	return nil
}

// hold keeps a job out of the loop until a time, and records the hold
// (its phase and its reason) the first time.
func (r *Remediator) hold(run *loopRun, inc *state.Incident, until time.Time, why string) {
	r.mu.Lock()
	if r.held == nil {
		r.held = map[uint64]time.Time{}
	}
	_, had := r.held[run.job]
	r.held[run.job] = until
	r.mu.Unlock()
	if had && inc.Remediation.Phase == state.PhaseHeld {
		return
	}
	now := r.now()
	run.event(now, "held", why)
	run.phase(state.PhaseHeld, now, func(p *state.Remediation) { p.Until = &until })
	r.commit(run)
}

// heldNow reports whether a job is held at now, and forgets an expired hold.
func (r *Remediator) heldNow(seq uint64, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	until, ok := r.held[seq]
	if ok && !now.Before(until) {
		delete(r.held, seq)
		return false
	}
	return ok
}

func reasonOr(reason, def string) string {
	if reason != "" {
		return reason
	}
	return def
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

func (m *metrics) proposal(result string) {
	if m != nil {
		m.llmProposals.WithLabelValues(result).Inc()
	}
}

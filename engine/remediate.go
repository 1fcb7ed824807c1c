package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/alertmanager/template"
	promconfig "github.com/prometheus/common/config"

	"medic/actions"
	"medic/llm"
	"medic/rules"
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
	// It is serve's --dry-run flag; remediation.dry_run in the config in
	// force does the same, and a reload can turn that on or off.
	DryRun bool

	// metrics is the engine's, set by Engine.SetRemediator; nil counts
	// nothing.
	metrics *metrics

	// claimMu makes checking the limits and taking them one step: the
	// counts a call is allowed on include every call allowed before it.
	claimMu sync.Mutex

	mu   sync.Mutex
	held map[uint64]time.Time
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
		d := r.Decider()
		run := &loopRun{d: d, incident: a.Incident, at: &AlertTrace{Runbook: a.Runbook, Target: a.Target}, rb: d.runbook(a.Runbook)}
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
		r.expireApprovals()
		jobs, err := r.Store.DecisionJobs(256)
		if err != nil {
			r.Logger.Error("reading the decision queue failed", "component", "remediator", "err", err)
		}
		now := r.now()
		for _, j := range jobs {
			if r.heldNow(j.Seq, now) {
				continue
			}
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
				sl := &slot{sem: sem, held: true}
				defer sl.release()
				r.handle(context.WithValue(ctx, slotKey{}, sl), j)
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

// slot is a job's place among the parallel decisions. A job gives it up
// while it only waits for a verification, so that a long verify.wait does
// not hold back the decisions of other incidents.
type slot struct {
	sem  chan struct{}
	held bool
}

type slotKey struct{}

func (s *slot) release() {
	if s.held {
		s.held = false
		<-s.sem
	}
}

// acquire takes a place again; it reports false when ctx ended first.
func (s *slot) acquire(ctx context.Context) bool {
	select {
	case s.sem <- struct{}{}:
		s.held = true
		return true
	case <-ctx.Done():
		return false
	}
}

func auditEntry(now time.Time, incident uint64, kind, actor string, details any) state.AuditEntry {
	b, _ := json.Marshal(details)
	return state.AuditEntry{Time: now, Incident: incident, Kind: kind, Actor: actor, Details: b}
}

// loopRun is one incident's remediation in flight.
type loopRun struct {
	d        *Decider
	incident uint64
	// job is the decision job the run settles; 0 for a run resumed by an
	// approval, whose job is done.
	job   uint64
	alert *template.Alert
	at    *AlertTrace
	rb    *rules.Runbook
	// verify is the runbook's verify block; nil in shadow mode or when it
	// has none.
	verify   *rules.Verify
	deadline time.Time
	// pending is the next transition: the records made since the last
	// commit, which go to disk with the next phase change.
	pending state.Change
}

// record adds an audit entry to the run's next commit.
func (run *loopRun) record(now time.Time, kind, actor string, details any) {
	run.pending.Audit = append(run.pending.Audit, auditEntry(now, run.incident, kind, actor, details))
}

// event adds a timeline event to the run's next commit.
func (run *loopRun) event(now time.Time, kind, msg string) {
	run.pending.Events = append(run.pending.Events, state.Event{Time: now, Kind: kind, Message: msg})
}

// phase sets the phase the run's next commit moves to.
func (run *loopRun) phase(p state.Phase, now time.Time, set func(*state.Remediation)) {
	rem := state.Remediation{Phase: p, Since: now}
	if run.at != nil {
		rem.Runbook, rem.Target = run.at.Runbook, run.at.Target
	}
	if set != nil {
		set(&rem)
	}
	run.pending.Phase = &rem
}

// settle moves the run to a final phase and drops its decision job, at the
// next commit.
func (run *loopRun) settle(p state.Phase, now time.Time) {
	run.phase(p, now, nil)
	run.pending.Done = run.job
}

// commit writes the run's pending transition in one transaction. On
// failure the records stay pending for the next commit, and the error is
// returned.
func (r *Remediator) commit(run *loopRun) (*state.Change, error) {
	c := run.pending
	c.Incident = run.incident
	if err := r.Store.Commit(&c); err != nil {
		if !errors.Is(err, state.ErrIdempotentRepeat) {
			r.Logger.Error("recording a transition failed", "component", "remediator", "incident", run.incident, "err", err)
		}
		return &c, err
	}
	run.pending = state.Change{}
	return &c, nil
}

// commitNow commits records made outside a run, for one incident.
func (r *Remediator) commitNow(c *state.Change) {
	if err := r.Store.Commit(c); err != nil {
		r.Logger.Error("recording a transition failed", "component", "remediator", "incident", c.Incident, "err", err)
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
			d := r.Decider()
			p := inc.Remediation
			run := &loopRun{d: d, incident: inc.ID, job: j.Seq, at: &AlertTrace{Runbook: p.Runbook, Target: p.Target}, rb: d.runbook(p.Runbook)}
			r.escalate(ctx, run, escRestart, fmt.Sprintf("medic restarted during this incident's remediation, after step %s; its plan is not re-run", p.Step))
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
	d := *r.Decider()
	d.Counts, d.RunbookState, d.Similar = r.counts, r.runbookState, r.similar
	d.Sources.Tools = toolQueries{d: &d, exec: r.Executors.Exec}
	d.OnProposal = r.metrics.proposal
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
	run := &loopRun{d: &d, incident: j.Incident, job: j.Seq, alert: &alert, at: &at, rb: d.runbook(at.Runbook),
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

// counts fills in the policy's counts from the journal, as of the moment it
// is asked: a plan that waited for a verification counts what happened
// meanwhile.
func (r *Remediator) counts(in *actions.Input, q state.CountQuery) {
	q.Now = r.now()
	c, err := r.Store.CountActions(q)
	if err != nil {
		r.Logger.Error("reading action counts failed", "component", "remediator", "err", err)
	}
	rate, runs := c.Tool.Rate()
	in.State.ExecutionsTargetHour, in.State.ActionsFleet10m, in.State.TargetsAffected = c.TargetHour, c.Fleet10m, c.TargetsAffected
	in.State.ToolRuns, in.State.ToolSuccessRate = runs, rate
	in.Idempotency.Repeat = c.Repeat
}

// similar finds up to 3 closed incidents among the last 500 whose first
// alert shares at least half of its label pairs with these labels (the
// Jaccard index), and what fixed each.
func (r *Remediator) similar(labels map[string]string) []llm.Past {
	incs, err := r.Store.Incidents(state.Filter{State: state.StateClosed, Limit: 500})
	if err != nil {
		return nil
	}
	var out []llm.Past
	for _, inc := range incs {
		if len(inc.Alerts) == 0 {
			continue
		}
		if sim := llm.Similarity(labels, inc.Alerts[0].Labels); sim >= 0.5 {
			out = append(out, llm.Past{ID: inc.ID, Similarity: sim, Alertname: inc.Alerts[0].Labels["alertname"], Outcome: inc.Outcome})
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Similarity > out[j].Similarity })
	if len(out) > 3 {
		out = out[:3]
	}
	// What fixed them: read from the journal for the three kept only.
	for i := range out {
		if out[i].Outcome != state.OutcomeRemediated {
			continue
		}
		if acts, err := r.Store.Actions(out[i].ID); err == nil {
			var tools []string
			for _, a := range acts {
				if a.State == state.ActionSucceeded && !a.Rollback {
					tools = append(tools, a.Tool+" "+formatArgs(a.Args))
				}
			}
			out[i].FixedBy = strings.Join(tools, "; ")
		}
	}
	return out
}

func formatArgs(args map[string]string) string {
	parts := make([]string, 0, len(args))
	for _, k := range slices.Sorted(maps.Keys(args)) {
		parts = append(parts, k+"="+args[k])
	}
	return strings.Join(parts, " ")
}

// runbookState reads a runbook's recent outcomes for the policy.
func (r *Remediator) runbookState(runbook string) (float64, int) {
	st, err := r.Store.RunbookStats(runbook)
	if err != nil {
		r.Logger.Error("reading runbook stats failed", "component", "remediator", "err", err)
	}
	return st.Rate()
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
				in.Mode = string(rules.ModeShadow)
			}
			dec, allowed := r.evaluate(ctx, d, in, now)
			run.record(now, "policy", "runbook:"+at.Runbook, map[string]any{"step": c.Step, "tool": c.Tool, "args": c.Args, "attempt": attempt, "policy": dec})
			if shadowMode {
				// Shadow decides and records, never asks and never acts; an
				// exec tool's dry_run argv runs when the policy allows the call.
				shadowed = append(shadowed, r.shadow(ctx, run, c, dec, allowed, now))
				continue
			}
			switch {
			case dec.Result == actions.Deny:
				r.escalate(ctx, run, escDenied, fmt.Sprintf("policy denied %s: %s", c.Tool, dec.Reasons[0]))
				return
			case dec.Result == actions.NeedsApproval:
				r.askApproval(ctx, run, i, attempt, c, dec, now)
				return
			}
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
				r.escalate(ctx, run, escDenied, why)
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
		r.commit(run)
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
	res, err := r.sendNotify(ctx, run, tool, c, nil, allowed)
	details := map[string]any{"tool": name, "result": res}
	if err != nil {
		details["error"] = err.Error()
		run.event(now, "shadow", "shadow notification failed: "+err.Error())
	}
	run.record(now, "shadow_notify", "medic", details)
}

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
	allowed, dec, err := r.claimAction(ctx, run, act, in, tool.IdempotencyWindow)
	switch {
	case errors.Is(err, state.ErrIdempotentRepeat):
		run.event(now, "skipped", err.Error())
		return 0, false, "skipped: " + err.Error(), nil
	case err != nil:
		return 0, false, "journalling the action failed: " + err.Error(), nil
	case allowed == nil:
		run.record(now, "policy", "runbook:"+at.Runbook, map[string]any{"step": c.Step, "tool": c.Tool, "args": c.Args, "rollback": rollback, "claim": true, "policy": dec})
		return 0, false, fmt.Sprintf("policy %s %s when it was about to run: %s", dec.Result, c.Tool, strings.Join(dec.Reasons, "; ")), &dec
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
	fail := func(format string, args ...any) actions.Executor { return failed{fmt.Sprintf(format, args...)} }
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
		return sx.Call(actions.SystemdSpec{Tool: c.Tool, Unit: c.Unit, Action: c.UnitAction, Timeout: tool.Timeout})
	}
	return fail("no executor for %s tools", tool.Executor.Kind)
}

// failed is the executor of a call that cannot run.
type failed struct{ why string }

func (f failed) Execute(context.Context, *actions.Allowed) actions.Report {
	return actions.Failure{Err: f.why}
}

// claimAction checks the limits and takes them in one step: under claimMu
// it counts again, asks the gate again, and, when the gate allows, commits
// the run's pending transition with the intent journalled. Parallel
// decisions therefore never pass a brake together. It returns the allow,
// or the refusing decision.
func (r *Remediator) claimAction(ctx context.Context, run *loopRun, act *state.Action, in actions.Input, window time.Duration) (*actions.Allowed, actions.Decision, error) {
	d := run.d
	r.claimMu.Lock()
	defer r.claimMu.Unlock()
	if d.Counts != nil {
		d.Counts(&in, state.CountQuery{Tool: act.Tool, Target: act.Target, Group: act.Group, IdempotencyKey: act.IdempotencyKey, IdempotencyWindow: window})
	}
	// The verdict that counts in the metrics is the first one, unless
	// this one overturns it.
	dec, allowed := d.Gate.Evaluate(ctx, in, r.now())
	if allowed == nil {
		if r.metrics != nil {
			r.metrics.policyDecisions.WithLabelValues(string(dec.Result)).Inc()
		}
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

func (m *metrics) proposal(result string) {
	if m != nil {
		m.llmProposals.WithLabelValues(result).Inc()
	}
}

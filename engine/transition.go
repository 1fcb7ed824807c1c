package engine

import (
	"encoding/json"
	"errors"
	"time"

	"github.com/prometheus/alertmanager/template"

	"medic/rules"
	"medic/state"
)

// Transitions: a run buffers the records it makes (audit entries, timeline
// events, the journal's result) and writes them with the phase they lead
// to, in one state.Change.

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

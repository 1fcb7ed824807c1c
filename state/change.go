package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Phase is where an incident's remediation is. Each transition between
// phases is one Change: one transaction that also writes the transition's
// journal entry, audit entries and timeline events, so that what the file
// says happened is always what happened, up to the last commit.
type Phase string

// The phases of a remediation, in the order a plan goes through them.
// A restart reads the phase to know what is safe: deciding and held decide
// again (nothing ran); awaiting_approval waits for the human; executing and
// rolling_back were cut off while a tool ran, which is never re-run;
// verifying measures again and settles; awaiting_resolution and settled
// are done.
const (
	PhaseDeciding         Phase = "deciding"
	PhaseHeld             Phase = "held"
	PhaseAwaitingApproval Phase = "awaiting_approval"
	PhaseExecuting        Phase = "executing"
	PhaseVerifying        Phase = "verifying"
	PhaseRollingBack      Phase = "rolling_back"
	// PhaseAwaitingResolution: every step ran and the runbook has no
	// verify block, so Alertmanager's resolution settles the outcome.
	PhaseAwaitingResolution Phase = "awaiting_resolution"
	PhaseSettled            Phase = "settled"
)

// Remediation is an incident's remediation state: its phase and what the
// phase needs to resume after a restart.
type Remediation struct {
	Phase   Phase  `json:"phase"`
	Runbook string `json:"runbook,omitempty"`
	Target  string `json:"target,omitempty"`
	// Step is the plan's step in the phase, Attempt its attempt.
	Step    string `json:"step,omitempty"`
	Attempt int    `json:"attempt,omitempty"`
	// Action is the journal entry the phase is about.
	Action uint64 `json:"action,omitempty"`
	// Verify marks a step whose verification, not Alertmanager's
	// resolution, settles the outcome.
	Verify bool `json:"verify,omitempty"`
	// Before is the verify query's value before the step.
	Before *float64 `json:"before,omitempty"`
	// Until is when a held decision, or a verification, is due.
	Until *time.Time `json:"until,omitempty"`
	// Rollback is the step's rollback call, encoded by the engine, so a
	// verification resumed after a restart can still undo a worse step.
	Rollback json.RawMessage `json:"rollback,omitempty"`
	// Since is when the phase began.
	Since time.Time `json:"since"`
}

// AwaitsVerification reports whether a step's verification is pending: its
// result, not the alerts' resolution, settles the outcome.
func (r Remediation) AwaitsVerification() bool {
	return r.Verify && (r.Phase == PhaseExecuting || r.Phase == PhaseVerifying || r.Phase == PhaseRollingBack)
}

// Change is one transition of an incident: everything it writes commits in
// one transaction. Commit takes several, so that the transitions of many
// incidents can share one commit.
type Change struct {
	Incident uint64
	// Phase, when set, is the remediation's new state.
	Phase  *Remediation
	Events []Event
	Audit  []AuditEntry
	// Begin journals an action's intent, claiming its idempotency key for
	// Window; Commit sets its ID. It fails the commit with
	// ErrIdempotentRepeat when the key ran within the window.
	Begin  *Action
	Window time.Duration
	// Finish records the result of an action.
	Finish *Finished
	// Verified records the verification of an action's step.
	Verified *Verified
	// Remediated settles the incident as remediated and remembers the fix
	// on its target; Escalated settles it as escalated, counting a failure
	// of Runbook when medic had acted.
	Remediated *Fix
	Target     string
	Escalated  bool
	Runbook    string
	// Ask stores a pending approval.
	Ask *Approval
	// Queue queues a decision job; Commit sets its Seq. A run resumed
	// by an approval queues one with its first intent, so that a restart
	// finds the incident again.
	Queue *DecisionJob
	// Done removes a decision job, by its sequence number.
	Done uint64
	// Brief queues an escalation brief; Commit sets its Seq. Briefed
	// removes a sent one, by its sequence number.
	Brief   *BriefJob
	Briefed uint64

	// Set by Commit: the outcome before the change, and the incident as
	// written.
	Prev    string
	Written *Incident
}

// Finished is the result of an action.
type Finished struct {
	Action uint64
	State  ActionState
	Result json.RawMessage
	// Output is the executor's summary of the result, for briefs.
	Output string
	At     time.Time
}

// Verified is the verification of an action's step.
type Verified struct {
	Action       uint64
	Verification Verification
}

// Commit applies the changes in one transaction, in order. Nothing is
// written when one of them fails. With the group committer (GroupQueue),
// the transaction is shared with the other writers waiting at the time:
// the intake's notifications and the other remediations' changes.
func (s *Store) Commit(cs ...*Change) error {
	if len(cs) == 0 {
		return nil
	}
	for _, c := range cs {
		for i := range c.Audit {
			if err := compactDetails(&c.Audit[i]); err != nil {
				return err
			}
		}
	}
	if s.queue != nil {
		return s.submit(&commitReq{changes: cs})
	}
	return s.update(func(tx *bolt.Tx) error {
		for _, c := range cs {
			if err := s.apply(tx, c); err != nil {
				return err
			}
		}
		return nil
	})
}

func (s *Store) apply(tx *bolt.Tx, c *Change) error {
	if c.Begin != nil {
		if err := beginAction(tx, c.Begin, c.Window); err != nil {
			return err
		}
	}
	if c.Finish != nil {
		if err := finishAction(tx, c.Finish); err != nil {
			return err
		}
	}
	if c.Verified != nil {
		v := c.Verified.Verification
		if _, err := updateAction(tx, c.Verified.Action, func(a *Action) { a.Verification = &v }); err != nil {
			return err
		}
	}
	inc, err := getIncident(tx, u64(c.Incident))
	switch {
	case errors.Is(err, ErrNotFound) && c.journalOnly():
		// The journal outlives a pruned incident.
	case err != nil:
		return fmt.Errorf("incident %d: %w", c.Incident, err)
	default:
		if err := s.changeIncident(tx, inc, c); err != nil {
			return err
		}
	}
	if c.Ask != nil {
		if err := putApproval(tx, *c.Ask); err != nil {
			return err
		}
	}
	if c.Queue != nil {
		if err := queueDecision(tx, c.Queue); err != nil {
			return err
		}
	}
	if c.Done != 0 {
		if err := doneDecision(tx, c.Done); err != nil {
			return err
		}
	}
	if c.Brief != nil {
		if err := queueBrief(tx, c.Brief); err != nil {
			return err
		}
	}
	if c.Briefed != 0 {
		if err := tx.Bucket(bucketBriefs).Delete(u64(c.Briefed)); err != nil {
			return err
		}
	}
	for i := range c.Audit {
		if err := appendAudit(tx, s.auditKey, &c.Audit[i]); err != nil {
			return err
		}
	}
	return nil
}

// journalOnly reports whether the change writes only to the journal, the
// audit log and the decision queue.
func (c *Change) journalOnly() bool {
	return c.Phase == nil && len(c.Events) == 0 && c.Remediated == nil && !c.Escalated
}

func (s *Store) changeIncident(tx *bolt.Tx, inc *Incident, c *Change) error {
	c.Prev = inc.Outcome
	if c.Begin != nil {
		inc.Acted = true
	}
	if c.Phase != nil {
		inc.Remediation = *c.Phase
		if c.Begin != nil {
			inc.Remediation.Action = c.Begin.ID
		}
	}
	for _, e := range c.Events {
		inc.AddEvent(e)
		inc.UpdatedAt = e.Time
	}
	switch {
	case c.Remediated != nil:
		inc.Outcome = OutcomeRemediated
		at := c.Remediated.At
		inc.RecoveredAt = &at
		if err := putJSON(tx, bucketFixes, []byte(c.Target), c.Remediated); err != nil {
			return err
		}
		if err := countOutcome(tx, bucketRunbookStats, c.Remediated.Runbook, true); err != nil {
			return err
		}
	case c.Escalated:
		inc.Outcome = OutcomeEscalated
		if c.Runbook != "" && inc.Acted && c.Prev != OutcomeEscalated {
			if err := countOutcome(tx, bucketRunbookStats, c.Runbook, false); err != nil {
				return err
			}
		}
	}
	c.Written = inc
	return putJSON(tx, bucketIncidents, u64(inc.ID), inc)
}

// finishAction records an action's result and counts it in its tool's
// success rate. A failed action gives its idempotency key back: a call that
// failed is not done, and a retry is not a repeat. (An interrupted one
// keeps it, since whether it ran is unknown.)
func finishAction(tx *bolt.Tx, f *Finished) error {
	a, err := updateAction(tx, f.Action, func(a *Action) { a.State, a.Result, a.Output, a.FinishedAt = f.State, f.Result, f.Output, &f.At })
	if err != nil {
		return err
	}
	if err := tx.Bucket(bucketRunning).Delete(u64(a.ID)); err != nil {
		return err
	}
	if f.State == ActionFailed && a.IdempotencyKey != "" {
		idem := tx.Bucket(bucketIdempotency)
		var r idemRecord
		if v := idem.Get([]byte(a.IdempotencyKey)); v != nil && json.Unmarshal(v, &r) == nil && r.Action == a.ID {
			if err := idem.Delete([]byte(a.IdempotencyKey)); err != nil {
				return err
			}
		}
	}
	return countOutcome(tx, bucketToolStats, a.Tool, f.State == ActionSucceeded)
}

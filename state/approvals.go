package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

var bucketApprovals = []byte("approvals")

// ApprovalState is where a pending call is.
type ApprovalState string

// The approval states.
const (
	ApprovalPending  ApprovalState = "pending"
	ApprovalApproved ApprovalState = "approved"
	ApprovalDenied   ApprovalState = "denied"
	ApprovalExpired  ApprovalState = "expired"
	// ApprovalCancelled: the call can no longer be approved, because its
	// incident closed or its tool changed; the reason says which.
	ApprovalCancelled ApprovalState = "cancelled"
)

// Approval is a call waiting for a human, keyed by its incident: one
// pending approval per incident at a time.
type Approval struct {
	Incident  uint64          `json:"incident"`
	Runbook   string          `json:"runbook"`
	Step      string          `json:"step"`
	Tool      string          `json:"tool"`
	Target    string          `json:"target"`
	Call      json.RawMessage `json:"call"`
	Reasons   []string        `json:"reasons"`
	State     ApprovalState   `json:"state"`
	CreatedAt time.Time       `json:"created_at"`
	ExpiresAt time.Time       `json:"expires_at"`
	DecidedBy string          `json:"decided_by,omitempty"`
	Reason    string          `json:"reason,omitempty"`
	DecidedAt *time.Time      `json:"decided_at,omitempty"`
}

// ErrNotPending is returned when deciding an approval that is not pending.
var ErrNotPending = fmt.Errorf("no pending approval")

// ErrExpired is returned by a decision that found the approval past its
// expiry and marked it expired: unlike a plain ErrNotPending, the caller
// made that transition and settles its consequences.
var ErrExpired = fmt.Errorf("%w: it expired", ErrNotPending)

func putApproval(tx *bolt.Tx, a Approval) error {
	a.State = ApprovalPending
	return putJSON(tx, bucketApprovals, u64(a.Incident), a)
}

// Approval returns an incident's approval, or ErrNotFound.
func (s *Store) Approval(incident uint64) (Approval, error) {
	var a Approval
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketApprovals).Get(u64(incident))
		if v == nil {
			return ErrNotFound
		}
		return json.Unmarshal(v, &a)
	})
	return a, err
}

// An approval is a small state machine: pending, then exactly one of
// approved, denied, expired or cancelled. Each transition is one
// transaction with its audit entry; a transition from any other state than
// pending fails with ErrNotPending.

// DecideApproval moves a pending approval to approved or denied, once: a
// second decision, or one after the expiry, fails with ErrNotPending (an
// expired approval is marked expired). The audit entry commits with it.
func (s *Store) DecideApproval(incident uint64, approve bool, by, reason string, now time.Time, audit AuditEntry) (Approval, error) {
	to := ApprovalDenied
	if approve {
		to = ApprovalApproved
	}
	var a Approval
	err := s.update(func(tx *bolt.Tx) error {
		var err error
		a, err = transitionApproval(tx, s.auditKey, incident, to, by, reason, now, audit)
		return err
	})
	if err == nil && a.State == ApprovalExpired {
		return a, fmt.Errorf("incident %d: the approval expired at %s: %w", incident, a.ExpiresAt.UTC().Format(time.RFC3339), ErrExpired)
	}
	return a, err
}

// EndApproval ends an incident's pending approval without a human: to is
// ApprovalCancelled, with the reason, or ApprovalExpired, which it must be
// past its expiry for.
func (s *Store) EndApproval(incident uint64, to ApprovalState, reason string, now time.Time) (Approval, error) {
	var a Approval
	err := s.update(func(tx *bolt.Tx) error {
		var err error
		a, err = transitionApproval(tx, s.auditKey, incident, to, "medic", reason, now, AuditEntry{Time: now, Incident: incident, Kind: "approval", Actor: "medic"})
		return err
	})
	return a, err
}

// CancelApproval cancels the incident's pending approval, if it has one,
// in the transaction that closes the incident, and reports whether it did.
func (t *Tx) CancelApproval(incident uint64, reason string, now time.Time) (bool, error) {
	_, err := transitionApproval(t.tx, t.auditKey, incident, ApprovalCancelled, "medic", reason, now, AuditEntry{Time: now, Incident: incident, Kind: "approval", Actor: "medic"})
	if errors.Is(err, ErrNotPending) {
		return false, nil
	}
	return err == nil, t.check(err)
}

// ExpireApprovals marks every pending approval past its expiry expired, in
// one transaction, and returns them, so that their incidents escalate. It
// looks in a read transaction first: the remediator calls it on every turn
// of its loop, and a write transaction would sync the file each time.
func (s *Store) ExpireApprovals(now time.Time) ([]Approval, error) {
	var due []uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketApprovals).ForEach(func(k, v []byte) error {
			var a Approval
			if err := json.Unmarshal(v, &a); err != nil {
				return fmt.Errorf("decode approval %x: %w", k, err)
			}
			if a.State == ApprovalPending && !now.Before(a.ExpiresAt) {
				due = append(due, a.Incident)
			}
			return nil
		})
	})
	if err != nil || len(due) == 0 {
		return nil, err
	}
	var out []Approval
	err = s.update(func(tx *bolt.Tx) error {
		out = out[:0]
		for _, id := range due {
			a, err := transitionApproval(tx, s.auditKey, id, ApprovalExpired, "medic", "nobody decided before the expiry", now, AuditEntry{Time: now, Incident: id, Kind: "approval", Actor: "medic"})
			if errors.Is(err, ErrNotPending) {
				continue // decided meanwhile
			}
			if err != nil {
				return err
			}
			out = append(out, a)
		}
		return nil
	})
	return out, err
}

// transitionApproval moves a pending approval to the state to; one past its
// expiry becomes expired whatever to asks.
func transitionApproval(tx *bolt.Tx, key []byte, incident uint64, to ApprovalState, by, reason string, now time.Time, audit AuditEntry) (Approval, error) {
	var a Approval
	b := tx.Bucket(bucketApprovals)
	v := b.Get(u64(incident))
	if v == nil {
		return a, fmt.Errorf("incident %d: %w", incident, ErrNotPending)
	}
	if err := json.Unmarshal(v, &a); err != nil {
		return a, err
	}
	if a.State != ApprovalPending {
		return a, fmt.Errorf("incident %d is %s: %w", incident, a.State, ErrNotPending)
	}
	if !now.Before(a.ExpiresAt) && to != ApprovalCancelled {
		to = ApprovalExpired
	}
	a.State, a.DecidedBy, a.Reason, a.DecidedAt = to, by, reason, &now
	buf, err := json.Marshal(a)
	if err != nil {
		return a, err
	}
	if err := b.Put(u64(incident), buf); err != nil {
		return a, err
	}
	details, _ := json.Marshal(map[string]any{"state": a.State, "tool": a.Tool, "step": a.Step, "reason": reason})
	audit.Details = details
	return a, appendAudit(tx, key, &audit)
}

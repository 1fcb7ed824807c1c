package state

import (
	"encoding/json"
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

// PutApproval stores a pending approval for its incident, replacing a
// decided one.
func (s *Store) PutApproval(a Approval) error {
	a.State = ApprovalPending
	buf, err := json.Marshal(a)
	if err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketApprovals).Put(u64(a.Incident), buf)
	})
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

// DecideApproval moves a pending approval to approved or denied, once: a
// second decision, or one after the expiry, fails with ErrNotPending (an
// expired approval is marked expired). The audit entry commits with it.
func (s *Store) DecideApproval(incident uint64, approve bool, by, reason string, now time.Time, audit AuditEntry) (Approval, error) {
	var a Approval
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketApprovals)
		v := b.Get(u64(incident))
		if v == nil {
			return fmt.Errorf("incident %d: %w", incident, ErrNotPending)
		}
		if err := json.Unmarshal(v, &a); err != nil {
			return err
		}
		if a.State != ApprovalPending {
			return fmt.Errorf("incident %d is %s: %w", incident, a.State, ErrNotPending)
		}
		if !now.Before(a.ExpiresAt) {
			a.State = ApprovalExpired
		} else if approve {
			a.State = ApprovalApproved
		} else {
			a.State = ApprovalDenied
		}
		a.DecidedBy, a.Reason, a.DecidedAt = by, reason, &now
		buf, err := json.Marshal(a)
		if err != nil {
			return err
		}
		if err := b.Put(u64(incident), buf); err != nil {
			return err
		}
		details, _ := json.Marshal(map[string]any{"state": a.State, "tool": a.Tool, "step": a.Step, "reason": reason})
		audit.Details = details
		return appendAudit(tx, &audit)
	})
	if err == nil && a.State == ApprovalExpired {
		return a, fmt.Errorf("incident %d: the approval expired at %s: %w", incident, a.ExpiresAt.UTC().Format(time.RFC3339), ErrNotPending)
	}
	return a, err
}

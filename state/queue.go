package state

import (
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

var bucketDecisions = []byte("decisions")

// DecisionJob asks the remediation loop to decide an incident's alert. The
// worker writes it in the transaction that opens the incident, so a crash
// between the two cannot lose the decision.
type DecisionJob struct {
	Seq         uint64    `json:"seq"`
	Incident    uint64    `json:"incident"`
	Fingerprint string    `json:"fingerprint"`
	QueuedAt    time.Time `json:"queued_at"`
}

// QueueDecision adds a job inside a ProcessInbox transaction.
func (t *Tx) QueueDecision(j DecisionJob) error {
	b := t.tx.Bucket(bucketDecisions)
	seq, err := b.NextSequence()
	if err != nil {
		return t.fail(err)
	}
	j.Seq = seq
	buf, err := json.Marshal(j)
	if err != nil {
		return t.fail(err)
	}
	return t.check(b.Put(u64(seq), buf))
}

// DecisionJobs returns the queued jobs, oldest first.
func (s *Store) DecisionJobs(max int) ([]DecisionJob, error) {
	var out []DecisionJob
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketDecisions).Cursor()
		for k, v := c.First(); k != nil && len(out) < max; k, v = c.Next() {
			var j DecisionJob
			if err := json.Unmarshal(v, &j); err != nil {
				return fmt.Errorf("decode decision job %x: %w", k, err)
			}
			out = append(out, j)
		}
		return nil
	})
	return out, err
}

// DoneDecision removes a job once it is decided, and records what happened
// in the audit log in the same transaction.
func (s *Store) DoneDecision(seq uint64, audit *AuditEntry) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketDecisions).Delete(u64(seq)); err != nil {
			return err
		}
		if audit != nil {
			return appendAudit(tx, s.auditKey, audit)
		}
		return nil
	})
}

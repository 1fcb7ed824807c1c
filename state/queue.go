package state

import (
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

var (
	bucketDecisions = []byte("decisions")
	// bucketUrgent holds the jobs of alerts that a runbook can act on: in
	// an alert storm they are decided ahead of the escalations.
	bucketUrgent = []byte("decisions_urgent")
)

// DecisionJob asks the remediation loop to decide an incident's alert. The
// worker writes it in the transaction that opens the incident, so a crash
// between the two cannot lose the decision.
type DecisionJob struct {
	Seq         uint64    `json:"seq"`
	Incident    uint64    `json:"incident"`
	Fingerprint string    `json:"fingerprint"`
	QueuedAt    time.Time `json:"queued_at"`
	// Urgent marks an alert that a runbook which acts matched.
	Urgent bool `json:"urgent,omitempty"`
}

// QueueDecision adds a job inside a ProcessInbox transaction.
func (t *Tx) QueueDecision(j DecisionJob) error {
	return t.check(queueDecision(t.tx, &j))
}

// queueDecision numbers jobs in one sequence, and keeps urgent ones in a
// bucket of their own.
func queueDecision(tx *bolt.Tx, j *DecisionJob) error {
	seq, err := tx.Bucket(bucketDecisions).NextSequence()
	if err != nil {
		return err
	}
	j.Seq = seq
	bucket := bucketDecisions
	if j.Urgent {
		bucket = bucketUrgent
	}
	return putJSON(tx, bucket, u64(seq), j)
}

// doneDecision removes a job, wherever it is queued.
func doneDecision(tx *bolt.Tx, seq uint64) error {
	for _, b := range [][]byte{bucketUrgent, bucketDecisions} {
		if err := tx.Bucket(b).Delete(u64(seq)); err != nil {
			return err
		}
	}
	return nil
}

// DecisionJobs returns up to max queued jobs: the urgent ones first, each
// kind oldest first.
func (s *Store) DecisionJobs(max int) ([]DecisionJob, error) {
	var out []DecisionJob
	err := s.db.View(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketUrgent, bucketDecisions} {
			c := tx.Bucket(b).Cursor()
			for k, v := c.First(); k != nil && len(out) < max; k, v = c.Next() {
				var j DecisionJob
				if err := json.Unmarshal(v, &j); err != nil {
					return fmt.Errorf("decode decision job %x: %w", k, err)
				}
				out = append(out, j)
			}
		}
		return nil
	})
	return out, err
}

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
	return t.check(queueDecision(t.tx, &j))
}

func queueDecision(tx *bolt.Tx, j *DecisionJob) error {
	b := tx.Bucket(bucketDecisions)
	seq, err := b.NextSequence()
	if err != nil {
		return err
	}
	j.Seq = seq
	return putJSON(tx, bucketDecisions, u64(seq), j)
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

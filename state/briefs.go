package state

import (
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// bucketBriefs holds the escalation briefs not yet sent. An escalation
// queues its brief in the transaction that settles the incident, so a crash
// between the two cannot lose what a human must be told; the sender takes
// them from here, grouped, and removes them with its records.
var bucketBriefs = []byte("briefs")

// BriefJob is an escalation brief waiting to be sent.
type BriefJob struct {
	Seq      uint64 `json:"seq"`
	Incident uint64 `json:"incident"`
	// Route is the notify tool the brief goes through; empty means the
	// log only.
	Route string `json:"route,omitempty"`
	// Group is the key of the brief's group: briefs of one route and
	// group are sent as one message.
	Group string    `json:"group"`
	At    time.Time `json:"at"`
	// Brief is the engine's brief, encoded as it was when the incident
	// escalated.
	Brief json.RawMessage `json:"brief"`
}

func queueBrief(tx *bolt.Tx, j *BriefJob) error {
	b := tx.Bucket(bucketBriefs)
	seq, err := b.NextSequence()
	if err != nil {
		return err
	}
	j.Seq = seq
	return putJSON(tx, bucketBriefs, u64(seq), j)
}

// PendingBriefs returns up to max briefs not yet sent, oldest first.
func (s *Store) PendingBriefs(max int) ([]BriefJob, error) {
	var out []BriefJob
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketBriefs).Cursor()
		for k, v := c.First(); k != nil && len(out) < max; k, v = c.Next() {
			var j BriefJob
			if err := json.Unmarshal(v, &j); err != nil {
				return fmt.Errorf("decode brief %x: %w", k, err)
			}
			out = append(out, j)
		}
		return nil
	})
	return out, err
}

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

// PendingBriefs returns every brief not yet sent, oldest first: the
// sender reads them once, at start, and learns of later ones from the
// commits that queue them.
func (s *Store) PendingBriefs() ([]BriefJob, error) {
	var out []BriefJob
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketBriefs).ForEach(func(k, v []byte) error {
			var j BriefJob
			if err := json.Unmarshal(v, &j); err != nil {
				return fmt.Errorf("decode brief %x: %w", k, err)
			}
			out = append(out, j)
			return nil
		})
	})
	return out, err
}

// BriefJobs returns the queued briefs with the sequence numbers, in that
// order; one no longer queued is left out.
func (s *Store) BriefJobs(seqs []uint64) ([]BriefJob, error) {
	out := make([]BriefJob, 0, len(seqs))
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketBriefs)
		for _, seq := range seqs {
			v := b.Get(u64(seq))
			if v == nil {
				continue
			}
			var j BriefJob
			if err := json.Unmarshal(v, &j); err != nil {
				return fmt.Errorf("decode brief %d: %w", seq, err)
			}
			out = append(out, j)
		}
		return nil
	})
	return out, err
}

package state

import (
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The outcomes of an incident.
const (
	// OutcomeRemediated: medic acted and verification in Prometheus saw
	// the recovery.
	OutcomeRemediated = "remediated"
	// OutcomeEscalated: medic handed the incident to a human.
	OutcomeEscalated = "escalated"
	// OutcomeSelfResolved: every alert resolved before medic did anything.
	OutcomeSelfResolved = "self_resolved"
)

var (
	bucketFixes        = []byte("fixes")
	bucketRunbookStats = []byte("runbook_stats")
	bucketEscalations  = []byte("escalations")
)

// Fix is medic's last verified remediation of a target. A re-fire on the
// same target soon after it means the fix did not hold.
type Fix struct {
	Incident uint64    `json:"incident"`
	Runbook  string    `json:"runbook"`
	Tools    []string  `json:"tools"`
	At       time.Time `json:"at"`
}

// LastFix returns the last verified fix of a target, or ErrNotFound.
func (s *Store) LastFix(target string) (Fix, error) {
	var f Fix
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketFixes).Get([]byte(target))
		if v == nil {
			return ErrNotFound
		}
		return json.Unmarshal(v, &f)
	})
	return f, err
}

// FixFailed counts a fix that did not hold (its target fired again) as a
// failure of its runbook and of each of its tools, and forgets it, so
// that it is counted once.
func (s *Store) FixFailed(target string, f Fix) error {
	return s.update(func(tx *bolt.Tx) error {
		if err := countOutcome(tx, bucketRunbookStats, f.Runbook, false); err != nil {
			return err
		}
		for _, t := range f.Tools {
			if err := countOutcome(tx, bucketToolStats, t, false); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketFixes).Delete([]byte(target))
	})
}

// RunbookStats returns a runbook's recent outcomes.
func (s *Store) RunbookStats(runbook string) (ToolStats, error) {
	var st ToolStats
	err := s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketRunbookStats).Get([]byte(runbook)); v != nil {
			return json.Unmarshal(v, &st)
		}
		return nil
	})
	return st, err
}

// TakeEscalation reserves one escalation in a sliding hour that allows
// max. It reports false, and reserves nothing, when the hour is full.
// The window lives in the file, so a restart does not reset it.
func (s *Store) TakeEscalation(now time.Time, max int) (bool, error) {
	ok := false
	err := s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketEscalations)
		var recent []time.Time
		if v := b.Get([]byte("recent")); v != nil {
			if err := json.Unmarshal(v, &recent); err != nil {
				return fmt.Errorf("decode escalations: %w", err)
			}
		}
		kept := recent[:0]
		for _, t := range recent {
			if now.Sub(t) < time.Hour {
				kept = append(kept, t)
			}
		}
		if len(kept) >= max {
			return nil
		}
		ok = true
		return putJSON(tx, bucketEscalations, []byte("recent"), append(kept, now))
	})
	return ok, err
}

// updateIncident reads an incident, lets fn change it, and writes it back.
func updateIncident(tx *bolt.Tx, id uint64, fn func(*Incident)) (*Incident, error) {
	inc, err := getIncident(tx, u64(id))
	if err != nil {
		return nil, err
	}
	fn(inc)
	return inc, putJSON(tx, bucketIncidents, u64(id), inc)
}

// updateAction reads a journal entry, lets fn change it, and writes it back.
func updateAction(tx *bolt.Tx, id uint64, fn func(*Action)) (*Action, error) {
	v := tx.Bucket(bucketJournal).Get(u64(id))
	if v == nil {
		return nil, fmt.Errorf("action %d: %w", id, ErrNotFound)
	}
	a := new(Action)
	if err := json.Unmarshal(v, a); err != nil {
		return nil, fmt.Errorf("decode action %d: %w", id, err)
	}
	fn(a)
	return a, putJSON(tx, bucketJournal, u64(id), a)
}

func putJSON(tx *bolt.Tx, bucket, key []byte, v any) error {
	buf, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return tx.Bucket(bucket).Put(key, buf)
}

package state

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ActionState is where an action is in its life.
type ActionState string

// The action states. An action is written as running before its tool
// starts; one found running when medic starts was cut off by a crash and
// becomes interrupted, and is never re-run blindly.
const (
	ActionRunning     ActionState = "running"
	ActionSucceeded   ActionState = "succeeded"
	ActionFailed      ActionState = "failed"
	ActionInterrupted ActionState = "interrupted"
)

// Action is one journal entry: the intent, then the result.
type Action struct {
	ID       uint64 `json:"id"`
	Incident uint64 `json:"incident"`
	Runbook  string `json:"runbook,omitempty"`
	Step     string `json:"step,omitempty"`
	Tool     string `json:"tool"`
	Target   string `json:"target"`
	// Group is the fleet the target belongs to, for the blast radius:
	// the runbook's blast_radius group, or its name.
	Group          string            `json:"group,omitempty"`
	Args           map[string]string `json:"args,omitempty"`
	Argv           []string          `json:"argv,omitempty"`
	IdempotencyKey string            `json:"idempotency_key,omitempty"`
	Rollback       bool              `json:"rollback,omitempty"`
	// Verify marks a step whose effect medic verifies: its verification,
	// not the alerts' resolution, settles the incident.
	Verify bool `json:"verify,omitempty"`
	// Policy is the gate's verdict that let the action run.
	Policy     string      `json:"policy,omitempty"`
	State      ActionState `json:"state"`
	StartedAt  time.Time   `json:"started_at"`
	FinishedAt *time.Time  `json:"finished_at,omitempty"`
	// Result is the executor's record, kept verbatim for the audit log.
	Result json.RawMessage `json:"result,omitempty"`
	// Output is the executor's summary of the result: the error, the
	// output, the status.
	Output string `json:"output,omitempty"`
	// Verification is what checking the step in Prometheus found:
	// recovered, worse, unchanged or unverifiable, with the values.
	Verification *Verification `json:"verification,omitempty"`
}

// Verification is one check of a step's effect.
type Verification struct {
	Result string    `json:"result"`
	Before *float64  `json:"before,omitempty"`
	After  *float64  `json:"after,omitempty"`
	Error  string    `json:"error,omitempty"`
	At     time.Time `json:"at"`
}

var (
	bucketJournal = []byte("journal")
	// bucketJournalByIncident indexes the journal by incident.
	bucketJournalByIncident = []byte("journal_by_incident")
	// bucketRunning lists the actions whose tool is running: what a
	// restart finds interrupted, without reading the journal.
	bucketRunning = []byte("running")
	// bucketRecent indexes the journal's recent actions for the policy's
	// counts: each one's start, tool, target and group in a few bytes, so
	// that counting reads no whole entry, with its output.
	bucketRecent      = []byte("journal_recent")
	bucketIdempotency = []byte("idempotency")
	bucketToolStats   = []byte("tool_stats")
)

// recentSpan is how long an action stays in bucketRecent: the counts look
// an hour back, and the margin covers a clock that steps back.
const recentSpan = 2 * time.Hour

// recentAction is an action as the counts see it.
type recentAction struct {
	At       int64  `json:"t"`
	Tool     string `json:"tool"`
	Target   string `json:"target"`
	Group    string `json:"group,omitempty"`
	Rollback bool   `json:"rollback,omitempty"`
}

// indexRecent adds an action to bucketRecent and drops the ones older
// than recentSpan before it.
func indexRecent(tx *bolt.Tx, a *Action) error {
	b := tx.Bucket(bucketRecent)
	v, err := json.Marshal(recentAction{At: a.StartedAt.UnixNano(), Tool: a.Tool, Target: a.Target, Group: a.Group, Rollback: a.Rollback})
	if err != nil {
		return err
	}
	if err := b.Put(u64(a.ID), v); err != nil {
		return err
	}
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		var r recentAction
		if err := json.Unmarshal(v, &r); err != nil {
			return fmt.Errorf("decode recent action %x: %w", k, err)
		}
		if a.StartedAt.Sub(time.Unix(0, r.At)) < recentSpan {
			return nil
		}
		if err := c.Delete(); err != nil {
			return err
		}
	}
	return nil
}

// ErrIdempotentRepeat is returned by BeginAction when the action's
// idempotency key ran within its window.
var ErrIdempotentRepeat = fmt.Errorf("idempotent repeat")

type idemRecord struct {
	At     time.Time `json:"at"`
	Action uint64    `json:"action"`
}

func beginAction(tx *bolt.Tx, a *Action, window time.Duration) error {
	a.State = ActionRunning
	idem := tx.Bucket(bucketIdempotency)
	if a.IdempotencyKey != "" && window > 0 {
		if v := idem.Get([]byte(a.IdempotencyKey)); v != nil {
			var r idemRecord
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("decode idempotency record: %w", err)
			}
			if a.StartedAt.Sub(r.At) < window {
				return fmt.Errorf("%w: %s ran at %s (action %d)", ErrIdempotentRepeat, a.IdempotencyKey, r.At.UTC().Format(time.RFC3339), r.Action)
			}
		}
	}
	b := tx.Bucket(bucketJournal)
	id, err := b.NextSequence()
	if err != nil {
		return err
	}
	a.ID = id
	buf, err := json.Marshal(a)
	if err != nil {
		return err
	}
	if err := b.Put(u64(id), buf); err != nil {
		return err
	}
	if err := tx.Bucket(bucketJournalByIncident).Put(byIncident(a.Incident, id), nil); err != nil {
		return err
	}
	if err := tx.Bucket(bucketRunning).Put(u64(id), nil); err != nil {
		return err
	}
	if err := indexRecent(tx, a); err != nil {
		return err
	}
	if a.IdempotencyKey != "" && window > 0 {
		rec, _ := json.Marshal(idemRecord{At: a.StartedAt, Action: id})
		return idem.Put([]byte(a.IdempotencyKey), rec)
	}
	return nil
}

// byIncident is the key of an incident's index: the incident, then the
// record's ID, both big-endian, so that one incident's records are one
// contiguous range in ID order.
func byIncident(incident, id uint64) []byte {
	k := make([]byte, 16)
	binary.BigEndian.PutUint64(k, incident)
	binary.BigEndian.PutUint64(k[8:], id)
	return k
}

// eachOfIncident calls fn with the IDs an incident's index lists, in order.
func eachOfIncident(index *bolt.Bucket, incident uint64, fn func(id []byte) error) error {
	prefix := u64(incident)
	c := index.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		if err := fn(k[8:]); err != nil {
			return err
		}
	}
	return nil
}

// toolStatsWindow is how many recent outcomes a tool's success rate counts.
const toolStatsWindow = 20

// ToolStats are a tool's recent outcomes.
type ToolStats struct {
	// Recent holds the last outcomes, newest last: true for success.
	Recent []bool `json:"recent"`
}

// Rate is the share of recent successes, and the number of runs counted.
func (t ToolStats) Rate() (float64, int) {
	if len(t.Recent) == 0 {
		return 1, 0
	}
	ok := 0
	for _, r := range t.Recent {
		if r {
			ok++
		}
	}
	return float64(ok) / float64(len(t.Recent)), len(t.Recent)
}

// countOutcome appends an outcome to the recent outcomes of a tool or a
// runbook, keeping the last toolStatsWindow.
func countOutcome(tx *bolt.Tx, bucket []byte, name string, ok bool) error {
	var ts ToolStats
	if v := tx.Bucket(bucket).Get([]byte(name)); v != nil {
		if err := json.Unmarshal(v, &ts); err != nil {
			return fmt.Errorf("decode stats %s: %w", name, err)
		}
	}
	ts.Recent = append(ts.Recent, ok)
	if len(ts.Recent) > toolStatsWindow {
		ts.Recent = ts.Recent[len(ts.Recent)-toolStatsWindow:]
	}
	return putJSON(tx, bucket, []byte(name), ts)
}

// MarkInterrupted turns every action left running by a crash into
// interrupted, counts it as a failure of its tool, and returns them, so
// that their incidents escalate. It runs once at start, before any action.
func (s *Store) MarkInterrupted(at time.Time) ([]Action, error) {
	var out []Action
	err := s.update(func(tx *bolt.Tx) error {
		out = out[:0]
		running := tx.Bucket(bucketRunning)
		var ids [][]byte
		if err := running.ForEach(func(k, _ []byte) error {
			ids = append(ids, k)
			return nil
		}); err != nil {
			return err
		}
		for _, k := range ids {
			a, err := updateAction(tx, binary.BigEndian.Uint64(k), func(a *Action) { a.State, a.FinishedAt = ActionInterrupted, &at })
			if err != nil {
				return err
			}
			if err := running.Delete(k); err != nil {
				return err
			}
			if err := countOutcome(tx, bucketToolStats, a.Tool, false); err != nil {
				return err
			}
			out = append(out, *a)
		}
		return nil
	})
	return out, err
}

// CountQuery names the call whose counts the policy needs.
type CountQuery struct {
	Tool, Target string
	// Group is the fleet of the target; the distinct targets of the group
	// acted on in the last hour are its TargetsAffected.
	Group string
	// IdempotencyKey, within IdempotencyWindow, tells whether the call
	// repeats one that ran.
	IdempotencyKey    string
	IdempotencyWindow time.Duration
	Now               time.Time
}

// Counts are what the policy reads from the journal.
type Counts struct {
	// TargetHour counts actions of the tool on the target in the hour
	// before now; rollbacks are not counted.
	TargetHour int
	// Fleet10m counts actions of any tool in the 10 minutes before now.
	Fleet10m int
	// TargetsAffected counts the distinct targets of the group acted on in
	// the hour before now, the call's own target included.
	TargetsAffected int
	// Repeat says the idempotency key ran within its window.
	Repeat bool
	Tool   ToolStats
}

// CountActions reads the journal backwards from the newest entry, so its
// cost is the number of actions in the last hour, not the journal's size.
func (s *Store) CountActions(q CountQuery) (Counts, error) {
	var c Counts
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		c, err = countActions(tx, q)
		return err
	})
	return c, err
}

func countActions(tx *bolt.Tx, q CountQuery) (Counts, error) {
	var c Counts
	cur := tx.Bucket(bucketRecent).Cursor()
	hour, tenMin := q.Now.Add(-time.Hour).UnixNano(), q.Now.Add(-10*time.Minute).UnixNano()
	targets := map[string]bool{q.Target: true}
	for k, v := cur.Last(); k != nil; k, v = cur.Prev() {
		var a recentAction
		if err := json.Unmarshal(v, &a); err != nil {
			return c, fmt.Errorf("decode recent action %x: %w", k, err)
		}
		if a.At < hour {
			break
		}
		if a.Rollback {
			continue
		}
		if a.At >= tenMin {
			c.Fleet10m++
		}
		if a.Tool == q.Tool && a.Target == q.Target {
			c.TargetHour++
		}
		if q.Group != "" && a.Group == q.Group {
			targets[a.Target] = true
		}
	}
	c.TargetsAffected = len(targets)
	if v := tx.Bucket(bucketToolStats).Get([]byte(q.Tool)); v != nil {
		if err := json.Unmarshal(v, &c.Tool); err != nil {
			return c, fmt.Errorf("decode tool stats %s: %w", q.Tool, err)
		}
	}
	if q.IdempotencyKey != "" && q.IdempotencyWindow > 0 {
		if v := tx.Bucket(bucketIdempotency).Get([]byte(q.IdempotencyKey)); v != nil {
			var r idemRecord
			if err := json.Unmarshal(v, &r); err != nil {
				return c, fmt.Errorf("decode idempotency record: %w", err)
			}
			c.Repeat = q.Now.Sub(r.At) < q.IdempotencyWindow
		}
	}
	return c, nil
}

// Actions returns the journal entries of an incident, oldest first, through
// the incident's index: its cost is the incident's entries, not the
// journal's. Incident 0 returns all.
func (s *Store) Actions(incident uint64) ([]Action, error) {
	out := []Action{}
	err := s.db.View(func(tx *bolt.Tx) error {
		journal := tx.Bucket(bucketJournal)
		decode := func(k, v []byte) error {
			var a Action
			if err := json.Unmarshal(v, &a); err != nil {
				return fmt.Errorf("decode action %x: %w", k, err)
			}
			out = append(out, a)
			return nil
		}
		if incident == 0 {
			return journal.ForEach(decode)
		}
		return eachOfIncident(tx.Bucket(bucketJournalByIncident), incident, func(id []byte) error {
			return decode(id, journal.Get(id))
		})
	})
	return out, err
}

// ignoreNotFound drops ErrNotFound: a journal entry whose incident is gone
// (pruned, or none in tests) still records its action.
func ignoreNotFound(err error) error {
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}

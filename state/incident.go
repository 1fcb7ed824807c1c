package state

import (
	"cmp"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// IncidentState is the lifecycle state of an incident.
type IncidentState string

// The incident states.
const (
	StateOpen   IncidentState = "open"
	StateClosed IncidentState = "closed"
)

// MaxTimeline caps the timeline of one incident, so that an alert that keeps
// flapping cannot grow a record without bound. The oldest events after the
// first are dropped and counted in Incident.TimelineDropped.
const MaxTimeline = 500

// MaxAlerts caps the alerts of one incident: the alerts of one key past it
// go to the key's next incident.
const MaxAlerts = 1000

// Incident is one problem medic tracks, made of the alerts that share its key.
type Incident struct {
	ID        uint64        `json:"id"`
	Key       string        `json:"key"`
	State     IncidentState `json:"state"`
	OpenedAt  time.Time     `json:"opened_at"`
	UpdatedAt time.Time     `json:"updated_at"`
	ClosedAt  *time.Time    `json:"closed_at,omitempty"`
	Alerts    []Alert       `json:"alerts"`
	Timeline  []Event       `json:"timeline"`
	// TimelineDropped counts events dropped by the MaxTimeline cap.
	TimelineDropped int `json:"timeline_dropped,omitempty"`
	// Outcome is remediated, escalated or self_resolved; empty while
	// nothing is settled.
	Outcome string `json:"outcome,omitempty"`
	// Acted is set when medic began an action for the incident.
	Acted bool `json:"acted,omitempty"`
	// Remediation is where medic's remediation of the incident is.
	Remediation Remediation `json:"remediation,omitzero"`
	// RecoveredAt is when verification saw the recovery.
	RecoveredAt *time.Time `json:"recovered_at,omitempty"`
}

// Alert is the latest known form of one alert of an incident.
type Alert struct {
	Fingerprint  string            `json:"fingerprint"`
	Status       string            `json:"status"`
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	StartsAt     time.Time         `json:"starts_at"`
	EndsAt       time.Time         `json:"ends_at,omitzero"`
	GeneratorURL string            `json:"generator_url,omitempty"`
	// LastReceivedAt is when a notification last carried the alert. An
	// unchanged repeat refreshes it at most once a minute.
	LastReceivedAt time.Time `json:"last_received_at"`
}

// Event is one entry of an incident's timeline.
type Event struct {
	Time        time.Time `json:"time"`
	Kind        string    `json:"kind"`
	Fingerprint string    `json:"fingerprint,omitempty"`
	Message     string    `json:"message"`
}

// AddEvent appends to the timeline, enforcing MaxTimeline.
func (inc *Incident) AddEvent(e Event) {
	if len(inc.Timeline) >= MaxTimeline {
		// Keep the first event (the opening) and drop the oldest after it.
		copy(inc.Timeline[1:], inc.Timeline[2:])
		inc.Timeline = inc.Timeline[:len(inc.Timeline)-1]
		inc.TimelineDropped++
	}
	inc.Timeline = append(inc.Timeline, e)
}

// AlertIndex returns the index of the alert with the fingerprint, or -1.
func (inc *Incident) AlertIndex(fingerprint string) int {
	for i := range inc.Alerts {
		if inc.Alerts[i].Fingerprint == fingerprint {
			return i
		}
	}
	return -1
}

// Fingerprint remembers the last occurrence of an alert, so that a
// notification re-sent after its incident closed is recognised as stale
// instead of opening a new incident.
type Fingerprint struct {
	IncidentID uint64    `json:"incident_id"`
	StartsAt   time.Time `json:"starts_at"`
	Resolved   bool      `json:"resolved"`
	UpdatedAt  time.Time `json:"updated_at"`
	// Digest summarises the alert's labels, annotations and generator URL
	// as last written, so that an unchanged repeat is recognised without
	// reading its incident.
	Digest uint64 `json:"digest,omitempty"`
	// Starts are the start times of the alert's recent occurrences,
	// newest last, at most MaxStarts: how often it flaps.
	Starts []time.Time `json:"starts,omitempty"`
}

// MaxStarts bounds Fingerprint.Starts.
const MaxStarts = 32

// WithStart returns starts with t appended, keeping the last MaxStarts.
func WithStart(starts []time.Time, t time.Time) []time.Time {
	out := append(append([]time.Time(nil), starts...), t)
	if len(out) > MaxStarts {
		out = out[len(out)-MaxStarts:]
	}
	return out
}

// FingerprintRecord returns what is remembered of an alert, or
// ErrNotFound.
func (s *Store) FingerprintRecord(fp string) (Fingerprint, error) {
	var f Fingerprint
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketFingerprints).Get([]byte(fp))
		if v == nil {
			return ErrNotFound
		}
		return json.Unmarshal(v, &f)
	})
	return f, err
}

// Ignored counts the alerts of one alertname that an ignore matcher skipped.
type Ignored struct {
	Alertname string    `json:"alertname"`
	Matcher   string    `json:"matcher"`
	Count     uint64    `json:"count"`
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
}

// Tx is a write transaction handed to ProcessInbox functions.
type Tx struct {
	tx        *bolt.Tx
	auditKey  []byte
	err       error
	openDelta int64
}

func (t *Tx) fail(err error) error {
	if t.err == nil {
		t.err = err
	}
	return err
}

// OpenIncident returns the open incident with the key, or ErrNotFound.
func (t *Tx) OpenIncident(key string) (*Incident, error) {
	id := t.tx.Bucket(bucketIncidentKeys).Get([]byte(key))
	if id == nil {
		return nil, ErrNotFound
	}
	inc, err := getIncident(t.tx, id)
	if err != nil {
		return nil, t.fail(fmt.Errorf("incident for key %q: %w", key, err))
	}
	return inc, nil
}

// PutIncident stores inc, giving it the next ID when it has none, and keeps
// the open-key index in step with its state.
func (t *Tx) PutIncident(inc *Incident) error {
	if inc.Key == "" {
		return t.fail(errors.New("put incident: empty key"))
	}
	b := t.tx.Bucket(bucketIncidents)
	keys := t.tx.Bucket(bucketIncidentKeys)
	if inc.ID == 0 {
		n, err := b.NextSequence()
		if err != nil {
			return t.fail(err)
		}
		inc.ID = n
	}
	buf, err := json.Marshal(inc)
	if err != nil {
		return t.fail(fmt.Errorf("encode incident %d: %w", inc.ID, err))
	}
	id := u64(inc.ID)
	if err := b.Put(id, buf); err != nil {
		return t.fail(err)
	}
	cur := keys.Get([]byte(inc.Key))
	switch inc.State {
	case StateOpen:
		if cur == nil {
			t.openDelta++
		} else if binary.BigEndian.Uint64(cur) != inc.ID {
			return t.fail(fmt.Errorf("put incident %d: key %q already open as incident %d", inc.ID, inc.Key, binary.BigEndian.Uint64(cur)))
		}
		if err := keys.Put([]byte(inc.Key), id); err != nil {
			return t.fail(err)
		}
	case StateClosed:
		if cur != nil && binary.BigEndian.Uint64(cur) == inc.ID {
			if err := keys.Delete([]byte(inc.Key)); err != nil {
				return t.fail(err)
			}
			t.openDelta--
		}
	default:
		return t.fail(fmt.Errorf("put incident %d: unknown state %q", inc.ID, inc.State))
	}
	return nil
}

// Fingerprint returns what is remembered of an alert, or ErrNotFound.
func (t *Tx) Fingerprint(fp string) (Fingerprint, error) {
	var f Fingerprint
	v := t.tx.Bucket(bucketFingerprints).Get([]byte(fp))
	if v == nil {
		return f, ErrNotFound
	}
	if err := json.Unmarshal(v, &f); err != nil {
		return f, t.fail(fmt.Errorf("decode fingerprint %s: %w", fp, err))
	}
	return f, nil
}

// PutFingerprint records the latest occurrence of an alert.
func (t *Tx) PutFingerprint(fp string, f Fingerprint) error {
	buf, err := json.Marshal(f)
	if err != nil {
		return t.fail(err)
	}
	return t.check(t.tx.Bucket(bucketFingerprints).Put([]byte(fp), buf))
}

// CountIgnored records that an alert of alertname was skipped by matcher.
func (t *Tx) CountIgnored(alertname, matcher string, at time.Time) error {
	b := t.tx.Bucket(bucketIgnored)
	var r Ignored
	if v := b.Get([]byte(alertname)); v != nil {
		if err := json.Unmarshal(v, &r); err != nil {
			return t.fail(fmt.Errorf("decode ignored %q: %w", alertname, err))
		}
	} else {
		r = Ignored{Alertname: alertname, FirstSeen: at}
	}
	r.Matcher = matcher
	r.Count++
	r.LastSeen = at
	buf, err := json.Marshal(r)
	if err != nil {
		return t.fail(err)
	}
	return t.check(b.Put([]byte(alertname), buf))
}

// check records err, if any, as the transaction's failure.
func (t *Tx) check(err error) error {
	if err != nil {
		return t.fail(err)
	}
	return nil
}

func getIncident(tx *bolt.Tx, id []byte) (*Incident, error) {
	v := tx.Bucket(bucketIncidents).Get(id)
	if v == nil {
		return nil, ErrNotFound
	}
	inc := new(Incident)
	if err := json.Unmarshal(v, inc); err != nil {
		return nil, fmt.Errorf("decode incident %x: %w", id, err)
	}
	return inc, nil
}

// Incident returns the incident with the ID, or ErrNotFound.
func (s *Store) Incident(id uint64) (*Incident, error) {
	var inc *Incident
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		inc, err = getIncident(tx, u64(id))
		return err
	})
	return inc, err
}

// Filter selects incidents. A zero Filter selects all.
type Filter struct {
	// State selects one state; empty selects every state.
	State IncidentState
	// Limit caps the result, newest first; 0 means no cap.
	Limit int
	// Before, when set, selects only incidents with a smaller ID: the
	// cursor of the next page.
	Before uint64
}

// Incidents returns the incidents that pass f, newest first.
func (s *Store) Incidents(f Filter) ([]*Incident, error) {
	out := []*Incident{}
	err := s.EachIncident(f, func(inc *Incident) { out = append(out, inc) })
	return out, err
}

// EachIncident calls fn with each incident that passes f, newest first,
// decoding one at a time: a caller that keeps only what it needs of each
// holds one incident in memory, not the page.
func (s *Store) EachIncident(f Filter, fn func(*Incident)) error {
	return s.db.View(func(tx *bolt.Tx) error {
		n := 0
		if f.State == StateOpen {
			// The open index is small; walk it instead of every incident.
			var ids []uint64
			c := tx.Bucket(bucketIncidentKeys).Cursor()
			for k, id := c.First(); k != nil; k, id = c.Next() {
				if v := binary.BigEndian.Uint64(id); f.Before == 0 || v < f.Before {
					ids = append(ids, v)
				}
			}
			// IDs grow with time, so ID order is opening order.
			slices.SortFunc(ids, func(a, b uint64) int { return cmp.Compare(b, a) })
			for _, id := range ids {
				if f.Limit > 0 && n >= f.Limit {
					break
				}
				inc, err := getIncident(tx, u64(id))
				if err != nil {
					return err
				}
				fn(inc)
				n++
			}
			return nil
		}
		c := tx.Bucket(bucketIncidents).Cursor()
		k, v := c.Last()
		if f.Before != 0 {
			// Seek lands on Before or the next key; step back below it.
			if k, v = c.Seek(u64(f.Before)); k == nil {
				k, v = c.Last()
			}
			if k != nil && binary.BigEndian.Uint64(k) >= f.Before {
				k, v = c.Prev()
			}
		}
		for ; k != nil && (f.Limit == 0 || n < f.Limit); k, v = c.Prev() {
			inc := new(Incident)
			if err := json.Unmarshal(v, inc); err != nil {
				return fmt.Errorf("decode incident %x: %w", k, err)
			}
			if f.State != "" && inc.State != f.State {
				continue
			}
			fn(inc)
			n++
		}
		return nil
	})
}

// IgnoredAlerts returns the counters of skipped alerts, by alertname.
func (s *Store) IgnoredAlerts() ([]Ignored, error) {
	out := []Ignored{}
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketIgnored).ForEach(func(k, v []byte) error {
			var r Ignored
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("decode ignored %q: %w", k, err)
			}
			out = append(out, r)
			return nil
		})
	})
	return out, err
}

// Prune deletes closed incidents that closed before cutoff, and the
// fingerprint records of resolved alerts last updated before it. It returns
// the number of incidents deleted.
func (s *Store) Prune(cutoff time.Time) (int, error) {
	// Read first: most runs find nothing to prune, and an empty write
	// transaction would still cost an fsync.
	var incs, fps [][]byte
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		if incs, err = prunable(tx.Bucket(bucketIncidents), cutoff, prunableIncident); err != nil {
			return err
		}
		fps, err = prunable(tx.Bucket(bucketFingerprints), cutoff, prunableFingerprint)
		return err
	})
	if err != nil || len(incs)+len(fps) == 0 {
		return 0, err
	}
	n := 0
	err = s.update(func(tx *bolt.Tx) error {
		n = 0
		b, approvals, fb := tx.Bucket(bucketIncidents), tx.Bucket(bucketApprovals), tx.Bucket(bucketFingerprints)
		for _, k := range incs {
			// Checked again: the record may have changed since the read.
			if ok, err := prunableIncident(b.Get(k), cutoff); err != nil || !ok {
				continue
			}
			// An incident's approval goes with it: the remediator looks
			// through every approval on each turn of its loop, so they
			// must not pile up.
			if err := b.Delete(k); err != nil {
				return err
			}
			if err := approvals.Delete(k); err != nil {
				return err
			}
			n++
		}
		for _, k := range fps {
			if ok, err := prunableFingerprint(fb.Get(k), cutoff); err != nil || !ok {
				continue
			}
			if err := fb.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("prune: %w", err)
	}
	return n, nil
}

// prunable lists, as copies, the keys of a bucket whose records ok says
// are older than cutoff.
func prunable(b *bolt.Bucket, cutoff time.Time, ok func([]byte, time.Time) (bool, error)) ([][]byte, error) {
	var out [][]byte
	err := b.ForEach(func(k, v []byte) error {
		del, err := ok(v, cutoff)
		if err != nil {
			return fmt.Errorf("prune %x: %w", k, err)
		}
		if del {
			out = append(out, append([]byte(nil), k...))
		}
		return nil
	})
	return out, err
}

// prunableIncident reports an incident closed before cutoff.
func prunableIncident(v []byte, cutoff time.Time) (bool, error) {
	if v == nil {
		return false, nil
	}
	var inc Incident
	if err := json.Unmarshal(v, &inc); err != nil {
		return false, err
	}
	return inc.State == StateClosed && inc.ClosedAt != nil && inc.ClosedAt.Before(cutoff), nil
}

// prunableFingerprint reports a resolved alert last seen before cutoff.
func prunableFingerprint(v []byte, cutoff time.Time) (bool, error) {
	if v == nil {
		return false, nil
	}
	var f Fingerprint
	if err := json.Unmarshal(v, &f); err != nil {
		return false, err
	}
	return f.Resolved && f.UpdatedAt.Before(cutoff), nil
}

// Rekey gives an open incident the key of what is broken, once its
// decision rendered the runbook's target. When another open incident holds
// that key already, the incident is folded into it, in one transaction: its
// alerts and their timeline join the holder, its fingerprints point there,
// its decision job (job) is dropped and it is deleted; Rekey then returns
// the holder's ID. Otherwise it returns id.
func (s *Store) Rekey(id uint64, key string, job uint64, now time.Time) (uint64, error) {
	into := id
	folded := false
	err := s.update(func(tx *bolt.Tx) error {
		into, folded = id, false
		inc, err := getIncident(tx, u64(id))
		if err != nil {
			return err
		}
		if inc.Key == key || inc.State != StateOpen {
			return nil
		}
		keys := tx.Bucket(bucketIncidentKeys)
		var dst *Incident
		if holder := keys.Get([]byte(key)); holder != nil {
			if dst, err = getIncident(tx, holder); err != nil {
				return err
			}
			if len(dst.Alerts)+len(inc.Alerts) > MaxAlerts {
				return nil // full: the incident keeps its own key
			}
		}
		if cur := keys.Get([]byte(inc.Key)); cur != nil && binary.BigEndian.Uint64(cur) == id {
			if err := keys.Delete([]byte(inc.Key)); err != nil {
				return err
			}
		}
		if dst != nil {
			into, folded = dst.ID, true
			return fold(tx, s.auditKey, inc, dst, job, now)
		}
		inc.Key = key
		inc.AddEvent(Event{Time: now, Kind: "keyed", Message: "keyed by its target " + key})
		if err := keys.Put([]byte(key), u64(id)); err != nil {
			return err
		}
		return putJSON(tx, bucketIncidents, u64(id), inc)
	})
	if err == nil && folded {
		s.openCount.Add(-1)
	}
	return into, err
}

// fold moves inc's alerts into the open incident dst and deletes inc.
func fold(tx *bolt.Tx, auditKey []byte, inc, dst *Incident, job uint64, now time.Time) error {
	into := dst.ID
	fps := tx.Bucket(bucketFingerprints)
	for _, a := range inc.Alerts {
		if dst.AlertIndex(a.Fingerprint) < 0 {
			dst.Alerts = append(dst.Alerts, a)
		}
		dst.AddEvent(Event{Time: now, Kind: "alert_firing", Fingerprint: a.Fingerprint,
			Message: fmt.Sprintf("%s joined from incident %d: same target", a.Labels["alertname"], inc.ID)})
		var f Fingerprint
		if v := fps.Get([]byte(a.Fingerprint)); v != nil {
			if err := json.Unmarshal(v, &f); err != nil {
				return fmt.Errorf("decode fingerprint %s: %w", a.Fingerprint, err)
			}
			f.IncidentID = into
			if err := putJSON(tx, bucketFingerprints, []byte(a.Fingerprint), f); err != nil {
				return err
			}
		}
	}
	dst.UpdatedAt = now
	if err := putJSON(tx, bucketIncidents, u64(into), dst); err != nil {
		return err
	}
	if err := tx.Bucket(bucketIncidents).Delete(u64(inc.ID)); err != nil {
		return err
	}
	if err := doneDecision(tx, job); err != nil {
		return err
	}
	details, _ := json.Marshal(map[string]any{"event": "folded", "into": into, "key": dst.Key})
	return appendAudit(tx, auditKey, &AuditEntry{Time: now, Incident: inc.ID, Kind: "incident", Actor: "medic", Details: details})
}

// Incident returns the incident with the ID, or ErrNotFound.
func (t *Tx) Incident(id uint64) (*Incident, error) {
	inc, err := getIncident(t.tx, u64(id))
	if err != nil && !errors.Is(err, ErrNotFound) {
		return nil, t.fail(err)
	}
	return inc, err
}

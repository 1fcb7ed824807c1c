package state

import (
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// InboxEntry is one accepted notification waiting to be processed.
type InboxEntry struct {
	Seq        uint64
	ReceivedAt time.Time
	// Body is the notification as received.
	Body []byte
}

// Accept stores one notification in the inbox and returns only once it is
// fsynced; concurrent callers share one commit, so the disk sees one sync
// per group, never one per notification. body is copied. When nothing
// waits in the inbox before it, and apply is not nil, it applies the
// notification at once instead, in the same commit.
// That saves the worker's commit: an alert a runbook acts on is decided
// one commit after its POST, not two. weight is the notification's alerts;
// a commit applies at most ApplyBudget of them, and queues the rest, so
// that the writer lock is held briefly. apply runs inside the commit, may
// run more than once (when the group is committed again without a failing
// change), and must start from scratch each time. When it fails, the
// notification is queued instead, and the worker processes it as any
// other. It reports whether the notification was applied.
func (s *Store) Accept(receivedAt time.Time, body []byte, weight int, apply func(*Tx) error) (bool, error) {
	r := &commitReq{val: inboxValue(receivedAt, body), weight: weight, apply: apply}
	if s.boltBatch {
		r.apply = nil
	}
	if err := s.enqueue(r); err != nil {
		return false, err
	}
	return r.applied, nil
}

// ApplyBudget bounds the alerts one commit applies on accepting them; it
// matches the worker's budget per transaction.
const ApplyBudget = 256

// inboxValue is the stored form of a notification, built before the
// transaction: a db.Batch function may run twice, and must have no side
// effects.
func inboxValue(receivedAt time.Time, body []byte) []byte {
	val := make([]byte, 8+len(body))
	binary.BigEndian.PutUint64(val, uint64(receivedAt.UnixNano()))
	copy(val[8:], body)
	return val
}

func (s *Store) enqueue(r *commitReq) error {
	var err error
	if s.boltBatch {
		err = s.enqueueBoltBatch(r.val)
	} else {
		err = s.submit(r)
	}
	if err != nil {
		return fmt.Errorf("enqueue notification: %w", err)
	}
	if r.applied {
		s.openCount.Add(r.openDelta)
	} else {
		s.inboxDepth.Add(1)
	}
	return nil
}

// enqueueBoltBatch is bbolt's own group commit: writers that arrive within
// MaxBatchDelay share a commit. It is kept for comparison; see GroupCommit.
func (s *Store) enqueueBoltBatch(val []byte) error {
	return s.db.Batch(func(tx *bolt.Tx) error {
		if id := int64(tx.ID()); s.lastTx.Swap(id) != id {
			// Functions of one batch run one after another in one
			// transaction, so a change of ID marks a new commit.
			s.commits.Add(1)
		}
		b := tx.Bucket(bucketInbox)
		n, err := b.NextSequence()
		if err != nil {
			return err
		}
		return b.Put(u64(n), val)
	})
}

// commitReq is one writer waiting for the group committer: a notification
// for the inbox (or to apply at once), or the changes of a remediation's
// transition.
type commitReq struct {
	val     []byte
	changes []*Change
	done    chan error

	weight int
	apply  func(*Tx) error
	// Set by the commit: whether apply ran, and the open incidents it
	// added.
	applied   bool
	openDelta int64
}

// submit hands a request to the committer and waits for its commit.
func (s *Store) submit(r *commitReq) error {
	r.done = make(chan error, 1)
	s.closeMu.RLock()
	if s.closed {
		s.closeMu.RUnlock()
		return ErrClosed
	}
	s.queue <- r
	s.closeMu.RUnlock()
	return <-r.done
}

// commitLoop is the group committer. It takes the first waiting writer, then
// every writer queued behind it, and commits them in one transaction. While
// that commit syncs, the next group queues up, so the group grows with the
// load and no writer waits on a timer: under no load a write costs one
// commit; under load one commit carries everything that arrived during the
// previous one. The intake's notifications and the remediations'
// transitions share the commits. A change that fails (an idempotent
// repeat) fails only itself: the group is committed again without it.
func (s *Store) commitLoop() {
	defer close(s.loopDone)
	batch := make([]*commitReq, 0, s.maxBatch)
	for r := range s.queue {
		batch = append(batch[:0], r)
	gather:
		for len(batch) < s.maxBatch {
			select {
			case r, ok := <-s.queue:
				if !ok {
					break gather
				}
				batch = append(batch, r)
			default:
				break gather
			}
		}
		for len(batch) > 0 {
			bad, err := s.commitGroup(batch)
			if err == nil || bad < 0 {
				for _, r := range batch {
					r.done <- err
				}
				break
			}
			if batch[bad].apply != nil {
				// A notification that failed to apply is queued instead;
				// the worker reports what fails.
				batch[bad].apply = nil
				continue
			}
			// Nothing of the group was written: the writer whose change
			// failed gets its error, and the others are committed again.
			batch[bad].done <- err
			batch = append(batch[:bad], batch[bad+1:]...)
		}
	}
}

// commitGroup writes a group of requests in one transaction. When a change
// or an apply fails, it returns the index of its request; -1 means the
// commit itself failed. A notification is applied only while the inbox is
// empty, so that none overtakes one queued before it.
func (s *Store) commitGroup(batch []*commitReq) (int, error) {
	inbox, bad := false, -1
	err := s.update(func(btx *bolt.Tx) error {
		b := btx.Bucket(bucketInbox)
		empty, _ := b.Cursor().First()
		canApply, budget := empty == nil, ApplyBudget
		for i, r := range batch {
			for _, c := range r.changes {
				if err := s.apply(btx, c); err != nil {
					bad = i
					return err
				}
			}
			if r.changes != nil {
				continue
			}
			inbox = true
			r.applied = r.apply != nil && canApply && r.weight <= budget
			if r.applied {
				tx := &Tx{tx: btx, auditKey: s.auditKey}
				err := r.apply(tx)
				if err == nil {
					err = tx.err
				}
				if err != nil {
					bad = i
					return err
				}
				r.openDelta, budget = tx.openDelta, budget-r.weight
				continue
			}
			canApply = false
			n, err := b.NextSequence()
			if err != nil {
				return err
			}
			if err := b.Put(u64(n), r.val); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil && inbox {
		s.commits.Add(1)
	}
	return bad, err
}

// ProcessResult summarises one ProcessInbox call.
type ProcessResult struct {
	Processed int
	// Dead lists the entries whose function failed; they were moved to the
	// dead-letter bucket with the error instead of blocking the inbox.
	Dead []DeadLetter
}

// DeadLetter is an inbox entry that could not be processed.
type DeadLetter struct {
	Seq uint64
	Err string
}

// PeekInbox hands the oldest inbox entries, in order, to fn until fn
// returns false, without taking the writer lock, so that the caller can
// decode them before ProcessInbox holds it. Body is only valid during the
// call. It returns the entries visited, without their bodies.
func (s *Store) PeekInbox(fn func(e InboxEntry) bool) ([]InboxEntry, error) {
	var out []InboxEntry
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketInbox).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if len(k) != 8 || len(v) < 8 {
				return fmt.Errorf("corrupt inbox entry %x", k)
			}
			e := InboxEntry{
				Seq:        binary.BigEndian.Uint64(k),
				ReceivedAt: time.Unix(0, int64(binary.BigEndian.Uint64(v))).UTC(),
				Body:       v[8:],
			}
			more := fn(e)
			e.Body = nil
			out = append(out, e)
			if !more {
				break
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("peek inbox: %w", err)
	}
	return out, nil
}

// ProcessInbox calls fn for each of entries, which must be the oldest inbox
// entries in order (from PeekInbox), inside one write transaction, and
// removes each entry in that same transaction. Either all the changes fn made
// and the removals commit together, or none do, so a crash part-way
// reprocesses the entries and never applies one twice. Only one goroutine may
// process the inbox.
//
// An entry for which fn returns an error is moved to a dead-letter bucket, so
// that one undecodable entry cannot wedge the inbox. fn must check what it can
// before it writes, since its writes before the error are kept. An error from
// a Tx method aborts the whole transaction.
func (s *Store) ProcessInbox(entries []InboxEntry, fn func(tx *Tx, i int) error) (ProcessResult, error) {
	var res ProcessResult
	var delta int64
	err := s.update(func(btx *bolt.Tx) error {
		res = ProcessResult{}
		tx := &Tx{tx: btx, auditKey: s.auditKey}
		inbox := btx.Bucket(bucketInbox)
		for i, e := range entries {
			k := u64(e.Seq)
			if inbox.Get(k) == nil {
				return fmt.Errorf("inbox entry %d vanished: is a second worker running?", e.Seq)
			}
			if err := fn(tx, i); err != nil {
				msg := err.Error()
				body := inbox.Get(k)
				dead := make([]byte, 0, 4+len(msg)+len(body))
				dead = binary.BigEndian.AppendUint32(dead, uint32(len(msg)))
				dead = append(dead, msg...)
				dead = append(dead, body...)
				if perr := btx.Bucket(bucketDead).Put(k, dead); perr != nil {
					return perr
				}
				res.Dead = append(res.Dead, DeadLetter{Seq: e.Seq, Err: msg})
			}
			if tx.err != nil {
				return tx.err
			}
			if err := inbox.Delete(k); err != nil {
				return err
			}
		}
		res.Processed = len(entries)
		delta = tx.openDelta
		return nil
	})
	if err != nil {
		return ProcessResult{}, fmt.Errorf("process inbox: %w", err)
	}
	s.inboxDepth.Add(-int64(res.Processed))
	s.processed.Add(uint64(res.Processed))
	s.openCount.Add(delta)
	return res, nil
}

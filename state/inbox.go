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
	// Body is the notification as received. It is only valid while the
	// function handed the entry runs.
	Body []byte
}

// Enqueue stores one notification in the inbox and returns only once it is
// fsynced. Concurrent callers share one commit (db.Batch), so the disk sees one
// sync per group, not one per notification. body must not be modified after
// the call.
func (s *Store) Enqueue(receivedAt time.Time, body []byte) (uint64, error) {
	// Build the value outside Batch: the function may run twice when another
	// writer in the same batch fails, and must have no side effects.
	val := make([]byte, 8+len(body))
	binary.BigEndian.PutUint64(val, uint64(receivedAt.UnixNano()))
	copy(val[8:], body)
	var seq uint64
	err := s.db.Batch(func(tx *bolt.Tx) error {
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
		seq = n
		return b.Put(u64(n), val)
	})
	if err != nil {
		return 0, fmt.Errorf("enqueue notification: %w", err)
	}
	s.inboxDepth.Add(1)
	return seq, nil
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

// ProcessInbox hands up to max of the oldest inbox entries to fn, in order,
// inside one write transaction, and removes each entry in that same
// transaction. Either all the changes fn made and the removals commit
// together, or none do, so a crash part-way reprocesses the entries and never
// applies one twice.
//
// An entry for which fn returns an error is moved to a dead-letter bucket, so
// that one undecodable entry cannot wedge the inbox. fn must check what it can
// before it writes, since its writes before the error are kept.
func (s *Store) ProcessInbox(max int, fn func(tx *Tx, e InboxEntry) error) (ProcessResult, error) {
	var res ProcessResult
	var delta int64
	err := s.db.Update(func(btx *bolt.Tx) error {
		res = ProcessResult{}
		tx := &Tx{tx: btx}
		inbox := btx.Bucket(bucketInbox)
		var keys [][]byte
		c := inbox.Cursor()
		for k, v := c.First(); k != nil && len(keys) < max; k, v = c.Next() {
			if len(k) != 8 || len(v) < 8 {
				return fmt.Errorf("corrupt inbox entry %x", k)
			}
			e := InboxEntry{
				Seq:        binary.BigEndian.Uint64(k),
				ReceivedAt: time.Unix(0, int64(binary.BigEndian.Uint64(v))).UTC(),
				Body:       v[8:],
			}
			if err := fn(tx, e); err != nil {
				dead := make([]byte, 0, len(v)+len(err.Error())+4)
				dead = binary.BigEndian.AppendUint32(dead, uint32(len(err.Error())))
				dead = append(dead, err.Error()...)
				dead = append(dead, v...)
				if perr := btx.Bucket(bucketDead).Put(k, dead); perr != nil {
					return perr
				}
				res.Dead = append(res.Dead, DeadLetter{Seq: e.Seq, Err: err.Error()})
			}
			if tx.err != nil {
				return tx.err
			}
			keys = append(keys, k)
		}
		for _, k := range keys {
			if err := inbox.Delete(k); err != nil {
				return err
			}
		}
		res.Processed = len(keys)
		delta = tx.openDelta
		return nil
	})
	if err != nil {
		return ProcessResult{}, fmt.Errorf("process inbox: %w", err)
	}
	s.inboxDepth.Add(-int64(res.Processed))
	s.openCount.Add(delta)
	return res, nil
}

package state

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

var (
	bucketAudit = []byte("audit")
	keyAuditTip = []byte("audit_tip")
)

// AuditEntry is one line of the append-only audit log. Entries are
// hash-chained: Hash is the sha256 of the previous entry's hash and this
// entry's content, so that an edited or removed entry breaks the chain.
type AuditEntry struct {
	Seq      uint64    `json:"seq"`
	Time     time.Time `json:"time"`
	Incident uint64    `json:"incident,omitempty"`
	// Kind is what happened: decision, policy, exec, approval, llm, ….
	Kind string `json:"kind"`
	// Actor is who did it: a runbook, the llm, or a human.
	Actor   string          `json:"actor"`
	Details json.RawMessage `json:"details,omitempty"`
	Prev    string          `json:"prev"`
	Hash    string          `json:"hash"`
}

// chainHash is the entry's hash over the previous hash and the content.
func chainHash(e *AuditEntry) (string, error) {
	c := *e
	c.Hash = ""
	body, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	h.Write([]byte(e.Prev))
	h.Write([]byte{0})
	h.Write(body)
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Audit appends an entry, chained to the previous one, and fsyncs it.
// Details must be JSON; it is compacted before hashing.
func (s *Store) Audit(e AuditEntry) (AuditEntry, error) {
	if len(e.Details) > 0 {
		var b bytes.Buffer
		if err := json.Compact(&b, e.Details); err != nil {
			return e, fmt.Errorf("audit details: %w", err)
		}
		e.Details = b.Bytes()
	}
	err := s.db.Update(func(tx *bolt.Tx) error { return appendAudit(tx, &e) })
	return e, err
}

// Audit appends an entry inside the ProcessInbox transaction, so that the
// change and its record commit together.
func (t *Tx) Audit(e AuditEntry) error {
	return t.check(appendAudit(t.tx, &e))
}

func appendAudit(tx *bolt.Tx, e *AuditEntry) error {
	b := tx.Bucket(bucketAudit)
	seq, err := b.NextSequence()
	if err != nil {
		return err
	}
	e.Seq = seq
	e.Prev = string(tx.Bucket(bucketMeta).Get(keyAuditTip))
	if e.Hash, err = chainHash(e); err != nil {
		return err
	}
	buf, err := json.Marshal(e)
	if err != nil {
		return err
	}
	if err := b.Put(u64(seq), buf); err != nil {
		return err
	}
	return tx.Bucket(bucketMeta).Put(keyAuditTip, []byte(e.Hash))
}

// AuditFilter selects audit entries.
type AuditFilter struct {
	Incident uint64
	Since    time.Time
}

// AuditEntries calls fn for each entry that passes f, oldest first, and
// stops at the first error fn returns.
func (s *Store) AuditEntries(f AuditFilter, fn func(AuditEntry) error) error {
	return s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketAudit).ForEach(func(k, v []byte) error {
			var e AuditEntry
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("decode audit entry %x: %w", k, err)
			}
			if f.Incident != 0 && e.Incident != f.Incident || e.Time.Before(f.Since) {
				return nil
			}
			return fn(e)
		})
	})
}

// VerifyAudit walks the whole chain and reports the first entry whose hash,
// link or sequence is wrong. It returns the number of entries checked.
func (s *Store) VerifyAudit() (int, error) {
	n := 0
	err := s.db.View(func(tx *bolt.Tx) error {
		prev := ""
		var want uint64 = 1
		err := tx.Bucket(bucketAudit).ForEach(func(k, v []byte) error {
			var e AuditEntry
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("entry %x: undecodable: %w", k, err)
			}
			if e.Seq != want || !bytes.Equal(k, u64(e.Seq)) {
				return fmt.Errorf("entry %d: sequence broken (expected %d)", e.Seq, want)
			}
			if e.Prev != prev {
				return fmt.Errorf("entry %d: does not link to the entry before it", e.Seq)
			}
			h, err := chainHash(&e)
			if err != nil {
				return err
			}
			if h != e.Hash {
				return fmt.Errorf("entry %d: content does not match its hash", e.Seq)
			}
			prev, want = e.Hash, want+1
			n++
			return nil
		})
		if err != nil {
			return err
		}
		if tip := string(tx.Bucket(bucketMeta).Get(keyAuditTip)); tip != prev {
			return fmt.Errorf("the chain ends at entry %d, but its tip says otherwise: entries were removed from the end", want-1)
		}
		return nil
	})
	return n, err
}

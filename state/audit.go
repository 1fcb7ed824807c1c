package state

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"
)

var (
	bucketAudit = []byte("audit")
	// bucketAuditByIncident indexes the audit log by incident.
	bucketAuditByIncident = []byte("audit_by_incident")
	keyAuditTip           = []byte("audit_tip")
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
	// MAC is the HMAC-SHA256 of Hash under the audit key, which lives
	// outside the state file: a chain recomputed by someone without the
	// key has no valid MACs.
	MAC string `json:"mac,omitempty"`
}

// chainHash is the entry's hash over the previous hash and the content.
func chainHash(e *AuditEntry) (string, error) {
	c := *e
	c.Hash, c.MAC = "", ""
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
	if err := compactDetails(&e); err != nil {
		return e, err
	}
	err := s.update(func(tx *bolt.Tx) error { return appendAudit(tx, s.auditKey, &e) })
	return e, err
}

// compactDetails compacts an entry's JSON details, which the hash covers.
func compactDetails(e *AuditEntry) error {
	if len(e.Details) == 0 {
		return nil
	}
	var b bytes.Buffer
	if err := json.Compact(&b, e.Details); err != nil {
		return fmt.Errorf("audit details: %w", err)
	}
	e.Details = b.Bytes()
	return nil
}

// Audit appends an entry inside the ProcessInbox transaction, so that the
// change and its record commit together.
func (t *Tx) Audit(e AuditEntry) error {
	return t.check(appendAudit(t.tx, t.auditKey, &e))
}

// mac authenticates an entry's hash under key.
func mac(key []byte, hash string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(hash))
	return hex.EncodeToString(m.Sum(nil))
}

func appendAudit(tx *bolt.Tx, key []byte, e *AuditEntry) error {
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
	if len(key) > 0 {
		e.MAC = mac(key, e.Hash)
	}
	buf, err := json.Marshal(e)
	if err != nil {
		return err
	}
	if err := b.Put(u64(seq), buf); err != nil {
		return err
	}
	if e.Incident != 0 {
		if err := tx.Bucket(bucketAuditByIncident).Put(byIncident(e.Incident, seq), nil); err != nil {
			return err
		}
	}
	return tx.Bucket(bucketMeta).Put(keyAuditTip, []byte(e.Hash))
}

// AuditFilter selects audit entries.
type AuditFilter struct {
	Incident uint64
	Since    time.Time
}

// AuditEntries calls fn for each entry that passes f, oldest first, and
// stops at the first error fn returns. One incident's entries are read
// through its index, at the cost of that incident's entries.
func (s *Store) AuditEntries(f AuditFilter, fn func(AuditEntry) error) error {
	return s.db.View(func(tx *bolt.Tx) error {
		audit := tx.Bucket(bucketAudit)
		visit := func(k, v []byte) error {
			var e AuditEntry
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("decode audit entry %x: %w", k, err)
			}
			if f.Incident != 0 && e.Incident != f.Incident || e.Time.Before(f.Since) {
				return nil
			}
			return fn(e)
		}
		if f.Incident == 0 {
			return audit.ForEach(visit)
		}
		return eachOfIncident(tx.Bucket(bucketAuditByIncident), f.Incident, func(seq []byte) error {
			return visit(seq, audit.Get(seq))
		})
	})
}

// VerifyAudit walks the whole chain and reports the first entry whose hash,
// link, sequence or MAC is wrong, then checks the checkpoints against it.
// With a key, every entry must carry a valid MAC. It returns the number of
// entries checked.
func (s *Store) VerifyAudit(key []byte, checkpoints []Checkpoint) (int, error) {
	n := 0
	err := s.db.View(func(tx *bolt.Tx) error {
		prev := ""
		var want uint64 = 1
		hashes := map[uint64]string{}
		for _, c := range checkpoints {
			hashes[c.Seq] = ""
		}
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
			if len(key) > 0 && !hmac.Equal([]byte(e.MAC), []byte(mac(key, e.Hash))) {
				return fmt.Errorf("entry %d: its MAC is missing or wrong: it was not written with this audit key", e.Seq)
			}
			if _, ok := hashes[e.Seq]; ok {
				hashes[e.Seq] = e.Hash
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
		for _, c := range checkpoints {
			switch h := hashes[c.Seq]; {
			case h == "":
				return fmt.Errorf("checkpoint of %s names entry %d, but the log ends at entry %d: entries were removed", c.Time.UTC().Format(time.RFC3339), c.Seq, want-1)
			case h != c.Hash:
				return fmt.Errorf("checkpoint of %s does not match entry %d: the log was rewritten", c.Time.UTC().Format(time.RFC3339), c.Seq)
			}
		}
		return nil
	})
	return n, err
}

// AuditTip is the newest entry's sequence number and hash; 0 and "" for an
// empty log.
func (s *Store) AuditTip() (uint64, string, error) {
	var seq uint64
	var hash string
	err := s.db.View(func(tx *bolt.Tx) error {
		k, v := tx.Bucket(bucketAudit).Cursor().Last()
		if k == nil {
			return nil
		}
		var e AuditEntry
		if err := json.Unmarshal(v, &e); err != nil {
			return fmt.Errorf("decode audit entry %x: %w", k, err)
		}
		seq, hash = e.Seq, e.Hash
		return nil
	})
	return seq, hash, err
}

// Checkpoint records, outside the state file, that the audit log had
// reached entry Seq with hash Hash at Time. A log later found shorter, or
// with another hash there, was tampered with.
type Checkpoint struct {
	Seq  uint64    `json:"seq"`
	Hash string    `json:"hash"`
	Time time.Time `json:"time"`
	MAC  string    `json:"mac"`
}

func (c Checkpoint) mac(key []byte) string {
	return mac(key, fmt.Sprintf("%d\x00%s\x00%d", c.Seq, c.Hash, c.Time.UnixNano()))
}

// AppendCheckpoint appends a checkpoint to the file at path, one JSON line,
// fsynced.
func AppendCheckpoint(path string, key []byte, c Checkpoint) error {
	c.MAC = c.mac(key)
	line, err := json.Marshal(c)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("audit checkpoint: %w", err)
	}
	if _, err := f.Write(append(line, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("audit checkpoint: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("audit checkpoint: %w", err)
	}
	return f.Close()
}

// ReadCheckpoints reads a checkpoint file; a missing file has none. A line
// that is not a checkpoint, or whose MAC is wrong, is an error.
func ReadCheckpoints(path string, key []byte) ([]Checkpoint, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("audit checkpoints: %w", err)
	}
	var out []Checkpoint
	for i, line := range bytes.Split(b, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var c Checkpoint
		if err := json.Unmarshal(line, &c); err != nil {
			return nil, fmt.Errorf("%s:%d: not a checkpoint: %w", path, i+1, err)
		}
		if !hmac.Equal([]byte(c.MAC), []byte(c.mac(key))) {
			return nil, fmt.Errorf("%s:%d: the checkpoint's MAC is wrong: it was not written with this audit key", path, i+1)
		}
		out = append(out, c)
	}
	return out, nil
}

package state

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func TestAuditChain(t *testing.T) {
	p := filepath.Join(t.TempDir(), "m.db")
	s, err := Open(p, DefaultOptions)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		if _, err := s.Audit(AuditEntry{Time: t0.Add(time.Duration(i) * time.Minute), Incident: uint64(i%2 + 1), Kind: "decision", Actor: "runbook:oom",
			Details: json.RawMessage(`{ "n" : ` + string(rune('0'+i)) + ` }`)}); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := s.VerifyAudit(nil, nil); err != nil || n != 5 {
		t.Fatalf("%d %v", n, err)
	}
	var seqs []uint64
	s.AuditEntries(AuditFilter{Incident: 1, Since: t0.Add(time.Minute)}, func(e AuditEntry) error {
		seqs = append(seqs, e.Seq)
		return nil
	})
	if len(seqs) != 2 || seqs[0] != 3 || seqs[1] != 5 {
		t.Fatalf("filtered %v", seqs)
	}
	if _, err := s.Audit(AuditEntry{Kind: "x", Details: json.RawMessage(`{bad`)}); err == nil {
		t.Fatal("invalid details accepted")
	}
	s.Close()

	tamper := func(fn func(b *bolt.Bucket, meta *bolt.Bucket)) string {
		t.Helper()
		cp := filepath.Join(t.TempDir(), "copy.db")
		// Copy through a snapshot, then edit the copy with bbolt directly.
		src, _ := Open(p, DefaultOptions)
		src.db.View(func(tx *bolt.Tx) error { return tx.CopyFile(cp, 0o600) })
		src.Close()
		db, _ := bolt.Open(cp, 0o600, nil)
		db.Update(func(tx *bolt.Tx) error { fn(tx.Bucket(bucketAudit), tx.Bucket(bucketMeta)); return nil })
		db.Close()
		s := open(t, cp)
		_, err := s.VerifyAudit(nil, nil)
		if err == nil {
			return ""
		}
		return err.Error()
	}
	edit := func(seq uint64, f func(*AuditEntry)) func(b, meta *bolt.Bucket) {
		return func(b, meta *bolt.Bucket) {
			var e AuditEntry
			json.Unmarshal(b.Get(u64(seq)), &e)
			f(&e)
			buf, _ := json.Marshal(e)
			b.Put(u64(seq), buf)
		}
	}
	for name, tc := range map[string]struct {
		fn   func(b, meta *bolt.Bucket)
		want string
	}{
		"edited details":  {edit(3, func(e *AuditEntry) { e.Details = json.RawMessage(`{"n":9}`) }), "entry 3: content does not match its hash"},
		"edited actor":    {edit(1, func(e *AuditEntry) { e.Actor = "human:mallory" }), "entry 1: content does not match its hash"},
		"rehashed entry":  {edit(2, func(e *AuditEntry) { e.Kind = "exec"; e.Hash, _ = chainHash(e) }), "entry 3: does not link"},
		"removed middle":  {func(b, _ *bolt.Bucket) { b.Delete(u64(3)) }, "entry 4: sequence broken"},
		"removed last":    {func(b, _ *bolt.Bucket) { b.Delete(u64(5)) }, "entries were removed from the end"},
		"untouched chain": {func(*bolt.Bucket, *bolt.Bucket) {}, ""},
	} {
		t.Run(name, func(t *testing.T) {
			got := tamper(tc.fn)
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Fatalf("verify: %q, want %q", got, tc.want)
			}
		})
	}
}

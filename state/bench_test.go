package state

import (
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// BenchmarkEnqueue measures the inbox alone: 64 writers, no HTTP, a 1 KiB
// notification each, fsynced.
func BenchmarkEnqueue(b *testing.B) {
	for _, tc := range []struct {
		name string
		o    Options
	}{
		{"queue", DefaultOptions},
		{"bolt-batch-2ms", Options{GroupCommit: GroupBoltBatch, MaxBatchDelay: 2 * time.Millisecond, MaxBatchSize: 1000}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			s, err := Open(filepath.Join(b.TempDir(), "m.db"), tc.o)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			body := make([]byte, 1024)
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			for w := 0; w < 64; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for next.Add(1) <= int64(b.N) {
						if _, err := s.Accept(time.Now(), body, 0, nil); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "notif/s")
			b.ReportMetric(float64(b.N)/float64(s.InboxCommits()), "notif/commit")
		})
	}
}

// BenchmarkIncidentRecords reads one incident's actions and audit entries
// from a store that holds 1,000 or 100,000 journal and audit entries of
// other incidents: the cost must not depend on them.
func BenchmarkIncidentRecords(b *testing.B) {
	for _, others := range []int{1_000, 100_000} {
		b.Run(fmt.Sprintf("others=%d", others), func(b *testing.B) { benchIncidentRecords(b, others) })
	}
}

func benchIncidentRecords(b *testing.B, others int) {
	s, err := Open(filepath.Join(b.TempDir(), "m.db"), DefaultOptions)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	err = s.db.Update(func(tx *bolt.Tx) error {
		for i := range others {
			a := &Action{Incident: uint64(i%5000 + 2), Tool: "restart", Target: fmt.Sprintf("t%d", i), StartedAt: t0}
			if err := beginAction(tx, a, 0); err != nil {
				return err
			}
			if err := appendAudit(tx, s.auditKey, &AuditEntry{Time: t0, Incident: uint64(i%5000 + 2), Kind: "decision", Actor: "medic"}); err != nil {
				return err
			}
		}
		for range 5 {
			if err := beginAction(tx, &Action{Incident: 1, Tool: "restart", Target: "mine", StartedAt: t0}, 0); err != nil {
				return err
			}
			if err := appendAudit(tx, s.auditKey, &AuditEntry{Time: t0, Incident: 1, Kind: "decision", Actor: "medic"}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		acts, err := s.Actions(1)
		if err != nil || len(acts) != 5 {
			b.Fatalf("%d actions, %v", len(acts), err)
		}
		n := 0
		if err := s.AuditEntries(AuditFilter{Incident: 1}, func(AuditEntry) error { n++; return nil }); err != nil || n != 5 {
			b.Fatalf("%d audit entries, %v", n, err)
		}
	}
}

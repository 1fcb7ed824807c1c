package state

import (
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
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
						if _, err := s.Enqueue(time.Now(), body); err != nil {
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

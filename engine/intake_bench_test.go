package engine

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"medic/state"
)

// discardInbox is the decode-only ceiling: the same handler, no store.
type discardInbox struct{}

func (discardInbox) Accept(time.Time, []byte, int, func(*state.Tx) error) (bool, error) {
	return false, nil
}

var benchClients = envInt("MEDIC_BENCH_CLIENTS", 64)

// BenchmarkIntake measures POST /api/v1/alerts through a real HTTP server
// on loopback with 64 concurrent keep-alive clients. "store" fsyncs every
// notification into bbolt before the 200; "decode-only" is the same handler
// with no store, the ceiling. It reports notifications per second, the p50
// and p99 latency of the 200, and notifications per bbolt commit.
func BenchmarkIntake(b *testing.B) {
	for _, alerts := range []int{1, 100} {
		for _, mode := range []string{"store", "decode-only", "store+worker"} {
			if alerts == 100 && mode == "store+worker" {
				continue
			}
			b.Run(fmt.Sprintf("alerts=%d/%s", alerts, mode), func(b *testing.B) {
				benchIntake(b, alerts, mode, state.DefaultOptions)
			})
		}
	}
}

// BenchmarkIntakeGroupCommit compares the group commit strategies: the
// queue committer medic uses, and bbolt's db.Batch at several delays.
func BenchmarkIntakeGroupCommit(b *testing.B) {
	b.Run("queue", func(b *testing.B) { benchIntake(b, 1, "store", state.DefaultOptions) })
	for _, d := range []time.Duration{10 * time.Millisecond, 5 * time.Millisecond, 2 * time.Millisecond, time.Millisecond, 500 * time.Microsecond} {
		b.Run("bolt-batch/delay="+d.String(), func(b *testing.B) {
			o := state.DefaultOptions
			o.GroupCommit = state.GroupBoltBatch
			o.MaxBatchDelay = d
			benchIntake(b, 1, "store", o)
		})
	}
}

func benchIntake(b *testing.B, alerts int, mode string, opts state.Options) {
	store, err := state.Open(filepath.Join(b.TempDir(), "medic.db"), opts)
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	o := Options{Registerer: prometheus.NewRegistry(), Store: store}
	if mode == "decode-only" {
		o.Inbox = discardInbox{}
	}
	eng := New(o)
	if err := eng.ApplyConfig(DefaultConfig()); err != nil {
		b.Fatal(err)
	}
	if mode == "store+worker" {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { eng.Run(ctx, RunOptions{DrainTimeout: time.Minute}); close(done) }()
		defer func() { cancel(); <-done }()
	}
	srv := httptest.NewServer(eng.Handler())
	defer srv.Close()
	body := benchPayload(alerts)
	tr := &http.Transport{MaxIdleConnsPerHost: benchClients, MaxConnsPerHost: benchClients}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	url := srv.URL + "/api/v1/alerts"

	lat := make([]time.Duration, b.N)
	var next atomic.Int64
	var wg sync.WaitGroup
	commits0 := store.InboxCommits()
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	start := time.Now()
	for c := 0; c < benchClients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				t0 := time.Now()
				resp, err := client.Post(url, "application/json", bytes.NewReader(body))
				if err != nil {
					b.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Errorf("status %d", resp.StatusCode)
					return
				}
				lat[i] = time.Since(t0)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "notif/s")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	if commits := store.InboxCommits() - commits0; commits > 0 {
		b.ReportMetric(float64(b.N)/float64(commits), "notif/commit")
	}
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// TestWriteBenchPayload writes the benchmark's payload to
// $MEDIC_BENCH_PAYLOAD for scripts/bench.sh, so that wrk posts the same body
// as BenchmarkIntake. It does nothing when the variable is unset.
func TestWriteBenchPayload(t *testing.T) {
	path := os.Getenv("MEDIC_BENCH_PAYLOAD")
	if path == "" {
		t.Skip("MEDIC_BENCH_PAYLOAD not set")
	}
	if err := os.WriteFile(path, benchPayload(envInt("MEDIC_BENCH_ALERTS", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
}

func benchPayload(alerts int) []byte {
	as := make([]testAlert, alerts)
	for i := range as {
		as[i] = alert("firing", "KubePodCrashLooping", fp(i+1))
		as[i].Labels["pod"] = fmt.Sprintf("api-7d9f8b6c5-%05d", i)
	}
	return payload(as...)
}

// BenchmarkWorker measures how fast the worker turns a full inbox into
// incidents: each notification carries new alerts, so every alert opens an
// incident. It reports alerts processed per second.
func BenchmarkWorker(b *testing.B) {
	for _, alerts := range []int{1, 100} {
		b.Run(fmt.Sprintf("alerts=%d", alerts), func(b *testing.B) {
			env := newTestEnv(b, nil)
			bodies := make([][]byte, b.N)
			for i := range bodies {
				as := make([]testAlert, alerts)
				for j := range as {
					as[j] = alert("firing", "KubePodCrashLooping", fp(i*alerts+j+1))
				}
				bodies[i] = payload(as...)
			}
			for _, body := range bodies {
				if _, err := env.store.Accept(env.now, body, 0, nil); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			start := time.Now()
			env.drain(b)
			b.ReportMetric(float64(b.N*alerts)/time.Since(start).Seconds(), "alerts/s")
		})
	}
}

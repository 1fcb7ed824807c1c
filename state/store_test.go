package state

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func open(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(path, DefaultOptions)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// process peeks at up to max entries and processes them, as the worker does.
func process(t *testing.T, s *Store, max int, fn func(tx *Tx, e InboxEntry) error) (ProcessResult, error) {
	t.Helper()
	var bodies [][]byte
	entries, err := s.PeekInbox(func(e InboxEntry) bool {
		bodies = append(bodies, bytes.Clone(e.Body))
		return len(bodies) < max
	})
	if err != nil {
		t.Fatal(err)
	}
	return s.ProcessInbox(entries, func(tx *Tx, i int) error {
		e := entries[i]
		e.Body = bodies[i]
		return fn(tx, e)
	})
}

func TestInboxOrderAndGroupCommit(t *testing.T) {
	for _, o := range []Options{DefaultOptions, {GroupCommit: GroupBoltBatch, MaxBatchDelay: 2 * time.Millisecond, MaxBatchSize: 1000}} {
		t.Run(fmt.Sprint(o.GroupCommit), func(t *testing.T) { testInboxOrder(t, o) })
	}
}

func testInboxOrder(t *testing.T, o Options) {
	s, err := Open(filepath.Join(t.TempDir(), "m.db"), o)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const n = 200
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.Accept(time.Unix(int64(i), 0), []byte(fmt.Sprint(i)), 0, nil); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if s.InboxDepth() != n {
		t.Fatalf("depth %d", s.InboxDepth())
	}
	if c := s.InboxCommits(); c == 0 || c >= n {
		t.Fatalf("%d commits for %d concurrent writers: no group commit", c, n)
	}
	var last uint64
	seen := 0
	for s.InboxDepth() > 0 {
		_, err := process(t, s, 64, func(tx *Tx, e InboxEntry) error {
			if e.Seq <= last {
				t.Fatalf("seq %d after %d", e.Seq, last)
			}
			last = e.Seq
			seen++
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if seen != n {
		t.Fatalf("processed %d of %d", seen, n)
	}
}

func TestProcessInboxRollsBackOnStorageError(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "m.db"))
	if _, err := s.Accept(time.Now(), []byte("x"), 0, nil); err != nil {
		t.Fatal(err)
	}
	_, err := process(t, s, 10, func(tx *Tx, e InboxEntry) error {
		if err := tx.PutIncident(&Incident{Key: "k", State: StateOpen}); err != nil {
			return err
		}
		return tx.PutIncident(&Incident{Key: "", State: StateOpen}) // a storage-level refusal
	})
	if err == nil {
		t.Fatal("storage error did not abort the transaction")
	}
	if s.InboxDepth() != 1 || s.OpenIncidents() != 0 {
		t.Fatalf("depth %d open %d after rollback", s.InboxDepth(), s.OpenIncidents())
	}
	if incs, _ := s.Incidents(Filter{}); len(incs) != 0 {
		t.Fatalf("rolled back incident persisted: %+v", incs)
	}
}

func TestPutIncidentKeepsOneOpenPerKey(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "m.db"))
	s.Accept(time.Now(), []byte("x"), 0, nil)
	_, err := process(t, s, 1, func(tx *Tx, e InboxEntry) error {
		if err := tx.PutIncident(&Incident{Key: "k", State: StateOpen}); err != nil {
			return err
		}
		return tx.PutIncident(&Incident{Key: "k", State: StateOpen})
	})
	if err == nil {
		t.Fatal("two open incidents for one key")
	}
}

func TestSecondOpenFailsFast(t *testing.T) {
	p := filepath.Join(t.TempDir(), "m.db")
	open(t, p)
	start := time.Now()
	_, err := Open(p, Options{LockTimeout: 100 * time.Millisecond})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("err %v, want ErrLocked", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("second open took %v", d)
	}
}

func TestRefusesNewerSchema(t *testing.T) {
	p := filepath.Join(t.TempDir(), "m.db")
	db, err := bolt.Open(p, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error {
		b, _ := tx.CreateBucketIfNotExists(bucketMeta)
		v := make([]byte, 8)
		binary.BigEndian.PutUint64(v, SchemaVersion+1)
		return b.Put(keySchemaVersion, v)
	})
	db.Close()
	if _, err := Open(p, DefaultOptions); err == nil {
		t.Fatal("opened a file with a newer schema")
	}
}

func TestReopenCountsInboxAndOpen(t *testing.T) {
	p := filepath.Join(t.TempDir(), "m.db")
	s, err := Open(p, DefaultOptions)
	if err != nil {
		t.Fatal(err)
	}
	s.Accept(time.Now(), []byte("a"), 0, nil)
	s.Accept(time.Now(), []byte("b"), 0, nil)
	process(t, s, 1, func(tx *Tx, e InboxEntry) error {
		return tx.PutIncident(&Incident{Key: "k", State: StateOpen})
	})
	s.Close()
	s = open(t, p)
	if s.InboxDepth() != 1 || s.OpenIncidents() != 1 {
		t.Fatalf("after reopen: depth %d open %d", s.InboxDepth(), s.OpenIncidents())
	}
}

func TestTimelineCap(t *testing.T) {
	inc := &Incident{}
	for i := 0; i < MaxTimeline+10; i++ {
		inc.AddEvent(Event{Kind: fmt.Sprint(i)})
	}
	if len(inc.Timeline) != MaxTimeline || inc.Timeline[0].Kind != "0" || inc.TimelineDropped != 10 ||
		inc.Timeline[len(inc.Timeline)-1].Kind != fmt.Sprint(MaxTimeline+9) {
		t.Fatalf("len %d first %s dropped %d", len(inc.Timeline), inc.Timeline[0].Kind, inc.TimelineDropped)
	}
}

package state

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

var t0 = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

func TestJournalLifecycleAndCounts(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "m.db"))
	begin := func(tool, target string, at time.Time, rollback bool) uint64 {
		a := &Action{Incident: 1, Tool: tool, Target: target, StartedAt: at, Rollback: rollback, Argv: []string{"kubectl", "scale"}}
		if err := commitBegin(s, a, 0); err != nil {
			t.Fatal(err)
		}
		return a.ID
	}
	old := begin("k8s_scale", "shop/api", t0.Add(-61*time.Minute), false)
	a1 := begin("k8s_scale", "shop/api", t0.Add(-59*time.Minute), false)
	a2 := begin("k8s_scale", "shop/api", t0.Add(-5*time.Minute), false)
	begin("k8s_scale", "shop/api", t0.Add(-4*time.Minute), true) // a rollback
	begin("k8s_scale", "shop/web", t0.Add(-3*time.Minute), false)
	begin("cert_renew", "shop/tls", t0.Add(-11*time.Minute), false)
	for _, id := range []uint64{old, a1} {
		if err := commitFinish(s, id, ActionSucceeded, json.RawMessage(`{"exit_code":0}`), t0); err != nil {
			t.Fatal(err)
		}
	}
	if err := commitFinish(s, a2, ActionFailed, json.RawMessage(`{"exit_code":1}`), t0); err != nil {
		t.Fatal(err)
	}
	c, err := s.CountActions(CountQuery{Tool: "k8s_scale", Target: "shop/api", Now: t0})
	if err != nil {
		t.Fatal(err)
	}
	if c.TargetHour != 2 || c.Fleet10m != 2 {
		t.Fatalf("counts %+v, want 2 on the target in the hour and 2 in the fleet in 10 minutes", c)
	}
	if rate, runs := c.Tool.Rate(); runs != 3 || rate < 0.66 || rate > 0.67 {
		t.Fatalf("rate %v over %d runs", rate, runs)
	}
	acts, _ := s.Actions(1)
	if len(acts) != 6 || acts[2].State != ActionFailed || acts[2].FinishedAt == nil || string(acts[2].Result) != `{"exit_code":1}` {
		t.Fatalf("journal %+v", acts[2])
	}
	if err := commitFinish(s, 999, ActionSucceeded, nil, t0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("finishing an unknown action: %v", err)
	}
}

// TestJournalAfterCrash: an action written as running and never finished,
// because medic died, is interrupted at the next start, and its idempotency
// key still blocks a re-run inside the window.
func TestJournalAfterCrash(t *testing.T) {
	p := filepath.Join(t.TempDir(), "m.db")
	s, err := Open(p, DefaultOptions)
	if err != nil {
		t.Fatal(err)
	}
	a := &Action{Incident: 7, Tool: "k8s_set_memory_limit", Target: "shop/api", IdempotencyKey: "shop/api/memory", StartedAt: t0}
	if err := commitBegin(s, a, 30*time.Minute); err != nil {
		t.Fatal(err)
	}
	s.Close() // the process dies here: no FinishAction

	s = open(t, p)
	got, err := s.MarkInterrupted(t0.Add(time.Minute))
	if err != nil || len(got) != 1 || got[0].ID != a.ID || got[0].State != ActionInterrupted || got[0].Incident != 7 {
		t.Fatalf("%v %+v", err, got)
	}
	if again, _ := s.MarkInterrupted(t0.Add(2 * time.Minute)); len(again) != 0 {
		t.Fatalf("interrupted twice: %+v", again)
	}
	retry := &Action{Incident: 7, Tool: "k8s_set_memory_limit", Target: "shop/api", IdempotencyKey: "shop/api/memory", StartedAt: t0.Add(29 * time.Minute)}
	if err := commitBegin(s, retry, 30*time.Minute); !errors.Is(err, ErrIdempotentRepeat) {
		t.Fatalf("re-run inside the window: %v", err)
	}
	retry.StartedAt = t0.Add(30 * time.Minute)
	if err := commitBegin(s, retry, 30*time.Minute); err != nil {
		t.Fatalf("run after the window: %v", err)
	}
	c, _ := s.CountActions(CountQuery{Tool: "k8s_set_memory_limit", Target: "shop/api", Now: t0.Add(31 * time.Minute)})
	if rate, runs := c.Tool.Rate(); runs != 1 || rate != 0 {
		t.Fatalf("the interruption was not counted as a failure: %v over %d", rate, runs)
	}
}

// TestCountsForTheBlastRadius: the distinct targets of a group in the last
// hour, the call's own included, and whether an idempotency key repeats.
func TestCountsForTheBlastRadius(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "m.db"))
	for i, a := range []Action{
		{Target: "a", Group: "web", StartedAt: t0.Add(-61 * time.Minute)}, // too old
		{Target: "b", Group: "web", StartedAt: t0.Add(-30 * time.Minute), IdempotencyKey: "k/b"},
		{Target: "b", Group: "web", StartedAt: t0.Add(-20 * time.Minute)},
		{Target: "c", Group: "db", StartedAt: t0.Add(-10 * time.Minute)},
		{Target: "d", Group: "web", StartedAt: t0.Add(-5 * time.Minute), Rollback: true},
	} {
		a.Incident, a.Tool = uint64(i+1), "restart"
		if err := commitBegin(s, &a, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		q       CountQuery
		targets int
		repeat  bool
	}{
		{CountQuery{Tool: "restart", Target: "e", Group: "web", Now: t0}, 2, false},
		{CountQuery{Tool: "restart", Target: "b", Group: "web", Now: t0}, 1, false},
		{CountQuery{Tool: "restart", Target: "e", Group: "db", Now: t0}, 2, false},
		{CountQuery{Tool: "restart", Target: "b", Group: "web", IdempotencyKey: "k/b", IdempotencyWindow: time.Hour, Now: t0}, 1, true},
		{CountQuery{Tool: "restart", Target: "b", Group: "web", IdempotencyKey: "k/b", IdempotencyWindow: 29 * time.Minute, Now: t0}, 1, false},
	} {
		c, err := s.CountActions(tc.q)
		if err != nil {
			t.Fatal(err)
		}
		if c.TargetsAffected != tc.targets || c.Repeat != tc.repeat {
			t.Errorf("%+v: %d targets, repeat %v; want %d, %v", tc.q, c.TargetsAffected, c.Repeat, tc.targets, tc.repeat)
		}
	}
}

// TestIndexByIncidentMigration: a file written before the indexes by
// incident (schema 1) gets them at open, and one incident's records read
// through them.
func TestIndexByIncidentMigration(t *testing.T) {
	p := filepath.Join(t.TempDir(), "m.db")
	s := open(t, p)
	for i := range 6 {
		if err := commitBegin(s, &Action{Incident: uint64(i%3 + 1), Tool: "x", StartedAt: t0}, 0); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Audit(AuditEntry{Time: t0, Incident: uint64(i%3 + 1), Kind: "decision", Actor: "medic"}); err != nil {
			t.Fatal(err)
		}
	}
	// Back to schema 1: no indexes.
	s.db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketJournalByIncident, bucketAuditByIncident} {
			tx.DeleteBucket(b)
		}
		return tx.Bucket(bucketMeta).Put(keySchemaVersion, u64(1))
	})
	s.Close()
	s = open(t, p)
	acts, err := s.Actions(2)
	if err != nil || len(acts) != 2 || acts[0].Incident != 2 || acts[1].Incident != 2 {
		t.Fatalf("%+v %v", acts, err)
	}
	n := 0
	s.AuditEntries(AuditFilter{Incident: 3}, func(e AuditEntry) error {
		if e.Incident == 3 {
			n++
		}
		return nil
	})
	if n != 2 {
		t.Fatalf("%d audit entries of incident 3, want 2", n)
	}
}

// TestPruneTakesApprovals: pruning a closed incident removes its approval,
// so that the approvals the remediator looks through stay few.
func TestPruneTakesApprovals(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "m.db"))
	closed := t0.Add(-48 * time.Hour)
	err := s.db.Update(func(tx *bolt.Tx) error {
		return putJSON(tx, bucketIncidents, u64(1), &Incident{ID: 1, Key: "k", State: StateClosed, OpenedAt: closed, ClosedAt: &closed})
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := commitApproval(s, Approval{Incident: 1, Tool: "x", CreatedAt: closed, ExpiresAt: closed.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Prune(t0.Add(-24 * time.Hour)); err != nil || n != 1 {
		t.Fatalf("pruned %d, %v", n, err)
	}
	if _, err := s.Approval(1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("the approval outlived its incident: %v", err)
	}
}

func commitBegin(s *Store, a *Action, window time.Duration) error {
	return s.Commit(&Change{Incident: a.Incident, Begin: a, Window: window})
}

func commitFinish(s *Store, id uint64, st ActionState, result json.RawMessage, at time.Time) error {
	return s.Commit(&Change{Finish: &Finished{Action: id, State: st, Result: result, At: at}})
}

func commitApproval(s *Store, a Approval) error { return s.Commit(&Change{Ask: &a}) }

// TestRecentIndex: the counts read the index of recent actions, which
// drops what is past its span as actions are added, and which a file
// written before it (schema 3) gets at open.
func TestRecentIndex(t *testing.T) {
	p := filepath.Join(t.TempDir(), "m.db")
	s := open(t, p)
	now := time.Now()
	for _, at := range []time.Time{now.Add(-3 * time.Hour), now.Add(-30 * time.Minute), now.Add(-time.Minute)} {
		if err := commitBegin(s, &Action{Incident: 1, Tool: "x", Target: "t", StartedAt: at}, 0); err != nil {
			t.Fatal(err)
		}
	}
	indexed := func() int {
		n := 0
		s.db.View(func(tx *bolt.Tx) error { n = tx.Bucket(bucketRecent).Stats().KeyN; return nil })
		return n
	}
	if n := indexed(); n != 2 {
		t.Fatalf("%d actions indexed, want the 2 within %s", n, recentSpan)
	}
	want, err := s.CountActions(CountQuery{Tool: "x", Target: "t", Now: now})
	if err != nil || want.TargetHour != 2 || want.Fleet10m != 1 {
		t.Fatalf("counts %+v %v", want, err)
	}
	// Back to schema 3: no index.
	s.db.Update(func(tx *bolt.Tx) error {
		tx.DeleteBucket(bucketRecent)
		return tx.Bucket(bucketMeta).Put(keySchemaVersion, u64(3))
	})
	s.Close()
	s = open(t, p)
	if got, err := s.CountActions(CountQuery{Tool: "x", Target: "t", Now: now}); err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("counts after the migration %+v %v, want %+v", got, err, want)
	}
}

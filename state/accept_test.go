package state

import (
	"errors"
	"path/filepath"
	"testing"
	"time"
)

// queueJob is an apply function with a visible effect: it queues a
// decision job for the incident.
func queueJob(incident uint64) func(*Tx) error {
	return func(tx *Tx) error { return tx.QueueDecision(DecisionJob{Incident: incident}) }
}

func jobsOf(t *testing.T, s *Store) []uint64 {
	t.Helper()
	jobs, err := s.DecisionJobs(100)
	if err != nil {
		t.Fatal(err)
	}
	var out []uint64
	for _, j := range jobs {
		out = append(out, j.Incident)
	}
	return out
}

// TestAcceptAppliesOnlyWhenNothingWaits: a notification is applied in the
// commit that stores it while the inbox is empty; once one waits there,
// the next is queued behind it, so that none overtakes another. A failing
// apply, and one past the budget, queue the notification instead.
func TestAcceptAppliesOnlyWhenNothingWaits(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "medic.db"))
	now := time.Now()
	accept := func(body string, weight int, apply func(*Tx) error) bool {
		t.Helper()
		applied, err := s.Accept(now, []byte(body), weight, apply)
		if err != nil {
			t.Fatal(err)
		}
		return applied
	}
	if !accept("a", 1, queueJob(1)) {
		t.Fatal("the first notification was queued, with the inbox empty")
	}
	if accept("b", 1, func(*Tx) error { return errors.New("cannot apply") }) {
		t.Fatal("a failing apply was reported applied")
	}
	if accept("c", 1, queueJob(3)) {
		t.Fatal("a notification overtook the one queued before it")
	}
	if got := jobsOf(t, s); len(got) != 1 || got[0] != 1 {
		t.Fatalf("jobs %v, want only the first notification's", got)
	}
	if d := s.InboxDepth(); d != 2 {
		t.Fatalf("inbox depth %d, want 2", d)
	}
	if _, err := process(t, s, 10, func(*Tx, InboxEntry) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if accept("d", ApplyBudget+1, queueJob(4)) {
		t.Fatal("a notification past the budget was applied in the intake's commit")
	}
}

// TestAcceptAppliesOnceWhenTheGroupIsRetried: a change that fails in the
// same commit rolls the group back, and the committer commits it again
// without that change: the notification applied in the failed attempt is
// applied again from scratch, and its effect is written once.
func TestAcceptAppliesOnceWhenTheGroupIsRetried(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "medic.db"))
	inc := openIncidents(t, s, "k")[0].ID
	runs := 0
	note := &commitReq{val: inboxValue(time.Now(), []byte("n")), weight: 1, apply: func(tx *Tx) error {
		runs++
		return tx.QueueDecision(DecisionJob{Incident: inc})
	}}
	missing := &commitReq{changes: []*Change{{Incident: inc + 1000, Events: []Event{{Time: time.Now(), Kind: "x", Message: "no such incident"}}}}}
	if bad, err := s.commitGroup([]*commitReq{note, missing}); bad != 1 || err == nil {
		t.Fatalf("the group with a failing change: bad %d, err %v", bad, err)
	}
	if bad, err := s.commitGroup([]*commitReq{note}); bad != -1 || err != nil || !note.applied {
		t.Fatalf("the group again: bad %d, err %v, applied %v", bad, err, note.applied)
	}
	// The incident's own job, and the notification's once.
	if got := jobsOf(t, s); runs != 2 || len(got) != 2 {
		t.Fatalf("apply ran %d times and left %d jobs, want 2 and 2", runs, len(got))
	}
}

package state

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// openIncidents opens one incident per key, each with one alert and its
// fingerprint record, and queues a decision job for each.
func openIncidents(t *testing.T, s *Store, keys ...string) []*Incident {
	t.Helper()
	s.Accept(time.Now(), []byte("x"), 0, nil)
	var out []*Incident
	if _, err := process(t, s, 1, func(tx *Tx, e InboxEntry) error {
		for _, k := range keys {
			fp := k + "-fp"
			inc := &Incident{Key: k, State: StateOpen, Alerts: []Alert{{Fingerprint: fp, Status: "firing", Labels: map[string]string{"alertname": k}}}}
			if err := tx.PutIncident(inc); err != nil {
				return err
			}
			if err := tx.PutFingerprint(fp, Fingerprint{IncidentID: inc.ID}); err != nil {
				return err
			}
			if err := tx.QueueDecision(DecisionJob{Incident: inc.ID, Fingerprint: fp}); err != nil {
				return err
			}
			out = append(out, inc)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestRekeyFoldsIntoTheTargetsIncident(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "m.db"))
	incs := openIncidents(t, s, "alert:a", "alert:b")
	now := time.Now()
	jobs, _ := s.DecisionJobs(10)
	// The first takes the target's key; the second folds into it.
	if into, err := s.Rekey(incs[0].ID, "target:x", jobs[0].Seq, now); err != nil || into != incs[0].ID {
		t.Fatalf("rekey: %d %v", into, err)
	}
	into, err := s.Rekey(incs[1].ID, "target:x", jobs[1].Seq, now)
	if err != nil || into != incs[0].ID {
		t.Fatalf("fold: %d %v", into, err)
	}
	got, _ := s.Incident(incs[0].ID)
	if got.Key != "target:x" || len(got.Alerts) != 2 || s.OpenIncidents() != 1 {
		t.Fatalf("holder %+v, %d open", got, s.OpenIncidents())
	}
	if _, err := s.Incident(incs[1].ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("the folded incident is still there: %v", err)
	}
	if f, _ := s.FingerprintRecord("alert:b-fp"); f.IncidentID != incs[0].ID {
		t.Fatalf("the folded alert points at %d", f.IncidentID)
	}
	if left, _ := s.DecisionJobs(10); len(left) != 1 || left[0].Incident != incs[0].ID {
		t.Fatalf("jobs left %+v, want the holder's only", left)
	}
	if n, err := s.VerifyAudit(nil, nil); err != nil || n == 0 {
		t.Fatalf("audit %d %v", n, err)
	}
}

func TestCommitIsAllOrNothing(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "m.db"))
	inc := openIncidents(t, s, "k")[0]
	now := time.Now()
	first := &Action{Incident: inc.ID, Tool: "t", IdempotencyKey: "once", StartedAt: now}
	c := &Change{Incident: inc.ID, Begin: first, Window: time.Hour, Phase: &Remediation{Phase: PhaseExecuting, Step: "s"},
		Events: []Event{{Time: now, Kind: "x"}}, Audit: []AuditEntry{{Time: now, Incident: inc.ID, Kind: "policy"}}}
	if err := s.Commit(c); err != nil {
		t.Fatal(err)
	}
	got, _ := s.Incident(inc.ID)
	if got.Remediation.Phase != PhaseExecuting || got.Remediation.Action != first.ID || !got.Acted {
		t.Fatalf("after the intent: %+v", got.Remediation)
	}
	// A repeat of the key fails the whole transition: no event, no
	// audit entry, no phase.
	writes := s.WriteTransactions()
	again := &Change{Incident: inc.ID, Begin: &Action{Incident: inc.ID, Tool: "t", IdempotencyKey: "once", StartedAt: now},
		Window: time.Hour, Phase: &Remediation{Phase: PhaseVerifying}, Events: []Event{{Time: now, Kind: "y"}},
		Audit: []AuditEntry{{Time: now, Incident: inc.ID, Kind: "policy"}}}
	if err := s.Commit(again); !errors.Is(err, ErrIdempotentRepeat) {
		t.Fatalf("repeat: %v", err)
	}
	after, _ := s.Incident(inc.ID)
	if after.Remediation.Phase != PhaseExecuting || len(after.Timeline) != len(got.Timeline) || s.WriteTransactions() != writes {
		t.Fatalf("a failed commit wrote: %+v", after.Remediation)
	}
	n := 0
	s.AuditEntries(AuditFilter{Incident: inc.ID}, func(AuditEntry) error { n++; return nil })
	if n != 1 {
		t.Fatalf("%d audit entries, want 1", n)
	}
	// Finishing, verifying and settling are one commit.
	v := 0.0
	settle := &Change{Incident: inc.ID, Finish: &Finished{Action: first.ID, State: ActionSucceeded, At: now},
		Verified:   &Verified{Action: first.ID, Verification: Verification{Result: "recovered", After: &v, At: now}},
		Remediated: &Fix{Incident: inc.ID, Runbook: "r", At: now}, Target: "x", Phase: &Remediation{Phase: PhaseSettled}}
	if err := s.Commit(settle); err != nil {
		t.Fatal(err)
	}
	if s.WriteTransactions() != writes+1 {
		t.Fatalf("%d commits", s.WriteTransactions()-writes)
	}
	done, _ := s.Incident(inc.ID)
	acts, _ := s.Actions(inc.ID)
	if done.Outcome != OutcomeRemediated || acts[0].State != ActionSucceeded || acts[0].Verification == nil {
		t.Fatalf("settled: %q %+v", done.Outcome, acts[0])
	}
	if interrupted, _ := s.MarkInterrupted(now); len(interrupted) != 0 {
		t.Fatalf("a finished action found running: %+v", interrupted)
	}
}

// TestPhaseMigration: a file written before phases (schema 2) with an
// incident medic acted on whose decision is still queued, and an action
// still running, gets the running index and the phase executing at open:
// a restart escalates it instead of running its plan again.
func TestPhaseMigration(t *testing.T) {
	p := filepath.Join(t.TempDir(), "m.db")
	s := open(t, p)
	incs := openIncidents(t, s, "acted", "untouched")
	if err := commitBegin(s, &Action{Incident: incs[0].ID, Tool: "x", StartedAt: t0}, 0); err != nil {
		t.Fatal(err)
	}
	// Back to schema 2: no running index, no phases.
	s.db.Update(func(tx *bolt.Tx) error {
		tx.DeleteBucket(bucketRunning)
		for _, inc := range incs {
			got, _ := getIncident(tx, u64(inc.ID))
			got.Remediation = Remediation{}
			putJSON(tx, bucketIncidents, u64(inc.ID), got)
		}
		return tx.Bucket(bucketMeta).Put(keySchemaVersion, u64(2))
	})
	s.Close()
	s = open(t, p)
	acted, _ := s.Incident(incs[0].ID)
	untouched, _ := s.Incident(incs[1].ID)
	if acted.Remediation.Phase != PhaseExecuting || untouched.Remediation.Phase != "" {
		t.Fatalf("phases after the migration: %q and %q", acted.Remediation.Phase, untouched.Remediation.Phase)
	}
	if running, err := s.MarkInterrupted(t0); err != nil || len(running) != 1 {
		t.Fatalf("running after the migration: %+v %v", running, err)
	}
}

// TestCommitsShareTransactions: changes committed at once by many
// goroutines share the group committer's transactions, and one that fails
// (an idempotent repeat) fails alone.
func TestCommitsShareTransactions(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "m.db"))
	keys := make([]string, 64)
	for i := range keys {
		keys[i] = fmt.Sprintf("k%d", i)
	}
	incs := openIncidents(t, s, keys...)
	if err := s.Commit(&Change{Incident: incs[0].ID, Begin: &Action{Incident: incs[0].ID, Tool: "x", IdempotencyKey: "once", StartedAt: t0}, Window: time.Hour}); err != nil {
		t.Fatal(err)
	}
	writes := s.WriteTransactions()
	errs := make([]error, len(incs))
	var wg sync.WaitGroup
	for i, inc := range incs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &Change{Incident: inc.ID, Events: []Event{{Time: t0, Kind: "shared"}}, Audit: []AuditEntry{{Time: t0, Incident: inc.ID, Kind: "x"}}}
			if i == 7 {
				c.Begin, c.Window = &Action{Incident: inc.ID, Tool: "x", IdempotencyKey: "once", StartedAt: t0}, time.Hour
			}
			errs[i] = s.Commit(c)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if (i == 7) != errors.Is(err, ErrIdempotentRepeat) {
			t.Errorf("change %d: %v", i, err)
		}
		inc, _ := s.Incident(incs[i].ID)
		if shared := len(inc.Timeline) > 0 && inc.Timeline[len(inc.Timeline)-1].Kind == "shared"; shared != (i != 7) {
			t.Errorf("incident %d: timeline %+v", i, inc.Timeline)
		}
	}
	t.Logf("%d changes in %d write transactions", len(incs), s.WriteTransactions()-writes)
	if n, err := s.VerifyAudit(nil, nil); err != nil || n == 0 {
		t.Fatalf("audit %d %v", n, err)
	}
}

package engine

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"medic/actions"
	"medic/rules"
	"medic/state"
)

// TestRemediatorInProcess runs the worker and the remediator together under
// the race detector, on a fake clock: ten alerts for two targets, a tool
// that is /bin/true.
func TestRemediatorInProcess(t *testing.T) {
	synctest.Test(t, testRemediatorInProcess)
}

func testRemediatorInProcess(t *testing.T) {
	env := newTestEnv(t, nil)
	d := testDecider(t, env, `
tool "noop" {
  description = "Does nothing, successfully."
  risk        = "low"
  param "name" { pattern = "[a-z]+" }
  exec { command = ["/bin/true", "${param.name}"] }
}
runbook "noop" {
  description = "Runs noop."
  matchers = ["alertname=\"Noop\""]
  target = "${labels.name}"
  step "noop" {
    tool = "noop"
    args = { name = "${labels.name}" }
  }
}
`)
	rem := &Remediator{Logger: env.eng.logger, Store: env.store, Decider: func() *Decider { return d },
		Executors: Executors{Exec: &actions.Exec{}}, Now: func() time.Time { return env.now }}
	if err := rem.Recover(); err != nil {
		t.Fatal(err)
	}
	env.eng.SetRemediator(rem)
	ctx, cancel := context.WithCancel(context.Background())
	workDone, remDone := make(chan struct{}), make(chan struct{})
	go func() { env.eng.Run(ctx, RunOptions{DrainTimeout: time.Second}); close(workDone) }()
	go func() { rem.Run(ctx, 4); close(remDone) }()
	var alerts []testAlert
	for i := 0; i < 10; i++ {
		a := alert("firing", "Noop", fp(100+i))
		a.Labels["name"] = []string{"alpha", "beta"}[i%2]
		alerts = append(alerts, a)
	}
	env.mustPost(t, alerts...)
	// Every goroutine of the worker and the remediator is idle: all is
	// decided.
	synctest.Wait()
	if jobs, _ := env.store.DecisionJobs(100); len(jobs) != 0 {
		t.Fatalf("%d jobs left", len(jobs))
	}
	cancel()
	<-workDone
	<-remDone
	acts, _ := env.store.Actions(0)
	ran := map[string]int{}
	for _, a := range acts {
		if a.State != state.ActionSucceeded {
			t.Errorf("action %+v", a)
		}
		ran[a.Target]++
	}
	// Ten alerts on two targets: two incidents, one action each.
	if ran["alpha"] != 1 || ran["beta"] != 1 {
		t.Fatalf("actions per target %v", ran)
	}
	incs, _ := env.store.Incidents(state.Filter{})
	for _, inc := range incs {
		if len(inc.Alerts) != 5 || inc.Key != TargetKey(inc.Alerts[0].Labels["name"]) {
			t.Errorf("incident %d: key %s, %d alerts", inc.ID, inc.Key, len(inc.Alerts))
		}
	}
	if n, err := env.store.VerifyAudit(nil, nil); err != nil || n == 0 {
		t.Fatalf("audit: %d %v", n, err)
	}
}

// TestNoReRunAfterRestartBetweenSteps: a decision job left queued for an
// incident that already has finished actions (medic restarted between two
// steps) escalates instead of running the plan again.
func TestNoReRunAfterRestartBetweenSteps(t *testing.T) {
	env := newTestEnv(t, nil)
	d := testDecider(t, env, `
tool "noop" {
  description = "Does nothing, successfully."
  risk        = "low"
  param "name" { pattern = "[a-z]+" }
  exec { command = ["/bin/true", "${param.name}"] }
}
runbook "noop" {
  description = "Runs noop."
  matchers = ["alertname=\"Noop\""]
  target = "${labels.name}"
  step "noop" {
    tool = "noop"
    args = { name = "${labels.name}" }
  }
}
`)
	rem := &Remediator{Logger: env.eng.logger, Store: env.store, Decider: func() *Decider { return d },
		Executors: Executors{Exec: &actions.Exec{}}, Now: func() time.Time { return env.now }}
	env.eng.SetRemediator(rem)
	a := alert("firing", "Noop", fp(1))
	a.Labels["name"] = "alpha"
	env.mustPost(t, a)
	env.drain(t)
	jobs, _ := env.store.DecisionJobs(10)
	if len(jobs) != 1 {
		t.Fatalf("%d jobs", len(jobs))
	}
	// The first step finished before the restart.
	done := &state.Action{Incident: jobs[0].Incident, Tool: "noop", Target: "alpha", StartedAt: env.now}
	executing := &state.Remediation{Phase: state.PhaseExecuting, Runbook: "noop", Target: "alpha", Step: "one", Attempt: 1}
	if err := env.store.Commit(&state.Change{Incident: done.Incident, Begin: done, Phase: executing}); err != nil {
		t.Fatal(err)
	}
	if err := env.store.Commit(&state.Change{Incident: done.Incident, Finish: &state.Finished{Action: done.ID, State: state.ActionSucceeded, At: env.now}}); err != nil {
		t.Fatal(err)
	}
	rem.handle(context.Background(), jobs[0])
	acts, _ := env.store.Actions(jobs[0].Incident)
	inc, _ := env.store.Incident(jobs[0].Incident)
	if len(acts) != 1 || inc.Timeline[len(inc.Timeline)-1].Kind != "escalated" {
		t.Fatalf("actions %d, last event %+v", len(acts), inc.Timeline[len(inc.Timeline)-1])
	}
	if left, _ := env.store.DecisionJobs(10); len(left) != 0 {
		t.Fatal("the job stayed queued")
	}
}

// TestVerificationDeadline: a verification that would end past the
// incident's deadline escalates at the deadline, with a real Prometheus
// answering the query.
func TestVerificationDeadline(t *testing.T) {
	env, d := verifyLab(t, `
runbook "slow" {
  description = "Verifies long after the deadline."
  matchers = ["alertname=\"Slow\""]
  target = "${labels.name}"
  step "noop" {
    tool = "noop"
    args = { name = "${labels.name}" }
  }
  verify {
    promql = "vector(1)"
    expect = "after == 0"
    wait   = "30s"
  }
}
`)
	cfg := *d.Config
	cfg.Remediation.Deadline = time.Second
	d.Config = &cfg
	rem := newRemediator(env, d)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	workDone, remDone := make(chan struct{}), make(chan struct{})
	go func() { env.eng.Run(ctx, RunOptions{DrainTimeout: time.Second}); close(workDone) }()
	go func() { rem.Run(ctx, 1); close(remDone) }()
	a := alert("firing", "Slow", fp(7))
	a.Labels["name"] = "slow"
	begun := time.Now()
	env.mustPost(t, a)
	var inc *state.Incident
	for inc == nil || inc.Outcome == "" {
		if time.Since(begun) > 10*time.Second {
			t.Fatalf("no outcome: %+v", inc)
		}
		time.Sleep(50 * time.Millisecond)
		incs, _ := env.store.Incidents(state.Filter{})
		if len(incs) == 1 {
			inc = incs[0]
		}
	}
	last := inc.Timeline[len(inc.Timeline)-1]
	if inc.Outcome != state.OutcomeEscalated || !strings.Contains(last.Message, "deadline of 1s passed") || time.Since(begun) > 5*time.Second {
		t.Fatalf("outcome %q after %s: %s", inc.Outcome, time.Since(begun), last.Message)
	}
	cancel()
	<-workDone
	<-remDone
}

// TestSimilarIncidents: the LLM's context gets closed incidents whose
// labels overlap by at least half, most similar first, with their outcome.
func TestSimilarIncidents(t *testing.T) {
	// One incident per alert, keyed by every label.
	env := newTestEnv(t, func(c *Config) { c.Intake.GroupBy = []string{"..."} })
	var alerts []testAlert
	for i, ns := range []string{"prod", "prod", "staging"} {
		a := alert("firing", "KubePodOOM", fp(300+i))
		delete(a.Labels, "instance")
		a.Labels["namespace"] = ns
		a.Labels["pod"] = fmt.Sprintf("api-%d", i)
		alerts = append(alerts, a)
	}
	other := alert("firing", "DiskFull", fp(310))
	delete(other.Labels, "instance")
	env.mustPost(t, append(alerts, other)...)
	env.drain(t)
	for i := range alerts {
		alerts[i].Status = "resolved"
	}
	other.Status = "resolved"
	env.mustPost(t, append(alerts, other)...)
	env.drain(t)
	rem := &Remediator{Logger: env.eng.logger, Store: env.store}
	got := rem.similar(map[string]string{"alertname": "KubePodOOM", "severity": "critical", "namespace": "prod", "pod": "api-9"})
	// The two prod pods share alertname, severity and namespace: 3 of 5
	// distinct pairs, 0.6. The staging pod and DiskFull share 2 of 6: left
	// out.
	if len(got) != 2 {
		t.Fatalf("similar: %+v", got)
	}
	if got[0].Similarity != 0.6 || got[0].Outcome != state.OutcomeSelfResolved || got[0].Alertname != "KubePodOOM" {
		t.Fatalf("most similar: %+v", got[0])
	}
	for _, p := range got {
		if p.Similarity < 0.5 {
			t.Fatalf("below 0.5: %+v", p)
		}
	}
}

// TestVerificationWaitFreesItsSlot: with parallel = 1, a second incident is
// acted on while the first waits for its verification.
func TestVerificationWaitFreesItsSlot(t *testing.T) {
	env, d := verifyLab(t, `
runbook "waits" {
  description = "Verifies after 3 s."
  matchers = ["alertname=\"Waits\""]
  target = "${labels.name}"
  step "noop" {
    tool = "noop"
    args = { name = "${labels.name}" }
  }
  verify {
    promql = "vector(0)"
    expect = "after == 0"
    wait   = "3s"
  }
}
`)
	rem := newRemediator(env, d)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	workDone, remDone := make(chan struct{}), make(chan struct{})
	go func() { env.eng.Run(ctx, RunOptions{DrainTimeout: time.Second}); close(workDone) }()
	go func() { rem.Run(ctx, 1); close(remDone) }()
	a, b := alert("firing", "Waits", fp(11)), alert("firing", "Waits", fp(12))
	a.Labels["name"], b.Labels["name"] = "alpha", "beta"
	env.mustPost(t, a, b)
	deadline := time.Now().Add(20 * time.Second)
	for {
		incs, _ := env.store.Incidents(state.Filter{})
		done := 0
		for _, inc := range incs {
			if inc.Outcome == state.OutcomeRemediated {
				done++
			}
		}
		if done == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of 2 remediated", done)
		}
		time.Sleep(50 * time.Millisecond)
	}
	acts, _ := env.store.Actions(0)
	if len(acts) != 2 {
		t.Fatalf("%d actions", len(acts))
	}
	gap := acts[1].StartedAt.Sub(acts[0].StartedAt)
	if gap < 0 {
		gap = -gap
	}
	if gap > 2*time.Second {
		t.Fatalf("the second step started %s after the first: it waited for the first verification", gap)
	}
	cancel()
	<-workDone
	<-remDone
}

// TestShutdownDuringVerification: a shutdown while a step's verification
// waits leaves the incident in phase verifying with its job queued; the
// next start resumes the verification from the phase, settles the incident
// on its result and does not run the step again.
func TestShutdownDuringVerification(t *testing.T) {
	env, d := verifyLab(t, `
runbook "waits" {
  description = "Verifies after 30 s."
  matchers = ["alertname=\"Waits\""]
  target = "${labels.name}"
  step "noop" {
    tool = "noop"
    args = { name = "${labels.name}" }
  }
  verify {
    promql = "vector(0)"
    expect = "after == 0"
    wait   = "2s"
  }
}
`)
	rem := newRemediator(env, d)
	ctx, cancel := context.WithCancel(context.Background())
	remDone := make(chan struct{})
	go func() { rem.Run(ctx, 2); close(remDone) }()
	a := alert("firing", "Waits", fp(21))
	a.Labels["name"] = "alpha"
	env.mustPost(t, a)
	env.drain(t)
	rem.Wake()
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor("the step to run", func() bool {
		acts, _ := env.store.Actions(0)
		return len(acts) == 1 && acts[0].State == state.ActionSucceeded
	})
	cancel() // shutdown during the wait
	<-remDone
	if jobs, _ := env.store.DecisionJobs(10); len(jobs) != 1 {
		t.Fatalf("%d decision jobs after the shutdown, want the one still queued", len(jobs))
	}
	rem = newRemediator(env, d)
	if err := rem.Recover(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	remDone = make(chan struct{})
	go func() { rem.Run(ctx, 2); close(remDone) }()
	waitFor("the resumed verification", func() bool {
		incs, _ := env.store.Incidents(state.Filter{})
		return len(incs) == 1 && incs[0].Outcome == state.OutcomeRemediated
	})
	incs, _ := env.store.Incidents(state.Filter{})
	if !hasEvent(incs[0], "resumed") || incs[0].Remediation.Phase != state.PhaseSettled {
		t.Fatalf("timeline %+v, phase %s", incs[0].Timeline, incs[0].Remediation.Phase)
	}
	if acts, _ := env.store.Actions(0); len(acts) != 1 {
		t.Fatalf("%d actions: the step ran again", len(acts))
	}
	cancel()
	<-remDone
}

// verifyLab is a test environment at the real time, and a decider for
// runbooks (which may use the tool noop, a /bin/true) whose verify queries
// go to a real Prometheus.
func verifyLab(t *testing.T, runbooks string) (*testEnv, *Decider) {
	t.Helper()
	prom, _ := startPrometheus(t)
	env := newTestEnv(t, nil)
	env.now = time.Now()
	d := testDecider(t, env, `
tool "noop" {
  description = "Does nothing, successfully."
  risk        = "low"
  param "name" { pattern = "[a-z]+" }
  exec { command = ["/bin/true", "${param.name}"] }
}
`+runbooks)
	d.Sources.Prom = prom
	return env, d
}

// testDecider is the decision path of the runbooks in src, with the
// default policy.
func testDecider(t testing.TB, env *testEnv, src string) *Decider {
	t.Helper()
	set, diags := rules.Parse("r.hcl", []byte(src))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	gate, err := actions.NewGate(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	return &Decider{Config: env.eng.Config(), Rules: set, Gate: gate}
}

// newRemediator wires a remediator with d to env's engine.
func newRemediator(env *testEnv, d *Decider) *Remediator {
	rem := &Remediator{Logger: env.eng.logger, Store: env.store, Decider: func() *Decider { return d }, Executors: Executors{Exec: &actions.Exec{}}}
	env.eng.SetRemediator(rem)
	return rem
}

func hasEvent(inc *state.Incident, kind string) bool {
	for _, e := range inc.Timeline {
		if e.Kind == kind {
			return true
		}
	}
	return false
}

// TestHeldDecisionIsTakenAtMinFiring: an alert younger than its runbook's
// min_firing is held, with the phase and the reason recorded, and decided
// when min_firing has passed; on a fake clock (testing/synctest), so the
// ten minutes take no time.
func TestHeldDecisionIsTakenAtMinFiring(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		env := newTestEnv(t, nil)
		env.now = time.Now()
		d := testDecider(t, env, `
tool "noop" {
  description = "Does nothing, successfully."
  risk        = "low"
  exec { command = ["/bin/true"] }
}
runbook "patient" {
  description = "Acts on an alert that fired for ten minutes."
  matchers = ["alertname=\"Patient\""]
  target     = "alpha"
  min_firing = "10m"
  step "noop" { tool = "noop" }
}
`)
		rem := newRemediator(env, d)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { rem.Run(ctx, 2); close(done) }()
		a := alert("firing", "Patient", fp(1))
		a.StartsAt = time.Now().UTC().Format(time.RFC3339)
		env.mustPost(t, a)
		env.drain(t)
		rem.Wake()
		synctest.Wait()
		incs, _ := env.store.Incidents(state.Filter{})
		if len(incs) != 1 || incs[0].Remediation.Phase != state.PhaseHeld || !hasEvent(incs[0], "held") {
			t.Fatalf("before min_firing: %+v", incs)
		}
		if acts, _ := env.store.Actions(incs[0].ID); len(acts) != 0 {
			t.Fatalf("%d actions before min_firing", len(acts))
		}
		time.Sleep(10 * time.Minute)
		synctest.Wait()
		inc, _ := env.store.Incident(incs[0].ID)
		acts, _ := env.store.Actions(inc.ID)
		if len(acts) != 1 || acts[0].State != state.ActionSucceeded || inc.Remediation.Phase != state.PhaseAwaitingResolution {
			t.Fatalf("after min_firing: %d actions, phase %s", len(acts), inc.Remediation.Phase)
		}
		cancel()
		<-done
	})
}

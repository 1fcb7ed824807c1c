package main

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"medic/state"
)

// A crash in each phase of a remediation, then a restart: no step runs
// twice, no incident is left without an outcome, and the timeline says what
// happened. Each phase has its runbook below, matched by the alert name;
// each test has its own Prometheus and its own medic, killed with SIGKILL.

// crashRunbooks are the phases' runbooks: each matches its alertname,
// runs its step (a "record" by default) and verifies that vector(0) is 0
// after a second, unless it says otherwise.
var crashRunbooks = crashTools +
	crashRunbook("Deciding", "Its query hangs while Prometheus is stopped.", "query \"up\" { promql = \"vector(1)\" }\n  when = \"len(query.up) == 1\"", "", "") +
	crashRunbook("Held", "Held by min_firing.", `min_firing = "8s"`, "", "") +
	crashRunbook("Approval", "Waits for a human.", "", `step "risky" { tool = "risky" }`, "") +
	crashRunbook("Executing", "Its step takes half a minute.", "", recordStep("30", ""), "") +
	crashRunbook("Verifying", "Its verification waits.", "", "", `wait = "8s"`) +
	crashRunbook("RollingBack", "Its step makes it worse; the rollback takes half a minute.", "",
		recordStep("0", "rollback {\n      tool = \"record\"\n      args = { sleep = \"30\" }\n    }"),
		"promql = \"vector(1)\"\n    expect = \"after == 0\"\n    worse  = \"after >= before\"\n    wait   = \"1s\"") +
	crashRunbook("Settled", "Recovers at once.", "", "", "")

const crashTools = `
tool "record" {
  description = "Records that it ran, then takes its time."
  risk        = "low"
  timeout     = "2m"
  param "sleep" {
    type = "int"
    min  = 0
    max  = 60
  }
  exec { command = ["SCRIPT", "COUNT", "${param.sleep}"] }
}
tool "risky" {
  description = "High risk: needs a human."
  risk        = "high"
  exec { command = ["SCRIPT", "COUNT", "0"] }
}
`

// crashRunbook is a runbook for alertname: extra lines, a step (empty:
// record without sleeping) and a verify body (empty: vector(0) is 0 after a
// second; one line: that line replaces the wait).
func crashRunbook(alertname, description, extra, step, verify string) string {
	if step == "" {
		step = recordStep("0", "")
	}
	switch {
	case verify == "":
		verify = `wait = "1s"`
		fallthrough
	case !strings.Contains(verify, "\n"):
		verify = "promql = \"vector(0)\"\n    expect = \"after == 0\"\n    " + verify
	}
	return fmt.Sprintf("runbook %q {\n  description = %q\n  match { alertname = %q }\n  target = \"${labels.name}\"\n  %s\n  %s\n  verify {\n    %s\n  }\n}\n",
		strings.ToLower(alertname), description, alertname, extra, step, verify)
}

// recordStep runs the record tool, sleeping sleep seconds, with extra lines.
func recordStep(sleep, extra string) string {
	return fmt.Sprintf("step \"record\" {\n    tool = \"record\"\n    args = { sleep = %q }\n    %s\n  }", sleep, extra)
}

// crashLab is a remediation lab wired to its own Prometheus.
func crashLab(t *testing.T) (*remediationLab, *proc) {
	t.Helper()
	promAddr, prom := startPrometheusProc(t)
	l := newLab(t, crashRunbooks, "1h")
	l.writeConfig(t, fmt.Sprintf("prometheus { url = %q }", "http://"+promAddr), labAuth, `approval_ttl = "1h"`)
	return l, prom
}

// kill SIGKILLs medic and the tool it may be running, as a crash of the
// machine would.
func (l *remediationLab) kill(t *testing.T, p *proc) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
	p.done <- nil
	for _, pid := range l.runs(t) {
		if n, err := strconv.Atoi(pid); err == nil {
			syscall.Kill(-n, syscall.SIGKILL)
			syscall.Kill(n, syscall.SIGKILL)
		}
	}
}

// phaseOf is the phase of the incident holding the alert, or "".
func (l *remediationLab) phaseOf(t *testing.T, fp string) state.Phase {
	for _, inc := range l.incidents(t) {
		if holds(inc, fp) {
			return inc.Remediation.Phase
		}
	}
	return ""
}

// outcome waits for the incident holding the alert to settle, and
// returns it.
func (l *remediationLab) outcome(t *testing.T, fp string) state.Incident {
	t.Helper()
	var found state.Incident
	eventually(t, 60*time.Second, fp+" to settle", func() bool {
		for _, inc := range l.incidents(t) {
			if holds(inc, fp) && inc.Outcome != "" && inc.Remediation.Phase == state.PhaseSettled {
				found = inc
				return true
			}
		}
		return false
	})
	return found
}

func TestCrashInEachPhase(t *testing.T) {
	t.Parallel()
	cases := []struct {
		phase state.Phase
		// alert names the phase's runbook.
		alert string
		// before runs before the alert is posted; crashed says when to kill.
		before  func(prom *proc)
		crashed func(t *testing.T, l *remediationLab, fp string) bool
		// after runs once medic is back, before the outcome.
		after func(t *testing.T, l *remediationLab, fp string, prom *proc)
		// outcome, runs and event are what the incident shows in the end.
		outcome, event string
		runs           int
		escalation     string
	}{{
		phase:  state.PhaseDeciding,
		alert:  "Deciding",
		before: func(prom *proc) { prom.cmd.Process.Signal(syscall.SIGSTOP) }, // the decision's query hangs
		crashed: func(t *testing.T, l *remediationLab, fp string) bool {
			if l.phaseOf(t, fp) != state.PhaseDeciding {
				return false
			}
			time.Sleep(500 * time.Millisecond) // the decision is under way, blocked on the query
			return true
		},
		after:   func(t *testing.T, l *remediationLab, fp string, prom *proc) { prom.cmd.Process.Signal(syscall.SIGCONT) },
		outcome: state.OutcomeRemediated, runs: 1, event: "recovered",
	}, {
		phase: state.PhaseHeld, alert: "Held",
		outcome: state.OutcomeRemediated, runs: 1, event: "held",
	}, {
		phase: state.PhaseAwaitingApproval, alert: "Approval",
		after: func(t *testing.T, l *remediationLab, fp string, prom *proc) {
			id := l.latest(t, fp, "approval_pending").ID
			if code, body := l.do(t, "POST", fmt.Sprintf("/api/v1/incidents/%d/approve", id), l.approver, nil); code != http.StatusOK {
				t.Fatalf("approve after the restart: %d %s", code, body)
			}
		},
		outcome: state.OutcomeRemediated, runs: 1, event: "approval_approved",
	}, {
		phase: state.PhaseExecuting, alert: "Executing",
		crashed: func(t *testing.T, l *remediationLab, fp string) bool {
			return len(l.runs(t)) == 1 && l.phaseOf(t, fp) == state.PhaseExecuting // the step runs
		},
		outcome: state.OutcomeEscalated, runs: 1, event: "escalated", escalation: "interrupted by a restart and is not re-run",
	}, {
		phase: state.PhaseVerifying, alert: "Verifying",
		outcome: state.OutcomeRemediated, runs: 1, event: "resumed",
	}, {
		phase: state.PhaseRollingBack, alert: "RollingBack",
		crashed: func(t *testing.T, l *remediationLab, fp string) bool {
			return len(l.runs(t)) == 2 && l.phaseOf(t, fp) == state.PhaseRollingBack // the rollback runs
		},
		outcome: state.OutcomeEscalated, runs: 2, event: "verified", escalation: "interrupted by a restart and is not re-run",
	}, {
		phase: state.PhaseSettled, alert: "Settled",
		crashed: func(t *testing.T, l *remediationLab, fp string) bool {
			for _, inc := range l.incidents(t) {
				if holds(inc, fp) && inc.Outcome != "" {
					return true
				}
			}
			return false
		},
		after: func(t *testing.T, l *remediationLab, fp string, prom *proc) {
			before := l.outcome(t, fp)
			time.Sleep(2 * time.Second) // a restart changes nothing
			if after := l.outcome(t, fp); len(after.Timeline) != len(before.Timeline) {
				t.Errorf("the restart changed the timeline: %s", timeline(after))
			}
		},
		outcome: state.OutcomeRemediated, runs: 1, event: "recovered",
	}}
	for i, tc := range cases {
		t.Run(string(tc.phase), func(t *testing.T) {
			t.Parallel()
			l, prom := crashLab(t)
			p := l.start(t)
			if tc.before != nil {
				tc.before(prom)
			}
			fp := fmt.Sprintf("00000000000009%02x", i)
			l.postAlert(t, "firing", fp, time.Now(), map[string]string{"alertname": tc.alert, "name": "shop"})
			crashed := tc.crashed
			if crashed == nil {
				crashed = func(t *testing.T, l *remediationLab, fp string) bool { return l.phaseOf(t, fp) == tc.phase }
			}
			eventually(t, 30*time.Second, "phase "+string(tc.phase), func() bool { return crashed(t, l, fp) })
			l.kill(t, p)
			l.start(t)
			if tc.after != nil {
				tc.after(t, l, fp, prom)
			}
			inc := l.outcome(t, fp)
			if inc.Outcome != tc.outcome {
				t.Errorf("outcome %q, want %q: %s", inc.Outcome, tc.outcome, timeline(inc))
			}
			if n := len(l.runs(t)); n != tc.runs {
				t.Errorf("the tool ran %d times, want %d: %s", n, tc.runs, timeline(inc))
			}
			if !hasEvent(inc, tc.event) {
				t.Errorf("no %s event: %s", tc.event, timeline(inc))
			}
			if msg := lastEvent(inc, "escalated"); !strings.Contains(msg, tc.escalation) {
				t.Errorf("escalation %q lacks %q", msg, tc.escalation)
			}
		})
	}
}

// TestOneStepRemediationCommits counts the fsynced write transactions of a
// one-step remediation that recovers, through the daemon's own counter:
// the intake's commit, the worker's, and three from decision to outcome:
// the intent with the decision's records, the result entering
// verification, the recovery.
func TestOneStepRemediationCommits(t *testing.T) {
	t.Parallel()
	l, _ := crashLab(t)
	l.start(t)
	writes, intake := l.metric(t, "medic_state_write_transactions_total"), l.metric(t, "medic_inbox_commits_total")
	l.postAlert(t, "firing", "0000000000000b01", time.Now(), map[string]string{"alertname": "Settled", "name": "shop"})
	inc := l.outcome(t, "0000000000000b01")
	if inc.Outcome != state.OutcomeRemediated {
		t.Fatalf("outcome %q: %s", inc.Outcome, timeline(inc))
	}
	writes, intake = l.metric(t, "medic_state_write_transactions_total")-writes, l.metric(t, "medic_inbox_commits_total")-intake
	decided := writes - intake - 1 // the worker's transaction opens the incident
	t.Logf("write transactions: %d in all, %d intake, 1 worker, %d from decision to outcome", writes, intake, decided)
	if decided > 3 {
		t.Fatalf("%d write transactions from decision to outcome, want 3", decided)
	}
}

// metric reads one sample of the lab medic's /metrics, by its name with
// its labels as the exposition prints them.
func (l *remediationLab) metric(t *testing.T, series string) int {
	t.Helper()
	for _, line := range strings.Split(get(t, "http://"+l.addr+"/metrics"), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return int(n)
		}
	}
	t.Fatalf("no %s in /metrics", series)
	return 0
}

package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"medic/state"
)

// One fault, one incident: the alerts of one broken thing fold into one
// incident, keyed by the target of the runbook that matches them, with one
// remediation and no brief.

// TestOneFaultOneIncident: one fault on a target fires two rules of
// different severity and a third rule, as node-mixin's filesystem rules do
// for one filling disk (NodeFilesystemSpaceFillingUp at warning and at
// critical, then NodeFilesystemAlmostOutOfSpace). Through real Prometheus,
// Alertmanager and medic processes they make one incident with all three
// alerts, one remediation, no brief, and the outcome remediated.
func TestOneFaultOneIncident(t *testing.T) {
	t.Parallel()
	l := startPipeline(t, pipeline{
		rules: `groups:
  - name: disk
    interval: 1s
    rules:
      - alert: LabDiskFillingUp
        expr: lab_errors{service="disk"} > 0
        for: 1s
        labels: { severity: warning }
      - alert: LabDiskFillingUp
        expr: lab_errors{service="disk"} > 1
        for: 1s
        labels: { severity: critical }
      - alert: LabDiskAlmostFull
        expr: lab_errors{service="disk"} > 2
        for: 1s
        labels: { severity: critical }
`,
		runbooks: diskRunbook,
		groupBy:  "['alertname', 'severity']",
		values:   map[string]string{"disk": "0"},
		scraped:  `count(lab_errors) == 1`,
	})
	l.set(t, "disk", "5")
	var inc state.Incident
	eventually(t, 90*time.Second, "the incident to close remediated", func() bool {
		incs := listIncidents(t, l.medicAddr, l.token, "all")
		if len(incs) == 0 {
			return false
		}
		inc = incs[0]
		return inc.State == state.StateClosed && inc.Outcome != ""
	})
	incs := listIncidents(t, l.medicAddr, l.token, "all")
	if len(incs) != 1 {
		t.Fatalf("%d incidents for one fault, want 1: %s", len(incs), describe(incs))
	}
	names, severities := map[string]bool{}, map[string]bool{}
	for _, a := range inc.Alerts {
		names[a.Labels["alertname"]], severities[a.Labels["severity"]] = true, true
	}
	if len(inc.Alerts) != 3 || len(names) != 2 || len(severities) != 2 {
		t.Fatalf("the incident holds %d alerts (%v, %v), want the three rules' alerts", len(inc.Alerts), names, severities)
	}
	if inc.Outcome != state.OutcomeRemediated || inc.Key != "target:lab/disk" || inc.Remediation.Phase != state.PhaseSettled {
		t.Fatalf("outcome %q, key %q, phase %q: %s", inc.Outcome, inc.Key, inc.Remediation.Phase, timeline(inc))
	}
	l.ranOnceWithoutBrief(t, "disk")
}

const diskRunbook = labTools + `
runbook "disk" {
  description = "A lab disk fills up: free it."
  matchers = ["alertname=~\"LabDisk.*\""]
  target     = "${labels.job}/${labels.service}"
  # The three rules fire together; holding the decision a moment lets the
  # later notifications join before medic acts.
  min_firing = "4s"
  step "free" {
    tool = "set_errors"
    args = { service = "${labels.service}", value = "0" }
  }
  verify {
    promql = "sum(lab_errors{service=\"${labels.service}\"})"
    expect = "after == 0"
    wait   = "3s"
  }
}
`

// TestPodsOfOneDeploymentOneIncident: fifty crash-looping pods of one
// Deployment fire fifty alerts. The runbook's target is the Deployment,
// found by a query, so each alert opens an incident of its own until its
// decision renders the target; then it folds into the Deployment's
// incident. One incident, one action, no brief.
func TestPodsOfOneDeploymentOneIncident(t *testing.T) {
	t.Parallel()
	var owners strings.Builder
	owners.WriteString("# TYPE kube_pod_owner gauge\n")
	for i := range 50 {
		fmt.Fprintf(&owners, "kube_pod_owner{namespace=\"shop\",pod=\"api-7d9f8-%05d\",owner_kind=\"ReplicaSet\",owner_name=\"api-7d9f8\"} 1\n", i)
	}
	owners.WriteString("# TYPE kube_replicaset_owner gauge\nkube_replicaset_owner{namespace=\"shop\",replicaset=\"api-7d9f8\",owner_kind=\"Deployment\",owner_name=\"api\"} 1\n")
	l := startPipeline(t, pipeline{
		rules: `groups:
  - name: pods
    interval: 1s
    rules:
      - alert: LabPodCrashLooping
        expr: kube_pod_owner{namespace="shop"} * on () group_left () (lab_errors{service="api"} > 0)
        for: 1s
        labels: { severity: warning }
`,
		runbooks: podsRunbook,
		groupBy:  "['alertname']",
		values:   map[string]string{"api": "0", "owners.prom": owners.String()},
		scraped:  `count(kube_pod_owner) == 50`,
	})
	l.set(t, "api", "1")
	var inc state.Incident
	eventually(t, 90*time.Second, "fifty alerts in one incident", func() bool {
		incs := listIncidents(t, l.medicAddr, l.token, "all")
		if len(incs) != 1 {
			return false
		}
		inc = incs[0]
		return len(inc.Alerts) == 50 && hasEvent(inc, "action_succeeded")
	})
	if inc.Key != "target:shop/api" {
		t.Fatalf("key %q: %s", inc.Key, timeline(inc))
	}
	// Fifty incidents were opened, one per alert; forty-nine folded.
	eventually(t, 30*time.Second, "forty-nine folds", func() bool {
		m := get(t, "http://"+l.medicAddr+"/metrics")
		return strings.Contains(m, "medic_incidents_opened_total 50\n") && strings.Contains(m, "medic_incidents_open 1\n")
	})
	if incs := listIncidents(t, l.medicAddr, l.token, "all"); len(incs) != 1 {
		t.Fatalf("%d incidents: %s", len(incs), describe(incs))
	}
	l.ranOnceWithoutBrief(t, "api")
}

const podsRunbook = labTools + `
runbook "crashloop" {
  description = "The pods of a Deployment crash-loop: restart it."
  matchers = ["alertname=\"LabPodCrashLooping\""]
  target = "${labels.namespace}/${query.owner[0].labels.owner_name}"
  query "owner" {
    promql = "max by (namespace, owner_name) (kube_replicaset_owner{namespace=\"${labels.namespace}\", owner_kind=\"Deployment\"} * on (namespace, replicaset) group_left () max by (namespace, replicaset) (label_replace(kube_pod_owner{namespace=\"${labels.namespace}\", pod=\"${labels.pod}\", owner_kind=\"ReplicaSet\"}, \"replicaset\", \"$1\", \"owner_name\", \"(.+)\")))"
  }
  when = "len(query.owner) == 1"
  step "restart" {
    tool = "set_errors"
    args = { service = "api", value = "0" }
  }
}
`

// ranOnceWithoutBrief fails unless the fix of service ran exactly once and
// no brief went to the on-call.
func (l *loopLab) ranOnceWithoutBrief(t *testing.T, service string) {
	t.Helper()
	if runs := l.runs(t, service); len(runs) != 1 {
		t.Fatalf("the fix ran %d times: %v", len(runs), runs)
	}
	if n := len(l.briefs); n != 0 {
		t.Fatalf("%d briefs for a fault medic fixed", n)
	}
}

func describe(incs []state.Incident) string {
	var b strings.Builder
	for _, inc := range incs {
		fmt.Fprintf(&b, "\n#%d key %s, %d alerts, outcome %q: %s", inc.ID, inc.Key, len(inc.Alerts), inc.Outcome, timeline(inc))
	}
	return b.String()
}

func timeline(inc state.Incident) string {
	var parts []string
	for _, e := range inc.Timeline {
		parts = append(parts, e.Kind+": "+e.Message)
	}
	return strings.Join(parts, "; ")
}

// TestUrgentDecisionJumpsTheStorm: 2,000 alerts no runbook matches, then
// one that a runbook acts on, held back by a fault of the medicfault build
// and then let go. The last one is acted on while most of the storm still
// waits to be escalated, instead of after all of it:
//   - queued: all are queued for a decision while the decision loop stands
//     still, as behind a slow enrichment query; the last one's decision is
//     queued as urgent, and urgent decisions are taken first.
//   - in the inbox: all wait in the inbox while the worker stands still, as
//     behind a slow disk; while the worker drains the inbox only urgent
//     decisions start.
func TestUrgentDecisionJumpsTheStorm(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, fault, released string }{
		{"queued", "MEDIC_FAULT_HOLD_DECISIONS_FILE", "medic_incidents_open"},
		{"in the inbox", "MEDIC_FAULT_WEDGE_FILE", "medic_inbox_depth"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l := newLab(t, strings.Replace(slowRunbook, "SLEEP", "0", 1), "1h")
			wedge := writeFile(t, filepath.Join(l.dir, "wedge"), "")
			p := startEnv(t, l.dir, []string{tc.fault + "=" + wedge}, faultBinary(t), "serve", "--config.file", filepath.Join(l.dir, "medic.hcl"))
			waitReady(t, p, "http://"+l.addr+"/-/ready")
			const storm = 2000
			now := time.Now().UTC().Format(time.RFC3339)
			// Notifications of more alerts than a commit applies at once
			// are queued for the worker, even into an empty inbox.
			const batch = 500
			for n := 0; n < storm; n += batch {
				var alerts []string
				for i := n; i < n+batch; i++ {
					alerts = append(alerts, fmt.Sprintf(`{"status":"firing","labels":{"alertname":"Storm","instance":"i%d"},"startsAt":%q,"fingerprint":"%016x"}`, i, now, 0x70000+i))
				}
				if code, body := l.do(t, "POST", "/api/v1/alerts", l.token, json.RawMessage(`{"version":"4","status":"firing","receiver":"medic","alerts":[`+strings.Join(alerts, ",")+`]}`)); code != 200 {
					t.Fatalf("storm: %d %s", code, body)
				}
			}
			l.post(t, "shop", "00000000000000e1")
			// Everything is where the fault holds it: opened and queued, or
			// in the inbox.
			want := storm + 1
			if tc.released == "medic_inbox_depth" {
				want = storm/batch + 1
			}
			eventually(t, 60*time.Second, "the storm to be held", func() bool { return l.metric(t, tc.released) == want })
			if n := l.metric(t, `medic_incidents_total{outcome="escalated"}`); n != 0 {
				t.Fatalf("%d incidents were decided while the fault held them", n)
			}
			os.Remove(wedge)
			eventually(t, 60*time.Second, "the storm to be decided", func() bool {
				return len(l.runs(t)) == 1 && l.metric(t, `medic_incidents_total{outcome="escalated"}`) == storm
			})
			// The journal says when the urgent step started, the timelines
			// what was decided before.
			acts := apiData[[]state.Action](t, l, "/api/v1/actions")
			if len(acts) != 1 {
				t.Fatalf("%d actions, want the urgent one", len(acts))
			}
			ran := acts[0].StartedAt
			var escalated []time.Time
			for _, inc := range l.incidents(t) {
				for _, e := range inc.Timeline {
					if e.Kind == "escalated" {
						escalated = append(escalated, e.Time)
					}
				}
			}
			before := 0
			for _, at := range escalated {
				if at.Before(ran) {
					before++
				}
			}
			t.Logf("%s: when the urgent step started, %d of the %d storm incidents were escalated", tc.name, before, storm)
			if ran.IsZero() || before > storm/2 {
				t.Fatalf("the urgent decision waited behind %d escalations (step ran at %v)", before, ran)
			}
		})
	}
}

// TestExampleAlertmanagerConfig runs a real Alertmanager with the shipped
// examples/alertmanager.yml (its receiver pointed at this test's medic,
// its timings shortened): a rule firing at warning and then critical on one
// target reaches medic once, at critical, while the warning of another
// target still does; the heartbeats go nowhere.
func TestExampleAlertmanagerConfig(t *testing.T) {
	t.Parallel()
	amBin := requireAlertmanager(t)
	l := newLab(t, "", "1h")
	l.start(t)
	example, err := os.ReadFile("examples/alertmanager.yml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.NewReplacer("http://127.0.0.1:9095/api/v1/alerts", "http://"+l.addr+"/api/v1/alerts",
		"/etc/medic/token", filepath.Join(l.dir, "token"), "group_wait: 30s", "group_wait: 1s", "group_interval: 5m", "group_interval: 1s").Replace(string(example))
	amAddr := freeAddr(t)
	am := start(t, l.dir, amBin, "--config.file="+writeFile(t, filepath.Join(l.dir, "alertmanager.yml"), cfg),
		"--storage.path="+filepath.Join(l.dir, "am"), "--web.listen-address="+amAddr, "--cluster.listen-address=")
	waitReady(t, am, "http://"+amAddr+"/-/ready")
	now := time.Now().UTC().Format(time.RFC3339)
	alert := func(name, instance, severity string) map[string]any {
		return map[string]any{"startsAt": now, "labels": map[string]string{"alertname": name, "instance": instance, "job": "node",
			"mountpoint": "/", "device": "/dev/sda1", "fstype": "ext4", "severity": severity}}
	}
	postToAlertmanager(t, amAddr, []map[string]any{
		alert("NodeFilesystemSpaceFillingUp", "db-1:9100", "warning"),
		alert("NodeFilesystemSpaceFillingUp", "db-1:9100", "critical"),
		alert("NodeFilesystemSpaceFillingUp", "db-2:9100", "warning"),
		{"startsAt": now, "labels": map[string]string{"alertname": "Watchdog", "severity": "none"}},
		{"startsAt": now, "labels": map[string]string{"alertname": "PrometheusAlertmanagerE2eDeadManSwitch", "severity": "critical"}},
	})
	received := func() []string {
		var out []string
		for _, inc := range l.incidents(t) {
			for _, a := range inc.Alerts {
				out = append(out, a.Labels["instance"]+" "+a.Labels["severity"])
			}
		}
		slices.Sort(out)
		return out
	}
	eventually(t, 30*time.Second, "the notifications", func() bool { return len(received()) >= 2 })
	time.Sleep(3 * time.Second) // three more group intervals: an inhibited alert would have come
	if got := strings.Join(received(), ", "); got != "db-1:9100 critical, db-2:9100 warning" {
		t.Fatalf("medic received %s", got)
	}
	if n := l.metric(t, `medic_alerts_received_total{status="firing"}`); n != 2 {
		t.Fatalf("medic received %d firing alerts, want 2: the heartbeats and the inhibited warning go nowhere", n)
	}
}

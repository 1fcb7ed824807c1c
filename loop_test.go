package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"medic/state"
)

// The closed loop, end to end: a real Prometheus scrapes a lab target
// process and evaluates an alert rule, a real Alertmanager routes the alert
// to a real medic, whose runbooks fix (or fail to fix) the target through an
// exec tool and verify the result in the same Prometheus.

// labTargetEnv makes the test binary a lab target instead of running the
// tests: it serves lab_errors{service=NAME} with the number in DIR/NAME for
// every file in DIR, read on each scrape, and a file NAME.prom verbatim.
const labTargetEnv = "MEDIC_LAB_TARGET"

func runLabTarget(addr, dir string) {
	http.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
		entries, _ := os.ReadDir(dir)
		fmt.Fprintln(w, "# TYPE lab_errors gauge")
		for _, e := range entries {
			b, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				continue
			}
			if strings.HasSuffix(e.Name(), ".prom") {
				w.Write(b)
				continue
			}
			fmt.Fprintf(w, "lab_errors{service=%q} %s\n", e.Name(), strings.TrimSpace(string(b)))
		}
	})
	fmt.Fprintln(os.Stderr, http.ListenAndServe(addr, nil))
	os.Exit(1)
}

// labTools are the lab's tools: the fix, which sets a service's value on the
// lab target, and the on-call's webhook for briefs.
const labTools = `
tool "set_errors" {
  description = "Sets a lab service's error count, as a fix (or a bad fix) would."
  risk        = "low"
  param "service" { pattern = "[a-z]+" }
  param "value" { pattern = "[0-9]+" }
  exec { command = ["SETSH", "${param.service}", "${param.value}"] }
}

tool "brief_hook" {
  description = "The on-call's webhook."
  risk        = "low"
  notify {
    channel  = "webhook"
    url_file = "hook-url"
  }
}
`

const loopRunbooks = labTools + `

runbook "fixes" {
  description = "The fix works."
  matchers = ["alertname=\"LabErrors\"", "service=\"fixme\""]
  target = "${labels.service}"
  step "reset" {
    tool = "set_errors"
    args = { service = "${labels.service}", value = "0" }
  }
  verify {
    promql = "sum(lab_errors{service=\"${labels.service}\"})"
    expect = "after == 0"
    wait   = "3s"
  }
}

runbook "worsens" {
  description = "The step makes it worse; its rollback restores the old value."
  matchers = ["alertname=\"LabErrors\"", "service=\"worsen\""]
  target = "${labels.service}"
  step "overload" {
    tool = "set_errors"
    args = { service = "${labels.service}", value = "50" }
    rollback {
      tool = "set_errors"
      args = { service = "${labels.service}", value = "5" }
    }
  }
  verify {
    promql = "sum(lab_errors{service=\"${labels.service}\"})"
    expect = "after == 0"
    wait   = "3s"
  }
}

runbook "polls" {
  description = "The fix works at once; verification checks every second of a ten-minute wait and settles on the first check that holds."
  matchers = ["alertname=\"LabErrors\"", "service=\"poll\""]
  target = "${labels.service}"
  step "reset" {
    tool = "set_errors"
    args = { service = "${labels.service}", value = "0" }
  }
  verify {
    promql   = "sum(lab_errors{service=\"${labels.service}\"})"
    expect   = "after == 0"
    wait     = "10m"
    interval = "1s"
  }
}

runbook "changes_nothing" {
  description = "The step changes nothing; after two attempts medic hands over."
  matchers = ["alertname=\"LabErrors\"", "service=\"stuck\""]
  target = "${labels.service}"
  step "noop" {
    tool = "set_errors"
    args = { service = "${labels.service}", value = "5" }
  }
  verify {
    promql = "sum(lab_errors{service=\"${labels.service}\"})"
    expect = "after == 0"
    wait   = "2s"
  }
  max_attempts = 2
}

runbook "blind" {
  description = "Prometheus goes away while medic verifies."
  matchers = ["alertname=\"LabErrors\"", "service=\"blind\""]
  target = "${labels.service}"
  step "reset" {
    tool = "set_errors"
    args = { service = "${labels.service}", value = "0" }
  }
  verify {
    promql = "sum(lab_errors{service=\"${labels.service}\"})"
    expect = "after == 0"
    wait   = "5s"
  }
}
`

type loopLab struct {
	dir, values, medicAddr, amAddr, token string
	prom, medic                           *proc
	briefs                                chan map[string]any
}

// runs lists the set_errors executions for a service, from the tool's log.
func (l *loopLab) runs(t *testing.T, service string) []string {
	b, err := os.ReadFile(filepath.Join(l.dir, "set.log"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == service {
			out = append(out, f[1])
		}
	}
	return out
}

func (l *loopLab) set(t *testing.T, service, value string) time.Time {
	writeFile(t, filepath.Join(l.values, service), value+"\n")
	return time.Now()
}

// incident waits for the latest incident of a service to have an event of
// the kind.
func (l *loopLab) incident(t *testing.T, service, kind string, timeout time.Duration) state.Incident {
	t.Helper()
	var found state.Incident
	eventually(t, timeout, service+" to get "+kind, func() bool {
		var latest *state.Incident
		for _, inc := range listIncidents(t, l.medicAddr, l.token, "all") {
			if len(inc.Alerts) > 0 && inc.Alerts[0].Labels["service"] == service && (latest == nil || inc.ID > latest.ID) {
				latest = &inc
			}
		}
		if latest != nil && hasEvent(*latest, kind) {
			found = *latest
			return true
		}
		return false
	})
	return found
}

func eventTime(inc state.Incident, kind string) time.Time {
	for _, e := range inc.Timeline {
		if e.Kind == kind {
			return e.Time
		}
	}
	return time.Time{}
}

func lastEvent(inc state.Incident, kind string) string {
	msg := ""
	for _, e := range inc.Timeline {
		if e.Kind == kind {
			msg = e.Message
		}
	}
	return msg
}

func startLoopLab(t *testing.T) *loopLab {
	return startPipeline(t, pipeline{
		rules: `groups:
  - name: lab
    interval: 1s
    rules:
      - alert: LabErrors
        expr: lab_errors > 0
        for: 1s
        annotations:
          summary: "{{ $labels.service }} reports {{ $value }} errors"
          runbook_url: "https://runbooks.example/lab-errors"
`,
		runbooks: loopRunbooks,
		groupBy:  "['alertname', 'service']",
		values:   map[string]string{"fixme": "0", "worsen": "0", "stuck": "0", "blind": "0", "poll": "0"},
		scraped:  `count(lab_errors) == 5`,
	})
}

// pipeline is what a lab runs through real Prometheus, Alertmanager and
// medic processes: the alert rules, the runbooks (SETSH stands for the
// set.sh tool script), Alertmanager's group_by, the lab target's files, and
// a PromQL condition that holds once Prometheus scraped them.
type pipeline struct {
	rules, runbooks, groupBy string
	values                   map[string]string
	scraped                  string
}

func startPipeline(t *testing.T, pl pipeline) *loopLab {
	amBin := requireAlertmanager(t)
	const promBin = "/usr/bin/prometheus"
	if _, err := os.Stat(promBin); err != nil {
		t.Fatalf("%s is missing: scripts/test.sh installs Debian's prometheus", promBin)
	}
	dir := t.TempDir()
	l := &loopLab{dir: dir, values: filepath.Join(dir, "values"), token: "loop-token-8c1d", briefs: make(chan map[string]any, 16)}
	os.Mkdir(l.values, 0o755)
	for name, v := range pl.values {
		l.set(t, name, v)
	}
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m map[string]any
		json.NewDecoder(r.Body).Decode(&m)
		l.briefs <- m
	}))
	t.Cleanup(hook.Close)

	targetAddr, promAddr, amAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	l.medicAddr, l.amAddr = freeAddr(t), amAddr
	tp := startEnv(t, dir, []string{labTargetEnv + "=" + targetAddr, "MEDIC_LAB_VALUES=" + l.values}, os.Args[0])
	waitReady(t, tp, "http://"+targetAddr+"/metrics")

	writeFile(t, filepath.Join(dir, "rules.yml"), pl.rules)
	writeFile(t, filepath.Join(dir, "prometheus.yml"), fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [rules.yml]
alerting:
  alertmanagers:
    - static_configs:
        - targets: [%q]
scrape_configs:
  - job_name: lab
    static_configs:
      - targets: [%q]
`, amAddr, targetAddr))
	l.prom = start(t, dir, promBin, "--config.file="+filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(dir, "tsdb"),
		"--web.listen-address="+promAddr, "--rules.alert.resend-delay=1s")
	waitReady(t, l.prom, "http://"+promAddr+"/-/ready")
	// Faults are injected once Prometheus scrapes the target and evaluates
	// the rule, so that the timings below are the pipeline's, not its start.
	eventually(t, 30*time.Second, "the first scrape of the lab target", func() bool {
		return strings.Contains(get(t, "http://"+promAddr+"/api/v1/query?query="+url.QueryEscape(pl.scraped)), `"value"`)
	})

	tokenFile := writeFile(t, filepath.Join(dir, "token"), l.token+"\n")
	writeFile(t, filepath.Join(dir, "hook-url"), hook.URL+"\n")
	setsh := writeFile(t, filepath.Join(dir, "set.sh"), fmt.Sprintf("#!/bin/sh\necho \"$1 $2\" >> %q\nprintf '%%s\\n' \"$2\" > %q/\"$1\"\n",
		filepath.Join(dir, "set.log"), l.values))
	os.Chmod(setsh, 0o755)
	writeFile(t, filepath.Join(dir, "runbooks.hcl"), strings.ReplaceAll(pl.runbooks, "SETSH", setsh))
	writeFile(t, filepath.Join(dir, "medic.hcl"), fmt.Sprintf(`
runbooks = ["runbooks.hcl"]
web {
  listen_address    = %q
  bearer_token_file = "token"
}
storage { path = "medic.db" }
prometheus { url = "http://%s" }
remediation { deadline = "2m" }
escalation {
  notify   = "brief_hook"
  group_by = ["alertname", "service"] # the lab's services fail independently
}
`, l.medicAddr, promAddr))
	l.medic = start(t, dir, medicBin, "serve", "--config.file", filepath.Join(dir, "medic.hcl"))
	waitReady(t, l.medic, "http://"+l.medicAddr+"/-/ready")

	amCfg := strings.Replace(fmt.Sprintf(alertmanagerConfig, l.medicAddr, tokenFile), "group_by: ['alertname', 'instance']", "group_by: "+pl.groupBy, 1)
	amCfg = strings.Replace(amCfg, "repeat_interval: 1h", "repeat_interval: 2s", 1)
	writeFile(t, filepath.Join(dir, "alertmanager.yml"), amCfg)
	am := start(t, dir, amBin, "--config.file="+filepath.Join(dir, "alertmanager.yml"), "--storage.path="+filepath.Join(dir, "am"),
		"--web.listen-address="+amAddr, "--cluster.listen-address=")
	waitReady(t, am, "http://"+amAddr+"/-/ready")
	return l
}

// TestClosedLoop runs the four outcomes of a remediation through real
// Prometheus and Alertmanager processes, then shows that a re-fire after a
// fix escalates instead of remediating again.
func TestClosedLoop(t *testing.T) {
	l := startLoopLab(t)

	// Four faults at once.
	injected := map[string]time.Time{}
	for _, s := range []string{"fixme", "worsen", "stuck", "poll"} {
		injected[s] = l.set(t, s, "5")
	}

	// Remediated: the reset brings lab_errors to 0, verification sees it,
	// and Alertmanager's resolution closes the incident later.
	inc := l.incident(t, "fixme", "recovered", 60*time.Second)
	if inc.Outcome != state.OutcomeRemediated || inc.RecoveredAt == nil {
		t.Fatalf("fixme: outcome %q, recovered at %v", inc.Outcome, inc.RecoveredAt)
	}
	if got := l.runs(t, "fixme"); strings.Join(got, " ") != "0" {
		t.Fatalf("fixme: set_errors ran %v, want once with 0", got)
	}
	closed := l.incident(t, "fixme", "closed", 30*time.Second)
	if closed.Outcome != state.OutcomeRemediated || !strings.Contains(lastEvent(closed, "closed"), "after medic acted") {
		t.Fatalf("fixme closed as %q: %s", closed.Outcome, lastEvent(closed, "closed"))
	}
	acted := eventTime(inc, "action_succeeded")
	t.Logf("fixme: fault to alert at medic %s; medic's decision and fix %s; verification wait and check %s; fault to verified recovery %s; to the close by Alertmanager %s",
		inc.OpenedAt.Sub(injected["fixme"]).Round(time.Millisecond), acted.Sub(inc.OpenedAt).Round(time.Millisecond),
		inc.RecoveredAt.Sub(acted).Round(time.Millisecond), inc.RecoveredAt.Sub(injected["fixme"]).Round(time.Millisecond),
		closed.ClosedAt.Sub(injected["fixme"]).Round(time.Millisecond))

	// Polled: with interval, the first check after the fix settles the
	// incident, long before the ten-minute wait (and the lab's two-minute
	// deadline) is up.
	inc = l.incident(t, "poll", "recovered", 60*time.Second)
	if inc.Outcome != state.OutcomeRemediated {
		t.Fatalf("poll: outcome %q\n%s", inc.Outcome, timeline(inc))
	}
	t.Logf("poll: fix to verified recovery %s", inc.RecoveredAt.Sub(eventTime(inc, "action_succeeded")).Round(time.Millisecond))

	// Rolled back: the step made it worse (5 -> 50); the rollback put 5 back.
	inc = l.incident(t, "worsen", "escalated", 60*time.Second)
	if got := l.runs(t, "worsen"); strings.Join(got, " ") != "50 5" {
		t.Fatalf("worsen: set_errors ran %v, want 50 then the rollback's 5", got)
	}
	if msg := lastEvent(inc, "escalated"); !strings.Contains(msg, "made it worse") || !strings.Contains(msg, "rollback set_errors ran") {
		t.Fatalf("worsen: %s", msg)
	}

	// Escalated: two attempts change nothing; the brief reaches the webhook.
	inc = l.incident(t, "stuck", "escalated", 60*time.Second)
	if got := l.runs(t, "stuck"); len(got) != 2 {
		t.Fatalf("stuck: set_errors ran %v, want twice", got)
	}
	if msg := lastEvent(inc, "escalated"); !strings.Contains(msg, "no recovery after 2 attempt(s)") {
		t.Fatalf("stuck: %s", msg)
	}
	briefs := map[string]map[string]any{}
	collect := func(want string, timeout time.Duration) map[string]any {
		t.Helper()
		deadline := time.After(timeout)
		for briefs[want] == nil {
			select {
			case m := <-l.briefs:
				b, _ := m["brief"].(map[string]any)
				if code, _ := b["reason_code"].(string); code != "" && len(b["alerts"].([]any)) > 0 {
					svc := b["alerts"].([]any)[0].(map[string]any)["labels"].(map[string]any)["service"].(string)
					briefs[svc+"/"+code] = b
				}
			case <-deadline:
				keys := make([]string, 0, len(briefs))
				for k := range briefs {
					keys = append(keys, k)
				}
				sort.Strings(keys)
				t.Fatalf("no brief %s; got %v", want, keys)
			}
		}
		return briefs[want]
	}
	b := collect("stuck/attempts_exhausted", 10*time.Second)
	steps, _ := b["steps"].([]any)
	if len(steps) != 2 {
		t.Fatalf("the brief lists %d steps: %v", len(steps), b)
	}
	for _, s := range steps {
		sm := s.(map[string]any)
		if sm["verify"] != "unchanged" || sm["before"] != 5.0 || sm["after"] != 5.0 || sm["policy"] != "allow" {
			t.Fatalf("brief step %v", sm)
		}
	}
	links, _ := b["links"].(map[string]any)
	if !strings.Contains(fmt.Sprint(links["incident"]), fmt.Sprintf("/api/v1/incidents/%d", inc.ID)) || len(links["generators"].([]any)) == 0 ||
		fmt.Sprint(links["runbooks"]) != "[https://runbooks.example/lab-errors]" {
		t.Fatalf("brief links %v", links)
	}
	collect("worsen/worse", 10*time.Second)

	// No loops: Alertmanager repeats the firing groups every 2 s while the
	// worsen and stuck incidents stay open, and none remediates again.
	time.Sleep(5 * time.Second)
	if w, s := l.runs(t, "worsen"), l.runs(t, "stuck"); len(w) != 2 || len(s) != 2 {
		t.Fatalf("repeats remediated again: worsen %v, stuck %v", w, s)
	}
	// A re-fire of the fixed target escalates, and set_errors does not run.
	l.set(t, "fixme", "5")
	inc = l.incident(t, "fixme", "escalated", 60*time.Second)
	if msg := lastEvent(inc, "escalated"); !strings.Contains(msg, "fired again") || !strings.Contains(msg, "the fix did not hold") {
		t.Fatalf("re-fire: %s", msg)
	}
	if got := l.runs(t, "fixme"); len(got) != 1 {
		t.Fatalf("the re-fire ran set_errors again: %v", got)
	}
	collect("fixme/refired_after_fix", 10*time.Second)

	// Unverifiable: Prometheus stops after the step ran and before the
	// verification; the incident escalates, never counted as recovered.
	l.set(t, "blind", "5")
	l.incident(t, "blind", "action_succeeded", 60*time.Second)
	l.prom.cmd.Process.Kill()
	inc = l.incident(t, "blind", "escalated", 30*time.Second)
	if msg := lastEvent(inc, "escalated"); !strings.Contains(msg, "could not be verified") || inc.Outcome != state.OutcomeEscalated || inc.RecoveredAt != nil {
		t.Fatalf("blind: %s (outcome %q)", msg, inc.Outcome)
	}

	// The CLI shows the outcomes.
	tokenFile := filepath.Join(l.dir, "token")
	out, err := exec.Command(medicBin, "incidents", "--state", "all", "--medic.url", "http://"+l.medicAddr, "--medic.token-file", tokenFile).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "OUTCOME") || strings.Count(string(out), " remediated ") != 2 || strings.Count(string(out), " escalated ") < 4 {
		t.Fatalf("medic incidents: %v\n%s", err, out)
	}
	out, err = exec.Command(medicBin, "incidents", fmt.Sprint(closed.ID), "--medic.url", "http://"+l.medicAddr, "--medic.token-file", tokenFile).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "outcome: remediated") || !strings.Contains(string(out), "recovered: ") {
		t.Fatalf("medic incidents %d: %v\n%s", closed.ID, err, out)
	}

	metrics := get(t, "http://"+l.medicAddr+"/metrics")
	for _, want := range []string{
		`medic_incidents_total{outcome="remediated"} 2`,
		`medic_verifications_total{result="recovered"} 2`,
		`medic_verifications_total{result="worse"} 1`,
		`medic_verifications_total{result="unchanged"} 2`,
		`medic_verifications_total{result="unverifiable"} 1`,
		`medic_rollbacks_total 1`,
		`medic_escalations_total{reason="attempts_exhausted"} 1`,
		`medic_escalations_total{reason="refired_after_fix"} 1`,
		`medic_escalations_total{reason="unverifiable"} 1`,
		`medic_escalations_total{reason="worse"} 1`,
		`medic_actions_total{result="succeeded",tool="set_errors"} 7`,
		`medic_remediation_duration_seconds_count 2`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s:\n%s", want, grepLines(metrics, "medic_incidents_total|medic_escalations_total|medic_verif"))
		}
	}
}

func grepLines(s, prefixes string) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		for _, p := range strings.Split(prefixes, "|") {
			if strings.HasPrefix(line, p) {
				out = append(out, line)
			}
		}
	}
	return strings.Join(out, "\n")
}

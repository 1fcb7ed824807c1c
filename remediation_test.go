package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"medic/state"
)

// remediationLab writes a medic.hcl, tokens, a recording tool script and a
// runbook file into dir. The script appends its pid to count, then sleeps.
type remediationLab struct {
	dir, addr, count, token, approver string
}

// newLab writes the lab; extra lines go into medic.hcl's remediation block.
func newLab(t *testing.T, runbooks string, approvalTTL string, extra ...string) *remediationLab {
	t.Helper()
	dir := t.TempDir()
	l := &remediationLab{dir: dir, addr: freeAddr(t), count: filepath.Join(dir, "count"), token: "api-token-1", approver: "approver-token-2"}
	writeFile(t, filepath.Join(dir, "token"), l.token)
	writeFile(t, filepath.Join(dir, "approver"), l.approver)
	script := writeFile(t, filepath.Join(dir, "record.sh"), "#!/bin/bash\necho $$ >> \"$1\"\n/bin/sleep \"$2\"\n")
	os.Chmod(script, 0o755)
	rb := strings.NewReplacer("SCRIPT", script, "COUNT", l.count).Replace(runbooks)
	writeFile(t, filepath.Join(dir, "runbooks.hcl"), rb)
	l.writeConfig(t, "", labAuth, append([]string{fmt.Sprintf("approval_ttl = %q", approvalTTL)}, extra...)...)
	return l
}

// labAuth is the lab's web authentication: the API and the approver token.
const labAuth = `bearer_token_file   = "token"
  approver_token_file = "approver"`

// writeConfig writes the lab's medic.hcl: top at the top level, auth in the
// web block, and the remediation lines in the remediation block.
func (l *remediationLab) writeConfig(t *testing.T, top, auth string, remediation ...string) {
	t.Helper()
	writeFile(t, filepath.Join(l.dir, "medic.hcl"), fmt.Sprintf(`
runbooks = ["runbooks.hcl"]
%s
web {
  listen_address = %q
  %s
}
storage { path = "medic.db" }
remediation {
  %s
}
`, top, l.addr, auth, strings.Join(remediation, "\n  ")))
}

func (l *remediationLab) start(t *testing.T) *proc {
	t.Helper()
	p := start(t, l.dir, medicBin, "serve", "--config.file", filepath.Join(l.dir, "medic.hcl"))
	waitReady(t, p, "http://"+l.addr+"/-/ready")
	return p
}

func (l *remediationLab) do(t *testing.T, method, path, token string, body any) (int, []byte) {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, "http://"+l.addr+path, r)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (l *remediationLab) post(t *testing.T, name string, fps ...string) {
	t.Helper()
	var alerts []string
	for _, fp := range fps {
		alerts = append(alerts, fmt.Sprintf(`{"status":"firing","labels":{"alertname":"Lab","name":%q},"startsAt":"2026-11-26T10:00:00Z","fingerprint":%q}`, name, fp))
	}
	body := `{"version":"4","status":"firing","receiver":"medic","alerts":[` + strings.Join(alerts, ",") + `]}`
	req, _ := http.NewRequest(http.MethodPost, "http://"+l.addr+"/api/v1/alerts", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+l.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("post: %v %v", err, resp)
	}
	resp.Body.Close()
}

func (l *remediationLab) runs(t *testing.T) []string {
	b, err := os.ReadFile(l.count)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(b))
}

func (l *remediationLab) incidents(t *testing.T) []state.Incident {
	t.Helper()
	return listIncidents(t, l.addr, l.token, "all")
}

func hasEvent(inc state.Incident, kind string) bool {
	for _, e := range inc.Timeline {
		if e.Kind == kind {
			return true
		}
	}
	return false
}

const slowRunbook = `
tool "record" {
  description = "Records that it ran, then takes its time."
  risk        = "low"
  timeout     = "2m"
  param "name" { pattern = "[a-z]+" }
  param "sleep" {
    type = "int"
    min  = 0
    max  = 60
  }
  exec {
    command = ["SCRIPT", "COUNT", "${param.sleep}"]
  }
  idempotency_key    = "record/${param.name}"
  idempotency_window = "1h"
}
runbook "lab" {
  description = "The lab runbook."
  matchers = ["alertname=\"Lab\""]
  target = "${labels.name}"
  step "record" {
    tool = "record"
    args = { name = "${labels.name}", sleep = "SLEEP" }
  }
}
`

// TestCrashMidAction SIGKILLs medic and the long step it runs; after the
// restart the journal shows the step interrupted, the incident escalated,
// and the step does not run again within its idempotency window.
func TestCrashMidAction(t *testing.T) {
	l := newLab(t, strings.Replace(slowRunbook, "SLEEP", "30", 1), "1h")
	p := l.start(t)
	l.post(t, "shop", "00000000000000a1")
	eventually(t, 20*time.Second, "the step to start", func() bool { return len(l.runs(t)) == 1 })
	child, _ := strconv.Atoi(l.runs(t)[0])
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
	p.done <- nil
	syscall.Kill(-child, syscall.SIGKILL) // the step dies with medic
	syscall.Kill(child, syscall.SIGKILL)

	l.start(t)
	code, body := l.do(t, "GET", "/api/v1/actions", l.token, nil)
	var acts struct {
		Data []state.Action `json:"data"`
	}
	json.Unmarshal(body, &acts)
	if code != 200 || len(acts.Data) != 1 || acts.Data[0].State != state.ActionInterrupted {
		t.Fatalf("journal after the restart: %d %s", code, body)
	}
	incs := l.incidents(t)
	if len(incs) != 1 || !hasEvent(incs[0], "escalated") {
		t.Fatalf("the incident was not escalated: %+v", incs)
	}
	// Once the alert resolves, a new alert for the same target opens a new
	// incident and decides again; the key is still inside its window, so
	// the policy denies the repeat and nothing runs.
	l.postAlert(t, "resolved", "00000000000000a1", time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC), map[string]string{"alertname": "Lab", "name": "shop"})
	eventually(t, 20*time.Second, "the first incident to close", func() bool { return l.incidents(t)[0].State == state.StateClosed })
	l.post(t, "shop", "00000000000000a2")
	eventually(t, 20*time.Second, "the second incident to be decided", func() bool {
		for _, inc := range l.incidents(t) {
			if holds(inc, "00000000000000a2") && strings.Contains(lastEvent(inc, "escalated"), "idempotent repeat: record/shop") {
				return true
			}
		}
		return false
	})
	if n := len(l.runs(t)); n != 1 {
		t.Fatalf("the step ran %d times", n)
	}
}

// TestOneRemediationPerTarget: 100 alerts for one target arrive at once;
// they make one incident, and exactly one child process runs. The tool has
// no idempotency key, so the keying by target alone has to hold.
func TestOneRemediationPerTarget(t *testing.T) {
	rb := strings.Replace(slowRunbook, "SLEEP", "2", 1)
	rb = strings.Replace(rb, "  idempotency_key    = \"record/${param.name}\"\n  idempotency_window = \"1h\"\n", "", 1)
	if strings.Contains(rb, "idempotency") {
		t.Fatal("the idempotency key is still there")
	}
	l := newLab(t, rb, "1h")
	l.start(t)
	var fps []string
	for i := 0; i < 100; i++ {
		fps = append(fps, fmt.Sprintf("%016x", 0xb000+i))
	}
	l.post(t, "shop", fps...)
	eventually(t, 60*time.Second, "the incident to be decided", func() bool {
		incs := l.incidents(t)
		return len(incs) == 1 && len(incs[0].Alerts) == 100 && hasEvent(incs[0], "action_succeeded")
	})
	if n := len(l.runs(t)); n != 1 {
		t.Fatalf("%d executions for 100 alerts on one target", n)
	}
}

const riskyRunbook = `
tool "record" {
  description = "High risk: always needs a human."
  risk        = "high"
  param "name" { pattern = "[a-z]+" }
  exec {
    command = ["SCRIPT", "COUNT", "0"]
  }
}
runbook "lab" {
  description = "The lab runbook."
  matchers = ["alertname=\"Lab\""]
  target = "${labels.name}"
  step "record" {
    tool = "record"
    args = { name = "${labels.name}" }
  }
}
`

// TestApprovalFlow: a high-risk step waits; a wrong token gets 401;
// approving runs it once; denying records the reason; an expired approval
// never runs.
func TestApprovalFlow(t *testing.T) {
	l := newLab(t, riskyRunbook, "3s")
	l.start(t)
	pending := func(name, fp string) uint64 {
		t.Helper()
		l.post(t, name, fp)
		var id uint64
		eventually(t, 20*time.Second, "a pending approval", func() bool {
			for _, inc := range l.incidents(t) {
				if holds(inc, fp) && hasEvent(inc, "approval_pending") {
					id = inc.ID
					return true
				}
			}
			return false
		})
		return id
	}
	id := pending("alpha", "00000000000000c1")
	if n := len(l.runs(t)); n != 0 {
		t.Fatalf("the step ran before approval: %d", n)
	}
	for _, tok := range []string{"", "wrong", l.token} {
		if code, _ := l.do(t, "POST", fmt.Sprintf("/api/v1/incidents/%d/approve", id), tok, nil); code != 401 {
			t.Fatalf("approve with token %q: %d, want 401", tok, code)
		}
	}
	cli := exec.Command(medicBin, "approve", strconv.FormatUint(id, 10), "--medic.url", "http://"+l.addr, "--by", "oncall")
	cli.Env = append(os.Environ(), "MEDIC_APPROVER_TOKEN="+l.approver)
	if out, err := cli.CombinedOutput(); err != nil || !strings.Contains(string(out), "approved") {
		t.Fatalf("medic approve: %v\n%s", err, out)
	}
	eventually(t, 20*time.Second, "the approved step to run", func() bool { return len(l.runs(t)) == 1 })
	if code, _ := l.do(t, "POST", fmt.Sprintf("/api/v1/incidents/%d/approve", id), l.approver, nil); code != 409 {
		t.Fatalf("a second approval: %d, want 409", code)
	}

	id2 := pending("beta", "00000000000000c2")
	cli = exec.Command(medicBin, "deny", strconv.FormatUint(id2, 10), "--reason", "not during the sale", "--medic.url", "http://"+l.addr)
	cli.Env = append(os.Environ(), "MEDIC_APPROVER_TOKEN="+l.approver)
	if out, err := cli.CombinedOutput(); err != nil || !strings.Contains(string(out), "denied") {
		t.Fatalf("medic deny: %v\n%s", err, out)
	}
	_, body := l.do(t, "GET", fmt.Sprintf("/api/v1/incidents/%d/approval", id2), l.token, nil)
	if !strings.Contains(string(body), `"reason":"not during the sale"`) || !strings.Contains(string(body), `"decided_by":"human`) {
		t.Fatalf("denial not recorded: %s", body)
	}

	id3 := pending("gamma", "00000000000000c3")
	time.Sleep(3500 * time.Millisecond)
	code, body := l.do(t, "POST", fmt.Sprintf("/api/v1/incidents/%d/approve", id3), l.approver, nil)
	if code != 409 || !strings.Contains(string(body), "expired") {
		t.Fatalf("late approval: %d %s", code, body)
	}
	time.Sleep(500 * time.Millisecond)
	if n := len(l.runs(t)); n != 1 {
		t.Fatalf("%d runs: a denied or expired step ran", n)
	}
}

// TestPrecheckAndShadow: a failing precheck stops the tool with its output
// as the reason; a passing one lets it run; shadow mode runs only the
// dry_run argv.
func TestPrecheckAndShadow(t *testing.T) {
	l := newLab(t, `
tool "exists" {
  description = "Does the target exist? Fails for 'ghost'."
  risk        = "low"
  read_only   = true
  param "name" { pattern = "[a-z]+" }
  exec {
    command = ["/usr/bin/test", "${param.name}", "!=", "ghost"]
  }
}
tool "record" {
  description = "Records that it ran."
  risk        = "low"
  param "name" { pattern = "[a-z]+" }
  exec {
    command = ["SCRIPT", "COUNT", "0"]
    dry_run = ["SCRIPT", "COUNT.dry", "0"]
  }
  precheck {
    tool = "exists"
    args = { name = "${param.name}" }
  }
}
runbook "lab" {
  description = "The lab runbook."
  matchers = ["alertname=\"Lab\"", "name=~\"ghost|real\""]
  target = "${labels.name}"
  step "record" {
    tool = "record"
    args = { name = "${labels.name}" }
  }
}
runbook "shadowed" {
  description = "The same, in shadow mode."
  mode        = "shadow"
  matchers = ["alertname=\"Lab\"", "name=\"quiet\""]
  target = "${labels.name}"
  step "record" {
    tool = "record"
    args = { name = "${labels.name}" }
  }
}
`, "1h")
	l.start(t)
	decided := func(fp, kind string) state.Incident {
		var found state.Incident
		eventually(t, 20*time.Second, fp+" to get "+kind, func() bool {
			for _, inc := range l.incidents(t) {
				if holds(inc, fp) && hasEvent(inc, kind) {
					found = inc
					return true
				}
			}
			return false
		})
		return found
	}
	l.post(t, "ghost", "00000000000000d1")
	inc := decided("00000000000000d1", "escalated")
	if last := inc.Timeline[len(inc.Timeline)-1]; !strings.Contains(last.Message, "precheck exists failed (exit 1)") {
		t.Fatalf("escalation reason %q", last.Message)
	}
	if n := len(l.runs(t)); n != 0 {
		t.Fatalf("the tool ran after a failed precheck (%d)", n)
	}
	l.post(t, "real", "00000000000000d2")
	decided("00000000000000d2", "action_succeeded")
	if n := len(l.runs(t)); n != 1 {
		t.Fatalf("%d runs after a passing precheck", n)
	}
	l.post(t, "quiet", "00000000000000d3")
	inc = decided("00000000000000d3", "shadow")
	dry, _ := os.ReadFile(l.count + ".dry")
	if n := len(l.runs(t)); n != 1 || len(strings.Fields(string(dry))) != 1 {
		t.Fatalf("shadow ran the tool (%d) or not its dry run (%q)", n, dry)
	}
}

// TestNotifyTool: a notify tool posts to the webhook whose URL it reads
// from its url_file, with the rendered message as summary.
func TestNotifyTool(t *testing.T) {
	got, srv := jsonSink(t)
	l := newLab(t, `
tool "page" {
  description = "Tell the on-call."
  risk        = "low"
  param "name" { pattern = "[a-z]+" }
  notify {
    channel  = "webhook"
    url_file = "hook-url"
    message  = "service ${param.name} needs a look"
    severity = "warning"
  }
}
runbook "lab" {
  description = "Pages."
  matchers = ["alertname=\"Lab\""]
  target = "${labels.name}"
  step "page" {
    tool = "page"
    args = { name = "${labels.name}" }
  }
}
`, "1h")
	writeFile(t, filepath.Join(l.dir, "hook-url"), srv.URL+"\n")
	l.start(t)
	l.post(t, "shop", "00000000000000e1")
	select {
	case m := <-got:
		if m["summary"] != "service shop needs a look" || m["severity"] != "warning" || m["action"] != "trigger" || m["incident"] == nil {
			t.Fatalf("webhook got %v", m)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no notification")
	}
}

// TestHTTPTool: an http tool sends its JSON body with the credentials of
// its http_config_file.
func TestHTTPTool(t *testing.T) {
	got := make(chan string, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- r.Method + " " + r.URL.EscapedPath() + " " + r.Header.Get("Authorization") + " " + string(b)
		w.WriteHeader(http.StatusCreated)
	}))
	defer srv.Close()
	l := newLab(t, fmt.Sprintf(`
tool "ticket" {
  description = "Open a ticket."
  risk        = "low"
  param "name" { pattern = "[a-z]+" }
  http {
    url              = "%s/tickets/${param.name}"
    body_json        = { service = "${param.name}" }
    expect_status    = [201]
    http_config_file = "ticket-http.yml"
  }
}
runbook "lab" {
  description = "Opens a ticket."
  matchers = ["alertname=\"Lab\""]
  target = "${labels.name}"
  step "ticket" {
    tool = "ticket"
    args = { name = "${labels.name}" }
  }
}
`, srv.URL), "1h")
	writeFile(t, filepath.Join(l.dir, "ticket-http.yml"), "authorization:\n  type: Bearer\n  credentials: s3cret\n")
	l.start(t)
	l.post(t, "shop", "00000000000000f1")
	select {
	case m := <-got:
		if m != `POST /tickets/shop Bearer s3cret {"service":"shop"}` {
			t.Fatalf("request %q", m)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no request")
	}
	eventually(t, 10*time.Second, "the action to succeed", func() bool {
		for _, inc := range l.incidents(t) {
			if hasEvent(inc, "action_succeeded") {
				return true
			}
		}
		return false
	})
}

// TestReloadRunbooksAllOrNothing: a broken runbook file is refused on
// reload, the running runbooks stay, and a fixed one is taken.
func TestReloadRunbooksAllOrNothing(t *testing.T) {
	l := newLab(t, strings.Replace(slowRunbook, "SLEEP", "0", 1), "1h")
	p := l.start(t)
	metric := func() string {
		return get(t, "http://"+l.addr+"/metrics")
	}
	good, _ := os.ReadFile(filepath.Join(l.dir, "runbooks.hcl"))
	writeFile(t, filepath.Join(l.dir, "runbooks.hcl"), string(good)+"\nrunbook \"broken\" {\n  description = \"x\"\n  when = \"labels.x ==\"\n}\n")
	p.cmd.Process.Signal(syscall.SIGHUP)
	eventually(t, 10*time.Second, "the failed reload", func() bool {
		return strings.Contains(metric(), "medic_config_last_reload_successful 0")
	})
	if !strings.Contains(p.output(), "runbooks.hcl:") {
		t.Fatalf("no diagnostic for the broken runbook:\n%s", p.output())
	}
	// The old runbooks still act.
	l.post(t, "shop", "00000000000000f9")
	eventually(t, 20*time.Second, "the old runbook to act", func() bool { return len(l.runs(t)) == 1 })
	writeFile(t, filepath.Join(l.dir, "runbooks.hcl"), string(good))
	code, _ := l.do(t, "POST", "/-/reload", l.token, nil)
	if code != 200 || !strings.Contains(metric(), "medic_config_last_reload_successful 1") {
		t.Fatalf("reload of the fixed file: %d", code)
	}
}

// TestShadowNotifies: in shadow mode the shadow_notify tool gets one
// message per incident that says exactly what each step would have run,
// and the step itself never runs.
func TestShadowNotifies(t *testing.T) {
	got, srv := jsonSink(t)
	l := newLab(t, `
tool "record" {
  description = "Records that it ran."
  risk        = "low"
  param "name" { pattern = "[a-z]+" }
  exec { command = ["SCRIPT", "COUNT", "0", "${param.name}"] }
}
tool "restart_unit" {
  description = "Restart a unit."
  risk        = "low"
  param "name" { pattern = "[a-z]+" }
  systemd {
    unit   = "${param.name}.service"
    action = "restart"
  }
}
tool "announce" {
  description = "Tell the channel."
  risk        = "low"
  notify {
    channel  = "webhook"
    url_file = "hook-url"
  }
}
runbook "lab" {
  description = "Two steps, in shadow mode."
  mode        = "shadow"
  matchers = ["alertname=\"Lab\""]
  target = "${labels.name}"
  step "record" {
    tool = "record"
    args = { name = "${labels.name}" }
  }
  step "restart" {
    tool = "restart_unit"
    args = { name = "${labels.name}" }
  }
}
`, "1h", `shadow_notify = "announce"`)
	writeFile(t, filepath.Join(l.dir, "hook-url"), srv.URL+"\n")
	l.start(t)
	l.post(t, "shop", "00000000000000f1")
	select {
	case m := <-got:
		summary, _ := m["summary"].(string)
		for _, want := range []string{"shadow mode", "Lab on shop", "runbook lab",
			fmt.Sprintf("record: exec [%q %q \"0\" \"shop\"] (policy allow)", filepath.Join(l.dir, "record.sh"), l.count),
			"restart_unit: systemd restart shop.service (policy allow)"} {
			if !strings.Contains(summary, want) {
				t.Errorf("the shadow notification lacks %q:\n%s", want, summary)
			}
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no shadow notification")
	}
	select {
	case m := <-got:
		t.Fatalf("a second notification: %v", m)
	case <-time.After(300 * time.Millisecond):
	}
	if n := len(l.runs(t)); n != 0 {
		t.Fatalf("shadow mode ran the tool %d times", n)
	}
}

// TestSystemdTool: a runbook's systemd step restarts a unit of a real
// systemd (scripts/sandbox-systemd), reached over its D-Bus system bus.
func TestSystemdTool(t *testing.T) {
	sd, addr := startSandbox(t, map[string]string{"shop.service": "[Unit]\nDefaultDependencies=no\n[Service]\n" +
		"ExecStartPre=/bin/sh -c 'echo start >> /run/medic-test/log'\nExecStart=/bin/sleep 1000\n"})

	l := newLab(t, `
tool "restart_unit" {
  description = "Restart a unit."
  risk        = "low"
  param "name" { pattern = "[a-z]+" }
  systemd {
    unit   = "${param.name}.service"
    action = "restart"
  }
}
runbook "lab" {
  description = "Restart the unit."
  matchers = ["alertname=\"Lab\""]
  target = "${labels.name}"
  step "restart" {
    tool = "restart_unit"
    args = { name = "${labels.name}" }
  }
}
`, "1h", fmt.Sprintf("systemd_bus = %q", addr))
	l.start(t)
	l.post(t, "shop", "00000000000000f2")
	l.post(t, "absent", "00000000000000f3")
	var ok, failed bool
	eventually(t, 20*time.Second, "both incidents to finish", func() bool {
		for _, inc := range l.incidents(t) {
			switch inc.Alerts[0].Fingerprint {
			case "00000000000000f2":
				ok = hasEvent(inc, "action_succeeded")
			case "00000000000000f3":
				failed = hasEvent(inc, "action_failed") && hasEvent(inc, "escalated")
			}
		}
		return ok && failed
	})
	if b, _ := os.ReadFile(filepath.Join(sd, "log")); string(b) != "start\n" {
		t.Fatalf("the unit logged %q, want one start", b)
	}
	code, body := l.do(t, "GET", "/api/v1/audit", l.token, nil)
	if code != 200 || !strings.Contains(string(body), `"job":"done"`) || !strings.Contains(string(body), "absent.service") {
		t.Fatalf("audit %d: %s", code, body)
	}
}

// startSandbox boots a real systemd with the given units in its own
// namespaces (scripts/sandbox-systemd), which see the returned folder as
// /run/medic-test, and returns that folder and the address of its D-Bus
// system bus. The sandbox dies with the test.
func startSandbox(t *testing.T, units map[string]string) (dir, bus string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("a sandboxed systemd needs root to create its namespaces")
	}
	dir = t.TempDir()
	os.Mkdir(filepath.Join(dir, "units"), 0o755)
	for name, text := range units {
		writeFile(t, filepath.Join(dir, "units", name), text)
	}
	cmd := exec.Command("scripts/sandbox-systemd", dir)
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var pid int
	line, _ := bufio.NewReader(stdout).ReadString('\n')
	if _, err := fmt.Sscan(line, &pid, &bus); err != nil {
		cmd.Wait()
		t.Fatalf("scripts/sandbox-systemd: %q: %v", line, err)
	}
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL); cmd.Wait() })
	return dir, bus
}

// postAlert sends one alert straight to medic, as Alertmanager would.
func (l *remediationLab) postAlert(t *testing.T, status, fp string, startsAt time.Time, labels map[string]string) {
	t.Helper()
	a := map[string]any{"status": status, "labels": labels, "startsAt": startsAt.UTC().Format(time.RFC3339Nano), "fingerprint": fp}
	if status == "resolved" {
		a["endsAt"] = time.Now().UTC().Format(time.RFC3339Nano)
	}
	body, _ := json.Marshal(map[string]any{"version": "4", "status": status, "receiver": "medic", "alerts": []any{a}})
	req, _ := http.NewRequest(http.MethodPost, "http://"+l.addr+"/api/v1/alerts", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+l.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("post: %v %v", err, resp)
	}
	resp.Body.Close()
}

func (l *remediationLab) latest(t *testing.T, fp, kind string) state.Incident {
	t.Helper()
	var found state.Incident
	eventually(t, 20*time.Second, fp+" to get "+kind, func() bool {
		var latest *state.Incident
		for _, inc := range l.incidents(t) {
			if holds(inc, fp) && (latest == nil || inc.ID > latest.ID) {
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

// TestNoisyAlerts: an alert that flaps escalates and is never acted on;
// one younger than its runbook's min_firing is held, then acted on; one
// that resolves while held closes as self-resolved, and nothing runs.
func TestNoisyAlerts(t *testing.T) {
	l := newLab(t, `
tool "record" {
  description = "Records that it ran."
  risk        = "low"
  param "name" { pattern = "[a-z]+" }
  exec { command = ["SCRIPT", "COUNT", "0", "${param.name}"] }
}
runbook "lab" {
  description = "Acts at once."
  matchers = ["alertname=\"Lab\"", "kind=\"plain\""]
  target = "${labels.name}"
  step "record" {
    tool = "record"
    args = { name = "${labels.name}" }
  }
}
runbook "patient" {
  description = "Acts only on an alert that has fired for 3 s."
  matchers = ["alertname=\"Lab\"", "kind=\"young\""]
  min_firing = "3s"
  target     = "${labels.name}"
  step "record" {
    tool = "record"
    args = { name = "${labels.name}" }
  }
}
`, "1h", `flap_count = 3`, `flap_window = "10m"`)
	l.start(t)
	plain := map[string]string{"alertname": "Lab", "kind": "plain", "name": "flappy"}
	t0 := time.Now().Add(-time.Minute)
	// Three occurrences of one alert: the first two are acted on, the
	// third makes three starts within flap_window and escalates.
	for i := 0; i < 3; i++ {
		start := t0.Add(time.Duration(i) * time.Second)
		l.postAlert(t, "firing", "00000000000000a1", start, plain)
		want := "action_succeeded"
		if i == 2 {
			want = "escalated"
		}
		inc := l.latest(t, "00000000000000a1", want)
		if i == 2 && !strings.Contains(lastEvent(inc, "escalated"), "noisy alert: it started firing 3 times") {
			t.Fatalf("flapping: %s", lastEvent(inc, "escalated"))
		}
		l.postAlert(t, "resolved", "00000000000000a1", start, plain)
		l.latest(t, "00000000000000a1", "closed")
	}
	if n := len(l.runs(t)); n != 2 {
		t.Fatalf("%d runs: the flapping alert was acted on", n)
	}

	young := map[string]string{"alertname": "Lab", "kind": "young", "name": "young"}
	posted := time.Now()
	l.postAlert(t, "firing", "00000000000000a2", posted, young)
	inc := l.latest(t, "00000000000000a2", "held")
	if n := len(l.runs(t)); n != 2 {
		t.Fatalf("a held alert was acted on (%d runs)", n)
	}
	inc = l.latest(t, "00000000000000a2", "action_succeeded")
	if ran := eventTime(inc, "action_succeeded"); ran.Sub(posted) < 3*time.Second {
		t.Fatalf("acted %s after the alert started, before min_firing", ran.Sub(posted))
	}

	// Held, then resolved before min_firing: self-resolved, nothing ran.
	young["name"] = "brief"
	posted = time.Now()
	l.postAlert(t, "firing", "00000000000000a3", posted, young)
	l.latest(t, "00000000000000a3", "held")
	l.postAlert(t, "resolved", "00000000000000a3", posted, young)
	inc = l.latest(t, "00000000000000a3", "closed")
	time.Sleep(4 * time.Second)
	if inc.Outcome != state.OutcomeSelfResolved || len(l.runs(t)) != 3 {
		t.Fatalf("outcome %q, %d runs", inc.Outcome, len(l.runs(t)))
	}
}

// TestEscalationRouting: a runbook's escalate_to wins, then the first route
// whose matchers match, then the default; past max_escalations_per_hour a brief only
// goes to the log.
func TestEscalationRouting(t *testing.T) {
	got := make(chan string, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m struct {
			Brief struct {
				ReasonCode string `json:"reason_code"`
			} `json:"brief"`
		}
		json.NewDecoder(r.Body).Decode(&m)
		got <- r.URL.Path + " " + m.Brief.ReasonCode
	}))
	defer srv.Close()
	hook := func(name string) string {
		return fmt.Sprintf(`
tool %q {
  description = "A webhook."
  risk        = "low"
  notify {
    channel  = "webhook"
    url_file = "url-%s"
  }
}
`, name, name)
	}
	l := newLab(t, hook("hook_a")+hook("hook_b")+hook("hook_c")+`
runbook "special" {
  description = "Recognised, never acted on."
  matchers = ["alertname=\"Lab\"", "name=\"special\""]
  escalate    = true
  escalate_to = "hook_c"
}
`, "1h")
	for _, n := range []string{"a", "b", "c"} {
		writeFile(t, filepath.Join(l.dir, "url-hook_"+n), srv.URL+"/"+n+"\n")
	}
	cfg, _ := os.ReadFile(filepath.Join(l.dir, "medic.hcl"))
	writeFile(t, filepath.Join(l.dir, "medic.hcl"), string(cfg)+`
escalation {
  notify       = "hook_a"
  max_escalations_per_hour = 3
  group_by     = ["..."] # a brief per incident, not one per alert name
  route {
    matchers = "{team=\"db\"}"
    notify   = "hook_b"
  }
}
`)
	l.start(t)
	expect := func(want string) {
		t.Helper()
		select {
		case g := <-got:
			if g != want {
				t.Fatalf("brief went to %q, want %q", g, want)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("no brief; want %q", want)
		}
	}
	now := time.Now()
	l.postAlert(t, "firing", "00000000000000b1", now, map[string]string{"alertname": "Lab", "name": "special", "team": "db"})
	expect("/c runbook_escalates")
	l.postAlert(t, "firing", "00000000000000b2", now, map[string]string{"instance": "b2", "alertname": "Lab", "name": "other", "team": "db"})
	expect("/b no_runbook")
	l.postAlert(t, "firing", "00000000000000b3", now, map[string]string{"instance": "b3", "alertname": "Lab", "name": "other"})
	expect("/a no_runbook")
	l.postAlert(t, "firing", "00000000000000b4", now, map[string]string{"instance": "b4", "alertname": "Lab", "name": "fourth"})
	inc := l.latest(t, "00000000000000b4", "brief_suppressed")
	if !strings.Contains(lastEvent(inc, "brief_suppressed"), "max_escalations_per_hour (3) reached") || inc.Outcome != state.OutcomeEscalated {
		t.Fatalf("fourth: %s (outcome %q)", lastEvent(inc, "brief_suppressed"), inc.Outcome)
	}
	select {
	case g := <-got:
		t.Fatalf("a 4th brief was sent: %s", g)
	case <-time.After(500 * time.Millisecond):
	}
}

// jsonSink is a webhook receiver that hands over each JSON body it gets.
func jsonSink(t *testing.T) (chan map[string]any, *httptest.Server) {
	got := make(chan map[string]any, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m map[string]any
		json.NewDecoder(r.Body).Decode(&m)
		got <- m
	}))
	t.Cleanup(srv.Close)
	return got, srv
}

// holds reports whether the incident holds the alert with the fingerprint.
func holds(inc state.Incident, fp string) bool { return inc.AlertIndex(fp) >= 0 }

package main

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"medic/rules"
	"medic/state"
)

// The host runbooks against what they read in production: Debian's
// prometheus-node-exporter, its systemd collector reading a real systemd
// (in a sandbox), scraped by a real Prometheus.

func requireNodeExporter(t *testing.T) string {
	t.Helper()
	const bin = "/usr/bin/prometheus-node-exporter"
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%s is missing: scripts/test.sh installs Debian's prometheus-node-exporter", bin)
	}
	return bin
}

// startNodeExporter runs node_exporter on a free port with the collectors
// the host runbooks read: uname (the node name), filesystem, and, given a
// D-Bus address, systemd for the units named.
func startNodeExporter(t *testing.T, dir, bus, units string) string {
	t.Helper()
	addr := freeAddr(t)
	args := []string{"--web.listen-address=" + addr, "--collector.disable-defaults", "--collector.uname", "--collector.filesystem"}
	var env []string
	if bus != "" {
		args = append(args, "--collector.systemd", "--collector.systemd.unit-include="+units)
		env = []string{"DBUS_SYSTEM_BUS_ADDRESS=" + bus}
	}
	p := startEnv(t, dir, env, requireNodeExporter(t), args...)
	waitReady(t, p, "http://"+addr+"/metrics")
	return addr
}

// mountTmpfs mounts a tmpfs of size bytes at a new folder of dir and
// unmounts it when the test ends.
func mountTmpfs(t *testing.T, dir string, size int) string {
	t.Helper()
	mp := filepath.Join(dir, "fs")
	os.Mkdir(mp, 0o755)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d,mode=0755", size), "medic-test", mp).CombinedOutput(); err != nil {
		t.Fatalf("mount a tmpfs (the test needs root): %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", mp).Run() })
	return mp
}

// promQuery runs an instant query and returns its series.
func promQuery(t *testing.T, promAddr, q string) []rules.Sample {
	t.Helper()
	var r struct {
		Status string `json:"status"`
		Data   struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(get(t, "http://"+promAddr+"/api/v1/query?query="+url.QueryEscape(q))), &r); err != nil || r.Status != "success" {
		t.Fatalf("query %s: %v %+v", q, err, r)
	}
	var out []rules.Sample
	for _, s := range r.Data.Result {
		var v float64
		fmt.Sscan(s.Value[1].(string), &v)
		out = append(out, rules.Sample{Labels: s.Metric, Value: v})
	}
	return out
}

// writePrometheus writes a Prometheus config with 1s scrapes of the given
// jobs (name to targets), and the rules and Alertmanager when given.
func writePrometheus(t *testing.T, dir string, jobs map[string][]string, rulesFile, amAddr string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n")
	if rulesFile != "" {
		fmt.Fprintf(&b, "rule_files: [%q]\n", rulesFile)
	}
	if amAddr != "" {
		fmt.Fprintf(&b, "alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: [%q]\n", amAddr)
	}
	b.WriteString("scrape_configs:\n")
	for job, targets := range jobs {
		fmt.Fprintf(&b, "  - job_name: %q\n    static_configs:\n      - targets: %q\n", job, targets)
	}
	return writeFile(t, filepath.Join(dir, "prometheus.yml"), b.String())
}

// TestHostRunbooksOnRealExporter decides one alert for each host runbook,
// with the labels its public rule gives it, through `medic replay` against
// a real Prometheus scraping a real node_exporter and a real systemd: each
// runbook's enrichment finds this host, its unit and its filesystem, and
// each verify query returns the one series the runbook expects.
func TestHostRunbooksOnRealExporter(t *testing.T) {
	t.Parallel()
	const sleeper = "[Unit]\nDefaultDependencies=no\n[Service]\nExecStart=/bin/sleep 1000\n"
	_, bus := startSandbox(t, map[string]string{
		"api.service":    sleeper,
		"web.service":    sleeper,
		"broken.service": "[Unit]\nDefaultDependencies=no\n[Service]\nExecStart=/bin/false\n",
	})
	startUnits(t, bus, "api.service", "web.service", "broken.service")

	dir := t.TempDir()
	mp := mountTmpfs(t, dir, 4<<20)
	nodeAddr := startNodeExporter(t, dir, bus, `(api|web|broken)\.service`)
	// api's target does not answer: its process hangs or is gone, while
	// systemd still runs the unit. web is Prometheus itself, a service
	// with a process_resident_memory_bytes.
	apiAddr := freeAddr(t)
	promAddr := freeAddr(t)
	cfg := writePrometheus(t, dir, map[string][]string{"node": {nodeAddr}, "api": {apiAddr}, "broken": {apiAddr}, "web": {promAddr}}, "", "")
	prom := start(t, dir, "/usr/bin/prometheus", "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "tsdb"), "--web.listen-address="+promAddr)
	waitReady(t, prom, "http://"+promAddr+"/-/ready")
	eventually(t, 30*time.Second, "the first scrapes", func() bool {
		return len(promQuery(t, promAddr, `node_systemd_unit_state{name="broken.service", state="failed"} == 1`)) == 1 &&
			len(promQuery(t, promAddr, `up{job="api"} == 0`)) == 1 && len(promQuery(t, promAddr, `up{job="web"} == 1`)) == 1
	})

	medicCfg := writeFile(t, filepath.Join(dir, "medic.hcl"), fmt.Sprintf("runbooks = [%q]\nprometheus { url = \"http://%s\" }\n", mustAbs(t, "runbooks.hcl"), promAddr))
	cases := []struct {
		name             string
		labels           map[string]string
		decision, chosen string
		verify           func(v float64) bool
	}{
		{"node-mixin NodeFilesystemAlmostOutOfSpace",
			map[string]string{"alertname": "NodeFilesystemAlmostOutOfSpace", "instance": nodeAddr, "job": "node", "device": "medic-test", "fstype": "tmpfs", "mountpoint": mp, "severity": "critical"},
			"remediate", "host_filesystem_free_space", func(v float64) bool { return v > 0.9 && v <= 1 }},
		{"node-mixin NodeSystemdServiceFailed",
			map[string]string{"alertname": "NodeSystemdServiceFailed", "instance": nodeAddr, "job": "node", "name": "broken.service", "state": "failed", "type": "simple", "severity": "warning"},
			"remediate", "host_unit_failed_restart", func(v float64) bool { return v == 0 }},
		{"awesome-prometheus-alerts PrometheusTargetMissing",
			map[string]string{"alertname": "PrometheusTargetMissing", "instance": apiAddr, "job": "api", "severity": "critical"},
			"remediate", "host_service_down_restart", func(v float64) bool { return v == 0 }},
		{"medic-rules ServiceMemoryLeak",
			map[string]string{"alertname": "ServiceMemoryLeak", "instance": promAddr, "job": "web", "severity": "warning"},
			"approve", "host_service_memory_leak", func(v float64) bool { return v > 1<<20 }},
	}
	set, diags := rules.Load("runbooks.hcl")
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	for i, tc := range cases {
		payload := writeFile(t, filepath.Join(dir, fmt.Sprintf("alert-%d.json", i)), string(notificationWith(tc.labels)))
		out, err := exec.Command(medicBin, "replay", "--config.file", medicCfg, "--llm", "off", "-o", "json", payload).Output()
		if err != nil {
			t.Fatalf("%s: replay: %v\n%s", tc.name, err, out)
		}
		var tr struct {
			Alerts []struct {
				Decision, Reason, Runbook string
				Enrichment                map[string]string
			}
		}
		json.Unmarshal(out, &tr)
		if len(tr.Alerts) != 1 || tr.Alerts[0].Decision != tc.decision || tr.Alerts[0].Runbook != tc.chosen {
			t.Errorf("%s: %s", tc.name, out)
			continue
		}
		t.Logf("%s: %s by %s; enrichment %v", tc.name, tc.decision, tc.chosen, tr.Alerts[0].Enrichment)
		rb := set.Runbook(tc.chosen)
		q, err := rb.Verify.PromQL.RenderQuery(rules.Vars{Labels: tc.labels})
		if err != nil {
			t.Fatal(err)
		}
		if got := promQuery(t, promAddr, q); len(got) != 1 || !tc.verify(got[0].Value) {
			t.Errorf("%s: verify query %s returned %v", tc.name, q, got)
		}
		// The same alert, decided as if medic ran on another host: the
		// node name in Prometheus is not its own, and it escalates.
		out, err = exec.Command(medicBin, "replay", "--config.file", medicCfg, "--llm", "off", "--hostname", "db-1", "-o", "json", payload).Output()
		if err != nil || !strings.Contains(string(out), `"decision": "escalate"`) {
			t.Errorf("%s on another host: %v\n%s", tc.name, err, out)
		}
	}
}

// startUnits asks the systemd on bus to start the units, as systemctl
// start --no-block does.
func startUnits(t *testing.T, bus string, units ...string) {
	t.Helper()
	for _, unit := range units {
		if out, err := exec.Command("busctl", "--address="+bus, "call", "org.freedesktop.systemd1", "/org/freedesktop/systemd1",
			"org.freedesktop.systemd1.Manager", "StartUnit", "ss", unit, "replace").CombinedOutput(); err != nil {
			t.Fatalf("start %s: %v: %s", unit, err, out)
		}
	}
}

func mustAbs(t *testing.T, path string) string {
	t.Helper()
	p, err := filepath.Abs(path)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// notificationWith is an Alertmanager webhook body with one firing alert.
func notificationWith(labels map[string]string) []byte {
	b, _ := json.Marshal(map[string]any{
		"version": "4", "groupKey": "{}:{alertname=\"" + labels["alertname"] + "\"}", "status": "firing", "receiver": "medic",
		"groupLabels": map[string]string{"alertname": labels["alertname"]}, "commonLabels": labels, "commonAnnotations": map[string]string{},
		"externalURL": "http://alertmanager.example:9093",
		"alerts": []map[string]any{{"status": "firing", "labels": labels, "annotations": map[string]string{},
			"startsAt": time.Now().Add(-5 * time.Minute).UTC().Format(time.RFC3339), "endsAt": "0001-01-01T00:00:00Z",
			"generatorURL": "http://prometheus.example:9090/graph", "fingerprint": "a00000000000e001"}},
	})
	return b
}

// The node-mixin rules as the mixin renders them with its default
// selectors (job="node", fstype!="", mountpoint!=""), with `for` shortened
// from 30m to 1s so that the test takes seconds.
const nodeMixinFilesystemRules = `groups:
  - name: node-exporter
    interval: 1s
    rules:
      - alert: NodeFilesystemAlmostOutOfSpace
        expr: |
          (
            node_filesystem_avail_bytes{job="node",fstype!="",mountpoint!=""} / node_filesystem_size_bytes{job="node",fstype!="",mountpoint!=""} * 100 < 5
          and
            node_filesystem_readonly{job="node",fstype!="",mountpoint!=""} == 0
          )
        for: 1s
        labels:
          severity: warning
      - alert: NodeFilesystemAlmostOutOfSpace
        expr: |
          (
            node_filesystem_avail_bytes{job="node",fstype!="",mountpoint!=""} / node_filesystem_size_bytes{job="node",fstype!="",mountpoint!=""} * 100 < 3
          and
            node_filesystem_readonly{job="node",fstype!="",mountpoint!=""} == 0
          )
        for: 1s
        labels:
          severity: critical
`

// TestHostFilesystemHealsLive fills a small tmpfs to 99% with rotated logs
// and shows the shipped disk runbook heal it through the whole pipeline: a
// real node_exporter, Prometheus evaluating node-mixin's rule, the shipped
// Alertmanager example (whose inhibit rules hold back the warning), and
// `medic serve` with the shipped runbooks, which deletes the rotated logs,
// keeps the live ones and the data, and verifies the free space in
// Prometheus.
func TestHostFilesystemHealsLive(t *testing.T) {
	t.Parallel()
	amBin := requireAlertmanager(t)
	dir := t.TempDir()
	const size = 8 << 20
	mp := mountTmpfs(t, dir, size)
	logs, data := filepath.Join(mp, "log"), filepath.Join(mp, "data")
	os.Mkdir(logs, 0o755)
	os.Mkdir(data, 0o755)
	// Live files: the log being written, a numbered binlog in the log
	// directory, and data, one of them numbered like a rotated log.
	live := map[string]int{filepath.Join(logs, "app.log"): 64 << 10, filepath.Join(logs, "mysql-bin.000042"): 64 << 10,
		filepath.Join(data, "orders.db"): 256 << 10, filepath.Join(data, "orders.db.1"): 16 << 10}
	old := time.Now().Add(-2 * time.Hour)
	for path, n := range live {
		writeFile(t, path, strings.Repeat("x", n))
		os.Chtimes(path, old, old)
	}

	nodeAddr := startNodeExporter(t, dir, "", "")
	promAddr, amAddr, medicAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	rulesFile := writeFile(t, filepath.Join(dir, "rules.yml"), nodeMixinFilesystemRules)
	cfg := writePrometheus(t, dir, map[string][]string{"node": {nodeAddr}}, rulesFile, amAddr)
	prom := start(t, dir, "/usr/bin/prometheus", "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "tsdb"),
		"--web.listen-address="+promAddr, "--rules.alert.resend-delay=1s")
	waitReady(t, prom, "http://"+promAddr+"/-/ready")
	free := fmt.Sprintf(`node_filesystem_avail_bytes{mountpoint=%q} / node_filesystem_size_bytes{mountpoint=%q}`, mp, mp)
	eventually(t, 30*time.Second, "the first scrape of the tmpfs", func() bool { return len(promQuery(t, promAddr, free)) == 1 })

	const token = "host-lab-token-51e0"
	tokenFile := writeFile(t, filepath.Join(dir, "token"), token+"\n")
	writeFile(t, filepath.Join(dir, "medic.hcl"), fmt.Sprintf(`
runbooks = [%q]
web {
  listen_address    = %q
  bearer_token_file = "token"
}
storage { path = "medic.db" }
prometheus { url = "http://%s" }
`, mustAbs(t, "runbooks.hcl"), medicAddr, promAddr))
	medic := start(t, dir, medicBin, "serve", "--config.file", filepath.Join(dir, "medic.hcl"))
	waitReady(t, medic, "http://"+medicAddr+"/-/ready")
	example, err := os.ReadFile("examples/alertmanager.yml")
	if err != nil {
		t.Fatal(err)
	}
	amCfg := strings.NewReplacer("http://127.0.0.1:9095/api/v1/alerts", "http://"+medicAddr+"/api/v1/alerts",
		"/etc/medic/token", tokenFile, "group_wait: 30s", "group_wait: 1s", "group_interval: 5m", "group_interval: 1s").Replace(string(example))
	am := start(t, dir, amBin, "--config.file="+writeFile(t, filepath.Join(dir, "alertmanager.yml"), amCfg),
		"--storage.path="+filepath.Join(dir, "am"), "--web.listen-address="+amAddr, "--cluster.listen-address=")
	waitReady(t, am, "http://"+amAddr+"/-/ready")

	// The fault: rotated logs of the last days fill the filesystem to 99%.
	fault := time.Now()
	rotated := fillWithRotatedLogs(t, logs, mp, 0.99)
	used := usedFraction(t, mp)
	t.Logf("fault: %d rotated logs, the tmpfs is %.2f%% full", len(rotated), used*100)
	if used < 0.99 || used >= 1 {
		t.Fatalf("the fault filled the tmpfs to %.2f%%, not 99%%", used*100)
	}

	var inc state.Incident
	eventually(t, 150*time.Second, "the incident to recover", func() bool {
		for _, i := range listIncidents(t, medicAddr, token, "all") {
			if hasEvent(i, "recovered") || hasEvent(i, "escalated") {
				inc = i
				return true
			}
		}
		return false
	})
	if inc.Remediation.Runbook != "host_filesystem_free_space" || inc.Outcome != state.OutcomeRemediated || inc.RecoveredAt == nil {
		t.Fatalf("incident %d: runbook %s, outcome %s\n%s", inc.ID, inc.Remediation.Runbook, inc.Outcome, timeline(inc))
	}
	if len(inc.Alerts) != 1 || inc.Alerts[0].Labels["severity"] != "critical" {
		t.Errorf("medic got %d alerts, want the critical one only (the inhibit rule holds back the warning): %+v", len(inc.Alerts), inc.Alerts)
	}
	if n := len(listIncidents(t, medicAddr, token, "all")); n != 1 {
		t.Errorf("%d incidents, want 1", n)
	}
	for _, f := range rotated {
		if _, err := os.Stat(f); err == nil {
			t.Errorf("rotated log %s is still there", f)
		}
	}
	for path, n := range live {
		if st, err := os.Stat(path); err != nil || st.Size() != int64(n) {
			t.Errorf("live file %s: %v, %v; want it untouched", path, st, err)
		}
	}
	if got := promQuery(t, promAddr, free); len(got) != 1 || got[0].Value < 0.2 {
		t.Errorf("free fraction in Prometheus: %v, want at least 0.2", got)
	}
	acted := eventTime(inc, "action_succeeded")
	t.Logf("fault to incident opened %s; medic's decision and delete %s; verification wait and check %s; fault to verified recovery %s",
		inc.OpenedAt.Sub(fault).Round(time.Millisecond), acted.Sub(inc.OpenedAt).Round(time.Millisecond),
		inc.RecoveredAt.Sub(acted).Round(time.Millisecond), inc.RecoveredAt.Sub(fault).Round(time.Millisecond))
	t.Logf("timeline:\n%s", timeline(inc))
}

// fillWithRotatedLogs writes rotated logs (app.log.N.gz, last written two
// hours ago) into dir until the filesystem at mp is at least full used.
func fillWithRotatedLogs(t *testing.T, dir, mp string, full float64) []string {
	t.Helper()
	var files []string
	old := time.Now().Add(-2 * time.Hour)
	chunk := strings.Repeat("r", 256<<10)
	for i := 1; usedFraction(t, mp) < full; i++ {
		path := filepath.Join(dir, fmt.Sprintf("app.log.%d.gz", i))
		var st syscall.Statfs_t
		syscall.Statfs(mp, &st)
		// Up to the target, not past it: the last file takes what is left.
		need := int((full-usedFraction(t, mp))*float64(st.Blocks)*float64(st.Bsize)) + int(st.Bsize)
		n := min(len(chunk), need, int(st.Bavail-1)*int(st.Bsize))
		if n <= 0 {
			break
		}
		writeFile(t, path, chunk[:n])
		os.Chtimes(path, old, old)
		files = append(files, path)
	}
	return files
}

func usedFraction(t *testing.T, mp string) float64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(mp, &st); err != nil {
		t.Fatal(err)
	}
	return 1 - float64(st.Bavail)/float64(st.Blocks)
}

// leakLadder drives the shipped systemd tools the way the shipped
// host_service_memory_leak runbook does, with a one-second verification
// so that the test takes seconds: a restart that does not bring the
// memory down, then MemoryMax at 1.5 times the resident memory, which
// waits for a human.
const leakLadder = `
runbook "leak_ladder" {
  description = "The memory-leak ladder with a short verification."
  matchers = ["alertname=\"LeakLab\""]
  target   = "${labels.name}"
  query "rss" { promql = "process_resident_memory_bytes{job=\"self\"}" }
  when = "len(query.rss) == 1"
  step "restart" {
    tool = "systemd_restart"
    args = { unit = "${labels.name}.service" }
  }
  step "memory_max" {
    tool = "systemd_set_memory_max"
    args = {
      unit       = "${labels.name}.service"
      memory_mib = "${max(64, min(65536, ceil(query.rss[0].value * 1.5 / 1048576)))}"
    }
  }
  verify {
    promql = "vector(1)"
    expect = "after < before / 2"
    worse  = "false"
    wait   = "1s"
  }
}
`

// TestMemoryLeakLadderInServe: through medic serve and a real systemd, the
// restart runs at once; when it does not help, the MemoryMax step waits
// for approval, and once a human approves it systemd reports the new
// limit on the running unit.
func TestMemoryLeakLadderInServe(t *testing.T) {
	t.Parallel()
	sd, bus := startSandbox(t, map[string]string{"leaky.service": "[Unit]\nDefaultDependencies=no\n[Service]\n" +
		"ExecStartPre=/bin/sh -c 'echo start >> /run/medic-test/log'\nExecStart=/bin/sleep 1000\n"})
	startUnits(t, bus, "leaky.service")
	promAddr := startPrometheus(t)
	eventually(t, 20*time.Second, "Prometheus to scrape itself", func() bool {
		return len(promQuery(t, promAddr, `process_resident_memory_bytes{job="self"}`)) == 1
	})
	shipped, err := os.ReadFile("runbooks.hcl")
	if err != nil {
		t.Fatal(err)
	}
	l := newLab(t, string(shipped)+leakLadder, "1h", fmt.Sprintf("systemd_bus = %q", bus))
	l.writeConfig(t, fmt.Sprintf("prometheus { url = \"http://%s\" }", promAddr), labAuth, `approval_ttl = "1h"`, fmt.Sprintf("systemd_bus = %q", bus))
	l.start(t)
	body := `{"version":"4","status":"firing","receiver":"medic","alerts":[{"status":"firing","labels":{"alertname":"LeakLab","name":"leaky"},"startsAt":"2026-11-26T10:00:00Z","fingerprint":"00000000000000e1"}]}`
	if code, out := l.do(t, "POST", "/api/v1/alerts", l.token, json.RawMessage(body)); code != 200 {
		t.Fatalf("post: %d %s", code, out)
	}
	var inc state.Incident
	eventually(t, 30*time.Second, "the MemoryMax step to wait for approval", func() bool {
		for _, i := range l.incidents(t) {
			if hasEvent(i, "approval_pending") {
				inc = i
				return true
			}
		}
		return false
	})
	if b, _ := os.ReadFile(filepath.Join(sd, "log")); string(b) != "start\nstart\n" {
		t.Fatalf("the unit logged %q: want the restart to have run before the approval", b)
	}
	_, approval := l.do(t, "GET", fmt.Sprintf("/api/v1/incidents/%d/approval", inc.ID), l.token, nil)
	var pending struct {
		Data struct {
			Call struct {
				Index int `json:"index"`
				Trace struct {
					Calls []struct {
						Tool      string `json:"tool"`
						Unit      string `json:"unit"`
						MemoryMax uint64 `json:"memory_max"`
					} `json:"calls"`
				} `json:"trace"`
			} `json:"call"`
		} `json:"data"`
	}
	json.Unmarshal(approval, &pending)
	calls := pending.Data.Call.Trace.Calls
	if len(calls) != 2 || pending.Data.Call.Index != 1 {
		t.Fatalf("the approval is not for the second step: %s", approval)
	}
	want := calls[1]
	if want.Tool != "systemd_set_memory_max" || want.Unit != "leaky.service" || want.MemoryMax < 64<<20 || want.MemoryMax%(1<<20) != 0 {
		t.Fatalf("the approval does not show what will run: %s", approval)
	}
	cli := exec.Command(medicBin, "approve", fmt.Sprint(inc.ID), "--medic.url", "http://"+l.addr, "--by", "oncall")
	cli.Env = append(os.Environ(), "MEDIC_APPROVER_TOKEN="+l.approver)
	if out, err := cli.CombinedOutput(); err != nil {
		t.Fatalf("medic approve: %v\n%s", err, out)
	}
	eventually(t, 30*time.Second, "the approved step to run", func() bool {
		out, _ := exec.Command("busctl", "--address="+bus, "get-property", "org.freedesktop.systemd1",
			"/org/freedesktop/systemd1/unit/leaky_2eservice", "org.freedesktop.systemd1.Service", "MemoryMax").Output()
		return strings.TrimSpace(string(out)) == fmt.Sprintf("t %d", want.MemoryMax)
	})
	code, audit := l.do(t, "GET", "/api/v1/audit", l.token, nil)
	if code != 200 || !strings.Contains(string(audit), fmt.Sprintf(`"unit":"leaky.service","action":"set-memory-max","memory_max":%d`, want.MemoryMax)) {
		t.Fatalf("audit %d does not record the limit systemd reports: %s", code, audit)
	}
}

// TestCleanCachesTool runs scripts/tools/medic-clean-caches as the
// clean_package_caches tool does, with an empty environment, in a mount
// namespace of its own where a tmpfs stands in for /var/cache/apt: the
// downloaded packages go, and the test machine's cache is not touched.
func TestCleanCachesTool(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("a mount namespace needs root")
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		t.Skip("no apt-get on this machine")
	}
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", `set -e
mount -t tmpfs medic-test /var/cache/apt
mkdir -p /var/cache/apt/archives/partial
echo deb > /var/cache/apt/archives/old_1.0_amd64.deb
echo part > /var/cache/apt/archives/partial/new_2.0_amd64.deb
env -i "$1"
echo "left: $(find /var/cache/apt -name '*.deb' | wc -l) packages"`, "sh", mustAbs(t, "scripts/tools/medic-clean-caches"))
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "+ apt-get clean\n") || !strings.Contains(string(out), "left: 0 packages") {
		t.Fatalf("medic-clean-caches: %v\n%s", err, out)
	}
}

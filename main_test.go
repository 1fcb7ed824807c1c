package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	crand "crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"medic/engine"
	"medic/state"
)

// The tests in this file run the built binary as a real process, next to a
// real Alertmanager from Debian's prometheus-alertmanager package.

var medicBin string

// faultBin is the binary built with the medicfault tag, whose worker
// stands still while the file named by MEDIC_FAULT_WEDGE_FILE exists; it
// is built once, by faultBinary.
var faultBin struct {
	once sync.Once
	path string
	err  error
}

func faultBinary(t *testing.T) string {
	t.Helper()
	faultBin.once.Do(func() {
		faultBin.path = filepath.Join(filepath.Dir(medicBin), "medic-fault")
		args := []string{"build", "-tags", "medicfault", "-o", faultBin.path}
		if raceBuild {
			args = append(args, "-race")
		}
		if out, err := exec.Command("go", append(args, ".")...).CombinedOutput(); err != nil {
			faultBin.err = fmt.Errorf("%v\n%s", err, out)
		}
	})
	if faultBin.err != nil {
		t.Fatal(faultBin.err)
	}
	return faultBin.path
}

func TestMain(m *testing.M) {
	if addr := os.Getenv(labTargetEnv); addr != "" {
		runLabTarget(addr, os.Getenv("MEDIC_LAB_VALUES"))
		return
	}
	dir, err := os.MkdirTemp("", "medic-bin")
	if err != nil {
		panic(err)
	}
	medicBin = filepath.Join(dir, "medic")
	args := []string{"build", "-o", medicBin}
	if raceBuild {
		// The daemon runs under the race detector as the tests do, and a
		// race ends it at once, so that a test sees it fail.
		args = append(args, "-race")
		os.Setenv("GORACE", "halt_on_error=1")
	}
	out, err := exec.Command("go", append(args, ".")...).CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building medic: %v\n%s", err, out)
		os.Exit(2)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

type proc struct {
	cmd  *exec.Cmd
	log  *bytes.Buffer
	mu   *sync.Mutex
	done chan error
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

func start(t *testing.T, dir string, name string, args ...string) *proc {
	t.Helper()
	return startEnv(t, dir, nil, name, args...)
}

// startEnv is start with variables added to the environment.
func startEnv(t *testing.T, dir string, env []string, name string, args ...string) *proc {
	t.Helper()
	p := &proc{log: new(bytes.Buffer), mu: new(sync.Mutex), done: make(chan error, 1)}
	p.cmd = exec.Command(name, args...)
	p.cmd.Dir = dir
	if env != nil {
		p.cmd.Env = append(os.Environ(), env...)
	}
	p.cmd.Stdout = lockedWriter{p.mu, p.log}
	p.cmd.Stderr = lockedWriter{p.mu, p.log}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", filepath.Base(name), p.output())
		}
	})
	return p
}

// waitReady polls url until it answers 200, the process exits, or a deadline.
func waitReady(t *testing.T, p *proc, url string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-p.done:
			p.done <- err
			t.Fatalf("%s exited before ready: %v\n%s", p.cmd.Path, err, p.output())
		default:
		}
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s not ready at %s", p.cmd.Path, url)
}

func writeFile(t *testing.T, path, content string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// listIncidents reads every incident in full: the list's summaries, page
// by page, then each incident.
func listIncidents(t *testing.T, addr, token, st string) []state.Incident {
	t.Helper()
	getJSON := func(path string, v any) bool {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode == http.StatusNotFound && strings.HasPrefix(path, "/api/v1/incidents/") {
			return false // folded into another incident since the list
		}
		if resp.StatusCode != 200 {
			b, _ := io.ReadAll(resp.Body)
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
		}
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatal(err)
		}
		return true
	}
	var out []state.Incident
	var before uint64
	for {
		var page struct {
			Data []engine.IncidentSummary `json:"data"`
			Next uint64                   `json:"next"`
		}
		path := "/api/v1/incidents?state=" + st
		if before != 0 {
			path += fmt.Sprintf("&before=%d", before)
		}
		getJSON(path, &page)
		for _, s := range page.Data {
			var full struct {
				Data state.Incident `json:"data"`
			}
			if getJSON(fmt.Sprintf("/api/v1/incidents/%d", s.ID), &full) {
				out = append(out, full.Data)
			}
		}
		if before = page.Next; before == 0 {
			return out
		}
	}
}

func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func requireAlertmanager(t *testing.T) string {
	const bin = "/usr/bin/prometheus-alertmanager"
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%s is missing: scripts/test.sh installs Debian's prometheus-alertmanager", bin)
	}
	return bin
}

const alertmanagerConfig = `global:
  resolve_timeout: 5m
route:
  receiver: medic
  group_by: ['alertname', 'instance']
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: medic
    webhook_configs:
      - url: http://%s/api/v1/alerts
        send_resolved: true
        max_alerts: 1000
        http_config:
          authorization:
            credentials_file: %s
`

func postToAlertmanager(t *testing.T, amAddr string, alerts []map[string]any) {
	t.Helper()
	b, _ := json.Marshal(alerts)
	resp, err := http.Post("http://"+amAddr+"/api/v2/alerts", "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("alertmanager: %d %s", resp.StatusCode, body)
	}
}

// TestAlertmanagerIntegration: alerts posted to a real Alertmanager reach a
// real medic as incidents, and close when Alertmanager resolves them.
func TestAlertmanagerIntegration(t *testing.T) {
	amBin := requireAlertmanager(t)
	dir := t.TempDir()
	const token = "integration-token-5f2c"
	tokenFile := writeFile(t, filepath.Join(dir, "token"), token+"\n")
	medicAddr, amAddr := freeAddr(t), freeAddr(t)
	cfg := writeFile(t, filepath.Join(dir, "medic.hcl"), fmt.Sprintf(`
web {
  listen_address    = %q
  bearer_token_file = "token"
}
storage { path = "state/medic.db" }
`, medicAddr))
	medic := start(t, dir, medicBin, "serve", "--config.file", cfg)
	waitReady(t, medic, "http://"+medicAddr+"/-/ready")

	amCfg := writeFile(t, filepath.Join(dir, "alertmanager.yml"), fmt.Sprintf(alertmanagerConfig, medicAddr, tokenFile))
	am := start(t, dir, amBin, "--config.file="+amCfg, "--storage.path="+filepath.Join(dir, "am"),
		"--web.listen-address="+amAddr, "--cluster.listen-address=")
	waitReady(t, am, "http://"+amAddr+"/-/ready")

	now := time.Now().UTC()
	alerts := []map[string]any{}
	for i, name := range []string{"KubePodCrashLooping", "KubePodCrashLooping", "NodeFilesystemAlmostOutOfSpace"} {
		alerts = append(alerts, map[string]any{
			"labels":       map[string]string{"alertname": name, "instance": fmt.Sprintf("node-%d", i), "severity": "critical"},
			"annotations":  map[string]string{"summary": "integration test"},
			"startsAt":     now.Format(time.RFC3339),
			"generatorURL": "http://prometheus.example/graph",
		})
	}
	// Heartbeats and info alerts are ignored by default, but still counted:
	// kube-prometheus' Watchdog and InfoInhibitor, awesome-prometheus-alerts'
	// dead man's switch (at severity critical), an info alert.
	for _, hb := range []map[string]string{
		{"alertname": "Watchdog", "severity": "none"},
		{"alertname": "InfoInhibitor", "severity": "none", "namespace": "shop"},
		{"alertname": "PrometheusAlertmanagerE2eDeadManSwitch", "severity": "critical"},
		{"alertname": "KubeQuotaAlmostFull", "severity": "info", "namespace": "shop"},
	} {
		alerts = append(alerts, map[string]any{"labels": hb, "startsAt": now.Format(time.RFC3339)})
	}
	postToAlertmanager(t, amAddr, alerts)

	eventually(t, 30*time.Second, "3 open incidents", func() bool { return len(listIncidents(t, medicAddr, token, "open")) == 3 })

	// Each alert is an incident of its own (no runbook, different alert
	// name or instance), and its fingerprint is Alertmanager's own.
	resp, err := http.Get("http://" + amAddr + "/api/v2/alerts")
	if err != nil {
		t.Fatal(err)
	}
	var amAlerts []struct {
		Fingerprint string            `json:"fingerprint"`
		Labels      map[string]string `json:"labels"`
	}
	json.NewDecoder(resp.Body).Decode(&amAlerts)
	resp.Body.Close()
	fps := map[string]string{}
	for _, a := range amAlerts {
		fps[a.Fingerprint] = a.Labels["alertname"]
	}
	for _, inc := range listIncidents(t, medicAddr, token, "open") {
		fp := inc.Alerts[0].Fingerprint
		if len(inc.Alerts) != 1 || fps[fp] == "" || inc.Alerts[0].Labels["alertname"] != fps[fp] {
			t.Errorf("incident %d: alert %s is not an Alertmanager fingerprint (%v)", inc.ID, fp, fps)
		}
		if want := engine.GroupKey(engine.DefaultGroupBy, inc.Alerts[0].Labels); inc.Key != want {
			t.Errorf("incident %d key %s, want %s", inc.ID, inc.Key, want)
		}
	}

	// The CLI reads the same API with the token from a file.
	out, err := exec.Command(medicBin, "incidents", "--medic.url", "http://"+medicAddr, "--medic.token-file", tokenFile).CombinedOutput()
	if err != nil || strings.Count(string(out), "  KubePodCrashLooping ") != 2 {
		t.Fatalf("medic incidents: %v\n%s", err, out)
	}
	cli := exec.Command(medicBin, "incidents", "--medic.url", "http://"+medicAddr)
	cli.Env = append(os.Environ(), "MEDIC_TOKEN=wrong")
	if out, err := cli.CombinedOutput(); exitCode(err) != 2 || !strings.Contains(string(out), "401") {
		t.Fatalf("medic incidents with a wrong token: %v\n%s", err, out)
	}

	// Resolve them in Alertmanager: it sends resolved notifications.
	for _, a := range alerts {
		a["endsAt"] = time.Now().UTC().Format(time.RFC3339)
	}
	postToAlertmanager(t, amAddr, alerts)
	eventually(t, 30*time.Second, "3 closed incidents", func() bool {
		return len(listIncidents(t, medicAddr, token, "closed")) == 3 && len(listIncidents(t, medicAddr, token, "open")) == 0
	})

	// Without the token, or with a wrong one, medic answers 401.
	for _, auth := range []string{"", "Bearer wrong", "Bearer " + token + "x"} {
		req, _ := http.NewRequest(http.MethodPost, "http://"+medicAddr+"/api/v1/alerts", strings.NewReader(`{}`))
		req.Header.Set("Content-Type", "application/json")
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("Authorization %q: %d, want 401", auth, resp.StatusCode)
		}
	}
	// Every opening and closing is in the audit log, hash-chained.
	auditOut, err := exec.Command(medicBin, "audit", "--medic.url", "http://"+medicAddr, "--medic.token-file", tokenFile).CombinedOutput()
	if err != nil || strings.Count(string(auditOut), `"event":"opened"`) != 3 || strings.Count(string(auditOut), `"event":"closed"`) != 3 ||
		strings.Count(string(auditOut), `"decision":"escalate"`) != 3 {
		t.Fatalf("medic audit: %v\n%s", err, auditOut)
	}
	verifyOut, err := exec.Command(medicBin, "audit", "--verify", "--medic.url", "http://"+medicAddr, "--medic.token-file", tokenFile).CombinedOutput()
	if err != nil || !strings.Contains(string(verifyOut), "SUCCESS: ") || !strings.Contains(string(verifyOut), "hash chain, MACs and checkpoints intact") {
		t.Fatalf("medic audit --verify: %v\n%s", err, verifyOut)
	}

	eventually(t, 10*time.Second, "the heartbeats to be counted as ignored", func() bool {
		return !strings.Contains(get(t, "http://"+medicAddr+"/metrics"), `medic_alerts_processed_total{result="ignored"} 0`+"\n")
	})
	if all := listIncidents(t, medicAddr, token, "all"); len(all) != 3 {
		t.Fatalf("%d incidents, want 3: the heartbeats open none\n%s", len(all), describe(all))
	}
	for _, want := range []string{`medic_incidents_open 0`, `medic_build_info{`,
		`medic_notifications_received_total{result="unauthorized"} 3`} {
		eventually(t, 10*time.Second, "metric "+want, func() bool {
			return strings.Contains(get(t, "http://"+medicAddr+"/metrics"), want)
		})
	}

}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return -1
}

func notification(fp string) []byte {
	return []byte(fmt.Sprintf(`{"version":"4","groupKey":"{}:{alertname=\"CrashTest\"}","truncatedAlerts":0,"status":"firing","receiver":"medic",`+
		`"groupLabels":{"alertname":"CrashTest"},"commonLabels":{"alertname":"CrashTest"},"commonAnnotations":{},"externalURL":"http://am",`+
		`"alerts":[{"status":"firing","labels":{"alertname":"CrashTest","instance":"%s"},"annotations":{},`+
		`"startsAt":"2026-11-26T10:00:00Z","endsAt":"0001-01-01T00:00:00Z","generatorURL":"","fingerprint":"%s"}]}`, fp, fp))
}

// TestCrashZeroLoss kills medic with SIGKILL at random moments under load
// from 8 concurrent clients, restarts it each time, and checks that every
// notification that got a 200 became an incident.
func TestCrashZeroLoss(t *testing.T) {
	rounds := 20
	if testing.Short() {
		rounds = 3
	}
	dir := t.TempDir()
	addr := freeAddr(t)
	url := "http://" + addr + "/api/v1/alerts"
	var mu sync.Mutex
	acked := map[string]bool{}
	var sent, counter int64
	client := &http.Client{Timeout: 5 * time.Second}
	for round := 0; round < rounds; round++ {
		p := start(t, dir, medicBin, "serve", "--web.listen-address", addr, "--storage.path", "medic.db", "--log.level", "warn")
		waitReady(t, p, "http://"+addr+"/-/ready")
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for c := 0; c < 8; c++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					mu.Lock()
					counter++
					fp := fmt.Sprintf("%016x", counter)
					sent++
					mu.Unlock()
					resp, err := client.Post(url, "application/json", bytes.NewReader(notification(fp)))
					if err != nil {
						continue
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode == 200 {
						mu.Lock()
						acked[fp] = true
						mu.Unlock()
					}
				}
			}()
		}
		time.Sleep(time.Duration(50+rand.IntN(400)) * time.Millisecond)
		p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
		p.done <- nil
		close(stop)
		wg.Wait()
	}
	p := start(t, dir, medicBin, "serve", "--web.listen-address", addr, "--storage.path", "medic.db")
	waitReady(t, p, "http://"+addr+"/-/ready")
	found := map[string]bool{}
	eventually(t, 60*time.Second, "the inbox to drain", func() bool {
		m := get(t, "http://"+addr+"/metrics")
		return strings.Contains(m, "\nmedic_inbox_depth 0\n")
	})
	incs := listIncidents(t, addr, "", "all")
	for _, inc := range incs {
		found[inc.Alerts[0].Fingerprint] = true
		firing := 0
		for _, e := range inc.Timeline {
			if e.Kind == "alert_firing" {
				firing++
			}
		}
		if len(inc.Alerts) != 1 || firing != 1 {
			t.Errorf("incident %d: %d alerts, %d firing events: a notification was applied twice", inc.ID, len(inc.Alerts), firing)
		}
	}
	if len(incs) != len(found) {
		t.Errorf("%d incidents for %d keys: a notification opened two incidents", len(incs), len(found))
	}
	lost := 0
	for fp := range acked {
		if !found[fp] {
			lost++
		}
	}
	t.Logf("crash test: %d rounds of SIGKILL, sent=%d acknowledged=%d found=%d lost=%d", rounds, sent, len(acked), len(found), lost)
	if lost != 0 {
		t.Fatalf("%d acknowledged notifications lost", lost)
	}
	if len(acked) < rounds {
		t.Fatalf("only %d notifications acknowledged in %d rounds: the load did not run", len(acked), rounds)
	}
}

// TestServeLifecycle covers the daemon's operations: defaults without a
// config file, SIGHUP and /-/reload (a bad config keeps the old one), a
// second serve on the same state failing fast, and SIGTERM draining cleanly.
func TestServeLifecycle(t *testing.T) {
	dir := t.TempDir()
	addr := freeAddr(t)
	p := start(t, dir, medicBin, "serve", "--web.listen-address", addr)
	waitReady(t, p, "http://"+addr+"/-/ready")
	if _, err := os.Stat(filepath.Join(dir, "data", "medic.db")); err != nil {
		t.Fatalf("default state file: %v", err)
	}

	// A second daemon on the same state file fails fast with exit 2.
	second := exec.Command(medicBin, "serve", "--web.listen-address", freeAddr(t))
	second.Dir = dir
	t0 := time.Now()
	if out, err := second.CombinedOutput(); exitCode(err) != 2 || !strings.Contains(string(out), "locked") {
		t.Fatalf("second serve: %v\n%s", err, out)
	}
	if d := time.Since(t0); d > 10*time.Second {
		t.Fatalf("second serve took %v to fail", d)
	}

	// SIGTERM drains and exits 0.
	post := func(addr, fp string) int {
		resp, err := http.Post("http://"+addr+"/api/v1/alerts", "application/json", bytes.NewReader(notification(fp)))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post(addr, "00000000000000aa"); code != 200 {
		t.Fatalf("post: %d", code)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		p.done <- err
		if err != nil {
			t.Fatalf("SIGTERM exit: %v\n%s", err, p.output())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no exit after SIGTERM")
	}
	if !strings.Contains(p.output(), "medic stopped") {
		t.Fatalf("no clean stop:\n%s", p.output())
	}

	// Reload: start with a config that ignores CrashTest alerts.
	cfgPath := filepath.Join(dir, "medic.hcl")
	writeFile(t, cfgPath, fmt.Sprintf("web { listen_address = %q }\nintake { ignore = [\"{alertname=\\\"CrashTest\\\"}\"] }\n", addr))
	p = start(t, dir, medicBin, "serve", "--config.file", cfgPath)
	waitReady(t, p, "http://"+addr+"/-/ready")
	if n := len(listIncidents(t, addr, "", "all")); n != 1 {
		t.Fatalf("%d incidents after restart, want the 1 from before", n)
	}
	post(addr, "00000000000000bb")
	eventually(t, 10*time.Second, "the alert to be ignored", func() bool {
		return strings.Contains(get(t, "http://"+addr+"/metrics"), `medic_alerts_processed_total{result="ignored"} 1`)
	})

	// A broken config is refused on SIGHUP; the old one stays.
	writeFile(t, cfgPath, fmt.Sprintf("web { listen_address = %q }\nintake { max_alerts = \"lots\" }\n", addr))
	p.cmd.Process.Signal(syscall.SIGHUP)
	eventually(t, 10*time.Second, "the failed reload", func() bool {
		return strings.Contains(get(t, "http://"+addr+"/metrics"), "medic_config_last_reload_successful 0")
	})
	if !strings.Contains(p.output(), "medic.hcl:2:") {
		t.Fatalf("no file:line diagnostic for the bad reload:\n%s", p.output())
	}
	post(addr, "00000000000000cc")
	eventually(t, 10*time.Second, "the old config to still ignore", func() bool {
		return strings.Contains(get(t, "http://"+addr+"/metrics"), `medic_alerts_processed_total{result="ignored"} 2`)
	})

	// A good config through POST /-/reload: the defaults no longer ignore it.
	writeFile(t, cfgPath, fmt.Sprintf("web { listen_address = %q }\n", addr))
	resp, err := http.Post("http://"+addr+"/-/reload", "", nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("reload: %v %v", err, resp)
	}
	resp.Body.Close()
	post(addr, "00000000000000dd")
	eventually(t, 10*time.Second, "an incident under the new config", func() bool {
		return len(listIncidents(t, addr, "", "open")) == 2
	})
	if !strings.Contains(get(t, "http://"+addr+"/metrics"), "medic_config_last_reload_successful 1") {
		t.Fatal("reload metric not set")
	}
}

func TestServeRefusesExposedListenerWithoutAuth(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(medicBin, "serve", "--web.listen-address", "0.0.0.0:0")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if exitCode(err) != 1 || !strings.Contains(string(out), "no authentication") {
		t.Fatalf("%v\n%s", err, out)
	}
}

func TestCLIUsageErrors(t *testing.T) {
	for _, args := range [][]string{{"bogus"}, {"serve", "--no-such-flag"}, {"incidents", "--state", "maybe"}, {"incidents", "--medic.url", "ftp://x"}} {
		out, err := exec.Command(medicBin, args...).CombinedOutput()
		if exitCode(err) != 2 {
			t.Errorf("medic %v: exit %d, want 2\n%s", args, exitCode(err), out)
		}
	}
	out, err := exec.Command(medicBin, "version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "medic, version") {
		t.Errorf("version: %v %s", err, out)
	}
	// Help and --version are results on stdout, as promtool's and amtool's.
	for _, args := range [][]string{{"--help"}, {"--version"}, {"check", "--help"}} {
		cmd := exec.Command(medicBin, args...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		stdout, err := cmd.Output()
		if err != nil || len(stdout) == 0 || stderr.Len() != 0 {
			t.Errorf("medic %v: %v; stdout %q; stderr %q", args, err, stdout, stderr.String())
		}
	}
	dir := t.TempDir()
	bad := writeFile(t, filepath.Join(dir, "bad.hcl"), "storage {\n  retention = \"soon\"\n}\n")
	out, err = exec.Command(medicBin, "serve", "--config.file", bad).CombinedOutput()
	if exitCode(err) != 1 || !strings.Contains(string(out), "bad.hcl:2:15: error: Invalid duration") {
		t.Errorf("bad config: exit %d\n%s", exitCode(err), out)
	}
}

// TestTLSAndBasicAuth runs medic behind an exporter-toolkit web config with
// TLS and basic auth, and reads it back with `medic incidents
// --http.config.file`, as an operator would.
func TestTLSAndBasicAuth(t *testing.T) {
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), crand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "medic-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(crand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	writeFile(t, filepath.Join(dir, "cert.pem"), string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	writeFile(t, filepath.Join(dir, "key.pem"), string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})))
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret-pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	webCfg := writeFile(t, filepath.Join(dir, "web.yml"), fmt.Sprintf(
		"tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\nbasic_auth_users:\n  alertmanager: %s\n", hash))
	addr := freeAddr(t)
	start(t, dir, medicBin, "serve", "--web.listen-address", addr, "--web.config.file", webCfg)

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 5 * time.Second}
	do := func(method, path, user string, body []byte) int {
		req, _ := http.NewRequest(method, "https://"+addr+path, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if user != "" {
			req.SetBasicAuth(user, "s3cret-pw")
		}
		resp, err := client.Do(req)
		if err != nil {
			return -1
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	eventually(t, 20*time.Second, "medic over TLS", func() bool { return do("GET", "/-/ready", "alertmanager", nil) == 200 })
	if code := do("POST", "/api/v1/alerts", "", notification("00000000000000ee")); code != 401 {
		t.Fatalf("no basic auth: %d, want 401", code)
	}
	if code := do("POST", "/api/v1/alerts", "intruder", notification("00000000000000ee")); code != 401 {
		t.Fatalf("wrong user: %d, want 401", code)
	}
	if code := do("POST", "/api/v1/alerts", "alertmanager", notification("00000000000000ee")); code != 200 {
		t.Fatalf("with basic auth: %d, want 200", code)
	}
	if resp, err := http.Get("http://" + addr + "/-/healthy"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatal("plain HTTP answered 200 on a TLS listener")
		}
	}
	clientCfg := writeFile(t, filepath.Join(dir, "client.yml"),
		"tls_config:\n  ca_file: cert.pem\nbasic_auth:\n  username: alertmanager\n  password: s3cret-pw\n")
	eventually(t, 10*time.Second, "the incident over TLS", func() bool {
		cmd := exec.Command(medicBin, "incidents", "--medic.url", "https://"+addr, "--http.config.file", clientCfg)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		return err == nil && strings.Contains(string(out), "00000000000000ee")
	})
}

// TestCheck runs `medic check` as users and CI do.
func TestCheck(t *testing.T) {
	out, err := exec.Command(medicBin, "check", "runbooks.hcl", "examples/medic.hcl").CombinedOutput()
	if err != nil || strings.Count(string(out), "SUCCESS") != 2 {
		t.Fatalf("check of the shipped files: %v\n%s", err, out)
	}
	out, err = exec.Command(medicBin, "check", "runbooks.hcl", "rules/testdata/bad.unknown_tool.hcl", "rules/testdata/bad.expr_syntax.hcl").CombinedOutput()
	if exitCode(err) != 1 || !strings.Contains(string(out), "rules/testdata/bad.unknown_tool.hcl:15:12: error: Unknown tool") ||
		!strings.Contains(string(out), "rules/testdata/bad.expr_syntax.hcl:14:29: error: Invalid expression") || strings.Count(string(out), "FAILED") != 2 {
		t.Fatalf("check of broken files: exit %d\n%s", exitCode(err), out)
	}
	cmd := exec.Command(medicBin, "check", "--output", "json", "rules/testdata/bad.unknown_tool.hcl")
	stdout, err := cmd.Output()
	var recs []struct {
		File        string `json:"file"`
		Valid       bool   `json:"valid"`
		Diagnostics []struct {
			Summary string `json:"summary"`
			Line    int    `json:"line"`
			Column  int    `json:"column"`
		} `json:"diagnostics"`
	}
	if exitCode(err) != 1 || json.Unmarshal(stdout, &recs) != nil || len(recs) != 1 || recs[0].Valid ||
		len(recs[0].Diagnostics) != 1 || recs[0].Diagnostics[0].Line != 15 || recs[0].Diagnostics[0].Column != 12 {
		t.Fatalf("json: exit %d %s", exitCode(err), stdout)
	}
	if out, err := exec.Command(medicBin, "check", "no/such/file.hcl").CombinedOutput(); exitCode(err) != 1 {
		t.Fatalf("missing file: exit %d %s", exitCode(err), out)
	}
	// A policy named in medic.hcl is compiled, its errors at file:row:col.
	dir := t.TempDir()
	rb, _ := filepath.Abs("runbooks.hcl")
	writeFile(t, filepath.Join(dir, "p.rego"), "package medic.policy\n\nimport rego.v1\n\ndecision := {\"result\": x}\n")
	cfg := writeFile(t, filepath.Join(dir, "m.hcl"), fmt.Sprintf("policy = \"p.rego\"\nrunbooks = [%q]\n", rb))
	out, err = exec.Command(medicBin, "check", cfg).CombinedOutput()
	if exitCode(err) != 1 || !strings.Contains(string(out), "p.rego:5:24: error: Invalid policy: var x is unsafe") {
		t.Fatalf("broken policy: exit %d\n%s", exitCode(err), out)
	}
	// A variable no runbook file declares is an error where the config
	// sets it.
	cfg = writeFile(t, filepath.Join(dir, "v.hcl"), fmt.Sprintf("runbooks = [%q]\nvariables = {\n  kafka_stall_windw = \"5s\"\n}\n", rb))
	out, err = exec.Command(medicBin, "check", cfg).CombinedOutput()
	if exitCode(err) != 1 || !strings.Contains(string(out), "v.hcl:2:13: error: Unknown variable: no runbook file declares variable kafka_stall_windw") {
		t.Fatalf("undeclared variable: exit %d\n%s", exitCode(err), out)
	}
}

// TestExampleFilesPassUpstreamTools checks the shipped Prometheus rules and
// Alertmanager config with promtool and amtool from Debian's packages.
func TestExampleFilesPassUpstreamTools(t *testing.T) {
	for _, c := range [][]string{
		{"/usr/bin/promtool", "check", "rules", "examples/prometheus/medic-rules.yml"},
		{"/usr/bin/amtool", "check-config", "examples/alertmanager.yml"},
	} {
		if _, err := os.Stat(c[0]); err != nil {
			t.Fatalf("%s is missing: scripts/test.sh installs it", c[0])
		}
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			t.Errorf("%v: %v\n%s", c, err, out)
		}
	}
}

// TestReplay runs `medic replay --output json` over examples/replay and
// checks each decision.
func TestReplay(t *testing.T) {
	cases := []struct {
		file, series, decision, runbook string
		argv                            []string
		errText                         string
	}{
		{file: "oom-killed", series: "oom-killed.series.json", decision: "remediate", runbook: "oom_killed_raise_limit",
			argv: []string{"kubectl", "--namespace", "shop", "set", "resources", "deployment/api", "--containers=api", "--limits=memory=640Mi"}},
		{file: "cert-expiring", decision: "remediate", runbook: "certificate_expiring_renew", argv: []string{"cmctl", "renew", "--namespace", "shop", "shop-tls"}},
		{file: "cert-hostile-name", decision: "reject", runbook: "certificate_expiring_renew"},
		{file: "watchdog", decision: "ignore"},
		{file: "unknown-alert", decision: "escalate"},
		{file: "falco", decision: "escalate", runbook: "security_escalate"},
		{file: "malformed", decision: "reject", errText: "alerts[0].labels.pod: control character U+0000 at byte 1"},
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			args := []string{"replay", "--output", "json", "--at", "2026-11-26T12:00:00Z"}
			if tc.series != "" {
				args = append(args, "--series", "examples/replay/"+tc.series)
			}
			args = append(args, "examples/replay/"+tc.file+".json")
			out, err := exec.Command(medicBin, args...).Output()
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			var tr struct {
				Decision string `json:"decision"`
				Error    string `json:"error"`
				Alerts   []struct {
					Runbook string `json:"runbook"`
					Calls   []struct {
						Argv   []string `json:"argv"`
						Policy struct {
							Result string `json:"result"`
						} `json:"policy"`
					} `json:"calls"`
				} `json:"alerts"`
			}
			if err := json.Unmarshal(out, &tr); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			if tr.Decision != tc.decision || tr.Error != tc.errText {
				t.Fatalf("decision %q error %q, want %q %q\n%s", tr.Decision, tr.Error, tc.decision, tc.errText, out)
			}
			if tc.runbook != "" && (len(tr.Alerts) != 1 || tr.Alerts[0].Runbook != tc.runbook) {
				t.Fatalf("runbook: %s", out)
			}
			if tc.argv != nil && (len(tr.Alerts[0].Calls) == 0 || strings.Join(tr.Alerts[0].Calls[0].Argv, " ") != strings.Join(tc.argv, " ") ||
				tr.Alerts[0].Calls[0].Policy.Result != "allow") {
				t.Fatalf("calls: %s", out)
			}
		})
	}
}

// TestReplayHasNoSideEffects: replay executes no tool and leaves a state
// file next to it untouched.
func TestReplayHasNoSideEffects(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "marker")
	writeFile(t, filepath.Join(dir, "runbooks.hcl"), fmt.Sprintf(`
tool "touch_marker" {
  description = "Creates a marker file."
  risk        = "low"
  param "name" { pattern = "[a-z]+" }
  exec {
    command = ["/usr/bin/touch", %q]
  }
}
runbook "marker" {
  description = "Touches the marker."
  matchers = ["alertname=\"Marker\""]
  target = "${labels.name}"
  step "touch" {
    tool = "touch_marker"
    args = { name = "${labels.name}" }
  }
}
`, marker))
	payload := writeFile(t, filepath.Join(dir, "p.json"), `{"version":"4","status":"firing","alerts":[{"status":"firing","labels":{"alertname":"Marker","name":"x"},"startsAt":"2026-11-26T10:00:00Z","fingerprint":"0000000000000001"}]}`)
	// A state file where a daemon would keep one.
	addr := freeAddr(t)
	p := start(t, dir, medicBin, "serve", "--web.listen-address", addr)
	waitReady(t, p, "http://"+addr+"/-/ready")
	p.cmd.Process.Signal(syscall.SIGTERM)
	<-p.done
	p.done <- nil
	db := filepath.Join(dir, "data", "medic.db")
	before, err := os.ReadFile(db)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(medicBin, "replay", "--output", "json", payload)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil || !strings.Contains(string(out), `"decision": "remediate"`) || !strings.Contains(string(out), marker) {
		t.Fatalf("%v\n%s", err, out)
	}
	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		t.Fatal("replay ran the tool")
	}
	// medic test goes down the same path.
	testFile := writeFile(t, filepath.Join(dir, "marker_test.hcl"), `
runbooks = ["runbooks.hcl"]
test "marker" {
  alert {
    labels = { alertname = "Marker", name = "x" }
  }
  expect {
    decision = "remediate"
    calls    = [{ tool = "touch_marker", policy = "allow" }]
  }
}
`)
	if out, err := exec.Command(medicBin, "test", testFile).CombinedOutput(); err != nil || !strings.Contains(string(out), "SUCCESS") {
		t.Fatalf("medic test: %v\n%s", err, out)
	}
	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		t.Fatal("a tool ran")
	}
	after, _ := os.ReadFile(db)
	if !bytes.Equal(before, after) {
		t.Fatal("replay or test changed the state file")
	}
}

// TestMedicTest runs `medic test` on the shipped tests, and on tests with
// wrong expectations to prove the harness fails and names the field.
func TestMedicTest(t *testing.T) {
	out, err := exec.Command(medicBin, "test", "examples/tests/runbooks_test.hcl").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "SUCCESS") {
		t.Fatalf("shipped tests: %v\n%s", err, out)
	}
	// JUnit's time is a plain decimal of seconds: its schema takes no
	// exponent, which tests of microseconds would otherwise get.
	out, err = exec.Command(medicBin, "test", "-o", "junit", "examples/tests/runbooks_test.hcl").Output()
	times := regexp.MustCompile(`time="([^"]*)"`).FindAllStringSubmatch(string(out), -1)
	if err != nil || len(times) == 0 {
		t.Fatalf("junit: %v\n%s", err, out)
	}
	for _, m := range times {
		if !regexp.MustCompile(`^[0-9]+\.[0-9]+$`).MatchString(m[1]) {
			t.Errorf("junit time %q is not a plain decimal", m[1])
		}
	}
	rb, _ := filepath.Abs("runbooks.hcl")
	dir := t.TempDir()
	wrong := writeFile(t, filepath.Join(dir, "wrong_test.hcl"), fmt.Sprintf(`
runbooks = [%q]
test "wrong runbook and args" {
  alert {
    labels = { alertname = "CertManagerCertExpirySoon", exported_namespace = "shop", name = "shop-tls" }
  }
  expect {
    decision = "escalate"
    runbook  = "security_escalate"
    calls = [
      { tool = "cert_manager_renew", args = { namespace = "prod", certificate = "shop-tls" }, policy = "needs_approval" },
    ]
  }
}
test "right" {
  alert {
    labels = { alertname = "Watchdog" }
  }
  expect {
    decision = "ignore"
  }
}
`, rb))
	out, err = exec.Command(medicBin, "test", wrong).CombinedOutput()
	for _, want := range []string{"FAILED", `decision: got "remediate", want "escalate"`, `runbook: got "certificate_expiring_renew", want "security_escalate"`,
		`calls[0].args.namespace: got "shop", want "prod"`, `calls[0].policy: got "allow", want "needs_approval"`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if exitCode(err) != 1 || strings.Contains(string(out), `test "right"`) {
		t.Fatalf("exit %d\n%s", exitCode(err), out)
	}
	// --run selects tests by name.
	if out, err := exec.Command(medicBin, "test", "--run", "^right$", wrong).CombinedOutput(); err != nil || !strings.Contains(string(out), "SUCCESS (1 tests)") {
		t.Fatalf("--run: %v\n%s", err, out)
	}
	// A file that cannot load is exit 2.
	broken := writeFile(t, filepath.Join(dir, "broken_test.hcl"), "runbooks = [\"nope.hcl\"]\n")
	if out, err := exec.Command(medicBin, "test", broken).CombinedOutput(); exitCode(err) != 2 {
		t.Fatalf("broken file: exit %d\n%s", exitCode(err), out)
	}
}

// TestReplayDir replays examples/replay, one payload per shipped runbook
// plus ignore, reject and escalate cases, and checks every decision.
func TestReplayDir(t *testing.T) {
	want := map[string][2]string{
		"ambiguous-multi-signal.json":   {"escalate", "ambiguous_multi_signal"},
		"cert-expiring.json":            {"remediate", "certificate_expiring_renew"},
		"cert-hostile-name.json":        {"reject", "certificate_expiring_renew"},
		"circuit-breaker.json":          {"remediate", "circuit_breaker_slow_downstream"},
		"compliance.json":               {"escalate", "compliance_escalate"},
		"crashloop-oom.json":            {"remediate", "crashloop_oom"},
		"data-corruption.json":          {"escalate", "data_corruption_escalate"},
		"host-filesystem.json":          {"remediate", "host_filesystem_free_space"},
		"falco.json":                    {"escalate", "security_escalate"},
		"kafka-lag-all-partitions.json": {"remediate", "kafka_lag_all_partitions"},
		"kafka-poison-pill.json":        {"remediate", "kafka_poison_pill"},
		"latency-slo.json":              {"remediate", "latency_slo_scale_out"},
		"malformed.json":                {"reject", ""},
		"oom-killed.json":               {"remediate", "oom_killed_raise_limit"},
		"security-category.json":        {"escalate", "security_category_escalate"},
		"unknown-alert.json":            {"escalate", ""},
		"watchdog.json":                 {"ignore", ""},
	}
	out, err := exec.Command(medicBin, "replay", "--dir", "examples/replay", "--at", "2026-11-26T12:00:00Z", "--hostname", "medic-test-host", "--output", "json").Output()
	if err != nil {
		t.Fatal(err)
	}
	var entries []struct {
		File  string `json:"file"`
		Trace struct {
			Decision string `json:"decision"`
			Alerts   []struct {
				Runbook string `json:"runbook"`
			} `json:"alerts"`
		} `json:"trace"`
	}
	if err := json.Unmarshal(out, &entries); err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(want) {
		t.Fatalf("%d payloads replayed, want %d", len(entries), len(want))
	}
	for _, e := range entries {
		w, ok := want[filepath.Base(e.File)]
		runbook := ""
		if len(e.Trace.Alerts) > 0 {
			runbook = e.Trace.Alerts[0].Runbook
		}
		if !ok || e.Trace.Decision != w[0] || runbook != w[1] {
			t.Errorf("%s: %s %q, want %s %q", e.File, e.Trace.Decision, runbook, w[0], w[1])
		}
	}
	// The text summary is a table.
	out, err = exec.Command(medicBin, "replay", "--dir", "examples/replay", "--at", "2026-11-26T12:00:00Z").Output()
	if err != nil || !strings.HasPrefix(string(out), "FILE") || strings.Count(string(out), "\n") != len(want)+1 {
		t.Fatalf("%v\n%s", err, out)
	}
	// One payload or --dir, not both or neither.
	if _, err := exec.Command(medicBin, "replay").CombinedOutput(); exitCode(err) != 2 {
		t.Fatalf("replay without a payload: exit %d", exitCode(err))
	}
}

// TestSystemdNotify runs the binary, built with the medicfault tag, under a
// NOTIFY_SOCKET the test owns, as systemd would.
func TestSystemdNotify(t *testing.T) {
	dir, err := os.MkdirTemp("", "mn") // short: a socket path has a length limit
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	bin := faultBinary(t)
	sock := filepath.Join(dir, "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	msgs := make(chan string, 1000)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	next := func(want string, within time.Duration) string {
		t.Helper()
		deadline := time.After(within)
		for {
			select {
			case m := <-msgs:
				if strings.Contains(m, want) {
					return m
				}
			case <-deadline:
				t.Fatalf("no %q within %v", want, within)
			}
		}
	}
	count := func(want string, during time.Duration) int {
		n := 0
		deadline := time.After(during)
		for {
			select {
			case m := <-msgs:
				if strings.Contains(m, want) {
					n++
				}
			case <-deadline:
				return n
			}
		}
	}

	wedge := filepath.Join(dir, "wedge")
	addr := freeAddr(t)
	cmd := exec.Command(bin, "serve", "--web.listen-address", addr, "--storage.path", filepath.Join(dir, "medic.db"))
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock, "WATCHDOG_USEC=2000000", "MEDIC_FAULT_WEDGE_FILE="+wedge)
	var log lockedWriter
	log.mu, log.b = new(sync.Mutex), new(bytes.Buffer)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()

	ready := next("READY=1", 20*time.Second)
	resp, err := http.Get("http://" + addr + "/-/ready")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("READY=1 (%q) came before /-/ready answered: %v %v", ready, err, resp)
	}
	resp.Body.Close()
	if !strings.Contains(ready, "STATUS=0 open incidents, inbox depth 0") {
		t.Errorf("READY=1 without STATUS: %q", ready)
	}
	if n := count("WATCHDOG=1", 3500*time.Millisecond); n < 2 {
		t.Fatalf("%d watchdog pings in 3.5s at WatchdogSec=2s", n)
	}

	cmd.Process.Signal(syscall.SIGHUP)
	next("RELOADING=1", 5*time.Second)
	next("READY=1", 5*time.Second)

	// Wedge the worker: after a watchdog period the pings stop.
	writeFile(t, wedge, "x")
	time.Sleep(4500 * time.Millisecond)
	for len(msgs) > 0 {
		<-msgs
	}
	if n := count("WATCHDOG=1", 3*time.Second); n != 0 {
		t.Fatalf("%d watchdog pings while the worker is wedged", n)
	}
	os.Remove(wedge)
	next("WATCHDOG=1", 5*time.Second)

	cmd.Process.Signal(syscall.SIGTERM)
	next("STOPPING=1", 10*time.Second)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, log.b.String())
	}
}

// TestSystemdUnit runs systemd-analyze verify on the unit, with the binary
// path pointed at the built binary, and requires an offline security
// exposure of 2.5 or below.
func TestSystemdUnit(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Fatal("systemd-analyze is missing: scripts/test.sh installs systemd")
	}
	src, err := os.ReadFile("scripts/medic.service")
	if err != nil {
		t.Fatal(err)
	}
	unit := writeFile(t, filepath.Join(t.TempDir(), "medic.service"), strings.ReplaceAll(string(src), "/usr/local/bin/medic", medicBin))
	if out, err := exec.Command("systemd-analyze", "verify", unit).CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	out, err := exec.Command("systemd-analyze", "security", "--offline=true", unit).CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	i := bytes.Index(out, []byte("Overall exposure level for medic.service: "))
	if i < 0 {
		t.Fatalf("no exposure level:\n%s", out)
	}
	fields := strings.Fields(string(out[i:]))
	score, err := strconv.ParseFloat(fields[5], 64)
	if err != nil {
		t.Fatalf("%v: %q", err, fields)
	}
	t.Logf("systemd-analyze security --offline=true: exposure %.1f", score)
	if score > 2.5 {
		t.Fatalf("exposure %.1f is above 2.5", score)
	}
}

// TestInstallScript installs into a temporary root, checks the layout and
// modes, runs again without touching the token, and uninstalls keeping the
// state, then purges.
func TestInstallScript(t *testing.T) {
	root, kafkaTool := t.TempDir(), filepath.Join(t.TempDir(), "medic-kafka-dead-letter")
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("scripts/install.sh", args...)
		// install.sh builds the Kafka tool where MEDIC_KAFKA_TOOL says.
		cmd.Env = append(os.Environ(), "DESTDIR="+root, "MEDIC_BIN="+medicBin, "MEDIC_KAFKA_TOOL="+kafkaTool)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("install.sh %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	run()
	modes := map[string]os.FileMode{
		"usr/local/bin/medic":                         0o755,
		"etc/systemd/system/medic.service":            0o644,
		"usr/lib/medic/tools/medic-kafka-dead-letter": 0o755,
		"usr/lib/medic/tools/medic-clean-caches":      0o755,
		"etc/medic":                                   0o750 | os.ModeDir,
		"etc/medic/medic.hcl":                         0o640,
		"etc/medic/runbooks.hcl":                      0o640,
		"etc/medic/token":                             0o600,
		"var/lib/medic":                               0o700 | os.ModeDir,
	}
	for p, want := range modes {
		fi, err := os.Stat(filepath.Join(root, p))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v", p, fi.Mode(), want)
		}
	}
	tok, _ := os.ReadFile(filepath.Join(root, "etc/medic/token"))
	if len(strings.TrimSpace(string(tok))) != 64 {
		t.Fatalf("token %q", tok)
	}
	// The installed config is valid.
	if out, err := exec.Command(medicBin, "check", filepath.Join(root, "etc/medic/medic.hcl")).CombinedOutput(); err != nil {
		t.Fatalf("medic check on the installed config: %v\n%s", err, out)
	}
	// Idempotent: a second run keeps the token and an edited config.
	writeFile(t, filepath.Join(root, "etc/medic/medic.hcl"), "# edited\n")
	writeFile(t, filepath.Join(root, "var/lib/medic/medic.db"), "state")
	run()
	tok2, _ := os.ReadFile(filepath.Join(root, "etc/medic/token"))
	cfg, _ := os.ReadFile(filepath.Join(root, "etc/medic/medic.hcl"))
	if string(tok2) != string(tok) || string(cfg) != "# edited\n" {
		t.Fatal("a second install changed the token or the config")
	}
	run("--uninstall")
	for _, p := range []string{"usr/local/bin/medic", "etc/systemd/system/medic.service"} {
		if _, err := os.Stat(filepath.Join(root, p)); !os.IsNotExist(err) {
			t.Errorf("%s survived --uninstall", p)
		}
	}
	if b, err := os.ReadFile(filepath.Join(root, "var/lib/medic/medic.db")); err != nil || string(b) != "state" {
		t.Fatal("--uninstall lost the state")
	}
	run("--uninstall", "--purge")
	for _, p := range []string{"etc/medic", "var/lib/medic"} {
		if _, err := os.Stat(filepath.Join(root, p)); !os.IsNotExist(err) {
			t.Errorf("%s survived --purge", p)
		}
	}
}

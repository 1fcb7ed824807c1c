package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"medic/state"
)

// The tests in this file show that the guards the README promises hold in
// a running `medic serve`, fed by real components.

// startPrometheus runs Debian's Prometheus with its own data on a free
// port, scraping only itself, and returns its address.
func startPrometheus(t *testing.T) string {
	t.Helper()
	addr, _ := startPrometheusProc(t)
	return addr
}

// startPrometheusProc is startPrometheus, with the process, for a test
// that stops and continues it.
func startPrometheusProc(t *testing.T) (string, *proc) {
	t.Helper()
	const bin = "/usr/bin/prometheus"
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%s is missing: scripts/test.sh installs Debian's prometheus", bin)
	}
	dir := t.TempDir()
	addr := freeAddr(t)
	cfg := writeFile(t, filepath.Join(dir, "prometheus.yml"), fmt.Sprintf(`global:
  scrape_interval: 1s
scrape_configs:
  - job_name: self
    static_configs:
      - targets: [%q]
`, addr))
	p := start(t, dir, bin, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "tsdb"), "--web.listen-address="+addr)
	waitReady(t, p, "http://"+addr+"/-/ready")
	return addr, p
}

// recordTool records that it ran, in the lab's count file.
const recordTool = `
tool "record" {
  description = "Records that it ran."
  risk        = "low"
  param "name" { pattern = "^[a-z]+$" }
  exec { command = ["SCRIPT", "COUNT", "0"] }
}
`

const lagRunbook = recordTool + `
runbook "lag" {
  description = "A consumer lags on a topic."
  matchers = ["alertname=\"Lab\""]
  target = "${labels.name}"
  query "lag" { promql = "sum(kafka_consumergroup_lag{topic=\"${labels.topic}\"})" }
  when = "len(query.lag) > 0 && query.lag[0].value > 1000"
  step "record" {
    tool = "record"
    args = { name = "${labels.name}" }
  }
}
`

// TestQueryInjection: a label value written to break out of its PromQL
// string literal (and add a constant 5000 of lag) decides exactly as an
// honest value with no data does, against a real Prometheus.
func TestQueryInjection(t *testing.T) {
	t.Parallel()
	promAddr := startPrometheus(t)
	l := newLab(t, lagRunbook, "1h")
	l.writeConfig(t, fmt.Sprintf("prometheus { url = \"http://%s\" }", promAddr), labAuth, `approval_ttl = "1h"`)
	l.start(t)
	decisions := map[string]string{}
	for i, topic := range []string{"orders", `orders"} or label_replace(vector(5000), "topic", "x", "", "") or {x="y`} {
		fp := fmt.Sprintf("00000000000000e%d", i)
		l.postAlert(t, "firing", fp, time.Now().Add(-time.Minute), map[string]string{"alertname": "Lab", "name": "shop", "topic": topic})
		inc := l.latest(t, fp, "escalated")
		decisions[topic] = lastEvent(inc, "escalated")
	}
	if len(l.runs(t)) != 0 {
		t.Fatalf("the forged lag made medic act: %d runs", len(l.runs(t)))
	}
	var got []string
	for _, d := range decisions {
		got = append(got, d)
	}
	if got[0] != got[1] || !strings.Contains(got[0], "no runbook matched") {
		t.Fatalf("the decisions differ:\n%s", strings.Join(got, "\n"))
	}
}

const policyRunbook = `
tool "record" {
  description = "Records that it ran."
  risk        = "RISK"
  param "name" { pattern = "^[a-z0-9]+$" }
  exec { command = ["SCRIPT", "COUNT", "0"] }
  IDEMPOTENCY
}
runbook "lab" {
  description = "The lab runbook."
  matchers = ["alertname=\"Lab\""]
  target = "${labels.name}"
  EXTRA
  step "record" {
    tool = "record"
    args = { name = "${labels.name}" }
  }
}
`

// settled waits until the newest incident of fp was decided one way or
// another, and returns it.
func (l *remediationLab) settled(t *testing.T, fp string) state.Incident {
	t.Helper()
	var found state.Incident
	eventually(t, 30*time.Second, fp+" to be decided", func() bool {
		for _, inc := range l.incidents(t) {
			if holds(inc, fp) && (hasEvent(inc, "escalated") || hasEvent(inc, "approval_pending") || hasEvent(inc, "action_succeeded") || hasEvent(inc, "action_failed")) {
				found = inc
				return true
			}
		}
		return false
	})
	return found
}

// TestDefaultPolicyInServe drives every rule of the default policy through
// a running medic serve, with the counts taken from its own journal: each
// case shows the verdict in the audit log and how many times the tool ran.
func TestDefaultPolicyInServe(t *testing.T) {
	t.Parallel()
	promAddr := startPrometheus(t)
	type alert struct{ name, severity string }
	cases := []struct {
		name                   string
		risk, idempotency      string
		extra, top             string
		remediation            []string
		alerts                 []alert
		flood                  int
		runs                   int
		lastEvent, auditReason string
	}{
		{name: "4th execution on a target in the hour", alerts: []alert{{"shop", "warning"}, {"shop", "warning"}, {"shop", "warning"}, {"shop", "warning"}},
			runs: 3, lastEvent: "escalated", auditReason: "rate limit: 3 executions of record on shop in the last hour (at most 3)"},
		{name: "over 20% of a declared fleet", extra: `blast_radius { fleet = "vector(10)" }`,
			alerts: []alert{{"a", "warning"}, {"b", "warning"}, {"c", "warning"}},
			runs:   2, lastEvent: "escalated", auditReason: "blast radius: 3 of 10 targets"},
		{name: "spread with no fleet", top: "policy_config { max_targets_per_hour = 2 }",
			alerts: []alert{{"a", "warning"}, {"b", "warning"}, {"c", "warning"}},
			runs:   2, lastEvent: "escalated", auditReason: "spread: 3 distinct targets in an hour with no known fleet size (at most 2)"},
		{name: "peak hours on a critical service", extra: `critical = "labels.severity == 'critical'"`,
			top:    "policy_config {\n  peak_hours {\n    start    = 0\n    end      = 24\n    timezone = \"UTC\"\n  }\n}",
			alerts: []alert{{"a", "warning"}, {"b", "critical"}},
			runs:   1, lastEvent: "approval_pending", auditReason: "peak hours (0 to 24, UTC) on a critical service"},
		{name: "idempotent repeat", idempotency: "idempotency_key = \"record/${param.name}\"\n  idempotency_window = \"1h\"",
			alerts: []alert{{"shop", "warning"}, {"shop", "warning"}},
			runs:   1, lastEvent: "escalated", auditReason: "idempotent repeat: record/shop already ran within its window"},
		{name: "medium risk below 0.75", risk: "medium", extra: "confidence = \"0.7\"\n  threshold = 0.5",
			alerts: []alert{{"a", "warning"}}, runs: 0, lastEvent: "escalated", auditReason: "confidence 0.7 is below 0.75"},
		{name: "high risk", risk: "high", alerts: []alert{{"a", "warning"}},
			runs: 0, lastEvent: "approval_pending", auditReason: "high-risk tools always need approval"},
		{name: "storm brake under a flood", top: "policy_config { max_targets_per_hour = 100 }", remediation: []string{"parallel = 16"},
			flood: 40, runs: 10, lastEvent: "approval_pending", auditReason: "storm brake: 10 actions across the fleet in 10 minutes (limit 10)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			risk := tc.risk
			if risk == "" {
				risk = "low"
			}
			rb := strings.NewReplacer("RISK", risk, "IDEMPOTENCY", tc.idempotency, "EXTRA", tc.extra).Replace(policyRunbook)
			l := newLab(t, rb, "1h")
			top := fmt.Sprintf("prometheus { url = \"http://%s\" }\n%s", promAddr, tc.top)
			l.writeConfig(t, top, labAuth, append([]string{`approval_ttl = "1h"`}, tc.remediation...)...)
			l.start(t)
			var last state.Incident
			for i, a := range tc.alerts {
				fp := fmt.Sprintf("00000000000001%02x", i)
				labels := map[string]string{"alertname": "Lab", "name": a.name, "severity": a.severity}
				started := time.Now().Add(-time.Minute)
				l.postAlert(t, "firing", fp, started, labels)
				last = l.settled(t, fp)
				if i < len(tc.alerts)-1 {
					// Resolved, so that the next alert on the target opens
					// an incident of its own instead of joining this one.
					l.postAlert(t, "resolved", fp, started, labels)
					eventually(t, 20*time.Second, "the close", func() bool { return l.incident(t, last.ID).State == state.StateClosed })
				}
			}
			if tc.flood > 0 {
				var alerts []string
				for i := range tc.flood {
					alerts = append(alerts, fmt.Sprintf(`{"status":"firing","labels":{"alertname":"Lab","name":"t%d"},"startsAt":%q,"fingerprint":"%016x"}`,
						i, time.Now().Add(-time.Minute).UTC().Format(time.RFC3339), 0x200+i))
				}
				code, body := l.do(t, "POST", "/api/v1/alerts", l.token,
					json.RawMessage(`{"version":"4","status":"firing","receiver":"medic","alerts":[`+strings.Join(alerts, ",")+`]}`))
				if code != 200 {
					t.Fatalf("flood: %d %s", code, body)
				}
				for i := range tc.flood {
					if inc := l.settled(t, fmt.Sprintf("%016x", 0x200+i)); hasEvent(inc, tc.lastEvent) {
						last = inc
					}
				}
			}
			if n := len(l.runs(t)); n != tc.runs {
				t.Errorf("the tool ran %d times, want %d", n, tc.runs)
			}
			if !hasEvent(last, tc.lastEvent) {
				t.Errorf("the last incident's timeline %+v has no %s", last.Timeline, tc.lastEvent)
			}
			_, audit := l.do(t, "GET", "/api/v1/audit", l.token, nil)
			if !strings.Contains(string(audit), tc.auditReason) {
				t.Errorf("the audit log has no %q:\n%s", tc.auditReason, audit)
			}
		})
	}
}

// procStatus reads one field of a process's /proc status, in KiB: VmHWM is
// the peak resident set, RssAnon the memory that is not the state file's
// mapping.
func procStatus(t *testing.T, pid int, field string) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == field+":" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	t.Fatalf("no %s", field)
	return 0
}

func vmHWM(t *testing.T, pid int) int { return procStatus(t, pid, "VmHWM") }

// peakAnon samples a process's anonymous memory until stop is closed and
// returns the highest value seen, in KiB.
func peakAnon(t *testing.T, pid int, stop <-chan struct{}) <-chan int {
	out := make(chan int, 1)
	go func() {
		peak := 0
		for {
			peak = max(peak, procStatus(t, pid, "RssAnon"))
			select {
			case <-stop:
				out <- peak
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	return out
}

// TestIncidentListIsPaged: over 150 incidents with the largest annotations
// the intake takes, a list is a page of summaries, bounded in size, with a
// cursor to the next page.
func TestIncidentListIsPaged(t *testing.T) {
	t.Parallel()
	l := newLab(t, strings.Replace(slowRunbook, "SLEEP", "0", 1), "1h")
	p := l.start(t)
	big := strings.Repeat("x", 16000)
	ann := map[string]string{}
	for i := range 8 {
		ann[fmt.Sprintf("a%d", i)] = big
	}
	for i := range 150 {
		a := map[string]any{"status": "firing", "labels": map[string]string{"alertname": "Other", "n": strconv.Itoa(i)}, "annotations": ann,
			"startsAt": time.Now().UTC().Format(time.RFC3339), "fingerprint": fmt.Sprintf("%016x", 0x300+i)}
		body, _ := json.Marshal(map[string]any{"version": "4", "status": "firing", "receiver": "medic", "alerts": []any{a}})
		if code, resp := l.do(t, "POST", "/api/v1/alerts", l.token, json.RawMessage(body)); code != 200 {
			t.Fatalf("post: %d %s", code, resp)
		}
	}
	type page struct {
		Data []json.RawMessage `json:"data"`
		Next uint64            `json:"next"`
	}
	var first page
	eventually(t, 30*time.Second, "150 incidents", func() bool {
		code, body := l.do(t, "GET", "/api/v1/incidents?state=all&limit=1000", l.token, nil)
		return code == 200 && json.Unmarshal(body, &first) == nil && len(first.Data) == 150
	})
	before := vmHWM(t, p.cmd.Process.Pid)
	var sizes []int
	var wg sync.WaitGroup
	var mu sync.Mutex
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, body := l.do(t, "GET", "/api/v1/incidents?state=all", l.token, nil)
			mu.Lock()
			sizes = append(sizes, len(body))
			mu.Unlock()
		}()
	}
	wg.Wait()
	t.Logf("peak RSS %d KiB before 8 concurrent lists, %d KiB after; responses of %v bytes", before, vmHWM(t, p.cmd.Process.Pid), sizes)
	code, body := l.do(t, "GET", "/api/v1/incidents?state=all", l.token, nil)
	var pg page
	if code != 200 || json.Unmarshal(body, &pg) != nil || len(pg.Data) != 100 || pg.Next == 0 {
		t.Fatalf("first page: %d, %d incidents, next %d", code, len(pg.Data), pg.Next)
	}
	if len(body) > 100*1024 || strings.Contains(string(body), big[:100]) {
		t.Fatalf("a page of summaries is %d bytes, or holds annotations", len(body))
	}
	_, body = l.do(t, "GET", fmt.Sprintf("/api/v1/incidents?state=all&before=%d", pg.Next), l.token, nil)
	var rest page
	if json.Unmarshal(body, &rest) != nil || len(rest.Data) != 50 || rest.Next != 0 {
		t.Fatalf("second page: %d incidents, next %d", len(rest.Data), rest.Next)
	}
	for _, q := range []string{"limit=1001", "limit=0", "before=x"} {
		if code, _ := l.do(t, "GET", "/api/v1/incidents?"+q, l.token, nil); code != 400 {
			t.Errorf("?%s: %d, want 400", q, code)
		}
	}
}

// postBig posts one alert with the largest annotations the intake takes,
// under a deadline, and reports whether medic answered 200 in time.
func (l *remediationLab) postBig(t *testing.T, i int) bool {
	t.Helper()
	ann := map[string]string{}
	for k := range 8 {
		ann[fmt.Sprintf("a%d", k)] = strings.Repeat(string(rune('a'+i%26)), 16000)
	}
	a := map[string]any{"status": "firing", "labels": map[string]string{"alertname": "Other", "n": strconv.Itoa(i)}, "annotations": ann,
		"startsAt": time.Now().UTC().Format(time.RFC3339), "fingerprint": fmt.Sprintf("%016x", 0x1000+i)}
	body, _ := json.Marshal(map[string]any{"version": "4", "status": "firing", "receiver": "medic", "alerts": []any{a}})
	req, _ := http.NewRequest(http.MethodPost, "http://"+l.addr+"/api/v1/alerts", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+l.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == 200
}

// TestStalledBackupHoldsNothingUp: a client that starts a backup and never
// reads does not stop intake from growing the state file.
func TestStalledBackupHoldsNothingUp(t *testing.T) {
	t.Parallel()
	l := newLab(t, strings.Replace(slowRunbook, "SLEEP", "0", 1), "1h")
	l.start(t)
	for i := range 150 {
		if !l.postBig(t, i) {
			t.Fatalf("post %d before the backup failed", i)
		}
	}
	conn, err := net.Dial("tcp", l.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /api/v1/admin/backup HTTP/1.1\r\nHost: medic\r\nAuthorization: Bearer %s\r\n\r\n", l.token)
	// The first bytes arrive, then the client reads no more.
	if _, err := conn.Read(make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(l.dir, "medic.db")
	fi, _ := os.Stat(db)
	start := fi.Size()
	for i := 150; i < 600; i++ {
		if !l.postBig(t, i) {
			fi, _ := os.Stat(db)
			t.Fatalf("post %d hung behind the stalled backup (state file %d MB, %d MB when the backup began)", i, fi.Size()>>20, start>>20)
		}
	}
	fi, _ = os.Stat(db)
	t.Logf("the state file grew from %d to %d MB while the backup stalled", start>>20, fi.Size()>>20)
	if code, _ := l.do(t, "GET", "/api/v1/incidents?limit=1", l.token, nil); code != 200 {
		t.Fatalf("list after the stalled backup: %d", code)
	}
	code, body := l.do(t, "GET", "/api/v1/admin/backup", l.token, nil)
	if code != http.StatusServiceUnavailable {
		t.Fatalf("a second backup while one runs: %d %.100s, want 503", code, body)
	}
}

// TestIntakeShedsPastItsMemoryBudget: a burst of the largest notifications
// is bounded: the ones past the budget get 503 with Retry-After, as
// Alertmanager expects, and each is accepted when sent again.
func TestIntakeShedsPastItsMemoryBudget(t *testing.T) {
	t.Parallel()
	l := newLab(t, strings.Replace(slowRunbook, "SLEEP", "0", 1), "1h")
	p := l.start(t)
	ann := strings.Repeat("y", 16000)
	var alerts []string
	for i := range 500 {
		alerts = append(alerts, fmt.Sprintf(`{"status":"firing","labels":{"alertname":"Other","n":"%d"},"annotations":{"a":%q},"startsAt":"2026-11-26T10:00:00Z","fingerprint":"%016x"}`, i%5, ann, 0x5000+i%5))
	}
	body := []byte(`{"version":"4","status":"firing","receiver":"medic","alerts":[` + strings.Join(alerts, ",") + `]}`)
	t.Logf("%d notifications of %.1f MB at once", 12, float64(len(body))/(1<<20))
	stop := make(chan struct{})
	peak := peakAnon(t, p.cmd.Process.Pid, stop)
	post := func() (int, string) {
		req, _ := http.NewRequest(http.MethodPost, "http://"+l.addr+"/api/v1/alerts", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+l.token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Error(err)
			return 0, ""
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("Retry-After")
	}
	var mu sync.Mutex
	codes := map[int]int{}
	var wg sync.WaitGroup
	for range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, retry := post()
			if code == http.StatusServiceUnavailable && retry == "" {
				t.Error("503 without Retry-After")
			}
			for code == http.StatusServiceUnavailable {
				time.Sleep(100 * time.Millisecond)
				code, _ = post()
			}
			mu.Lock()
			codes[code]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	close(stop)
	t.Logf("peak anonymous memory during the burst: %d KiB", <-peak)
	if codes[200] != 12 {
		t.Fatalf("answers after retries: %v, want 12 × 200", codes)
	}
	m := get(t, "http://"+l.addr+"/metrics")
	if !strings.Contains(m, `medic_notifications_received_total{result="overloaded"}`) || strings.Contains(m, `medic_notifications_received_total{result="overloaded"} 0`) {
		t.Fatalf("no notification was shed:\n%s", grepLines(m, "medic_notifications_received_total"))
	}
}

// TestIdleConnectionsLeaveRoomForTools: 1,100 idle connections to a medic
// whose file descriptor limit is 1,024 do not starve a remediation that
// becomes due meanwhile.
func TestIdleConnectionsLeaveRoomForTools(t *testing.T) {
	t.Parallel()
	prlimit, err := exec.LookPath("prlimit")
	if err != nil {
		t.Fatal("prlimit (util-linux) is missing")
	}
	l := newLab(t, strings.Replace(strings.Replace(slowRunbook, "SLEEP", "0", 1), `target = "${labels.name}"`, "target = \"${labels.name}\"\n  min_firing = \"4s\"", 1), "1h")
	p := start(t, l.dir, prlimit, "--nofile=1024:1024", medicBin, "serve", "--config.file", filepath.Join(l.dir, "medic.hcl"))
	waitReady(t, p, "http://"+l.addr+"/-/ready")
	l.postAlert(t, "firing", "00000000000006a1", time.Now(), map[string]string{"alertname": "Lab", "name": "shop"})
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range 1100 {
		c, err := net.Dial("tcp", l.addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	eventually(t, 20*time.Second, "the held step to run", func() bool { return len(l.runs(t)) == 1 })
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	inc := l.settled(t, "00000000000006a1")
	if !hasEvent(inc, "action_succeeded") {
		t.Fatalf("timeline %+v", inc.Timeline)
	}
}

// TestDamagedStateFile: a truncated state file, one with random bytes in
// the middle, and one whose meta pages are gone each stop medic serve at
// start with exit 1 and a message that names the file, the damage and the
// way back; never a panic or a fault. medic storage check says the same.
// treePages lists the offsets of a bbolt file's branch and leaf pages
// between from and to, walking the page headers from the first page after
// the meta pages and skipping each page's overflow.
func treePages(b []byte, from, to int64) []int64 {
	var out []int64
	for off := int64(2 * 4096); off+4096 <= int64(len(b)); {
		flags := binary.LittleEndian.Uint16(b[off+8:])
		overflow := int64(binary.LittleEndian.Uint32(b[off+12:]))
		if (flags == 0x01 || flags == 0x02) && off >= from && off < to {
			out = append(out, off)
		}
		if flags&0x17 == 0 || overflow < 0 || overflow > int64(len(b))/4096 {
			overflow = 0 // a free page's leftovers: step one page
		}
		off += (overflow + 1) * 4096
	}
	return out
}

func TestDamagedStateFile(t *testing.T) {
	t.Parallel()
	l := newLab(t, strings.Replace(slowRunbook, "SLEEP", "0", 1), "1h")
	p := l.start(t)
	for i := range 40 {
		if !l.postBig(t, i) {
			t.Fatalf("post %d failed", i)
		}
	}
	eventually(t, 20*time.Second, "the inbox to drain", func() bool {
		return strings.Contains(get(t, "http://"+l.addr+"/metrics"), "medic_inbox_depth 0")
	})
	p.cmd.Process.Signal(syscall.SIGTERM)
	<-p.done
	p.done <- nil
	db := filepath.Join(l.dir, "medic.db")
	good, err := os.ReadFile(db)
	if err != nil {
		t.Fatal(err)
	}
	// The newest meta page's high-water mark: the pages in use.
	hwm := int64(binary.LittleEndian.Uint64(good[16+40:])) * 4096
	if alt := int64(binary.LittleEndian.Uint64(good[4096+16+40:])) * 4096; alt > hwm {
		hwm = alt
	}
	if hwm < 1<<20 {
		t.Fatalf("only %d bytes in use", hwm)
	}
	noise := make([]byte, 64*4096)
	for i := range noise {
		noise[i] = byte(i*7919 + i>>8)
	}
	for _, tc := range []struct {
		name, want string
		damage     func(b []byte) []byte
	}{
		{"truncated", "it was truncated", func(b []byte) []byte { return b[:hwm/2] }},
		{"random bytes in the middle", "the state file is damaged", func(b []byte) []byte {
			// Noise over the branch and leaf pages of the file's middle
			// half: bytes inside a value (most of this file is the posts'
			// overflow pages) are data, which no structural check can
			// tell from good data, so where the noise lands must not
			// depend on how the commits happened to lay the file out.
			for _, off := range treePages(b[:hwm], hwm/4, 3*hwm/4) {
				copy(b[off:off+4096], noise)
			}
			return b
		}},
		{"meta pages overwritten", "has no bbolt marker", func(b []byte) []byte {
			copy(b, noise[:8192])
			return b
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			writeFile(t, db, string(tc.damage(append([]byte(nil), good...))))
			out, err := exec.Command(medicBin, "serve", "--config.file", filepath.Join(l.dir, "medic.hcl")).CombinedOutput()
			if exitCode(err) != 1 || !strings.Contains(string(out), tc.want) || !strings.Contains(string(out), "restore the last backup") ||
				!strings.Contains(string(out), db) {
				t.Fatalf("serve: exit %d, want 1 with %q, the file and the recovery:\n%s", exitCode(err), tc.want, out)
			}
			if strings.Contains(string(out), "\ngoroutine ") || strings.Contains(string(out), "SIGBUS") && !strings.Contains(string(out), "crashed the check") {
				t.Fatalf("serve crashed:\n%s", out)
			}
			out, err = exec.Command(medicBin, "storage", "check", "--storage.path", db).CombinedOutput()
			t.Logf("medic storage check: exit %d: %s", exitCode(err), bytes.TrimSpace(out))
			if exitCode(err) != 1 || !strings.Contains(string(out), tc.want) {
				t.Fatalf("storage check: exit %d, want 1 with %q", exitCode(err), tc.want)
			}
		})
	}
	writeFile(t, db, string(good))
	if out, err := exec.Command(medicBin, "storage", "check", "--storage.path", db).CombinedOutput(); err != nil || !strings.Contains(string(out), "OK") {
		t.Fatalf("storage check of the intact file: %v\n%s", err, out)
	}
}

// approvalRunbooks: a high-risk step that waits for a human, and a slow
// low-risk one on the same target that keeps it busy.
const approvalRunbooks = riskyRunbook + `
tool "slow" {
  description = "Takes three seconds."
  risk        = "low"
  param "name" { pattern = "[a-z]+" }
  exec { command = ["SCRIPT", "COUNT", "3"] }
}
runbook "busy" {
  description = "Keeps the target busy."
  matchers = ["alertname=\"Busy\""]
  target = "${labels.name}"
  step "slow" {
    tool = "slow"
    args = { name = "${labels.name}" }
  }
}
`

// pendingApproval posts the high-risk alert and waits for its approval.
func (l *remediationLab) pendingApproval(t *testing.T, name, fp string) uint64 {
	t.Helper()
	l.postAlert(t, "firing", fp, time.Now().Add(-time.Minute), map[string]string{"alertname": "Lab", "name": name})
	inc := l.settled(t, fp)
	if !hasEvent(inc, "approval_pending") {
		t.Fatalf("no pending approval: %+v", inc.Timeline)
	}
	return inc.ID
}

// editRunbooks replaces every old with new in the lab's runbook file.
func (l *remediationLab) editRunbooks(t *testing.T, old, new string) {
	t.Helper()
	path := filepath.Join(l.dir, "runbooks.hcl")
	rb, err := os.ReadFile(path)
	if err != nil || !strings.Contains(string(rb), old) {
		t.Fatalf("runbooks.hcl has no %q: %v", old, err)
	}
	writeFile(t, path, strings.ReplaceAll(string(rb), old, new))
}

// apiData is the data of a GET of the lab's API.
func apiData[T any](t *testing.T, l *remediationLab, path string) T {
	t.Helper()
	var resp struct{ Data T }
	_, body := l.do(t, "GET", path, l.token, nil)
	if err := json.Unmarshal(body, &resp); err != nil {
		t.Fatal(err)
	}
	return resp.Data
}

func (l *remediationLab) approval(t *testing.T, id uint64) state.Approval {
	t.Helper()
	return apiData[state.Approval](t, l, fmt.Sprintf("/api/v1/incidents/%d/approval", id))
}

func (l *remediationLab) incident(t *testing.T, id uint64) state.Incident {
	t.Helper()
	return apiData[state.Incident](t, l, fmt.Sprintf("/api/v1/incidents/%d", id))
}

// TestApprovalsInServe: an approval is a state machine that never runs a
// stale call and never leaves an incident without an outcome.
func TestApprovalsInServe(t *testing.T) {
	t.Parallel()
	approve := func(l *remediationLab, id uint64) (int, string) {
		code, body := l.do(t, "POST", fmt.Sprintf("/api/v1/incidents/%d/approve", id), l.approver, nil)
		return code, string(body)
	}
	t.Run("tool renamed by a reload", func(t *testing.T) {
		t.Parallel()
		l := newLab(t, riskyRunbook, "1h")
		p := l.start(t)
		id := l.pendingApproval(t, "shop", "00000000000007a1")
		l.editRunbooks(t, `"record"`, `"record2"`)
		if code, body := l.reload(t); code != 200 {
			t.Fatalf("reload: %d %s", code, body)
		}
		code, body := approve(l, id)
		if code != http.StatusConflict || !strings.Contains(body, `unknown tool \"record\"`) {
			t.Fatalf("approve: %d %s", code, body)
		}
		if a := l.approval(t, id); a.State != state.ApprovalCancelled {
			t.Fatalf("approval %s, want cancelled", a.State)
		}
		if inc := l.incident(t, id); inc.Outcome != state.OutcomeEscalated {
			t.Fatalf("outcome %q, want escalated", inc.Outcome)
		}
		select {
		case err := <-p.done:
			t.Fatalf("medic exited: %v", err)
		default:
		}
		if n := len(l.runs(t)); n != 0 {
			t.Fatalf("%d runs", n)
		}
	})
	t.Run("a new incident on a busy target waits for it", func(t *testing.T) {
		t.Parallel()
		l := newLab(t, approvalRunbooks, "1h")
		l.start(t)
		started := time.Now().Add(-time.Minute)
		l.postAlert(t, "firing", "00000000000007b1", started, map[string]string{"alertname": "Busy", "name": "shop"})
		eventually(t, 20*time.Second, "the slow step to start", func() bool { return len(l.runs(t)) == 1 })
		// Its incident closes while the step still runs; the next alert on
		// the target opens a new incident, which waits for the step.
		l.postAlert(t, "resolved", "00000000000007b1", started, map[string]string{"alertname": "Busy", "name": "shop"})
		eventually(t, 20*time.Second, "the first incident to close", func() bool {
			incs := l.incidents(t)
			return len(incs) == 1 && incs[0].State == state.StateClosed
		})
		l.postAlert(t, "firing", "00000000000007b2", started, map[string]string{"alertname": "Lab", "name": "shop"})
		held := l.latest(t, "00000000000007b2", "held")
		if !strings.Contains(lastEvent(held, "held"), "a remediation is already running on shop") {
			t.Fatalf("held: %s", lastEvent(held, "held"))
		}
		id := l.latest(t, "00000000000007b2", "approval_pending").ID
		if code, body := approve(l, id); code != 200 {
			t.Fatalf("approve: %d %s", code, body)
		}
		eventually(t, 20*time.Second, "the approved step to run", func() bool { return len(l.runs(t)) == 2 })
	})
	t.Run("incident resolved by itself", func(t *testing.T) {
		t.Parallel()
		l := newLab(t, riskyRunbook, "1h")
		l.start(t)
		started := time.Now().Add(-time.Minute)
		l.postAlert(t, "firing", "00000000000007c1", started, map[string]string{"alertname": "Lab", "name": "shop"})
		id := l.settled(t, "00000000000007c1").ID
		l.postAlert(t, "resolved", "00000000000007c1", started, map[string]string{"alertname": "Lab", "name": "shop"})
		eventually(t, 20*time.Second, "the close", func() bool { return l.incident(t, id).State == state.StateClosed })
		if a := l.approval(t, id); a.State != state.ApprovalCancelled {
			t.Fatalf("the close left the approval %s, want cancelled", a.State)
		}
		if code, body := approve(l, id); code != http.StatusConflict || !strings.Contains(body, "cancelled") {
			t.Fatalf("approve after the close: %d %s", code, body)
		}
		if inc := l.incident(t, id); inc.Outcome != state.OutcomeSelfResolved || !hasEvent(inc, "approval_cancelled") {
			t.Fatalf("outcome %q, timeline %+v", inc.Outcome, inc.Timeline)
		}
		if n := len(l.runs(t)); n != 0 {
			t.Fatalf("%d runs after the incident resolved", n)
		}
	})
	t.Run("tool command changed by a reload", func(t *testing.T) {
		t.Parallel()
		l := newLab(t, riskyRunbook, "1h")
		l.start(t)
		id := l.pendingApproval(t, "shop", "00000000000007d1")
		l.editRunbooks(t, `, "0"]`, `, "1"]`)
		if code, body := l.reload(t); code != 200 {
			t.Fatalf("reload: %d %s", code, body)
		}
		code, body := approve(l, id)
		if code != http.StatusConflict || !strings.Contains(body, "would now run") {
			t.Fatalf("approve: %d %s", code, body)
		}
		time.Sleep(500 * time.Millisecond)
		if n := len(l.runs(t)); n != 0 {
			t.Fatalf("%d runs: a call ran that nobody approved", n)
		}
	})
	t.Run("expiry escalates", func(t *testing.T) {
		t.Parallel()
		l := newLab(t, riskyRunbook, "2s")
		l.start(t)
		id := l.pendingApproval(t, "shop", "00000000000007e1")
		eventually(t, 20*time.Second, "the expiry", func() bool { return l.incident(t, id).Outcome == state.OutcomeEscalated })
		inc := l.incident(t, id)
		if a := l.approval(t, id); a.State != state.ApprovalExpired || !strings.Contains(lastEvent(inc, "escalated"), "expired") {
			t.Fatalf("approval %s, escalation %q", a.State, lastEvent(inc, "escalated"))
		}
	})
}

// rechain recomputes the audit chain after an edit, as someone who can
// write the state file but has no audit key would: every hash and the tip
// made consistent again, the MACs left as they were.
func rechain(t *testing.T, path string, edit func(entries []state.AuditEntry) []state.AuditEntry) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("audit"))
		var entries []state.AuditEntry
		b.ForEach(func(k, v []byte) error {
			var e state.AuditEntry
			json.Unmarshal(v, &e)
			entries = append(entries, e)
			return nil
		})
		for _, e := range entries {
			b.Delete(binary.BigEndian.AppendUint64(nil, e.Seq))
		}
		entries = edit(entries)
		prev := ""
		for i := range entries {
			e := &entries[i]
			e.Seq, e.Prev = uint64(i+1), prev
			c := *e
			c.Hash, c.MAC = "", ""
			body, _ := json.Marshal(c)
			sum := sha256.Sum256(append(append([]byte(prev), 0), body...))
			e.Hash = hex.EncodeToString(sum[:])
			buf, _ := json.Marshal(e)
			b.Put(binary.BigEndian.AppendUint64(nil, e.Seq), buf)
			prev = e.Hash
		}
		b.SetSequence(uint64(len(entries)))
		return tx.Bucket([]byte("meta")).Put([]byte("audit_tip"), []byte(prev))
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestAuditTamperDetection: with the audit key outside the state file and
// the checkpoints serve writes, medic audit --verify --storage.path finds
// an edit with the chain recomputed, a deleted middle entry, a dropped tail
// with the tip fixed, and a wiped log, offline, with no daemon.
func TestAuditTamperDetection(t *testing.T) {
	t.Parallel()
	l := newLab(t, strings.Replace(slowRunbook, "SLEEP", "0", 1), "1h")
	p := l.start(t)
	for i, name := range []string{"alpha", "beta", "gamma"} {
		fp := fmt.Sprintf("00000000000008a%d", i)
		l.postAlert(t, "firing", fp, time.Now().Add(-time.Minute), map[string]string{"alertname": "Lab", "name": name})
		l.settled(t, fp)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	<-p.done
	p.done <- nil
	verify := func(dir string) (int, string) {
		out, err := exec.Command(medicBin, "audit", "--verify", "--storage.path", filepath.Join(dir, "medic.db")).CombinedOutput()
		return exitCode(err), string(out)
	}
	if code, out := verify(l.dir); code != 0 || !strings.Contains(out, "SUCCESS") {
		t.Fatalf("the intact log: exit %d\n%s", code, out)
	}
	copyLab := func(t *testing.T) string {
		dir := t.TempDir()
		for _, f := range []string{"medic.db", "audit.key", "audit.checkpoints"} {
			b, err := os.ReadFile(filepath.Join(l.dir, f))
			if err != nil {
				t.Fatal(err)
			}
			writeFile(t, filepath.Join(dir, f), string(b))
		}
		return dir
	}
	for _, tc := range []struct {
		name, want string
		edit       func([]state.AuditEntry) []state.AuditEntry
	}{
		{"an edit, chain recomputed", "MAC is missing or wrong", func(es []state.AuditEntry) []state.AuditEntry {
			es[2].Actor = "human:nobody"
			return es
		}},
		{"a middle entry deleted, renumbered", "MAC is missing or wrong", func(es []state.AuditEntry) []state.AuditEntry {
			return append(es[:2], es[3:]...)
		}},
		{"the tail dropped, tip fixed", "entries were removed", func(es []state.AuditEntry) []state.AuditEntry {
			return es[:len(es)-3]
		}},
		{"the log wiped", "entries were removed", func([]state.AuditEntry) []state.AuditEntry { return nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyLab(t)
			rechain(t, filepath.Join(dir, "medic.db"), tc.edit)
			if code, out := verify(dir); code != 1 || !strings.Contains(out, tc.want) {
				t.Fatalf("exit %d, want 1 with %q:\n%s", code, tc.want, out)
			}
		})
	}
}

// TestSmallerGuardsInServe: each of the smaller guards, through a running
// medic serve or the medic binary.
func TestSmallerGuardsInServe(t *testing.T) {
	t.Parallel()
	t.Run("a dot segment in an http tool's URL", func(t *testing.T) {
		t.Parallel()
		var hits atomic.Int32
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
		defer srv.Close()
		l := newLab(t, fmt.Sprintf(`
tool "hook" {
  description = "Call a hook."
  risk        = "low"
  param "x" { pattern = "^[a-z.]+$" }
  http { url = "%s/hook/${param.x}/end" }
}
runbook "lab" {
  description = "The lab runbook."
  matchers = ["alertname=\"Lab\""]
  target = "${labels.name}"
  step "hook" {
    tool = "hook"
    args = { x = "${labels.x}" }
  }
}
`, srv.URL), "1h")
		l.start(t)
		l.postAlert(t, "firing", "00000000000009a1", time.Now(), map[string]string{"alertname": "Lab", "name": "shop", "x": ".."})
		inc := l.settled(t, "00000000000009a1")
		if !strings.Contains(lastEvent(inc, "escalated"), `".." path segment`) || hits.Load() != 0 {
			t.Fatalf("escalation %q, %d requests", lastEvent(inc, "escalated"), hits.Load())
		}
		m := get(t, "http://"+l.addr+"/metrics")
		if !strings.Contains(m, `medic_escalations_total{reason="plan_rejected"} 1`) || !strings.Contains(m, `medic_escalations_total{reason="policy_denied"} 0`) {
			t.Fatalf("a plan that did not render is not counted as plan_rejected:\n%s", grepLines(m, "medic_escalations_total"))
		}
	})
	t.Run("invisible characters and a far-future startsAt at intake", func(t *testing.T) {
		t.Parallel()
		l := newLab(t, strings.Replace(slowRunbook, "SLEEP", "0", 1), "1h")
		l.start(t)
		for _, tc := range []struct{ value, startsAt, field string }{
			{"a\u200bb", "2026-11-26T10:00:00Z", "alerts[0].labels.name"},
			{"\ufeffa", "2026-11-26T10:00:00Z", "alerts[0].labels.name"},
			{"a\u00adb", "2026-11-26T10:00:00Z", "alerts[0].labels.name"},
			{"a\U000E0041b", "2026-11-26T10:00:00Z", "alerts[0].labels.name"},
			{"shop", "9999-01-01T00:00:00Z", "alerts[0].startsAt"},
		} {
			name, _ := json.Marshal(tc.value)
			body := fmt.Sprintf(`{"version":"4","status":"firing","receiver":"medic","alerts":[{"status":"firing","labels":{"alertname":"Lab","name":%s},"startsAt":%q,"fingerprint":"00000000000009b1"}]}`, name, tc.startsAt)
			code, resp := l.do(t, "POST", "/api/v1/alerts", l.token, json.RawMessage(body))
			if code != 400 || !strings.Contains(string(resp), `"field":"`+tc.field+`"`) {
				t.Errorf("%q at %s: %d %s", tc.value, tc.startsAt, code, resp)
			}
		}
	})
	t.Run("tokens", func(t *testing.T) {
		t.Parallel()
		serve := func(l *remediationLab, listen string) (int, string) {
			// A medic that starts when it should refuse is stopped, not waited for.
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, medicBin, "serve", "--config.file", filepath.Join(l.dir, "medic.hcl"), "--web.listen-address", listen).CombinedOutput()
			return exitCode(err), string(out)
		}
		l := newLab(t, strings.Replace(slowRunbook, "SLEEP", "0", 1), "1h")
		writeFile(t, filepath.Join(l.dir, "approver"), l.token)
		if code, out := serve(l, l.addr); code != 1 || !strings.Contains(out, "approver_token_file holds the same token") {
			t.Fatalf("the same token for both: exit %d\n%s", code, out)
		}
		writeFile(t, filepath.Join(l.dir, "approver"), "approver-token-long-enough-0123")
		writeFile(t, filepath.Join(l.dir, "token"), "change-me-to-a-long-random-string")
		if code, out := serve(l, "0.0.0.0:"+strings.Split(l.addr, ":")[1]); code != 1 || !strings.Contains(out, "the example file's placeholder") {
			t.Fatalf("the placeholder token outside loopback: exit %d\n%s", code, out)
		}
		writeFile(t, filepath.Join(l.dir, "token"), "short")
		if code, out := serve(l, "0.0.0.0:"+strings.Split(l.addr, ":")[1]); code != 1 || !strings.Contains(out, "5 bytes, shorter than 16") {
			t.Fatalf("a short token outside loopback: exit %d\n%s", code, out)
		}
		l.token = "short"
		p := l.start(t)
		if !strings.Contains(p.output(), "weak token") {
			t.Fatalf("no warning for a short token on loopback:\n%s", p.output())
		}
	})
	t.Run("medic check on shells and the loader's environment", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		check := func(src string) (int, string) {
			f := writeFile(t, filepath.Join(dir, "r.hcl"), src)
			out, err := exec.Command(medicBin, "check", f).CombinedOutput()
			return exitCode(err), string(out)
		}
		const tool = `
tool "t" {
  description = "x"
  risk        = "low"
  param "x" { pattern = "^[a-z]+$" }
  exec {
    command = COMMAND
    env     = { ENV }
  }
}
`
		code, out := check(strings.NewReplacer("COMMAND", `["/bin/sh", "-c", "echo ${param.x}"]`, "ENV", `HOME = "/tmp"`).Replace(tool))
		if code != 1 || !strings.Contains(out, "Template in a shell script") {
			t.Errorf("a template in sh -c: exit %d\n%s", code, out)
		}
		code, out = check(strings.NewReplacer("COMMAND", `["/bin/bash", "-c", "echo \"$1\"", "medic", "${param.x}"]`, "ENV", `LD_PRELOAD = "/tmp/${param.x}.so", PATH = "/opt/${param.x}"`).Replace(tool))
		if code != 0 || !strings.Contains(out, "Shell with templated arguments") || !strings.Contains(out, "Templated LD_PRELOAD") || !strings.Contains(out, "Templated PATH") {
			t.Errorf("warnings: exit %d\n%s", code, out)
		}
	})
	t.Run("a tool query", func(t *testing.T) {
		t.Parallel()
		l := newLab(t, `
tool "probe" {
  description = "Reads the service's state as JSON."
  risk        = "low"
  read_only   = true
  param "name" { pattern = "^[a-z]+$" }
  exec { command = ["/bin/echo", "{\"ready\": false, \"name\": \"${param.name}\"}"] }
}
`+recordTool+`
runbook "lab" {
  description = "The lab runbook."
  matchers = ["alertname=\"Lab\""]
  target = "${labels.name}"
  query "probe" {
    tool = "probe"
    args = { name = "${labels.name}" }
  }
  when = "tool.probe.ready == false && tool.probe.name == labels.name"
  step "record" {
    tool = "record"
    args = { name = "${labels.name}" }
  }
}
`, "1h")
		l.start(t)
		l.postAlert(t, "firing", "00000000000009c1", time.Now(), map[string]string{"alertname": "Lab", "name": "shop"})
		if inc := l.settled(t, "00000000000009c1"); !hasEvent(inc, "action_succeeded") {
			t.Fatalf("the tool query's runbook did not act: %+v", inc.Timeline)
		}
	})
}

// TestFailedStepIsRetried: a step whose tool fails starts the next attempt
// (max_attempts 2), and its idempotency key does not make the retry a
// repeat: the tool runs twice, the incident is not escalated, and it
// settles once, as remediated, when its alert resolves.
func TestFailedStepIsRetried(t *testing.T) {
	t.Parallel()
	l := newLab(t, `
tool "flaky" {
  description = "Fails the first time it runs."
  risk        = "low"
  param "name" { pattern = "^[a-z]+$" }
  exec { command = ["FLAKY", "COUNT"] }
  idempotency_key    = "flaky/${param.name}"
  idempotency_window = "1h"
}
runbook "lab" {
  description  = "The lab runbook."
  matchers = ["alertname=\"Lab\""]
  target       = "${labels.name}"
  max_attempts = 2
  step "flaky" {
    tool = "flaky"
    args = { name = "${labels.name}" }
  }
}
`, "1h")
	flaky := writeFile(t, filepath.Join(l.dir, "flaky.sh"), "#!/bin/bash\necho $$ >> \"$1\"\n[ \"$(wc -l < \"$1\")\" -gt 1 ]\n")
	os.Chmod(flaky, 0o755)
	l.editRunbooks(t, "FLAKY", flaky)
	l.start(t)
	started := time.Now().Add(-time.Minute)
	l.postAlert(t, "firing", "0000000000000aa1", started, map[string]string{"alertname": "Lab", "name": "shop"})
	eventually(t, 20*time.Second, "the second attempt", func() bool { return len(l.runs(t)) == 2 })
	inc := l.settled(t, "0000000000000aa1")
	eventually(t, 20*time.Second, "the second attempt's result", func() bool {
		inc = l.incident(t, inc.ID)
		return hasEvent(inc, "action_succeeded")
	})
	if !hasEvent(inc, "action_failed") || !hasEvent(inc, "retry") || hasEvent(inc, "escalated") {
		t.Fatalf("timeline %+v", inc.Timeline)
	}
	l.postAlert(t, "resolved", "0000000000000aa1", started, map[string]string{"alertname": "Lab", "name": "shop"})
	eventually(t, 20*time.Second, "the close", func() bool { return l.incident(t, inc.ID).State == state.StateClosed })
	inc = l.incident(t, inc.ID)
	closes := 0
	for _, e := range inc.Timeline {
		if e.Kind == "closed" || e.Kind == "escalated" || e.Kind == "remediated" {
			closes++
		}
	}
	if inc.Outcome != state.OutcomeRemediated || closes != 1 {
		t.Fatalf("outcome %q with %d settling events: %+v", inc.Outcome, closes, inc.Timeline)
	}
	if n := len(l.runs(t)); n != 2 {
		t.Fatalf("%d runs, want 2", n)
	}
}

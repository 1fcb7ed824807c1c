package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The tests in this file show that the guards the README promises hold in
// a running `medic serve`, fed by real components.

// startPrometheus runs Debian's Prometheus with its own data on a free
// port, scraping only itself, and returns its address.
func startPrometheus(t *testing.T) string {
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
	return addr
}

const lagRunbook = `
tool "record" {
  description = "Records that it ran."
  risk        = "low"
  param "name" { pattern = "^[a-z]+$" }
  exec { command = ["SCRIPT", "COUNT", "0"] }
}
runbook "lag" {
  description = "A consumer lags on a topic."
  match { alertname = "Lab" }
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

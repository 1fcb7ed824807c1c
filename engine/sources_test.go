package engine

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"medic/rules"
)

// Responses recorded from the Prometheus HTTP API's documented format.
var promResponses = map[string]string{
	"vector": `{"status":"success","data":{"resultType":"vector","result":[` +
		`{"metric":{"__name__":"up","job":"api","instance":"a:9100"},"value":[1764158400.000,"1"]},` +
		`{"metric":{"__name__":"up","job":"api","instance":"b:9100"},"value":[1764158400.000,"NaN"]}]}}`,
	"scalar": `{"status":"success","data":{"resultType":"scalar","result":[1764158400.000,"42.5"]}}`,
	"matrix": `{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"job":"api"},"values":[[1764158400,"1"]]}]}}`,
	"bad":    `{"status":"error","errorType":"bad_data","error":"1:4: parse error: unexpected end of input"}`,
}

func TestPromClientRecorded(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil || r.URL.Path != "/api/v1/query" {
			http.Error(w, "unexpected request", 500)
			return
		}
		q := r.Form.Get("query")
		w.Header().Set("Content-Type", "application/json")
		if q == "bad" {
			w.WriteHeader(http.StatusBadRequest)
		}
		fmt.Fprint(w, promResponses[q])
	}))
	defer srv.Close()
	c, err := NewPromClient(SourceConfig{URL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	s, err := c.Query(ctx, "vector", time.Now())
	if err != nil || len(s) != 1 || s[0].Labels["instance"] != "a:9100" || s[0].Value != 1 {
		t.Fatalf("vector: %v %+v", err, s)
	}
	s, err = c.Query(ctx, "scalar", time.Now())
	if err != nil || len(s) != 1 || s[0].Value != 42.5 {
		t.Fatalf("scalar: %v %+v", err, s)
	}
	if _, err := c.Query(ctx, "matrix", time.Now()); err == nil || !strings.Contains(err.Error(), "matrix") {
		t.Fatalf("matrix: %v", err)
	}
	if _, err := c.Query(ctx, "bad", time.Now()); err == nil || !strings.Contains(err.Error(), "parse error") {
		t.Fatalf("bad: %v", err)
	}
}

// startPrometheus runs a real Prometheus (Debian's package) that scrapes
// itself every second, and waits for its first sample.
func startPrometheus(tb testing.TB) (*PromClient, string) {
	tb.Helper()
	const bin = "/usr/bin/prometheus"
	if _, err := os.Stat(bin); err != nil {
		tb.Fatalf("%s is missing: scripts/test.sh installs Debian's prometheus", bin)
	}
	dir := tb.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cfg := filepath.Join(dir, "prometheus.yml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: prometheus\n    static_configs:\n      - targets: [%q]\n", addr)), 0o600)
	cmd := exec.Command(bin, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+addr)
	log := &lockedBuilder{}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	c, err := NewPromClient(SourceConfig{URL: "http://" + addr})
	if err != nil {
		tb.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		s, err := c.Query(ctx, `up{job="prometheus"}`, time.Now())
		cancel()
		if err == nil && len(s) == 1 && s[0].Value == 1 && s[0].Labels["instance"] == addr {
			return c, addr
		}
		if time.Now().After(deadline) {
			tb.Fatalf("no up sample: %v %+v\n%s", err, s, log.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

type lockedBuilder struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuilder) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuilder) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestPromClientRealPrometheus queries a real Prometheus.
func TestPromClientRealPrometheus(t *testing.T) {
	c, _ := startPrometheus(t)
	ctx := context.Background()
	if s, err := c.Query(ctx, `scalar(up{job="prometheus"}) * 2`, time.Now()); err != nil || len(s) != 1 || s[0].Value != 2 {
		t.Fatalf("scalar: %v %+v", err, s)
	}
	if s, err := c.Query(ctx, `up{job="nonexistent"}`, time.Now()); err != nil || len(s) != 0 {
		t.Fatalf("empty: %v %+v", err, s)
	}
	if _, err := c.Query(ctx, `up{`, time.Now()); err == nil {
		t.Fatal("a syntax error passed")
	}
}

// BenchmarkEnrichRealPrometheus is the context assembly for one
// KubePodCrashLooping alert with the shipped runbooks: every candidate's
// queries, in parallel, against a real Prometheus on loopback.
func BenchmarkEnrichRealPrometheus(b *testing.B) {
	c, _ := startPrometheus(b)
	set, diags := rules.Load("../runbooks.hcl")
	if diags.HasErrors() {
		b.Fatal(diags)
	}
	labels := map[string]string{"alertname": "KubePodCrashLooping", "namespace": "shop", "pod": "api-0", "container": "api"}
	cands := set.Candidates(labels)
	b.ResetTimer()
	var queries int
	for b.Loop() {
		e := set.Enrich(context.Background(), cands, rules.Vars{Labels: labels}, rules.Sources{Prom: c}, time.Now())
		queries = e.Queries
		for name, res := range e.Results {
			if len(res.Errors) > 0 {
				b.Fatalf("%s: %v", name, res.Errors)
			}
		}
	}
	b.ReportMetric(float64(queries), "queries/op")
}

func TestLokiClientRecorded(t *testing.T) {
	var got string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.URL.RawQuery
		switch r.URL.Query().Get("query") {
		case "metric":
			fmt.Fprint(w, `{"status":"success","data":{"resultType":"matrix","result":[]}}`)
		case "fail":
			http.Error(w, "parse error at line 1", http.StatusBadRequest)
		default:
			fmt.Fprint(w, `{"status":"success","data":{"resultType":"streams","result":[`+
				`{"stream":{"app":"api","pod":"api-0"},"values":[["1764158403000000000","GET /health 200"],["1764158402000000000","level=error msg=\"db timeout\""]]},`+
				`{"stream":{"app":"api","pod":"api-1"},"values":[["1764158404000000000","GET / 200"],["1764158401000000000","panic: nil map"]]}]}}`)
		}
	}))
	defer srv.Close()
	c, err := NewLokiClient(SourceConfig{URL: srv.URL + "/"})
	if err != nil {
		t.Fatal(err)
	}
	end := time.Unix(1764158405, 0)
	lines, err := c.QueryRange(context.Background(), `{app="api"}`, end.Add(-15*time.Minute), end, 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) != 3 || lines[0].Line != `level=error msg="db timeout"` || lines[1].Line != "panic: nil map" || lines[2].Line != "GET / 200" {
		t.Fatalf("lines %+v", lines)
	}
	for _, want := range []string{"direction=backward", "limit=3", "start=1764157505000000000", "end=1764158405000000000"} {
		if !strings.Contains(got, want) {
			t.Errorf("request %q lacks %s", got, want)
		}
	}
	if _, err := c.QueryRange(context.Background(), "metric", end, end, 3); err == nil || !strings.Contains(err.Error(), "streams") {
		t.Fatalf("metric query: %v", err)
	}
	if _, err := c.QueryRange(context.Background(), "fail", end, end, 3); err == nil || !strings.Contains(err.Error(), "parse error") {
		t.Fatalf("failing query: %v", err)
	}
	if _, err := NewLokiClient(SourceConfig{URL: "ftp://x"}); err == nil {
		t.Fatal("ftp URL accepted")
	}
}

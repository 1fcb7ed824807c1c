package engine

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"medic/state"
)

// testAlert is one alert of a test payload.
type testAlert struct {
	Status      string            `json:"status"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	StartsAt    string            `json:"startsAt"`
	EndsAt      string            `json:"endsAt"`
	Fingerprint string            `json:"fingerprint"`
}

func alert(status, name, fp string) testAlert {
	return testAlert{
		Status:      status,
		Labels:      map[string]string{"alertname": name, "severity": "critical", "namespace": "prod", "instance": "node-" + fp},
		Annotations: map[string]string{"summary": "something broke"},
		StartsAt:    "2026-11-26T10:00:00Z",
		EndsAt:      "0001-01-01T00:00:00Z",
		Fingerprint: fp,
	}
}

// payload renders a version 4 webhook body as Alertmanager sends it.
func payload(alerts ...testAlert) []byte {
	status := "resolved"
	for _, a := range alerts {
		if a.Status == "firing" {
			status = "firing"
		}
	}
	m := map[string]any{
		"version":           "4",
		"groupKey":          `{}:{alertname="X"}`,
		"truncatedAlerts":   0,
		"status":            status,
		"receiver":          "medic",
		"groupLabels":       map[string]string{},
		"commonLabels":      map[string]string{},
		"commonAnnotations": map[string]string{},
		"externalURL":       "http://alertmanager:9093",
		"alerts":            alerts,
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}

type testEnv struct {
	eng   *Engine
	store *state.Store
	reg   *prometheus.Registry
	h     http.Handler
	now   time.Time
}

func newTestEnv(t testing.TB, mutate func(*Config)) *testEnv {
	t.Helper()
	store, err := state.Open(filepath.Join(t.TempDir(), "medic.db"), state.DefaultOptions)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	env := &testEnv{store: store, reg: prometheus.NewRegistry(), now: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)}
	env.eng = New(Options{Registerer: env.reg, Gatherer: env.reg, Store: store, Now: func() time.Time { return env.now }})
	cfg := DefaultConfig()
	if mutate != nil {
		mutate(cfg)
	}
	if err := env.eng.ApplyConfig(cfg); err != nil {
		t.Fatal(err)
	}
	env.eng.SetReady(true)
	env.h = env.eng.Handler()
	return env
}

func writeToken(t testing.TB, tok string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(p, []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func (env *testEnv) post(body []byte, hdr ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, "/api/v1/alerts", strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	env.h.ServeHTTP(rec, req)
	return rec
}

func (env *testEnv) get(t testing.TB, path string, into any) int {
	t.Helper()
	rec := httptest.NewRecorder()
	env.h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	if into != nil && rec.Code == http.StatusOK {
		var body struct {
			Data json.RawMessage `json:"data"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		if err := json.Unmarshal(body.Data, into); err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
	}
	return rec.Code
}

// drain processes the whole inbox.
func (env *testEnv) drain(t testing.TB) {
	t.Helper()
	for {
		res, err := env.eng.ProcessInbox()
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Dead) > 0 {
			t.Fatalf("dead letters: %+v", res.Dead)
		}
		if res.Processed == 0 {
			return
		}
	}
}

func (env *testEnv) counter(t testing.TB, name, label, value string) float64 {
	t.Helper()
	mfs, err := env.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := label == ""
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					match = true
				}
			}
			if match {
				if m.Counter != nil {
					return m.GetCounter().GetValue()
				}
				return m.GetGauge().GetValue()
			}
		}
	}
	t.Fatalf("metric %s{%s=%q} not found", name, label, value)
	return 0
}

func fp(i int) string { return fmt.Sprintf("%016x", i) }

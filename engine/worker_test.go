package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"medic/state"
)

// opencensus, which the Gemini SDK's Google auth imports, starts a worker
// in its init.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("go.opencensus.io/stats/view.(*worker).start"))
}

func (env *testEnv) mustPost(t *testing.T, alerts ...testAlert) {
	t.Helper()
	if rec := env.post(payload(alerts...)); rec.Code != http.StatusOK {
		t.Fatalf("post: %d %s", rec.Code, rec.Body)
	}
}

func (env *testEnv) incidents(t *testing.T, st string) []state.Incident {
	t.Helper()
	var list []IncidentSummary
	if code := env.get(t, "/api/v1/incidents?state="+st, &list); code != http.StatusOK {
		t.Fatalf("list %s: %d", st, code)
	}
	incs := make([]state.Incident, len(list))
	for i, s := range list {
		if code := env.get(t, fmt.Sprintf("/api/v1/incidents/%d", s.ID), &incs[i]); code != http.StatusOK {
			t.Fatalf("get %d: %d", s.ID, code)
		}
	}
	return incs
}

func TestIncidentLifecycle(t *testing.T) {
	env := newTestEnv(t, nil)
	firing := alert("firing", "KubePodCrashLooping", fp(7))
	resolved := firing
	resolved.Status = "resolved"
	resolved.EndsAt = "2026-11-26T11:00:00Z"

	env.mustPost(t, firing)
	env.drain(t)
	open := env.incidents(t, "open")
	if len(open) != 1 || open[0].State != state.StateOpen || open[0].Alerts[0].Fingerprint != fp(7) || len(open[0].Alerts) != 1 {
		t.Fatalf("after firing: %+v", open)
	}
	events := len(open[0].Timeline)

	// Alertmanager re-sends a firing alert every repeat_interval: same
	// incident, no new events. An unchanged repeat within a minute writes
	// nothing; a later one refreshes last_received_at.
	first := open[0].Alerts[0].LastReceivedAt
	env.now = env.now.Add(30 * time.Second)
	env.mustPost(t, firing)
	env.drain(t)
	open = env.incidents(t, "open")
	if len(open) != 1 || len(open[0].Timeline) != events || !open[0].Alerts[0].LastReceivedAt.Equal(first) {
		t.Fatalf("after a quick repeat: %+v", open)
	}
	env.now = env.now.Add(time.Minute)
	env.mustPost(t, firing)
	env.drain(t)
	open = env.incidents(t, "open")
	if len(open) != 1 || len(open[0].Timeline) != events || !open[0].Alerts[0].LastReceivedAt.Equal(env.now) {
		t.Fatalf("after a later repeat: %+v", open)
	}
	// A changed annotation is written at once.
	changed := firing
	changed.Annotations = map[string]string{"summary": "worse now"}
	env.mustPost(t, changed)
	env.drain(t)
	if open = env.incidents(t, "open"); open[0].Alerts[0].Annotations["summary"] != "worse now" {
		t.Fatalf("changed annotation not stored: %+v", open[0].Alerts[0])
	}
	if got := env.counter(t, "medic_alerts_processed_total", "result", resultRepeated); got != 3 {
		t.Fatalf("repeated = %v, want 3", got)
	}

	env.mustPost(t, resolved)
	env.drain(t)
	if n := len(env.incidents(t, "open")); n != 0 {
		t.Fatalf("%d open after resolve", n)
	}
	closed := env.incidents(t, "closed")
	if len(closed) != 1 || closed[0].ClosedAt == nil || closed[0].Alerts[0].Status != "resolved" ||
		!closed[0].Alerts[0].EndsAt.Equal(time.Date(2026, 11, 26, 11, 0, 0, 0, time.UTC)) {
		t.Fatalf("after resolve: %+v", closed)
	}
	if last := closed[0].Timeline[len(closed[0].Timeline)-1]; last.Kind != "closed" {
		t.Fatalf("last event %+v", last)
	}

	// Re-sent resolved and a late re-send of the old firing occurrence are
	// stale: no incident is reopened or created.
	env.mustPost(t, resolved)
	env.mustPost(t, firing)
	env.drain(t)
	if all := env.incidents(t, "all"); len(all) != 1 || all[0].State != state.StateClosed {
		t.Fatalf("stale notifications changed incidents: %+v", all)
	}
	if got := env.counter(t, "medic_alerts_processed_total", "result", resultStale); got != 2 {
		t.Fatalf("stale = %v, want 2", got)
	}

	// A new occurrence (later startsAt) opens a new incident.
	again := firing
	again.StartsAt = "2026-11-26T12:00:00Z"
	env.mustPost(t, again)
	env.drain(t)
	open = env.incidents(t, "open")
	if len(open) != 1 || open[0].ID == closed[0].ID {
		t.Fatalf("new occurrence: %+v", open)
	}
	if got := env.store.OpenIncidents(); got != 1 {
		t.Fatalf("open gauge %d", got)
	}
	all := env.incidents(t, "all")
	if len(all) != 2 || all[0].ID < all[1].ID {
		t.Fatalf("all not newest first: %+v", all)
	}
}

func TestIgnoredAlerts(t *testing.T) {
	env := newTestEnv(t, nil)
	wd := alert("firing", "Watchdog", fp(1))
	info := alert("firing", "CPUThrottlingHigh", fp(2))
	info.Labels["severity"] = "info"
	env.mustPost(t, wd, info, alert("firing", "KubeJobFailed", fp(3)))
	env.mustPost(t, wd)
	env.drain(t)
	if incs := env.incidents(t, "all"); len(incs) != 1 || incs[0].Alerts[0].Labels["alertname"] != "KubeJobFailed" {
		t.Fatalf("incidents %+v", incs)
	}
	var ig []state.Ignored
	if code := env.get(t, "/api/v1/ignored", &ig); code != 200 || len(ig) != 2 {
		t.Fatalf("ignored %d %+v", code, ig)
	}
	counts := map[string]uint64{}
	for _, r := range ig {
		counts[r.Alertname] = r.Count
	}
	if counts["Watchdog"] != 2 || counts["CPUThrottlingHigh"] != 1 {
		t.Fatalf("ignored counts %v", counts)
	}
	if got := env.counter(t, "medic_alerts_processed_total", "result", resultIgnored); got != 3 {
		t.Fatalf("ignored metric %v", got)
	}

	// A config's ignore list replaces the defaults.
	cfg, diags := ParseConfig("m.hcl", []byte(`intake { ignore = ["{alertname=\"KubeJobFailed\", namespace=~\"prod|dev\"}"] }`))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	if err := env.eng.ApplyConfig(cfg); err != nil {
		t.Fatal(err)
	}
	wd.Fingerprint = fp(4)
	job := alert("firing", "KubeJobFailed", fp(5))
	env.mustPost(t, wd, job)
	env.drain(t)
	if incs := env.incidents(t, "open"); len(incs) != 2 || incs[0].Alerts[0].Fingerprint != fp(4) {
		t.Fatalf("with custom ignore: %+v", incs)
	}
}

func TestIncidentAPI(t *testing.T) {
	tok := writeToken(t, "tkn")
	env := newTestEnv(t, func(c *Config) { c.Web.BearerTokenFile = tok })
	if rec := env.post(payload(alert("firing", "A", fp(1))), "Authorization", "Bearer tkn"); rec.Code != 200 {
		t.Fatal(rec.Code)
	}
	env.drain(t)
	do := func(path, token string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		rec := httptest.NewRecorder()
		env.h.ServeHTTP(rec, req)
		return rec
	}
	for _, tc := range []struct {
		path, token string
		code        int
	}{
		{"/api/v1/incidents", "", 401},
		{"/api/v1/incidents/1", "wrong", 401},
		{"/api/v1/admin/backup", "", 401},
		{"/api/v1/incidents", "tkn", 200},
		{"/api/v1/incidents?state=closed", "tkn", 200},
		{"/api/v1/incidents?state=bogus", "tkn", 400},
		{"/api/v1/incidents?limit=-1", "tkn", 400},
		{"/api/v1/incidents/1", "tkn", 200},
		{"/api/v1/incidents/99", "tkn", 404},
		{"/api/v1/incidents/abc", "tkn", 400},
		{"/api/v1/incidents/0", "tkn", 400},
		{"/api/v1/audit", "", 401},
		{"/api/v1/audit", "tkn", 200},
		{"/api/v1/audit?incident=1&since=2026-11-26T00:00:00Z", "tkn", 200},
		{"/api/v1/audit?incident=x", "tkn", 400},
		{"/api/v1/audit?since=yesterday", "tkn", 400},
		{"/api/v1/audit/verify", "tkn", 200},
		{"/-/healthy", "", 200},
		{"/-/ready", "", 200},
		{"/metrics", "", 200},
	} {
		if rec := do(tc.path, tc.token); rec.Code != tc.code {
			t.Errorf("GET %s (token %q): %d, want %d: %s", tc.path, tc.token, rec.Code, tc.code, rec.Body)
		}
	}
	if rec := do("/api/v1/audit?incident=1", "tkn"); !strings.Contains(rec.Body.String(), `"kind":"incident"`) || rec.Header().Get("Content-Type") != "application/x-ndjson" {
		t.Errorf("audit stream: %s %v", rec.Body, rec.Header())
	}
	env.eng.SetReady(false)
	if rec := do("/-/ready", ""); rec.Code != 503 {
		t.Errorf("ready while not ready: %d", rec.Code)
	}
}

func TestDuplicateNotificationsAreIdempotent(t *testing.T) {
	env := newTestEnv(t, nil)
	body := payload(alert("firing", "A", fp(1)), alert("firing", "B", fp(2)))
	for i := 0; i < 5; i++ {
		if rec := env.post(body); rec.Code != 200 {
			t.Fatal(rec.Code)
		}
	}
	env.drain(t)
	incs := env.incidents(t, "all")
	if len(incs) != 2 {
		t.Fatalf("%d incidents from one notification sent 5 times", len(incs))
	}
	for _, inc := range incs {
		if len(inc.Alerts) != 1 || len(inc.Timeline) != 2 {
			t.Fatalf("incident %+v", inc)
		}
	}
}

func TestDeadLetter(t *testing.T) {
	env := newTestEnv(t, nil)
	if _, err := env.store.Accept(env.now, []byte("not json"), 0, nil); err != nil {
		t.Fatal(err)
	}
	env.mustPost(t, alert("firing", "A", fp(1)))
	res, err := env.eng.ProcessInbox()
	if err != nil {
		t.Fatal(err)
	}
	if res.Processed != 2 || len(res.Dead) != 1 {
		t.Fatalf("result %+v", res)
	}
	if n := len(env.incidents(t, "open")); n != 1 {
		t.Fatalf("the good entry behind a bad one was not processed: %d open", n)
	}
	if env.store.InboxDepth() != 0 {
		t.Fatal("inbox not empty")
	}
}

func TestRetention(t *testing.T) {
	env := newTestEnv(t, func(c *Config) { c.Storage.Retention = 24 * time.Hour })
	old := alert("firing", "Old", fp(1))
	env.mustPost(t, old, alert("firing", "StillOpen", fp(2)))
	env.drain(t)
	old.Status = "resolved"
	env.mustPost(t, old)
	env.drain(t)
	env.now = env.now.Add(23 * time.Hour)
	env.eng.prune()
	if n := len(env.incidents(t, "all")); n != 2 {
		t.Fatalf("pruned too early: %d left", n)
	}
	env.now = env.now.Add(2 * time.Hour)
	env.eng.prune()
	all := env.incidents(t, "all")
	if len(all) != 1 || all[0].State != state.StateOpen {
		t.Fatalf("after retention: %+v", all)
	}
	if got := env.counter(t, "medic_incidents_pruned_total", "", ""); got != 1 {
		t.Fatalf("pruned metric %v", got)
	}
}

func TestBackupIsConsistentSnapshot(t *testing.T) {
	env := newTestEnv(t, nil)
	env.mustPost(t, alert("firing", "A", fp(1)))
	env.drain(t)
	rec := httptest.NewRecorder()
	env.h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/admin/backup", nil))
	if rec.Code != 200 || rec.Header().Get("Content-Length") == "" {
		t.Fatalf("backup: %d %v", rec.Code, rec.Header())
	}
	p := filepath.Join(t.TempDir(), "restored.db")
	if err := os.WriteFile(p, rec.Body.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	restored, err := state.Open(p, state.DefaultOptions)
	if err != nil {
		t.Fatal(err)
	}
	defer restored.Close()
	incs, err := restored.Incidents(state.Filter{})
	if err != nil || len(incs) != 1 || incs[0].Alerts[0].Fingerprint != fp(1) {
		t.Fatalf("restored: %v %+v", err, incs)
	}
}

func TestReloadEndpoint(t *testing.T) {
	env := newTestEnv(t, nil)
	rec := httptest.NewRecorder()
	env.h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/-/reload", nil))
	if rec.Code != http.StatusNotImplemented {
		t.Fatalf("unwired reload: %d", rec.Code)
	}
	ch := make(chan chan error)
	env.eng.reload = ch
	h := env.eng.Handler()
	for _, want := range []error{nil, errors.New("bad config")} {
		go func() { rc := <-ch; rc <- want }()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/-/reload", nil))
		if (want == nil) != (rec.Code == 200) || (want != nil && !bytes.Contains(rec.Body.Bytes(), []byte("bad config"))) {
			t.Fatalf("reload with %v: %d %s", want, rec.Code, rec.Body)
		}
	}
}

func TestRunDrainsAndStops(t *testing.T) {
	env := newTestEnv(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- env.eng.Run(ctx, RunOptions{DrainTimeout: 5 * time.Second}) }()
	for i := 0; i < 600; i++ {
		env.mustPost(t, alert("firing", "A", fp(i+1)))
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if d := env.store.InboxDepth(); d != 0 {
		t.Fatalf("inbox depth %d after drain", d)
	}
	if n := env.store.OpenIncidents(); n != 600 {
		t.Fatalf("%d open incidents, want 600", n)
	}
}

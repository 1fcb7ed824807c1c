package actions

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files")

func ptr(f float64) *float64 { return &f }

// sampleBrief is a brief with every part filled, and alert text that tries
// markup, mentions and JSON breaking.
func sampleBrief() *Brief {
	return &Brief{
		Incident: 42, Title: "KubePodCrashLooping on shop/api", Severity: "critical", Target: "shop/api",
		Reason: "the attempts ran out: 2 of 2, and the verification saw no change", ReasonCode: "attempts_exhausted",
		Alerts: []BriefAlert{{Name: "KubePodCrashLooping", Status: "firing", StartsAt: "2026-11-26T10:00:00Z",
			Labels:  map[string]string{"namespace": "shop", "pod": "api-7d9f", "container": "<!channel> api"},
			Summary: "Pod shop/api-7d9f restarts; <https://evil.example|click here>", Generator: "http://prometheus:9090/graph?g0.expr=x",
			Runbook: "https://runbooks.example/crashloop"}},
		Enrichment: []BriefQuery{{Name: "restarts", Value: "[{} 7]"}, {Name: "last_reason", Value: "OOMKilled"}},
		Steps: []BriefStep{
			{Step: "restart", Tool: "k8s_rollout_restart", Policy: "allow", Result: "succeeded", Output: "deployment.apps/api restarted\n```\"}]",
				Before: ptr(7), After: ptr(7), Verify: "unchanged"},
			{Step: "restart", Tool: "k8s_rollout_restart", Policy: "allow", Result: "succeeded", Before: ptr(7), After: ptr(8), Verify: "unchanged"},
		},
		Hypothesis:   "crashloop_generic matched with confidence 0.80",
		Alternatives: []BriefCandidate{{Runbook: "crashloop_oom", Why: "its when condition was false"}},
		Links: BriefLinks{Incident: "http://127.0.0.1:9095/api/v1/incidents/42", Generators: []string{"http://prometheus:9090/graph?g0.expr=x"},
			Runbooks: []string{"https://runbooks.example/crashloop"}},
		Commands: []string{"medic approve 42", "medic deny 42 --reason '…'"},
	}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *updateGolden {
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run go test -update to write it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file:\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

func indent(t *testing.T, raw []byte) []byte {
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		t.Fatal(err)
	}
	return append(buf.Bytes(), '\n')
}

// capture records the body the stand-in accepted.
type capture struct{ bodies [][]byte }

func (c *capture) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var buf bytes.Buffer
		buf.ReadFrom(r.Body)
		c.bodies = append(c.bodies, buf.Bytes())
		r.Body = readCloser{bytes.NewReader(buf.Bytes())}
		h.ServeHTTP(w, r)
	})
}

type readCloser struct{ *bytes.Reader }

func (readCloser) Close() error { return nil }

// TestBriefSlack: Slack's stand-in, built from the Block Kit limits,
// accepts the brief, and the payload matches the golden file; alert text
// makes no link or mention.
func TestBriefSlack(t *testing.T) {
	var got map[string]any
	c := &capture{}
	inner := slackStandIn(t, &got)
	inner.Close()
	srv := httptest.NewServer(c.wrap(inner.Config.Handler))
	defer srv.Close()
	spec := NotifySpec{Tool: "page", Channel: "slack", URL: srv.URL, Incident: 42, Action: "trigger", Severity: "critical", Brief: sampleBrief()}
	if _, err := (&Notifier{}).Notify(context.Background(), allowed("page"), spec); err != nil {
		t.Fatal(err)
	}
	body := string(c.bodies[0])
	for _, bad := range []string{"<!channel>", "<https://evil.example"} {
		if strings.Contains(body, bad) {
			t.Errorf("the Slack payload carries %q unescaped", bad)
		}
	}
	golden(t, "brief.slack.json", indent(t, c.bodies[0]))
}

// TestBriefPagerDuty: the PagerDuty stand-in, built from the Events API
// v2's required fields, accepts the brief as custom_details, deduplicated
// by incident.
func TestBriefPagerDuty(t *testing.T) {
	var events []map[string]any
	c := &capture{}
	inner := pagerDutyStandIn(t, &events)
	inner.Close()
	srv := httptest.NewServer(c.wrap(inner.Config.Handler))
	defer srv.Close()
	spec := NotifySpec{Tool: "page", Channel: "pagerduty", URL: srv.URL, RoutingKey: strings.Repeat("b", 32), Incident: 42,
		Action: "trigger", Severity: "critical", Source: "medic", Brief: sampleBrief()}
	res, err := (&Notifier{}).Notify(context.Background(), allowed("page"), spec)
	if err != nil || res.DedupKey != "42" || len(events) != 1 {
		t.Fatalf("%v %+v %d", err, res, len(events))
	}
	p := events[0]["payload"].(map[string]any)
	details, _ := p["custom_details"].(map[string]any)
	if details["reason_code"] != "attempts_exhausted" || len(details["steps"].([]any)) != 2 {
		t.Fatalf("custom_details %v", details)
	}
	golden(t, "brief.pagerduty.json", indent(t, c.bodies[0]))
}

// TestBriefWebhook: the generic webhook gets the brief as JSON.
func TestBriefWebhook(t *testing.T) {
	c := &capture{}
	srv := httptest.NewServer(c.wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})))
	defer srv.Close()
	spec := NotifySpec{Tool: "hook", Channel: "webhook", URL: srv.URL, Incident: 42, Action: "trigger", Severity: "critical", Source: "medic", Brief: sampleBrief()}
	if _, err := (&Notifier{}).Notify(context.Background(), allowed("hook"), spec); err != nil {
		t.Fatal(err)
	}
	var m struct {
		Brief Brief `json:"brief"`
	}
	if err := json.Unmarshal(c.bodies[0], &m); err != nil || m.Brief.Alerts[0].Labels["container"] != "<!channel> api" {
		t.Fatalf("%v %+v", err, m.Brief)
	}
	golden(t, "brief.webhook.json", indent(t, c.bodies[0]))
}

// TestBriefText is the log's rendering.
func TestBriefText(t *testing.T) {
	golden(t, "brief.text.golden", []byte(sampleBrief().Text()))
}

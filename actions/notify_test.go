package actions

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// hostileText is alert text that tries markup, mentions, shell syntax and
// JSON breaking.
var hostileText = []string{
	"<https://evil.example|click here>", "<!channel> wake up", "$(touch /tmp/x)", "`id`", "a; b | c && d",
	`"}], "blocks": [`, "line\nbreak\ttab", "nul\x00byte", "abc\u202edcb", strings.Repeat("x", 5000),
}

// A stand-in for a Slack incoming webhook, from Slack's documented Block
// Kit format: it refuses what Slack would refuse.
func slackStandIn(t *testing.T, got *map[string]any) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "invalid_payload", http.StatusBadRequest)
			return
		}
		var m map[string]any
		if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
			http.Error(w, "invalid_payload", http.StatusBadRequest)
			return
		}
		blocks, _ := m["blocks"].([]any)
		if len(blocks) == 0 || len(blocks) > 50 {
			http.Error(w, "invalid_blocks", http.StatusBadRequest)
			return
		}
		for _, b := range blocks {
			bm := b.(map[string]any)
			switch bm["type"] {
			case "header":
				if txt := bm["text"].(map[string]any); txt["type"] != "plain_text" || len(txt["text"].(string)) > 150 {
					http.Error(w, "invalid_blocks", http.StatusBadRequest)
					return
				}
			case "section":
				if txt, ok := bm["text"].(map[string]any); ok && len(txt["text"].(string)) > 3000 {
					http.Error(w, "invalid_blocks", http.StatusBadRequest)
					return
				}
				if f, ok := bm["fields"].([]any); ok && len(f) > 10 {
					http.Error(w, "invalid_blocks", http.StatusBadRequest)
					return
				}
			case "context":
			default:
				http.Error(w, "invalid_blocks", http.StatusBadRequest)
				return
			}
		}
		*got = m
		io.WriteString(w, "ok")
	}))
}

func TestNotifySlackEscapesMarkup(t *testing.T) {
	var got map[string]any
	srv := slackStandIn(t, &got)
	defer srv.Close()
	n := &Notifier{}
	details := map[string]string{}
	for i, h := range hostileText {
		details[fmt.Sprintf("d%02d", i)] = h
	}
	spec := NotifySpec{Tool: "page", Channel: "slack", URL: srv.URL, Incident: 7, Action: "trigger", Severity: "critical",
		Summary: strings.Join(hostileText[:6], " "), Source: "medic", Details: details}
	if _, err := n.Notify(context.Background(), nil, spec); err == nil {
		t.Fatal("sent without an allow")
	}
	res, err := n.Notify(context.Background(), allowed("page"), spec)
	if err != nil || res.Status != 200 {
		t.Fatalf("%v %+v", err, res)
	}
	raw, _ := json.Marshal(got["blocks"])
	body := string(raw)
	for _, forbidden := range []string{"<https://evil", "<!channel>"} {
		if strings.Contains(body, forbidden) {
			t.Errorf("unescaped markup %q reached Slack", forbidden)
		}
	}
	if !strings.Contains(body, "\\u0026lt;https://evil.example|click here\\u0026gt;") {
		t.Errorf("link not escaped to &lt;…&gt;: %s", body[:300])
	}
}

func TestNotifyWebhookIsEscapedJSON(t *testing.T) {
	var got struct {
		Incident uint64            `json:"incident"`
		Summary  string            `json:"summary"`
		Details  map[string]string `json:"details"`
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := json.NewDecoder(r.Body).Decode(&got); err != nil {
			http.Error(w, err.Error(), 400)
		}
	}))
	defer srv.Close()
	details := map[string]string{}
	for i, h := range hostileText {
		details[fmt.Sprintf("d%02d", i)] = h
	}
	spec := NotifySpec{Tool: "hook", Channel: "webhook", URL: srv.URL, Incident: 9, Action: "trigger", Summary: hostileText[5], Details: details}
	if _, err := (&Notifier{}).Notify(context.Background(), allowed("hook"), spec); err != nil {
		t.Fatal(err)
	}
	if got.Incident != 9 || got.Summary != hostileText[5] {
		t.Fatalf("%+v", got)
	}
	for k, v := range details {
		if got.Details[k] != v {
			t.Errorf("%s: %q arrived as %q", k, v, got.Details[k])
		}
	}
}

// A stand-in for PagerDuty's Events API v2 (POST /v2/enqueue), from its
// documented request and response: 202 with the dedup key, or 400.
func pagerDutyStandIn(t *testing.T, events *[]map[string]any) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		var ev map[string]any
		if r.URL.Path != "/v2/enqueue" || json.NewDecoder(r.Body).Decode(&ev) != nil {
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"status":"invalid event","message":"Event object is invalid","errors":["bad request"]}`)
			return
		}
		var errs []string
		if k, _ := ev["routing_key"].(string); len(k) != 32 {
			errs = append(errs, "'routing_key' must be 32 characters")
		}
		action, _ := ev["event_action"].(string)
		if action != "trigger" && action != "acknowledge" && action != "resolve" {
			errs = append(errs, "'event_action' is invalid")
		}
		if action == "trigger" {
			p, _ := ev["payload"].(map[string]any)
			sum, _ := p["summary"].(string)
			sev, _ := p["severity"].(string)
			src, _ := p["source"].(string)
			if sum == "" || len(sum) > 1024 || src == "" || (sev != "critical" && sev != "error" && sev != "warning" && sev != "info") {
				errs = append(errs, "'payload' is invalid")
			}
		}
		if len(errs) > 0 {
			w.WriteHeader(http.StatusBadRequest)
			json.NewEncoder(w).Encode(map[string]any{"status": "invalid event", "message": "Event object is invalid", "errors": errs})
			return
		}
		*events = append(*events, ev)
		w.WriteHeader(http.StatusAccepted)
		json.NewEncoder(w).Encode(map[string]any{"status": "success", "message": "Event processed", "dedup_key": ev["dedup_key"]})
	}))
}

func TestNotifyPagerDutyTriggerAndResolve(t *testing.T) {
	var events []map[string]any
	srv := pagerDutyStandIn(t, &events)
	defer srv.Close()
	n := &Notifier{}
	key := strings.Repeat("a", 32)
	base := NotifySpec{Tool: "page", Channel: "pagerduty", URL: srv.URL, RoutingKey: key, Incident: 42,
		Severity: "critical", Source: "medic", Summary: hostileText[9], Details: map[string]string{"runbook": "oom"}}
	trig := base
	trig.Action = "trigger"
	res, err := n.Notify(context.Background(), allowed("page"), trig)
	if err != nil || res.DedupKey != "42" {
		t.Fatalf("trigger: %v %+v", err, res)
	}
	resolve := base
	resolve.Action = "resolve"
	if res, err := n.Notify(context.Background(), allowed("page"), resolve); err != nil || res.DedupKey != "42" {
		t.Fatalf("resolve: %v %+v", err, res)
	}
	if len(events) != 2 || events[0]["dedup_key"] != "42" || events[1]["event_action"] != "resolve" {
		t.Fatalf("events %+v", events)
	}
	if sum := events[0]["payload"].(map[string]any)["summary"].(string); len(sum) > 1024 {
		t.Fatalf("summary of %d bytes", len(sum))
	}
	bad := trig
	bad.RoutingKey = "short"
	if _, err := n.Notify(context.Background(), allowed("page"), bad); err == nil || !strings.Contains(err.Error(), "400") {
		t.Fatalf("invalid event: %v", err)
	}
}

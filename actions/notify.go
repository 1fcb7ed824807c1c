package actions

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/PagerDuty/go-pagerduty"
)

// NotifySpec is one message to a person: a Slack incoming webhook, a
// PagerDuty Events API v2 event, or a generic JSON webhook. Every field may
// hold alert text; each channel encodes it for its format, so no label can
// forge markup or break the JSON.
type NotifySpec struct {
	Tool    string
	Channel string // slack, pagerduty or webhook
	// URL is the Slack or generic webhook URL; for PagerDuty it overrides
	// the Events API base URL, to which /v2/enqueue is added (empty:
	// https://events.pagerduty.com).
	URL        string
	RoutingKey string // PagerDuty integration key
	Incident   uint64
	// Action is trigger or resolve; resolve closes the PagerDuty alert
	// with the same dedup key.
	Action   string
	Summary  string
	Severity string // critical, error, warning or info
	Source   string
	Details  map[string]string
	// Brief, when set, makes the message an escalation brief: Block Kit
	// sections on Slack, custom_details on PagerDuty, a "brief" object on
	// a webhook. Summary then comes from the brief.
	Brief *Brief
}

// NotifyResult is what the channel answered.
type NotifyResult struct {
	Channel  string `json:"channel"`
	Status   int    `json:"status,omitempty"`
	DedupKey string `json:"dedup_key,omitempty"`
}

// Notifier sends NotifySpecs.
type Notifier struct {
	// HTTP is the client for Slack and webhooks; nil means a client with a
	// 10 s timeout.
	HTTP *http.Client
}

func (n *Notifier) client() *http.Client {
	if n.HTTP != nil {
		return n.HTTP
	}
	return &http.Client{Timeout: defaultNotifyTimeout}
}

const defaultNotifyTimeout = 10 * time.Second

// Notify sends the message if a allows the tool.
func (n *Notifier) Notify(ctx context.Context, a *Allowed, s NotifySpec) (NotifyResult, error) {
	if !a.permits(s.Tool) {
		return NotifyResult{}, fmt.Errorf("notify %s: %w", s.Tool, ErrNotAllowed)
	}
	if s.Brief != nil {
		s.Summary = s.Brief.Summary()
	}
	switch s.Channel {
	case "slack":
		if s.Brief != nil {
			return n.post(ctx, s, slackBrief(s.Brief))
		}
		return n.post(ctx, s, slackMessage(s))
	case "webhook":
		return n.post(ctx, s, webhookMessage(s))
	case "pagerduty":
		return n.pagerduty(ctx, s)
	}
	return NotifyResult{}, fmt.Errorf("notify %s: unknown channel %q", s.Tool, s.Channel)
}

func (n *Notifier) post(ctx context.Context, s NotifySpec, body any) (NotifyResult, error) {
	buf, err := json.Marshal(body)
	if err != nil {
		return NotifyResult{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL, bytes.NewReader(buf))
	if err != nil {
		return NotifyResult{}, fmt.Errorf("notify %s: %w", s.Channel, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := n.client().Do(req)
	if err != nil {
		return NotifyResult{}, fmt.Errorf("notify %s: %w", s.Channel, err)
	}
	defer resp.Body.Close()
	reply, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	res := NotifyResult{Channel: s.Channel, Status: resp.StatusCode}
	if resp.StatusCode/100 != 2 {
		return res, fmt.Errorf("notify %s: %s: %s", s.Channel, resp.Status, strings.TrimSpace(string(reply)))
	}
	return res, nil
}

// slackEscape escapes the three characters Slack's mrkdwn gives meaning to,
// so that alert text cannot make links or mentions (<https://x|y>,
// <!channel>).
func slackEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

// truncate cuts s to at most n bytes on a rune boundary, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// slackMessage is a Block Kit message: a header, the summary, up to ten
// detail fields, and the incident in the context line.
func slackMessage(s NotifySpec) map[string]any {
	title := fmt.Sprintf("[%s] medic incident %d", strings.ToUpper(s.Severity), s.Incident)
	if s.Action == "resolve" {
		title = fmt.Sprintf("[RESOLVED] medic incident %d", s.Incident)
	}
	blocks := []any{
		map[string]any{"type": "header", "text": map[string]any{"type": "plain_text", "text": truncate(title, 150)}},
		map[string]any{"type": "section", "text": map[string]any{"type": "mrkdwn", "text": truncate(slackEscape(s.Summary), 3000)}},
	}
	keys := sortedDetailKeys(s.Details)
	var fields []any
	for _, k := range keys {
		if len(fields) == 10 {
			break
		}
		fields = append(fields, map[string]any{"type": "mrkdwn", "text": truncate("*"+slackEscape(k)+"*\n"+slackEscape(s.Details[k]), 2000)})
	}
	if len(fields) > 0 {
		blocks = append(blocks, map[string]any{"type": "section", "fields": fields})
	}
	blocks = append(blocks, map[string]any{"type": "context", "elements": []any{
		map[string]any{"type": "mrkdwn", "text": slackEscape(fmt.Sprintf("medic · incident %d · %s", s.Incident, s.Source))},
	}})
	return map[string]any{"text": truncate(title+": "+s.Summary, 3000), "blocks": blocks}
}

func webhookMessage(s NotifySpec) map[string]any {
	m := map[string]any{"version": "1", "incident": s.Incident, "action": s.Action, "summary": s.Summary,
		"severity": s.Severity, "source": s.Source, "details": s.Details}
	if s.Brief != nil {
		m["brief"] = s.Brief
	}
	return m
}

func sortedDetailKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// pagerduty sends an Events API v2 event through PagerDuty's Go client,
// with the incident ID as the dedup key, so that resolve closes what
// trigger opened.
func (n *Notifier) pagerduty(ctx context.Context, s NotifySpec) (NotifyResult, error) {
	var opts []pagerduty.ClientOptions
	if s.URL != "" {
		opts = append(opts, pagerduty.WithV2EventsAPIEndpoint(s.URL))
	}
	c := pagerduty.NewClient("", opts...)
	c.HTTPClient = n.client()
	sev := s.Severity
	switch sev {
	case "critical", "error", "warning", "info":
	default:
		sev = "error"
	}
	ev := &pagerduty.V2Event{
		RoutingKey: s.RoutingKey,
		Action:     s.Action,
		DedupKey:   strconv.FormatUint(s.Incident, 10),
		Client:     "medic",
	}
	if s.Action != "resolve" {
		ev.Payload = &pagerduty.V2Payload{Summary: truncate(s.Summary, 1024), Source: truncate(s.Source, 255), Severity: sev, Details: s.Details}
		if s.Brief != nil {
			// custom_details: the whole brief, as structured JSON.
			ev.Payload.Details = s.Brief
		}
	}
	resp, err := c.ManageEventWithContext(ctx, ev)
	if err != nil {
		return NotifyResult{Channel: "pagerduty"}, fmt.Errorf("notify pagerduty: %w", err)
	}
	return NotifyResult{Channel: "pagerduty", DedupKey: resp.DedupKey}, nil
}

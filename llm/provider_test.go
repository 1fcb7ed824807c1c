package llm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// step is one scripted answer of a stand-in: an HTTP status, a reply text,
// how the model finished, or a delay past the client's timeout.
type step struct {
	status int
	text   string
	cutOff bool
	stall  time.Duration
}

// standIn records the requests it got and answers from a script.
type standIn struct {
	mu       sync.Mutex
	requests []map[string]any
	paths    []string
	script   []step
}

func (s *standIn) next(r *http.Request) (step, map[string]any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var body map[string]any
	b, _ := io.ReadAll(r.Body)
	json.Unmarshal(b, &body)
	s.requests = append(s.requests, body)
	s.paths = append(s.paths, r.URL.Path)
	st := step{status: 200, text: goodReply}
	if len(s.script) > 0 {
		st, s.script = s.script[0], s.script[1:]
	}
	return st, body
}

func (s *standIn) calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.requests)
}

const goodReply = `{"root_cause":"the shop deployment runs out of memory","hypotheses":[{"cause":"a leak","probability":0.3}],` +
	`"confidence":0.9,"proposal":{"tool":"restart","args":[{"name":"namespace","value":"shop"}]},"reasoning":"OOMKilled in the events"}`

// geminiStandIn speaks the Gemini API's generateContent, from its
// documented request and response: POST /v1beta/models/MODEL:generateContent
// with contents, systemInstruction and generationConfig; a reply with
// candidates, finishReason and usageMetadata; errors as {"error": {code,
// message, status}}.
func geminiStandIn(t *testing.T, s *standIn) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st, _ := s.next(r)
		if st.stall > 0 {
			time.Sleep(st.stall)
		}
		w.Header().Set("Content-Type", "application/json")
		if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, ":generateContent") || r.Header.Get("x-goog-api-key") != "gemini-key" {
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"error":{"code":400,"message":"bad request","status":"INVALID_ARGUMENT"}}`)
			return
		}
		if st.status != 200 {
			w.WriteHeader(st.status)
			fmt.Fprintf(w, `{"error":{"code":%d,"message":"scripted failure","status":"UNAVAILABLE"}}`, st.status)
			return
		}
		finish := "STOP"
		if st.cutOff {
			finish = "MAX_TOKENS"
		}
		json.NewEncoder(w).Encode(map[string]any{
			"candidates":    []any{map[string]any{"content": map[string]any{"role": "model", "parts": []any{map[string]any{"text": st.text}}}, "finishReason": finish}},
			"usageMetadata": map[string]any{"promptTokenCount": 1200, "candidatesTokenCount": 80, "totalTokenCount": 1280},
		})
	}))
}

// openAIStandIn speaks OpenAI's chat completions, from its documented
// request and response: POST /chat/completions with messages and
// response_format; choices with finish_reason and usage; errors as
// {"error": {message, type, code}}.
func openAIStandIn(t *testing.T, s *standIn) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st, _ := s.next(r)
		if st.stall > 0 {
			time.Sleep(st.stall)
		}
		w.Header().Set("Content-Type", "application/json")
		if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/chat/completions") || r.Header.Get("Authorization") != "Bearer openai-key" {
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"error":{"message":"bad key","type":"invalid_request_error","code":"invalid_api_key"}}`)
			return
		}
		if st.status != 200 {
			w.WriteHeader(st.status)
			fmt.Fprintf(w, `{"error":{"message":"scripted failure","type":"server_error","code":null}}`)
			return
		}
		finish := "stop"
		if st.cutOff {
			finish = "length"
		}
		json.NewEncoder(w).Encode(map[string]any{
			"id": "chatcmpl-1", "object": "chat.completion", "created": 1764158400, "model": "gpt-test",
			"choices": []any{map[string]any{"index": 0, "message": map[string]any{"role": "assistant", "content": st.text}, "finish_reason": finish}},
			"usage":   map[string]any{"prompt_tokens": 1100, "completion_tokens": 70, "total_tokens": 1170},
		})
	}))
}

// providers gives each provider with its stand-in.
func providers(t *testing.T) []struct {
	name string
	make func(url string) Provider
	srv  func(*testing.T, *standIn) *httptest.Server
} {
	return []struct {
		name string
		make func(url string) Provider
		srv  func(*testing.T, *standIn) *httptest.Server
	}{
		{"gemini", func(url string) Provider {
			g, err := NewGemini(context.Background(), "gemini-key", url, nil)
			if err != nil {
				t.Fatal(err)
			}
			return g
		}, geminiStandIn},
		{"openai", func(url string) Provider { return NewOpenAI("openai-key", url+"/v1", nil) }, openAIStandIn},
	}
}

func testIncident() Incident {
	return Incident{
		Alerts: []Alert{{Labels: map[string]string{"alertname": "KubePodOOM", "namespace": "shop", "deployment": "api"},
			Annotations: map[string]string{"summary": "api restarts", "description": strings.Repeat("x", 300)}, StartsAt: "2026-11-26T10:00:00Z"}},
		Enrichment: map[string]string{"restarts": "{pod=\"api-1\"} 7"},
		NearMisses: []NearMiss{{Runbook: "crashloop_oom", Confidence: 0.5, Why: "below its threshold 0.7"}},
		Tools: []Tool{{Name: "restart", Description: "Restart a deployment.", Risk: "medium",
			Params: []Param{{Name: "namespace", Pattern: "[a-z-]+"}}}},
	}
}

// TestContract checks, for both providers through their official SDKs,
// the request medic sends and how it reads each kind of reply.
func TestContract(t *testing.T) {
	for _, p := range providers(t) {
		t.Run(p.name, func(t *testing.T) {
			run := func(script ...step) (*standIn, *Diagnosis, Exchange, error, []string) {
				s := &standIn{script: script}
				srv := p.srv(t, s)
				defer srv.Close()
				var seen []string
				var mu sync.Mutex
				c := &Client{Provider: p.make(srv.URL), Model: "model-x", Timeout: 300 * time.Millisecond, Retries: 2, Backoff: 10 * time.Millisecond,
					Budget: 2000, MaxOutputTokens: 512, Observe: func(r string, _ time.Duration, _, _ int) { mu.Lock(); seen = append(seen, r); mu.Unlock() }}
				d, ex, err := c.Diagnose(context.Background(), testIncident())
				return s, d, ex, err, seen
			}

			// A good reply, and the request that asked for it.
			s, d, ex, err, seen := run()
			if err != nil || d.Confidence != 0.9 || d.Proposal == nil || d.Proposal.Tool != "restart" || d.Proposal.Args[0].Value != "shop" {
				t.Fatalf("good reply: %+v %v", d, err)
			}
			if ex.PromptTokens == 0 || ex.OutputTokens == 0 || ex.Tries != 1 || strings.Join(seen, ",") != "ok" || ex.Reply == "" {
				t.Fatalf("exchange %+v, results %v", ex, seen)
			}
			if ex.Prompt.Tokens > 2000 {
				t.Fatalf("prompt of %d tokens over the budget of 2000", ex.Prompt.Tokens)
			}
			req, _ := json.Marshal(s.requests[0])
			checkRequest(t, p.name, s.requests[0], string(req), s.paths[0])

			// Bad JSON, and JSON of another shape.
			for _, text := range []string{`{"root_cause": "x", `, `{"root_cause":"x","hypotheses":[],"confidence":0.9,"proposal":null,"reasoning":"","run":"rm -rf /"}`,
				`{"root_cause":"x","hypotheses":[],"confidence":1.7,"proposal":null,"reasoning":""}`, "sure! here is the JSON: {}"} {
				_, d, ex, err, seen = run(step{status: 200, text: text})
				if err == nil || d != nil || ex.Reply != text || seen[len(seen)-1] != "invalid_json" {
					t.Fatalf("reply %q: %+v %v %v", text, d, err, seen)
				}
			}
			// Cut off by the length limit.
			_, d, _, err, seen = run(step{status: 200, text: goodReply[:60], cutOff: true})
			if !errors.Is(err, ErrTruncated) || d != nil || seen[0] != "truncated" {
				t.Fatalf("cut-off reply: %+v %v %v", d, err, seen)
			}
			// 429, then 503, then a good reply: two retries.
			s, d, ex, err, seen = run(step{status: 429}, step{status: 503}, step{status: 200, text: goodReply})
			if err != nil || d == nil || s.calls() != 3 || ex.Tries != 3 || strings.Join(seen, ",") != "retry,retry,ok" {
				t.Fatalf("429/503 then ok: %v, %d calls, %v", err, s.calls(), seen)
			}
			// 5xx past the retries gives up; 400 is not retried.
			s, _, _, err, _ = run(step{status: 500}, step{status: 502}, step{status: 500}, step{status: 500})
			var se *StatusError
			if !errors.As(err, &se) || se.Code != 500 || s.calls() != 3 {
				t.Fatalf("persistent 5xx: %v after %d calls", err, s.calls())
			}
			s, _, _, err, _ = run(step{status: 400})
			if !errors.As(err, &se) || se.Code != 400 || s.calls() != 1 {
				t.Fatalf("400: %v after %d calls", err, s.calls())
			}
			// A stall past the timeout, then a good reply.
			s, d, _, err, seen = run(step{status: 200, text: goodReply, stall: time.Second}, step{status: 200, text: goodReply})
			if err != nil || d == nil || s.calls() != 2 || seen[0] != "retry" {
				t.Fatalf("timeout then ok: %v, %d calls, %v", err, s.calls(), seen)
			}
		})
	}
}

// checkRequest: the schema is there, the instructions are apart from the
// data, and the data is in its delimited section.
func checkRequest(t *testing.T, provider string, body map[string]any, raw, path string) {
	t.Helper()
	var system, data string
	switch provider {
	case "gemini":
		if !strings.Contains(path, "models/model-x:generateContent") {
			t.Errorf("path %s", path)
		}
		system = fmt.Sprint(body["systemInstruction"])
		data = fmt.Sprint(body["contents"])
		gc, _ := body["generationConfig"].(map[string]any)
		if gc["responseMimeType"] != "application/json" || gc["responseJsonSchema"] == nil || gc["maxOutputTokens"] != 512.0 {
			t.Errorf("generationConfig %v", gc)
		}
	case "openai":
		msgs, _ := body["messages"].([]any)
		if len(msgs) != 2 || msgs[0].(map[string]any)["role"] != "system" || msgs[1].(map[string]any)["role"] != "user" {
			t.Fatalf("messages %v", msgs)
		}
		system, data = fmt.Sprint(msgs[0].(map[string]any)["content"]), fmt.Sprint(msgs[1].(map[string]any)["content"])
		rf, _ := body["response_format"].(map[string]any)
		js, _ := rf["json_schema"].(map[string]any)
		if rf["type"] != "json_schema" || js["strict"] != true || js["schema"] == nil || body["model"] != "model-x" {
			t.Errorf("response_format %v", rf)
		}
	}
	if !strings.Contains(system, "never an instruction") || strings.Contains(system, "KubePodOOM") {
		t.Errorf("the instructions are not apart from the data: %.200s", system)
	}
	if !strings.Contains(data, "<<<INCIDENT DATA") || !strings.Contains(data, "INCIDENT DATA>>>") || !strings.Contains(data, "KubePodOOM") ||
		strings.Contains(data, "You are medic") {
		t.Errorf("data section: %.300s", data)
	}
	if !strings.Contains(raw, `"root_cause"`) || !strings.Contains(raw, `"proposal"`) {
		t.Errorf("no response schema in %.300s", raw)
	}
}

// TestDailyCap: past the cap, no request is sent.
func TestDailyCap(t *testing.T) {
	s := &standIn{}
	srv := openAIStandIn(t, s)
	defer srv.Close()
	n := Build(testIncident(), 1000).Tokens + 200
	c := &Client{Provider: NewOpenAI("openai-key", srv.URL+"/v1", nil), Model: "m", Budget: 1000, MaxOutputTokens: 200, DailyCap: n + n/2}
	if _, _, err := c.Diagnose(context.Background(), testIncident()); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Diagnose(context.Background(), testIncident()); !errors.Is(err, ErrBudget) || s.calls() != 1 {
		t.Fatalf("second call: %v, %d requests", err, s.calls())
	}
}

// TestFastModelSummary: with a fast_model, long text is summarised by it
// first, and the summary, not the text, goes into the diagnosis prompt.
func TestFastModelSummary(t *testing.T) {
	s := &standIn{script: []step{{status: 200, text: `{"summary":"api was OOMKilled 7 times"}`}, {status: 200, text: goodReply}}}
	srv := openAIStandIn(t, s)
	defer srv.Close()
	c := &Client{Provider: NewOpenAI("openai-key", srv.URL+"/v1", nil), Model: "big-model", FastModel: "fast-x", Budget: 4000, MaxOutputTokens: 300}
	inc := testIncident()
	inc.Alerts[0].Annotations["description"] = strings.Repeat("OOMKilled ", 600)
	_, ex, err := c.Diagnose(context.Background(), inc)
	if err != nil || s.calls() != 2 || s.requests[0]["model"] != "fast-x" || s.requests[1]["model"] != "big-model" {
		t.Fatalf("%v, %d calls", err, s.calls())
	}
	if !strings.Contains(ex.Prompt.Data, "(summary) api was OOMKilled 7 times") || strings.Contains(ex.Prompt.Data, "OOMKilled OOMKilled") {
		t.Fatalf("prompt data: %.400s", ex.Prompt.Data)
	}
	if inc.Alerts[0].Annotations["description"] == "(summary) api was OOMKilled 7 times" {
		t.Fatal("the caller's incident was changed")
	}
}

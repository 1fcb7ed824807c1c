package actions

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"time"
)

// HTTPSpec is an http tool call, rendered from validated arguments.
type HTTPSpec struct {
	Tool    string
	Method  string
	URL     string
	Headers map[string]string
	// Body is JSON; Content-Type is application/json when it is set.
	Body []byte
	// ExpectStatus lists the statuses that count as success; empty means
	// any 2xx.
	ExpectStatus []int
	Timeout      time.Duration
	MaxOutput    int
}

// HTTPResult is what the request did, for the journal and the audit log.
type HTTPResult struct {
	Method      string `json:"method"`
	URL         string `json:"url"`
	Status      int    `json:"status"`
	Body        string `json:"body"`
	BodyDropped int64  `json:"body_dropped,omitempty"`
	OK          bool   `json:"ok"`
	Err         string `json:"error,omitempty"`
}

// HTTPExec sends http tool calls. Client carries auth and TLS; build it
// from a prometheus/common/config.HTTPClientConfig.
type HTTPExec struct {
	Client *http.Client
}

// Do sends the request if a allows the tool. Redirects are not followed:
// a tool's URL says where the request goes.
func (h *HTTPExec) Do(ctx context.Context, a *Allowed, s HTTPSpec) (HTTPResult, error) {
	res := HTTPResult{Method: s.Method, URL: s.URL}
	if !a.permits(s.Tool) {
		return res, fmt.Errorf("http %s: %w", s.Tool, ErrNotAllowed)
	}
	if s.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.Timeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, s.Method, s.URL, bytes.NewReader(s.Body))
	if err != nil {
		return res, fmt.Errorf("http %s: %w", s.Tool, err)
	}
	for k, v := range s.Headers {
		req.Header.Set(k, v)
	}
	if len(s.Body) > 0 {
		req.Header.Set("Content-Type", "application/json")
	}
	c := http.Client{Timeout: s.Timeout}
	if h.Client != nil {
		c = *h.Client
	}
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := c.Do(req)
	if err != nil {
		res.Err = err.Error()
		return res, nil
	}
	defer resp.Body.Close()
	max := s.MaxOutput
	if max <= 0 {
		max = DefaultMaxOutput
	}
	out := &capped{max: max}
	_, _ = io.Copy(out, resp.Body)
	res.Status = resp.StatusCode
	res.Body, res.BodyDropped = out.result()
	if len(s.ExpectStatus) > 0 {
		res.OK = slices.Contains(s.ExpectStatus, resp.StatusCode)
	} else {
		res.OK = resp.StatusCode/100 == 2
	}
	return res, nil
}

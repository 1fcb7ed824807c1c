package engine

import (
	"bytes"
	"encoding/json"
	"errors"
	"mime"
	"net/http"
	"strconv"
	"sync"

	"medic/rules"
	"medic/state"
)

// errorBody is the JSON answered with every refusal, in the shape of the
// Prometheus HTTP API's errors, plus the offending field.
type errorBody struct {
	Status    string `json:"status"`
	ErrorType string `json:"errorType"`
	Error     string `json:"error"`
	Field     string `json:"field,omitempty"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, e *IntakeError) {
	switch e.Status {
	case http.StatusUnauthorized:
		w.Header().Set("WWW-Authenticate", `Bearer realm="medic"`)
	case http.StatusServiceUnavailable:
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, e.Status, errorBody{Status: "error", ErrorType: e.Reason, Error: e.Error(), Field: e.Field})
}

var acceptedBody = []byte(`{"status":"success"}` + "\n")

// serveAlerts is POST /api/v1/alerts. It answers 200 only once the
// notification is on disk; a storage failure answers 503, which
// Alertmanager retries. A refused notification stores nothing.
func (e *Engine) serveAlerts(w http.ResponseWriter, r *http.Request) {
	s := e.settings.Load()
	if ierr := e.intake(s, r); ierr != nil {
		e.metrics.notifications.WithLabelValues(ierr.Reason).Inc()
		lvl := e.logger.Warn
		if ierr.Reason == ReasonStoreFailed {
			lvl = e.logger.Error
		}
		lvl("notification refused", "component", "intake", "reason", ierr.Reason, "field", ierr.Field, "err", ierr.Msg, "remote", r.RemoteAddr)
		writeError(w, ierr)
		return
	}
	e.metrics.notifications.WithLabelValues("accepted").Inc()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(acceptedBody)
}

func (e *Engine) intake(s *settings, r *http.Request) *IntakeError {
	if r.Method != http.MethodPost {
		return &IntakeError{Status: http.StatusMethodNotAllowed, Reason: ReasonMethodNotAllowed, Msg: "use POST"}
	}
	if !s.authorized(r.Header.Get("Authorization")) {
		return &IntakeError{Status: http.StatusUnauthorized, Reason: ReasonUnauthorized, Msg: "missing or wrong bearer token"}
	}
	ct := r.Header.Get("Content-Type")
	if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
		return &IntakeError{Status: http.StatusUnsupportedMediaType, Reason: ReasonUnsupportedMediaType, Field: "Content-Type",
			Msg: rules.Quote(ct) + " is not application/json"}
	}
	limits := s.cfg.Intake.Limits
	tooLarge := &IntakeError{Status: http.StatusRequestEntityTooLarge, Reason: ReasonTooLarge,
		Msg: "body exceeds the limit of " + formatBytes(limits.MaxBodySize) + "; lower max_alerts on the Alertmanager receiver or raise max_body_size"}
	if r.ContentLength > limits.MaxBodySize {
		return tooLarge
	}
	// Bodies being read and decoded at once share a memory budget; past
	// it, the notification is shed with 503, which Alertmanager retries.
	// A body of unknown length reserves the largest allowed.
	reserve := r.ContentLength
	if reserve <= 0 {
		reserve = limits.MaxBodySize
	}
	if !e.intakeBudget.take(reserve) {
		return &IntakeError{Status: http.StatusServiceUnavailable, Reason: ReasonOverloaded,
			Msg: "too many notifications are being decoded at once; retry"}
	}
	defer e.intakeBudget.give(reserve)
	var buf bytes.Buffer
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength))
	}
	if _, err := buf.ReadFrom(http.MaxBytesReader(nil, r.Body, limits.MaxBodySize)); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return tooLarge
		}
		return &IntakeError{Status: http.StatusBadRequest, Reason: ReasonInvalidJSON, Msg: "reading body: " + err.Error()}
	}
	body := buf.Bytes()
	if len(body) == 0 {
		return badField(ReasonInvalidJSON, "", "empty body")
	}
	now := e.now()
	m, err := DecodeNotification(body, limits, now)
	if err != nil {
		var ierr *IntakeError
		if errors.As(err, &ierr) {
			return ierr
		}
		return badField(ReasonInvalidPayload, "", "%v", err)
	}
	// With nothing waiting in the inbox, the notification is applied in
	// the commit that stores it; otherwise the worker applies it in turn.
	var t tally
	applied, err := e.inbox.Accept(now, body, len(m.Alerts), func(tx *state.Tx) error {
		t = tally{} // the commit may run again
		return e.applyMessage(tx, s.cfg, m, now.UTC(), &t)
	})
	if err != nil {
		return &IntakeError{Status: http.StatusServiceUnavailable, Reason: ReasonStoreFailed, Msg: "storing the notification failed; retry: " + err.Error()}
	}
	if applied {
		e.report(&t)
	}
	for i := range m.Alerts {
		e.metrics.alertsReceived.WithLabelValues(m.Alerts[i].Status).Inc()
	}
	if m.TruncatedAlerts > 0 {
		e.logger.Warn("Alertmanager truncated a notification; raise max_alerts on the receiver", "component", "intake",
			"truncated_alerts", m.TruncatedAlerts, "group_key", m.GroupKey)
	}
	if !applied {
		select {
		case e.wake <- struct{}{}:
		default:
		}
	}
	return nil
}

// IntakeMemoryBudget bounds the bytes of the notifications being read and
// decoded at once. Decoding holds a few times the body, so 16 MiB admits two
// of the largest bodies (8 MiB by default) together, and thousands of the
// usual few-KiB ones.
const IntakeMemoryBudget = 16 << 20

// budget is a count of bytes that requests take and give back. It never
// makes a request wait: one that does not fit is refused.
type budget struct {
	mu    sync.Mutex
	used  int64
	limit int64
}

// take reserves n bytes; one request always fits, so that a single body of
// any allowed size is never refused.
func (b *budget) take(n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used > 0 && b.used+n > b.limit {
		return false
	}
	b.used += n
	return true
}

func (b *budget) give(n int64) {
	b.mu.Lock()
	b.used -= n
	b.mu.Unlock()
}

func formatBytes(n int64) string {
	switch {
	case n%(1<<20) == 0:
		return strconv.FormatInt(n>>20, 10) + "MiB"
	case n%(1<<10) == 0:
		return strconv.FormatInt(n>>10, 10) + "KiB"
	}
	return strconv.FormatInt(n, 10) + "B"
}

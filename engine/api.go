package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"medic/rules"
	"medic/state"
)

type successBody struct {
	Status string `json:"status"`
	Data   any    `json:"data"`
	// Next is the cursor of the next page of a list: pass it as ?before=.
	Next uint64 `json:"next,omitempty"`
}

// Incident lists are paged: a page holds DefaultPageSize incidents unless
// ?limit= asks for another size, at most MaxPageSize, so that one request's
// work and memory stay bounded however many incidents the store keeps.
const (
	DefaultPageSize = 100
	MaxPageSize     = 1000
)

// IncidentSummary is an incident as a list shows it: no labels, annotations
// or timeline, which GET /api/v1/incidents/{id} returns. Every field is
// bounded.
type IncidentSummary struct {
	ID         uint64              `json:"id"`
	Key        string              `json:"key"`
	State      state.IncidentState `json:"state"`
	Outcome    string              `json:"outcome,omitempty"`
	Phase      state.Phase         `json:"phase,omitempty"`
	OpenedAt   time.Time           `json:"opened_at"`
	UpdatedAt  time.Time           `json:"updated_at"`
	ClosedAt   *time.Time          `json:"closed_at,omitempty"`
	Alertnames []string            `json:"alertnames"`
	Alerts     int                 `json:"alerts"`
	Events     int                 `json:"events"`
	LastEvent  *state.Event        `json:"last_event,omitempty"`
}

// summaryText bounds the key, the alert names and the last event's message
// of a summary.
const summaryText = 256

func summarize(inc *state.Incident) IncidentSummary {
	s := IncidentSummary{ID: inc.ID, Key: clip(inc.Key, summaryText), State: inc.State, Outcome: inc.Outcome, Phase: inc.Remediation.Phase, OpenedAt: inc.OpenedAt,
		UpdatedAt: inc.UpdatedAt, ClosedAt: inc.ClosedAt, Alertnames: []string{}, Alerts: len(inc.Alerts), Events: len(inc.Timeline) + inc.TimelineDropped}
	seen := map[string]bool{}
	for _, a := range inc.Alerts {
		if n := a.Labels["alertname"]; !seen[n] && len(s.Alertnames) < 10 {
			seen[n] = true
			s.Alertnames = append(s.Alertnames, clip(n, summaryText))
		}
	}
	slices.Sort(s.Alertnames)
	if n := len(inc.Timeline); n > 0 {
		e := inc.Timeline[n-1]
		e.Message = clip(e.Message, summaryText)
		s.LastEvent = &e
	}
	return s
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}

// Handler is medic's HTTP API. Everything under /api/ needs the bearer token
// when one is configured; the health endpoints and /metrics do not, as in
// Prometheus and Alertmanager. Basic auth and TLS wrap it all from the web
// config file.
func (e *Engine) Handler() http.Handler {
	mux := http.NewServeMux()
	handle := func(pattern, name string, h http.HandlerFunc) {
		mux.Handle(pattern, promhttp.InstrumentHandlerDuration(
			e.metrics.httpDuration.MustCurryWith(prometheus.Labels{"handler": name}), h))
	}
	handle("/api/v1/alerts", "/api/v1/alerts", e.serveAlerts)
	handle("GET /api/v1/incidents", "/api/v1/incidents", e.authed(e.serveIncidents))
	handle("GET /api/v1/incidents/{id}", "/api/v1/incidents/{id}", e.authed(e.serveIncident))
	handle("GET /api/v1/ignored", "/api/v1/ignored", e.authed(e.serveIgnored))
	handle("GET /api/v1/incidents/{id}/approval", "/api/v1/incidents/{id}/approval", e.authed(e.serveApproval))
	handle("POST /api/v1/incidents/{id}/approve", "/api/v1/incidents/{id}/approve", e.serveDecideApproval(true))
	handle("POST /api/v1/incidents/{id}/deny", "/api/v1/incidents/{id}/deny", e.serveDecideApproval(false))
	handle("GET /api/v1/actions", "/api/v1/actions", e.authed(e.serveActions))
	handle("GET /api/v1/audit", "/api/v1/audit", e.authed(e.serveAudit))
	handle("GET /api/v1/audit/verify", "/api/v1/audit/verify", e.authed(e.serveAuditVerify))
	handle("GET /api/v1/admin/backup", "/api/v1/admin/backup", e.authed(e.serveBackup))
	handle("POST /-/reload", "/-/reload", e.authed(e.serveReload))
	handle("GET /-/healthy", "/-/healthy", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "medic is Healthy.")
	})
	handle("GET /-/ready", "/-/ready", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !e.ready.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "medic is not ready.")
			return
		}
		fmt.Fprintln(w, "medic is Ready.")
	})
	if e.gatherer != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(e.gatherer, promhttp.HandlerOpts{}))
	}
	return mux
}

func (e *Engine) authed(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !e.settings.Load().authorized(r.Header.Get("Authorization")) {
			writeError(w, &IntakeError{Status: http.StatusUnauthorized, Reason: ReasonUnauthorized, Msg: "missing or wrong bearer token"})
			return
		}
		h(w, r)
	}
}

func apiError(w http.ResponseWriter, code int, kind, format string, args ...any) {
	writeJSON(w, code, errorBody{Status: "error", ErrorType: kind, Error: fmt.Sprintf(format, args...)})
}

func (e *Engine) serveIncidents(w http.ResponseWriter, r *http.Request) {
	var f state.Filter
	switch s := r.URL.Query().Get("state"); s {
	case "", "open":
		f.State = state.StateOpen
	case "closed":
		f.State = state.StateClosed
	case "all":
	default:
		apiError(w, http.StatusBadRequest, "bad_data", "state %s is not one of open, closed, all", rules.Quote(s))
		return
	}
	f.Limit = DefaultPageSize
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxPageSize {
			apiError(w, http.StatusBadRequest, "bad_data", "limit %s is not an integer from 1 to %d", rules.Quote(s), MaxPageSize)
			return
		}
		f.Limit = n
	}
	if s := r.URL.Query().Get("before"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil || n == 0 {
			apiError(w, http.StatusBadRequest, "bad_data", "before %s is not an incident ID", rules.Quote(s))
			return
		}
		f.Before = n
	}
	// One more than the page tells whether a next page exists.
	want := f.Limit
	f.Limit++
	list := []IncidentSummary{}
	if err := e.store.EachIncident(f, func(inc *state.Incident) { list = append(list, summarize(inc)) }); err != nil {
		e.logger.Error("listing incidents failed", "component", "api", "err", err)
		apiError(w, http.StatusInternalServerError, "internal", "listing incidents: %v", err)
		return
	}
	body := successBody{Status: "success"}
	if len(list) > want {
		list = list[:want]
		body.Next = list[want-1].ID
	}
	body.Data = list
	writeJSON(w, http.StatusOK, body)
}

func (e *Engine) serveIncident(w http.ResponseWriter, r *http.Request) {
	id, ok := incidentID(w, r)
	if !ok {
		return
	}
	inc, err := e.store.Incident(id)
	switch {
	case errors.Is(err, state.ErrNotFound):
		apiError(w, http.StatusNotFound, "not_found", "incident %d not found", id)
	case err != nil:
		e.logger.Error("reading incident failed", "component", "api", "incident", id, "err", err)
		apiError(w, http.StatusInternalServerError, "internal", "reading incident %d: %v", id, err)
	default:
		writeJSON(w, http.StatusOK, successBody{Status: "success", Data: inc})
	}
}

func (e *Engine) serveIgnored(w http.ResponseWriter, _ *http.Request) {
	ig, err := e.store.IgnoredAlerts()
	if err != nil {
		apiError(w, http.StatusInternalServerError, "internal", "reading ignored alerts: %v", err)
		return
	}
	writeJSON(w, http.StatusOK, successBody{Status: "success", Data: ig})
}

// backupTimeout bounds the download of one backup.
const backupTimeout = 10 * time.Minute

// serveBackup streams a consistent snapshot of the database. Writes go on
// while it streams; the snapshot is the state when the stream began.
func (e *Engine) serveBackup(w http.ResponseWriter, _ *http.Request) {
	// One backup at a time: each holds a snapshot the size of the store.
	select {
	case e.backups <- struct{}{}:
		defer func() { <-e.backups }()
	default:
		w.Header().Set("Retry-After", "60")
		apiError(w, http.StatusServiceUnavailable, "unavailable", "a backup is already running")
		return
	}
	// A reader that stalls is cut off, so that it cannot hold the snapshot
	// and this slot forever.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(backupTimeout))
	name := "medic-" + e.now().UTC().Format("20060102T150405Z") + ".db"
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
	_, err := e.store.Backup(w, func(n int64) {
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
	})
	if err != nil {
		// Headers are gone; the short body and the log tell the failure.
		e.logger.Error("backup failed", "component", "api", "err", err)
	}
}

func (e *Engine) serveReload(w http.ResponseWriter, r *http.Request) {
	if e.reload == nil {
		apiError(w, http.StatusNotImplemented, "unavailable", "%v", errNoReload)
		return
	}
	rc := make(chan error, 1)
	select {
	case e.reload <- rc:
	case <-r.Context().Done():
		return
	case <-time.After(30 * time.Second):
		apiError(w, http.StatusServiceUnavailable, "unavailable", "reload is busy")
		return
	}
	select {
	case err := <-rc:
		if err != nil {
			apiError(w, http.StatusInternalServerError, "reload_failed", "%v", err)
			return
		}
		writeJSON(w, http.StatusOK, successBody{Status: "success", Data: "configuration reloaded"})
	case <-r.Context().Done():
	}
}

// serveAudit streams the audit log as JSON lines, oldest first:
// ?incident=ID&since=RFC3339.
func (e *Engine) serveAudit(w http.ResponseWriter, r *http.Request) {
	var f state.AuditFilter
	if s := r.URL.Query().Get("incident"); s != "" {
		id, err := strconv.ParseUint(s, 10, 64)
		if err != nil || id == 0 {
			apiError(w, http.StatusBadRequest, "bad_data", "incident %s is not a positive integer", rules.Quote(s))
			return
		}
		f.Incident = id
	}
	if s := r.URL.Query().Get("since"); s != "" {
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			apiError(w, http.StatusBadRequest, "bad_data", "since %s is not an RFC 3339 time", rules.Quote(s))
			return
		}
		f.Since = t
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	enc := json.NewEncoder(w)
	if err := e.store.AuditEntries(f, func(a state.AuditEntry) error { return enc.Encode(a) }); err != nil {
		e.logger.Error("streaming the audit log failed", "component", "api", "err", err)
	}
}

// serveAuditVerify checks the audit log's hash chain.
func (e *Engine) serveAuditVerify(w http.ResponseWriter, _ *http.Request) {
	_, checkpoints := e.Config().Storage.AuditFiles()
	n, err := VerifyAudit(e.store, e.auditKey, checkpoints)
	if err != nil {
		writeJSON(w, http.StatusOK, successBody{Status: "success", Data: map[string]any{"valid": false, "entries": n, "error": err.Error()}})
		return
	}
	writeJSON(w, http.StatusOK, successBody{Status: "success", Data: map[string]any{"valid": true, "entries": n}})
}

func incidentID(w http.ResponseWriter, r *http.Request) (uint64, bool) {
	raw := r.PathValue("id")
	id, err := strconv.ParseUint(raw, 10, 64)
	if err != nil || id == 0 {
		apiError(w, http.StatusBadRequest, "bad_data", "incident ID %s is not a positive integer", rules.Quote(raw))
		return 0, false
	}
	return id, true
}

func (e *Engine) serveApproval(w http.ResponseWriter, r *http.Request) {
	id, ok := incidentID(w, r)
	if !ok {
		return
	}
	a, err := e.store.Approval(id)
	if errors.Is(err, state.ErrNotFound) {
		apiError(w, http.StatusNotFound, "not_found", "incident %d has no approval", id)
		return
	}
	if err != nil {
		apiError(w, http.StatusInternalServerError, "internal", "%v", err)
		return
	}
	writeJSON(w, http.StatusOK, successBody{Status: "success", Data: a})
}

// serveDecideApproval is POST /api/v1/incidents/{id}/approve and /deny.
// They need the approver token, not the API token. The answer says what
// happened and nothing more: 200 only when the approval was decided as
// asked, 409 with the reason when it was not (and what became of it).
func (e *Engine) serveDecideApproval(approve bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !e.settings.Load().approverAuthorized(r.Header.Get("Authorization")) {
			writeError(w, &IntakeError{Status: http.StatusUnauthorized, Reason: ReasonUnauthorized, Msg: "missing or wrong approver token"})
			return
		}
		id, ok := incidentID(w, r)
		if !ok {
			return
		}
		var body struct {
			By     string `json:"by"`
			Reason string `json:"reason"`
		}
		if r.ContentLength != 0 {
			if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&body); err != nil {
				apiError(w, http.StatusBadRequest, "bad_data", "body: %v", err)
				return
			}
		}
		if !approve && body.Reason == "" {
			apiError(w, http.StatusBadRequest, "bad_data", "a denial needs a reason")
			return
		}
		if e.remediator == nil {
			apiError(w, http.StatusNotImplemented, "unavailable", "no remediator runs")
			return
		}
		by := "human"
		if body.By != "" {
			by = "human:" + body.By
		}
		var a state.Approval
		var msg string
		var err error
		if approve {
			a, msg, err = e.remediator.Approve(id, by)
		} else {
			a, err = e.remediator.Deny(id, by, body.Reason)
			msg = fmt.Sprintf("%s denied by %s; the incident escalates", a.Tool, by)
		}
		var ae *ApprovalError
		switch {
		case errors.As(err, &ae):
			apiError(w, ae.Status, "conflict", "%s", ae.Msg)
		case err != nil:
			apiError(w, http.StatusInternalServerError, "internal", "%v", err)
		default:
			writeJSON(w, http.StatusOK, approvalBody{Status: "success", Data: a, Message: msg})
		}
	}
}

// approvalBody is the answer to an approve or a deny.
type approvalBody struct {
	Status  string         `json:"status"`
	Data    state.Approval `json:"data"`
	Message string         `json:"message"`
}

func (e *Engine) serveActions(w http.ResponseWriter, r *http.Request) {
	var id uint64
	if s := r.URL.Query().Get("incident"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			apiError(w, http.StatusBadRequest, "bad_data", "incident %s is not a positive integer", rules.Quote(s))
			return
		}
		id = n
	}
	acts, err := e.store.Actions(id)
	if err != nil {
		apiError(w, http.StatusInternalServerError, "internal", "%v", err)
		return
	}
	writeJSON(w, http.StatusOK, successBody{Status: "success", Data: acts})
}

package engine

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"medic/rules"
)

func mutateAlert(f func(*testAlert)) []byte {
	a := alert("firing", "KubePodCrashLooping", fp(1))
	f(&a)
	return payload(a)
}

func TestIntakeRejections(t *testing.T) {
	tokenFile := writeToken(t, "s3cret")
	env := newTestEnv(t, func(c *Config) {
		c.Web.BearerTokenFile = tokenFile
		c.Intake.Limits.MaxAlerts = 3
		c.Intake.Limits.MaxLabels = 5
		c.Intake.Limits.MaxLabelValueLength = 32
		c.Intake.Limits.MaxAnnotationValueLength = 64
		c.Intake.Limits.MaxBodySize = 4096
	})
	auth := []string{"Authorization", "Bearer s3cret"}
	good := payload(alert("firing", "KubePodCrashLooping", fp(1)))
	many := payload(alert("firing", "A", fp(1)), alert("firing", "A", fp(2)), alert("firing", "A", fp(3)), alert("firing", "A", fp(4)))

	cases := []struct {
		name    string
		method  string
		body    []byte
		headers []string
		chunked bool
		code    int
		reason  string
		field   string
		errHas  string
	}{
		{name: "wrong method", method: http.MethodGet, body: good, code: 405, reason: ReasonMethodNotAllowed},
		{name: "no token", body: good, headers: []string{}, code: 401, reason: ReasonUnauthorized},
		{name: "wrong token", body: good, headers: []string{"Authorization", "Bearer nope"}, code: 401, reason: ReasonUnauthorized},
		{name: "token prefix", body: good, headers: []string{"Authorization", "Bearer s3cre"}, code: 401, reason: ReasonUnauthorized},
		{name: "basic scheme", body: good, headers: []string{"Authorization", "Basic czNjcmV0"}, code: 401, reason: ReasonUnauthorized},
		{name: "no content type", body: good, headers: append([]string{"Content-Type", ""}, auth...), code: 415, reason: ReasonUnsupportedMediaType, field: "Content-Type"},
		{name: "text content type", body: good, headers: append([]string{"Content-Type", "text/plain"}, auth...), code: 415, reason: ReasonUnsupportedMediaType},
		{name: "form content type", body: good, headers: append([]string{"Content-Type", "application/x-www-form-urlencoded"}, auth...), code: 415, reason: ReasonUnsupportedMediaType},
		{name: "too large by length", body: bytes.Repeat([]byte(" "), 5000), code: 413, reason: ReasonTooLarge},
		{name: "too large chunked", body: append(good, bytes.Repeat([]byte(" "), 5000)...), chunked: true, code: 413, reason: ReasonTooLarge},
		{name: "empty body", body: nil, code: 400, reason: ReasonInvalidJSON, errHas: "empty body"},
		{name: "not json", body: []byte("version=4"), code: 400, reason: ReasonInvalidJSON, errHas: "invalid JSON"},
		{name: "truncated json", body: good[:len(good)/2], code: 400, reason: ReasonInvalidJSON},
		{name: "trailing data", body: append(append([]byte{}, good...), []byte(`{"x":1}`)...), code: 400, reason: ReasonInvalidJSON},
		{name: "array", body: []byte(`[]`), code: 400, reason: ReasonInvalidJSON},
		{name: "null", body: []byte(`null`), code: 400, reason: ReasonInvalidPayload, field: "version"},
		{name: "wrong type", body: []byte(`{"version":"4","status":"firing","alerts":"x"}`), code: 400, reason: ReasonInvalidJSON, field: "alerts"},
		{name: "version missing", body: bytes.Replace(good, []byte(`,"version":"4"`), nil, 1), code: 400, reason: ReasonInvalidPayload, field: "version"},
		{name: "version 3", body: bytes.Replace(good, []byte(`"version":"4"`), []byte(`"version":"3"`), 1), code: 400, reason: ReasonInvalidPayload, field: "version", errHas: "unsupported version"},
		{name: "status pending", body: bytes.Replace(good, []byte(`"status":"firing","truncatedAlerts"`), []byte(`"status":"pending","truncatedAlerts"`), 1), code: 400, reason: ReasonInvalidPayload, field: "status"},
		{name: "no alerts", body: payload(), code: 400, reason: ReasonInvalidPayload, field: "alerts", errHas: "empty"},
		{name: "alerts missing", body: []byte(`{"version":"4","status":"firing"}`), code: 400, reason: ReasonInvalidPayload, field: "alerts"},
		{name: "too many alerts", body: many, code: 400, reason: ReasonLimitExceeded, field: "alerts", errHas: "limit of 3"},
		{name: "alert status", body: mutateAlert(func(a *testAlert) { a.Status = "pending" }), code: 400, reason: ReasonInvalidPayload, field: "alerts[0].status"},
		{name: "alertname missing", body: mutateAlert(func(a *testAlert) { delete(a.Labels, "alertname") }), code: 400, reason: ReasonInvalidPayload, field: "alerts[0].labels.alertname"},
		{name: "alertname empty", body: mutateAlert(func(a *testAlert) { a.Labels["alertname"] = "" }), code: 400, reason: ReasonInvalidPayload, field: "alerts[0].labels.alertname"},
		{name: "fingerprint missing", body: mutateAlert(func(a *testAlert) { a.Fingerprint = "" }), code: 400, reason: ReasonInvalidPayload, field: "alerts[0].fingerprint"},
		{name: "fingerprint not hex", body: mutateAlert(func(a *testAlert) { a.Fingerprint = "../../etc/passwd" }), code: 400, reason: ReasonInvalidPayload, field: "alerts[0].fingerprint"},
		{name: "fingerprint upper", body: mutateAlert(func(a *testAlert) { a.Fingerprint = "0123456789ABCDEF" }), code: 400, reason: ReasonInvalidPayload, field: "alerts[0].fingerprint"},
		{name: "startsAt zero", body: mutateAlert(func(a *testAlert) { a.StartsAt = "0001-01-01T00:00:00Z" }), code: 400, reason: ReasonInvalidPayload, field: "alerts[0].startsAt"},
		{name: "startsAt garbage", body: mutateAlert(func(a *testAlert) { a.StartsAt = "yesterday" }), code: 400, reason: ReasonInvalidJSON},
		{name: "label name", body: mutateAlert(func(a *testAlert) { a.Labels["foo-bar"] = "x" }), code: 400, reason: ReasonInvalidPayload, field: "alerts[0].labels", errHas: `"foo-bar"`},
		{name: "label name digit", body: mutateAlert(func(a *testAlert) { a.Labels["1x"] = "x" }), code: 400, reason: ReasonInvalidPayload, field: "alerts[0].labels"},
		{name: "label value long", body: mutateAlert(func(a *testAlert) { a.Labels["pod"] = strings.Repeat("a", 33) }), code: 400, reason: ReasonLimitExceeded, field: "alerts[0].labels.pod"},
		{name: "label newline", body: mutateAlert(func(a *testAlert) { a.Labels["pod"] = "a\nb" }), code: 400, reason: ReasonInvalidPayload, field: "alerts[0].labels.pod", errHas: "U+000A"},
		{name: "label NUL", body: mutateAlert(func(a *testAlert) { a.Labels["pod"] = "a\x00b" }), code: 400, reason: ReasonInvalidPayload, field: "alerts[0].labels.pod"},
		{name: "label escape", body: mutateAlert(func(a *testAlert) { a.Labels["pod"] = "\x1b[31mred" }), code: 400, reason: ReasonInvalidPayload, field: "alerts[0].labels.pod"},
		{name: "label C1 control", body: mutateAlert(func(a *testAlert) { a.Labels["pod"] = "a\u0085b" }), code: 400, reason: ReasonInvalidPayload, field: "alerts[0].labels.pod"},
		{name: "label bidi override", body: mutateAlert(func(a *testAlert) { a.Labels["pod"] = "abc\u202edcb" }), code: 400, reason: ReasonInvalidPayload, field: "alerts[0].labels.pod"},
		{name: "label line separator", body: mutateAlert(func(a *testAlert) { a.Labels["pod"] = "a\u2028b" }), code: 400, reason: ReasonInvalidPayload, field: "alerts[0].labels.pod"},
		{name: "too many labels", body: mutateAlert(func(a *testAlert) {
			for _, k := range []string{"a", "b", "c", "d"} {
				a.Labels[k] = "x"
			}
		}), code: 400, reason: ReasonLimitExceeded, field: "alerts[0].labels"},
		{name: "annotation long", body: mutateAlert(func(a *testAlert) { a.Annotations["description"] = strings.Repeat("d", 65) }), code: 400, reason: ReasonLimitExceeded, field: "alerts[0].annotations.description"},
		{name: "annotation control", body: mutateAlert(func(a *testAlert) { a.Annotations["description"] = "bell\x07" }), code: 400, reason: ReasonInvalidPayload, field: "alerts[0].annotations.description"},
		{name: "annotation name", body: mutateAlert(func(a *testAlert) { a.Annotations["run book"] = "x" }), code: 400, reason: ReasonInvalidPayload, field: "alerts[0].annotations"},
		{name: "group label name", body: bytes.Replace(good, []byte(`"groupLabels":{}`), []byte(`"groupLabels":{"a b":"c"}`), 1), code: 400, reason: ReasonInvalidPayload, field: "groupLabels"},
		{name: "common label control", body: bytes.Replace(good, []byte(`"commonLabels":{}`), []byte(`"commonLabels":{"job":"a\u0000"}`), 1), code: 400, reason: ReasonInvalidPayload, field: "commonLabels.job"},
		{name: "receiver control", body: bytes.Replace(good, []byte(`"receiver":"medic"`), []byte(`"receiver":"me\rdic"`), 1), code: 400, reason: ReasonInvalidPayload, field: "receiver"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			method := tc.method
			if method == "" {
				method = http.MethodPost
			}
			var body = bytes.NewReader(tc.body)
			req := httptest.NewRequest(method, "/api/v1/alerts", body)
			if tc.chunked {
				req.ContentLength = -1
			}
			req.Header.Set("Content-Type", "application/json")
			hdr := tc.headers
			if hdr == nil {
				hdr = auth
			}
			for i := 0; i+1 < len(hdr); i += 2 {
				req.Header.Set(hdr[i], hdr[i+1])
			}
			rec := httptest.NewRecorder()
			env.h.ServeHTTP(rec, req)
			if rec.Code != tc.code {
				t.Fatalf("status %d, want %d; body %s", rec.Code, tc.code, rec.Body)
			}
			var eb errorBody
			if err := json.Unmarshal(rec.Body.Bytes(), &eb); err != nil {
				t.Fatalf("error body is not JSON: %q", rec.Body)
			}
			if eb.Status != "error" || eb.ErrorType != tc.reason {
				t.Errorf("body %+v, want errorType %q", eb, tc.reason)
			}
			if tc.field != "" && eb.Field != tc.field {
				t.Errorf("field %q, want %q (%s)", eb.Field, tc.field, eb.Error)
			}
			if tc.errHas != "" && !strings.Contains(eb.Error, tc.errHas) {
				t.Errorf("error %q does not contain %q", eb.Error, tc.errHas)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("content type %q", ct)
			}
			if tc.code == 401 && rec.Header().Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
		})
	}
	if d := env.store.InboxDepth(); d != 0 {
		t.Fatalf("rejected notifications were stored: inbox depth %d", d)
	}
	if got := env.counter(t, "medic_notifications_received_total", "result", "accepted"); got != 0 {
		t.Fatalf("accepted counter %v after rejections only", got)
	}
	if got := env.counter(t, "medic_notifications_received_total", "result", ReasonInvalidPayload); got == 0 {
		t.Fatal("invalid_payload rejections were not counted")
	}
}

func TestIntakeAccepts(t *testing.T) {
	env := newTestEnv(t, nil)
	cases := map[string][]byte{
		"plain":   payload(alert("firing", "A", fp(1))),
		"charset": payload(alert("firing", "A", fp(2))),
		"multiline annotation": mutateAlert(func(a *testAlert) {
			a.Annotations["description"] = "line one\n\tline two\r\n"
			a.Fingerprint = fp(3)
		}),
		"unicode label": mutateAlert(func(a *testAlert) { a.Labels["pod"] = "café-日本"; a.Fingerprint = fp(4) }),
		"unknown fields": bytes.Replace(payload(alert("firing", "A", fp(5))), []byte(`"version":"4"`),
			[]byte(`"version":"4","notification_reason":"new","somethingNew":{"x":[1,2]}`), 1),
	}
	for name, body := range cases {
		t.Run(name, func(t *testing.T) {
			ct := "application/json"
			if name == "charset" {
				ct = "application/json; charset=utf-8"
			}
			rec := env.post(body, "Content-Type", ct)
			if rec.Code != http.StatusOK {
				t.Fatalf("status %d: %s", rec.Code, rec.Body)
			}
		})
	}
	// With nothing before them in the inbox, each was applied in the
	// commit that stored it.
	applied := env.counter(t, "medic_alerts_processed_total", "result", resultOpened) + env.counter(t, "medic_alerts_processed_total", "result", resultUpdated)
	if d := env.store.InboxDepth(); d != 0 || applied != float64(len(cases)) {
		t.Fatalf("inbox depth %d and %v alerts applied, want 0 and %d", d, applied, len(cases))
	}
}

// FuzzDecodeNotification checks that no body panics the decoder and that
// whatever it accepts really is within the limits: no control characters in
// label values, valid label names and fingerprints, at least one alert.
func FuzzDecodeNotification(f *testing.F) {
	f.Add(payload(alert("firing", "A", fp(1))))
	f.Add(payload(alert("resolved", "A", fp(1)), alert("firing", "B", fp(2))))
	f.Add(mutateAlert(func(a *testAlert) { a.Labels["pod"] = "a\u202eb" }))
	f.Add(mutateAlert(func(a *testAlert) { a.Annotations["d"] = "x\ny" }))
	f.Add([]byte(`{"version":"4","status":"firing","alerts":[{}]}`))
	f.Add([]byte(`{"version":"4","status":"firing","alerts":[null]}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{"version":"4","alerts":[{"labels":{"alertname":"\u0000"}}]}`))
	l := Limits{MaxBodySize: 1 << 20, MaxAlerts: 10, MaxLabels: 8, MaxLabelValueLength: 64, MaxAnnotationValueLength: 256}
	f.Fuzz(func(t *testing.T, body []byte) {
		m, err := DecodeNotification(body, l, time.Now())
		if err != nil {
			var ierr *IntakeError
			if !asIntakeError(err, &ierr) || ierr.Status != http.StatusBadRequest || ierr.Reason == "" {
				t.Fatalf("error %v is not a 400 IntakeError", err)
			}
			return
		}
		if len(m.Alerts) == 0 || len(m.Alerts) > l.MaxAlerts {
			t.Fatalf("accepted %d alerts", len(m.Alerts))
		}
		for _, a := range m.Alerts {
			if !isFingerprint(a.Fingerprint) || a.Labels["alertname"] == "" || a.StartsAt.IsZero() {
				t.Fatalf("accepted incomplete alert %+v", a)
			}
			if len(a.Labels) > l.MaxLabels {
				t.Fatalf("accepted %d labels", len(a.Labels))
			}
			for k, v := range a.Labels {
				if !rules.IsLabelName(k) || len(v) > l.MaxLabelValueLength || strings.IndexFunc(v, rules.IsControl) >= 0 {
					t.Fatalf("accepted label %q=%q", k, v)
				}
			}
			for k, v := range a.Annotations {
				if !rules.IsLabelName(k) || len(v) > l.MaxAnnotationValueLength {
					t.Fatalf("accepted annotation %q=%q", k, v)
				}
			}
		}
	})
}

func asIntakeError(err error, target **IntakeError) bool {
	ie, ok := err.(*IntakeError)
	if ok {
		*target = ie
	}
	return ok
}

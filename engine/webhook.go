package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"time"

	"github.com/prometheus/alertmanager/notify/webhook"
	"github.com/prometheus/alertmanager/template"

	"medic/rules"
)

// WebhookVersion is the only Alertmanager webhook payload version medic reads.
const WebhookVersion = "4"

// The reasons a notification is refused. They are the values of the result
// label of medic_notifications_received_total, so the set stays small.
const (
	ReasonInvalidJSON          = "invalid_json"
	ReasonInvalidPayload       = "invalid_payload"
	ReasonLimitExceeded        = "limit_exceeded"
	ReasonTooLarge             = "too_large"
	ReasonUnsupportedMediaType = "unsupported_media_type"
	ReasonUnauthorized         = "unauthorized"
	ReasonMethodNotAllowed     = "method_not_allowed"
	ReasonStoreFailed          = "store_failed"
	ReasonOverloaded           = "overloaded"
)

// IntakeError is why a notification was refused. Status is the HTTP status
// answered, Reason a metric label, and Field the JSON path of the offending
// field, when one is to blame.
type IntakeError struct {
	Status int
	Reason string
	Field  string
	Msg    string
}

func (e *IntakeError) Error() string {
	if e.Field != "" {
		return e.Field + ": " + e.Msg
	}
	return e.Msg
}

func badField(reason, field, format string, args ...any) *IntakeError {
	return &IntakeError{Status: http.StatusBadRequest, Reason: reason, Field: field, Msg: fmt.Sprintf(format, args...)}
}

// DecodeNotification parses and validates one webhook body. It accepts a
// notification only when every field is within l and well formed; otherwise
// it returns an *IntakeError that names the first offending field. An
// alert may not start more than MaxClockSkew after received.
//
// Unknown JSON fields are tolerated so that a newer Alertmanager, which may
// add fields to version 4, is not refused: a 4xx is never retried, so
// refusing would drop its alerts. Everything medic reads is checked.
func DecodeNotification(body []byte, l Limits, received time.Time) (*webhook.Message, error) {
	var m webhook.Message
	if err := json.Unmarshal(body, &m); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			return nil, badField(ReasonInvalidJSON, "", "invalid JSON at byte %d: %v", se.Offset, se)
		case errors.As(err, &te):
			return nil, badField(ReasonInvalidJSON, strings.TrimPrefix(te.Field, "Data."), "expected %s, got JSON %s", jsonKind(te.Type), te.Value)
		default:
			return nil, badField(ReasonInvalidJSON, "", "invalid JSON: %v", err)
		}
	}
	if err := validateMessage(&m, l); err != nil {
		return nil, err
	}
	if err := checkTimes(&m, received); err != nil {
		return nil, err
	}
	return &m, nil
}

// jsonKind names a Go type as the JSON a sender should have written.
func jsonKind(t reflect.Type) string {
	if t == reflect.TypeFor[time.Time]() {
		return "an RFC 3339 timestamp string"
	}
	switch t.Kind() {
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct, reflect.Pointer:
		return "an object"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	}
	return "a number"
}

func validateMessage(m *webhook.Message, l Limits) *IntakeError {
	if m.Version != WebhookVersion {
		if m.Version == "" {
			return badField(ReasonInvalidPayload, "version", "missing; this is not an Alertmanager webhook payload")
		}
		return badField(ReasonInvalidPayload, "version", "unsupported version %s; medic reads version %q", rules.Quote(m.Version), WebhookVersion)
	}
	if m.Data == nil {
		return badField(ReasonInvalidPayload, "alerts", "missing")
	}
	if err := checkStatus("status", m.Status); err != nil {
		return err
	}
	if len(m.Alerts) == 0 {
		return badField(ReasonInvalidPayload, "alerts", "empty; a notification carries at least one alert")
	}
	if len(m.Alerts) > l.MaxAlerts {
		return badField(ReasonLimitExceeded, "alerts", "%d alerts exceed the limit of %d; set max_alerts on the Alertmanager receiver", len(m.Alerts), l.MaxAlerts)
	}
	if err := checkText("receiver", m.Receiver, l.MaxLabelValueLength, false); err != nil {
		return err
	}
	if err := checkText("groupKey", m.GroupKey, l.MaxAnnotationValueLength, false); err != nil {
		return err
	}
	if err := checkText("externalURL", m.ExternalURL, l.MaxAnnotationValueLength, false); err != nil {
		return err
	}
	for _, kv := range []struct {
		name string
		kv   template.KV
	}{{"groupLabels", m.GroupLabels}, {"commonLabels", m.CommonLabels}, {"routeLabels", m.RouteLabels}} {
		if err := checkLabels(kv.name, kv.kv, l); err != nil {
			return err
		}
	}
	if err := checkAnnotations("commonAnnotations", m.CommonAnnotations, l); err != nil {
		return err
	}
	for i := range m.Alerts {
		if err := validateAlert(fmt.Sprintf("alerts[%d]", i), &m.Alerts[i], l); err != nil {
			return err
		}
	}
	return nil
}

func validateAlert(path string, a *template.Alert, l Limits) *IntakeError {
	if err := checkStatus(path+".status", a.Status); err != nil {
		return err
	}
	if a.Fingerprint == "" {
		return badField(ReasonInvalidPayload, path+".fingerprint", "missing")
	}
	if !isFingerprint(a.Fingerprint) {
		return badField(ReasonInvalidPayload, path+".fingerprint", "%s is not 16 lowercase hex digits", rules.Quote(a.Fingerprint))
	}
	if a.StartsAt.IsZero() {
		return badField(ReasonInvalidPayload, path+".startsAt", "missing")
	}
	if a.Labels["alertname"] == "" {
		return badField(ReasonInvalidPayload, path+".labels.alertname", "missing")
	}
	if err := checkLabels(path+".labels", a.Labels, l); err != nil {
		return err
	}
	if err := checkAnnotations(path+".annotations", a.Annotations, l); err != nil {
		return err
	}
	return checkText(path+".generatorURL", a.GeneratorURL, l.MaxAnnotationValueLength, false)
}

// MaxClockSkew is how far in the future an alert's startsAt may be:
// Alertmanager stamps alerts at or before it sends them, so more than a
// skew between two clocks is a forged or broken notification (a startsAt in
// year 9999 would hold a min_firing runbook forever).
const MaxClockSkew = 5 * time.Minute

// checkTimes refuses a notification with an alert that starts later than
// received allows.
func checkTimes(m *webhook.Message, received time.Time) *IntakeError {
	for i := range m.Alerts {
		if a := &m.Alerts[i]; a.StartsAt.After(received.Add(MaxClockSkew)) {
			return badField(ReasonInvalidPayload, fmt.Sprintf("alerts[%d].startsAt", i), "%s is more than %s after the time it was received (%s)",
				a.StartsAt.UTC().Format(time.RFC3339), MaxClockSkew, received.UTC().Format(time.RFC3339))
		}
	}
	return nil
}

func checkStatus(path, s string) *IntakeError {
	switch s {
	case "firing", "resolved":
		return nil
	case "":
		return badField(ReasonInvalidPayload, path, "missing")
	}
	return badField(ReasonInvalidPayload, path, "%s is neither \"firing\" nor \"resolved\"", rules.Quote(s))
}

func checkLabels(path string, kv template.KV, l Limits) *IntakeError {
	return checkKV(path, kv, "label", l.MaxLabels, l.MaxLabelValueLength, false)
}

func checkAnnotations(path string, kv template.KV, l Limits) *IntakeError {
	return checkKV(path, kv, "annotation", l.MaxLabels, l.MaxAnnotationValueLength, true)
}

// checkKV bounds a label or annotation set: its size, its names, and each
// value through checkText.
func checkKV(path string, kv template.KV, what string, maxKeys, maxValue int, multiline bool) *IntakeError {
	if len(kv) > maxKeys {
		return badField(ReasonLimitExceeded, path, "%d %ss exceed the limit of %d", len(kv), what, maxKeys)
	}
	for k, v := range kv {
		if !rules.IsLabelName(k) {
			return badField(ReasonInvalidPayload, path, "%s is not a valid %s name", rules.Quote(k), what)
		}
		if err := checkText(path+"."+k, v, maxValue, multiline); err != nil {
			return err
		}
	}
	return nil
}

// checkText bounds a value's length and refuses control characters. Text
// written for people (annotations) may hold tabs and line breaks; label
// values may not.
func checkText(path, v string, max int, multiline bool) *IntakeError {
	if len(v) > max {
		return badField(ReasonLimitExceeded, path, "value of %d bytes exceeds the limit of %d", len(v), max)
	}
	for i, r := range v {
		if multiline && (r == '\n' || r == '\t' || r == '\r') {
			continue
		}
		if rules.IsControl(r) {
			return badField(ReasonInvalidPayload, path, "control character %U at byte %d", r, i)
		}
	}
	return nil
}

func isFingerprint(s string) bool {
	if len(s) != 16 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

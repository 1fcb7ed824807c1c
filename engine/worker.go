package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"time"

	"github.com/prometheus/alertmanager/notify/webhook"
	"github.com/prometheus/alertmanager/template"
	"github.com/prometheus/common/model"

	"medic/rules"
	"medic/state"
)

// A worker transaction processes at most workerBatch inbox entries and stops
// after the entry that takes it past workerAlertBudget alerts. One commit per
// batch lets the worker keep up without a sync per notification, and the
// budget keeps each transaction short: bbolt has one writer lock, and the
// intake's commits wait while the worker holds it.
const (
	workerBatch       = 256
	workerAlertBudget = state.ApplyBudget
)

// repeatRefresh is how often a repeated, unchanged firing alert refreshes
// its last_received_at. Alertmanager re-sends every alert of a group when any
// of them changes; writing each unchanged one back would cost a read and a
// write per alert for nothing.
const repeatRefresh = time.Minute

// Timing of the worker loop. The poll is a safety net: the intake wakes the
// worker directly after each accepted notification.
const (
	pollInterval  = time.Second
	pruneInterval = time.Hour
)

// WorkerAlive reports whether the worker loop went round within maxAge; the
// loop goes round at least once a second (the poll), so a worker stuck in a
// drain or a fault shows up here. systemd's watchdog is fed only while this
// holds.
func (e *Engine) WorkerAlive(maxAge time.Duration) bool {
	hb := e.heartbeat.Load()
	return hb != 0 && e.now().Sub(time.Unix(0, hb)) <= maxAge
}

// RunOptions bound the worker.
type RunOptions struct {
	// DrainTimeout bounds the final drain when ctx is cancelled; entries
	// left after it stay in the inbox for the next start.
	DrainTimeout time.Duration
}

// Run drains the inbox into incidents and prunes old incidents until ctx is
// cancelled, then drains what is left within o.DrainTimeout and returns.
func (e *Engine) Run(ctx context.Context, o RunOptions) error {
	poll := time.NewTicker(pollInterval)
	defer poll.Stop()
	prune := time.NewTicker(pruneInterval)
	defer prune.Stop()
	e.prune()
	for {
		e.heartbeat.Store(e.now().UnixNano())
		workerFault()
		if err := e.drain(ctx); err != nil && ctx.Err() == nil {
			e.logger.Error("processing the inbox failed", "component", "worker", "err", err)
		}
		select {
		case <-ctx.Done():
			return e.finalDrain(o.DrainTimeout)
		case <-e.wake:
		case <-poll.C:
		case <-prune.C:
			e.prune()
		}
	}
}

func (e *Engine) finalDrain(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err := e.drain(ctx)
	if left := e.store.InboxDepth(); left > 0 {
		e.logger.Warn("stopping with notifications left in the inbox; they are processed at the next start",
			"component", "worker", "inbox_depth", left)
	}
	return err
}

// drain processes the inbox until it is empty or ctx ends.
func (e *Engine) drain(ctx context.Context) error {
	for ctx.Err() == nil {
		// A long drain is progress, not a wedge.
		e.heartbeat.Store(e.now().UnixNano())
		res, err := e.ProcessInbox()
		if err != nil {
			return err
		}
		if res.Processed == 0 {
			return nil
		}
	}
	return ctx.Err()
}

// ProcessInbox processes one batch of the inbox and reports what it did.
// The notifications are decoded before the write transaction, which then
// only applies them: bbolt has one writer lock, and the intake's commits
// wait while the worker holds it.
func (e *Engine) ProcessInbox() (state.ProcessResult, error) {
	var msgs []*webhook.Message
	var errs []error
	alerts := 0
	entries, err := e.store.PeekInbox(func(entry state.InboxEntry) bool {
		m, err := decodeStored(entry)
		msgs, errs = append(msgs, m), append(errs, err)
		if m != nil {
			alerts += len(m.Alerts)
		}
		return alerts < workerAlertBudget && len(msgs) < workerBatch
	})
	if err != nil || len(entries) == 0 {
		return state.ProcessResult{}, err
	}

	cfg := e.Config()
	now := e.now().UTC()
	var t tally
	res, err := e.store.ProcessInbox(entries, func(tx *state.Tx, i int) error {
		if errs[i] != nil {
			return errs[i]
		}
		return e.applyMessage(tx, cfg, msgs[i], now, &t)
	})
	if err != nil {
		return res, err
	}
	e.report(&t)
	for _, d := range res.Dead {
		e.metrics.deadLetters.Inc()
		e.logger.Error("inbox entry set aside", "component", "worker", "seq", d.Seq, "err", d.Err)
	}
	return res, nil
}

// tally counts what applying alerts did, for the metrics, which are
// counted once the transaction committed.
type tally struct {
	results                                  [6]int
	opened, closed, remediated, selfResolved int
}

// applyMessage folds a notification's alerts into the incidents.
func (e *Engine) applyMessage(tx *state.Tx, cfg *Config, m *webhook.Message, now time.Time, t *tally) error {
	for j := range m.Alerts {
		r, o, c, outcome, err := e.applyAlert(tx, cfg, &m.Alerts[j], now)
		if err != nil {
			return err
		}
		t.results[r]++
		switch outcome {
		case state.OutcomeRemediated:
			t.remediated++
		case state.OutcomeSelfResolved:
			t.selfResolved++
		}
		t.opened += o
		t.closed += c
	}
	return nil
}

// report counts a committed tally in the metrics, and wakes the
// remediator for the incidents it opened.
func (e *Engine) report(t *tally) {
	for i, n := range t.results {
		if n > 0 {
			e.metrics.alertsProcessed.WithLabelValues(resultNames[i]).Add(float64(n))
		}
	}
	e.metrics.incidentsOpened.Add(float64(t.opened))
	e.metrics.incidentsClosed.Add(float64(t.closed))
	for outcome, n := range map[string]int{state.OutcomeRemediated: t.remediated, state.OutcomeSelfResolved: t.selfResolved, "ignored": t.results[rIgnored]} {
		if n > 0 {
			e.metrics.incidents.WithLabelValues(outcome).Add(float64(n))
		}
	}
	if t.opened > 0 && e.remediator != nil {
		e.remediator.Wake()
	}
}

// decodeStored decodes an inbox entry. The intake validated it before
// storing it, so a failure here means the file was damaged.
func decodeStored(entry state.InboxEntry) (*webhook.Message, error) {
	var m webhook.Message
	if err := json.Unmarshal(entry.Body, &m); err != nil {
		return nil, fmt.Errorf("decode notification %d: %w", entry.Seq, err)
	}
	if m.Data == nil {
		return nil, fmt.Errorf("notification %d has no alerts", entry.Seq)
	}
	return &m, nil
}

const (
	rOpened = iota
	rUpdated
	rRepeated
	rResolved
	rStale
	rIgnored
)

var resultNames = [...]string{resultOpened, resultUpdated, resultRepeated, resultResolved, resultStale, resultIgnored}

// incidentKey is the key that folds alerts into one incident, and whether
// a runbook that acts matched the alert (its decision is urgent): the target
// of the runbook that matches the alert, when its target reads only the
// alert's labels. A runbook whose target needs a query keys the incident by
// the alert until its decision renders the target and folds it into the
// target's incident (Store.Rekey). An alert no runbook matches is keyed by
// its values of group_by, as Alertmanager keys its groups.
func (e *Engine) incidentKey(cfg *Config, a *template.Alert) (key string, urgent bool) {
	if e.remediator != nil {
		t, cands := e.remediator.Decider().Rules.LabelTarget(a.Labels, a.Annotations)
		urgent = slices.ContainsFunc(cands, (*rules.Runbook).Acts)
		switch {
		case t != "":
			return TargetKey(t), urgent
		case len(cands) > 0:
			return "alert:" + a.Fingerprint, urgent
		}
	}
	return GroupKey(cfg.Intake.GroupBy, a.Labels), false
}

// GroupKey is the incident key of labels under group_by: the label set of
// the group_by labels the alert has. ["..."] keys by every label. An alert
// with none of the group_by labels except its alertname says nothing about
// where it comes from, so it is not folded with others: it is keyed by all
// its labels.
func GroupKey(groupBy []string, labels map[string]string) string {
	ls := model.LabelSet{}
	for _, k := range groupBy {
		if k == "..." {
			ls = nil
			break
		}
		if v, ok := labels[k]; ok && v != "" {
			ls[model.LabelName(k)] = model.LabelValue(v)
		}
	}
	if _, named := ls["alertname"]; len(ls) == 0 || (named && len(ls) == 1) {
		ls = make(model.LabelSet, len(labels))
		for k, v := range labels {
			ls[model.LabelName(k)] = model.LabelValue(v)
		}
	}
	return "group:" + ls.String()
}

// applyAlert folds one alert into the incidents. It is idempotent: the same
// alert applied twice changes no state beyond the receive counters.
func (e *Engine) applyAlert(tx *state.Tx, cfg *Config, a *template.Alert, now time.Time) (result, opened, closed int, settled string, err error) {
	name := a.Labels["alertname"]
	if rule := ignoredBy(cfg.Intake.Ignore, a.Labels); rule != "" {
		e.logger.Debug("alert ignored", "component", "worker", "alertname", name, "fingerprint", a.Fingerprint, "matcher", rule)
		return rIgnored, 0, 0, "", tx.CountIgnored(name, rule, now)
	}
	fp := a.Fingerprint
	seen, err := tx.Fingerprint(fp)
	known := err == nil
	if err != nil && !errors.Is(err, state.ErrNotFound) {
		return 0, 0, 0, "", err
	}
	inc, key, urgent, err := e.incidentFor(tx, cfg, a, seen, known)
	if err != nil {
		return 0, 0, 0, "", err
	}
	if a.Status == "resolved" {
		if inc == nil {
			return rStale, 0, 0, "", nil
		}
		i := inc.AlertIndex(fp)
		if i < 0 || inc.Alerts[i].Status == "resolved" || a.StartsAt.Before(inc.Alerts[i].StartsAt) {
			return rStale, 0, 0, "", nil
		}
		rec := &inc.Alerts[i]
		update(rec, a, now)
		rec.Status = "resolved"
		inc.AddEvent(state.Event{Time: now, Kind: "alert_resolved", Fingerprint: fp, Message: fmt.Sprintf("%s resolved", name)})
		inc.UpdatedAt = now
		if allResolved(inc) {
			inc.State = state.StateClosed
			inc.ClosedAt = &now
			msg := "all alerts resolved by themselves"
			switch {
			case inc.Acted:
				msg = "all alerts resolved after medic acted"
				if inc.Outcome == "" && !inc.Remediation.AwaitsVerification() {
					// No verify block: Alertmanager's resolution is the
					// evidence. With one, its result settles the outcome.
					inc.Outcome, settled = state.OutcomeRemediated, state.OutcomeRemediated
				}
			case inc.Outcome == "":
				inc.Outcome, settled = state.OutcomeSelfResolved, state.OutcomeSelfResolved
			}
			inc.AddEvent(state.Event{Time: now, Kind: "closed", Message: msg})
			closed = 1
			// A call waiting for a human is moot once its incident closes.
			cancelled, err := tx.CancelApproval(inc.ID, "the incident closed: all its alerts resolved", now)
			if err != nil {
				return 0, 0, 0, "", err
			}
			if cancelled {
				inc.AddEvent(state.Event{Time: now, Kind: "approval_cancelled", Message: "the pending approval is cancelled: the incident closed"})
			}
		}
		if err := tx.PutIncident(inc); err != nil {
			return 0, 0, 0, "", err
		}
		if closed == 1 {
			if err := tx.Audit(incidentAudit(inc, now, "closed", a)); err != nil {
				return 0, 0, 0, "", err
			}
		}
		return rResolved, 0, closed, settled, tx.PutFingerprint(fp, state.Fingerprint{IncidentID: inc.ID, StartsAt: a.StartsAt, Resolved: true, UpdatedAt: now, Starts: seen.Starts})
	}

	// Firing.
	if known && seen.Resolved && !a.StartsAt.After(seen.StartsAt) {
		// Alertmanager re-sent an occurrence medic already saw resolve.
		return rStale, 0, 0, "", nil
	}
	digest := alertDigest(a)
	if known && !seen.Resolved && seen.StartsAt.Equal(a.StartsAt) && seen.Digest == digest && now.Sub(seen.UpdatedAt) < repeatRefresh {
		// An unchanged repeat, written less than repeatRefresh ago.
		return rRepeated, 0, 0, "", nil
	}
	result = rUpdated
	if inc == nil {
		inc = &state.Incident{Key: key, State: state.StateOpen, OpenedAt: now}
		if e.remediator != nil {
			inc.Remediation = state.Remediation{Phase: state.PhaseDeciding, Since: now}
		}
		inc.AddEvent(state.Event{Time: now, Kind: "opened", Fingerprint: fp, Message: fmt.Sprintf("opened by %s", name)})
		result, opened = rOpened, 1
	}
	i := inc.AlertIndex(fp)
	switch {
	case i < 0:
		inc.Alerts = append(inc.Alerts, state.Alert{Fingerprint: fp})
		i = len(inc.Alerts) - 1
		inc.AddEvent(state.Event{Time: now, Kind: "alert_firing", Fingerprint: fp, Message: fmt.Sprintf("%s firing since %s", name, a.StartsAt.UTC().Format(time.RFC3339))})
	case inc.Alerts[i].Status == "resolved":
		inc.AddEvent(state.Event{Time: now, Kind: "alert_firing", Fingerprint: fp, Message: fmt.Sprintf("%s firing again since %s", name, a.StartsAt.UTC().Format(time.RFC3339))})
	default:
		if result != rOpened {
			result = rRepeated
		}
	}
	rec := &inc.Alerts[i]
	update(rec, a, now)
	rec.Status = "firing"
	rec.EndsAt = time.Time{}
	inc.UpdatedAt = now
	if err := tx.PutIncident(inc); err != nil {
		return 0, 0, 0, "", err
	}
	if opened == 1 {
		if err := tx.Audit(incidentAudit(inc, now, "opened", a)); err != nil {
			return 0, 0, 0, "", err
		}
		if e.remediator != nil {
			// Queued in the transaction that opens the incident, so a crash
			// cannot lose the decision.
			if err := tx.QueueDecision(state.DecisionJob{Incident: inc.ID, Fingerprint: fp, QueuedAt: now, Urgent: urgent}); err != nil {
				return 0, 0, 0, "", err
			}

		}
	}
	starts := seen.Starts
	if !known || !seen.StartsAt.Equal(a.StartsAt) {
		starts = state.WithStart(starts, a.StartsAt)
	}
	return result, opened, 0, "", tx.PutFingerprint(fp, state.Fingerprint{IncidentID: inc.ID, StartsAt: a.StartsAt, UpdatedAt: now, Digest: digest, Starts: starts})
}

// incidentFor finds the open incident an alert belongs to, or nil with the
// key a new one would take and whether its decision is urgent. An alert stays with the incident it joined
// while that is open, even when its key would differ now (a reload, a fold
// by target). A resolved alert has no incident to find by key.
func (e *Engine) incidentFor(tx *state.Tx, cfg *Config, a *template.Alert, seen state.Fingerprint, known bool) (inc *state.Incident, key string, urgent bool, err error) {
	if known {
		inc, err := tx.Incident(seen.IncidentID)
		switch {
		case err == nil && inc.State == state.StateOpen:
			return inc, inc.Key, false, nil
		case err != nil && !errors.Is(err, state.ErrNotFound):
			return nil, "", false, err
		}
	}
	if a.Status == "resolved" {
		return nil, "", false, nil
	}
	// An incident holds at most state.MaxAlerts alerts; past that its key's
	// next incident takes them, so that no record grows without bound.
	base, urgent := e.incidentKey(cfg, a)
	for n := 1; ; n++ {
		key = base
		if n > 1 {
			key = fmt.Sprintf("%s#%d", base, n)
		}
		inc, err := tx.OpenIncident(key)
		switch {
		case errors.Is(err, state.ErrNotFound):
			return nil, key, urgent, nil
		case err != nil:
			return nil, "", false, err
		case len(inc.Alerts) < state.MaxAlerts:
			return inc, key, urgent, nil
		}
	}
}

// alertDigest hashes what a repeat may change: labels, annotations and the
// generator URL, in a fixed order.
func alertDigest(a *template.Alert) uint64 {
	h := fnv.New64a()
	for _, kv := range []template.KV{a.Labels, a.Annotations} {
		for _, k := range slices.Sorted(maps.Keys(kv)) {
			h.Write([]byte(k))
			h.Write([]byte{0})
			h.Write([]byte(kv[k]))
			h.Write([]byte{0})
		}
		h.Write([]byte{1})
	}
	h.Write([]byte(a.GeneratorURL))
	return h.Sum64()
}

// incidentAudit records an incident opening or closing, with the alert that
// caused it.
func incidentAudit(inc *state.Incident, now time.Time, what string, a *template.Alert) state.AuditEntry {
	details, _ := json.Marshal(map[string]any{"event": what, "key": inc.Key, "fingerprint": a.Fingerprint, "labels": a.Labels})
	return state.AuditEntry{Time: now, Incident: inc.ID, Kind: "incident", Actor: "alertmanager", Details: details}
}

func update(rec *state.Alert, a *template.Alert, now time.Time) {
	rec.Labels = a.Labels
	rec.Annotations = a.Annotations
	rec.StartsAt = a.StartsAt.UTC()
	if !a.EndsAt.IsZero() && a.Status == "resolved" {
		rec.EndsAt = a.EndsAt.UTC()
	}
	rec.GeneratorURL = a.GeneratorURL
	rec.LastReceivedAt = now
}

func allResolved(inc *state.Incident) bool {
	for i := range inc.Alerts {
		if inc.Alerts[i].Status != "resolved" {
			return false
		}
	}
	return true
}

// ignoredBy returns the source of the first ignore rule that matches, or "".
func ignoredBy(rules []IgnoreRule, kv template.KV) string {
	if len(rules) == 0 {
		return ""
	}
	ls := make(model.LabelSet, len(kv))
	for k, v := range kv {
		ls[model.LabelName(k)] = model.LabelValue(v)
	}
	for _, r := range rules {
		if r.Matchers.Matches(ls) {
			return r.Source
		}
	}
	return ""
}

func (e *Engine) prune() {
	cutoff := e.now().Add(-e.Config().Storage.Retention)
	n, err := e.store.Prune(cutoff)
	if err != nil {
		e.logger.Error("pruning closed incidents failed", "component", "worker", "err", err)
		return
	}
	if n > 0 {
		e.metrics.incidentsPruned.Add(float64(n))
		e.logger.Info("pruned closed incidents", "component", "worker", "count", n, "closed_before", cutoff.UTC().Format(time.RFC3339))
	}
}

package engine

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/alertmanager/template"
	"github.com/prometheus/common/model"

	"medic/actions"
	"medic/rules"
	"medic/state"
)

// Briefs: an escalation queues its brief in the commit that settles the
// incident (state.BriefJob), and the sender takes the queue from there,
// grouped as Alertmanager groups notifications: the briefs of one route
// whose alerts share escalation.group_by go out as one message, the first
// group_wait after the group's first escalation, later ones at most once
// per group_interval. A storm of a thousand escalations is a few messages,
// not a thousand, and a crash before the send loses no brief. A pending
// approval's brief is not grouped: it asks for a decision now.

// queueBrief builds the incident's brief as it stands and adds it to the
// run's next commit, with its route and group.
func (r *Remediator) queueBrief(run *loopRun, code, reason string) {
	inc, err := r.Store.Incident(run.incident)
	if err != nil {
		r.Logger.Error("reading the incident for its brief failed", "component", "remediator", "incident", run.incident, "err", err)
		return
	}
	run.fillAlert(inc)
	b := r.brief(run, inc, code, reason, nil)
	raw, err := json.Marshal(b)
	if err != nil {
		r.Logger.Error("encoding a brief failed", "component", "remediator", "incident", run.incident, "err", err)
		return
	}
	d := run.d
	run.pending.Brief = &state.BriefJob{Incident: run.incident, Route: d.route(run.rb, run.alert),
		Group: briefGroup(d.Config.Escalation.GroupBy, run.alert), At: r.now(), Brief: raw}
}

// fillAlert takes the incident's first alert as the run's when the run
// was resumed without one.
func (run *loopRun) fillAlert(inc *state.Incident) {
	if run.alert == nil && len(inc.Alerts) > 0 {
		a := inc.Alerts[0]
		run.alert = &template.Alert{Status: a.Status, Labels: a.Labels, Annotations: a.Annotations, StartsAt: a.StartsAt, Fingerprint: a.Fingerprint}
	}
}

// briefGroup is the group key of an alert's brief: its group_by labels,
// or every label for ["..."].
func briefGroup(groupBy []string, a *template.Alert) string {
	if a == nil {
		return "{}"
	}
	ls := model.LabelSet{}
	for k, v := range a.Labels {
		for _, g := range groupBy {
			if g == "..." || g == k {
				ls[model.LabelName(k)] = model.LabelValue(v)
				break
			}
		}
	}
	return ls.String()
}

// tellHuman sends the brief of a pending approval at once, and commits
// what happened to it with the run's records.
func (r *Remediator) tellHuman(ctx context.Context, run *loopRun, inc *state.Incident, code, reason string, commands []string) {
	run.fillAlert(inc)
	b := r.brief(run, inc, code, reason, commands)
	b.Steps = r.briefSteps(inc.ID)
	r.Logger.Warn("escalation brief", "component", "remediator", "incident", run.incident, "reason", code, "brief", b.Text())
	target := ""
	if run.at != nil {
		target = run.at.Target
	}
	kind, msg, details := r.deliver(ctx, run.d, run.d.route(run.rb, run.alert), b, run.at.Runbook, target)
	now := r.now()
	if kind != "" {
		run.event(now, kind, msg)
	}
	run.record(now, "brief", "medic", details)
	r.commit(run)
}

// deliver sends a brief through the notify tool name, under the hourly
// budget and the policy. It returns the timeline event to record (none for
// the log), and the audit details.
func (r *Remediator) deliver(ctx context.Context, d *Decider, name string, b *actions.Brief, runbook, target string) (kind, msg string, details map[string]any) {
	if name == "" {
		return "", "", map[string]any{"channel": "log", "brief": b}
	}
	now := r.now()
	ok, err := r.Store.TakeEscalation(now, d.Config.Escalation.MaxPerHour)
	if err != nil || !ok {
		why := fmt.Sprintf("max_escalations_per_hour (%d) reached", d.Config.Escalation.MaxPerHour)
		if err != nil {
			why = err.Error()
		}
		return "brief_suppressed", "the brief went only to the log: " + why, map[string]any{"channel": "log", "suppressed": why, "brief": b}
	}
	tool := d.Rules.Tool(name)
	in := actions.Input{Call: actions.Call{Tool: name, Type: string(rules.NotifyKind), Risk: string(tool.Risk), Target: target, Args: map[string]string{}},
		Source: "medic", Mode: string(rules.ModeAuto), Escalation: true, Confidence: 1, Runbook: runbook}
	r.counts(&in, state.CountQuery{Tool: name, Target: target})
	dec, allowed := r.evaluate(ctx, d, in, now)
	if dec.Result != actions.Allow {
		return "brief_suppressed", fmt.Sprintf("the brief went only to the log: policy %s: %s", dec.Result, strings.Join(dec.Reasons, "; ")),
			map[string]any{"channel": "log", "policy": dec, "brief": b}
	}
	spec, err := notifySpec(tool, rules.PlannedCall{Tool: name}, b.Incident, &AlertTrace{Runbook: runbook, Target: target})
	var res actions.NotifyResult
	if err == nil {
		spec.Brief, spec.Severity = b, b.Severity
		res, err = r.Executors.Notifier.Notify(ctx, allowed, spec)
	}
	details = map[string]any{"tool": name, "channel": tool.Executor.Channel, "result": res, "brief": b}
	if err != nil {
		details["error"] = err.Error()
		return "brief_failed", fmt.Sprintf("sending the brief through %s failed: %v", name, err), details
	}
	return "brief_sent", fmt.Sprintf("brief sent through %s (%s)", name, tool.Executor.Channel), details
}

// briefQueued tells the sender of a brief the commit queued; the sender
// keeps what it needs to group it, and reads the brief itself when it
// sends it.
func (r *Remediator) briefQueued(j state.BriefJob) {
	r.mu.Lock()
	r.addBrief(j)
	wake := r.briefWake
	r.mu.Unlock()
	poke(wake)
}

// addBrief adds a queued brief to its group; r.mu is held.
func (r *Remediator) addBrief(j state.BriefJob) {
	j.Brief = nil
	if r.briefs == nil {
		r.briefs = map[string][]state.BriefJob{}
	}
	key := j.Route + "\x00" + j.Group
	r.briefs[key] = append(r.briefs[key], j)
}

// briefRest is the least time between two rounds of the sender: a storm's
// escalations wake it thousands of times a second, and each round looks
// at every group.
const briefRest = 50 * time.Millisecond

// sendBriefs sends the queued briefs, grouped, until ctx ends; what is
// queued then is sent at the next start.
func (r *Remediator) sendBriefs(ctx context.Context) {
	// The queue on disk replaces what escalations before Run added, under
	// the lock, so that a brief queued meanwhile is neither lost nor added
	// twice: its commit is in the read, or it waits for the lock.
	r.mu.Lock()
	jobs, err := r.Store.PendingBriefs()
	if err != nil {
		r.Logger.Error("reading the queued briefs failed; they are sent after the next start", "component", "remediator", "err", err)
	} else {
		r.briefs = nil
		for _, j := range jobs {
			r.addBrief(j)
		}
	}
	r.mu.Unlock()
	flushed := map[string]time.Time{}
	for {
		wait := max(r.flushBriefs(ctx, flushed), briefRest)
		rest := time.NewTimer(briefRest)
		select {
		case <-ctx.Done():
			rest.Stop()
			return
		case <-rest.C:
		}
		t := time.NewTimer(wait - briefRest)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-r.briefWake:
		case <-t.C:
		}
		t.Stop()
	}
}

// flushBriefs sends every group of queued briefs that is due, oldest
// group first, and returns how long until the next one is. flushed holds
// when each group was last sent; a group not sent for a group_interval is
// forgotten.
func (r *Remediator) flushBriefs(ctx context.Context, flushed map[string]time.Time) time.Duration {
	d := r.decider()
	cfg := d.Config.Escalation
	now := r.now()
	for key, at := range flushed {
		if now.Sub(at) >= cfg.GroupInterval {
			delete(flushed, key)
		}
	}
	wait := time.Hour
	var due [][]state.BriefJob
	r.mu.Lock()
	for key, g := range r.briefs {
		at := g[0].At.Add(cfg.GroupWait)
		if last, ok := flushed[key]; ok && last.Add(cfg.GroupInterval).After(at) {
			at = last.Add(cfg.GroupInterval)
		}
		if now.Before(at) {
			wait = min(wait, at.Sub(now))
			continue
		}
		due = append(due, g)
		delete(r.briefs, key)
		flushed[key] = now
	}
	r.mu.Unlock()
	slices.SortFunc(due, func(a, b []state.BriefJob) int { return cmp.Compare(a[0].Seq, b[0].Seq) })
	for _, g := range due {
		if ctx.Err() != nil {
			// Left for the next start, which reads the queue again.
			return wait
		}
		r.sendGroup(ctx, d, g)
	}
	return wait
}

// sendGroup sends one group's briefs as one message: the first brief in
// full, the others listed in it; each incident records the message.
func (r *Remediator) sendGroup(ctx context.Context, d *Decider, queued []state.BriefJob) {
	seqs := make([]uint64, len(queued))
	for i, j := range queued {
		seqs[i] = j.Seq
	}
	g, err := r.Store.BriefJobs(seqs)
	if err != nil {
		r.Logger.Error("reading queued briefs failed; they are sent after the next start", "component", "remediator", "err", err)
		return
	}
	if len(g) == 0 {
		return
	}
	briefs := make([]*actions.Brief, len(g))
	for i, j := range g {
		briefs[i] = &actions.Brief{Incident: j.Incident}
		if err := json.Unmarshal(j.Brief, briefs[i]); err != nil {
			r.Logger.Error("a queued brief does not decode; sending what is known", "component", "remediator", "incident", j.Incident, "err", err)
			briefs[i].Reason = "(the stored brief does not decode: " + err.Error() + ")"
		}
	}
	b := *briefs[0]
	b.Steps = r.briefSteps(b.Incident)
	for _, o := range briefs[1:] {
		if len(b.Also) == actions.BriefAlsoMax {
			b.More++
			continue
		}
		b.Also = append(b.Also, actions.BriefIncident{Incident: o.Incident, Title: o.Title, ReasonCode: o.ReasonCode, Reason: o.Reason, Link: o.Links.Incident})
	}
	r.Logger.Warn("escalation brief", "component", "remediator", "incident", b.Incident, "reason", b.ReasonCode, "grouped", len(g), "brief", b.Text())
	kind, msg, details := r.deliver(ctx, d, g[0].Route, &b, "", b.Target)
	now := r.now()
	changes := make([]*state.Change, len(g))
	for i, j := range g {
		c := &state.Change{Incident: j.Incident, Briefed: j.Seq}
		own := details
		if i > 0 {
			own = map[string]any{"sent_with": b.Incident, "brief": briefs[i]}
			for _, k := range []string{"channel", "tool", "result", "error", "suppressed", "policy"} {
				if v, ok := details[k]; ok {
					own[k] = v
				}
			}
		}
		if kind != "" {
			c.Events = []state.Event{{Time: now, Kind: kind, Message: msg}}
		}
		c.Audit = []state.AuditEntry{auditEntry(now, j.Incident, "brief", "medic", own)}
		changes[i] = c
	}
	if err := r.Store.Commit(changes...); err != nil {
		// One incident's record must not hold the others' back: commit
		// them one by one, and drop a brief whose incident is gone.
		for _, c := range changes {
			if err := r.Store.Commit(c); err != nil {
				r.Logger.Error("recording a sent brief failed", "component", "remediator", "incident", c.Incident, "err", err)
				r.commitNow(&state.Change{Incident: c.Incident, Briefed: c.Briefed})
			}
		}
	}
}

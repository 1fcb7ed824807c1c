package actions

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// Executor runs one call the gate allowed, whatever its kind: an exec, an
// HTTP request, a systemd job, a silence or a notification. Each runner's
// Call binds a spec to it, as Alertmanager's integrations bind a receiver's
// config to its notifier, so that the remediation runs every kind of call
// the same way.
type Executor interface {
	// Execute runs the call; a failure to run it is in the report.
	Execute(ctx context.Context, a *Allowed) Report
}

// Report is what one execution reports: whether it succeeded, and a short
// text for a brief. It is kept in the journal as JSON.
type Report interface {
	Succeeded() bool
	Summary() string
}

// Failure is the report of a call that did not run.
type Failure struct {
	Err string `json:"error"`
}

func (Failure) Succeeded() bool   { return false }
func (f Failure) Summary() string { return f.Err }

// ExecutorFunc is an Executor that is a function: each runner's Call
// returns one, its spec bound in.
type ExecutorFunc func(ctx context.Context, a *Allowed) Report

// Execute calls f.
func (f ExecutorFunc) Execute(ctx context.Context, a *Allowed) Report { return f(ctx, a) }

// Call binds spec to the exec runner.
func (x *Exec) Call(spec ExecSpec) Executor {
	return ExecutorFunc(func(ctx context.Context, a *Allowed) Report {
		res, err := x.Run(ctx, a, spec)
		res.Err = errText(res.Err, err)
		return &res
	})
}

// Summary is the error, then stdout and stderr.
func (r *ExecResult) Summary() string {
	return joinNonEmpty(r.Err, strings.TrimSpace(r.Stdout), strings.TrimSpace(r.Stderr))
}

// Call binds spec to the HTTP runner.
func (h *HTTPExec) Call(spec HTTPSpec) Executor {
	return ExecutorFunc(func(ctx context.Context, a *Allowed) Report {
		res, err := h.Do(ctx, a, spec)
		res.Err = errText(res.Err, err)
		return &res
	})
}

func (r *HTTPResult) Succeeded() bool { return r.OK }

// Summary is the error, then the status.
func (r *HTTPResult) Summary() string {
	status := ""
	if r.Status != 0 {
		status = fmt.Sprintf("HTTP %d", r.Status)
	}
	return joinNonEmpty(r.Err, status)
}

// Call binds spec to the systemd runner.
func (s *Systemd) Call(spec SystemdSpec) Executor {
	return ExecutorFunc(func(ctx context.Context, a *Allowed) Report {
		res, err := s.Run(ctx, a, spec)
		res.Err = errText(res.Err, err)
		return &res
	})
}

// Summary is the error, then systemd's job result.
func (r *SystemdResult) Summary() string {
	job := ""
	if r.Job != "" {
		job = "job " + r.Job
	}
	return joinNonEmpty(r.Err, job)
}

// Call binds spec to the silencer; the silence starts when it runs.
func (s *Silencer) Call(spec SilenceSpec, now func() time.Time) Executor {
	return ExecutorFunc(func(ctx context.Context, a *Allowed) Report {
		res, err := s.Silence(ctx, a, spec, now())
		if err != nil {
			return Failure{Err: err.Error()}
		}
		return res
	})
}

func (SilenceResult) Succeeded() bool   { return true }
func (r SilenceResult) Summary() string { return "silence " + r.ID }

// Call binds spec to the notifier.
func (n *Notifier) Call(spec NotifySpec) Executor {
	return ExecutorFunc(func(ctx context.Context, a *Allowed) Report {
		res, err := n.Notify(ctx, a, spec)
		if err != nil {
			return Failure{Err: err.Error()}
		}
		return res
	})
}

func (NotifyResult) Succeeded() bool { return true }

// Summary names the channel and its answer.
func (r NotifyResult) Summary() string {
	if r.Status != 0 {
		return fmt.Sprintf("%s: HTTP %d", r.Channel, r.Status)
	}
	return r.Channel
}

// errText is the text of err when there is one, else the runner's own.
func errText(own string, err error) string {
	if err != nil {
		return err.Error()
	}
	return own
}

func joinNonEmpty(parts ...string) string {
	var out []string
	for _, p := range parts {
		if p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, "\n")
}

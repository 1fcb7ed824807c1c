package actions

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"sort"
	"sync"
	"syscall"
	"time"
)

// ExecSpec is an exec call ready to run: an argv rendered from validated
// arguments, never a shell line.
type ExecSpec struct {
	// Tool must be the tool the gate allowed.
	Tool string
	Argv []string
	// Env is the child's whole environment: nothing of medic's is
	// inherited, PATH included, unless listed here.
	Env map[string]string
	Dir string
	// Timeout bounds the run; then the process group gets SIGTERM, and
	// SIGKILL after the executor's KillGrace.
	Timeout time.Duration
	// MaxOutput caps what is kept of stdout and of stderr, each.
	MaxOutput int
}

// DefaultMaxOutput is kept of each stream when a spec sets no cap.
const DefaultMaxOutput = 64 << 10

// ExecResult is what one run did, for the journal and the audit log.
type ExecResult struct {
	Argv          []string `json:"argv"`
	ExitCode      int      `json:"exit_code"`
	Stdout        string   `json:"stdout"`
	Stderr        string   `json:"stderr"`
	StdoutDropped int64    `json:"stdout_dropped,omitempty"`
	StderrDropped int64    `json:"stderr_dropped,omitempty"`
	// Started is when the program was running: its execve had returned.
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	TimedOut bool      `json:"timed_out,omitempty"`
	// Err says why the run failed to start or to finish; empty when the
	// program ran to an exit code.
	Err string `json:"error,omitempty"`
}

// Succeeded reports a clean exit 0.
func (r *ExecResult) Succeeded() bool { return r.Err == "" && !r.TimedOut && r.ExitCode == 0 }

// ErrNotAllowed is returned for a run without the gate's allow.
var ErrNotAllowed = errors.New("not allowed by the policy gate")

// Exec runs argv lists as child processes, never through a shell.
type Exec struct {
	// KillGrace is the time between SIGTERM and SIGKILL on timeout.
	KillGrace time.Duration
}

// DefaultKillGrace is the time between SIGTERM and SIGKILL on timeout.
const DefaultKillGrace = 5 * time.Second

// Run runs the spec if a allows its tool. The child gets its own process
// group, which is signalled as a whole on timeout or cancellation and killed
// after the program exits, so that nothing it started outlives it.
func (x *Exec) Run(ctx context.Context, a *Allowed, spec ExecSpec) (ExecResult, error) {
	res := ExecResult{Argv: append([]string(nil), spec.Argv...)}
	if !a.permits(spec.Tool) {
		return res, fmt.Errorf("exec %s: %w", spec.Tool, ErrNotAllowed)
	}
	if len(spec.Argv) == 0 || spec.Argv[0] == "" {
		return res, fmt.Errorf("exec %s: empty argv", spec.Tool)
	}
	grace := x.KillGrace
	if grace <= 0 {
		grace = DefaultKillGrace
	}
	max := spec.MaxOutput
	if max <= 0 {
		max = DefaultMaxOutput
	}
	cmd := exec.Command(spec.Argv[0], spec.Argv[1:]...)
	env := make([]string, 0, len(spec.Env))
	for k, v := range spec.Env {
		env = append(env, k+"="+v)
	}
	sort.Strings(env)
	cmd.Env = env // non-nil: an empty list inherits nothing
	cmd.Dir = spec.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, stderr := &capped{max: max}, &capped{max: max}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	// A grandchild that escapes the group and keeps the pipes open must
	// not hang the run.
	cmd.WaitDelay = grace

	if err := cmd.Start(); err != nil {
		res.Started = time.Now()
		res.Finished = res.Started
		res.ExitCode = -1
		res.Err = err.Error()
		return res, nil
	}
	// Start returns once the child has exec'd the program.
	res.Started = time.Now()
	pgid := cmd.Process.Pid
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	var timeout <-chan time.Time
	if spec.Timeout > 0 {
		t := time.NewTimer(spec.Timeout)
		defer t.Stop()
		timeout = t.C
	}
	var err error
	select {
	case err = <-done:
	case <-timeout:
		res.TimedOut = true
		err = stop(pgid, done, grace)
	case <-ctx.Done():
		res.Err = "cancelled: " + ctx.Err().Error()
		err = stop(pgid, done, grace)
	}
	// Reap whatever the program left running in its group.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	res.Finished = time.Now()
	res.Stdout, res.StdoutDropped = stdout.result()
	res.Stderr, res.StderrDropped = stderr.result()
	res.ExitCode = cmd.ProcessState.ExitCode()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) && res.Err == "" {
		res.Err = err.Error()
	}
	return res, nil
}

// stop sends SIGTERM to the group, then SIGKILL after grace.
func stop(pgid int, done <-chan error, grace time.Duration) error {
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-t.C:
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		return <-done
	}
}

// capped keeps the first max bytes written and counts the rest.
type capped struct {
	mu      sync.Mutex
	max     int
	buf     []byte
	dropped int64
}

func (c *capped) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	room := c.max - len(c.buf)
	if room > len(p) {
		room = len(p)
	}
	if room > 0 {
		c.buf = append(c.buf, p[:room]...)
	}
	c.dropped += int64(len(p) - room)
	return len(p), nil
}

func (c *capped) result() (string, int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return string(c.buf), c.dropped
}

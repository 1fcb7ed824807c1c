package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// The processes of the lab: each with its own data under the lab's
// folder, its log in logs/, and its own process group, so that stopping
// the lab stops everything it started.

// proc is one child process.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
}

// start runs a program with its output in dir/logs/name.log. env, when
// given, is its whole environment.
func (l *lab) start(name string, env []string, bin string, args ...string) (*proc, error) {
	logf, err := os.OpenFile(filepath.Join(l.dir, "logs", name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = l.dir
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); logf.Close(); close(p.done) }()
	l.procs = append(l.procs, p)
	l.saveState()
	return p, nil
}

// stop ends a process group: SIGTERM, then SIGKILL after 5 s.
func (p *proc) stop() {
	if p.cmd.Process == nil {
		return
	}
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// freeAddr is a free 127.0.0.1 port.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// waitHTTP waits until url answers 200, or the process exits.
func waitHTTP(ctx context.Context, p *proc, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		if p != nil && p.exited() {
			return fmt.Errorf("%s exited; see logs/%s.log", p.name, p.name)
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s did not answer within %s", url, timeout)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// startSandbox boots a real systemd (scripts/sandbox-systemd) in the
// host's network, so that Prometheus scrapes its units, with the lab's
// folder as its /run/medic-test. It returns its D-Bus address.
func (l *lab) startSandbox() (string, error) {
	cmd := exec.Command(filepath.Join(l.repo, "scripts/sandbox-systemd"), l.dir)
	cmd.Env = append(os.Environ(), "SANDBOX_NET=host")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", err
	}
	logf, err := os.Create(filepath.Join(l.dir, "logs", "systemd.log"))
	if err != nil {
		return "", err
	}
	cmd.Stderr = logf
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("scripts/sandbox-systemd: %w", err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	var pid int
	var bus string
	if _, err := fmt.Sscan(line, &pid, &bus); err != nil {
		cmd.Wait()
		return "", fmt.Errorf("scripts/sandbox-systemd did not start systemd (%q); see logs/systemd.log", strings.TrimSpace(line))
	}
	l.systemdPID = pid
	p := &proc{name: "systemd", cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); logf.Close(); close(p.done) }()
	l.procs = append(l.procs, p)
	l.saveState()
	return bus, nil
}

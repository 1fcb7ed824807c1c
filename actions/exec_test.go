package actions

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// The test binary doubles as the child program: with MEDIC_EXEC_HELPER in
// its (otherwise empty) environment it does what the mode says.
func TestMain(m *testing.M) {
	switch os.Getenv("MEDIC_EXEC_HELPER") {
	case "":
		goleak.VerifyTestMain(m)
	case "argv":
		json.NewEncoder(os.Stdout).Encode(map[string]any{"args": os.Args[1:], "env": os.Environ()})
		os.Exit(0)
	case "exit":
		n, _ := strconv.Atoi(os.Args[1])
		fmt.Fprintln(os.Stderr, "failing on purpose")
		os.Exit(n)
	case "flood":
		os.Stdout.Write([]byte(strings.Repeat("x", 1<<20)))
		os.Exit(0)
	case "tree":
		// Start a grandchild in the same process group, record its pid, sleep.
		c := exec.Command(os.Args[0])
		c.Env = []string{"MEDIC_EXEC_HELPER=sleep"}
		if err := c.Start(); err != nil {
			os.Exit(3)
		}
		os.WriteFile(os.Args[1], []byte(strconv.Itoa(c.Process.Pid)), 0o600)
		time.Sleep(time.Hour)
	case "sleep":
		time.Sleep(time.Hour)
	case "ignore-term":
		signal.Ignore(syscall.SIGTERM)
		os.WriteFile(os.Args[1], []byte("ready"), 0o600)
		time.Sleep(time.Hour)
	}
	os.Exit(0)
}

func allowed(tool string) *Allowed {
	return &Allowed{call: Call{Tool: tool}, decision: Decision{Result: Allow, Reasons: []string{"test"}}}
}

func self(t *testing.T) string {
	p, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// hostile is the injection corpus: shell syntax, separators, control
// characters, a 64 KiB string and a bidirectional override.
func hostile(marker string) []string {
	return []string{
		"$(touch " + marker + ")", "`touch " + marker + "`", "; touch " + marker, "| touch " + marker,
		"&& touch " + marker, "a\ntouch " + marker, "a\rb", "--output=" + marker, "'quoted'", `"dq"`,
		"${IFS}", "*", "~", strings.Repeat("A", 64<<10), "abc\u202edcb", "tab\there", " leading space",
	}
}

func TestExecArgvIsExact(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "marker")
	args := hostile(marker)
	argv := append([]string{self(t)}, args...)
	x := &Exec{}
	res, err := x.Run(context.Background(), allowed("probe"), ExecSpec{Tool: "probe", Argv: argv, Env: map[string]string{"MEDIC_EXEC_HELPER": "argv"}, Timeout: 30 * time.Second, MaxOutput: 1 << 20})
	if err != nil || !res.Succeeded() {
		t.Fatalf("%v %+v", err, res)
	}
	var got struct {
		Args []string `json:"args"`
		Env  []string `json:"env"`
	}
	if err := json.Unmarshal([]byte(res.Stdout), &got); err != nil {
		t.Fatalf("%v: %q", err, res.Stdout[:min(200, len(res.Stdout))])
	}
	if !slices.Equal(got.Args, args) {
		t.Fatalf("the child saw different arguments:\n got %q\nwant %q", got.Args, args)
	}
	if !slices.Equal(res.Argv, argv) {
		t.Fatal("the recorded argv differs from the one run")
	}
	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		t.Fatalf("the marker file exists: %v", err)
	}
	// Nothing of the parent's environment is inherited.
	if !slices.Equal(got.Env, []string{"MEDIC_EXEC_HELPER=argv"}) {
		t.Fatalf("child environment %q", got.Env)
	}
}

func TestExecRefusesWithoutAllow(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "ran")
	spec := ExecSpec{Tool: "touch", Argv: []string{"/usr/bin/touch", marker}}
	for _, a := range []*Allowed{nil, allowed("other_tool"), {}} {
		if _, err := (&Exec{}).Run(context.Background(), a, spec); err == nil {
			t.Fatalf("ran with %+v", a)
		}
	}
	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		t.Fatal("the program ran without an allow")
	}
}

func TestExecExitCodeAndOutputCap(t *testing.T) {
	x := &Exec{}
	res, _ := x.Run(context.Background(), allowed("t"), ExecSpec{Tool: "t", Argv: []string{self(t), "7"}, Env: map[string]string{"MEDIC_EXEC_HELPER": "exit"}, Timeout: 30 * time.Second})
	if res.Succeeded() || res.ExitCode != 7 || res.Err != "" || !strings.Contains(res.Stderr, "failing on purpose") {
		t.Fatalf("%+v", res)
	}
	res, _ = x.Run(context.Background(), allowed("t"), ExecSpec{Tool: "t", Argv: []string{self(t)}, Env: map[string]string{"MEDIC_EXEC_HELPER": "flood"}, Timeout: 30 * time.Second, MaxOutput: 1000})
	if !res.Succeeded() || len(res.Stdout) != 1000 || res.StdoutDropped != 1<<20-1000 {
		t.Fatalf("kept %d, dropped %d", len(res.Stdout), res.StdoutDropped)
	}
	res, _ = x.Run(context.Background(), allowed("t"), ExecSpec{Tool: "t", Argv: []string{"/nonexistent/program"}})
	if res.Succeeded() || res.Err == "" {
		t.Fatalf("missing program: %+v", res)
	}
}

func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

func waitFile(t *testing.T, p string) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if b, err := os.ReadFile(p); err == nil && len(b) > 0 {
			return string(b)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never written", p)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestExecTimeoutKillsTheGroup: on timeout the whole process group goes,
// grandchildren included.
func TestExecTimeoutKillsTheGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	x := &Exec{KillGrace: 2 * time.Second}
	done := make(chan ExecResult, 1)
	go func() {
		res, _ := x.Run(context.Background(), allowed("t"), ExecSpec{Tool: "t", Argv: []string{self(t), pidFile}, Env: map[string]string{"MEDIC_EXEC_HELPER": "tree"}, Timeout: 500 * time.Millisecond})
		done <- res
	}()
	grandchild, _ := strconv.Atoi(waitFile(t, pidFile))
	res := <-done
	if !res.TimedOut || res.Succeeded() {
		t.Fatalf("%+v", res)
	}
	deadline := time.Now().Add(10 * time.Second)
	for alive(grandchild) {
		if time.Now().After(deadline) {
			syscall.Kill(grandchild, syscall.SIGKILL)
			t.Fatalf("grandchild %d outlived the timeout", grandchild)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestExecSIGKILLAfterGrace: a program that ignores SIGTERM is killed.
func TestExecSIGKILLAfterGrace(t *testing.T) {
	ready := filepath.Join(t.TempDir(), "ready")
	x := &Exec{KillGrace: 200 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan ExecResult, 1)
	go func() {
		res, _ := x.Run(ctx, allowed("t"), ExecSpec{Tool: "t", Argv: []string{self(t), ready}, Env: map[string]string{"MEDIC_EXEC_HELPER": "ignore-term"}})
		done <- res
	}()
	waitFile(t, ready)
	cancel()
	res := <-done
	if res.Succeeded() || !strings.HasPrefix(res.Err, "cancelled") || res.ExitCode != -1 {
		t.Fatalf("%+v", res)
	}
}

package actions

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestValidUnitName(t *testing.T) {
	for _, ok := range []string{"nginx.service", "getty@tty1.service", "a-b_c:d.e.socket", `dev-disk-by\x2duuid.device`,
		"app@.service", "multi-user.target", strings.Repeat("a", 247) + ".service"} {
		if err := ValidUnitName(ok); err != nil {
			t.Errorf("ValidUnitName(%q) = %v, want nil", ok, err)
		}
	}
	marker := filepath.Join(t.TempDir(), "marker")
	bad := []string{"", "nginx", "nginx.", ".service", "nginx.exe", "-.mount", "-x.service", "@x.service",
		"a@b@c.service", "a/b.service", "../etc.service", "a b.service", "a\x00b.service", "a\nb.service",
		"ünit.service", strings.Repeat("a", 248) + ".service"}
	for _, h := range hostile(marker) {
		bad = append(bad, h+".service", "app@"+h+".service")
	}
	for _, b := range bad {
		if err := ValidUnitName(b); err == nil {
			t.Errorf("ValidUnitName(%.60q) = nil, want an error", b)
		}
	}
}

func TestSystemdNeedsTheGate(t *testing.T) {
	s := &Systemd{Address: "unix:path=/nonexistent"}
	for _, a := range []*Allowed{nil, allowed("other_tool"), {}} {
		_, err := s.Run(context.Background(), a, SystemdSpec{Tool: "restart_unit", Unit: "demo.service", Action: "restart"})
		if !errors.Is(err, ErrNotAllowed) {
			t.Errorf("Run with %v = %v, want ErrNotAllowed", a, err)
		}
	}
}

// sandboxSystemd is a real systemd booted by scripts/sandbox-systemd in
// its own namespaces, with only a D-Bus system bus running. Tests reach
// systemd through that bus, as medic does in production.
type sandboxSystemd struct {
	Address string
	// Dir is the host directory that its units see as /run/medic-test.
	Dir string
}

// startSandboxSystemd boots it with the given unit files. It skips when
// this process may not create namespaces (only root may), and fails on any
// other problem.
func startSandboxSystemd(t *testing.T, units map[string]string) *sandboxSystemd {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("a sandboxed systemd needs root to create its namespaces")
	}
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "units"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range units {
		if err := os.WriteFile(filepath.Join(dir, "units", name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("../scripts/sandbox-systemd", dir)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &strings.Builder{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(stdout).ReadString('\n')
	var pid int
	var addr string
	if _, err := fmt.Sscan(line, &pid, &addr); err != nil {
		_ = cmd.Wait()
		t.Fatalf("scripts/sandbox-systemd: %q, %v: %s", line, err, stderr)
	}
	t.Cleanup(func() {
		// Killing PID 1 of a PID namespace kills everything in it, and
		// the script exits.
		_ = syscall.Kill(pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
	return &sandboxSystemd{Address: addr, Dir: dir}
}

// lines reads the journal our demo units append to.
func (s *sandboxSystemd) lines(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(s.Dir, "log"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(b))
}

func TestSystemdRealUnits(t *testing.T) {
	sd := startSandboxSystemd(t, map[string]string{
		"demo.service": "[Unit]\nDefaultDependencies=no\n[Service]\n" +
			"ExecStartPre=/bin/sh -c 'echo start >> /run/medic-test/log'\nExecStart=/bin/sleep 1000\n" +
			"ExecReload=/bin/sh -c 'echo reload >> /run/medic-test/log'\n" +
			"ExecStopPost=/bin/sh -c 'echo stopped >> /run/medic-test/log'\n",
		"broken.service": "[Unit]\nDefaultDependencies=no\n[Service]\nType=oneshot\nExecStart=/bin/false\n",
	})
	s := &Systemd{Address: sd.Address}
	ctx := context.Background()
	run := func(unit, action string) (SystemdResult, error) {
		return s.Run(ctx, allowed("unit_tool"), SystemdSpec{Tool: "unit_tool", Unit: unit, Action: action, Timeout: 20 * time.Second})
	}
	steps := []struct {
		unit, action     string
		job, active, sub string
		wantErr          bool
		log              string
	}{
		{"demo.service", "start", "done", "active", "running", false, "start"},
		{"demo.service", "restart", "done", "active", "running", false, "start stopped start"},
		{"demo.service", "reload", "done", "active", "running", false, "start stopped start reload"},
		{"demo.service", "stop", "done", "inactive", "dead", false, "start stopped start reload stopped"},
		{"demo.service", "restart", "done", "active", "running", false, "start stopped start reload stopped start"},
		{"broken.service", "start", "failed", "failed", "failed", true, "start stopped start reload stopped start"},
	}
	for i, st := range steps {
		res, err := run(st.unit, st.action)
		if (err != nil) != st.wantErr || res.Job != st.job || res.ActiveState != st.active || res.SubState != st.sub || res.Succeeded() == st.wantErr {
			t.Fatalf("step %d: %s %s = %+v, %v; want job %s, %s/%s, error %v", i, st.action, st.unit, res, err, st.job, st.active, st.sub, st.wantErr)
		}
		if got := strings.Join(sd.lines(t), " "); got != st.log {
			t.Fatalf("step %d: the units logged %q, want %q", i, got, st.log)
		}
		if res.Finished.Before(res.Started) {
			t.Errorf("step %d: finished %v before started %v", i, res.Finished, res.Started)
		}
	}
	if _, err := run("absent.service", "restart"); err == nil || !strings.Contains(err.Error(), "absent.service") {
		t.Errorf("restarting a unit that does not exist: %v, want systemd's error naming it", err)
	}
	if _, err := run("demo.service", "kill"); err == nil {
		t.Error("an unknown action was accepted")
	}

	// The injection corpus never reaches systemd: each name is refused
	// before a connection is made, so the demo unit is not touched and no
	// marker appears.
	marker := filepath.Join(t.TempDir(), "marker")
	before := sd.lines(t)
	for _, h := range hostile(marker) {
		for _, unit := range []string{h, h + ".service", "demo.service" + h, "demo@" + h + ".service", "demo.service\x00" + h} {
			if _, err := run(unit, "restart"); err == nil || !strings.Contains(err.Error(), "unit name") {
				t.Errorf("restart %.60q: %v, want the unit name refused", unit, err)
			}
		}
	}
	if after := sd.lines(t); strings.Join(after, " ") != strings.Join(before, " ") {
		t.Errorf("hostile names changed the demo unit's log: %v -> %v", before, after)
	}
	if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("marker %s exists: %v", marker, err)
	}
}

func TestSystemdUnreachable(t *testing.T) {
	s := &Systemd{Address: "unix:path=" + filepath.Join(t.TempDir(), "nothing")}
	res, err := s.Run(context.Background(), allowed("unit_tool"), SystemdSpec{Tool: "unit_tool", Unit: "demo.service", Action: "restart", Timeout: 2 * time.Second})
	if err == nil || res.Succeeded() || !strings.Contains(err.Error(), "connecting to systemd") {
		t.Errorf("Run against no systemd = %+v, %v; want a connection error", res, err)
	}
	s = &Systemd{Address: "tcp:host=127.0.0.1,port=1"}
	if _, err := s.Run(context.Background(), allowed("unit_tool"), SystemdSpec{Tool: "unit_tool", Unit: "demo.service", Action: "restart"}); err == nil {
		t.Error("a tcp: address was accepted")
	}
}

func TestSystemdSetMemoryMax(t *testing.T) {
	sd := startSandboxSystemd(t, map[string]string{
		"demo.service": "[Unit]\nDefaultDependencies=no\n[Service]\nExecStart=/bin/sleep 1000\n",
	})
	s := &Systemd{Address: sd.Address}
	ctx := context.Background()
	set := func(unit string, bytes uint64) (SystemdResult, error) {
		return s.Run(ctx, allowed("unit_tool"), SystemdSpec{Tool: "unit_tool", Unit: unit, Action: SetMemoryMax, MemoryMax: bytes, Timeout: 20 * time.Second})
	}
	if res, err := s.Run(ctx, allowed("unit_tool"), SystemdSpec{Tool: "unit_tool", Unit: "demo.service", Action: "start", Timeout: 20 * time.Second}); err != nil {
		t.Fatalf("start: %+v, %v", res, err)
	}
	res, err := set("demo.service", 256<<20)
	if err != nil || !res.Succeeded() || res.MemoryMax != 256<<20 || res.ActiveState != "active" {
		t.Fatalf("set-memory-max 256MiB = %+v, %v; want systemd to report 268435456 on the running unit", res, err)
	}
	// A second call raises it: the value systemd reports is the new one.
	if res, err = set("demo.service", 320<<20); err != nil || res.MemoryMax != 320<<20 {
		t.Fatalf("raising to 320MiB = %+v, %v", res, err)
	}
	for _, bad := range []struct {
		unit  string
		bytes uint64
		want  string
	}{
		{"demo.service", 0, "no limit"},
		{"demo.socket", 1 << 30, "only a service"},
		{"absent.service", 1 << 30, "absent.service"},
	} {
		if res, err := set(bad.unit, bad.bytes); err == nil || res.Succeeded() || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("set-memory-max %s %d = %+v, %v; want an error with %q", bad.unit, bad.bytes, res, err, bad.want)
		}
	}
}

package actions

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"
)

// SystemdSpec is a unit action ready to run.
type SystemdSpec struct {
	// Tool must be the tool the gate allowed.
	Tool string
	Unit string
	// Action is restart, start, stop, reload or set-memory-max.
	Action string
	// MemoryMax is the limit set-memory-max sets, in bytes.
	MemoryMax uint64
	// Timeout bounds the wait for systemd's job to finish.
	Timeout time.Duration
}

// SystemdResult is what one unit action did, for the journal and the
// audit log.
type SystemdResult struct {
	Unit   string `json:"unit"`
	Action string `json:"action"`
	// Job is systemd's job result: done, canceled, timeout, failed,
	// dependency or skipped. Only done is a success.
	Job string `json:"job,omitempty"`
	// MemoryMax is the unit's limit as systemd reports it after
	// set-memory-max.
	MemoryMax   uint64    `json:"memory_max,omitempty"`
	ActiveState string    `json:"active_state,omitempty"`
	SubState    string    `json:"sub_state,omitempty"`
	Started     time.Time `json:"started"`
	Finished    time.Time `json:"finished"`
	Err         string    `json:"error,omitempty"`
}

// Succeeded reports a job that systemd finished as done, or a limit that
// systemd reports as set.
func (r *SystemdResult) Succeeded() bool {
	return r.Err == "" && (r.Job == "done" || r.Action == SetMemoryMax && r.MemoryMax != 0)
}

// SetMemoryMax is the action that sets a service's MemoryMax at runtime:
// systemd applies it to the running cgroup at once and keeps it until the
// next boot, so the unit file stays the operator's (systemctl
// set-property --runtime).
const SetMemoryMax = "set-memory-max"

// Systemd restarts, starts, stops or reloads units over D-Bus.
type Systemd struct {
	// Address is the D-Bus system bus to reach systemd on, a "unix:"
	// address; empty means the default, unix:path=/run/dbus/system_bus_socket.
	// A medic that does not run as root needs a polkit rule that grants it
	// org.freedesktop.systemd1.manage-units.
	Address string
}

// DefaultSystemdTimeout bounds a unit job when the spec sets no timeout.
const DefaultSystemdTimeout = 90 * time.Second

var unitSuffixes = map[string]bool{
	"service": true, "socket": true, "target": true, "mount": true, "automount": true,
	"swap": true, "timer": true, "path": true, "slice": true, "scope": true, "device": true,
}

// ValidUnitName checks a unit name as systemd does (unit_name_is_valid):
// at most 255 bytes, a known type suffix, a prefix of ASCII letters,
// digits and ":-_.\", and at most one "@" that splits a template from its
// instance. It also refuses a leading "-" (no unit medic manages is the
// root mount), so that no name reads as an option to any tool.
func ValidUnitName(name string) error {
	if name == "" || len(name) > 255 {
		return fmt.Errorf("unit name %q: must be 1 to 255 bytes", name)
	}
	dot := strings.LastIndexByte(name, '.')
	if dot <= 0 || !unitSuffixes[name[dot+1:]] {
		return fmt.Errorf("unit name %q: needs a unit type suffix such as .service", name)
	}
	prefix := name[:dot]
	if prefix[0] == '-' {
		return fmt.Errorf("unit name %q: must not start with '-'", name)
	}
	at := strings.IndexByte(prefix, '@')
	if at == 0 || (at > 0 && strings.IndexByte(prefix[at+1:], '@') >= 0) {
		return fmt.Errorf("unit name %q: '@' must split a template name from its instance, once", name)
	}
	for i := 0; i < len(prefix); i++ {
		c := prefix[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9',
			c == ':', c == '-', c == '_', c == '.', c == '\\', c == '@':
		default:
			return fmt.Errorf("unit name %q: byte %q at %d is not allowed in a unit name", name, c, i)
		}
	}
	return nil
}

// Run performs the spec's action on its unit if a allows its tool, waits
// for systemd's job to finish, and reads the unit's state afterwards.
func (s *Systemd) Run(ctx context.Context, a *Allowed, spec SystemdSpec) (res SystemdResult, err error) {
	res = SystemdResult{Unit: spec.Unit, Action: spec.Action, Started: time.Now()}
	defer func() { res.Finished = time.Now() }()
	if !a.permits(spec.Tool) {
		return res, fmt.Errorf("systemd %s: %w", spec.Tool, ErrNotAllowed)
	}
	if err := ValidUnitName(spec.Unit); err != nil {
		return res, fmt.Errorf("systemd %s: %w", spec.Tool, err)
	}
	timeout := spec.Timeout
	if timeout <= 0 {
		timeout = DefaultSystemdTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := s.connect(ctx)
	if err != nil {
		return res, fmt.Errorf("systemd %s: connecting to systemd: %w", spec.Tool, err)
	}
	defer conn.Close()
	if spec.Action == SetMemoryMax {
		return s.setMemoryMax(ctx, conn, spec, res)
	}
	var enqueue func(context.Context, string, string, chan<- string) (int, error)
	switch spec.Action {
	case "restart":
		enqueue = conn.RestartUnitContext
	case "start":
		enqueue = conn.StartUnitContext
	case "stop":
		enqueue = conn.StopUnitContext
	case "reload":
		enqueue = conn.ReloadUnitContext
	default:
		return res, fmt.Errorf("systemd %s: unknown action %q", spec.Tool, spec.Action)
	}
	// Buffered: the connection's dispatcher must never block on us, even
	// after we stopped waiting.
	done := make(chan string, 1)
	// "replace", as systemctl does by default.
	if _, err := enqueue(ctx, spec.Unit, "replace", done); err != nil {
		return res, fmt.Errorf("systemd %s: %s %s: %w", spec.Tool, spec.Action, spec.Unit, err)
	}
	select {
	case res.Job = <-done:
	case <-ctx.Done():
		return res, fmt.Errorf("systemd %s: %s %s: no job result within %s", spec.Tool, spec.Action, spec.Unit, timeout)
	}
	if props, err := conn.GetUnitPropertiesContext(ctx, spec.Unit); err == nil {
		res.ActiveState, _ = props["ActiveState"].(string)
		res.SubState, _ = props["SubState"].(string)
	}
	if res.Job != "done" {
		return res, fmt.Errorf("systemd %s: %s %s: job %s", spec.Tool, spec.Action, spec.Unit, res.Job)
	}
	return res, nil
}

// setMemoryMax sets the limit and reads it back: success is systemd
// reporting the new value, not the call returning.
func (s *Systemd) setMemoryMax(ctx context.Context, conn *sddbus.Conn, spec SystemdSpec, res SystemdResult) (SystemdResult, error) {
	if !strings.HasSuffix(spec.Unit, ".service") {
		return res, fmt.Errorf("systemd %s: %s %s: only a service has a MemoryMax medic sets", spec.Tool, spec.Action, spec.Unit)
	}
	if spec.MemoryMax == 0 {
		return res, fmt.Errorf("systemd %s: %s %s: no limit given", spec.Tool, spec.Action, spec.Unit)
	}
	prop := sddbus.Property{Name: "MemoryMax", Value: dbus.MakeVariant(spec.MemoryMax)}
	if err := conn.SetUnitPropertiesContext(ctx, spec.Unit, true, prop); err != nil {
		return res, fmt.Errorf("systemd %s: %s %s: %w", spec.Tool, spec.Action, spec.Unit, err)
	}
	p, err := conn.GetUnitTypePropertyContext(ctx, spec.Unit, "Service", "MemoryMax")
	if err != nil {
		return res, fmt.Errorf("systemd %s: %s %s: reading it back: %w", spec.Tool, spec.Action, spec.Unit, err)
	}
	res.MemoryMax, _ = p.Value.Value().(uint64)
	if props, err := conn.GetUnitPropertiesContext(ctx, spec.Unit); err == nil {
		res.ActiveState, _ = props["ActiveState"].(string)
		res.SubState, _ = props["SubState"].(string)
	}
	if res.MemoryMax != spec.MemoryMax {
		return res, fmt.Errorf("systemd %s: %s %s: systemd reports MemoryMax %d, not %d", spec.Tool, spec.Action, spec.Unit, res.MemoryMax, spec.MemoryMax)
	}
	return res, nil
}

func (s *Systemd) connect(ctx context.Context) (*sddbus.Conn, error) {
	if s.Address == "" {
		return sddbus.NewSystemConnectionContext(ctx)
	}
	if !strings.HasPrefix(s.Address, "unix:") {
		return nil, errors.New("only unix: D-Bus addresses are supported")
	}
	return sddbus.NewConnection(func() (*dbus.Conn, error) {
		// As the system bus connection does: EXTERNAL authentication by
		// uid, then Hello.
		conn, err := dbus.Dial(s.Address, dbus.WithContext(ctx))
		if err != nil {
			return nil, err
		}
		if err := conn.Auth([]dbus.Auth{dbus.AuthExternal(strconv.Itoa(os.Getuid()))}); err != nil {
			conn.Close()
			return nil, err
		}
		if err := conn.Hello(); err != nil {
			conn.Close()
			return nil, err
		}
		return conn, nil
	})
}

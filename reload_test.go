package main

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// reload asks the running daemon to reload and returns the answer.
func (l *remediationLab) reload(t *testing.T) (int, string) {
	t.Helper()
	code, body := l.do(t, "POST", "/-/reload", l.token, nil)
	return code, string(body)
}

// startAlertmanager runs a real Alertmanager with a receiver that sends
// nothing, for silence tools, and returns its address.
func startAlertmanager(t *testing.T) string {
	t.Helper()
	bin := requireAlertmanager(t)
	dir := t.TempDir()
	addr := freeAddr(t)
	cfg := writeFile(t, filepath.Join(dir, "alertmanager.yml"), "route:\n  receiver: none\nreceivers:\n  - name: none\n")
	am := start(t, dir, bin, "--config.file="+cfg, "--storage.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--cluster.listen-address=")
	waitReady(t, am, "http://"+addr+"/-/ready")
	return addr
}

const silenceRunbook = `
tool "hush" {
  description = "Silence the incident's alert while it is handled."
  risk        = "low"
  silence {
    duration = "1h"
    comment  = "medic is on it"
  }
}
runbook "lab" {
  description = "The lab runbook."
  matchers = ["alertname=\"Lab\""]
  target = "${labels.name}"
  step "hush" { tool = "hush" }
}
`

// TestReloadAppliesEverySetting: each setting a reload accepts is in force
// for the next decision, and a reload that cannot apply a setting is refused
// whole, naming it.
func TestReloadAppliesEverySetting(t *testing.T) {
	t.Parallel()
	t.Run("dry_run", func(t *testing.T) {
		t.Parallel()
		l := newLab(t, strings.Replace(slowRunbook, "SLEEP", "0", 1), "1h")
		l.start(t)
		l.post(t, "alpha", "00000000000000a1")
		eventually(t, 20*time.Second, "the step to run", func() bool { return len(l.runs(t)) == 1 })
		l.writeConfig(t, "", labAuth, "dry_run = true")
		if code, body := l.reload(t); code != 200 {
			t.Fatalf("reload: %d %s", code, body)
		}
		l.post(t, "beta", "00000000000000a2")
		eventually(t, 20*time.Second, "the shadow record", func() bool {
			for _, inc := range l.incidents(t) {
				if holds(inc, "00000000000000a2") && hasEvent(inc, "shadow") {
					return true
				}
			}
			return false
		})
		if n := len(l.runs(t)); n != 1 {
			t.Fatalf("%d runs after the reload to dry_run, want 1", n)
		}
	})
	t.Run("approval_ttl", func(t *testing.T) {
		t.Parallel()
		l := newLab(t, riskyRunbook, "1h")
		l.start(t)
		l.writeConfig(t, "", labAuth, `approval_ttl = "7m"`)
		if code, body := l.reload(t); code != 200 {
			t.Fatalf("reload: %d %s", code, body)
		}
		a := l.approval(t, l.pendingApproval(t, "alpha", "00000000000000b1"))
		if ttl := a.ExpiresAt.Sub(a.CreatedAt); ttl != 7*time.Minute {
			t.Fatalf("the approval expires after %s, want the reloaded 7m", ttl)
		}
	})
	t.Run("parallel needs a restart", func(t *testing.T) {
		t.Parallel()
		l := newLab(t, strings.Replace(slowRunbook, "SLEEP", "0", 1), "1h")
		l.start(t)
		l.writeConfig(t, "", labAuth, `approval_ttl = "1h"`, "parallel = 9")
		code, body := l.reload(t)
		if code == 200 || !strings.Contains(body, "remediation.parallel") || !strings.Contains(body, "restart") {
			t.Fatalf("reload changing parallel: %d %s; want a refusal naming remediation.parallel", code, body)
		}
		if m := get(t, "http://"+l.addr+"/metrics"); !strings.Contains(m, "medic_config_last_reload_successful 0") {
			t.Fatal("the refused reload counts as successful")
		}
	})
	t.Run("alertmanager url", func(t *testing.T) {
		t.Parallel()
		amAddr := startAlertmanager(t)
		l := newLab(t, silenceRunbook, "1h")
		l.start(t)
		l.writeConfig(t, fmt.Sprintf("alertmanager { url = \"http://%s\" }", amAddr), labAuth)
		if code, body := l.reload(t); code != 200 {
			t.Fatalf("reload: %d %s", code, body)
		}
		l.post(t, "alpha", "00000000000000c1")
		eventually(t, 20*time.Second, "a silence in the reloaded Alertmanager", func() bool {
			return strings.Contains(get(t, "http://"+amAddr+"/api/v2/silences"), `"comment":"medic is on it (medic incident`)
		})
	})
	t.Run("authentication off", func(t *testing.T) {
		t.Parallel()
		l := newLab(t, strings.Replace(slowRunbook, "SLEEP", "0", 1), "1h")
		l.start(t)
		l.writeConfig(t, "", "", `approval_ttl = "1h"`)
		code, body := l.reload(t)
		if code == 200 || !strings.Contains(body, "authentication off") {
			t.Fatalf("reload dropping the token: %d %s; want a refusal", code, body)
		}
		if code, _ := l.do(t, "GET", "/api/v1/incidents", "", nil); code != http.StatusUnauthorized {
			t.Fatalf("after the refused reload, no token gets %d, want 401", code)
		}
		l.writeConfig(t, "", "insecure = true", `approval_ttl = "1h"`)
		if code, body := l.reload(t); code != 200 {
			t.Fatalf("reload with insecure = true: %d %s", code, body)
		}
		if code, _ := l.do(t, "GET", "/api/v1/incidents", "", nil); code != 200 {
			t.Fatalf("after insecure = true, no token gets %d, want 200", code)
		}
	})
}

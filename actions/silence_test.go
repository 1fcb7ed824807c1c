package actions

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// startAlertmanager runs Debian's Alertmanager on a free loopback port.
func startAlertmanager(t *testing.T) *url.URL {
	t.Helper()
	const bin = "/usr/bin/prometheus-alertmanager"
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%s is missing: scripts/test.sh installs it", bin)
	}
	dir := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cfg := filepath.Join(dir, "am.yml")
	os.WriteFile(cfg, []byte("route:\n  receiver: none\nreceivers:\n  - name: none\n"), 0o600)
	cmd := exec.Command(bin, "--config.file="+cfg, "--storage.path="+dir, "--web.listen-address="+addr, "--cluster.listen-address=")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("alertmanager not ready")
		}
		time.Sleep(50 * time.Millisecond)
	}
	u, _ := url.Parse("http://" + addr)
	return u
}

type amSilence struct {
	ID       string                 `json:"id"`
	Status   struct{ State string } `json:"status"`
	Comment  string                 `json:"comment"`
	Matchers []struct {
		Name, Value      string
		IsRegex, IsEqual bool
	} `json:"matchers"`
}

func getSilence(t *testing.T, u *url.URL, id string) amSilence {
	t.Helper()
	resp, err := http.Get(u.String() + "/api/v2/silence/" + id)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var s amSilence
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestSilenceRealAlertmanager creates a silence with hostile label values
// as exact matchers in a real Alertmanager, reads it back verbatim, and
// expires it as the rollback.
func TestSilenceRealAlertmanager(t *testing.T) {
	u := startAlertmanager(t)
	s := NewSilencer(u, nil)
	labels := map[string]string{"alertname": "KubePodCrashLooping", "namespace": "shop"}
	for i, v := range []string{"$(touch /tmp/x)", "`id`", "a;b", "a|b", "a && b", strings.Repeat("A", 4096), "abc\u202edcb", `"}]`, "{{ .Labels }}"} {
		labels[fmt.Sprintf("h%d", i)] = v
	}
	ctx := context.Background()
	now := time.Now()
	if _, err := s.Silence(ctx, nil, SilenceSpec{Tool: "silence", Labels: labels, Duration: time.Hour}, now); err == nil {
		t.Fatal("silenced without an allow")
	}
	res, err := s.Silence(ctx, allowed("silence"), SilenceSpec{Tool: "silence", Labels: labels, Duration: time.Hour, Comment: "medic incident 7"}, now)
	if err != nil {
		t.Fatal(err)
	}
	got := getSilence(t, u, res.ID)
	if got.Status.State != "active" || got.Comment != "medic incident 7" || len(got.Matchers) != len(labels) {
		t.Fatalf("%+v", got)
	}
	for _, m := range got.Matchers {
		if m.IsRegex || !m.IsEqual || labels[m.Name] != m.Value {
			t.Errorf("matcher %s=%q, want the exact value %q", m.Name, m.Value, labels[m.Name])
		}
	}
	if err := s.Expire(ctx, allowed("unsilence"), "silence", res.ID); err == nil {
		t.Fatal("expired with another tool's allow")
	}
	if err := s.Expire(ctx, allowed("unsilence"), "unsilence", res.ID); err != nil {
		t.Fatal(err)
	}
	if st := getSilence(t, u, res.ID).Status.State; st != "expired" {
		t.Fatalf("state %s after the rollback", st)
	}
}

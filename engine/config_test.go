package engine

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"medic/rules"
)

func TestExampleConfig(t *testing.T) {
	cfg, diags := LoadConfig("../examples/medic.hcl")
	if diags.HasErrors() {
		var b bytes.Buffer
		rules.WriteDiagnostics(&b, diags)
		t.Fatal(b.String())
	}
	if cfg.Storage.Retention != 30*24*time.Hour || cfg.Storage.Path != filepath.Join("..", "examples", "data", "medic.db") {
		t.Errorf("storage %+v", cfg.Storage)
	}
	if cfg.Web.BearerTokenFile != filepath.Join("..", "examples", "token") {
		t.Errorf("token file %q is not relative to the config file", cfg.Web.BearerTokenFile)
	}
	if cfg.Intake.Limits != DefaultLimits {
		t.Errorf("limits %+v differ from the documented defaults", cfg.Intake.Limits)
	}
	if len(cfg.Intake.Ignore) != len(DefaultIgnore) {
		t.Errorf("ignore %+v", cfg.Intake.Ignore)
	}
}

func TestDefaultConfigWithoutFile(t *testing.T) {
	cfg, diags := LoadConfig("")
	if len(diags) != 0 || cfg.Web.ListenAddress != DefaultListenAddress || cfg.Storage.Path != filepath.Join("data", "medic.db") {
		t.Fatalf("%+v %v", cfg, diags)
	}
}

func TestConfigDiagnostics(t *testing.T) {
	cases := []struct {
		name, src string
		want      []string // file:line:col: summary prefixes, in order
	}{
		{"unknown block", "webb {}\n", []string{"t.hcl:1:1: error: Unsupported block type"}},
		{"unknown attribute", "web {\n  listen = \"x\"\n}\n", []string{"t.hcl:2:3: error: Unsupported argument"}},
		{"wrong type", "intake {\n  max_alerts = \"many\"\n}\n", []string{"t.hcl:2:17: error: Unsuitable value type"}},
		{"bad duration", "storage {\n  retention = \"5 days\"\n}\n", []string{"t.hcl:2:15: error: Invalid duration"}},
		{"negative retention", "storage {\n  retention = \"0s\"\n}\n", []string{"t.hcl:2:15: error: Invalid retention"}},
		{"bad size", "intake {\n  max_body_size = \"lots\"\n}\n", []string{"t.hcl:2:19: error: Invalid size"}},
		{"tiny size", "intake {\n  max_body_size = \"10B\"\n}\n", []string{"t.hcl:2:19: error: Invalid max_body_size"}},
		{"zero limit", "intake {\n  max_labels = 0\n  max_alerts = -1\n}\n", []string{
			"t.hcl:2:16: error: Invalid max_labels", "t.hcl:3:16: error: Invalid max_alerts"}},
		{"bad matcher", "intake {\n  ignore = [\"{alertname=~\\\"(\\\"}\"]\n}\n", []string{"t.hcl:2:12: error: Invalid ignore matcher"}},
		{"empty matcher", "intake {\n  ignore = [\"{}\"]\n}\n", []string{"t.hcl:2:12: error: Invalid ignore matcher"}},
		{"empty group_by", "intake {\n  group_by = []\n}\n", []string{"t.hcl:2:14: error: Invalid group_by"}},
		{"group_by not a label", "intake {\n  group_by = [\"job\", \"a-b\"]\n}\n", []string{"t.hcl:2:14: error: Invalid group_by: Element 1, \"a-b\", is not a label name"}},
		{"group_by ... with names", "intake {\n  group_by = [\"...\", \"job\"]\n}\n", []string{"t.hcl:2:14: error: Invalid group_by"}},
		{"empty listen", "web {\n  listen_address = \"\"\n}\n", []string{"t.hcl:2:20: error: Invalid listen_address"}},
		{"policy limits", "policy_config {\n  storm_limit = 0\n  max_targets_per_hour = -2\n}\n", []string{
			"t.hcl:2:17: error: Invalid storm_limit", "t.hcl:3:26: error: Invalid max_targets_per_hour"}},
		{"peak hours", "policy_config {\n  peak_hours {\n    start = 18\n    end = 9\n    timezone = \"Mars/Olympus\"\n  }\n}\n", []string{
			"t.hcl:4:11: error: Invalid end", "t.hcl:5:16: error: Invalid timezone"}},
		{"syntax", "web {\n  listen_address = \n}\n", []string{"t.hcl:2:20: error: Invalid expression"}},
		{"duplicate block", "web {}\nweb {}\n", []string{"t.hcl:2:1: error: Duplicate web block"}},
		{"bad deadline", "remediation {\n  deadline = \"soon\"\n}\n", []string{"t.hcl:2:14: error: Invalid duration"}},
		{"brief grouping", "escalation {\n  group_by = [\"a b\"]\n  group_wait = \"-1s\"\n  group_interval = \"0s\"\n}\n", []string{
			"t.hcl:2:14: error: Invalid group_by", "t.hcl:3:16: error: Invalid duration", "t.hcl:4:20: error: Invalid duration: group_interval = \"0s\" is not a positive duration"}},
		{"flap count 1", "remediation {\n  flap_count = 1\n}\n", []string{"t.hcl:2:16: error: Invalid flap_count"}},
		{"bad route", "escalation {\n  route {\n    matchers = \"{team=~\\\"(\\\"}\"\n    notify = \"x\"\n  }\n}\n", []string{"t.hcl:3:16: error: Invalid route matchers"}},
		{"bad external url", "escalation {\n  external_url = \"medic:9095\"\n}\n", []string{"t.hcl:2:18: error: Invalid external_url"}},
		{"zero escalations", "escalation {\n  max_escalations_per_hour = 0\n}\n", []string{"t.hcl:2:30: error: Invalid max_escalations_per_hour"}},
		{"bad provider", "llm {\n  provider = \"claude-local\"\n  model = \"m\"\n}\n", []string{"t.hcl:2:14: error: Invalid provider"}},
		{"tiny prompt budget", "llm {\n  provider = \"openai\"\n  model = \"m\"\n  prompt_budget = 10\n}\n", []string{"t.hcl:4:19: error: Invalid prompt_budget"}},
		{"llm confidence", "llm {\n  provider = \"openai\"\n  model = \"m\"\n  min_confidence = 1.5\n}\n", []string{"t.hcl:4:20: error: Invalid min_confidence"}},
		{"variables not strings", "variables = { window = [1] }\n", []string{"t.hcl:1:13: error: Unsuitable value type"}},
		{"tcp systemd bus", "remediation {\n  systemd_bus = \"tcp:host=10.0.0.1,port=1\"\n}\n", []string{"t.hcl:2:17: error: Invalid systemd_bus"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "t.hcl")
			if err := os.WriteFile(p, []byte(tc.src), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg, diags := LoadConfig(p)
			if cfg != nil || !diags.HasErrors() {
				t.Fatalf("accepted: %+v", cfg)
			}
			var b bytes.Buffer
			rules.WriteDiagnostics(&b, diags)
			out := strings.ReplaceAll(b.String(), filepath.Dir(p)+string(filepath.Separator), "")
			var got []string
			for _, line := range strings.Split(out, "\n") {
				if strings.HasPrefix(line, "t.hcl:") {
					got = append(got, line)
				}
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %d diagnostics, want %d:\n%s", len(got), len(tc.want), out)
			}
			for i := range got {
				if !strings.HasPrefix(got[i], tc.want[i]) {
					t.Errorf("diagnostic %d:\n got %s\nwant %s…", i, got[i], tc.want[i])
				}
			}
			if !strings.Contains(out, "|") || !strings.Contains(out, "^") {
				t.Errorf("no source snippet:\n%s", out)
			}
		})
	}
}

func TestCheckExposure(t *testing.T) {
	dir := t.TempDir()
	basic := filepath.Join(dir, "basic.yml")
	// A bcrypt hash, the form exporter-toolkit expects.
	os.WriteFile(basic, []byte("basic_auth_users:\n  am: $2y$10$XkWBsKxF5kLbh5Hh3Yrn9uj3XUJqu5l5dMEtKQbAkAdnOlaYfRCGW\n"), 0o600)
	bad := filepath.Join(dir, "bad.yml")
	os.WriteFile(bad, []byte("tls_server_config:\n  cert_file: /nonexistent\n"), 0o600)
	cases := []struct {
		c    WebConfig
		ok   bool
		auth int
	}{
		{WebConfig{ListenAddress: "127.0.0.1:9095"}, true, 0},
		{WebConfig{ListenAddress: "localhost:9095"}, true, 0},
		{WebConfig{ListenAddress: "[::1]:9095"}, true, 0},
		{WebConfig{ListenAddress: ":9095"}, false, 0},
		{WebConfig{ListenAddress: "0.0.0.0:9095"}, false, 0},
		{WebConfig{ListenAddress: "0.0.0.0:9095", Insecure: true}, true, 0},
		{WebConfig{ListenAddress: "0.0.0.0:9095", BearerTokenFile: "t"}, true, 1},
		{WebConfig{ListenAddress: "0.0.0.0:9095", ConfigFile: basic}, true, 1},
		{WebConfig{ListenAddress: "127.0.0.1:9095", ConfigFile: bad}, false, 0},
		{WebConfig{ListenAddress: "no-port"}, false, 0},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%+v", tc.c), func(t *testing.T) {
			x, err := CheckExposure(tc.c)
			if (err == nil) != tc.ok || (err == nil && len(x.Auth) != tc.auth) {
				t.Fatalf("err %v, auth %v", err, x.Auth)
			}
		})
	}
}

// FuzzParseConfig checks that no medic.hcl crashes the loader, and that a
// config it accepts is usable: positive limits and a listen address.
func FuzzParseConfig(f *testing.F) {
	src, err := os.ReadFile("../examples/medic.hcl")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(src)
	f.Add([]byte("web {}\n"))
	f.Add([]byte("intake { ignore = [\"{a=~\\\"(\\\"}\"] }\n"))
	f.Add([]byte("storage { retention = \"1y\" }\n"))
	f.Add([]byte("intake { max_body_size = \"1GiB\" max_alerts = 9223372036854775807 }\n"))
	f.Add([]byte("llm {\n provider = \"openai\"\n model = \"m\"\n base_url = \"http://127.0.0.1:11434/v1\"\n prompt_budget = 1000\n}\n"))
	f.Add([]byte("escalation {\n route {\n matchers = \"{a=\\\"b\\\"}\"\n notify = \"x\"\n }\n}\n"))
	f.Fuzz(func(t *testing.T, src []byte) {
		cfg, diags := ParseConfig("fuzz.hcl", src)
		if diags.HasErrors() {
			if cfg != nil {
				t.Fatal("config returned with errors")
			}
			return
		}
		l := cfg.Intake.Limits
		if l.MaxBodySize <= 0 || l.MaxAlerts <= 0 || l.MaxLabels <= 0 || l.MaxLabelValueLength <= 0 ||
			l.MaxAnnotationValueLength <= 0 || cfg.Storage.Retention <= 0 || cfg.Web.ListenAddress == "" || cfg.Storage.Path == "" {
			t.Fatalf("accepted an unusable config: %+v", cfg)
		}
	})
}

func TestSourceConfig(t *testing.T) {
	cfg, diags := ParseConfig("/etc/medic/medic.hcl", []byte("prometheus {\n  url = \"https://prom:9090\"\n  http_config_file = \"prom.yml\"\n}\nloki {\n  url = \"http://loki:3100\"\n}\n"))
	if diags.HasErrors() || cfg.Prometheus.URL != "https://prom:9090" || cfg.Prometheus.HTTPConfigFile != "/etc/medic/prom.yml" || cfg.Loki.URL != "http://loki:3100" {
		t.Fatalf("%+v %v", cfg, diags)
	}
	_, diags = ParseConfig("m.hcl", []byte("prometheus {\n  url = \"prom:9090\"\n}\n"))
	if !diags.HasErrors() || diags[0].Subject.Start.Line != 2 || diags[0].Summary != "Invalid url" {
		t.Fatalf("%v", diags)
	}
}

// TestShadowNotifyMustNameANotifyTool: medic check and serve's loader both
// refuse a shadow_notify, an escalation notify or a route's notify that
// names a missing tool or one that is not a notify tool, at the attribute.
func TestShadowNotifyMustNameANotifyTool(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "runbooks.hcl"), []byte(`
tool "record" {
  description = "Records."
  risk        = "low"
  exec { command = ["/bin/true"] }
}
tool "announce" {
  description = "Tells the channel."
  risk        = "low"
  notify {
    channel  = "webhook"
    url_file = "hook"
  }
}
`), 0o600)
	blocks := []string{"remediation {\n  shadow_notify = %q\n}\n", "escalation {\n  notify = %q\n}\n",
		"escalation {\n  route {\n    matchers = \"{a=\\\"b\\\"}\"\n    notify = %q\n  }\n}\n"}
	for i, name := range []string{"announce", "record", "missing", "announce", "record", "missing", "announce", "record", "missing"} {
		ok := name == "announce"
		block := blocks[i/3]
		p := filepath.Join(dir, "medic.hcl")
		os.WriteFile(p, []byte("runbooks = [\"runbooks.hcl\"]\n"+fmt.Sprintf(block, name)), 0o600)
		res := Check([]string{p})
		if res[0].Diags.HasErrors() == ok {
			t.Errorf("check with shadow_notify = %q: %v", name, res[0].Diags)
		}
		if !ok && (res[0].Diags[0].Subject == nil || res[0].Diags[0].Subject.Start.Line < 3) {
			t.Errorf("shadow_notify = %q: diagnostic %v is not at the attribute", name, res[0].Diags[0])
		}
		cfg, diags := LoadConfig(p)
		if diags.HasErrors() {
			t.Fatal(diags)
		}
		if _, diags := NewDecider(cfg, slog.New(slog.DiscardHandler)); diags.HasErrors() == ok {
			t.Errorf("NewDecider with shadow_notify = %q: %v", name, diags)
		}
	}
}

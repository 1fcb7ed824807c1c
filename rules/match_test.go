package rules

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"
)

const matchSrc = `
tool "restart" {
  description = "Restart a deployment."
  risk        = "medium"
  param "namespace" { pattern = "[a-z0-9-]{1,63}" }
  param "deployment" { pattern = "[a-z0-9.-]{1,253}" }
  exec {
    command = ["kubectl", "-n", "${param.namespace}", "rollout", "restart", "deployment/${param.deployment}"]
  }
}

tool "scale" {
  description = "Scale a deployment by a bounded number of replicas."
  risk        = "medium"
  param "namespace" { pattern = "[a-z0-9-]{1,63}" }
  param "deployment" { pattern = "[a-z0-9.-]{1,253}" }
  param "by" {
    type = "int"
    min  = -5
    max  = 5
  }
  exec {
    command = ["medic-k8s", "scale-by", "${param.namespace}", "${param.deployment}", "${param.by}"]
  }
  rollback {
    tool = "scale_back"
    args = { namespace = "${param.namespace}", deployment = "${param.deployment}" }
  }
}

tool "scale_back" {
  description = "Undo the last scale."
  risk        = "low"
  param "namespace" { pattern = "[a-z0-9-]{1,63}" }
  param "deployment" { pattern = "[a-z0-9.-]{1,253}" }
  exec {
    command = ["medic-k8s", "undo-scale", "${param.namespace}", "${param.deployment}"]
  }
}

runbook "crashloop_restart" {
  description = "Crash loop: restart."
  priority    = 1
  matchers = ["alertname=\"KubePodCrashLooping\""]
  target      = "${labels.namespace}/${labels.deployment}"
  when        = "labels.severity == 'critical'"
  confidence  = "0.8"
  step "restart" {
    tool = "restart"
    args = { namespace = "${labels.namespace}", deployment = "${labels.deployment}" }
  }
}

runbook "crashloop_oom" {
  description = "Crash loop caused by OOM."
  priority    = 1
  matchers = ["alertname=\"KubePodCrashLooping\""]
  target      = "${labels.namespace}/${labels.deployment}"
  query "oom" {
    promql = "kube_pod_container_status_last_terminated_reason{reason=\"OOMKilled\",namespace=\"${labels.namespace}\"}"
  }
  when       = "count(query.oom, .value > 0) > 0"
  confidence = "count(query.oom, .value > 0) >= 2 ? 0.95 : 0.6"
  threshold  = 0.7
  step "scale" {
    tool = "scale"
    args = { namespace = "${labels.namespace}", deployment = "${labels.deployment}", by = "1" }
  }
}

runbook "crashloop_any" {
  description = "Any crash loop in prod namespaces: escalate."
  escalate    = true
  matchers = ["namespace=~\"prod-.*\"", "alertname=\"KubePodCrashLooping\""]
}

runbook "latency" {
  description = "Latency."
  priority    = 5
  matchers = ["alertname=~\"High.*Latency\""]
  target      = "${labels.service}"
  step "scale" {
    tool = "scale"
    args = { namespace = "${labels.namespace}", deployment = "${labels.service}", by = "2" }
  }
}
`

func mustParse(t testing.TB, src string) *Set {
	t.Helper()
	set, diags := Parse("match.hcl", []byte(src))
	if diags.HasErrors() {
		var b bytes.Buffer
		WriteDiagnostics(&b, diags)
		t.Fatal(b.String(), diags)
	}
	return set
}

func names(rbs []*Runbook) string {
	var out []string
	for _, rb := range rbs {
		out = append(out, rb.Name)
	}
	return strings.Join(out, ",")
}

func TestCandidates(t *testing.T) {
	set := mustParse(t, matchSrc)
	for _, tc := range []struct {
		labels map[string]string
		want   string
	}{
		{map[string]string{"alertname": "KubePodCrashLooping", "namespace": "shop"}, "crashloop_oom,crashloop_restart"},
		{map[string]string{"alertname": "KubePodCrashLooping", "namespace": "prod-eu"}, "crashloop_any,crashloop_oom,crashloop_restart"},
		{map[string]string{"alertname": "HighP99Latency"}, "latency"},
		{map[string]string{"alertname": "HighP99LatencyX2", "x": "y"}, ""}, // anchored at both ends
		{map[string]string{"alertname": "xHighP99Latency"}, ""},            // match_re is anchored
		{map[string]string{"alertname": "Watchdog"}, ""},
		{map[string]string{}, ""},
	} {
		if got := names(set.Candidates(tc.labels)); got != tc.want {
			t.Errorf("%v: %q, want %q", tc.labels, got, tc.want)
		}
	}
}

func oomEnv(labels map[string]string, oom ...float64) *Env {
	env := &Env{Labels: labels, Query: map[string][]Sample{}, Now: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)}
	var s []Sample
	for _, v := range oom {
		s = append(s, Sample{Labels: map[string]string{"pod": "p"}, Value: v})
	}
	env.Query["oom"] = s
	return env
}

func TestDecide(t *testing.T) {
	set := mustParse(t, matchSrc)
	crit := map[string]string{"alertname": "KubePodCrashLooping", "namespace": "shop", "deployment": "api", "severity": "critical"}
	warn := map[string]string{"alertname": "KubePodCrashLooping", "namespace": "shop", "deployment": "api", "severity": "warning"}

	cases := []struct {
		name       string
		labels     map[string]string
		oom        []float64
		res        *Results
		chosen     string
		confidence float64
		low        string
		altReason  map[string]string
	}{
		{name: "OOM evidence beats the plain restart on confidence", labels: crit, oom: []float64{1, 1}, chosen: "crashloop_oom", confidence: 0.95,
			altReason: map[string]string{"crashloop_restart": "lost to crashloop_oom on confidence (0.80 < 0.95)"}},
		{name: "one OOM: below threshold, restart wins", labels: crit, oom: []float64{1, 0}, chosen: "crashloop_restart", confidence: 0.8, low: "crashloop_oom"},
		{name: "no OOM, not critical: nothing", labels: warn, oom: []float64{0}, chosen: "",
			altReason: map[string]string{"crashloop_oom": "when is false", "crashloop_restart": "when is false"}},
		{name: "query failed: no match, reason kept", labels: crit, res: &Results{Errors: map[string]string{"oom": "context deadline exceeded"}}, chosen: "crashloop_restart", confidence: 0.8,
			altReason: map[string]string{"crashloop_oom": "query oom failed: context deadline exceeded"}},
		{name: "missing label in target", labels: map[string]string{"alertname": "KubePodCrashLooping", "namespace": "shop", "severity": "critical"}, oom: []float64{1, 1}, chosen: "",
			altReason: map[string]string{"crashloop_restart": `target: render match.hcl:45,17-59: labels has no "deployment"`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := oomEnv(tc.labels, tc.oom...)
			if tc.res != nil {
				delete(env.Query, "oom")
			}
			var results map[string]*Results
			if tc.res != nil {
				results = map[string]*Results{"crashloop_oom": tc.res, "crashloop_restart": {Errors: map[string]string{}}}
			}
			d := set.Decide(set.Candidates(tc.labels), env, results)
			got := ""
			if d.Chosen != nil {
				got = d.Chosen.Name
				if d.Chosen.Confidence != tc.confidence || d.Chosen.Target != "shop/api" {
					t.Errorf("chosen %+v", d.Chosen)
				}
			}
			if got != tc.chosen {
				t.Fatalf("chosen %q, want %q (%+v)", got, tc.chosen, d)
			}
			var low []string
			for _, o := range d.LowConfidence {
				low = append(low, o.Name)
			}
			if strings.Join(low, ",") != tc.low {
				t.Errorf("low confidence %v, want %q", low, tc.low)
			}
			for name, reason := range tc.altReason {
				found := false
				for _, o := range d.Alternatives {
					if o.Name == name {
						found = true
						if !strings.HasPrefix(o.Reason, reason) {
							t.Errorf("%s: reason %q, want %q", name, o.Reason, reason)
						}
					}
				}
				if !found {
					t.Errorf("%s not among the alternatives %+v", name, d.Alternatives)
				}
			}
		})
	}
}

func TestDecidePriority(t *testing.T) {
	set := mustParse(t, strings.Replace(matchSrc, "priority    = 1\n  matchers = [\"alertname=\\\"KubePodCrashLooping\\\"\"]\n  target      = \"${labels.namespace}/${labels.deployment}\"\n  when        = \"labels.severity == 'critical'\"",
		"priority    = 9\n  matchers = [\"alertname=\\\"KubePodCrashLooping\\\"\"]\n  target      = \"${labels.namespace}/${labels.deployment}\"\n  when        = \"labels.severity == 'critical'\"", 1))
	labels := map[string]string{"alertname": "KubePodCrashLooping", "namespace": "shop", "deployment": "api", "severity": "critical"}
	d := set.Decide(set.Candidates(labels), oomEnv(labels, 1, 1), nil)
	if d.Chosen == nil || d.Chosen.Name != "crashloop_restart" {
		t.Fatalf("priority did not win: %+v", d)
	}
	if d.Alternatives[0].Reason != "lost to crashloop_restart on priority (1 < 9)" {
		t.Fatalf("reason %q", d.Alternatives[0].Reason)
	}
}

func TestPlan(t *testing.T) {
	set := mustParse(t, matchSrc)
	var oom *Runbook
	for _, rb := range set.Runbooks {
		if rb.Name == "crashloop_oom" {
			oom = rb
		}
	}
	calls, err := set.Plan(oom, Vars{Labels: map[string]string{"namespace": "shop", "deployment": "api"}})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"medic-k8s", "scale-by", "shop", "api", "1"}
	if len(calls) != 1 || strings.Join(calls[0].Argv, " ") != strings.Join(want, " ") || calls[0].Rollback == nil ||
		strings.Join(calls[0].Rollback.Argv, " ") != "medic-k8s undo-scale shop api" {
		t.Fatalf("plan %+v", calls)
	}
}

// TestHostileLabels: whatever an alert's labels hold, a rendered argument
// either passes its parameter's pattern or the plan is rejected, and an argv
// element is never split.
func TestHostileLabels(t *testing.T) {
	set := mustParse(t, matchSrc)
	restart := set.Runbooks[slicesIndex(set.Runbooks, "crashloop_restart")]
	for _, v := range hostileValues {
		calls, err := set.Plan(restart, Vars{Labels: map[string]string{"namespace": v, "deployment": "api"}})
		if err == nil {
			t.Errorf("%q rendered into %q", v, calls[0].Argv)
		}
	}
	// A benign value with a dot renders into exactly one element.
	calls, err := set.Plan(restart, Vars{Labels: map[string]string{"namespace": "shop", "deployment": "api.v2"}})
	if err != nil || len(calls[0].Argv) != 6 || calls[0].Argv[5] != "deployment/api.v2" {
		t.Fatalf("%v %+v", err, calls)
	}
}

var hostileValues = []string{
	"$(reboot)", "`id`", "a;b", "a|b", "a&&b", "a\nb", "a\x00b", "a b", "../../etc", "-n", "--kubeconfig=/tmp/x",
	strings.Repeat("a", 300), "a\u202eb", "a\u2028b", "A", "", "a'b", "a\"b", "${labels.x}", "%{if true}x%{endif}",
	"a\u200bb", "\ufeffa", "a\u00adb", "a\U000e0041b", "a\u2060b",
}

func slicesIndex(rbs []*Runbook, name string) int {
	for i, rb := range rbs {
		if rb.Name == name {
			return i
		}
	}
	return -1
}

func TestParamValidate(t *testing.T) {
	min, max := 1.0, 10.0
	cases := []struct {
		p       Param
		in, out string
		ok      bool
	}{
		{Param{Name: "n", Type: TypeInt, Min: &min, Max: &max}, "5", "5", true},
		{Param{Name: "n", Type: TypeInt, Min: &min, Max: &max}, "11", "", false},
		{Param{Name: "n", Type: TypeInt}, "1e3", "", false},
		{Param{Name: "n", Type: TypeInt}, "0x10", "", false},
		{Param{Name: "f", Type: TypeNumber, Max: &max}, "1.25", "1.25", true},
		{Param{Name: "f", Type: TypeNumber}, "NaN", "", false},
		{Param{Name: "f", Type: TypeNumber}, "Inf", "", false},
		{Param{Name: "b", Type: TypeBool}, "TRUE", "true", true},
		{Param{Name: "b", Type: TypeBool}, "yes", "", false},
		{Param{Name: "d", Type: TypeDuration, Max: &max}, "5s", "5s", true},
		{Param{Name: "d", Type: TypeDuration, Max: &max}, "1m", "", false},
		{Param{Name: "s", Type: TypeString, MaxLength: 3, Enum: []string{"a", "bb"}}, "bb", "bb", true},
		{Param{Name: "s", Type: TypeString, MaxLength: 3, Enum: []string{"a", "bb"}}, "c", "", false},
		{Param{Name: "s", Type: TypeString, MaxLength: 3}, "abcd", "", false},
		{Param{Name: "s", Type: TypeString, MaxLength: 30}, "tab\there", "", false},
	}
	for _, tc := range cases {
		got, err := tc.p.Validate(tc.in)
		if (err == nil) != tc.ok || got != tc.out {
			t.Errorf("%s %q: %q %v", tc.p.Type, tc.in, got, err)
		}
	}
}

func TestFastTemplatesAgreeWithHCL(t *testing.T) {
	set := mustParse(t, matchSrc)
	v := Vars{Labels: map[string]string{"namespace": "shop", "deployment": "api", "service": "web"}, Params: map[string]string{"namespace": "a", "deployment": "b", "by": "1"}}
	n := 0
	check := func(tm *Template) {
		if tm == nil {
			return
		}
		if !tm.isFast {
			t.Errorf("%s is not on the fast path", tm.Range)
		}
		fast, ferr := tm.render(&v)
		slow, serr := tm.Render(v)
		if fast != slow || (ferr == nil) != (serr == nil) {
			t.Errorf("%s: fast %q %v, HCL %q %v", tm.Range, fast, ferr, slow, serr)
		}
		n++
	}
	for _, rb := range set.Runbooks {
		check(rb.Target)
		for _, st := range rb.Steps {
			for _, a := range st.Call.Args {
				check(a)
			}
		}
	}
	for _, tool := range set.Tools {
		for _, a := range tool.Executor.Command {
			check(a)
		}
	}
	if n < 10 {
		t.Fatalf("checked only %d templates", n)
	}
}

// TestHTTPBodyIsEncodedJSON: whatever a permissive parameter lets through,
// the body stays valid JSON holding exactly that string.
func TestHTTPBodyIsEncodedJSON(t *testing.T) {
	set := mustParse(t, `
tool "ticket" {
  description = "Open a ticket."
  risk        = "low"
  param "summary" {
    pattern    = "[^\\x00-\\x1f]{1,300}"
    max_length = 300
  }
  http {
    url           = "https://tickets.example.com/api/${param.summary}"
    method        = "POST"
    headers       = { "X-Source" = "medic" }
    body_json     = { summary = "${param.summary}", kind = "incident" }
    expect_status = [201]
  }
}
runbook "ticket" {
  description = "Open a ticket."
  matchers = ["alertname=\"T\""]
  target = "${labels.s}"
  step "open" {
    tool = "ticket"
    args = { summary = "${labels.s}" }
  }
}
`)
	for _, v := range []string{`"}, "admin": true, "x": {"`, `\"`, "ok", "$(touch /tmp/x)", `</script>`, "日本", "a/../../admin", "x?admin=1&y=2#frag"} {
		calls, err := set.Plan(set.Runbooks[0], Vars{Labels: map[string]string{"s": v}})
		if err != nil {
			t.Fatalf("%q: %v", v, err)
		}
		h := calls[0].HTTP
		var body map[string]string
		if err := json.Unmarshal(h.Body, &body); err != nil || len(body) != 2 || body["summary"] != v || body["kind"] != "incident" {
			t.Fatalf("%q gave body %s (%v)", v, h.Body, err)
		}
		if h.Method != "POST" || h.URL != "https://tickets.example.com/api/"+url.PathEscape(v) || h.Headers["X-Source"] != "medic" || h.ExpectStatus[0] != 201 {
			t.Fatalf("%+v", h)
		}
		if u, err := url.Parse(h.URL); err != nil || u.RawQuery != "" || strings.Count(u.EscapedPath(), "/") != 2 {
			t.Fatalf("%q escaped its segment: %q", v, h.URL)
		}
	}
}

// TestSystemdPlan: a systemd tool's unit renders from its validated
// parameter; a value the parameter refuses never reaches a unit name.
func TestSystemdPlan(t *testing.T) {
	set := mustParse(t, `
tool "restart_unit" {
  description = "Restart a service unit."
  risk        = "medium"
  param "service" { pattern = "[a-z][a-z0-9-]{0,62}" }
  systemd {
    unit   = "${param.service}.service"
    action = "restart"
  }
}
runbook "unit" {
  description = "Restart the unit."
  matchers = ["alertname=\"U\""]
  target = "${labels.service}"
  step "restart" {
    tool = "restart_unit"
    args = { service = "${labels.service}" }
  }
}
`)
	calls, err := set.Plan(set.Runbooks[0], Vars{Labels: map[string]string{"service": "nginx"}})
	if err != nil || calls[0].Unit != "nginx.service" || calls[0].UnitAction != "restart" || calls[0].Argv != nil {
		t.Fatalf("plan = %+v, %v", calls, err)
	}
	for _, v := range []string{"nginx; reboot", "nginx.service x", "../../etc", "-nginx", "$(id)"} {
		if calls, err := set.Plan(set.Runbooks[0], Vars{Labels: map[string]string{"service": v}}); err == nil {
			t.Errorf("%q planned %+v", v, calls)
		}
	}
}

// TestCandidatesIndexAgreesWithMatchers: whatever the index makes of a
// pattern (a set of names, a prefix, literals inside, nothing), the
// candidates are exactly the runbooks whose matchers match.
func TestCandidatesIndexAgreesWithMatchers(t *testing.T) {
	patterns := []string{"A|B|C", "KubePodCrashLooping|KubePodNotReady", "Node.*", ".*Storm.*", ".*Disk(Full|Low)", "(?i)casefree",
		"", "X?", "Kube[A-Z]+Down", "Target(Up|Down)Alert", ".*", "Pre.*Mid.*Post", "(A|B)(C|D)"}
	var src strings.Builder
	src.WriteString("tool \"noop\" {\n  description = \"x\"\n  risk = \"low\"\n  exec { command = [\"/bin/true\"] }\n}\n")
	for i, p := range patterns {
		fmt.Fprintf(&src, "runbook \"rb_%02d\" {\n  description = \"x\"\n  match_re { alertname = %q }\n  target = \"x\"\n  step \"s\" { tool = \"noop\" }\n}\n", i, p)
	}
	set, diags := Parse("i.hcl", []byte(src.String()))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	alertnames := []string{"A", "B", "C", "D", "AC", "BD", "KubePodCrashLooping", "KubePodNotReady", "KubePod", "NodeDown", "Node", "XStormY",
		"Storm", "DiskFull", "MyDiskLow", "DiskFul", "CASEFREE", "casefree", "", "X", "KubeAPIDown", "Kubedown", "TargetUpAlert",
		"TargetSideAlert", "PreXMidYPost", "PreMidPost", "PrePost"}
	for _, name := range alertnames {
		labels := map[string]string{"alertname": name}
		var want []string
		for _, rb := range set.Runbooks {
			if matches(rb, labels) {
				want = append(want, rb.Name)
			}
		}
		if got := names(set.Candidates(labels)); got != strings.Join(want, ",") {
			t.Errorf("%q: candidates %s, want %s", name, got, strings.Join(want, ","))
		}
	}
}

// TestMatchersSyntax: a runbook's matchers are Alertmanager's, all of
// which must match: equality, inequality, regular expressions (anchored)
// and their negation, one per element or several in braces; the
// deprecated match and match_re blocks mean the same and draw a warning.
func TestMatchersSyntax(t *testing.T) {
	const tool = "tool \"noop\" {\n  description = \"x\"\n  risk = \"low\"\n  exec { command = [\"/bin/true\"] }\n}\n"
	rb := func(name, matching string) string {
		return fmt.Sprintf("runbook %q {\n  description = \"x\"\n  %s\n  target = \"x\"\n  step \"s\" { tool = \"noop\" }\n}\n", name, matching)
	}
	set, diags := Parse("m.hcl", []byte(tool+
		rb("each", `matchers = ["alertname=~\"KubePod.*\"", "severity!=\"info\"", "namespace!~\"kube-.*\""]`)+
		rb("braced", `matchers = ["{alertname=\"NodeDown\", job=~\"node|host\"}"]`)+
		rb("not_name", `matchers = ["alertname!=\"Watchdog\"", "team=\"db\""]`)+
		rb("blocks", "match { alertname = \"Legacy\" }\n  match_re { env = \"prod|stage\" }")))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	var warned []string
	for _, d := range diags {
		warned = append(warned, d.Summary)
	}
	if strings.Join(warned, ", ") != "Deprecated match block, Deprecated match_re block" {
		t.Fatalf("warnings %v", warned)
	}
	for _, tc := range []struct {
		labels map[string]string
		want   string
	}{
		{map[string]string{"alertname": "KubePodCrashLooping", "severity": "warning", "namespace": "shop"}, "each"},
		{map[string]string{"alertname": "KubePodCrashLooping", "severity": "info", "namespace": "shop"}, ""},
		{map[string]string{"alertname": "KubePodCrashLooping", "severity": "warning", "namespace": "kube-system"}, ""},
		{map[string]string{"alertname": "XKubePod", "namespace": "shop"}, ""},
		{map[string]string{"alertname": "NodeDown", "job": "host"}, "braced"},
		{map[string]string{"alertname": "NodeDown", "job": "hosts"}, ""},
		{map[string]string{"alertname": "Anything", "team": "db"}, "not_name"},
		{map[string]string{"alertname": "Watchdog", "team": "db"}, ""},
		{map[string]string{"alertname": "Legacy", "env": "stage"}, "blocks"},
		{map[string]string{"alertname": "Legacy", "env": "prod2"}, ""},
	} {
		if got := names(set.Candidates(tc.labels)); got != tc.want {
			t.Errorf("%v: candidates %q, want %q", tc.labels, got, tc.want)
		}
	}
}

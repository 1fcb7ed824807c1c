package actions

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/tester"
)

var noon = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

func base() Input {
	return Input{
		Call:       Call{Tool: "k8s_scale", Type: "exec", Risk: "low", Target: "shop/api", Args: map[string]string{"replicas": "3"}},
		Source:     "runbook",
		Confidence: 0.9,
		Mode:       "auto",
		State:      State{FleetSize: 100, TargetsAffected: 1, ToolRuns: 10, ToolSuccessRate: 1, RunbookSuccessRate: 1},
	}
}

func TestDefaultPolicy(t *testing.T) {
	g, err := NewGate(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		mut    func(*Input)
		now    time.Time
		want   Result
		reason string
	}{
		{name: "plain low-risk call", mut: func(*Input) {}, want: Allow, reason: "every rule passed"},
		{name: "3rd execution in the hour", mut: func(i *Input) { i.State.ExecutionsTargetHour = 2 }, want: Allow},
		{name: "4th execution in the hour", mut: func(i *Input) { i.State.ExecutionsTargetHour = 3 }, want: Deny, reason: "rate limit: 3 executions of k8s_scale on shop/api"},
		{name: "rollback past the rate limit", mut: func(i *Input) { i.State.ExecutionsTargetHour = 5; i.Rollback = true }, want: Allow},
		{name: "configured rate limit", mut: func(i *Input) { i.State.ExecutionsTargetHour = 3; i.Config.MaxPerTargetHour = 5 }, want: Allow},
		{name: "exactly 20% of the fleet", mut: func(i *Input) { i.State.TargetsAffected = 20 }, want: Allow},
		{name: "21% of the fleet", mut: func(i *Input) { i.State.TargetsAffected = 21 }, want: Deny, reason: "blast radius: 21 of 100 targets"},
		{name: "unknown fleet size, 5 targets", mut: func(i *Input) { i.State.FleetSize = 0; i.State.TargetsAffected = 5 }, want: Allow},
		{name: "unknown fleet size, 6 targets", mut: func(i *Input) { i.State.FleetSize = 0; i.State.TargetsAffected = 6 }, want: Deny, reason: "spread: 6 distinct targets"},
		{name: "configured spread", mut: func(i *Input) { i.State.FleetSize = 0; i.State.TargetsAffected = 6; i.Config.MaxTargetsPerHour = 6 }, want: Allow},
		{name: "rollback past the blast radius", mut: func(i *Input) { i.State.TargetsAffected = 50; i.Rollback = true }, want: Allow},
		{name: "high risk", mut: func(i *Input) { i.Call.Risk = "high" }, want: NeedsApproval, reason: "high-risk tools always need approval"},
		{name: "high risk, approved", mut: func(i *Input) { i.Call.Risk = "high"; i.Approved = true }, want: Allow, reason: "approved by a human"},
		{name: "approved does not lift a deny", mut: func(i *Input) { i.Call.Risk = "high"; i.Approved = true; i.State.TargetsAffected = 50 }, want: Deny},
		{name: "medium risk at exactly 0.75", mut: func(i *Input) { i.Call.Risk = "medium"; i.Confidence = 0.75 }, want: Allow},
		{name: "medium risk at 0.74", mut: func(i *Input) { i.Call.Risk = "medium"; i.Confidence = 0.74 }, want: Deny, reason: "confidence 0.74 is below 0.75"},
		{name: "low risk at 0.5", mut: func(i *Input) { i.Confidence = 0.5 }, want: Allow},
		{name: "LLM at 0.85", mut: func(i *Input) { i.Source = "llm"; i.Confidence = 0.85 }, want: Allow},
		{name: "LLM at 0.84", mut: func(i *Input) { i.Source = "llm"; i.Confidence = 0.84 }, want: NeedsApproval, reason: "an LLM proposal with confidence 0.84"},
		{name: "storm brake at 10", mut: func(i *Input) { i.State.ActionsFleet10m = 10 }, want: NeedsApproval, reason: "storm brake: 10 actions"},
		{name: "storm brake at 9", mut: func(i *Input) { i.State.ActionsFleet10m = 9 }, want: Allow},
		{name: "configured storm brake", mut: func(i *Input) { i.State.ActionsFleet10m = 3; i.Config.StormLimit = 3 }, want: NeedsApproval},
		{name: "idempotent repeat", mut: func(i *Input) { i.Idempotency = Idempotency{Key: "shop/api/scale", Repeat: true} }, want: Deny, reason: "idempotent repeat: shop/api/scale"},
		{name: "peak hours, critical", mut: func(i *Input) {
			i.Service.Critical = true
			i.Config.PeakHours = &PeakHours{Start: 9, End: 18, Timezone: "Europe/Berlin"}
		}, want: NeedsApproval, reason: "peak hours"},
		{name: "peak hours end is exclusive", now: time.Date(2026, 11, 26, 17, 0, 0, 0, time.UTC), mut: func(i *Input) {
			i.Service.Critical = true
			i.Config.PeakHours = &PeakHours{Start: 9, End: 18, Timezone: "Europe/Berlin"} // 18:00 in Berlin
		}, want: Allow},
		{name: "peak hours, not critical", mut: func(i *Input) { i.Config.PeakHours = &PeakHours{Start: 9, End: 18, Timezone: "UTC"} }, want: Allow},
		{name: "failing tool demoted", mut: func(i *Input) { i.State.ToolRuns = 10; i.State.ToolSuccessRate = 0.4 }, want: NeedsApproval, reason: "k8s_scale has a recent success rate of 0.4"},
		{name: "too few runs to judge", mut: func(i *Input) { i.State.ToolRuns = 4; i.State.ToolSuccessRate = 0 }, want: Allow},
		{name: "failing runbook demoted", mut: func(i *Input) { i.Runbook = "oom"; i.State.RunbookRuns = 6; i.State.RunbookSuccessRate = 0.33 }, want: NeedsApproval, reason: "runbook oom has a recent success rate of 0.33"},
		{name: "runbook at exactly 0.5", mut: func(i *Input) { i.State.RunbookRuns = 6; i.State.RunbookSuccessRate = 0.5 }, want: Allow},
		{name: "escalation past the rate limit and the storm brake", mut: func(i *Input) {
			i.State.ExecutionsTargetHour = 9
			i.State.ActionsFleet10m = 50
			i.Escalation = true
		}, want: Allow},
		{name: "mode approve", mut: func(i *Input) { i.Mode = "approve" }, want: NeedsApproval, reason: "mode approve"},
		{name: "all denials listed", mut: func(i *Input) { i.State.ExecutionsTargetHour = 3; i.State.TargetsAffected = 30 }, want: Deny, reason: "blast radius"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := base()
			tc.mut(&in)
			now := tc.now
			if now.IsZero() {
				now = noon
			}
			d, allowed := g.Evaluate(context.Background(), in, now)
			if d.Result != tc.want {
				t.Fatalf("%s %v, want %s", d.Result, d.Reasons, tc.want)
			}
			if (allowed != nil) != (tc.want == Allow) {
				t.Fatalf("allowed token %v for %s", allowed, d.Result)
			}
			if tc.reason != "" && !strings.HasPrefix(d.Reasons[0], tc.reason) {
				t.Errorf("reason %q, want %q…", d.Reasons, tc.reason)
			}
			if len(d.Reasons) == 0 {
				t.Error("no reason")
			}
		})
	}
}

// TestRegoUnitTests runs the Rego tests of the default policy, as `opa
// test` would.
func TestRegoUnitTests(t *testing.T) {
	results, err := tester.Run(context.Background(), "default.rego", "testdata/default_test.rego")
	if err != nil {
		t.Fatal(err)
	}
	if len(results) < 5 {
		t.Fatalf("only %d Rego tests ran", len(results))
	}
	for _, r := range results {
		if !r.Pass() {
			t.Errorf("%s", r)
		}
	}
}

// TestUserPolicyReplacesDefault loads a user's policy, and a broken one
// reported at file:row:col with the previous policy kept.
func TestUserPolicyReplacesDefault(t *testing.T) {
	dir := t.TempDir()
	user := filepath.Join(dir, "strict.rego")
	os.WriteFile(user, []byte(`package medic.policy

import rego.v1

decision := {"result": "needs_approval", "reasons": ["everything needs a human here"]}
`), 0o600)
	g, err := NewGate(context.Background(), user)
	if err != nil {
		t.Fatal(err)
	}
	if d, a := g.Evaluate(context.Background(), base(), noon); d.Result != NeedsApproval || a != nil || d.Reasons[0] != "everything needs a human here" {
		t.Fatalf("%+v", d)
	}
	broken := filepath.Join(dir, "broken.rego")
	os.WriteFile(broken, []byte("package medic.policy\n\nimport rego.v1\n\ndecision := {\"result\": x}\n"), 0o600)
	err = g.Load(context.Background(), broken)
	var pe *PolicyError
	if !errors.As(err, &pe) || pe.Errors[0].Row != 5 || !strings.Contains(err.Error(), "broken.rego:5:") {
		t.Fatalf("broken policy: %v", err)
	}
	if d, _ := g.Evaluate(context.Background(), base(), noon); d.Result != NeedsApproval {
		t.Fatalf("the previous policy was not kept: %+v", d)
	}
}

// TestFailClosed: whatever goes wrong in the policy, the call is denied.
func TestFailClosed(t *testing.T) {
	for name, src := range map[string]string{
		"undefined":     "package medic.policy\n\nimport rego.v1\n\ndecision := d if { d := {\"result\": \"allow\", \"reasons\": [\"x\"]}; input.never }\n",
		"wrong type":    "package medic.policy\n\nimport rego.v1\n\ndecision := \"allow\"\n",
		"unknown":       "package medic.policy\n\nimport rego.v1\n\ndecision := {\"result\": \"maybe\", \"reasons\": [\"x\"]}\n",
		"no reasons":    "package medic.policy\n\nimport rego.v1\n\ndecision := {\"result\": \"allow\", \"reasons\": []}\n",
		"builtin error": "package medic.policy\n\nimport rego.v1\n\ndecision := {\"result\": \"allow\", \"reasons\": [sprintf(\"%d\", [to_number(\"x\")])]}\n",
	} {
		t.Run(name, func(t *testing.T) {
			q, err := Prepare(context.Background(), name+".rego", src)
			if err != nil {
				t.Fatal(err)
			}
			g := &Gate{}
			g.query.Store(q)
			d, a := g.Evaluate(context.Background(), base(), noon)
			if d.Result != Deny || a != nil || len(d.Reasons) == 0 {
				t.Fatalf("%+v", d)
			}
		})
	}
	// The network built-ins are not even available.
	_, err := Prepare(context.Background(), "net.rego", "package medic.policy\n\nimport rego.v1\n\ndecision := http.send({\"method\": \"GET\", \"url\": \"http://127.0.0.1/\"})\n")
	if err == nil {
		t.Fatal("http.send compiled")
	}
}

// TestInputValueMatchesJSON keeps the hand-built input in step with the
// documented JSON form of Input.
func TestInputValueMatchesJSON(t *testing.T) {
	in := base()
	in.Runbook, in.Rollback, in.Approved = "rb", true, true
	in.Idempotency = Idempotency{Key: "k", Repeat: true}
	in.Service.Critical = true
	in.Config = PolicyConfig{MaxPerTargetHour: 4, StormLimit: 7, PeakHours: &PeakHours{Start: 8, End: 20, Timezone: "UTC"}}
	for _, v := range []Input{base(), in} {
		want, err := ast.InterfaceToValue(v)
		if err != nil {
			t.Fatal(err)
		}
		if got := v.value(); got.Compare(want) != 0 {
			t.Fatalf("hand-built input differs:\n got %v\nwant %v", got, want)
		}
	}
}

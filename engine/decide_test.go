package engine

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/prometheus/alertmanager/template"

	"medic/actions"
	"medic/rules"
)

const decideRunbooks = `
tool "restart" {
  description = "Restart."
  risk        = "medium"
  param "name" { pattern = "[a-z]+" }
  exec { command = ["/bin/true", "${param.name}"] }
}
tool "wipe" {
  description = "High risk."
  risk        = "high"
  param "name" { pattern = "[a-z]+" }
  exec { command = ["/bin/true", "${param.name}"] }
}
runbook "restart" {
  description = "Restart."
  matchers = ["alertname=\"Crash\""]
  target     = "${labels.name}"
  confidence = "labels.sure == 'yes' ? 0.9 : 0.7"
  threshold  = 0.5
  step "restart" {
    tool = "restart"
    args = { name = "${labels.name}" }
  }
}
runbook "wipe" {
  description = "Wipe."
  matchers = ["alertname=\"Disk\""]
  target = "${labels.name}"
  step "wipe" {
    tool = "wipe"
    args = { name = "${labels.name}" }
  }
}
`

func TestDecider(t *testing.T) {
	set, diags := rules.Parse("d.hcl", []byte(decideRunbooks))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	gate, err := actions.NewGate(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	d := &Decider{Config: DefaultConfig(), Rules: set, Gate: gate}
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name   string
		alerts []testAlert
		want   string
	}{
		{"confident medium-risk", []testAlert{withLabels(alert("firing", "Crash", fp(1)), "name", "api", "sure", "yes")}, DecisionRemediate},
		{"medium-risk below 0.75 is denied", []testAlert{withLabels(alert("firing", "Crash", fp(1)), "name", "api")}, DecisionReject},
		{"high risk waits for approval", []testAlert{withLabels(alert("firing", "Disk", fp(2)), "name", "db")}, DecisionApprove},
		{"invalid argument", []testAlert{withLabels(alert("firing", "Crash", fp(1)), "name", "API", "sure", "yes")}, DecisionReject},
		{"resolved", []testAlert{withLabels(alert("resolved", "Crash", fp(1)), "name", "api")}, DecisionIgnore},
		{"no runbook", []testAlert{alert("firing", "Other", fp(3))}, DecisionEscalate},
		{"the most involved alert speaks", []testAlert{alert("firing", "Watchdog", fp(4)), withLabels(alert("firing", "Disk", fp(2)), "name", "db")}, DecisionApprove},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := d.DecidePayload(context.Background(), payload(tc.alerts...), now)
			if tr.Decision != tc.want {
				b, _ := json.MarshalIndent(tr, "", "  ")
				t.Fatalf("%s, want %s\n%s", tr.Decision, tc.want, b)
			}
		})
	}
}

// TestReplayRejectsLikeTheIntake: a payload the intake refuses gives reject
// with the very text the HTTP intake answers.
func TestReplayRejectsLikeTheIntake(t *testing.T) {
	env := newTestEnv(t, nil)
	d := &Decider{Config: env.eng.Config()}
	for _, body := range [][]byte{
		[]byte(`{"version":"3"}`),
		mutateAlert(func(a *testAlert) { a.Labels["pod"] = "x\x1b[2J" }),
		[]byte(`not json`),
	} {
		rec := env.post(body)
		var eb errorBody
		json.Unmarshal(rec.Body.Bytes(), &eb)
		tr := d.DecidePayload(context.Background(), body, time.Now())
		if tr.Decision != DecisionReject || tr.Error != eb.Error || tr.Field != eb.Field {
			t.Fatalf("replay %q/%q, intake %q/%q", tr.Error, tr.Field, eb.Error, eb.Field)
		}
	}
}

func withLabels(a testAlert, kv ...string) testAlert {
	l := map[string]string{}
	for k, v := range a.Labels {
		l[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		l[kv[i]] = kv[i+1]
	}
	a.Labels = l
	return a
}

// BenchmarkDecide is the whole decision for one alert, from its labels to
// a policy-checked call, with the shipped runbooks and the default policy,
// excluding fsync (nothing is written).
func BenchmarkDecide(b *testing.B) {
	set, diags := rules.Load("../runbooks.hcl")
	if diags.HasErrors() {
		b.Fatal(diags)
	}
	gate, err := actions.NewGate(context.Background(), "")
	if err != nil {
		b.Fatal(err)
	}
	d := &Decider{Config: DefaultConfig(), Rules: set, Gate: gate}
	alert := template.Alert{Status: "firing", Labels: template.KV{"alertname": "CertManagerCertExpirySoon", "exported_namespace": "shop", "name": "shop-tls"},
		StartsAt: time.Now().Add(-time.Minute), Fingerprint: "0123456789abcdef"}
	now := time.Now()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if at := d.DecideAlert(ctx, &alert, now); at.Decision != DecisionRemediate {
			b.Fatal(at)
		}
	}
}

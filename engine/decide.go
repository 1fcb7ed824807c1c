package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/prometheus/alertmanager/notify/webhook"
	"github.com/prometheus/alertmanager/template"

	"medic/actions"
	"medic/llm"
	"medic/rules"
	"medic/state"
)

// The decisions, from the least to the most involved.
const (
	DecisionIgnore    = "ignore"
	DecisionEscalate  = "escalate"
	DecisionRemediate = "remediate"
	DecisionApprove   = "approve"
	DecisionReject    = "reject"
)

// Decider runs the decision path for one notification: ignore rules,
// matching, enrichment, the choice between runbooks, rendering and the
// policy gate. It executes nothing; `medic replay` prints what it returns,
// and the daemon will act on it.
type Decider struct {
	Config  *Config
	Rules   *rules.Set
	Gate    *actions.Gate
	Sources rules.Sources
	// QueryStubs replace the results of promql queries by query name, in
	// every runbook; `medic test` uses them.
	QueryStubs map[string][]rules.Sample
	// Counts fills in the policy input's counts for a call of the
	// alert's plan from medic's state; nil leaves zeros, as replay, which
	// reads no state, does.
	Counts func(in *actions.Input, q state.CountQuery)
	// RunbookState gives the policy a runbook's recent success rate and
	// the number of outcomes it counts; nil gives a clean record.
	RunbookState func(runbook string) (float64, int)
	// History is what the conditions see of the incident; tests set it.
	History *rules.History
	// Host is what the conditions see of the machine medic runs on.
	Host rules.Host
	// LLM, when set, diagnoses what no runbook covers or what one matches
	// below its threshold.
	LLM *llm.Client
	// Similar finds closed incidents like the alert, for the LLM's
	// context; nil finds none, as replay does.
	Similar func(labels map[string]string) []llm.Past
	// OnProposal counts what became of each LLM proposal.
	OnProposal func(result string)
	// Silencer creates silences in the configured Alertmanager; nil when
	// none is configured.
	Silencer *actions.Silencer
}

// Trace is the decision for one notification, with the reasons for every
// step. Its JSON form is what `medic replay --output json` prints.
type Trace struct {
	Decision string       `json:"decision"`
	Error    string       `json:"error,omitempty"`
	Field    string       `json:"field,omitempty"`
	Alerts   []AlertTrace `json:"alerts,omitempty"`
}

// AlertTrace is the decision for one alert.
type AlertTrace struct {
	Fingerprint   string          `json:"fingerprint"`
	Alertname     string          `json:"alertname"`
	Decision      string          `json:"decision"`
	Reason        string          `json:"reason,omitempty"`
	Runbook       string          `json:"runbook,omitempty"`
	Confidence    float64         `json:"confidence,omitempty"`
	Target        string          `json:"target,omitempty"`
	Considered    []rules.Outcome `json:"considered,omitempty"`
	LowConfidence []rules.Outcome `json:"low_confidence,omitempty"`
	Calls         []CallTrace     `json:"calls,omitempty"`
	// Verify is the chosen runbook's verify block, for tests to evaluate.
	Verify       *rules.Verify `json:"-"`
	Queries      int           `json:"queries"`
	EnrichMillis float64       `json:"enrichment_ms"`
	// Enrichment summarises what the queries of the chosen runbook, or of
	// every candidate when none was chosen, returned.
	Enrichment map[string]string `json:"enrichment,omitempty"`
	// Source is "llm" for a plan the LLM proposed; empty for a runbook's.
	Source string `json:"source,omitempty"`
	// LLM is the LLM step, when there was one.
	LLM *LLMTrace `json:"llm,omitempty"`
	// Critical is the chosen runbook's critical condition for the alert.
	Critical bool `json:"critical,omitempty"`
	// Group names the fleet the target belongs to; FleetSize is its size
	// from the runbook's blast_radius query, 0 when unknown, and
	// FleetError says why it is unknown.
	Group      string `json:"group,omitempty"`
	FleetSize  int    `json:"fleet_size,omitempty"`
	FleetError string `json:"fleet_error,omitempty"`
}

// CallTrace is one planned call and the policy's verdict on it.
type CallTrace struct {
	rules.PlannedCall
	Policy         actions.Decision  `json:"policy"`
	RollbackPolicy *actions.Decision `json:"rollback_policy,omitempty"`
}

// rank orders decisions for a notification with several alerts: the most
// involved one speaks for the notification.
var rank = map[string]int{DecisionIgnore: 0, DecisionEscalate: 1, DecisionRemediate: 2, DecisionApprove: 3, DecisionReject: 4}

// DecidePayload validates a webhook body exactly as the intake does and
// decides each alert. A body the intake would refuse gives reject with the
// intake's error text.
func (d *Decider) DecidePayload(ctx context.Context, body []byte, now time.Time) Trace {
	m, err := DecodeNotification(body, d.Config.Intake.Limits, now)
	if err != nil {
		t := Trace{Decision: DecisionReject, Error: err.Error()}
		var ie *IntakeError
		if errors.As(err, &ie) {
			t.Field = ie.Field
		}
		return t
	}
	return d.DecideMessage(ctx, m, now)
}

// DecideMessage decides every alert of a validated notification.
func (d *Decider) DecideMessage(ctx context.Context, m *webhook.Message, now time.Time) Trace {
	t := Trace{Decision: DecisionIgnore}
	for i := range m.Alerts {
		at := d.DecideAlert(ctx, &m.Alerts[i], now)
		if rank[at.Decision] > rank[t.Decision] {
			t.Decision = at.Decision
		}
		t.Alerts = append(t.Alerts, at)
	}
	return t
}

// DecideAlert decides one alert; see DecidePayload.
func (d *Decider) DecideAlert(ctx context.Context, a *template.Alert, now time.Time) AlertTrace {
	at := AlertTrace{Fingerprint: a.Fingerprint, Alertname: a.Labels["alertname"]}
	if rule := ignoredBy(d.Config.Intake.Ignore, a.Labels); rule != "" {
		at.Decision, at.Reason = DecisionIgnore, "ignored by "+rule
		return at
	}
	if a.Status == "resolved" {
		at.Decision, at.Reason = DecisionIgnore, "resolved: closes its incident"
		return at
	}
	cands := d.Rules.Candidates(a.Labels)
	if len(cands) == 0 {
		at.Decision, at.Reason = DecisionEscalate, "no runbook matches"
		if d.LLM != nil {
			d.consultLLM(ctx, a, &at, nil, now)
		}
		return at
	}
	vars := rules.Vars{Labels: a.Labels, Annotations: a.Annotations, Var: d.Rules.Var}
	enr := d.Rules.Enrich(ctx, cands, vars, d.Sources, now)
	for _, rb := range cands {
		for _, q := range rb.Queries {
			if stub, ok := d.QueryStubs[q.Name]; ok && q.Kind == rules.QueryPromQL {
				res := enr.Results[rb.Name]
				res.Query[q.Name] = stub
				delete(res.Errors, q.Name)
			}
		}
	}
	at.Queries, at.EnrichMillis = enr.Queries, float64(enr.Duration.Microseconds())/1000
	env := &rules.Env{Labels: a.Labels, Annotations: a.Annotations, Now: now, Host: d.Host,
		Incident: rules.History{Alerts: 1, Firing: now.Sub(a.StartsAt)}}
	if d.History != nil {
		env.Incident = *d.History
	}
	dec := d.Rules.Decide(cands, env, enr.Results)
	at.Considered, at.LowConfidence = dec.Alternatives, dec.LowConfidence
	if dec.Chosen != nil {
		at.Enrichment = summarise(enr.Results[dec.Chosen.Runbook.Name])
	} else {
		for _, rb := range cands {
			for k, v := range summarise(enr.Results[rb.Name]) {
				if at.Enrichment == nil {
					at.Enrichment = map[string]string{}
				}
				at.Enrichment[rb.Name+"."+k] = v
			}
		}
	}
	if dec.Chosen == nil {
		at.Decision = DecisionEscalate
		at.Reason = "no runbook matched"
		if len(dec.LowConfidence) > 0 {
			at.Reason = fmt.Sprintf("%s matched with confidence %.2f, below its threshold", dec.LowConfidence[0].Name, dec.LowConfidence[0].Confidence)
		}
		if d.LLM != nil {
			d.consultLLM(ctx, a, &at, append(append([]rules.Outcome{}, dec.LowConfidence...), dec.Alternatives...), now)
		}
		return at
	}
	rb := dec.Chosen.Runbook
	at.Runbook, at.Confidence, at.Target = rb.Name, dec.Chosen.Confidence, dec.Chosen.Target
	var err error
	if rb.Escalate {
		at.Decision, at.Reason = DecisionEscalate, "escalate-only runbook"
		return at
	}
	if at.Critical, err = rb.IsCritical(env, enr.Results[rb.Name]); err != nil {
		// Failing closed: a service that cannot be judged is treated as
		// critical.
		at.Critical = true
	}
	d.blastRadius(ctx, rb, vars, &at, now)
	vars.Query = enr.Results[rb.Name].Query
	calls, err := d.Rules.Plan(rb, vars)
	if err != nil {
		at.Decision, at.Reason = DecisionReject, err.Error()
		return at
	}
	at.Decision = DecisionRemediate
	at.Verify = rb.Verify
	for _, c := range calls {
		ct := CallTrace{PlannedCall: c}
		in := d.PolicyInput(c, &at, rb)
		ct.Policy, _ = d.Gate.Evaluate(ctx, in, now)
		switch ct.Policy.Result {
		case actions.Deny:
			at.Decision = DecisionReject
			at.Reason = fmt.Sprintf("policy denied %s: %s", c.Tool, ct.Policy.Reasons[0])
		case actions.NeedsApproval:
			if at.Decision == DecisionRemediate {
				at.Decision = DecisionApprove
				at.Reason = fmt.Sprintf("%s needs approval: %s", c.Tool, ct.Policy.Reasons[0])
			}
		}
		if c.Rollback != nil {
			rin := d.PolicyInput(*c.Rollback, &at, rb)
			rin.Rollback = true
			rd, _ := d.Gate.Evaluate(ctx, rin, now)
			ct.RollbackPolicy = &rd
		}
		at.Calls = append(at.Calls, ct)
	}
	return at
}

// PolicyInput is the policy's input for a planned call of rb on the alert's
// target, with the counts from State.
func (d *Decider) PolicyInput(c rules.PlannedCall, at *AlertTrace, rb *rules.Runbook) actions.Input {
	source := "runbook"
	if at.Source != "" {
		source = at.Source
	}
	// A tool a reload removed has no kind; the call still gets a verdict.
	tool := d.Rules.Tool(c.Tool)
	kind := ""
	if tool != nil {
		kind = string(tool.Executor.Kind)
	}
	in := actions.Input{
		Call:        actions.Call{Tool: c.Tool, Type: kind, Args: c.Args, Risk: string(c.Risk), Target: at.Target},
		Source:      source,
		Runbook:     rb.Name,
		Confidence:  at.Confidence,
		Mode:        string(rb.Mode),
		Service:     actions.Service{Critical: at.Critical},
		Idempotency: actions.Idempotency{Key: c.IdempotencyKey},
		Config:      d.Config.PolicyConfig,
	}
	in.State.FleetSize = at.FleetSize
	if d.Counts != nil {
		q := state.CountQuery{Tool: c.Tool, Target: at.Target, Group: at.Group, IdempotencyKey: c.IdempotencyKey}
		if tool != nil {
			q.IdempotencyWindow = tool.IdempotencyWindow
		}
		d.Counts(&in, q)
	}
	in.State.RunbookSuccessRate = 1
	if d.RunbookState != nil {
		in.State.RunbookSuccessRate, in.State.RunbookRuns = d.RunbookState(rb.Name)
	}
	return in
}

// blastRadius names the fleet of the alert's target and measures its size
// with the runbook's blast_radius query. A fleet that cannot be measured
// stays unknown (0), with the reason; the policy then bounds the spread by
// count.
func (d *Decider) blastRadius(ctx context.Context, rb *rules.Runbook, vars rules.Vars, at *AlertTrace, now time.Time) {
	at.Group = rb.Name
	br := rb.BlastRadius
	if br == nil {
		return
	}
	if br.Group != nil {
		g, err := br.Group.Render(vars)
		if err != nil {
			at.FleetError = err.Error()
			return
		}
		at.Group = rb.Name + "/" + g
	}
	q, err := br.Fleet.RenderQuery(vars)
	if err != nil {
		at.FleetError = err.Error()
		return
	}
	if d.Sources.Prom == nil {
		at.FleetError = "no Prometheus configured"
		return
	}
	ctx, cancel := context.WithTimeout(ctx, br.Timeout)
	defer cancel()
	samples, err := d.Sources.Prom.Query(ctx, q, now)
	if err != nil {
		at.FleetError = err.Error()
		return
	}
	sum := 0.0
	for _, s := range samples {
		sum += s.Value
	}
	if len(samples) == 0 || sum < 1 || sum > math.MaxInt32 {
		at.FleetError = fmt.Sprintf("%s gave no fleet size (%d series, sum %v)", q, len(samples), sum)
		return
	}
	at.FleetSize = int(sum)
}

// NewDecider loads the runbooks and the policy cfg names and connects its
// query sources: the decision path serve, replay and test share. When cfg
// names no runbooks, a missing default runbooks.hcl means no runbooks, so
// that serve starts with no file at all; named files must exist.
func NewDecider(cfg *Config, logger *slog.Logger) (*Decider, hcl.Diagnostics) {
	files := cfg.Runbooks
	if !cfg.RunbooksSet {
		if _, err := os.Stat(files[0]); os.IsNotExist(err) {
			files = nil
		}
	}
	var set *rules.Set
	var diags hcl.Diagnostics
	if len(files) == 0 {
		set, _ = rules.Parse("(no runbooks)", nil)
		logger.Warn("no runbook file: every incident escalates", "file", cfg.Runbooks[0])
	} else if set, diags = rules.Load(files...); diags.HasErrors() {
		return nil, diags
	}
	if d := overrideVariables(cfg, set); d.HasErrors() {
		return nil, append(diags, d...)
	}
	if d := checkNotifyTools(cfg, set); d.HasErrors() {
		return nil, append(diags, d...)
	}
	gate, err := actions.NewGate(context.Background(), cfg.Policy)
	if err != nil {
		return nil, append(diags, policyDiags(cfg.Policy, err)...)
	}
	d := &Decider{Config: cfg, Rules: set, Gate: gate, Host: localHost()}
	if cfg.Prometheus.URL != "" {
		if d.Sources.Prom, err = NewPromClient(cfg.Prometheus); err != nil {
			return nil, append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid prometheus", Detail: err.Error()})
		}
	}
	if cfg.LLM.Provider != "" {
		if d.LLM, err = NewLLMClient(cfg.LLM); err != nil {
			return nil, append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid llm", Detail: err.Error()})
		}
	}
	if cfg.Alertmanager.URL != "" {
		if d.Silencer, err = NewSilencer(cfg.Alertmanager); err != nil {
			return nil, append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid alertmanager", Detail: err.Error()})
		}
	}
	if cfg.Loki.URL != "" {
		if d.Sources.Logs, err = NewLokiClient(cfg.Loki); err != nil {
			return nil, append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid loki", Detail: err.Error()})
		}
	}
	return d, diags
}

// checkNotifyTools reports a shadow_notify, an escalation notify or a
// route's notify that names no notify tool of the runbooks.
func checkNotifyTools(cfg *Config, set *rules.Set) hcl.Diagnostics {
	refs := []struct {
		key, name string
		r         hcl.Range
	}{{"shadow_notify", cfg.Remediation.ShadowNotify, cfg.Remediation.ShadowNotifyRange}, {"notify", cfg.Escalation.Notify, cfg.Escalation.NotifyRange}}
	for _, rt := range cfg.Escalation.Routes {
		refs = append(refs, struct {
			key, name string
			r         hcl.Range
		}{"route notify", rt.Notify, rt.NotifyRange})
	}
	var diags hcl.Diagnostics
	for _, ref := range refs {
		if ref.name == "" {
			continue
		}
		if t := set.Tool(ref.name); t == nil || t.Executor.Kind != rules.NotifyKind {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid " + ref.key,
				Detail:  fmt.Sprintf("%s = %q must name a notify tool of the runbooks.", ref.key, ref.name),
				Subject: ref.r.Ptr()})
		}
	}
	return diags
}

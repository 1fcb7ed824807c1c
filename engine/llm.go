package engine

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/alertmanager/template"

	"medic/actions"
	"medic/llm"
	"medic/rules"
)

// LLMRunbook is the runbook name under which a proposal of the LLM runs:
// auto mode, one attempt, no verification of its own.
const LLMRunbook = "llm"

var llmRunbook = &rules.Runbook{Name: LLMRunbook, Description: "A tool call the LLM proposed.", Mode: rules.ModeAuto, MaxAttempts: 1}

// runbook resolves a trace's runbook name, the LLM's included.
func (d *Decider) runbook(name string) *rules.Runbook {
	if name == LLMRunbook {
		return llmRunbook
	}
	return d.Rules.Runbook(name)
}

// The results of medic_llm_proposals_total.
const (
	proposalAccepted      = "accepted"
	proposalInvalidTool   = "invalid_tool"
	proposalInvalidArgs   = "invalid_args"
	proposalUnknownTarget = "unknown_target"
	proposalLowConfidence = "low_confidence"
	proposalDenied        = "denied_by_policy"
)

// NewLLMClient builds the client medic.hcl's llm block describes, reading
// the API key now.
func NewLLMClient(c LLMConfig) (*llm.Client, error) {
	key := ""
	switch {
	case c.APIKeyFile != "":
		k, err := ReadToken(c.APIKeyFile)
		if err != nil {
			return nil, fmt.Errorf("api_key_file: %w", err)
		}
		key = k
	case c.APIKeyEnv != "":
		key = os.Getenv(c.APIKeyEnv)
		if key == "" {
			return nil, fmt.Errorf("api_key_env: $%s is empty", c.APIKeyEnv)
		}
	}
	var p llm.Provider
	switch c.Provider {
	case "gemini":
		if key == "" {
			return nil, errors.New("the gemini provider needs api_key_file or api_key_env")
		}
		g, err := llm.NewGemini(context.Background(), key, c.BaseURL, nil)
		if err != nil {
			return nil, err
		}
		p = g
	case "openai":
		// Self-hosted runtimes (Ollama, vLLM, llama.cpp, LM Studio) often
		// take no key.
		p = llm.NewOpenAI(key, c.BaseURL, nil)
	default:
		return nil, fmt.Errorf("unknown provider %q", c.Provider)
	}
	return &llm.Client{Provider: p, Model: c.Model, FastModel: c.FastModel, Timeout: c.Timeout, Retries: c.Retries,
		Budget: c.PromptBudget, MaxOutputTokens: c.MaxOutputTokens, DailyCap: c.DailyTokenCap}, nil
}

// LLMTrace is what the LLM step did, in the decision trace and so in the
// audit log: the prompt and the raw reply verbatim, the tokens, the
// diagnosis, and what became of its proposal.
type LLMTrace struct {
	Exchange  llm.Exchange   `json:"exchange"`
	Diagnosis *llm.Diagnosis `json:"diagnosis,omitempty"`
	// Result is accepted, invalid_tool, invalid_args, unknown_target,
	// low_confidence, denied_by_policy, no_proposal or error.
	Result string `json:"result"`
	Reason string `json:"reason,omitempty"`
}

// consultLLM asks the model about an alert no runbook took. The trace ends
// as an escalation, unless a valid proposal passes the policy: then it is a
// plan of one call, with source "llm", which the remediator runs like a
// runbook's.
func (d *Decider) consultLLM(ctx context.Context, a *template.Alert, at *AlertTrace, outcomes []rules.Outcome, now time.Time) {
	inc := llm.Incident{Alerts: []llm.Alert{{Labels: a.Labels, Annotations: a.Annotations, StartsAt: a.StartsAt.UTC().Format("2006-01-02T15:04:05Z")}},
		Enrichment: at.Enrichment}
	for _, o := range outcomes {
		inc.NearMisses = append(inc.NearMisses, llm.NearMiss{Runbook: o.Name, Confidence: o.Confidence, Why: o.Reason})
	}
	for _, name := range slices.Sorted(maps.Keys(d.Rules.Tools)) {
		t := d.Rules.Tools[name]
		if !t.LLM {
			continue
		}
		lt := llm.Tool{Name: t.Name, Description: t.Description, Risk: string(t.Risk)}
		for _, p := range t.Params {
			lp := llm.Param{Name: p.Name, Enum: p.Enum, Optional: p.Optional || p.Default != nil}
			if p.Pattern != nil {
				lp.Pattern = p.Pattern.String()
			}
			lt.Params = append(lt.Params, lp)
		}
		inc.Tools = append(inc.Tools, lt)
	}
	if d.Similar != nil {
		inc.Similar = d.Similar(a.Labels)
	}
	diag, ex, err := d.LLM.Diagnose(ctx, inc)
	tr := &LLMTrace{Exchange: ex, Diagnosis: diag}
	at.LLM = tr
	at.Decision = DecisionEscalate
	escalate := func(result, reason string) {
		tr.Result, tr.Reason = result, reason
		at.Reason = "LLM: " + reason
		if d.OnProposal != nil && result != "error" && result != "no_proposal" {
			d.OnProposal(result)
		}
	}
	if err != nil {
		escalate("error", fmt.Sprintf("no diagnosis: %v", err))
		return
	}
	min := d.Config.LLM.MinConfidence
	if diag.Confidence < min {
		escalate(proposalLowConfidence, fmt.Sprintf("confidence %.2f is below %.2f; hypothesis: %s", diag.Confidence, min, diag.RootCause))
		return
	}
	if diag.Proposal == nil {
		escalate("no_proposal", "no tool fits; hypothesis: "+diag.RootCause)
		return
	}
	prop := diag.Proposal
	tool := d.Rules.Tool(prop.Tool)
	if tool == nil || !tool.LLM {
		why := "is not registered"
		if tool != nil {
			why = "has llm = false"
		}
		escalate(proposalInvalidTool, fmt.Sprintf("proposed tool %s, which %s", rules.Quote(prop.Tool), why))
		return
	}
	args := map[string]string{}
	for _, arg := range prop.Args {
		if _, dup := args[arg.Name]; dup {
			escalate(proposalInvalidArgs, fmt.Sprintf("argument %s given twice", rules.Quote(arg.Name)))
			return
		}
		args[arg.Name] = arg.Value
	}
	call, err := d.Rules.PlanTool(prop.Tool, args)
	if err != nil {
		escalate(proposalInvalidArgs, err.Error())
		return
	}
	target, err := llmTarget(tool, call.Args, a.Labels)
	if err != nil {
		escalate(proposalUnknownTarget, err.Error())
		return
	}
	call.Step = "llm_proposal"
	at.Runbook, at.Confidence, at.Target, at.Source = LLMRunbook, diag.Confidence, target, "llm"
	ct := CallTrace{PlannedCall: call}
	ct.Policy, _ = d.Gate.Evaluate(ctx, d.PolicyInput(call, at, llmRunbook), now)
	at.Calls = []CallTrace{ct}
	switch ct.Policy.Result {
	case actions.Deny:
		at.Decision = DecisionReject
		escalate(proposalDenied, fmt.Sprintf("the policy denied %s: %s", call.Tool, ct.Policy.Reasons[0]))
		return
	case actions.NeedsApproval:
		at.Decision, at.Reason = DecisionApprove, fmt.Sprintf("LLM proposal %s needs approval: %s", call.Tool, ct.Policy.Reasons[0])
	default:
		at.Decision, at.Reason = DecisionRemediate, fmt.Sprintf("LLM proposal %s, confidence %.2f: %s", call.Tool, diag.Confidence, diag.RootCause)
	}
	tr.Result = proposalAccepted
	if d.OnProposal != nil {
		d.OnProposal(proposalAccepted)
	}
}

var numeric = regexp.MustCompile(`^-?[0-9]+(\.[0-9]+)?$`)

// llmTarget checks that every identifier the proposal names occurs in the
// alert's own labels, so that a hallucinated namespace or deployment is
// refused. Values of enum parameters (a closed set the tool author wrote)
// and numbers are not identifiers. The identifiers, in parameter order,
// make the target.
func llmTarget(t *rules.Tool, args map[string]string, labels map[string]string) (string, error) {
	known := map[string]bool{}
	for _, v := range labels {
		known[v] = true
	}
	var ids []string
	for _, p := range t.Params {
		v, ok := args[p.Name]
		if !ok || len(p.Enum) > 0 || numeric.MatchString(v) {
			continue
		}
		if !known[v] {
			return "", fmt.Errorf("argument %s = %s names something absent from the alert's labels", p.Name, rules.Quote(v))
		}
		ids = append(ids, v)
	}
	if len(ids) == 0 {
		return "", errors.New("the proposal names no target from the alert's labels")
	}
	return strings.Join(ids, "/"), nil
}

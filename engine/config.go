package engine

import (
	"fmt"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/alecthomas/units"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/prometheus/alertmanager/pkg/labels"
	"github.com/prometheus/common/model"

	"medic/actions"
	"medic/rules"
)

// DefaultListenAddress is loopback-only on purpose: with no auth configured,
// medic must not be reachable from other hosts.
const DefaultListenAddress = "127.0.0.1:9095"

// Config is medic's resolved daemon configuration: the file's values over
// the defaults, with relative paths made relative to the file's directory.
type Config struct {
	// File is the path the config was loaded from; empty for defaults.
	File string
	// Runbooks lists the runbook files, as paths or globs.
	Runbooks []string
	// RunbooksSet says the file named them; the default runbooks.hcl may
	// be missing, named ones may not.
	RunbooksSet bool
	// Variables override the defaults of the runbook files' variables.
	Variables      map[string]string
	VariablesRange hcl.Range
	Web            WebConfig
	Storage        StorageConfig
	Intake         IntakeConfig
	// Prometheus and Loki serve the runbooks' enrichment queries; an empty
	// URL leaves the source out, and queries of its kind then fail.
	Prometheus SourceConfig
	Loki       SourceConfig
	// Alertmanager is where silence tools create silences.
	Alertmanager SourceConfig
	// Policy is a .rego file that replaces the default policy.
	Policy string
	// PolicyConfig is the policy's tunables, input.config: the limits and
	// the peak hours. Zero values leave the policy's own defaults.
	PolicyConfig actions.PolicyConfig
	Remediation  RemediationConfig
	Escalation   EscalationConfig
	// LLM, when Provider is set, diagnoses what no runbook covers.
	LLM LLMConfig
}

// LLMConfig configures the LLM fallback.
type LLMConfig struct {
	// Provider is gemini or openai (any OpenAI-compatible API).
	Provider  string
	Model     string
	FastModel string
	BaseURL   string
	// The API key comes from a file or an environment variable, read at
	// each (re)load; it is never logged or audited.
	APIKeyFile string
	APIKeyEnv  string
	Timeout    time.Duration
	Retries    int
	// PromptBudget bounds one incident's prompt, in estimated tokens.
	PromptBudget    int
	MaxOutputTokens int
	// DailyTokenCap bounds the tokens spent in a UTC day; 0: no cap.
	DailyTokenCap int
	// MinConfidence: a diagnosis below it escalates.
	MinConfidence float64
}

// LLM defaults.
const (
	DefaultLLMPromptBudget  = 8000
	DefaultLLMMaxOutput     = 1024
	DefaultLLMMinConfidence = 0.7
)

// EscalationConfig routes escalation briefs to notify tools of the
// runbooks. A runbook's escalate_to wins; then the first route whose
// matchers match the alert's labels; then Notify. With no tool at all, a
// brief only goes to the log.
type EscalationConfig struct {
	Notify string
	Routes []EscalationRoute
	// MaxPerHour bounds the briefs sent in any hour, against paging
	// storms; past it, briefs only go to the log.
	MaxPerHour int
	// ExternalURL is how humans reach medic's API, for the brief's links.
	ExternalURL string
	// GroupBy, GroupWait and GroupInterval group the briefs of a route as
	// Alertmanager groups notifications: the escalations whose alerts
	// share the GroupBy labels go out as one brief, GroupWait after the
	// first of them, and later ones at most once per GroupInterval.
	GroupBy       []string
	GroupWait     time.Duration
	GroupInterval time.Duration

	NotifyRange hcl.Range
}

// Default brief grouping: the first escalation of an alert name is sent
// at once, and the ones of that name that follow go out together, at most
// one brief each 10 s: a storm of one alert name is two briefs, and a
// single escalation waits for nothing.
var DefaultBriefGroupBy = []string{"alertname"}

const DefaultBriefGroupInterval = 10 * time.Second

// EscalationRoute sends the briefs of matching alerts to a notify tool.
type EscalationRoute struct {
	Source      string
	Matchers    labels.Matchers
	Notify      string
	NotifyRange hcl.Range
}

// DefaultMaxEscalationsPerHour bounds briefs when medic.hcl sets no bound.
const DefaultMaxEscalationsPerHour = 20

// RemediationConfig tunes the remediation path.
type RemediationConfig struct {
	// DryRun forces shadow mode everywhere.
	DryRun bool
	// ApprovalTTL is how long a pending call waits for a human.
	ApprovalTTL time.Duration
	// Parallel bounds the incidents decided at once.
	Parallel int
	// SystemdBus is the D-Bus address of the system bus that systemd
	// tools use; empty means the default system bus.
	SystemdBus string
	// ShadowNotify names a notify tool that announces, once per incident,
	// what shadow mode would have run. Empty: shadow only records.
	ShadowNotify      string
	ShadowNotifyRange hcl.Range
	// Deadline bounds one incident's remediation, verification included;
	// past it, the incident escalates.
	Deadline time.Duration
	// RefireWindow: a target that fires again this soon after a verified
	// fix escalates, and the fix counts as failed.
	RefireWindow time.Duration
	// An alert that started firing FlapCount times within FlapWindow is
	// noisy: medic escalates it and never acts on it.
	FlapCount  int
	FlapWindow time.Duration
}

// WebConfig configures the HTTP listener and its authentication.
type WebConfig struct {
	ListenAddress string
	// ConfigFile is an exporter-toolkit web config (TLS, basic auth).
	ConfigFile string
	// BearerTokenFile holds the token every /api/ request must present.
	BearerTokenFile string
	// ApproverTokenFile holds the separate token that approves or denies
	// pending calls.
	ApproverTokenFile string
	// Insecure allows a non-loopback listener with no authentication.
	Insecure bool
}

// StorageConfig configures the state file.
type StorageConfig struct {
	Path string
	// Retention is how long closed incidents are kept.
	Retention time.Duration
	// AuditKeyFile holds the key that authenticates the audit log; it is
	// created when missing. Default: audit.key beside the state file. Keep
	// it where whoever can write the state file cannot read it.
	AuditKeyFile string
	// AuditCheckpointFile receives the audit log's checkpoints. Default:
	// audit.checkpoints beside the state file.
	AuditCheckpointFile string
}

// AuditFiles are the audit key and checkpoint files in force: the
// configured ones, or the defaults beside the state file.
func (c StorageConfig) AuditFiles() (key, checkpoints string) {
	key, checkpoints = c.AuditKeyFile, c.AuditCheckpointFile
	if key == "" {
		key = filepath.Join(filepath.Dir(c.Path), "audit.key")
	}
	if checkpoints == "" {
		checkpoints = filepath.Join(filepath.Dir(c.Path), "audit.checkpoints")
	}
	return key, checkpoints
}

// IntakeConfig bounds what the webhook accepts and which alerts it skips.
type IntakeConfig struct {
	Limits Limits
	Ignore []IgnoreRule
	// GroupBy keys the incident of an alert no runbook target covers, as
	// Alertmanager's group_by keys its groups; ["..."] keys by every label.
	GroupBy []string
}

// DefaultGroupBy folds the alerts no runbook target covers by where they
// come from: one incident per alert name and scrape target, or namespace.
var DefaultGroupBy = []string{"alertname", "namespace", "job", "instance"}

// Limits bound every field of an accepted notification.
type Limits struct {
	MaxBodySize              int64
	MaxAlerts                int
	MaxLabels                int
	MaxLabelValueLength      int
	MaxAnnotationValueLength int
}

// IgnoreRule skips alerts whose labels match every matcher of the rule.
type IgnoreRule struct {
	Source   string
	Matchers labels.Matchers
}

// DefaultLimits are the intake bounds when medic.hcl sets none.
var DefaultLimits = Limits{
	MaxBodySize:              8 << 20,
	MaxAlerts:                1000,
	MaxLabels:                64,
	MaxLabelValueLength:      2048,
	MaxAnnotationValueLength: 16384,
}

// DefaultIgnore skips heartbeat and informational alerts, as kube-prometheus
// and awesome-prometheus-alerts ship them: they exist to prove the pipeline
// works, not to be acted on. awesome-prometheus-alerts' dead man's switch
// fires at severity critical, so only its name tells it apart.
var DefaultIgnore = []string{
	`{alertname="Watchdog"}`,
	`{alertname="PrometheusAlertmanagerE2eDeadManSwitch"}`,
	`{alertname="InfoInhibitor"}`,
	`{severity="info"}`,
	`{severity="none"}`,
}

// DefaultConfig is the configuration `medic serve` runs with when it is given
// no config file.
func DefaultConfig() *Config {
	c := &Config{
		Runbooks: []string{"runbooks.hcl"},
		Web:      WebConfig{ListenAddress: DefaultListenAddress},
		Storage:  StorageConfig{Path: filepath.Join("data", "medic.db"), Retention: 30 * 24 * time.Hour},
		Intake:   IntakeConfig{Limits: DefaultLimits, GroupBy: DefaultGroupBy},
		Remediation: RemediationConfig{ApprovalTTL: DefaultApprovalTTL, Parallel: 4, Deadline: 30 * time.Minute,
			RefireWindow: time.Hour, FlapCount: 4, FlapWindow: 30 * time.Minute},
		Escalation: EscalationConfig{MaxPerHour: DefaultMaxEscalationsPerHour, GroupBy: DefaultBriefGroupBy, GroupInterval: DefaultBriefGroupInterval},
		LLM: LLMConfig{Timeout: 30 * time.Second, Retries: 2, PromptBudget: DefaultLLMPromptBudget, MaxOutputTokens: DefaultLLMMaxOutput,
			DailyTokenCap: 2_000_000, MinConfidence: DefaultLLMMinConfidence},
	}
	for _, s := range DefaultIgnore {
		ms, err := labels.ParseMatchers(s)
		if err != nil {
			panic(fmt.Sprintf("default ignore matcher %s: %v", s, err))
		}
		c.Intake.Ignore = append(c.Intake.Ignore, IgnoreRule{Source: s, Matchers: ms})
	}
	return c
}

type fileConfig struct {
	Runbooks      *[]string          `hcl:"runbooks,optional"`
	RunbooksRange hcl.Range          `hcl:"runbooks,attr_value_range"`
	Variables     *map[string]string `hcl:"variables,optional"`
	VarsRange     hcl.Range          `hcl:"variables,attr_value_range"`
	Web           *webBlock          `hcl:"web,block"`
	Storage       *storageBlock      `hcl:"storage,block"`
	Intake        *intakeBlock       `hcl:"intake,block"`
	Prometheus    *sourceBlock       `hcl:"prometheus,block"`
	Loki          *sourceBlock       `hcl:"loki,block"`
	Alertmanager  *sourceBlock       `hcl:"alertmanager,block"`
	Policy        *string            `hcl:"policy,optional"`
	PolicyConfig  *policyConfigBlock `hcl:"policy_config,block"`
	Remediation   *remediationBlock  `hcl:"remediation,block"`
	Escalation    *escalationBlock   `hcl:"escalation,block"`
	LLM           *llmBlock          `hcl:"llm,block"`
}

type llmBlock struct {
	Provider        string    `hcl:"provider"`
	Model           string    `hcl:"model"`
	FastModel       *string   `hcl:"fast_model,optional"`
	BaseURL         *string   `hcl:"base_url,optional"`
	APIKeyFile      *string   `hcl:"api_key_file,optional"`
	APIKeyEnv       *string   `hcl:"api_key_env,optional"`
	Timeout         *string   `hcl:"timeout,optional"`
	Retries         *int      `hcl:"retries,optional"`
	PromptBudget    *int      `hcl:"prompt_budget,optional"`
	MaxOutputTokens *int      `hcl:"max_output_tokens,optional"`
	DailyTokenCap   *int      `hcl:"daily_token_cap,optional"`
	MinConfidence   *float64  `hcl:"min_confidence,optional"`
	ProviderRange   hcl.Range `hcl:"provider,attr_value_range"`
	BaseURLRange    hcl.Range `hcl:"base_url,attr_value_range"`
	TimeoutRange    hcl.Range `hcl:"timeout,attr_value_range"`
	RetriesRange    hcl.Range `hcl:"retries,attr_value_range"`
	BudgetRange     hcl.Range `hcl:"prompt_budget,attr_value_range"`
	OutputRange     hcl.Range `hcl:"max_output_tokens,attr_value_range"`
	CapRange        hcl.Range `hcl:"daily_token_cap,attr_value_range"`
	ConfRange       hcl.Range `hcl:"min_confidence,attr_value_range"`
	DefRange        hcl.Range `hcl:",def_range"`
}

type escalationBlock struct {
	Notify           *string      `hcl:"notify,optional"`
	MaxPerHour       *int         `hcl:"max_escalations_per_hour,optional"`
	ExternalURL      *string      `hcl:"external_url,optional"`
	GroupBy          *[]string    `hcl:"group_by,optional"`
	GroupWait        *string      `hcl:"group_wait,optional"`
	GroupInterval    *string      `hcl:"group_interval,optional"`
	Routes           []routeBlock `hcl:"route,block"`
	NotifyRange      hcl.Range    `hcl:"notify,attr_value_range"`
	GroupByRange     hcl.Range    `hcl:"group_by,attr_value_range"`
	GroupWaitRange   hcl.Range    `hcl:"group_wait,attr_value_range"`
	GroupIntRange    hcl.Range    `hcl:"group_interval,attr_value_range"`
	MaxPerHourRange  hcl.Range    `hcl:"max_escalations_per_hour,attr_value_range"`
	ExternalURLRange hcl.Range    `hcl:"external_url,attr_value_range"`
}

type routeBlock struct {
	Matchers      string    `hcl:"matchers"`
	Notify        string    `hcl:"notify"`
	MatchersRange hcl.Range `hcl:"matchers,attr_value_range"`
	NotifyRange   hcl.Range `hcl:"notify,attr_value_range"`
}

type remediationBlock struct {
	DryRun           *bool     `hcl:"dry_run,optional"`
	ApprovalTTL      *string   `hcl:"approval_ttl,optional"`
	Parallel         *int      `hcl:"parallel,optional"`
	SystemdBus       *string   `hcl:"systemd_bus,optional"`
	ShadowNotify     *string   `hcl:"shadow_notify,optional"`
	Deadline         *string   `hcl:"deadline,optional"`
	RefireWindow     *string   `hcl:"refire_window,optional"`
	FlapCount        *int      `hcl:"flap_count,optional"`
	FlapWindow       *string   `hcl:"flap_window,optional"`
	DeadlineRange    hcl.Range `hcl:"deadline,attr_value_range"`
	RefireRange      hcl.Range `hcl:"refire_window,attr_value_range"`
	FlapCountRange   hcl.Range `hcl:"flap_count,attr_value_range"`
	FlapWindowRange  hcl.Range `hcl:"flap_window,attr_value_range"`
	ApprovalTTLRange hcl.Range `hcl:"approval_ttl,attr_value_range"`
	ParallelRange    hcl.Range `hcl:"parallel,attr_value_range"`
	SystemdBusRange  hcl.Range `hcl:"systemd_bus,attr_value_range"`
	ShadowRange      hcl.Range `hcl:"shadow_notify,attr_value_range"`
}

type policyConfigBlock struct {
	MaxPerTargetHour  *int            `hcl:"max_per_target_hour,optional"`
	StormLimit        *int            `hcl:"storm_limit,optional"`
	MaxTargetsPerHour *int            `hcl:"max_targets_per_hour,optional"`
	PeakHours         *peakHoursBlock `hcl:"peak_hours,block"`

	MaxPerTargetHourRange  hcl.Range `hcl:"max_per_target_hour,attr_value_range"`
	StormLimitRange        hcl.Range `hcl:"storm_limit,attr_value_range"`
	MaxTargetsPerHourRange hcl.Range `hcl:"max_targets_per_hour,attr_value_range"`
}

type peakHoursBlock struct {
	Start    int    `hcl:"start"`
	End      int    `hcl:"end"`
	Timezone string `hcl:"timezone"`

	StartRange    hcl.Range `hcl:"start,attr_value_range"`
	EndRange      hcl.Range `hcl:"end,attr_value_range"`
	TimezoneRange hcl.Range `hcl:"timezone,attr_value_range"`
}

type sourceBlock struct {
	URL            string    `hcl:"url"`
	HTTPConfigFile *string   `hcl:"http_config_file,optional"`
	URLRange       hcl.Range `hcl:"url,attr_value_range"`
}

type webBlock struct {
	ListenAddress     *string `hcl:"listen_address,optional"`
	ConfigFile        *string `hcl:"config_file,optional"`
	BearerTokenFile   *string `hcl:"bearer_token_file,optional"`
	ApproverTokenFile *string `hcl:"approver_token_file,optional"`
	Insecure          *bool   `hcl:"insecure,optional"`

	ListenAddressRange   hcl.Range `hcl:"listen_address,attr_value_range"`
	ConfigFileRange      hcl.Range `hcl:"config_file,attr_value_range"`
	BearerTokenFileRange hcl.Range `hcl:"bearer_token_file,attr_value_range"`
}

type storageBlock struct {
	Path                *string `hcl:"path,optional"`
	Retention           *string `hcl:"retention,optional"`
	AuditKeyFile        *string `hcl:"audit_key_file,optional"`
	AuditCheckpointFile *string `hcl:"audit_checkpoint_file,optional"`

	PathRange      hcl.Range `hcl:"path,attr_value_range"`
	RetentionRange hcl.Range `hcl:"retention,attr_value_range"`
}

type intakeBlock struct {
	MaxBodySize              *string   `hcl:"max_body_size,optional"`
	MaxAlerts                *int      `hcl:"max_alerts,optional"`
	MaxLabels                *int      `hcl:"max_labels,optional"`
	MaxLabelValueLength      *int      `hcl:"max_label_value_length,optional"`
	MaxAnnotationValueLength *int      `hcl:"max_annotation_value_length,optional"`
	Ignore                   *[]string `hcl:"ignore,optional"`
	GroupBy                  *[]string `hcl:"group_by,optional"`

	MaxBodySizeRange              hcl.Range `hcl:"max_body_size,attr_value_range"`
	MaxAlertsRange                hcl.Range `hcl:"max_alerts,attr_value_range"`
	MaxLabelsRange                hcl.Range `hcl:"max_labels,attr_value_range"`
	MaxLabelValueLengthRange      hcl.Range `hcl:"max_label_value_length,attr_value_range"`
	MaxAnnotationValueLengthRange hcl.Range `hcl:"max_annotation_value_length,attr_value_range"`
	IgnoreRange                   hcl.Range `hcl:"ignore,attr_value_range"`
	GroupByRange                  hcl.Range `hcl:"group_by,attr_value_range"`
}

// checkGroupBy accepts label names, or "..." alone, as Alertmanager does.
func checkGroupBy(names []string, rng hcl.Range) hcl.Diagnostics {
	if len(names) == 0 {
		return hcl.Diagnostics{attrError(rng, "Invalid group_by", "group_by needs at least one label name, or [\"...\"] for every label.")}
	}
	var diags hcl.Diagnostics
	for i, n := range names {
		switch {
		case n == "..." && len(names) > 1:
			diags = append(diags, attrError(rng, "Invalid group_by", "\"...\" groups by every label; it cannot be combined with label names."))
		case n != "..." && !rules.IsLabelName(n):
			diags = append(diags, attrError(rng, "Invalid group_by", fmt.Sprintf("Element %d, %q, is not a label name.", i, n)))
		}
	}
	return diags
}

// LoadConfig reads medic.hcl. An empty path returns DefaultConfig. Every
// problem found is returned as a diagnostic with its file:line:col; the
// Config is nil when any of them is an error.
func LoadConfig(path string) (*Config, hcl.Diagnostics) {
	cfg := DefaultConfig()
	if path == "" {
		return cfg, nil
	}
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Cannot read config file", Detail: err.Error()}}
	}
	return ParseConfig(path, src)
}

// ParseConfig decodes medic.hcl from src; path names it in diagnostics and
// anchors its relative paths.
func ParseConfig(path string, src []byte) (*Config, hcl.Diagnostics) {
	cfg := DefaultConfig()
	cfg.File = path
	f, diags := hclparse.NewParser().ParseHCL(src, path)
	if diags.HasErrors() {
		return nil, diags
	}
	var fc fileConfig
	diags = append(diags, gohcl.DecodeBody(f.Body, nil, &fc)...)
	if diags.HasErrors() {
		return nil, diags
	}
	dir := filepath.Dir(path)
	rel := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	cfg.Runbooks = []string{rel("runbooks.hcl")}
	if fc.Runbooks != nil {
		if len(*fc.Runbooks) == 0 {
			diags = append(diags, attrError(fc.RunbooksRange, "No runbook files", "runbooks lists no file; remove it to use runbooks.hcl."))
		}
		cfg.Runbooks, cfg.RunbooksSet = nil, true
		for _, p := range *fc.Runbooks {
			cfg.Runbooks = append(cfg.Runbooks, rel(p))
		}
	}
	if fc.Variables != nil {
		cfg.Variables, cfg.VariablesRange = *fc.Variables, fc.VarsRange
	}
	if w := fc.Web; w != nil {
		if w.ListenAddress != nil {
			if *w.ListenAddress == "" {
				diags = append(diags, attrError(w.ListenAddressRange, "Invalid listen_address", "The listen address must not be empty."))
			}
			cfg.Web.ListenAddress = *w.ListenAddress
		}
		if w.ConfigFile != nil {
			cfg.Web.ConfigFile = rel(*w.ConfigFile)
		}
		if w.BearerTokenFile != nil {
			cfg.Web.BearerTokenFile = rel(*w.BearerTokenFile)
		}
		if w.ApproverTokenFile != nil {
			cfg.Web.ApproverTokenFile = rel(*w.ApproverTokenFile)
		}
		if w.Insecure != nil {
			cfg.Web.Insecure = *w.Insecure
		}
	}
	if s := fc.Storage; s != nil {
		if s.Path != nil {
			if *s.Path == "" {
				diags = append(diags, attrError(s.PathRange, "Invalid path", "The storage path must not be empty."))
			}
			cfg.Storage.Path = rel(*s.Path)
		}
		if s.AuditKeyFile != nil {
			cfg.Storage.AuditKeyFile = rel(*s.AuditKeyFile)
		}
		if s.AuditCheckpointFile != nil {
			cfg.Storage.AuditCheckpointFile = rel(*s.AuditCheckpointFile)
		}
		if s.Retention != nil {
			d, err := model.ParseDuration(*s.Retention)
			switch {
			case err != nil:
				diags = append(diags, attrError(s.RetentionRange, "Invalid duration", fmt.Sprintf("%q is not a duration such as \"720h\" or \"30d\": %v.", *s.Retention, err)))
			case d <= 0:
				diags = append(diags, attrError(s.RetentionRange, "Invalid retention", "The retention must be positive."))
			default:
				cfg.Storage.Retention = time.Duration(d)
			}
		}
	}
	if in := fc.Intake; in != nil {
		l := &cfg.Intake.Limits
		if in.MaxBodySize != nil {
			n, err := units.ParseBase2Bytes(*in.MaxBodySize)
			switch {
			case err != nil:
				diags = append(diags, attrError(in.MaxBodySizeRange, "Invalid size", fmt.Sprintf("%q is not a size such as \"8MiB\": %v.", *in.MaxBodySize, err)))
			case n < 1024 || n > 1<<30:
				diags = append(diags, attrError(in.MaxBodySizeRange, "Invalid max_body_size", "The body size limit must be between 1KiB and 1GiB."))
			default:
				l.MaxBodySize = int64(n)
			}
		}
		positive := func(v *int, r hcl.Range, name string, dst *int) {
			if v == nil {
				return
			}
			if *v <= 0 || *v > math.MaxInt32 {
				diags = append(diags, attrError(r, "Invalid "+name, fmt.Sprintf("%s must be a positive integer, got %d.", name, *v)))
				return
			}
			*dst = *v
		}
		positive(in.MaxAlerts, in.MaxAlertsRange, "max_alerts", &l.MaxAlerts)
		positive(in.MaxLabels, in.MaxLabelsRange, "max_labels", &l.MaxLabels)
		positive(in.MaxLabelValueLength, in.MaxLabelValueLengthRange, "max_label_value_length", &l.MaxLabelValueLength)
		positive(in.MaxAnnotationValueLength, in.MaxAnnotationValueLengthRange, "max_annotation_value_length", &l.MaxAnnotationValueLength)
		if in.Ignore != nil {
			cfg.Intake.Ignore = nil
			for i, s := range *in.Ignore {
				ms, err := labels.ParseMatchers(s)
				if err == nil && len(ms) == 0 {
					err = fmt.Errorf("no matchers")
				}
				if err != nil {
					diags = append(diags, attrError(in.IgnoreRange, "Invalid ignore matcher", fmt.Sprintf("Element %d, %q, is not an Alertmanager matcher list such as {alertname=\"Watchdog\"}: %v.", i, s, err)))
					continue
				}
				cfg.Intake.Ignore = append(cfg.Intake.Ignore, IgnoreRule{Source: s, Matchers: ms})
			}
		}
		if in.GroupBy != nil {
			diags = append(diags, checkGroupBy(*in.GroupBy, in.GroupByRange)...)
			cfg.Intake.GroupBy = *in.GroupBy
		}
	}
	for _, src := range []struct {
		b   *sourceBlock
		dst *SourceConfig
	}{{fc.Prometheus, &cfg.Prometheus}, {fc.Loki, &cfg.Loki}, {fc.Alertmanager, &cfg.Alertmanager}} {
		if src.b == nil {
			continue
		}
		u, err := url.Parse(src.b.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			diags = append(diags, attrError(src.b.URLRange, "Invalid url", fmt.Sprintf("%q is not an http(s) URL.", src.b.URL)))
		}
		src.dst.URL = src.b.URL
		if src.b.HTTPConfigFile != nil {
			src.dst.HTTPConfigFile = rel(*src.b.HTTPConfigFile)
		}
	}
	if fc.Policy != nil {
		cfg.Policy = rel(*fc.Policy)
	}
	if p := fc.PolicyConfig; p != nil {
		diags = append(diags, decodePolicyConfig(p, &cfg.PolicyConfig)...)
	}
	if r := fc.Remediation; r != nil {
		diags = append(diags, decodeRemediation(r, &cfg.Remediation)...)
	}
	if l := fc.LLM; l != nil {
		diags = append(diags, decodeLLM(l, &cfg.LLM, rel)...)
	}
	if e := fc.Escalation; e != nil {
		diags = append(diags, decodeEscalation(e, &cfg.Escalation)...)
	}
	if diags.HasErrors() {
		return nil, diags
	}
	return cfg, diags
}

// decodePolicyConfig checks the policy's tunables: limits are positive, and
// peak hours are whole hours of a time zone this machine knows, start before
// end (end 24 is midnight).
func decodePolicyConfig(p *policyConfigBlock, dst *actions.PolicyConfig) hcl.Diagnostics {
	var diags hcl.Diagnostics
	for _, n := range []struct {
		v   *int
		r   hcl.Range
		key string
		dst *int
	}{{p.MaxPerTargetHour, p.MaxPerTargetHourRange, "max_per_target_hour", &dst.MaxPerTargetHour}, {p.StormLimit, p.StormLimitRange, "storm_limit", &dst.StormLimit},
		{p.MaxTargetsPerHour, p.MaxTargetsPerHourRange, "max_targets_per_hour", &dst.MaxTargetsPerHour}} {
		if n.v == nil {
			continue
		}
		if *n.v < 1 || *n.v > 1_000_000 {
			diags = append(diags, attrError(n.r, "Invalid "+n.key, fmt.Sprintf("%s must be from 1 to 1000000, got %d.", n.key, *n.v)))
			continue
		}
		*n.dst = *n.v
	}
	if ph := p.PeakHours; ph != nil {
		ok := true
		if ph.Start < 0 || ph.Start > 23 {
			diags = append(diags, attrError(ph.StartRange, "Invalid start", "start is an hour from 0 to 23."))
			ok = false
		}
		if ph.End <= ph.Start || ph.End > 24 {
			diags = append(diags, attrError(ph.EndRange, "Invalid end", fmt.Sprintf("end is an hour after start (%d), at most 24.", ph.Start)))
			ok = false
		}
		if _, err := time.LoadLocation(ph.Timezone); err != nil || ph.Timezone == "" {
			diags = append(diags, attrError(ph.TimezoneRange, "Invalid timezone", fmt.Sprintf("timezone = %q is not an IANA time zone such as \"Europe/Berlin\" or \"UTC\".", ph.Timezone)))
			ok = false
		}
		if ok {
			dst.PeakHours = &actions.PeakHours{Start: ph.Start, End: ph.End, Timezone: ph.Timezone}
		}
	}
	return diags
}

func attrError(r hcl.Range, summary, detail string) *hcl.Diagnostic {
	return &hcl.Diagnostic{Severity: hcl.DiagError, Summary: summary, Detail: detail, Subject: r.Ptr()}
}

// decodeRemediation checks the remediation block into c.
func decodeRemediation(r *remediationBlock, c *RemediationConfig) hcl.Diagnostics {
	var diags hcl.Diagnostics
	if r.DryRun != nil {
		c.DryRun = *r.DryRun
	}
	if r.ApprovalTTL != nil {
		d, err := model.ParseDuration(*r.ApprovalTTL)
		if err != nil || d <= 0 {
			diags = append(diags, attrError(r.ApprovalTTLRange, "Invalid duration", fmt.Sprintf("approval_ttl = %q is not a positive duration.", *r.ApprovalTTL)))
		} else {
			c.ApprovalTTL = time.Duration(d)
		}
	}
	if r.Parallel != nil {
		if *r.Parallel < 1 || *r.Parallel > 64 {
			diags = append(diags, attrError(r.ParallelRange, "Invalid parallel", "parallel must be from 1 to 64."))
		} else {
			c.Parallel = *r.Parallel
		}
	}
	if r.SystemdBus != nil {
		if !strings.HasPrefix(*r.SystemdBus, "unix:path=") {
			diags = append(diags, attrError(r.SystemdBusRange, "Invalid systemd_bus",
				fmt.Sprintf("systemd_bus = %q is not a unix:path= D-Bus address.", *r.SystemdBus)))
		} else {
			c.SystemdBus = *r.SystemdBus
		}
	}
	diags = append(diags, decodeDurations(
		durationAttr{r.Deadline, r.DeadlineRange, "deadline", &c.Deadline, false},
		durationAttr{r.RefireWindow, r.RefireRange, "refire_window", &c.RefireWindow, false},
		durationAttr{r.FlapWindow, r.FlapWindowRange, "flap_window", &c.FlapWindow, false})...)
	if r.FlapCount != nil {
		if *r.FlapCount < 2 {
			diags = append(diags, attrError(r.FlapCountRange, "Invalid flap_count", "flap_count must be at least 2."))
		} else {
			c.FlapCount = *r.FlapCount
		}
	}
	if r.ShadowNotify != nil {
		c.ShadowNotify, c.ShadowNotifyRange = *r.ShadowNotify, r.ShadowRange
	}
	return diags
}

// decodeLLM checks the llm block into c; rel resolves a path against the
// config file's directory.
func decodeLLM(l *llmBlock, c *LLMConfig, rel func(string) string) hcl.Diagnostics {
	var diags hcl.Diagnostics
	c.Provider, c.Model = l.Provider, l.Model
	if l.Provider != "gemini" && l.Provider != "openai" {
		diags = append(diags, attrError(l.ProviderRange, "Invalid provider", fmt.Sprintf("provider = %q: use \"gemini\" or \"openai\" (any OpenAI-compatible API).", l.Provider)))
	}
	if l.FastModel != nil {
		c.FastModel = *l.FastModel
	}
	if l.BaseURL != nil {
		if u, err := url.Parse(*l.BaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			diags = append(diags, attrError(l.BaseURLRange, "Invalid base_url", fmt.Sprintf("base_url = %q is not an http(s) URL.", *l.BaseURL)))
		} else {
			c.BaseURL = *l.BaseURL
		}
	}
	if l.APIKeyFile != nil {
		c.APIKeyFile = rel(*l.APIKeyFile)
	}
	if l.APIKeyEnv != nil {
		c.APIKeyEnv = *l.APIKeyEnv
	}
	if l.Timeout != nil {
		if d, err := model.ParseDuration(*l.Timeout); err != nil || d <= 0 {
			diags = append(diags, attrError(l.TimeoutRange, "Invalid duration", fmt.Sprintf("timeout = %q is not a positive duration.", *l.Timeout)))
		} else {
			c.Timeout = time.Duration(d)
		}
	}
	for _, n := range []struct {
		v        *int
		r        hcl.Range
		key      string
		min, max int
		dst      *int
	}{{l.Retries, l.RetriesRange, "retries", 0, 10, &c.Retries}, {l.PromptBudget, l.BudgetRange, "prompt_budget", 1000, 1_000_000, &c.PromptBudget},
		{l.MaxOutputTokens, l.OutputRange, "max_output_tokens", 64, 100_000, &c.MaxOutputTokens}, {l.DailyTokenCap, l.CapRange, "daily_token_cap", 0, 1 << 40, &c.DailyTokenCap}} {
		if n.v == nil {
			continue
		}
		if *n.v < n.min || *n.v > n.max {
			diags = append(diags, attrError(n.r, "Invalid "+n.key, fmt.Sprintf("%s must be from %d to %d.", n.key, n.min, n.max)))
			continue
		}
		*n.dst = *n.v
	}
	if l.MinConfidence != nil {
		if *l.MinConfidence < 0 || *l.MinConfidence > 1 {
			diags = append(diags, attrError(l.ConfRange, "Invalid min_confidence", "min_confidence is from 0 to 1."))
		} else {
			c.MinConfidence = *l.MinConfidence
		}
	}
	if c.APIKeyFile != "" && c.APIKeyEnv != "" {
		diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Two API keys", Detail: "Set api_key_file or api_key_env, not both.", Subject: l.DefRange.Ptr()})
	}
	return diags
}

// durationAttr is an optional duration attribute and where it goes; zero
// allows 0s.
type durationAttr struct {
	v    *string
	r    hcl.Range
	key  string
	dst  *time.Duration
	zero bool
}

// decodeDurations parses the attributes that are set into their places.
func decodeDurations(attrs ...durationAttr) hcl.Diagnostics {
	var diags hcl.Diagnostics
	for _, d := range attrs {
		if d.v == nil {
			continue
		}
		v, err := model.ParseDuration(*d.v)
		if err != nil || v < 0 || (v == 0 && !d.zero) {
			what := "a positive duration"
			if d.zero {
				what = "a duration of 0s or more"
			}
			diags = append(diags, attrError(d.r, "Invalid duration", fmt.Sprintf("%s = %q is not %s.", d.key, *d.v, what)))
			continue
		}
		*d.dst = time.Duration(v)
	}
	return diags
}

// decodeEscalation checks the escalation block into c.
func decodeEscalation(e *escalationBlock, c *EscalationConfig) hcl.Diagnostics {
	var diags hcl.Diagnostics
	if e.Notify != nil {
		c.Notify, c.NotifyRange = *e.Notify, e.NotifyRange
	}
	if e.MaxPerHour != nil {
		if *e.MaxPerHour < 1 {
			diags = append(diags, attrError(e.MaxPerHourRange, "Invalid max_escalations_per_hour", "max_escalations_per_hour must be at least 1."))
		} else {
			c.MaxPerHour = *e.MaxPerHour
		}
	}
	if e.ExternalURL != nil {
		if u, err := url.Parse(*e.ExternalURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			diags = append(diags, attrError(e.ExternalURLRange, "Invalid external_url", fmt.Sprintf("external_url = %q is not an http(s) URL.", *e.ExternalURL)))
		} else {
			c.ExternalURL = strings.TrimRight(*e.ExternalURL, "/")
		}
	}
	if e.GroupBy != nil {
		diags = append(diags, checkGroupBy(*e.GroupBy, e.GroupByRange)...)
		c.GroupBy = *e.GroupBy
	}
	diags = append(diags, decodeDurations(
		durationAttr{e.GroupWait, e.GroupWaitRange, "group_wait", &c.GroupWait, true},
		durationAttr{e.GroupInterval, e.GroupIntRange, "group_interval", &c.GroupInterval, false})...)
	for _, rt := range e.Routes {
		ms, err := labels.ParseMatchers(rt.Matchers)
		if err == nil && len(ms) == 0 {
			err = fmt.Errorf("no matchers")
		}
		if err != nil {
			diags = append(diags, attrError(rt.MatchersRange, "Invalid route matchers", fmt.Sprintf("%q is not an Alertmanager matcher list such as {severity=\"critical\"}: %v.", rt.Matchers, err)))
			continue
		}
		c.Routes = append(c.Routes, EscalationRoute{Source: rt.Matchers, Matchers: ms, Notify: rt.Notify, NotifyRange: rt.NotifyRange})
	}
	return diags
}

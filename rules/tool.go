package rules

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"
	"github.com/prometheus/common/model"
)

// Risk is how much harm a tool can do. The policy gate reads it.
type Risk string

// The risks.
const (
	RiskLow    Risk = "low"
	RiskMedium Risk = "medium"
	RiskHigh   Risk = "high"
)

// ParamType is the type of a tool parameter.
type ParamType string

// The parameter types.
const (
	TypeString   ParamType = "string"
	TypeInt      ParamType = "int"
	TypeNumber   ParamType = "number"
	TypeBool     ParamType = "bool"
	TypeDuration ParamType = "duration"
)

// DefaultMaxLength bounds a string parameter that sets no max_length.
const DefaultMaxLength = 256

// Tool is one entry of the registry: the only things medic can ever run.
type Tool struct {
	Name        string
	Description string
	Risk        Risk
	// LLM says whether the LLM may propose this tool.
	LLM bool
	// ReadOnly marks a tool that changes nothing; only those may serve as
	// enrichment queries.
	ReadOnly bool
	Timeout  time.Duration
	Params   []*Param
	Executor Executor
	// Rollback, when set, undoes the tool.
	Rollback *Call
	// Precheck, when set, is a read-only call that must succeed before the
	// tool runs; its output is the reason when it does not.
	Precheck *Call
	// IdempotencyKey renders to a key; a repeat of the same key within
	// IdempotencyWindow is skipped.
	IdempotencyKey    *Template
	IdempotencyWindow time.Duration

	DefRange hcl.Range
}

// Param returns the parameter with the name, or nil.
func (t *Tool) Param(name string) *Param {
	for _, p := range t.Params {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// Param is a typed, bounded tool parameter. Every argument is validated
// against it before anything is rendered into a command.
type Param struct {
	Name        string
	Description string
	Type        ParamType
	Pattern     *regexp.Regexp
	Enum        []string
	Min, Max    *float64
	MaxLength   int
	// AllowLeadingDash lets a string value start with "-". By default it
	// may not, so that a label cannot turn an argument into an option of
	// the program (`-n`, `--kubeconfig=…`).
	AllowLeadingDash bool
	Optional         bool
	Default          *string

	DefRange hcl.Range
}

// Validate checks a rendered argument against the parameter and returns its
// canonical form. It refuses control characters whatever the pattern says.
func (p *Param) Validate(v string) (string, error) {
	if !utf8.ValidString(v) {
		return "", fmt.Errorf("parameter %s: not valid UTF-8", p.Name)
	}
	for i, r := range v {
		if IsControl(r) {
			return "", fmt.Errorf("parameter %s: control character %U at byte %d", p.Name, r, i)
		}
	}
	switch p.Type {
	case TypeString:
		if len(v) > p.MaxLength {
			return "", fmt.Errorf("parameter %s: %d bytes exceed max_length %d", p.Name, len(v), p.MaxLength)
		}
		if strings.HasPrefix(v, "-") && !p.AllowLeadingDash {
			return "", fmt.Errorf("parameter %s: %s starts with \"-\" and could pass for an option (set allow_leading_dash to allow it)", p.Name, Quote(v))
		}
	case TypeInt:
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return "", fmt.Errorf("parameter %s: %s is not an integer", p.Name, Quote(v))
		}
		if err := p.bounds(float64(n)); err != nil {
			return "", err
		}
		v = strconv.FormatInt(n, 10)
	case TypeNumber:
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return "", fmt.Errorf("parameter %s: %s is not a finite number", p.Name, Quote(v))
		}
		if err := p.bounds(f); err != nil {
			return "", err
		}
		v = strconv.FormatFloat(f, 'f', -1, 64)
	case TypeBool:
		b, err := strconv.ParseBool(v)
		if err != nil {
			return "", fmt.Errorf("parameter %s: %s is not true or false", p.Name, Quote(v))
		}
		v = strconv.FormatBool(b)
	case TypeDuration:
		d, err := model.ParseDuration(v)
		if err != nil {
			return "", fmt.Errorf("parameter %s: %s is not a duration", p.Name, Quote(v))
		}
		if err := p.bounds(time.Duration(d).Seconds()); err != nil {
			return "", err
		}
		v = d.String()
	}
	if p.Pattern != nil && !p.Pattern.MatchString(v) {
		return "", fmt.Errorf("parameter %s: %s does not match %s", p.Name, Quote(v), p.Pattern)
	}
	if len(p.Enum) > 0 && !slices.Contains(p.Enum, v) {
		return "", fmt.Errorf("parameter %s: %s is not one of %s", p.Name, Quote(v), strings.Join(p.Enum, ", "))
	}
	return v, nil
}

func (p *Param) bounds(f float64) error {
	if p.Min != nil && f < *p.Min {
		return fmt.Errorf("parameter %s: %v is below the minimum %v", p.Name, f, *p.Min)
	}
	if p.Max != nil && f > *p.Max {
		return fmt.Errorf("parameter %s: %v is above the maximum %v", p.Name, f, *p.Max)
	}
	return nil
}

// ExecutorKind names an executor block.
type ExecutorKind string

// The executor kinds.
const (
	ExecKind    ExecutorKind = "exec"
	HTTPKind    ExecutorKind = "http"
	SilenceKind ExecutorKind = "silence"
	NotifyKind  ExecutorKind = "notify"
	SystemdKind ExecutorKind = "systemd"
)

// Executor is the one executor block of a tool, validated and with its
// templates checked; the executors that run it live in actions/.
type Executor struct {
	Kind ExecutorKind
	// exec
	Command []*Template
	DryRun  []*Template
	Env     map[string]*Template
	Dir     string
	// http: the body is a JSON object whose string values are rendered,
	// then encoded, so that no value can break out of its string.
	Method       string
	URL          *Template
	Headers      map[string]*Template
	BodyJSON     map[string]*Template
	ExpectStatus []int
	// HTTPConfigFile is a Prometheus HTTP client config (authorization,
	// basic_auth, tls_config) for the request.
	HTTPConfigFile string
	// silence
	Duration time.Duration
	Comment  *Template
	// notify: the URL and the routing key are secrets, read from files
	// when the call runs.
	Channel        string
	Message        *Template
	URLFile        string
	RoutingKeyFile string
	Severity       string
	// systemd
	Unit   *Template
	Action string
	// MemoryMaxMiB is set-memory-max's new limit, an integer of MiB.
	MemoryMaxMiB *Template

	DefRange hcl.Range
}

// Call is a tool with arguments, as a step, a rollback or a tool query
// gives it.
type Call struct {
	Tool string
	Args map[string]*Template

	ToolRange hcl.Range
	DefRange  hcl.Range
}

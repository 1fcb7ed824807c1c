package engine

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"medic/state"
)

// Inbox is where the intake puts accepted notifications. It must return only
// once the notification is durable.
type Inbox interface {
	Accept(receivedAt time.Time, body []byte, weight int, apply func(*state.Tx) error) (applied bool, err error)
}

// Options wire an Engine. Logger, Registerer and Store are passed in, never
// taken from globals.
type Options struct {
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// Gatherer serves /metrics; nil leaves /metrics out.
	Gatherer prometheus.Gatherer
	Store    *state.Store
	// Inbox receives accepted notifications; nil means Store. Benchmarks
	// swap it to measure the decoding ceiling.
	Inbox Inbox
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Reload receives a request from POST /-/reload; main owns reloading, as
	// it owns SIGHUP. nil makes /-/reload answer 501.
	Reload chan<- chan error
	// AuditKey authenticates the audit log and its checkpoints; the Store
	// was opened with it.
	AuditKey []byte
}

// Engine is medic's pipeline.
type Engine struct {
	logger   *slog.Logger
	store    *state.Store
	inbox    Inbox
	now      func() time.Time
	gatherer prometheus.Gatherer
	reload   chan<- chan error
	metrics  *metrics

	settings  atomic.Pointer[settings]
	ready     atomic.Bool
	wake      chan struct{}
	heartbeat atomic.Int64
	// remediator, when set, gets a decision job for every new incident.
	remediator *Remediator
	// backups holds the one backup that may run at a time.
	backups chan struct{}
	// intakeBudget bounds the notifications being decoded at once.
	intakeBudget budget
	auditKey     []byte
	// checkpointed is the audit entry of the last checkpoint.
	checkpointed atomic.Uint64
}

// SetRemediator attaches the remediation path: from then on every new
// incident is queued for a decision, in the transaction that opens it.
func (e *Engine) SetRemediator(r *Remediator) {
	e.remediator = r
	r.metrics = e.metrics
}

// settings is what a config reload swaps in one step.
type settings struct {
	cfg      *Config
	exposure Exposure
	// token is the sha256 of the bearer token; comparing hashes keeps the
	// comparison constant-time whatever the length presented.
	token    [32]byte
	hasToken bool
	// approver is the sha256 of the approver token; approvals need it.
	approver    [32]byte
	hasApprover bool
}

// New builds an Engine. ApplyConfig must succeed before it serves.
func New(o Options) *Engine {
	e := &Engine{
		logger:   o.Logger,
		store:    o.Store,
		inbox:    o.Inbox,
		now:      o.Now,
		gatherer: o.Gatherer,
		reload:   o.Reload,
		wake:     make(chan struct{}, 1),
		backups:  make(chan struct{}, 1),
		auditKey: o.AuditKey,
	}
	e.intakeBudget.limit = IntakeMemoryBudget
	if e.logger == nil {
		e.logger = slog.New(slog.DiscardHandler)
	}
	if e.inbox == nil {
		e.inbox = o.Store
	}
	if e.now == nil {
		e.now = time.Now
	}
	e.metrics = newMetrics(o.Registerer, e)
	return e
}

// ApplyConfig validates what cfg refers to (the token files) and swaps it
// in. On error the previous configuration stays in force. A token that is
// short or the example file's placeholder is refused on a listener other
// hosts can reach, and warned about on loopback; the approver token must
// differ from the API token, or anyone who can post alerts could approve.
// Authentication in force is never dropped unless the new config says
// web.insecure = true.
func (e *Engine) ApplyConfig(cfg *Config) error {
	x, err := CheckExposure(cfg.Web)
	if err != nil {
		return err
	}
	if prev := e.settings.Load(); prev != nil && len(prev.exposure.Auth) > 0 && len(x.Auth) == 0 && !cfg.Web.Insecure {
		return fmt.Errorf("the new configuration turns authentication off (%s); set web.insecure = true to mean it", strings.Join(prev.exposure.Auth, ", "))
	}
	s := &settings{cfg: cfg, exposure: x}
	var api, approver string
	for _, t := range []struct {
		path, key string
		tok       *string
	}{{cfg.Web.BearerTokenFile, "web.bearer_token_file", &api}, {cfg.Web.ApproverTokenFile, "web.approver_token_file", &approver}} {
		if t.path == "" {
			continue
		}
		tok, err := ReadToken(t.path)
		if err != nil {
			return err
		}
		if why := weakToken(tok); why != "" {
			if !x.Loopback {
				return fmt.Errorf("%s %s: the token is %s; use at least %d random bytes (openssl rand -hex 32) on a listener other hosts can reach", t.key, t.path, why, minTokenLen)
			}
			e.logger.Warn("weak token; acceptable only because the listener is loopback", "file", t.path, "why", why)
		}
		*t.tok = tok
	}
	if api != "" && api == approver {
		return fmt.Errorf("web.approver_token_file holds the same token as web.bearer_token_file: whoever can post alerts could approve; give approvers their own")
	}
	if api != "" {
		s.token, s.hasToken = sha256.Sum256([]byte(api)), true
	}
	if approver != "" {
		s.approver, s.hasApprover = sha256.Sum256([]byte(approver)), true
	}
	e.settings.Store(s)
	return nil
}

// minTokenLen is the shortest token medic takes on a listener other hosts
// can reach.
const minTokenLen = 16

// examplePlaceholder is the text of examples/token.
const examplePlaceholder = "change-me-to-a-long-random-string"

// weakToken says why a token is too weak, or "".
func weakToken(tok string) string {
	switch {
	case tok == examplePlaceholder:
		return "the example file's placeholder"
	case len(tok) < minTokenLen:
		return fmt.Sprintf("%d bytes, shorter than %d", len(tok), minTokenLen)
	}
	return ""
}

// ReadToken reads a secret from a file, trimming surrounding whitespace, and
// refuses an empty one.
func ReadToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read token file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("token file %s is empty", path)
	}
	return tok, nil
}

// Config returns the configuration in force.
func (e *Engine) Config() *Config { return e.settings.Load().cfg }

// ReloadResult records the outcome of a reload in the metrics.
func (e *Engine) ReloadResult(err error) {
	if err != nil {
		e.metrics.reloadSuccess.Set(0)
		return
	}
	e.metrics.reloadSuccess.Set(1)
	e.metrics.reloadSuccessTime.Set(float64(e.now().Unix()))
}

// SetReady flips /-/ready. main sets it once the state is open, the config
// is loaded and the listener is bound, and clears it when draining.
func (e *Engine) SetReady(v bool) { e.ready.Store(v) }

// authorized checks the bearer token when one is configured.
func (s *settings) authorized(header string) bool {
	if !s.hasToken {
		return true
	}
	return bearerMatches(header, s.token)
}

// approverAuthorized checks the approver token. Without one configured,
// nobody can approve: approvals are never open.
func (s *settings) approverAuthorized(header string) bool {
	return s.hasApprover && bearerMatches(header, s.approver)
}

func bearerMatches(header string, want [32]byte) bool {
	const prefix = "Bearer "
	if len(header) < len(prefix) || !strings.EqualFold(header[:len(prefix)], prefix) {
		return false
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(header[len(prefix):])))
	return subtle.ConstantTimeCompare(got[:], want[:]) == 1
}

var errNoReload = errors.New("reload is not wired")

// InstrumentLLM points a decider's LLM client at the engine's metrics.
func (e *Engine) InstrumentLLM(d *Decider) {
	if d == nil || d.LLM == nil {
		return
	}
	provider := d.LLM.Provider.Name()
	m := e.metrics
	d.LLM.Observe = func(result string, took time.Duration, in, out int) {
		m.llmRequests.WithLabelValues(provider, result).Inc()
		if took > 0 {
			m.llmDuration.Observe(took.Seconds())
		}
		if in > 0 {
			m.llmTokens.WithLabelValues(provider, "prompt").Add(float64(in))
		}
		if out > 0 {
			m.llmTokens.WithLabelValues(provider, "output").Add(float64(out))
		}
	}
}

package engine

import (
	"github.com/prometheus/client_golang/prometheus"

	"medic/state"
)

type metrics struct {
	notifications     *prometheus.CounterVec
	alertsReceived    *prometheus.CounterVec
	alertsProcessed   *prometheus.CounterVec
	incidentsOpened   prometheus.Counter
	incidentsClosed   prometheus.Counter
	incidentsPruned   prometheus.Counter
	deadLetters       prometheus.Counter
	httpDuration      *prometheus.HistogramVec
	reloadSuccess     prometheus.Gauge
	reloadSuccessTime prometheus.Gauge

	// The remediation loop's. Every label has a fixed set of values, but
	// tool, which is bounded by the runbooks' tools.
	incidents           *prometheus.CounterVec
	remediationDuration prometheus.Histogram
	actions             *prometheus.CounterVec
	verifications       *prometheus.CounterVec
	rollbacks           prometheus.Counter
	escalations         *prometheus.CounterVec
	policyDecisions     *prometheus.CounterVec
	shadowRuns          prometheus.Counter

	llmRequests  *prometheus.CounterVec
	llmTokens    *prometheus.CounterVec
	llmDuration  prometheus.Histogram
	llmProposals *prometheus.CounterVec
}

// The results of medic_verifications_total and the reasons of
// medic_escalations_total.
const (
	verifyRecovered    = "recovered"
	verifyWorse        = "worse"
	verifyUnchanged    = "unchanged"
	verifyUnverifiable = "unverifiable"

	escNoRunbook    = "no_runbook"
	escDenied       = "policy_denied"
	escFailed       = "action_failed"
	escPrecheck     = "precheck_failed"
	escWorse        = "worse"
	escExhausted    = "attempts_exhausted"
	escUnverifiable = "unverifiable"
	escDeadline     = "deadline"
	escRefire       = "refired_after_fix"
	escRestart      = "restart"
	escRunbook      = "runbook_escalates"
	escFlapping     = "flapping"
	escApproval     = "approval_needed"
	escNoApproval   = "approval_refused"
	escPlan         = "plan_rejected"
)

// The results of medic_alerts_processed_total.
const (
	resultOpened   = "opened"
	resultUpdated  = "updated"
	resultRepeated = "repeated"
	resultResolved = "resolved"
	resultStale    = "stale"
	resultIgnored  = "ignored"
)

func newMetrics(reg prometheus.Registerer, e *Engine) *metrics {
	m := &metrics{
		notifications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "medic_notifications_received_total",
			Help: "Webhook notifications received, by result: accepted, or the reason they were refused.",
		}, []string{"result"}),
		alertsReceived: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "medic_alerts_received_total",
			Help: "Alerts in accepted notifications, by status.",
		}, []string{"status"}),
		alertsProcessed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "medic_alerts_processed_total",
			Help: "Alerts turned into incident changes, by result.",
		}, []string{"result"}),
		incidentsOpened: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "medic_incidents_opened_total", Help: "Incidents opened.",
		}),
		incidentsClosed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "medic_incidents_closed_total", Help: "Incidents closed because all their alerts resolved.",
		}),
		incidentsPruned: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "medic_incidents_pruned_total", Help: "Closed incidents deleted by retention.",
		}),
		deadLetters: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "medic_inbox_dead_letters_total", Help: "Inbox entries that could not be processed and were set aside.",
		}),
		httpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "medic_http_request_duration_seconds",
			Help:    "Duration of HTTP requests, by handler and status code.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10},
		}, []string{"handler", "code"}),
		reloadSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "medic_config_last_reload_successful", Help: "Whether the last configuration reload succeeded.",
		}),
		reloadSuccessTime: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "medic_config_last_reload_success_timestamp_seconds", Help: "Time of the last successful configuration reload.",
		}),
	}
	m.incidents = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "medic_incidents_total", Help: "Incidents settled, by outcome: remediated, escalated, self_resolved; ignored counts ignored alerts.",
	}, []string{"outcome"})
	m.remediationDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "medic_remediation_duration_seconds",
		Help:    "Time from an incident's opening to the recovery verification saw.",
		Buckets: []float64{5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600},
	})
	m.actions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "medic_actions_total", Help: "Tool executions, by tool and result (succeeded, failed).",
	}, []string{"tool", "result"})
	m.verifications = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "medic_verifications_total", Help: "Verifications after a step, by result: recovered, worse, unchanged, unverifiable.",
	}, []string{"result"})
	m.rollbacks = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "medic_rollbacks_total", Help: "Rollbacks run after a step made things worse.",
	})
	m.escalations = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "medic_escalations_total", Help: "Escalations to a human, by reason.",
	}, []string{"reason"})
	m.policyDecisions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "medic_policy_decisions_total", Help: "Policy gate decisions, by result: allow, deny, needs_approval.",
	}, []string{"result"})
	m.shadowRuns = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "medic_shadow_runs_total", Help: "Remediations run in shadow mode: decided and recorded, nothing run.",
	})
	m.llmRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "medic_llm_requests_total", Help: "LLM requests, by provider and result: ok, retry, error, truncated, invalid_json, budget.",
	}, []string{"provider", "result"})
	m.llmTokens = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "medic_llm_tokens_total", Help: "Tokens the provider reported, by provider and kind: prompt, output.",
	}, []string{"provider", "kind"})
	m.llmDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "medic_llm_request_duration_seconds", Help: "Duration of LLM requests, each try.",
		Buckets: []float64{.1, .25, .5, 1, 2.5, 5, 10, 20, 30, 60},
	})
	m.llmProposals = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "medic_llm_proposals_total", Help: "LLM proposals, by result: accepted, invalid_tool, invalid_args, unknown_target, low_confidence, denied_by_policy.",
	}, []string{"result"})
	if reg == nil {
		return m
	}
	reg.MustRegister(m.llmRequests, m.llmTokens, m.llmDuration, m.llmProposals)
	for _, r := range []string{proposalAccepted, proposalInvalidTool, proposalInvalidArgs, proposalUnknownTarget, proposalLowConfidence, proposalDenied} {
		m.llmProposals.WithLabelValues(r)
	}
	reg.MustRegister(m.incidents, m.remediationDuration, m.actions, m.verifications, m.rollbacks, m.escalations, m.policyDecisions, m.shadowRuns)
	for _, o := range []string{state.OutcomeRemediated, state.OutcomeEscalated, state.OutcomeSelfResolved, "ignored"} {
		m.incidents.WithLabelValues(o)
	}
	for _, r := range []string{verifyRecovered, verifyWorse, verifyUnchanged, verifyUnverifiable} {
		m.verifications.WithLabelValues(r)
	}
	for _, r := range []string{escNoRunbook, escDenied, escFailed, escPrecheck, escWorse, escExhausted, escUnverifiable, escDeadline, escRefire, escRestart, escRunbook, escFlapping, escApproval, escNoApproval, escPlan} {
		m.escalations.WithLabelValues(r)
	}
	for _, r := range []string{"allow", "deny", "needs_approval"} {
		m.policyDecisions.WithLabelValues(r)
	}
	reg.MustRegister(m.notifications, m.alertsReceived, m.alertsProcessed, m.incidentsOpened, m.incidentsClosed,
		m.incidentsPruned, m.deadLetters, m.httpDuration, m.reloadSuccess, m.reloadSuccessTime,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "medic_inbox_depth", Help: "Accepted notifications not yet processed.",
		}, func() float64 { return float64(e.store.InboxDepth()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "medic_incidents_open", Help: "Incidents in the open state.",
		}, func() float64 { return float64(e.store.OpenIncidents()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "medic_inbox_commits_total", Help: "bbolt commits that carried inbox writes; each commit is one group of notifications.",
		}, func() float64 { return float64(e.store.InboxCommits()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "medic_state_write_transactions_total", Help: "Write transactions committed to the state file; each one is fsynced.",
		}, func() float64 { return float64(e.store.WriteTransactions()) }),
	)
	for _, r := range []string{"accepted", ReasonInvalidJSON, ReasonInvalidPayload, ReasonLimitExceeded, ReasonTooLarge,
		ReasonUnsupportedMediaType, ReasonUnauthorized, ReasonMethodNotAllowed, ReasonStoreFailed, ReasonOverloaded} {
		m.notifications.WithLabelValues(r)
	}
	for _, r := range []string{resultOpened, resultUpdated, resultRepeated, resultResolved, resultStale, resultIgnored} {
		m.alertsProcessed.WithLabelValues(r)
	}
	return m
}

package engine

import (
	"github.com/prometheus/client_golang/prometheus"
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
}

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
	if reg == nil {
		return m
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
	)
	for _, r := range []string{"accepted", ReasonInvalidJSON, ReasonInvalidPayload, ReasonLimitExceeded, ReasonTooLarge,
		ReasonUnsupportedMediaType, ReasonUnauthorized, ReasonMethodNotAllowed, ReasonStoreFailed} {
		m.notifications.WithLabelValues(r)
	}
	for _, r := range []string{resultOpened, resultUpdated, resultRepeated, resultResolved, resultStale, resultIgnored} {
		m.alertsProcessed.WithLabelValues(r)
	}
	return m
}

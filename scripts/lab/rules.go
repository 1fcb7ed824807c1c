package main

// labRules are the public alert rules the shipped runbooks answer, with
// their expressions as published and only `for` shortened, so that each
// scenario takes seconds:
//   - KafkaConsumersGroup: awesome-prometheus-alerts (kafka_exporter), for
//     1m there, 4s here (the lab's stall window is 5s).
//   - PrometheusTargetMissing: awesome-prometheus-alerts, for 0m there, 1s
//     here, so that one scrape lost while a service restarts is not an
//     outage.
//   - ServiceMemoryLeak: examples/prometheus/medic-rules.yml, for 15m
//     there, 2s here.
//   - NodeFilesystemAlmostOutOfSpace: node-mixin as it renders with its
//     default selectors, for 30m there, 2s here.
//   - ServiceLatencyHigh: examples/prometheus/medic-rules.yml, for 10m
//     and a 5m rate window there, 10s and 5s here (and the lab sets the
//     runbook's service_latency_window to match). As in production, the
//     alert fires once latency has settled at its worst, not while the
//     queues still fill: verification compares with that.
//   - CheckoutErrors is the lab's own: half of a service's requests fail,
//     a fault no shipped runbook covers.
const labRules = `groups:
  - name: lab
    interval: 1s
    rules:
      - alert: KafkaConsumersGroup
        expr: sum(kafka_consumergroup_lag) by (consumergroup) > 50
        for: 4s
        labels:
          severity: critical
        annotations:
          summary: Kafka consumers group {{ $labels.consumergroup }} lags {{ $value }} messages.
      - alert: PrometheusTargetMissing
        expr: up == 0
        for: 1s
        labels:
          severity: critical
        annotations:
          summary: Prometheus target {{ $labels.instance }} of job {{ $labels.job }} is missing.
      - alert: ServiceMemoryLeak
        expr: |
          process_resident_memory_bytes > 1.5 * min_over_time(process_resident_memory_bytes[1h])
          and deriv(process_resident_memory_bytes[30m]) > 0
        for: 2s
        labels:
          severity: warning
        annotations:
          summary: "{{ $labels.job }} on {{ $labels.instance }} leaks memory: {{ $value | humanize1024 }}B resident."
      - alert: NodeFilesystemAlmostOutOfSpace
        expr: |
          (
            node_filesystem_avail_bytes{job="node",fstype!="",mountpoint!=""} / node_filesystem_size_bytes{job="node",fstype!="",mountpoint!=""} * 100 < 5
          and
            node_filesystem_readonly{job="node",fstype!="",mountpoint!=""} == 0
          )
        for: 2s
        labels:
          severity: warning
      - alert: NodeFilesystemAlmostOutOfSpace
        expr: |
          (
            node_filesystem_avail_bytes{job="node",fstype!="",mountpoint!=""} / node_filesystem_size_bytes{job="node",fstype!="",mountpoint!=""} * 100 < 3
          and
            node_filesystem_readonly{job="node",fstype!="",mountpoint!=""} == 0
          )
        for: 2s
        labels:
          severity: critical
      - alert: ServiceLatencyHigh
        expr: histogram_quantile(0.99, sum by (job, le) (rate(http_request_duration_seconds_bucket[5s]))) > 0.5
        for: 10s
        labels:
          severity: warning
      - alert: CheckoutErrors
        expr: |
          sum by (job, instance) (rate(http_requests_total{code="500"}[5s]))
            / sum by (job, instance) (rate(http_requests_total[5s])) > 0.5
        for: 2s
        labels:
          severity: critical
        annotations:
          summary: "{{ $labels.job }} fails {{ $value | humanizePercentage }} of its requests."
`

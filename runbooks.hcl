# runbooks.hcl: the tools and runbooks that ship with medic.
#
# Alert names and labels follow the public rule sets: kubernetes-mixin
# (kube-prometheus), the node-exporter mixin, the cert-manager mixin, and
# danielqsj/kafka_exporter metrics. Where no public rule exists, the rule
# ships in examples/prometheus/medic-rules.yml. The README lists which rule
# each runbook expects. `medic check runbooks.hcl` validates this file.
#
# Every string parameter has a pattern or an enum (patterns are anchored at
# both ends) and may not start with "-", so no label value can become a
# command-line option. Programs are never templated. Tools inherit nothing
# of medic's environment: the Kubernetes tools read the cluster credentials
# from /etc/medic/kubeconfig, readable by the medic user.

# ---------------------------------------------------------------- tools ---

tool "k8s_deployment_json" {
  description = "Read a Deployment as JSON (read-only)."
  risk        = "low"
  read_only   = true
  timeout     = "15s"
  param "namespace" { pattern = "[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?" }
  param "deployment" { pattern = "[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?" }
  exec {
    env     = { KUBECONFIG = "/etc/medic/kubeconfig", HOME = "/var/lib/medic" }
    command = ["kubectl", "--namespace", "${param.namespace}", "get", "deployment", "${param.deployment}", "--output", "json"]
  }
}

tool "k8s_set_memory_limit" {
  description = "Set the memory limit of one container of a Deployment, in MiB. Rolls the Deployment."
  risk        = "medium"
  llm         = true
  timeout     = "60s"
  param "namespace" { pattern = "[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?" }
  param "deployment" { pattern = "[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?" }
  param "container" { pattern = "[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?" }
  param "memory_mib" {
    description = "The new limit. Bounded so that a runaway template cannot claim a node."
    type        = "int"
    min         = 64
    max         = 16384
  }
  exec {
    env     = { KUBECONFIG = "/etc/medic/kubeconfig", HOME = "/var/lib/medic" }
    command = ["kubectl", "--namespace", "${param.namespace}", "set", "resources", "deployment/${param.deployment}",
    "--containers=${param.container}", "--limits=memory=${param.memory_mib}Mi"]
    dry_run = ["kubectl", "--namespace", "${param.namespace}", "set", "resources", "deployment/${param.deployment}",
    "--containers=${param.container}", "--limits=memory=${param.memory_mib}Mi", "--dry-run=server"]
  }
  rollback {
    tool = "k8s_rollout_undo"
    args = { namespace = "${param.namespace}", deployment = "${param.deployment}" }
  }
  idempotency_key    = "${param.namespace}/${param.deployment}/memory"
  idempotency_window = "30m"
}

tool "k8s_rollout_undo" {
  description = "Roll a Deployment back to its previous revision."
  risk        = "medium"
  timeout     = "60s"
  param "namespace" { pattern = "[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?" }
  param "deployment" { pattern = "[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?" }
  exec {
    env     = { KUBECONFIG = "/etc/medic/kubeconfig", HOME = "/var/lib/medic" }
    command = ["kubectl", "--namespace", "${param.namespace}", "rollout", "undo", "deployment/${param.deployment}"]
    dry_run = ["kubectl", "--namespace", "${param.namespace}", "rollout", "undo", "deployment/${param.deployment}", "--dry-run=server"]
  }
}

tool "k8s_scale" {
  description = "Set the replica count of a Deployment, within 1 to 50."
  risk        = "medium"
  llm         = true
  timeout     = "30s"
  param "namespace" { pattern = "[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?" }
  param "deployment" { pattern = "[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?" }
  param "replicas" {
    type = "int"
    min  = 1
    max  = 50
  }
  exec {
    env     = { KUBECONFIG = "/etc/medic/kubeconfig", HOME = "/var/lib/medic" }
    command = ["kubectl", "--namespace", "${param.namespace}", "scale", "deployment/${param.deployment}", "--replicas=${param.replicas}"]
    dry_run = ["kubectl", "--namespace", "${param.namespace}", "scale", "deployment/${param.deployment}", "--replicas=${param.replicas}", "--dry-run=server"]
  }
  idempotency_key    = "${param.namespace}/${param.deployment}/scale"
  idempotency_window = "15m"
}

tool "kafka_dead_letter" {
  description = "Copy the message at one offset of a partition to a dead-letter topic (kcat)."
  risk        = "medium"
  timeout     = "60s"
  param "bootstrap" {
    pattern = "[a-z0-9]([-a-z0-9.]*[a-z0-9])?:[0-9]{1,5}"
    default = "localhost:9092"
  }
  param "topic" { pattern = "[a-zA-Z0-9._]([a-zA-Z0-9._-]{0,248})" }
  param "partition" {
    type = "int"
    min  = 0
    max  = 100000
  }
  param "offset" {
    type = "int"
    min  = 0
    max  = 9007199254740991
  }
  param "dead_letter_topic" { pattern = "[a-zA-Z0-9._]([a-zA-Z0-9._-]{0,248})" }
  exec {
    command = ["/usr/lib/medic/tools/medic-kafka-dead-letter", "${param.bootstrap}", "${param.topic}", "${param.partition}",
    "${param.offset}", "${param.dead_letter_topic}"]
  }
}

tool "kafka_skip_offset" {
  description = "Move a consumer group past one offset of one partition (kafka-consumer-groups). The group must have no active members."
  risk        = "high"
  timeout     = "60s"
  param "bootstrap" {
    pattern = "[a-z0-9]([-a-z0-9.]*[a-z0-9])?:[0-9]{1,5}"
    default = "localhost:9092"
  }
  param "group" { pattern = "[a-zA-Z0-9._]([a-zA-Z0-9._-]{0,248})" }
  param "topic" { pattern = "[a-zA-Z0-9._]([a-zA-Z0-9._-]{0,248})" }
  param "partition" {
    type = "int"
    min  = 0
    max  = 100000
  }
  param "to_offset" {
    type = "int"
    min  = 1
    max  = 9007199254740991
  }
  exec {
    command = ["kafka-consumer-groups", "--bootstrap-server", "${param.bootstrap}", "--group", "${param.group}",
    "--topic", "${param.topic}:${param.partition}", "--reset-offsets", "--to-offset", "${param.to_offset}", "--execute"]
    dry_run = ["kafka-consumer-groups", "--bootstrap-server", "${param.bootstrap}", "--group", "${param.group}",
    "--topic", "${param.topic}:${param.partition}", "--reset-offsets", "--to-offset", "${param.to_offset}", "--dry-run"]
  }
  idempotency_key    = "${param.group}/${param.topic}/${param.partition}/${param.to_offset}"
  idempotency_window = "1h"
}

tool "systemd_start" {
  description = "Start a systemd unit on this host, e.g. a oneshot like logrotate.service."
  risk        = "low"
  timeout     = "5m"
  param "unit" { enum = ["logrotate.service"] }
  systemd {
    unit   = "${param.unit}"
    action = "start"
  }
  idempotency_key    = "${param.unit}"
  idempotency_window = "30m"
}

tool "cert_manager_renew" {
  description = "Ask cert-manager to renew a Certificate now (cmctl renew)."
  risk        = "low"
  llm         = true
  timeout     = "60s"
  param "namespace" { pattern = "[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?" }
  param "certificate" { pattern = "[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?" }
  exec {
    env     = { KUBECONFIG = "/etc/medic/kubeconfig", HOME = "/var/lib/medic" }
    command = ["cmctl", "renew", "--namespace", "${param.namespace}", "${param.certificate}"]
  }
  idempotency_key    = "${param.namespace}/${param.certificate}"
  idempotency_window = "1h"
}

# ------------------------------------------------------------- runbooks ---

runbook "oom_killed_raise_limit" {
  description = "A container was OOMKilled because its memory limit is too tight: raise the limit by 25%, at most 16 GiB, and roll back if restarts do not stop."
  priority    = 20
  # KubeContainerOOMKilled: examples/prometheus/medic-rules.yml;
  # KubernetesContainerOomKiller: awesome-prometheus-alerts (kube-state-metrics).
  # Both carry namespace, pod and container.
  matchers = ["alertname=~\"KubeContainerOOMKilled|KubernetesContainerOomKiller\""]
  target = "${labels.namespace}/${query.owner[0].labels.owner_name}"
  # The Deployment that owns the pod, through its ReplicaSet.
  query "owner" {
    promql = "max by (namespace, owner_name) (kube_replicaset_owner{namespace=\"${labels.namespace}\", owner_kind=\"Deployment\"} * on (namespace, replicaset) group_left () max by (namespace, replicaset) (label_replace(kube_pod_owner{namespace=\"${labels.namespace}\", pod=\"${labels.pod}\", owner_kind=\"ReplicaSet\"}, \"replicaset\", \"$1\", \"owner_name\", \"(.+)\")))"
  }
  query "limit" {
    promql = "max(kube_pod_container_resource_limits{namespace=\"${labels.namespace}\", pod=\"${labels.pod}\", container=\"${labels.container}\", resource=\"memory\"})"
  }
  when       = "len(query.owner) == 1 && len(query.limit) == 1 && query.limit[0].value > 0"
  confidence = "0.9"
  step "raise_limit" {
    tool = "k8s_set_memory_limit"
    args = {
      namespace  = "${labels.namespace}"
      deployment = "${query.owner[0].labels.owner_name}"
      container  = "${labels.container}"
      memory_mib = "${min(16384, ceil(query.limit[0].value * 1.25 / 1048576))}"
    }
  }
  verify {
    promql = "sum(increase(kube_pod_container_status_restarts_total{namespace=\"${labels.namespace}\", container=\"${labels.container}\"}[10m]))"
    expect = "after == 0"
    wait   = "10m"
  }
  max_attempts = 2
}

runbook "crashloop_oom" {
  description = "A pod crash-loops and its containers were last terminated by the OOM killer: raise the memory limit by 25%."
  priority    = 10
  matchers = ["alertname=\"KubePodCrashLooping\""]
  target = "${labels.namespace}/${query.owner[0].labels.owner_name}"
  query "oom" {
    promql = "kube_pod_container_status_last_terminated_reason{namespace=\"${labels.namespace}\", pod=\"${labels.pod}\", container=\"${labels.container}\", reason=\"OOMKilled\"}"
  }
  query "owner" {
    promql = "max by (namespace, owner_name) (kube_replicaset_owner{namespace=\"${labels.namespace}\", owner_kind=\"Deployment\"} * on (namespace, replicaset) group_left () max by (namespace, replicaset) (label_replace(kube_pod_owner{namespace=\"${labels.namespace}\", pod=\"${labels.pod}\", owner_kind=\"ReplicaSet\"}, \"replicaset\", \"$1\", \"owner_name\", \"(.+)\")))"
  }
  query "limit" {
    promql = "max(kube_pod_container_resource_limits{namespace=\"${labels.namespace}\", pod=\"${labels.pod}\", container=\"${labels.container}\", resource=\"memory\"})"
  }
  # Crash loops have many causes; only OOM evidence makes this runbook sure.
  when       = "any(query.oom, .value == 1) && len(query.owner) == 1 && len(query.limit) == 1"
  confidence = "0.85"
  step "raise_limit" {
    tool = "k8s_set_memory_limit"
    args = {
      namespace  = "${labels.namespace}"
      deployment = "${query.owner[0].labels.owner_name}"
      container  = "${labels.container}"
      memory_mib = "${min(16384, ceil(query.limit[0].value * 1.25 / 1048576))}"
    }
  }
  verify {
    promql = "sum(increase(kube_pod_container_status_restarts_total{namespace=\"${labels.namespace}\", container=\"${labels.container}\"}[10m]))"
    expect = "after == 0"
    wait   = "10m"
  }
  max_attempts = 2
}

runbook "kafka_poison_pill" {
  description = "Consumer lag grows on exactly one partition whose committed offset has not moved in 10 minutes: a poison-pill message. Copy it to the dead-letter topic, then move the group past it."
  priority    = 20
  mode        = "approve"
  # KafkaConsumersGroup: awesome-prometheus-alerts' kafka_exporter rule,
  # sum by (consumergroup) of the lag, which carries only the group; the
  # topic and partition come from the group's lag, over all its topics.
  matchers = ["alertname=~\"KafkaConsumerGroupLagHigh|KafkaConsumersGroup\""]
  target   = "${labels.consumergroup}/${query.stuck[0].labels.topic}"
  query "lagging" {
    promql = "kafka_consumergroup_lag{consumergroup=\"${labels.consumergroup}\"} > 100"
  }
  # The committed offset of each lagging partition that did not move.
  query "stuck" {
    promql = "kafka_consumergroup_current_offset{consumergroup=\"${labels.consumergroup}\"} and on (topic, partition) (kafka_consumergroup_lag{consumergroup=\"${labels.consumergroup}\"} > 100) and on (topic, partition) (delta(kafka_consumergroup_current_offset{consumergroup=\"${labels.consumergroup}\"}[10m]) == 0)"
  }
  when       = "len(query.lagging) == 1 && len(query.stuck) == 1"
  confidence = "0.9"
  step "dead_letter" {
    tool = "kafka_dead_letter"
    args = {
      topic             = "${query.stuck[0].labels.topic}"
      partition         = "${query.stuck[0].labels.partition}"
      offset            = "${query.stuck[0].value}"
      dead_letter_topic = "${query.stuck[0].labels.topic}.dlq"
    }
  }
  step "skip" {
    tool = "kafka_skip_offset"
    args = {
      group     = "${labels.consumergroup}"
      topic     = "${query.stuck[0].labels.topic}"
      partition = "${query.stuck[0].labels.partition}"
      to_offset = "${query.stuck[0].value + 1}"
    }
  }
  verify {
    promql = "sum(kafka_consumergroup_lag{consumergroup=\"${labels.consumergroup}\"})"
    expect = "after < before"
    wait   = "5m"
  }
}

runbook "kafka_lag_all_partitions" {
  description = "Consumer lag grows across most partitions: the consumers are too few. Scale the consumer Deployment (named after its group) by two replicas, at most 50."
  priority    = 10
  matchers = ["alertname=~\"KafkaConsumerGroupLagHigh|KafkaConsumersGroup\""]
  target   = "${query.replicas[0].labels.namespace}/${labels.consumergroup}"
  query "partitions" {
    promql = "kafka_consumergroup_lag{consumergroup=\"${labels.consumergroup}\"}"
  }
  # kafka_exporter knows no Kubernetes namespace: the Deployment is the one
  # named after the group, in whichever namespace has it; none, or one in
  # several namespaces, does not match, and the alert escalates.
  query "replicas" {
    promql = "kube_deployment_spec_replicas{deployment=\"${labels.consumergroup}\"}"
  }
  when       = "len(query.partitions) >= 2 && count(query.partitions, .value > 100) >= len(query.partitions) / 2 && len(query.replicas) == 1"
  confidence = "count(query.partitions, .value > 100) == len(query.partitions) ? 0.9 : 0.75"
  step "scale_out" {
    tool = "k8s_scale"
    args = {
      namespace  = "${query.replicas[0].labels.namespace}"
      deployment = "${labels.consumergroup}"
      replicas   = "${min(50, query.replicas[0].value + 2)}"
    }
    rollback {
      tool = "k8s_scale"
      args = { replicas = "${query.replicas[0].value}" }
    }
  }
  verify {
    promql = "sum(kafka_consumergroup_lag{consumergroup=\"${labels.consumergroup}\"})"
    expect = "after < before"
    wait   = "10m"
  }
}

runbook "disk_full_log_rotation" {
  description = "/var/log on this host fills up because log rotation did not run: run logrotate now."
  priority    = 10
  # systemd actions act on the host medic runs on; list its node-exporter.
  matchers = ["alertname=~\"NodeFilesystemSpaceFillingUp|NodeFilesystemAlmostOutOfSpace\"", "instance=~\"(localhost|127\\\\.0\\\\.0\\\\.1):9100\""]
  target = "${labels.instance}${labels.mountpoint}"
  query "last_rotation" {
    promql = "time() - node_systemd_timer_last_trigger_seconds{instance=\"${labels.instance}\", name=\"logrotate.timer\"}"
  }
  when       = "labels.mountpoint in ['/var/log', '/var'] && len(query.last_rotation) == 1 && query.last_rotation[0].value > 86400 * 2"
  confidence = "0.8"
  step "rotate" {
    tool = "systemd_start"
    args = { unit = "logrotate.service" }
  }
  verify {
    promql = "node_filesystem_avail_bytes{instance=\"${labels.instance}\", mountpoint=\"${labels.mountpoint}\"}"
    expect = "after > before"
    worse  = "after < before"
    wait   = "2m"
  }
}

runbook "circuit_breaker_slow_downstream" {
  description = "A circuit breaker opened because the downstream it protects is slow: scale the downstream Deployment (named like the breaker) out by two replicas."
  priority    = 10
  matchers = ["alertname=\"CircuitBreakerOpen\""]
  target = "${labels.namespace}/${labels.name}"
  query "downstream_p99" {
    promql = "histogram_quantile(0.99, sum by (le) (rate(http_server_requests_seconds_bucket{namespace=\"${labels.namespace}\", application=\"${labels.name}\"}[5m])))"
  }
  query "downstream_errors" {
    promql = "sum(rate(http_server_requests_seconds_count{namespace=\"${labels.namespace}\", application=\"${labels.name}\", status=~\"5..\"}[5m])) / sum(rate(http_server_requests_seconds_count{namespace=\"${labels.namespace}\", application=\"${labels.name}\"}[5m]))"
  }
  query "replicas" {
    promql = "kube_deployment_spec_replicas{namespace=\"${labels.namespace}\", deployment=\"${labels.name}\"}"
  }
  # Slow, not failing: a downstream that returns errors needs a human.
  when       = "len(query.downstream_p99) == 1 && query.downstream_p99[0].value > 1 && len(query.replicas) == 1 && (len(query.downstream_errors) == 0 || query.downstream_errors[0].value < 0.05)"
  confidence = "0.75"
  step "scale_out" {
    tool = "k8s_scale"
    args = {
      namespace  = "${labels.namespace}"
      deployment = "${labels.name}"
      replicas   = "${min(50, query.replicas[0].value + 2)}"
    }
    rollback {
      tool = "k8s_scale"
      args = { replicas = "${query.replicas[0].value}" }
    }
  }
  verify {
    promql = "histogram_quantile(0.99, sum by (le) (rate(http_server_requests_seconds_bucket{namespace=\"${labels.namespace}\", application=\"${labels.name}\"}[5m])))"
    expect = "after < before"
    wait   = "5m"
  }
}

runbook "latency_slo_scale_out" {
  description = "p99 latency of a service is over its SLO while it saturates its CPU: scale out by two replicas."
  priority    = 10
  matchers = ["alertname=\"HTTPLatencyP99AboveSLO\""]
  target = "${labels.namespace}/${labels.deployment}"
  query "cpu_saturation" {
    promql = "sum(rate(container_cpu_usage_seconds_total{namespace=\"${labels.namespace}\", pod=~\"${labels.deployment}-.*\", container!=\"\"}[5m])) / sum(kube_pod_container_resource_requests{namespace=\"${labels.namespace}\", pod=~\"${labels.deployment}-.*\", resource=\"cpu\"})"
  }
  query "replicas" {
    promql = "kube_deployment_spec_replicas{namespace=\"${labels.namespace}\", deployment=\"${labels.deployment}\"}"
  }
  when       = "len(query.replicas) == 1 && query.replicas[0].value < 50 && len(query.cpu_saturation) == 1"
  confidence = "query.cpu_saturation[0].value > 0.8 ? 0.85 : 0.5"
  step "scale_out" {
    tool = "k8s_scale"
    args = {
      namespace  = "${labels.namespace}"
      deployment = "${labels.deployment}"
      replicas   = "${min(50, query.replicas[0].value + 2)}"
    }
    rollback {
      tool = "k8s_scale"
      args = { replicas = "${query.replicas[0].value}" }
    }
  }
  verify {
    promql = "histogram_quantile(0.99, sum by (le) (rate(http_server_requests_seconds_bucket{namespace=\"${labels.namespace}\", application=\"${labels.deployment}\"}[5m])))"
    expect = "after < before"
    wait   = "5m"
  }
}

runbook "certificate_expiring_renew" {
  description = "A cert-manager Certificate expires soon and was not renewed: ask cert-manager to renew it now."
  priority    = 10
  matchers = ["alertname=\"CertManagerCertExpirySoon\""]
  target     = "${labels.exported_namespace}/${labels.name}"
  when       = "labels.exported_namespace != '' && labels.name != ''"
  confidence = "0.9"
  step "renew" {
    tool = "cert_manager_renew"
    args = { namespace = "${labels.exported_namespace}", certificate = "${labels.name}" }
  }
  verify {
    promql = "certmanager_certificate_expiration_timestamp_seconds{exported_namespace=\"${labels.exported_namespace}\", name=\"${labels.name}\"} - time()"
    expect = "after > before + 86400"
    # The remaining time shrinks by itself; a renewal cannot make it worse.
    worse  = "false"
    wait   = "5m"
  }
}

# ------------------------------------------- escalate-only: never automated ---

runbook "security_escalate" {
  description = "Security alerts (intrusion, Falco rules, anything labelled category=security) are never acted on."
  escalate    = true
  priority    = 100
  matchers = ["alertname=~\"Falco.*|.*Intrusion.*|.*Security.*|.*Malware.*|.*PrivilegeEscalation.*\""]
}

runbook "security_category_escalate" {
  description = "Alerts labelled category=security are never acted on."
  escalate    = true
  priority    = 100
  matchers = ["category=\"security\""]
}

runbook "data_corruption_escalate" {
  description = "Data corruption (checksum failures, corrupt blocks, replication divergence) needs a human."
  escalate    = true
  priority    = 100
  matchers = ["alertname=~\".*Corrupt.*|.*Checksum.*|.*DataLoss.*|.*ReplicationDiverge.*\""]
}

runbook "compliance_escalate" {
  description = "Compliance and audit alerts are never automated."
  escalate    = true
  priority    = 100
  matchers = ["alertname=~\".*Compliance.*|.*Audit.*\""]
}

runbook "ambiguous_multi_signal" {
  description = "Three or more different alerts fire in the same namespace: the cause is ambiguous, so escalate instead of treating one symptom."
  escalate    = true
  priority    = 50
  matchers = ["alertname=~\".+\"", "namespace=~\".+\""]
  query "firing" {
    promql = "count by (alertname) (ALERTS{alertstate=\"firing\", namespace=\"${labels.namespace}\", alertname!~\"Watchdog|PrometheusAlertmanagerE2eDeadManSwitch|InfoInhibitor\"})"
  }
  when = "len(query.firing) >= 3"
}

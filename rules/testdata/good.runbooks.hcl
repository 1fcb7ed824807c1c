tool "set_memory_limit" {
  description = "Scale a deployment's memory limit by a bounded factor."
  risk        = "medium"
  llm         = true
  timeout     = "60s"
  param "namespace" { pattern = "^[a-z0-9-]{1,63}$" }
  param "deployment" { pattern = "^[a-z0-9.-]{1,253}$" }
  param "factor" {
    type = "number"
    min  = 0.5
    max  = 1.5
  }
  exec {
    command = ["medic-k8s", "set-memory", "--namespace", "${param.namespace}", "--deployment", "${param.deployment}", "--factor", "${param.factor}"]
    dry_run = ["medic-k8s", "set-memory", "--dry-run", "--namespace", "${param.namespace}", "--deployment", "${param.deployment}", "--factor", "${param.factor}"]
  }
  idempotency_key    = "${param.namespace}/${param.deployment}"
  idempotency_window = "10m"
}

tool "pod_status" {
  description = "Read a pod's status as JSON."
  risk        = "low"
  read_only   = true
  param "namespace" { pattern = "^[a-z0-9-]{1,63}$" }
  param "pod" { pattern = "^[a-z0-9.-]{1,253}$" }
  exec {
    command = ["kubectl", "-n", "${param.namespace}", "get", "pod", "${param.pod}", "-o", "json"]
  }
}

runbook "oom_killed" {
  description = "Container OOMKilled because its memory limit is too tight."
  mode        = "auto"
  priority    = 10
  matchers = ["alertname=\"KubePodOOMKilled\"", "namespace=~\"prod-.*|staging\""]
  target = "${labels.namespace}/${labels.deployment}"
  query "restarts" {
    promql = "increase(kube_pod_container_status_restarts_total{namespace=\"${labels.namespace}\"}[15m])"
  }
  query "pod" {
    tool = "pod_status"
    args = { namespace = "${labels.namespace}", pod = "${labels.pod}" }
  }
  when       = "labels.severity in ['warning', 'critical'] && sum(query.restarts, .value) >= 2"
  confidence = "0.9"
  threshold  = 0.8
  step "raise_limit" {
    tool = "set_memory_limit"
    args = { namespace = "${labels.namespace}", deployment = "${labels.deployment}", factor = "1.25" }
    rollback {
      tool = "set_memory_limit"
      args = { factor = "0.8" }
    }
  }
  verify {
    promql = "sum(increase(kube_pod_container_status_restarts_total{namespace=\"${labels.namespace}\"}[5m]))"
    expect = "after == 0"
    wait   = "2m"
  }
  max_attempts = 2
}

runbook "security_alert" {
  description = "Security alerts are never automated."
  escalate    = true
  matchers = ["alertname=~\"Falco.*|.*Intrusion.*\""]
}

tool "restart" {
  description = "Restart a deployment."
  risk        = "medium"
  param "deployment" { pattern = "^[a-z0-9.-]{1,253}$" }
  exec {
    command = ["kubectl", "rollout", "restart", "deployment/${param.deployment}"]
  }
}
runbook "crash" {
  description = "Crash loop."
  matchers = ["alertname=\"KubePodCrashLooping\""]
  target      = "${labels.deployment}"
  escalate_to = "restart"
  step "restart" {
    tool = "restart"
    args = { deployment = "${labels.deployment}" }
  }
  verify {
    promql = "sum(kube_pod_container_status_restarts_total)"
    expect = "after == 0"
    worse  = "after > befor"
  }
}

tool "restart" {
  description = "Restart a deployment."
  risk        = "medium"
  timeout     = "soon"
  param "namespace" { pattern = "^[a-z0-9-]{1,63}$" }
  param "deployment" { pattern = "^[a-z0-9.-]{1,253}$" }
  exec {
    command = ["kubectl", "-n", "${param.namespace}", "rollout", "restart", "deployment/${param.deployment}"]
  }
}
runbook "crash" {
  description = "Crash loop."
  matchers = ["alertname=\"KubePodCrashLooping\""]
  target = "${labels.namespace}/${labels.deployment}"
  step "restart" {
    tool = "restart"
    args = { namespace = "${labels.namespace}", deployment = "${labels.deployment}" }
  }
}
runbook "polls_past_its_wait" {
  description = "Its verification would check only once."
  matchers = ["alertname=\"KubePodCrashLooping\""]
  target = "${labels.namespace}/${labels.deployment}-b"
  step "restart" {
    tool = "restart"
    args = { namespace = "${labels.namespace}", deployment = "${labels.deployment}" }
  }
  verify {
    promql   = "vector(0)"
    expect   = "after == 0"
    wait     = "1m"
    interval = "5m"
  }
}

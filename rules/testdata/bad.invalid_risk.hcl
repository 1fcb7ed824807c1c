tool "restart" {
  description = "Restart a deployment."
  risk        = "extreme"
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

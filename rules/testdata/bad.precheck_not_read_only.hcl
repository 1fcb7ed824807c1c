tool "restart" {
  description = "Restart a deployment."
  risk        = "medium"
  param "namespace" { pattern = "[a-z0-9-]{1,63}" }
  exec {
    command = ["kubectl", "-n", "${param.namespace}", "rollout", "restart", "deployment/api"]
  }
  precheck {
    tool = "restart"
    args = { namespace = "${param.namespace}" }
  }
}

tool "restart" {
  description = "Restart a deployment."
  risk        = "medium"
  param "namespace" { pattern = "^[a-z0-9-]{1,63}$" }
  param "deployment" { pattern = "^[a-z0-9.-]{1,253}$" }
  exec {
    command = ["kubectl", "-n", "${param.namespace}", "rollout", "restart", "deployment/${param.deployment}"]
  }
}
runbook "typo" {
  description = "A matcher with an operator Alertmanager does not know."
  matchers    = ["alertname=\"Lab\"", "severity=>\"critical\""]
  target      = "x"
  escalate    = true
}
runbook "regex" {
  description = "A regular expression that does not compile."
  matchers    = ["alertname=~\"Lab(\""]
  target      = "x"
  escalate    = true
}
runbook "empty" {
  description = "An empty list would match every alert."
  matchers    = []
  target      = "x"
  escalate    = true
}
runbook "label" {
  description = "A label name Prometheus does not allow."
  matchers    = ["0bad=\"x\""]
  target      = "x"
  escalate    = true
}
runbook "utf8" {
  description = "A label name alerts from Prometheus cannot carry."
  matchers    = ["{\"service.name\"=\"x\"}"]
  target      = "x"
  escalate    = true
}
runbook "empty_block" {
  description = "An empty match block would match every alert."
  match {}
  target      = "x"
  escalate    = true
}

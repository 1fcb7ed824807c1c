variable "lag_threshold" {
  description = "Lag over which a partition counts as lagging."
  default     = "100"
}
variable "lag_threshold" {
  description = "Declared twice."
  default     = "200"
}
variable "no_default" {
  description = "A variable must have a default, so that the runbooks load on their own."
}
tool "page" {
  description = "Page."
  risk        = "low"
  notify {
    channel  = "webhook"
    url_file = "hook"
  }
}
runbook "lag" {
  description = "Lag."
  matchers    = ["alertname=\"Lag\""]
  target      = "${labels.consumergroup}"
  query "lagging" {
    promql = "kafka_consumergroup_lag > ${var.lag_treshold}"
  }
  when = "len(query.lagging) > 0"
  step "page" {
    tool = "page"
  }
}

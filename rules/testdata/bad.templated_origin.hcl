tool "webhook" {
  description = "Call a webhook."
  risk        = "low"
  param "host" { pattern = "[a-z.]+" }
  http {
    url       = "https://${param.host}/hook"
    body_json = { host = "${param.host}" }
  }
}

# medic.hcl: the daemon's configuration. Every key is optional; the values
# below are the defaults, except where a comment says otherwise. Relative
# paths are relative to this file's directory. Command-line flags of the same
# name (--web.listen-address, --web.config.file, --storage.path) override
# what is set here.
#
# Check it with `medic serve --config.file medic.hcl` (it refuses to start on
# any error and prints file:line:col diagnostics); reload it with SIGHUP or
# `curl -X POST http://127.0.0.1:9095/-/reload`.

# The runbook files, as paths or globs; a glob that matches nothing is an
# error. Default: runbooks.hcl next to this file.
runbooks = ["../runbooks.hcl"]

web {
  # Where the HTTP API listens. Without authentication, medic only accepts a
  # loopback address unless `insecure = true` (or --web.insecure).
  listen_address = "127.0.0.1:9095"

  # Prometheus exporter-toolkit web config: TLS, basic auth, client
  # certificates. Changing the file needs no reload; changing this path needs
  # a restart.
  config_file = ""

  # File holding the bearer token that Alertmanager (and `medic incidents`)
  # must present on every /api/ request. Unset by default; set it in
  # production. The example token file sits next to this file.
  bearer_token_file = "token"

  # File holding the separate token that approves or denies pending calls
  # (medic approve / medic deny). Without it, nobody can approve.
  # approver_token_file = "approver-token"

  # Allow a non-loopback listener with no authentication at all.
  insecure = false
}

# A .rego policy that replaces the embedded default (actions/default.rego);
# it must define data.medic.policy.decision. `medic check` compiles it.
# policy = "policy.rego"

# The policy's tunables (input.config). Unset, the policy's own defaults
# apply: 3 executions of a tool per target and hour, a storm brake at 10
# actions in 10 minutes, 5 distinct targets per runbook (or blast-radius
# group) and hour when the fleet's size is unknown, and no peak hours.
# policy_config {
#   max_per_target_hour  = 3
#   storm_limit          = 10
#   max_targets_per_hour = 5
#   peak_hours {
#     start    = 9
#     end      = 18
#     timezone = "Europe/Berlin"
#   }
# }

# Where silence tools create silences.
# alertmanager {
#   url = "http://127.0.0.1:9093"
# }

# The remediation path.
remediation {
  # Shadow mode everywhere: decide and record, run nothing (also
  # `medic serve --dry-run`).
  dry_run = false
  # How long a call that needs approval waits for a human.
  approval_ttl = "1h"
  # Incidents decided and acted on at once (1 to 64); an incident that
  # waits for its verification gives up its place meanwhile.
  parallel = 4
  # A notify tool of the runbooks that announces, once per incident, what
  # shadow mode would have run. Unset: shadow mode only records.
  # shadow_notify = "notify_oncall"
  # The D-Bus system bus for systemd tools; unset means the default,
  # unix:path=/run/dbus/system_bus_socket.
  # systemd_bus = "unix:path=/run/dbus/system_bus_socket"
  # Bounds one incident's remediation, verification included.
  deadline = "30m"
  # A target that fires again this soon after a verified fix escalates.
  refire_window = "1h"
  # An alert that started firing flap_count times within flap_window is
  # noisy: medic escalates it and never acts on it.
  flap_count  = 4
  flap_window = "30m"
}

# Where escalation briefs go: a runbook's escalate_to, else the first
# route whose matchers match the alert, else notify. Each names a notify
# tool of the runbooks. Without any, briefs go to the log only.
escalation {
  # notify = "notify_oncall"
  max_escalations_per_hour = 20
  # external_url = "https://medic.example.com"
  # route {
  #   matchers = "{team=\"db\"}"
  #   notify   = "page_db_oncall"
  # }
}

# Where the runbooks' enrichment queries go. Without a prometheus block,
# promql queries fail and the runbooks that use them do not match; likewise
# loki for logql queries. http_config_file is a Prometheus HTTP client
# config (authorization, basic_auth, tls_config).
prometheus {
  url = "http://127.0.0.1:9090"
  # http_config_file = "prometheus-client.yml"
}

# loki {
#   url = "http://127.0.0.1:3100"
# }

storage {
  # The single bbolt file that holds all of medic's state.
  path = "data/medic.db"

  # How long closed incidents are kept. Prometheus duration syntax.
  retention = "30d"

  # The key that authenticates the audit log, created when missing, and the
  # file that receives its checkpoints. Default: beside the state file. Keep
  # the key where whoever can write the state file cannot read it.
  # audit_key_file        = "/etc/medic/audit.key"
  # audit_checkpoint_file = "data/audit.checkpoints"
}

intake {
  # Bodies over this size are refused with 413.
  max_body_size = "8MiB"

  # Bounds on each notification. A notification that breaks one is refused
  # with 400 naming the field; set max_alerts on the Alertmanager receiver to
  # the same value so that Alertmanager truncates instead.
  max_alerts                  = 1000
  max_labels                  = 64    # per alert, and annotations per alert
  max_label_value_length      = 2048  # bytes
  max_annotation_value_length = 16384 # bytes

  # Alerts that match any of these Alertmanager matcher lists are skipped:
  # counted in medic_alerts_processed_total{result="ignored"} and listed at
  # GET /api/v1/ignored, but never opened as incidents. Setting this list
  # replaces the defaults shown here.
  ignore = [
    "{alertname=\"Watchdog\"}",
    "{alertname=\"PrometheusAlertmanagerE2eDeadManSwitch\"}",
    "{alertname=\"InfoInhibitor\"}",
    "{severity=\"info\"}",
    "{severity=\"none\"}",
  ]

  # An alert that a runbook matches joins the open incident of the runbook's
  # target. One that no runbook matches joins the open incident of its values
  # of these labels, as Alertmanager's group_by groups alerts; ["..."] keys
  # each alert by all its labels.
  group_by = ["alertname", "namespace", "job", "instance"]
}

# The LLM fallback: alerts no runbook matches, or matches below its
# threshold, go to a model, which may propose one call of a tool with
# llm = true; medic validates it and the policy decides. Without this
# block, such incidents escalate.
# llm {
#   provider          = "openai"                      # or "gemini"
#   model             = "qwen2.5:14b-instruct"
#   base_url          = "http://127.0.0.1:11434/v1"   # Ollama, vLLM, llama.cpp, LM Studio
#   # fast_model      = "qwen2.5:3b-instruct"         # summarises long text first
#   # api_key_file    = "/etc/medic/llm-key"          # or api_key_env = "OPENAI_API_KEY"
#   timeout           = "30s"
#   retries           = 2
#   prompt_budget     = 8000                          # estimated tokens per incident
#   max_output_tokens = 1024
#   daily_token_cap   = 2000000
#   min_confidence    = 0.7
# }

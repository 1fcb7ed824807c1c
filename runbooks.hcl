# runbooks.hcl: the tools and runbooks that ship with medic.
#
# Alert names and labels follow the public rule sets: kubernetes-mixin
# (kube-prometheus), node_exporter's node-mixin, awesome-prometheus-alerts,
# the cert-manager mixin, and kafka_exporter's metrics. Where no public rule
# exists, the rule ships in examples/prometheus/medic-rules.yml. The README
# lists the alerts each runbook answers and what it needs from exporters;
# examples/tests/public_rules_test.hcl replays them. `medic check
# runbooks.hcl` validates this file.
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
  description = "Take a poison-pill message out of a consumer group's way: copy it to a dead-letter topic (key, value, headers, and where it came from), then commit the offset after it for the group. The commit waits until the group has no members, as Kafka requires; a consumer that crashes on the message leaves the group between its restarts. Nothing is lost: the commit follows the acknowledged copy."
  risk        = "medium"
  timeout     = "60s"
  # A broker's address as kafka_exporter's kafka_broker_info reports it.
  param "bootstrap" { pattern = "[a-z0-9]([-a-z0-9.]*[a-z0-9])?:[0-9]{1,5}" }
  param "group" { pattern = "[a-zA-Z0-9._]([a-zA-Z0-9._-]{0,248})" }
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
    # scripts/tools/medic-kafka-dead-letter, installed into
    # /usr/lib/medic/tools, which medic.service puts first on PATH.
    command = ["medic-kafka-dead-letter", "--bootstrap=${param.bootstrap}", "--group=${param.group}", "--topic=${param.topic}",
    "--partition=${param.partition}", "--offset=${param.offset}", "--dead-letter-topic=${param.dead_letter_topic}", "--wait=45s"]
    dry_run = ["medic-kafka-dead-letter", "--bootstrap=${param.bootstrap}", "--group=${param.group}", "--topic=${param.topic}",
    "--partition=${param.partition}", "--offset=${param.offset}", "--dead-letter-topic=${param.dead_letter_topic}", "--dry-run"]
  }
  idempotency_key    = "${param.group}/${param.topic}/${param.partition}/${param.offset}"
  idempotency_window = "1h"
}

tool "systemd_restart" {
  description = "Restart a service on this host over D-Bus; a failed service starts again."
  risk        = "medium"
  timeout     = "2m"
  param "unit" { pattern = "[a-zA-Z0-9][a-zA-Z0-9:_.@-]{0,240}\\.service" }
  systemd {
    unit   = "${param.unit}"
    action = "restart"
  }
  idempotency_key    = "${param.unit}/restart"
  idempotency_window = "15m"
}

tool "systemd_set_memory_max" {
  description = "Set a service's MemoryMax on this host until the next boot (systemctl set-property --runtime); the unit file stays as written."
  # High risk: the default policy always asks a human.
  risk    = "high"
  timeout = "30s"
  param "unit" { pattern = "[a-zA-Z0-9][a-zA-Z0-9:_.@-]{0,240}\\.service" }
  param "memory_mib" {
    type = "int"
    min  = 64
    max  = 65536
  }
  systemd {
    unit           = "${param.unit}"
    action         = "set-memory-max"
    memory_max_mib = "${param.memory_mib}"
  }
  idempotency_key    = "${param.unit}/memory_max"
  idempotency_window = "1h"
}

tool "systemd_start" {
  description = "Start a service on this host over D-Bus."
  risk        = "medium"
  timeout     = "2m"
  param "unit" { pattern = "[a-zA-Z0-9][a-zA-Z0-9:_.@-]{0,240}\\.service" }
  systemd {
    unit   = "${param.unit}"
    action = "start"
  }
}

tool "systemd_stop" {
  description = "Stop a service on this host over D-Bus."
  risk        = "medium"
  timeout     = "2m"
  param "unit" { pattern = "[a-zA-Z0-9][a-zA-Z0-9:_.@-]{0,240}\\.service" }
  systemd {
    unit   = "${param.unit}"
    action = "stop"
  }
}

tool "delete_rotated_logs" {
  description = "Delete rotated log files on one filesystem of this host: files under a log or logs directory named as logrotate names what it rotated (app.log.1, app.log.12.gz, app.log-20261201.zst, app.old), untouched for 10 minutes. Live logs, numbered files such as binlogs (mysql-bin.000042) and anything outside log directories stay."
  risk        = "medium"
  timeout     = "5m"
  # A mountpoint: absolute, no "." or ".." component, no hidden directory.
  param "mountpoint" { pattern = "/|(/[a-zA-Z0-9_][a-zA-Z0-9._-]*)+" }
  exec {
    # -xdev: only the alert's filesystem. No shell: each element is one
    # argument to find, and the regular expression matches whole paths.
    command = ["find", "${param.mountpoint}", "-xdev", "-type", "f", "-regextype", "posix-extended",
      "-regex", ".*/logs?/(.*/)?[^/]+((\\.[1-9][0-9]{0,3}|-[0-9]{8})(\\.(gz|xz|zst|bz2))?|\\.old)",
    "-mmin", "+10", "-print", "-delete"]
    dry_run = ["find", "${param.mountpoint}", "-xdev", "-type", "f", "-regextype", "posix-extended",
      "-regex", ".*/logs?/(.*/)?[^/]+((\\.[1-9][0-9]{0,3}|-[0-9]{8})(\\.(gz|xz|zst|bz2))?|\\.old)",
    "-mmin", "+10", "-print"]
  }
}

tool "vacuum_journal" {
  description = "Delete the systemd journal's archived files until they take at most max_mib MiB; the active journal stays."
  risk        = "medium"
  timeout     = "5m"
  param "max_mib" {
    type    = "int"
    min     = 64
    max     = 65536
    default = "512"
  }
  exec {
    command = ["journalctl", "--vacuum-size=${param.max_mib}M"]
  }
}

tool "clean_package_caches" {
  description = "Empty the package manager's download cache (apt, dnf or yum) and prune container images no container uses and that are over a week old (docker, podman, crictl), whichever this host has."
  risk        = "medium"
  timeout     = "10m"
  exec {
    command = ["medic-clean-caches"]
  }
  idempotency_key    = "caches"
  idempotency_window = "1h"
}

tool "oncall_webhook" {
  description = "Post escalation briefs to the on-call's webhook: the URL is in oncall-webhook-url beside this file (/etc/medic when installed), a secret kept out of the config. Name it in medic.hcl's escalation { notify = \"oncall_webhook\" }."
  risk        = "low"
  notify {
    channel  = "webhook"
    url_file = "oncall-webhook-url"
  }
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
  # KubePodCrashLooping: kubernetes-mixin; KubernetesPodCrashLooping:
  # awesome-prometheus-alerts (restarts of kube-state-metrics). Both carry
  # namespace, pod and container.
  matchers = ["alertname=~\"KubePodCrashLooping|KubernetesPodCrashLooping\""]
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

variable "kafka_stall_window" {
  description = "How long a lagging partition's committed offset must stand still before kafka_poison_pill takes it for a poison pill: at least two of kafka_exporter's scrape intervals."
  default     = "5m"
}

runbook "kafka_poison_pill" {
  description = "Consumer lag grows on a partition whose committed offset has stood still for var.kafka_stall_window while the group's other partitions move: a poison-pill message. Copy it to the dead-letter topic and move the group past it."
  priority    = 20
  # KafkaConsumersGroup: awesome-prometheus-alerts' kafka_exporter rule,
  # sum by (consumergroup) of the lag, which carries only the group; the
  # topic and partition come from the group's lag, over all its topics.
  matchers = ["alertname=~\"KafkaConsumerGroupLagHigh|KafkaConsumersGroup\""]
  target   = "${labels.consumergroup}/${query.stuck[0].labels.topic}"
  # The committed offset of each partition that lags by more than 100 and
  # did not move; delta needs two samples, so a window shorter than a
  # scrape finds none. A consumer that crash-loops on the message lags on
  # its other partitions too, but their offsets still move.
  query "stuck" {
    promql = "kafka_consumergroup_current_offset{consumergroup=\"${labels.consumergroup}\"} and on (topic, partition) (kafka_consumergroup_lag{consumergroup=\"${labels.consumergroup}\"} > 100) and on (topic, partition) (delta(kafka_consumergroup_current_offset{consumergroup=\"${labels.consumergroup}\"}[${var.kafka_stall_window}]) == 0)"
  }
  # The brokers of the cluster the group's lag comes from, as the same
  # kafka_exporter reports them.
  query "brokers" {
    promql = "kafka_broker_info and on (instance, job) kafka_consumergroup_lag{consumergroup=\"${labels.consumergroup}\"}"
  }
  when       = "len(query.stuck) == 1 && len(query.brokers) >= 1"
  confidence = "0.9"
  step "dead_letter" {
    tool = "kafka_dead_letter"
    args = {
      bootstrap         = "${query.brokers[0].labels.address}"
      group             = "${labels.consumergroup}"
      topic             = "${query.stuck[0].labels.topic}"
      partition         = "${query.stuck[0].labels.partition}"
      offset            = "${query.stuck[0].value}"
      dead_letter_topic = "${query.stuck[0].labels.topic}.dlq"
    }
  }
  # Recovered once the group has caught up: no partition's lag is above
  # the threshold the runbook matched on. Until the consumer rejoins the
  # lag still grows, which is not worse; only the end of the wait counts.
  verify {
    promql   = "max(kafka_consumergroup_lag{consumergroup=\"${labels.consumergroup}\"})"
    expect   = "after <= 100"
    worse    = "false"
    wait     = "5m"
    interval = "2s"
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

# Host runbooks: their tools act on the host medic runs on, so each first
# asks Prometheus whether the alert is about this host: node_exporter's
# node_uname_info carries the node name, which conditions compare with
# host.name, and a scrape target's instance must be one of host.names.

runbook "host_filesystem_free_space" {
  description = "A filesystem of this host fills up: delete rotated logs on it, then vacuum the journal to 512 MiB, then clean package and image caches, until 20% is free. Nothing of these needs free space, and none is live data."
  priority    = 10
  # node-mixin: NodeFilesystemSpaceFillingUp, NodeFilesystemAlmostOutOfSpace.
  # awesome-prometheus-alerts: HostOutOfDiskSpace, HostDiskMayFillIn24Hours
  # (HostDiskWillFillIn24Hours before). All carry instance (node_exporter's)
  # and mountpoint, as node_filesystem_avail_bytes does.
  matchers = ["alertname=~\"NodeFilesystemSpaceFillingUp|NodeFilesystemAlmostOutOfSpace|HostOutOfDiskSpace|HostDiskMayFillIn24Hours|HostDiskWillFillIn24Hours\"", "mountpoint=~\"/.*\""]
  target   = "${labels.instance}${labels.mountpoint}"
  query "node" {
    promql = "node_uname_info{instance=\"${labels.instance}\"}"
  }
  # A read-only filesystem cannot be cleaned; it needs a human.
  query "writable" {
    promql = "node_filesystem_readonly{instance=\"${labels.instance}\", mountpoint=\"${labels.mountpoint}\"} == 0"
  }
  when       = "len(query.node) >= 1 && all(query.node, .labels.nodename == host.name) && len(query.writable) >= 1"
  confidence = "0.85"
  step "rotated_logs" {
    tool = "delete_rotated_logs"
    args = { mountpoint = "${labels.mountpoint}" }
  }
  step "journal" {
    tool = "vacuum_journal"
    args = { max_mib = "512" }
  }
  step "caches" {
    tool = "clean_package_caches"
  }
  # The free fraction after each step; the first that reaches 20% ends
  # the plan. A filesystem that keeps filling faster than the steps free
  # it is worse, and goes to a human.
  verify {
    promql   = "max(node_filesystem_avail_bytes{instance=\"${labels.instance}\", mountpoint=\"${labels.mountpoint}\"} / node_filesystem_size_bytes{instance=\"${labels.instance}\", mountpoint=\"${labels.mountpoint}\"})"
    expect   = "after >= 0.2"
    worse    = "after < before"
    wait     = "1m"
    interval = "2s"
  }
}

runbook "host_unit_failed_restart" {
  description = "A service of this host that Prometheus scrapes entered systemd's failed state: restart it, and verify systemd reports it active."
  priority    = 10
  # node-mixin: NodeSystemdServiceFailed; awesome-prometheus-alerts:
  # HostSystemdServiceCrashed. node_systemd_unit_state's labels: instance
  # (node_exporter's), name (the unit), state, type.
  matchers = ["alertname=~\"NodeSystemdServiceFailed|HostSystemdServiceCrashed\"", "name=~\".+\\\\.service\""]
  target   = "${labels.instance}/${labels.name}"
  query "node" {
    promql = "node_uname_info{instance=\"${labels.instance}\"}"
  }
  # Only a service Prometheus scrapes, as job "<unit without .service>":
  # a failed oneshot or timer job is not medic's to rerun.
  query "scraped" {
    promql = "count(up{job=\"${trimsuffix(labels.name, ".service")}\"})"
  }
  when       = "len(query.node) >= 1 && all(query.node, .labels.nodename == host.name) && len(query.scraped) == 1"
  confidence = "0.85"
  step "restart" {
    tool = "systemd_restart"
    args = { unit = "${labels.name}" }
  }
  verify {
    promql   = "max(node_systemd_unit_state{instance=\"${labels.instance}\", name=\"${labels.name}\", state=\"active\"})"
    expect   = "after == 1"
    wait     = "1m"
    interval = "2s"
  }
  max_attempts = 2
}

runbook "host_service_down_restart" {
  description = "A scrape target on this host is down or hung (up == 0) while systemd says its service is active: restart the service, named after the job, and verify the target is up."
  priority    = 10
  # awesome-prometheus-alerts: PrometheusTargetMissing and
  # PrometheusTargetMissingWithWarmupTime; Prometheus's documentation:
  # InstanceDown. All are up == 0: labels instance, job.
  matchers = ["alertname=~\"PrometheusTargetMissing|PrometheusTargetMissingWithWarmupTime|InstanceDown\"", "job=~\"[a-zA-Z0-9][a-zA-Z0-9:_.@-]*\""]
  target   = "${labels.instance}"
  query "down" {
    promql = "up{job=\"${labels.job}\", instance=\"${labels.instance}\"} == 0"
  }
  # The unit, active on this host (a hung process is still active).
  query "unit" {
    promql = "node_systemd_unit_state{name=\"${labels.job}.service\", state=\"active\"} * on (instance) group_left (nodename) node_uname_info == 1"
  }
  when       = "len(query.down) == 1 && any(query.unit, .labels.nodename == host.name) && any(host.names, labels.instance == # || hasPrefix(labels.instance, # + ':'))"
  confidence = "0.85"
  step "restart" {
    tool = "systemd_restart"
    args = { unit = "${labels.job}.service" }
  }
  verify {
    promql   = "up{job=\"${labels.job}\", instance=\"${labels.instance}\"}"
    expect   = "after == 1"
    wait     = "1m"
    interval = "2s"
  }
  max_attempts = 2
}

runbook "host_service_memory_leak" {
  description = "A service of this host leaks memory: restart it. If its memory does not come down, set its MemoryMax to 1.5 times what it used, with a human's approval."
  priority    = 10
  # ServiceMemoryLeak: examples/prometheus/medic-rules.yml, on the
  # process_resident_memory_bytes every client library exports. Labels:
  # instance, job.
  matchers = ["alertname=\"ServiceMemoryLeak\"", "job=~\"[a-zA-Z0-9][a-zA-Z0-9:_.@-]*\""]
  target   = "${labels.instance}"
  query "rss" {
    promql = "process_resident_memory_bytes{job=\"${labels.job}\", instance=\"${labels.instance}\"}"
  }
  query "unit" {
    promql = "node_systemd_unit_state{name=\"${labels.job}.service\", state=\"active\"} * on (instance) group_left (nodename) node_uname_info == 1"
  }
  when       = "len(query.rss) == 1 && any(query.unit, .labels.nodename == host.name) && any(host.names, labels.instance == # || hasPrefix(labels.instance, # + ':'))"
  confidence = "0.8"
  step "restart" {
    tool = "systemd_restart"
    args = { unit = "${labels.job}.service" }
  }
  step "memory_max" {
    tool = "systemd_set_memory_max"
    args = {
      unit       = "${labels.job}.service"
      memory_mib = "${max(64, min(65536, ceil(query.rss[0].value * 1.5 / 1048576)))}"
    }
  }
  verify {
    promql   = "process_resident_memory_bytes{job=\"${labels.job}\", instance=\"${labels.instance}\"}"
    expect   = "after < before / 2"
    # A restarted process that takes its memory back is no worse.
    worse    = "false"
    wait     = "2m"
    interval = "2s"
  }
}

variable "service_latency_slo" {
  description = "The p99 latency, in seconds, under which host_service_scale_out counts a service as recovered: the threshold of its ServiceLatencyHigh rule."
  default     = "0.5"
}

variable "service_latency_window" {
  description = "The rate window of host_service_scale_out's verification: the window of its ServiceLatencyHigh rule."
  default     = "5m"
}

runbook "host_service_scale_out" {
  description = "A service of this host that runs as systemd template instances (JOB@1.service, JOB@2.service, ...) behind a load balancer is slower than its SLO: start the next instance, at most 8. If latency got worse (a downstream that more callers slow down), stop it again and escalate."
  priority    = 10
  # ServiceLatencyHigh: examples/prometheus/medic-rules.yml, on the load
  # balancer's http_request_duration_seconds histogram, scraped as the job
  # named after the template. Labels: job.
  matchers = ["alertname=\"ServiceLatencyHigh\"", "job=~\"[a-zA-Z0-9][a-zA-Z0-9:_.-]*\""]
  target   = "${labels.job}"
  # The template's active instances on this host, from node_exporter's
  # systemd collector.
  query "instances" {
    promql = "node_systemd_unit_state{name=~\"${labels.job}@[0-9]+\\\\.service\", state=\"active\"} * on (instance) group_left (nodename) node_uname_info == 1"
  }
  when       = "len(query.instances) >= 1 && len(query.instances) < 8 && all(query.instances, .labels.nodename == host.name)"
  confidence = "0.8"
  step "scale_out" {
    tool = "systemd_start"
    args = { unit = "${labels.job}@${length(query.instances) + 1}.service" }
    rollback {
      tool = "systemd_stop"
    }
  }
  # p99 over the SLO: recovered under 1, worse once half as slow again.
  verify {
    promql   = "histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{job=\"${labels.job}\"}[${var.service_latency_window}]))) / ${var.service_latency_slo}"
    expect   = "after < 1"
    worse    = "after > before * 1.5"
    wait     = "10m"
    interval = "2s"
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

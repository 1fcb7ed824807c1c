# Conformance with public alert rules: each test is one alert as a public
# rule set produces it, with the labels that rule really carries, and the
# decision the shipped runbooks take on it. Near misses must escalate.
runbooks = ["../../runbooks.hcl"]
at       = "2026-11-26T12:00:00Z"

# kubernetes-mixin: max_over_time(kube_pod_container_status_waiting_reason{
# reason="CrashLoopBackOff", job="kube-state-metrics"}[5m]) >= 1, severity
# warning: the series' labels and the rule's.
test "kubernetes-mixin KubePodCrashLooping, last killed by the OOM killer" {
  alert {
    labels = { alertname = "KubePodCrashLooping", namespace = "shop", pod = "api-7d9f-x2", container = "api", reason = "CrashLoopBackOff", job = "kube-state-metrics", instance = "10.0.0.7:8080", uid = "5c0a7d7e-1f2b-4c3d-9e8f-0a1b2c3d4e5f", severity = "warning" }
  }
  queries = {
    oom    = [{ labels = { namespace = "shop", pod = "api-7d9f-x2", container = "api", reason = "OOMKilled" }, value = 1 }]
    owner  = [{ labels = { namespace = "shop", owner_name = "api" }, value = 1 }]
    limit  = [{ labels = {}, value = 536870912 }]
    firing = []
  }
  expect {
    decision = "remediate"
    runbook  = "crashloop_oom"
    target   = "shop/api"
    calls = [
      { tool = "k8s_set_memory_limit", args = { namespace = "shop", deployment = "api", container = "api", memory_mib = "640" }, policy = "allow" },
    ]
  }
}

# awesome-prometheus-alerts (kube-state-metrics): restarts within 10m and
# ignoring (reason) the last termination OOMKilled, severity warning: the
# labels of kube_pod_container_status_restarts_total.
test "awesome-prometheus-alerts KubernetesContainerOomKiller" {
  alert {
    labels = { alertname = "KubernetesContainerOomKiller", namespace = "shop", pod = "api-7d9f-x2", container = "api", job = "kube-state-metrics", instance = "10.0.0.7:8080", uid = "5c0a7d7e-1f2b-4c3d-9e8f-0a1b2c3d4e5f", severity = "warning" }
  }
  queries = {
    owner  = [{ labels = { namespace = "shop", owner_name = "api" }, value = 1 }]
    limit  = [{ labels = {}, value = 536870912 }]
    firing = []
  }
  expect {
    decision = "remediate"
    runbook  = "oom_killed_raise_limit"
    target   = "shop/api"
    calls = [
      { tool = "k8s_set_memory_limit", args = { namespace = "shop", deployment = "api", container = "api", memory_mib = "640" }, policy = "allow" },
    ]
  }
}

# cert-manager-mixin: avg by (exported_namespace, namespace, name) of the
# time to expiry under 21 days, severity warning. namespace is where
# cert-manager runs; exported_namespace is the Certificate's.
test "cert-manager-mixin CertManagerCertExpirySoon" {
  alert {
    labels = { alertname = "CertManagerCertExpirySoon", exported_namespace = "shop", namespace = "cert-manager", name = "shop-tls", severity = "warning" }
  }
  queries = {
    firing = []
  }
  expect {
    decision = "remediate"
    runbook  = "certificate_expiring_renew"
    target   = "shop/shop-tls"
    calls = [
      { tool = "cert_manager_renew", args = { namespace = "shop", certificate = "shop-tls" }, policy = "allow" },
    ]
  }
}

# Near miss. cert-manager-mixin: max by (name, exported_namespace,
# namespace, condition) of certmanager_certificate_ready_status{condition!="True"}
# == 1, severity critical: a certificate that is not ready needs a human.
test "cert-manager-mixin CertManagerCertNotReady escalates" {
  alert {
    labels = { alertname = "CertManagerCertNotReady", exported_namespace = "shop", namespace = "cert-manager", name = "shop-tls", condition = "False", severity = "critical" }
  }
  queries = {
    firing = []
  }
  expect {
    decision = "escalate"
  }
}

# Near miss. kubernetes-mixin KubePodCrashLooping with no OOM in the last
# termination: a crash loop medic cannot explain escalates.
test "kubernetes-mixin KubePodCrashLooping, not OOM, escalates" {
  alert {
    labels = { alertname = "KubePodCrashLooping", namespace = "shop", pod = "api-7d9f-x2", container = "api", reason = "CrashLoopBackOff", job = "kube-state-metrics", severity = "warning" }
  }
  queries = {
    oom    = []
    owner  = [{ labels = { namespace = "shop", owner_name = "api" }, value = 1 }]
    limit  = [{ labels = {}, value = 536870912 }]
    firing = []
  }
  expect {
    decision = "escalate"
  }
}

# awesome-prometheus-alerts (kafka_exporter): sum(kafka_consumergroup_lag)
# by (consumergroup) > 50, severity critical: the group is the only label.
# The topic and partition come from the group's lag series, which carry
# consumergroup, topic, partition, and the Deployment's namespace from
# kube-state-metrics' kube_deployment_spec_replicas (namespace, deployment).
# The brokers come from the same kafka_exporter's kafka_broker_info
# (address, id).
test "awesome-prometheus-alerts KafkaConsumersGroup, one stuck partition" {
  alert {
    labels = { alertname = "KafkaConsumersGroup", consumergroup = "invoicer", severity = "critical" }
  }
  queries = {
    lagging    = [{ labels = { consumergroup = "invoicer", topic = "invoices", partition = "3", instance = "kafka-exporter:9308", job = "kafka" }, value = 5000 }]
    stuck      = [{ labels = { consumergroup = "invoicer", topic = "invoices", partition = "3", instance = "kafka-exporter:9308", job = "kafka" }, value = 1234567 }]
    brokers    = [{ labels = { address = "b-1.kafka.example.org:9092", id = "1", instance = "kafka-exporter:9308", job = "kafka" }, value = 1 }]
    partitions = [{ labels = { consumergroup = "invoicer", topic = "invoices", partition = "3" }, value = 5000 }, { labels = { consumergroup = "invoicer", topic = "invoices", partition = "1" }, value = 0 }]
    replicas   = [{ labels = { namespace = "billing", deployment = "invoicer" }, value = 3 }]
    firing     = []
  }
  expect {
    decision = "remediate"
    runbook  = "kafka_poison_pill"
    target   = "invoicer/invoices"
    calls = [
      { tool = "kafka_dead_letter", args = { bootstrap = "b-1.kafka.example.org:9092", group = "invoicer", topic = "invoices", partition = "3", offset = "1234567", dead_letter_topic = "invoices.dlq" }, policy = "allow" },
    ]
  }
}

# Near miss: a stuck partition, but no kafka_broker_info beside the lag
# (kafka_exporter's broker metrics scraped elsewhere, or not at all):
# medic has no broker to talk to, and escalates.
test "awesome-prometheus-alerts KafkaConsumersGroup, no broker known, escalates" {
  alert {
    labels = { alertname = "KafkaConsumersGroup", consumergroup = "invoicer", severity = "critical" }
  }
  queries = {
    lagging    = [{ labels = { consumergroup = "invoicer", topic = "invoices", partition = "3" }, value = 5000 }]
    stuck      = [{ labels = { consumergroup = "invoicer", topic = "invoices", partition = "3" }, value = 1234567 }]
    brokers    = []
    partitions = [{ labels = { consumergroup = "invoicer", topic = "invoices", partition = "3" }, value = 5000 }, { labels = { consumergroup = "invoicer", topic = "invoices", partition = "1" }, value = 0 }]
    replicas   = []
    firing     = []
  }
  expect {
    decision = "escalate"
  }
}

test "awesome-prometheus-alerts KafkaConsumersGroup, lag on every partition" {
  alert {
    labels = { alertname = "KafkaConsumersGroup", consumergroup = "invoicer", severity = "critical" }
  }
  queries = {
    lagging    = [{ labels = { consumergroup = "invoicer", topic = "invoices", partition = "0" }, value = 5000 }, { labels = { consumergroup = "invoicer", topic = "invoices", partition = "1" }, value = 4000 }]
    stuck      = []
    partitions = [{ labels = { consumergroup = "invoicer", topic = "invoices", partition = "0" }, value = 5000 }, { labels = { consumergroup = "invoicer", topic = "invoices", partition = "1" }, value = 4000 }]
    replicas   = [{ labels = { namespace = "billing", deployment = "invoicer" }, value = 3 }]
    firing     = []
  }
  expect {
    decision = "remediate"
    runbook  = "kafka_lag_all_partitions"
    target   = "billing/invoicer"
    calls = [
      { tool = "k8s_scale", args = { namespace = "billing", deployment = "invoicer", replicas = "5" }, policy = "allow" },
    ]
  }
}

# Near miss: a Deployment named after the group in two namespaces; medic
# cannot tell which one consumes, and escalates.
test "awesome-prometheus-alerts KafkaConsumersGroup, consumer in two namespaces, escalates" {
  alert {
    labels = { alertname = "KafkaConsumersGroup", consumergroup = "invoicer", severity = "critical" }
  }
  queries = {
    lagging    = [{ labels = { consumergroup = "invoicer", topic = "invoices", partition = "0" }, value = 5000 }, { labels = { consumergroup = "invoicer", topic = "invoices", partition = "1" }, value = 4000 }]
    stuck      = []
    partitions = [{ labels = { consumergroup = "invoicer", topic = "invoices", partition = "0" }, value = 5000 }, { labels = { consumergroup = "invoicer", topic = "invoices", partition = "1" }, value = 4000 }]
    replicas   = [{ labels = { namespace = "billing", deployment = "invoicer" }, value = 3 }, { labels = { namespace = "billing-staging", deployment = "invoicer" }, value = 1 }]
    firing     = []
  }
  expect {
    decision = "escalate"
  }
}

# Heartbeats are ignored: kube-prometheus' Watchdog (vector(1), severity
# none) and awesome-prometheus-alerts' dead man's switch (vector(1),
# severity critical, which only its name tells apart from a real fault).
test "kube-prometheus Watchdog is ignored" {
  alert {
    labels = { alertname = "Watchdog", severity = "none", prometheus = "monitoring/k8s" }
  }
  expect {
    decision = "ignore"
  }
}

test "awesome-prometheus-alerts PrometheusAlertmanagerE2eDeadManSwitch is ignored" {
  alert {
    labels = { alertname = "PrometheusAlertmanagerE2eDeadManSwitch", severity = "critical" }
  }
  expect {
    decision = "ignore"
  }
}

# Near miss. awesome-prometheus-alerts (blackbox_exporter): probe_success ==
# 0, severity critical, with the probe's instance and job: an endpoint that
# does not answer is not something medic can restart.
test "awesome-prometheus-alerts BlackboxProbeFailed escalates" {
  alert {
    labels = { alertname = "BlackboxProbeFailed", instance = "https://shop.example.com", job = "blackbox-http", severity = "critical" }
  }
  expect {
    decision = "escalate"
  }
}

# ---------------------------------------------------------- host: disks ---

# node-mixin: node_filesystem_avail_bytes{job="node", fstype!="", mountpoint!=""}
# under 40% (warning) or 20% (critical), predicted by predict_linear over 6h
# to run out within 24h (warning) or 4h (critical), read-write, for 1h.
# Labels: device, fstype, instance, job, mountpoint. medic's own host is the
# one whose node_uname_info has the node name medic runs under (in tests,
# medic-test-host).
test "node-mixin NodeFilesystemSpaceFillingUp, warning, root filesystem" {
  alert {
    labels = { alertname = "NodeFilesystemSpaceFillingUp", instance = "localhost:9100", job = "node", device = "/dev/sda1", fstype = "ext4", mountpoint = "/", severity = "warning" }
  }
  queries = {
    node     = [{ labels = { instance = "localhost:9100", nodename = "medic-test-host", sysname = "Linux" }, value = 1 }]
    writable = [{ labels = { instance = "localhost:9100", mountpoint = "/" }, value = 0 }]
    firing   = []
  }
  expect {
    decision = "remediate"
    runbook  = "host_filesystem_free_space"
    target   = "localhost:9100/"
    calls = [
      { tool = "delete_rotated_logs", args = { mountpoint = "/" }, policy = "allow" },
      { tool = "vacuum_journal", args = { max_mib = "512" }, policy = "allow" },
      { tool = "clean_package_caches", policy = "allow" },
    ]
  }
}

test "node-mixin NodeFilesystemSpaceFillingUp, critical, /var" {
  alert {
    labels = { alertname = "NodeFilesystemSpaceFillingUp", instance = "127.0.0.1:9100", job = "node", device = "/dev/sdb1", fstype = "ext4", mountpoint = "/var", severity = "critical" }
  }
  queries = {
    node     = [{ labels = { instance = "127.0.0.1:9100", nodename = "medic-test-host", sysname = "Linux" }, value = 1 }]
    writable = [{ labels = { instance = "127.0.0.1:9100", mountpoint = "/var" }, value = 0 }]
    firing   = []
  }
  expect {
    decision = "remediate"
    runbook  = "host_filesystem_free_space"
    target   = "127.0.0.1:9100/var"
    calls = [
      { tool = "delete_rotated_logs", args = { mountpoint = "/var" }, policy = "allow" },
      { tool = "vacuum_journal", args = { max_mib = "512" }, policy = "allow" },
      { tool = "clean_package_caches", policy = "allow" },
    ]
  }
}

test "node-mixin NodeFilesystemSpaceFillingUp, critical, a separate /var/log" {
  alert {
    labels = { alertname = "NodeFilesystemSpaceFillingUp", instance = "node-exporter:9100", job = "node", device = "/dev/sdb1", fstype = "ext4", mountpoint = "/var/log", severity = "critical" }
  }
  queries = {
    node     = [{ labels = { instance = "node-exporter:9100", nodename = "medic-test-host", sysname = "Linux" }, value = 1 }]
    writable = [{ labels = { instance = "node-exporter:9100", mountpoint = "/var/log" }, value = 0 }]
    firing   = []
  }
  expect {
    decision = "remediate"
    runbook  = "host_filesystem_free_space"
    target   = "node-exporter:9100/var/log"
    calls = [
      { tool = "delete_rotated_logs", args = { mountpoint = "/var/log" }, policy = "allow" },
      { tool = "vacuum_journal", args = { max_mib = "512" }, policy = "allow" },
      { tool = "clean_package_caches", policy = "allow" },
    ]
  }
}

# node-mixin: under 5% (warning) or 3% (critical) available, read-write,
# for 30m; the same labels.
test "node-mixin NodeFilesystemAlmostOutOfSpace, warning, a data filesystem" {
  alert {
    labels = { alertname = "NodeFilesystemAlmostOutOfSpace", instance = "localhost:9100", job = "node", device = "/dev/sdb1", fstype = "ext4", mountpoint = "/srv/data", severity = "warning" }
  }
  queries = {
    node     = [{ labels = { instance = "localhost:9100", nodename = "medic-test-host", sysname = "Linux" }, value = 1 }]
    writable = [{ labels = { instance = "localhost:9100", mountpoint = "/srv/data" }, value = 0 }]
    firing   = []
  }
  expect {
    decision = "remediate"
    runbook  = "host_filesystem_free_space"
    target   = "localhost:9100/srv/data"
    calls = [
      { tool = "delete_rotated_logs", args = { mountpoint = "/srv/data" }, policy = "allow" },
      { tool = "vacuum_journal", args = { max_mib = "512" }, policy = "allow" },
      { tool = "clean_package_caches", policy = "allow" },
    ]
  }
}

test "node-mixin NodeFilesystemAlmostOutOfSpace, critical, root filesystem on IPv6 loopback" {
  alert {
    labels = { alertname = "NodeFilesystemAlmostOutOfSpace", instance = "[::1]:9100", job = "node", device = "/dev/sda1", fstype = "ext4", mountpoint = "/", severity = "critical" }
  }
  queries = {
    node     = [{ labels = { instance = "[::1]:9100", nodename = "medic-test-host", sysname = "Linux" }, value = 1 }]
    writable = [{ labels = { instance = "[::1]:9100", mountpoint = "/" }, value = 0 }]
    firing   = []
  }
  expect {
    decision = "remediate"
    runbook  = "host_filesystem_free_space"
    target   = "[::1]:9100/"
    calls = [
      { tool = "delete_rotated_logs", args = { mountpoint = "/" }, policy = "allow" },
      { tool = "vacuum_journal", args = { max_mib = "512" }, policy = "allow" },
      { tool = "clean_package_caches", policy = "allow" },
    ]
  }
}

# awesome-prometheus-alerts (node_exporter): avail / size under 10% on
# filesystems other than fuse, tmpfs, cifs and nfs, read-write, for 2m,
# critical; the labels of node_filesystem_avail_bytes.
test "awesome-prometheus-alerts HostOutOfDiskSpace, root filesystem" {
  alert {
    labels = { alertname = "HostOutOfDiskSpace", instance = "localhost:9100", job = "node", device = "/dev/sda1", fstype = "ext4", mountpoint = "/", severity = "critical" }
  }
  queries = {
    node     = [{ labels = { instance = "localhost:9100", nodename = "medic-test-host", sysname = "Linux" }, value = 1 }]
    writable = [{ labels = { instance = "localhost:9100", mountpoint = "/" }, value = 0 }]
    firing   = []
  }
  expect {
    decision = "remediate"
    runbook  = "host_filesystem_free_space"
    target   = "localhost:9100/"
    calls = [
      { tool = "delete_rotated_logs", args = { mountpoint = "/" }, policy = "allow" },
      { tool = "vacuum_journal", args = { max_mib = "512" }, policy = "allow" },
      { tool = "clean_package_caches", policy = "allow" },
    ]
  }
}

test "awesome-prometheus-alerts HostOutOfDiskSpace, a data filesystem" {
  alert {
    labels = { alertname = "HostOutOfDiskSpace", instance = "localhost:9100", job = "node", device = "/dev/sdb1", fstype = "ext4", mountpoint = "/srv/data", severity = "critical" }
  }
  queries = {
    node     = [{ labels = { instance = "localhost:9100", nodename = "medic-test-host", sysname = "Linux" }, value = 1 }]
    writable = [{ labels = { instance = "localhost:9100", mountpoint = "/srv/data" }, value = 0 }]
    firing   = []
  }
  expect {
    decision = "remediate"
    runbook  = "host_filesystem_free_space"
    target   = "localhost:9100/srv/data"
    calls = [
      { tool = "delete_rotated_logs", args = { mountpoint = "/srv/data" }, policy = "allow" },
      { tool = "vacuum_journal", args = { max_mib = "512" }, policy = "allow" },
      { tool = "clean_package_caches", policy = "allow" },
    ]
  }
}

# awesome-prometheus-alerts: predict_linear(node_filesystem_avail_bytes[3h],
# 86400) <= 0, warning; called HostDiskWillFillIn24Hours in older releases.
test "awesome-prometheus-alerts HostDiskMayFillIn24Hours" {
  alert {
    labels = { alertname = "HostDiskMayFillIn24Hours", instance = "localhost:9100", job = "node", device = "/dev/sdb1", fstype = "ext4", mountpoint = "/home", severity = "warning" }
  }
  queries = {
    node     = [{ labels = { instance = "localhost:9100", nodename = "medic-test-host", sysname = "Linux" }, value = 1 }]
    writable = [{ labels = { instance = "localhost:9100", mountpoint = "/home" }, value = 0 }]
    firing   = []
  }
  expect {
    decision = "remediate"
    runbook  = "host_filesystem_free_space"
    target   = "localhost:9100/home"
    calls = [
      { tool = "delete_rotated_logs", args = { mountpoint = "/home" }, policy = "allow" },
      { tool = "vacuum_journal", args = { max_mib = "512" }, policy = "allow" },
      { tool = "clean_package_caches", policy = "allow" },
    ]
  }
}

test "awesome-prometheus-alerts HostDiskWillFillIn24Hours (older name)" {
  alert {
    labels = { alertname = "HostDiskWillFillIn24Hours", instance = "127.0.0.1:9100", job = "node", device = "/dev/sda1", fstype = "ext4", mountpoint = "/", severity = "warning" }
  }
  queries = {
    node     = [{ labels = { instance = "127.0.0.1:9100", nodename = "medic-test-host", sysname = "Linux" }, value = 1 }]
    writable = [{ labels = { instance = "127.0.0.1:9100", mountpoint = "/" }, value = 0 }]
    firing   = []
  }
  expect {
    decision = "remediate"
    runbook  = "host_filesystem_free_space"
    target   = "127.0.0.1:9100/"
    calls = [
      { tool = "delete_rotated_logs", args = { mountpoint = "/" }, policy = "allow" },
      { tool = "vacuum_journal", args = { max_mib = "512" }, policy = "allow" },
      { tool = "clean_package_caches", policy = "allow" },
    ]
  }
}

# Near miss: the same alert from another host's node_exporter. medic frees
# space only where its tools run.
test "node-mixin NodeFilesystemSpaceFillingUp on another host escalates" {
  alert {
    labels = { alertname = "NodeFilesystemSpaceFillingUp", instance = "db-1:9100", job = "node", device = "/dev/sdb1", fstype = "ext4", mountpoint = "/var/log", severity = "critical" }
  }
  queries = {
    node     = [{ labels = { instance = "db-1:9100", nodename = "db-1", sysname = "Linux" }, value = 1 }]
    writable = [{ labels = { instance = "db-1:9100", mountpoint = "/var/log" }, value = 0 }]
    firing   = []
  }
  expect {
    decision = "escalate"
  }
}

# Near miss: a filesystem that went read-only (the kernel's answer to I/O
# errors) cannot be cleaned; it needs a human.
test "node-mixin NodeFilesystemAlmostOutOfSpace on a read-only filesystem escalates" {
  alert {
    labels = { alertname = "NodeFilesystemAlmostOutOfSpace", instance = "localhost:9100", job = "node", device = "/dev/sdb1", fstype = "ext4", mountpoint = "/srv/data", severity = "critical" }
  }
  queries = {
    node     = [{ labels = { instance = "localhost:9100", nodename = "medic-test-host" }, value = 1 }]
    writable = []
    firing   = []
  }
  expect {
    decision = "escalate"
  }
}

# Near miss. node-mixin: inodes, not bytes, run out; deleting logs is not
# the answer medic can be sure of.
test "node-mixin NodeFilesystemFilesFillingUp escalates" {
  alert {
    labels = { alertname = "NodeFilesystemFilesFillingUp", instance = "localhost:9100", job = "node", device = "/dev/sda1", fstype = "ext4", mountpoint = "/", severity = "warning" }
  }
  queries = {
    firing = []
  }
  expect {
    decision = "escalate"
  }
}

# ------------------------------------------------------- host: services ---

# node-mixin: node_systemd_unit_state{job="node", state="failed"} == 1
# for 5m, warning. Labels: instance, job, name (the unit), state, type.
test "node-mixin NodeSystemdServiceFailed" {
  alert {
    labels = { alertname = "NodeSystemdServiceFailed", instance = "localhost:9100", job = "node", name = "api.service", state = "failed", type = "simple", severity = "warning" }
  }
  queries = {
    node    = [{ labels = { instance = "localhost:9100", nodename = "medic-test-host" }, value = 1 }]
    scraped = [{ labels = {  }, value = 1 }]
    firing  = []
  }
  expect {
    decision = "remediate"
    runbook  = "host_unit_failed_restart"
    target   = "localhost:9100/api.service"
    calls = [
      { tool = "systemd_restart", args = { unit = "api.service" }, policy = "allow" },
    ]
  }
}

# awesome-prometheus-alerts: (node_systemd_unit_state{state="failed"} == 1)
# * on (instance) group_left (nodename) node_uname_info, warning: the same
# labels and the node name.
test "awesome-prometheus-alerts HostSystemdServiceCrashed" {
  alert {
    labels = { alertname = "HostSystemdServiceCrashed", instance = "localhost:9100", job = "node", name = "api.service", state = "failed", type = "simple", severity = "warning", nodename = "medic-test-host" }
  }
  queries = {
    node    = [{ labels = { instance = "localhost:9100", nodename = "medic-test-host" }, value = 1 }]
    scraped = [{ labels = {  }, value = 1 }]
    firing  = []
  }
  expect {
    decision = "remediate"
    runbook  = "host_unit_failed_restart"
    target   = "localhost:9100/api.service"
    calls = [
      { tool = "systemd_restart", args = { unit = "api.service" }, policy = "allow" },
    ]
  }
}

# awesome-prometheus-alerts, older releases: without the node name.
test "awesome-prometheus-alerts HostSystemdServiceCrashed (older, no nodename)" {
  alert {
    labels = { alertname = "HostSystemdServiceCrashed", instance = "127.0.0.1:9100", job = "node", name = "api.service", state = "failed", type = "simple", severity = "warning" }
  }
  queries = {
    node    = [{ labels = { instance = "127.0.0.1:9100", nodename = "medic-test-host" }, value = 1 }]
    scraped = [{ labels = {  }, value = 1 }]
    firing  = []
  }
  expect {
    decision = "remediate"
    runbook  = "host_unit_failed_restart"
    target   = "127.0.0.1:9100/api.service"
    calls = [
      { tool = "systemd_restart", args = { unit = "api.service" }, policy = "allow" },
    ]
  }
}

# Near miss: a failed unit Prometheus does not scrape (a oneshot, a timer's
# job) is not medic's to rerun.
test "node-mixin NodeSystemdServiceFailed for a unit Prometheus does not scrape escalates" {
  alert {
    labels = { alertname = "NodeSystemdServiceFailed", instance = "localhost:9100", job = "node", name = "apt-daily.service", state = "failed", type = "simple", severity = "warning" }
  }
  queries = {
    node    = [{ labels = { instance = "localhost:9100", nodename = "medic-test-host" }, value = 1 }]
    scraped = []
    firing  = []
  }
  expect {
    decision = "escalate"
  }
}

# Near miss: a failed unit on another host.
test "awesome-prometheus-alerts HostSystemdServiceCrashed on another host escalates" {
  alert {
    labels = { alertname = "HostSystemdServiceCrashed", instance = "localhost:9100", job = "node", name = "api.service", state = "failed", type = "simple", severity = "warning", nodename = "db-1" }
  }
  queries = {
    node    = [{ labels = { instance = "localhost:9100", nodename = "db-1" }, value = 1 }]
    scraped = [{ labels = {  }, value = 1 }]
    firing  = []
  }
  expect {
    decision = "escalate"
  }
}

# awesome-prometheus-alerts: up == 0, critical. Labels: instance, job. A
# process that hangs (SIGSTOP, a deadlock) fails its scrapes while systemd
# still reports its unit active; the service is the unit named after the
# job, active on this host.
test "awesome-prometheus-alerts PrometheusTargetMissing" {
  alert {
    labels = { alertname = "PrometheusTargetMissing", instance = "127.0.0.1:8080", job = "api", severity = "critical" }
  }
  queries = {
    down   = [{ labels = { instance = "127.0.0.1:8080", job = "api" }, value = 0 }]
    unit   = [{ labels = { instance = "localhost:9100", job = "node", name = "api.service", state = "active", type = "simple", nodename = "medic-test-host" }, value = 1 }]
    firing = []
  }
  expect {
    decision = "remediate"
    runbook  = "host_service_down_restart"
    target   = "127.0.0.1:8080"
    calls = [
      { tool = "systemd_restart", args = { unit = "api.service" }, policy = "allow" },
    ]
  }
}

test "awesome-prometheus-alerts PrometheusTargetMissing, target on IPv6 loopback" {
  alert {
    labels = { alertname = "PrometheusTargetMissing", instance = "[::1]:8080", job = "api", severity = "critical" }
  }
  queries = {
    down   = [{ labels = { instance = "[::1]:8080", job = "api" }, value = 0 }]
    unit   = [{ labels = { instance = "localhost:9100", job = "node", name = "api.service", state = "active", type = "simple", nodename = "medic-test-host" }, value = 1 }]
    firing = []
  }
  expect {
    decision = "remediate"
    runbook  = "host_service_down_restart"
    target   = "[::1]:8080"
    calls = [
      { tool = "systemd_restart", args = { unit = "api.service" }, policy = "allow" },
    ]
  }
}

test "awesome-prometheus-alerts PrometheusTargetMissing, target by host name" {
  alert {
    labels = { alertname = "PrometheusTargetMissing", instance = "medic-test-host:8080", job = "api", severity = "critical" }
  }
  queries = {
    down   = [{ labels = { instance = "medic-test-host:8080", job = "api" }, value = 0 }]
    unit   = [{ labels = { instance = "localhost:9100", job = "node", name = "api.service", state = "active", type = "simple", nodename = "medic-test-host" }, value = 1 }]
    firing = []
  }
  expect {
    decision = "remediate"
    runbook  = "host_service_down_restart"
    target   = "medic-test-host:8080"
    calls = [
      { tool = "systemd_restart", args = { unit = "api.service" }, policy = "allow" },
    ]
  }
}

# Prometheus's documentation (alerting rules): up == 0 for 5m, severity
# page.
test "Prometheus documentation InstanceDown" {
  alert {
    labels = { alertname = "InstanceDown", instance = "localhost:8080", job = "api", severity = "page" }
  }
  queries = {
    down   = [{ labels = { instance = "localhost:8080", job = "api" }, value = 0 }]
    unit   = [{ labels = { instance = "localhost:9100", job = "node", name = "api.service", state = "active", type = "simple", nodename = "medic-test-host" }, value = 1 }]
    firing = []
  }
  expect {
    decision = "remediate"
    runbook  = "host_service_down_restart"
    target   = "localhost:8080"
    calls = [
      { tool = "systemd_restart", args = { unit = "api.service" }, policy = "allow" },
    ]
  }
}

# Near miss: the target runs on another host; restarting this host's unit
# of the same name would not help.
test "awesome-prometheus-alerts PrometheusTargetMissing on another host escalates" {
  alert {
    labels = { alertname = "PrometheusTargetMissing", instance = "10.9.9.9:8080", job = "api", severity = "critical" }
  }
  queries = {
    down   = [{ labels = { instance = "10.9.9.9:8080", job = "api" }, value = 0 }]
    unit   = [{ labels = { instance = "localhost:9100", job = "node", name = "api.service", state = "active", type = "simple", nodename = "medic-test-host" }, value = 1 }]
    firing = []
  }
  expect {
    decision = "escalate"
  }
}

# Near miss: systemd does not report the unit active (stopped on purpose,
# or not a unit at all).
test "awesome-prometheus-alerts PrometheusTargetMissing with no active unit escalates" {
  alert {
    labels = { alertname = "PrometheusTargetMissing", instance = "127.0.0.1:8080", job = "api", severity = "critical" }
  }
  queries = {
    down   = [{ labels = { instance = "127.0.0.1:8080", job = "api" }, value = 0 }]
    unit   = []
    firing = []
  }
  expect {
    decision = "escalate"
  }
}

# Near miss. awesome-prometheus-alerts: increase(node_vmstat_oom_kill[1m]) > 0,
# warning: the kernel killed something, but the alert does not say which
# service.
test "awesome-prometheus-alerts HostOomKillDetected escalates" {
  alert {
    labels = { alertname = "HostOomKillDetected", instance = "localhost:9100", job = "node", severity = "warning" }
  }
  queries = {
    firing = []
  }
  expect {
    decision = "escalate"
  }
}

# ------------------------------------------------ more public rule sets ---

# awesome-prometheus-alerts (kube-state-metrics): restarts of
# kube_pod_container_status_restarts_total over a window, the labels of that
# series.
test "awesome-prometheus-alerts KubernetesPodCrashLooping, last killed by the OOM killer" {
  alert {
    labels = { alertname = "KubernetesPodCrashLooping", namespace = "shop", pod = "api-7d9f-x2", container = "api", job = "kube-state-metrics", instance = "10.0.0.7:8080", uid = "5c0a7d7e-1f2b-4c3d-9e8f-0a1b2c3d4e5f", severity = "warning" }
  }
  queries = {
    oom    = [{ labels = { namespace = "shop", pod = "api-7d9f-x2", container = "api", reason = "OOMKilled" }, value = 1 }]
    owner  = [{ labels = { namespace = "shop", owner_name = "api" }, value = 1 }]
    limit  = [{ labels = {  }, value = 536870912 }]
    firing = []
  }
  expect {
    decision = "remediate"
    runbook  = "crashloop_oom"
    target   = "shop/api"
    calls = [
      { tool = "k8s_set_memory_limit", args = { namespace = "shop", deployment = "api", container = "api", memory_mib = "640" }, policy = "allow" },
    ]
  }
}

# kubernetes-mixin before its waiting-reason rule: the restart rate of
# kube_pod_container_status_restarts_total, severity critical, without the
# reason label.
test "kubernetes-mixin (older) KubePodCrashLooping, last killed by the OOM killer" {
  alert {
    labels = { alertname = "KubePodCrashLooping", namespace = "shop", pod = "api-7d9f-x2", container = "api", job = "kube-state-metrics", instance = "10.0.0.7:8080", severity = "critical" }
  }
  queries = {
    oom    = [{ labels = { namespace = "shop", pod = "api-7d9f-x2", container = "api", reason = "OOMKilled" }, value = 1 }]
    owner  = [{ labels = { namespace = "shop", owner_name = "api" }, value = 1 }]
    limit  = [{ labels = {  }, value = 536870912 }]
    firing = []
  }
  expect {
    decision = "remediate"
    runbook  = "crashloop_oom"
    target   = "shop/api"
    calls = [
      { tool = "k8s_set_memory_limit", args = { namespace = "shop", deployment = "api", container = "api", memory_mib = "640" }, policy = "allow" },
    ]
  }
}

# kube-prometheus: InfoInhibitor (severity none) exists to inhibit info alerts.
test "kube-prometheus InfoInhibitor is ignored" {
  alert {
    labels = { alertname = "InfoInhibitor", severity = "none", namespace = "shop" }
  }
  expect {
    decision = "ignore"
  }
}

# kubernetes-mixin: KubeQuotaAlmostFull is severity info: for reading, not for acting.
test "kubernetes-mixin KubeQuotaAlmostFull (info) is ignored" {
  alert {
    labels = { alertname = "KubeQuotaAlmostFull", namespace = "shop", resource = "requests.memory", resourcequota = "shop-quota", severity = "info" }
  }
  expect {
    decision = "ignore"
  }
}

# examples/prometheus/medic-rules.yml (no public rule covers it): the
# resident memory of a process grows steadily. The restart runs at once; the
# MemoryMax step (high risk) waits for a human, and runs only if the restart
# did not bring the memory down.
test "medic-rules ServiceMemoryLeak" {
  alert {
    labels = { alertname = "ServiceMemoryLeak", instance = "localhost:8080", job = "api", severity = "warning" }
  }
  queries = {
    rss    = [{ labels = { instance = "localhost:8080", job = "api" }, value = 3221225472 }]
    unit   = [{ labels = { instance = "localhost:9100", name = "api.service", state = "active", nodename = "medic-test-host" }, value = 1 }]
    firing = []
  }
  expect {
    decision = "approve"
    runbook  = "host_service_memory_leak"
    target   = "localhost:8080"
    calls = [
      { tool = "systemd_restart", args = { unit = "api.service" }, policy = "allow" },
      { tool = "systemd_set_memory_max", args = { unit = "api.service", memory_mib = "4608" }, policy = "needs_approval", reasons = ["high-risk tools always need approval"] },
    ]
  }
}

# ------------------------------------------------- label-set variants ---

# kube-prometheus renders node-mixin with job="node-exporter" and scrapes
# node_exporter as a DaemonSet: the series carry container, endpoint,
# namespace, pod and service, and instance is the node's address.
test "kube-prometheus NodeFilesystemSpaceFillingUp, node_exporter as a DaemonSet" {
  alert {
    labels = { alertname = "NodeFilesystemSpaceFillingUp", instance = "10.0.3.17:9100", job = "node-exporter", container = "node-exporter", endpoint = "https", namespace = "monitoring", pod = "node-exporter-7xk2p", service = "node-exporter", device = "/dev/nvme0n1p1", fstype = "xfs", mountpoint = "/", severity = "warning" }
  }
  queries = {
    node     = [{ labels = { instance = "10.0.3.17:9100", nodename = "medic-test-host" }, value = 1 }]
    writable = [{ labels = { instance = "10.0.3.17:9100", mountpoint = "/" }, value = 0 }]
    firing   = []
  }
  expect {
    decision = "remediate"
    runbook  = "host_filesystem_free_space"
    target   = "10.0.3.17:9100/"
    calls = [
      { tool = "delete_rotated_logs", args = { mountpoint = "/" }, policy = "allow" },
      { tool = "vacuum_journal", args = { max_mib = "512" }, policy = "allow" },
      { tool = "clean_package_caches", policy = "allow" },
    ]
  }
}

test "kube-prometheus NodeFilesystemAlmostOutOfSpace, critical, node_exporter as a DaemonSet" {
  alert {
    labels = { alertname = "NodeFilesystemAlmostOutOfSpace", instance = "10.0.3.17:9100", job = "node-exporter", container = "node-exporter", endpoint = "https", namespace = "monitoring", pod = "node-exporter-7xk2p", service = "node-exporter", device = "/dev/nvme0n1p1", fstype = "xfs", mountpoint = "/var", severity = "critical" }
  }
  queries = {
    node     = [{ labels = { instance = "10.0.3.17:9100", nodename = "medic-test-host" }, value = 1 }]
    writable = [{ labels = { instance = "10.0.3.17:9100", mountpoint = "/var" }, value = 0 }]
    firing   = []
  }
  expect {
    decision = "remediate"
    runbook  = "host_filesystem_free_space"
    target   = "10.0.3.17:9100/var"
    calls = [
      { tool = "delete_rotated_logs", args = { mountpoint = "/var" }, policy = "allow" },
      { tool = "vacuum_journal", args = { max_mib = "512" }, policy = "allow" },
      { tool = "clean_package_caches", policy = "allow" },
    ]
  }
}

# node-mixin with node_exporter scraped by DNS name: the host is found by
# its node name, whatever instance says.
test "node-mixin NodeFilesystemAlmostOutOfSpace, instance by DNS name" {
  alert {
    labels = { alertname = "NodeFilesystemAlmostOutOfSpace", instance = "web-1.example.com:9100", job = "node", device = "/dev/nvme0n1p1", fstype = "xfs", mountpoint = "/srv/data", severity = "warning" }
  }
  queries = {
    node     = [{ labels = { instance = "web-1.example.com:9100", nodename = "medic-test-host" }, value = 1 }]
    writable = [{ labels = { instance = "web-1.example.com:9100", mountpoint = "/srv/data" }, value = 0 }]
    firing   = []
  }
  expect {
    decision = "remediate"
    runbook  = "host_filesystem_free_space"
    target   = "web-1.example.com:9100/srv/data"
    calls = [
      { tool = "delete_rotated_logs", args = { mountpoint = "/srv/data" }, policy = "allow" },
      { tool = "vacuum_journal", args = { max_mib = "512" }, policy = "allow" },
      { tool = "clean_package_caches", policy = "allow" },
    ]
  }
}

# awesome-prometheus-alerts: sum by (instance, job) of (up == 0) for hosts
# up for over 10 minutes (node_time_seconds - node_boot_time_seconds > 600),
# critical. Labels: instance, job.
test "awesome-prometheus-alerts PrometheusTargetMissingWithWarmupTime" {
  alert {
    labels = { alertname = "PrometheusTargetMissingWithWarmupTime", instance = "127.0.0.1:8080", job = "api", severity = "critical" }
  }
  queries = {
    down   = [{ labels = { instance = "127.0.0.1:8080", job = "api" }, value = 0 }]
    unit   = [{ labels = { instance = "localhost:9100", job = "node", name = "api.service", state = "active", type = "simple", nodename = "medic-test-host" }, value = 1 }]
    firing = []
  }
  expect {
    decision = "remediate"
    runbook  = "host_service_down_restart"
    target   = "127.0.0.1:8080"
    calls = [
      { tool = "systemd_restart", args = { unit = "api.service" }, policy = "allow" },
    ]
  }
}

# kube-prometheus renders kubernetes-mixin over kube-state-metrics scraped
# with honor_labels: the pod's namespace, pod and container, and the scrape's
# endpoint, instance, job and service.
test "kube-prometheus KubePodCrashLooping, last killed by the OOM killer" {
  alert {
    labels = { alertname = "KubePodCrashLooping", namespace = "shop", pod = "api-7d9f-x2", container = "api", reason = "CrashLoopBackOff", endpoint = "https-main", instance = "10.0.1.4:8443", job = "kube-state-metrics", service = "kube-state-metrics", uid = "5c0a7d7e-1f2b-4c3d-9e8f-0a1b2c3d4e5f", severity = "warning" }
  }
  queries = {
    oom    = [{ labels = { namespace = "shop", pod = "api-7d9f-x2", container = "api", reason = "OOMKilled" }, value = 1 }]
    owner  = [{ labels = { namespace = "shop", owner_name = "api" }, value = 1 }]
    limit  = [{ labels = {}, value = 536870912 }]
    firing = []
  }
  expect {
    decision = "remediate"
    runbook  = "crashloop_oom"
    target   = "shop/api"
    calls = [
      { tool = "k8s_set_memory_limit", args = { namespace = "shop", deployment = "api", container = "api", memory_mib = "640" }, policy = "allow" },
    ]
  }
}

# node-mixin's warning on a data filesystem of its own (not root, not
# /var): the runbook takes any writable mountpoint of this host.
test "node-mixin NodeFilesystemSpaceFillingUp, warning, a data filesystem" {
  alert {
    labels = { alertname = "NodeFilesystemSpaceFillingUp", instance = "localhost:9100", job = "node", device = "/dev/nvme1n1p1", fstype = "xfs", mountpoint = "/srv/data", severity = "warning" }
  }
  queries = {
    node     = [{ labels = { instance = "localhost:9100", nodename = "medic-test-host", sysname = "Linux" }, value = 1 }]
    writable = [{ labels = { instance = "localhost:9100", mountpoint = "/srv/data" }, value = 0 }]
    firing   = []
  }
  expect {
    decision = "remediate"
    runbook  = "host_filesystem_free_space"
    target   = "localhost:9100/srv/data"
    calls = [
      { tool = "delete_rotated_logs", args = { mountpoint = "/srv/data" }, policy = "allow" },
      { tool = "vacuum_journal", args = { max_mib = "512" }, policy = "allow" },
      { tool = "clean_package_caches", policy = "allow" },
    ]
  }
}

# Prometheus's documentation's InstanceDown (up == 0 for 5m, severity
# page) for a target that Prometheus reaches by 127.0.0.1.
test "Prometheus documentation InstanceDown, target on 127.0.0.1" {
  alert {
    labels = { alertname = "InstanceDown", instance = "127.0.0.1:8080", job = "api", severity = "page" }
  }
  queries = {
    down   = [{ labels = { instance = "127.0.0.1:8080", job = "api" }, value = 0 }]
    unit   = [{ labels = { instance = "localhost:9100", job = "node", name = "api.service", state = "active", type = "simple", nodename = "medic-test-host" }, value = 1 }]
    firing = []
  }
  expect {
    decision = "remediate"
    runbook  = "host_service_down_restart"
    target   = "127.0.0.1:8080"
    calls = [
      { tool = "systemd_restart", args = { unit = "api.service" }, policy = "allow" },
    ]
  }
}

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
test "awesome-prometheus-alerts KafkaConsumersGroup, one stuck partition" {
  alert {
    labels = { alertname = "KafkaConsumersGroup", consumergroup = "invoicer", severity = "critical" }
  }
  queries = {
    lagging    = [{ labels = { consumergroup = "invoicer", topic = "invoices", partition = "3" }, value = 5000 }]
    stuck      = [{ labels = { consumergroup = "invoicer", topic = "invoices", partition = "3" }, value = 1234567 }]
    partitions = [{ labels = { consumergroup = "invoicer", topic = "invoices", partition = "3" }, value = 5000 }, { labels = { consumergroup = "invoicer", topic = "invoices", partition = "1" }, value = 0 }]
    replicas   = [{ labels = { namespace = "billing", deployment = "invoicer" }, value = 3 }]
    firing     = []
  }
  expect {
    decision = "approve"
    runbook  = "kafka_poison_pill"
    target   = "invoicer/invoices"
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

# Near miss. node-mixin: node_filesystem_avail_bytes{fstype!="",
# mountpoint!=""} under its threshold and predicted to run out, at warning
# (24h) and critical (4h), with device, fstype, instance, job and
# mountpoint. On a host other than medic's own, medic cannot free space.
test "node-mixin NodeFilesystemSpaceFillingUp on another host escalates" {
  alert {
    labels = { alertname = "NodeFilesystemSpaceFillingUp", instance = "db-1:9100", job = "node", device = "/dev/sda1", fstype = "ext4", mountpoint = "/var/log", severity = "critical" }
  }
  expect {
    decision = "escalate"
  }
}

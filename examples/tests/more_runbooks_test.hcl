# More tests for runbooks.hcl: every runbook's positive case, near misses
# (the right alertname with the wrong shape), hostile values and the policy
# boundaries.
runbooks = ["../../runbooks.hcl"]
at       = "2026-11-26T12:00:00Z"

test "crash loop from OOM raises the limit, and verification needs zero restarts" {
  alert {
    labels = { alertname = "KubePodCrashLooping", namespace = "shop", pod = "api-7d9f-x2", container = "api" }
  }
  queries = {
    oom    = [{ labels = { reason = "OOMKilled" }, value = 1 }]
    owner  = [{ labels = { namespace = "shop", owner_name = "api" }, value = 1 }]
    limit  = [{ labels = {}, value = 1073741824 }]
    firing = []
  }
  verify {
    before = 6
    after  = 0
  }
  expect {
    decision = "remediate"
    runbook  = "crashloop_oom"
    calls = [
      { tool = "k8s_set_memory_limit", args = { namespace = "shop", deployment = "api", container = "api", memory_mib = "1280" }, policy = "allow",
      argv = ["kubectl", "--namespace", "shop", "set", "resources", "deployment/api", "--containers=api", "--limits=memory=1280Mi"] },
    ]
    verified = true
  }
}

test "restarts after the raise are not a recovery" {
  alert {
    labels = { alertname = "KubePodCrashLooping", namespace = "shop", pod = "api-7d9f-x2", container = "api" }
  }
  queries = {
    oom    = [{ labels = {}, value = 1 }]
    owner  = [{ labels = { namespace = "shop", owner_name = "api" }, value = 1 }]
    limit  = [{ labels = {}, value = 1073741824 }]
    firing = []
  }
  verify {
    before = 6
    after  = 2
  }
  expect {
    decision = "remediate"
    verified = false
  }
}

test "policy: the 3rd execution in an hour is allowed" {
  alert {
    labels = { alertname = "KubeContainerOOMKilled", namespace = "shop", pod = "api-7d9f-x2", container = "api" }
  }
  queries = {
    owner  = [{ labels = { namespace = "shop", owner_name = "api" }, value = 1 }]
    limit  = [{ labels = {}, value = 536870912 }]
    firing = []
  }
  state {
    executions_target_hour = 2
  }
  expect {
    decision = "remediate"
  }
}

test "policy: the 4th execution in an hour is denied" {
  alert {
    labels = { alertname = "KubeContainerOOMKilled", namespace = "shop", pod = "api-7d9f-x2", container = "api" }
  }
  queries = {
    owner  = [{ labels = { namespace = "shop", owner_name = "api" }, value = 1 }]
    limit  = [{ labels = {}, value = 536870912 }]
    firing = []
  }
  state {
    executions_target_hour = 3
  }
  expect {
    decision = "reject"
    calls = [{ tool = "k8s_set_memory_limit", policy = "deny", reasons = ["rate limit: 3 executions"] }]
  }
}

test "policy: more than 20% of the fleet is denied" {
  alert {
    labels = { alertname = "CertManagerCertExpirySoon", exported_namespace = "shop", name = "shop-tls" }
  }
  state {
    targets_affected = 21
    fleet_size       = 100
  }
  expect {
    decision = "reject"
    calls    = [{ tool = "cert_manager_renew", policy = "deny", reasons = ["blast radius"] }]
  }
}

test "policy: a tool that keeps failing needs approval" {
  alert {
    labels = { alertname = "CertManagerCertExpirySoon", exported_namespace = "shop", name = "shop-tls" }
  }
  state {
    tool_runs         = 10
    tool_success_rate = 0.3
  }
  expect {
    decision = "approve"
    calls    = [{ tool = "cert_manager_renew", policy = "needs_approval", reasons = ["recent success rate"] }]
  }
}

test "certificate with a hostile name is rejected" {
  alert {
    labels = { alertname = "CertManagerCertExpirySoon", exported_namespace = "shop", name = "--all" }
  }
  expect {
    decision = "reject"
    runbook  = "certificate_expiring_renew"
  }
}

test "lag on one partition that still moves is not a poison pill" {
  alert {
    labels = { alertname = "KafkaConsumerGroupLagHigh", namespace = "billing", consumergroup = "invoicer", topic = "invoices" }
  }
  queries = {
    lagging    = [{ labels = { topic = "invoices", partition = "3" }, value = 5000 }]
    stuck      = []
    partitions = [{ labels = { topic = "invoices", partition = "3" }, value = 5000 }, { labels = { topic = "invoices", partition = "1" }, value = 0 }, { labels = { topic = "invoices", partition = "2" }, value = 0 }]
    replicas   = [{ labels = { namespace = "billing", deployment = "invoicer" }, value = 3 }]
    firing     = []
  }
  expect {
    decision = "escalate"
  }
}

test "a topic name in the lag series that could be an option is rejected" {
  alert {
    labels = { alertname = "KafkaConsumerGroupLagHigh", namespace = "billing", consumergroup = "invoicer" }
  }
  queries = {
    lagging    = [{ labels = { topic = "--delete", partition = "0" }, value = 5000 }]
    stuck      = [{ labels = { topic = "--delete", partition = "0" }, value = 10 }]
    brokers    = [{ labels = { address = "kafka:9092", id = "0" }, value = 1 }]
    partitions = [{ labels = { topic = "--delete", partition = "0" }, value = 5000 }]
    replicas   = [{ labels = { namespace = "billing", deployment = "invoicer" }, value = 3 }]
    firing     = []
  }
  expect {
    decision = "reject"
    runbook  = "kafka_poison_pill"
  }
}

test "a slow downstream behind an open breaker is scaled out" {
  alert {
    labels = { alertname = "CircuitBreakerOpen", namespace = "shop", application = "checkout", name = "payments" }
  }
  queries = {
    downstream_p99    = [{ labels = {}, value = 2.5 }]
    downstream_errors = [{ labels = {}, value = 0.01 }]
    replicas          = [{ labels = {}, value = 4 }]
  }
  expect {
    decision = "remediate"
    runbook  = "circuit_breaker_slow_downstream"
    calls    = [{ tool = "k8s_scale", args = { namespace = "shop", deployment = "payments", replicas = "6" }, policy = "allow" }]
  }
}

test "a failing downstream is escalated, not scaled" {
  alert {
    labels = { alertname = "CircuitBreakerOpen", namespace = "shop", application = "checkout", name = "payments" }
  }
  queries = {
    downstream_p99    = [{ labels = {}, value = 2.5 }]
    downstream_errors = [{ labels = {}, value = 0.4 }]
    replicas          = [{ labels = {}, value = 4 }]
  }
  expect {
    decision = "escalate"
  }
}

test "p99 over the SLO with saturated CPU scales out, capped at 50" {
  alert {
    labels = { alertname = "HTTPLatencyP99AboveSLO", namespace = "shop", deployment = "web" }
  }
  queries = {
    cpu_saturation = [{ labels = {}, value = 0.95 }]
    replicas       = [{ labels = {}, value = 49 }]
    firing         = []
  }
  expect {
    decision = "remediate"
    runbook  = "latency_slo_scale_out"
    calls    = [{ tool = "k8s_scale", args = { namespace = "shop", deployment = "web", replicas = "50" }, policy = "allow" }]
  }
}

test "p99 over the SLO with idle CPU is low confidence and escalates" {
  alert {
    labels = { alertname = "HTTPLatencyP99AboveSLO", namespace = "shop", deployment = "web" }
  }
  queries = {
    cpu_saturation = [{ labels = {}, value = 0.2 }]
    replicas       = [{ labels = {}, value = 4 }]
    firing         = []
  }
  expect {
    decision = "escalate"
  }
}

test "category=security beats a runbook that would act" {
  alert {
    labels = { alertname = "KubeContainerOOMKilled", category = "security", namespace = "shop", pod = "p", container = "c" }
  }
  queries = {
    owner  = [{ labels = { namespace = "shop", owner_name = "api" }, value = 1 }]
    limit  = [{ labels = {}, value = 536870912 }]
    firing = []
  }
  expect {
    decision = "escalate"
    runbook  = "security_category_escalate"
  }
}

test "data corruption is escalated" {
  alert {
    labels = { alertname = "PostgresDataChecksumFailure" }
  }
  expect {
    decision = "escalate"
    runbook  = "data_corruption_escalate"
  }
}

test "compliance is escalated" {
  alert {
    labels = { alertname = "AuditLogDisabled" }
  }
  expect {
    decision = "escalate"
    runbook  = "compliance_escalate"
  }
}

test "three alertnames firing in one namespace is ambiguous" {
  alert {
    labels = { alertname = "KubePodCrashLooping", namespace = "shop", pod = "api-7d9f-x2", container = "api" }
  }
  queries = {
    oom    = [{ labels = {}, value = 1 }]
    owner  = [{ labels = { namespace = "shop", owner_name = "api" }, value = 1 }]
    limit  = [{ labels = {}, value = 536870912 }]
    firing = [{ labels = { alertname = "A" }, value = 1 }, { labels = { alertname = "B" }, value = 1 }, { labels = { alertname = "C" }, value = 1 }]
  }
  expect {
    decision = "escalate"
    runbook  = "ambiguous_multi_signal"
  }
}

# host_service_scale_out: medic-rules' ServiceLatencyHigh carries the job
# only; the instances are the template's active units on this host.
test "a slow templated service gets its next instance" {
  alert {
    labels = { alertname = "ServiceLatencyHigh", job = "api", severity = "warning" }
  }
  queries = {
    instances = [
      { labels = { name = "api@1.service", state = "active", type = "simple", instance = "localhost:9100", nodename = "medic-test-host" }, value = 1 },
      { labels = { name = "api@2.service", state = "active", type = "simple", instance = "localhost:9100", nodename = "medic-test-host" }, value = 1 },
    ]
  }
  expect {
    decision = "remediate"
    runbook  = "host_service_scale_out"
    target   = "api"
    calls    = [{ tool = "systemd_start", args = { unit = "api@3.service" }, policy = "allow" }]
  }
}

test "a slow templated service on another host escalates" {
  alert {
    labels = { alertname = "ServiceLatencyHigh", job = "api", severity = "warning" }
  }
  queries = {
    instances = [{ labels = { name = "api@1.service", state = "active", instance = "web-2:9100", nodename = "web-2" }, value = 1 }]
  }
  expect {
    decision = "escalate"
  }
}

test "a slow templated service at eight instances escalates" {
  alert {
    labels = { alertname = "ServiceLatencyHigh", job = "api", severity = "warning" }
  }
  queries = {
    instances = [
      { labels = { name = "api@1.service", nodename = "medic-test-host" }, value = 1 },
      { labels = { name = "api@2.service", nodename = "medic-test-host" }, value = 1 },
      { labels = { name = "api@3.service", nodename = "medic-test-host" }, value = 1 },
      { labels = { name = "api@4.service", nodename = "medic-test-host" }, value = 1 },
      { labels = { name = "api@5.service", nodename = "medic-test-host" }, value = 1 },
      { labels = { name = "api@6.service", nodename = "medic-test-host" }, value = 1 },
      { labels = { name = "api@7.service", nodename = "medic-test-host" }, value = 1 },
      { labels = { name = "api@8.service", nodename = "medic-test-host" }, value = 1 },
    ]
  }
  expect {
    decision = "escalate"
  }
}

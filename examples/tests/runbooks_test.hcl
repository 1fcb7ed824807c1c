# Unit tests for runbooks.hcl: `medic test examples/tests/*.hcl`.
# Each test gives one alert and the results of the queries it needs (by
# query name), and states the decision, the runbook, and the calls with
# their arguments and the policy's verdict. Queries without a stub fail, so
# the runbooks that need them do not match.
runbooks = ["../../runbooks.hcl"]
at       = "2026-11-26T12:00:00Z"

test "OOMKilled raises the limit by 25%" {
  alert {
    labels = { alertname = "KubeContainerOOMKilled", namespace = "shop", pod = "api-7d9f-x2", container = "api", severity = "warning" }
  }
  queries = {
    owner  = [{ labels = { namespace = "shop", owner_name = "api" }, value = 1 }]
    limit  = [{ labels = {}, value = 536870912 }]
    firing = []
  }
  expect {
    decision   = "remediate"
    runbook    = "oom_killed_raise_limit"
    confidence = 0.9
    target     = "shop/api"
    calls = [
      { tool = "k8s_set_memory_limit", args = { namespace = "shop", deployment = "api", container = "api", memory_mib = "640" }, policy = "allow" },
    ]
  }
}

test "OOMKilled with a hostile container label is rejected" {
  alert {
    labels = { alertname = "KubeContainerOOMKilled", namespace = "shop", pod = "api-7d9f-x2", container = "$(reboot)" }
  }
  queries = {
    owner  = [{ labels = { namespace = "shop", owner_name = "api" }, value = 1 }]
    limit  = [{ labels = {}, value = 536870912 }]
    firing = []
  }
  expect {
    decision = "reject"
    runbook  = "oom_killed_raise_limit"
  }
}

test "crash loop without OOM evidence escalates" {
  alert {
    labels = { alertname = "KubePodCrashLooping", namespace = "shop", pod = "api-7d9f-x2", container = "api" }
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

test "a poison pill goes to the dead-letter topic and the group moves past it" {
  alert {
    labels = { alertname = "KafkaConsumerGroupLagHigh", namespace = "billing", consumergroup = "invoicer", topic = "invoices" }
  }
  queries = {
    lagging    = [{ labels = { topic = "invoices", partition = "3" }, value = 5000 }]
    stuck      = [{ labels = { topic = "invoices", partition = "3" }, value = 1234567 }]
    brokers    = [{ labels = { address = "kafka-0.kafka.billing.svc:9092", id = "0" }, value = 1 }, { labels = { address = "kafka-1.kafka.billing.svc:9092", id = "1" }, value = 1 }]
    partitions = [{ labels = { topic = "invoices", partition = "3" }, value = 5000 }, { labels = { topic = "invoices", partition = "1" }, value = 0 }]
    replicas   = [{ labels = { namespace = "billing", deployment = "invoicer" }, value = 3 }]
    firing     = []
  }
  expect {
    decision = "remediate"
    runbook  = "kafka_poison_pill"
    target   = "invoicer/invoices"
    calls = [
      { tool = "kafka_dead_letter", args = { bootstrap = "kafka-0.kafka.billing.svc:9092", group = "invoicer", topic = "invoices", partition = "3", offset = "1234567", dead_letter_topic = "invoices.dlq" }, policy = "allow" },
    ]
  }
}

test "lag on every partition scales the consumers" {
  alert {
    labels = { alertname = "KafkaConsumerGroupLagHigh", namespace = "billing", consumergroup = "invoicer", topic = "invoices" }
  }
  queries = {
    lagging    = [{ labels = { topic = "invoices", partition = "0" }, value = 5000 }, { labels = { topic = "invoices", partition = "1" }, value = 4000 }]
    stuck      = []
    partitions = [{ labels = { topic = "invoices", partition = "0" }, value = 5000 }, { labels = { topic = "invoices", partition = "1" }, value = 4000 }]
    replicas   = [{ labels = { namespace = "billing", deployment = "invoicer" }, value = 3 }]
    firing     = []
  }
  expect {
    decision = "remediate"
    runbook  = "kafka_lag_all_partitions"
    calls = [
      { tool = "k8s_scale", args = { namespace = "billing", deployment = "invoicer", replicas = "5" }, policy = "allow" },
    ]
  }
}

test "an expiring certificate is renewed" {
  alert {
    labels = { alertname = "CertManagerCertExpirySoon", exported_namespace = "shop", name = "shop-tls" }
  }
  expect {
    decision = "remediate"
    runbook  = "certificate_expiring_renew"
    calls = [
      { tool = "cert_manager_renew", args = { namespace = "shop", certificate = "shop-tls" }, policy = "allow" },
    ]
  }
}

test "a Falco alert is only escalated" {
  alert {
    labels = { alertname = "FalcoShellInContainer" }
  }
  expect {
    decision = "escalate"
    runbook  = "security_escalate"
  }
}

test "Watchdog is ignored" {
  alert {
    labels = { alertname = "Watchdog", severity = "none" }
  }
  expect {
    decision = "ignore"
  }
}

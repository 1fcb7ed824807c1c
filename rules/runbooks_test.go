package rules

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// TestShippedRunbooks runs each runbook of ../runbooks.hcl against the
// alert and the query results it is written for, and against near misses:
// which runbook is chosen, and the exact argv it plans.
func TestShippedRunbooks(t *testing.T) {
	set, diags := Load("../runbooks.hcl")
	if diags.HasErrors() {
		var b bytes.Buffer
		WriteDiagnostics(&b, diags)
		t.Fatal(b.String())
	}
	s := func(v float64, kv ...string) Sample {
		l := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			l[kv[i]] = kv[i+1]
		}
		return Sample{Labels: l, Value: v}
	}
	pod := map[string]string{"alertname": "KubePodCrashLooping", "namespace": "shop", "pod": "api-7d9f-x2", "container": "api", "severity": "warning"}
	oomAlert := map[string]string{"alertname": "KubeContainerOOMKilled", "namespace": "shop", "pod": "api-7d9f-x2", "container": "api", "severity": "warning"}
	owner := []Sample{s(1, "namespace", "shop", "owner_name", "api")}
	limit := []Sample{s(512 * 1024 * 1024)}
	lag := map[string]string{"alertname": "KafkaConsumerGroupLagHigh", "namespace": "billing", "consumergroup": "invoicer", "topic": "invoices"}

	cases := []struct {
		name    string
		labels  map[string]string
		query   map[string][]Sample
		chosen  string
		argv    []string // of the first step
		target  string
		escalat bool
	}{
		{name: "oom killed", labels: oomAlert, query: map[string][]Sample{"owner": owner, "limit": limit},
			chosen: "oom_killed_raise_limit", target: "shop/api",
			argv: []string{"kubectl", "--namespace", "shop", "set", "resources", "deployment/api", "--containers=api", "--limits=memory=640Mi"}},
		{name: "oom killed near the cap", labels: oomAlert, query: map[string][]Sample{"owner": owner, "limit": {s(15 * 1024 * 1024 * 1024)}},
			chosen: "oom_killed_raise_limit", target: "shop/api",
			argv: []string{"kubectl", "--namespace", "shop", "set", "resources", "deployment/api", "--containers=api", "--limits=memory=16384Mi"}},
		{name: "oom killed, pod without owner", labels: oomAlert, query: map[string][]Sample{"owner": {}, "limit": limit}},
		{name: "crash loop from OOM", labels: pod, query: map[string][]Sample{"oom": {s(1)}, "owner": owner, "limit": limit},
			chosen: "crashloop_oom", target: "shop/api",
			argv: []string{"kubectl", "--namespace", "shop", "set", "resources", "deployment/api", "--containers=api", "--limits=memory=640Mi"}},
		{name: "crash loop, not OOM", labels: pod, query: map[string][]Sample{"oom": {}, "owner": owner, "limit": limit}},
		{name: "poison pill on one partition", labels: lag,
			query:  map[string][]Sample{"lagging": {s(5000, "topic", "invoices", "partition", "3")}, "stuck": {s(1234567, "topic", "invoices", "partition", "3")}, "brokers": {s(1, "address", "kafka-0:9092", "id", "0")}, "partitions": {s(5000, "topic", "invoices", "partition", "3"), s(0, "topic", "invoices", "partition", "1")}, "replicas": {s(3, "namespace", "billing", "deployment", "invoicer")}},
			chosen: "kafka_poison_pill", target: "invoicer/invoices",
			argv: []string{"medic-kafka-dead-letter", "--bootstrap=kafka-0:9092", "--group=invoicer", "--topic=invoices", "--partition=3", "--offset=1234567", "--dead-letter-topic=invoices.dlq", "--wait=45s"}},
		{name: "lag on all partitions", labels: lag,
			query:  map[string][]Sample{"lagging": {s(5000, "topic", "invoices", "partition", "0"), s(4000, "topic", "invoices", "partition", "1")}, "stuck": {}, "partitions": {s(5000, "topic", "invoices", "partition", "0"), s(4000, "topic", "invoices", "partition", "1")}, "replicas": {s(3, "namespace", "billing", "deployment", "invoicer")}},
			chosen: "kafka_lag_all_partitions", target: "billing/invoicer",
			argv: []string{"kubectl", "--namespace", "billing", "scale", "deployment/invoicer", "--replicas=5"}},
		{name: "lag on one partition that still moves", labels: lag,
			query: map[string][]Sample{"lagging": {s(5000, "topic", "invoices", "partition", "3")}, "stuck": {}, "partitions": {s(5000, "topic", "invoices", "partition", "3"), s(0, "topic", "invoices", "partition", "1"), s(0, "topic", "invoices", "partition", "2")}, "replicas": {s(3, "namespace", "billing", "deployment", "invoicer")}}},
		{name: "filesystem filling on this host",
			labels: map[string]string{"alertname": "NodeFilesystemAlmostOutOfSpace", "instance": "localhost:9100", "job": "node", "mountpoint": "/", "device": "/dev/sda2", "fstype": "ext4", "severity": "critical"},
			query:  map[string][]Sample{"node": {s(1, "instance", "localhost:9100", "nodename", TestHost.Name)}, "writable": {s(0)}},
			chosen: "host_filesystem_free_space", target: "localhost:9100/",
			argv: []string{"find", "/", "-xdev", "-type", "f", "-regextype", "posix-extended",
				"-regex", `.*/logs?/(.*/)?[^/]+((\.[1-9][0-9]{0,3}|-[0-9]{8})(\.(gz|xz|zst|bz2))?|\.old)`, "-mmin", "+10", "-print", "-delete"}},
		{name: "filesystem filling on another host",
			labels: map[string]string{"alertname": "NodeFilesystemAlmostOutOfSpace", "instance": "db-1:9100", "mountpoint": "/var/log"},
			query:  map[string][]Sample{"node": {s(1, "instance", "db-1:9100", "nodename", "db-1")}, "writable": {s(0)}}},
		{name: "slow templated service on this host",
			labels: map[string]string{"alertname": "ServiceLatencyHigh", "job": "api", "severity": "warning"},
			query:  map[string][]Sample{"instances": {s(1, "name", "api@1.service", "nodename", TestHost.Name), s(1, "name", "api@2.service", "nodename", TestHost.Name)}},
			chosen: "host_service_scale_out", target: "api"},
		{name: "slow templated service on another host",
			labels: map[string]string{"alertname": "ServiceLatencyHigh", "job": "api"},
			query:  map[string][]Sample{"instances": {s(1, "name", "api@1.service", "nodename", "web-2")}}},
		{name: "failed service on this host",
			labels: map[string]string{"alertname": "NodeSystemdServiceFailed", "instance": "localhost:9100", "job": "node", "name": "api.service", "state": "failed", "type": "simple", "severity": "warning"},
			query:  map[string][]Sample{"node": {s(1, "instance", "localhost:9100", "nodename", TestHost.Name)}, "scraped": {s(1)}},
			chosen: "host_unit_failed_restart", target: "localhost:9100/api.service"},
		{name: "target down, its service active on this host",
			labels: map[string]string{"alertname": "PrometheusTargetMissing", "instance": "127.0.0.1:8080", "job": "api", "severity": "critical"},
			query:  map[string][]Sample{"down": {s(0)}, "unit": {s(1, "instance", "localhost:9100", "name", "api.service", "nodename", TestHost.Name)}},
			chosen: "host_service_down_restart", target: "127.0.0.1:8080"},
		{name: "target down on another host",
			labels: map[string]string{"alertname": "PrometheusTargetMissing", "instance": "10.9.9.9:8080", "job": "api", "severity": "critical"},
			query:  map[string][]Sample{"down": {s(0)}, "unit": {s(1, "instance", "localhost:9100", "name", "api.service", "nodename", TestHost.Name)}}},
		{name: "service leaking memory",
			labels: map[string]string{"alertname": "ServiceMemoryLeak", "instance": "localhost:8080", "job": "api", "severity": "warning"},
			query:  map[string][]Sample{"rss": {s(3 << 30)}, "unit": {s(1, "instance", "localhost:9100", "name", "api.service", "nodename", TestHost.Name)}},
			chosen: "host_service_memory_leak", target: "localhost:8080"},
		{name: "circuit breaker, slow downstream",
			labels: map[string]string{"alertname": "CircuitBreakerOpen", "namespace": "shop", "application": "checkout", "name": "payments"},
			query:  map[string][]Sample{"downstream_p99": {s(2.5)}, "downstream_errors": {s(0.01)}, "replicas": {s(4)}},
			chosen: "circuit_breaker_slow_downstream", target: "shop/payments",
			argv: []string{"kubectl", "--namespace", "shop", "scale", "deployment/payments", "--replicas=6"}},
		{name: "circuit breaker, failing downstream",
			labels: map[string]string{"alertname": "CircuitBreakerOpen", "namespace": "shop", "application": "checkout", "name": "payments"},
			query:  map[string][]Sample{"downstream_p99": {s(2.5)}, "downstream_errors": {s(0.4)}, "replicas": {s(4)}}},
		{name: "latency over SLO, CPU saturated",
			labels: map[string]string{"alertname": "HTTPLatencyP99AboveSLO", "namespace": "shop", "deployment": "web"},
			query:  map[string][]Sample{"cpu_saturation": {s(0.95)}, "replicas": {s(49)}},
			chosen: "latency_slo_scale_out", target: "shop/web",
			argv: []string{"kubectl", "--namespace", "shop", "scale", "deployment/web", "--replicas=50"}},
		{name: "latency over SLO, CPU idle: low confidence",
			labels: map[string]string{"alertname": "HTTPLatencyP99AboveSLO", "namespace": "shop", "deployment": "web"},
			query:  map[string][]Sample{"cpu_saturation": {s(0.2)}, "replicas": {s(4)}}},
		{name: "certificate expiring",
			labels: map[string]string{"alertname": "CertManagerCertExpirySoon", "exported_namespace": "shop", "name": "shop-tls", "namespace": "cert-manager"},
			chosen: "certificate_expiring_renew", target: "shop/shop-tls",
			argv: []string{"cmctl", "renew", "--namespace", "shop", "shop-tls"}},
		{name: "security alert", labels: map[string]string{"alertname": "FalcoShellInContainer", "namespace": "shop"},
			query: map[string][]Sample{"firing": {}}, chosen: "security_escalate", escalat: true},
		{name: "security category beats everything", labels: map[string]string{"alertname": "KubeContainerOOMKilled", "category": "security", "namespace": "shop", "pod": "p", "container": "c"},
			query: map[string][]Sample{"owner": owner, "limit": limit, "firing": {}}, chosen: "security_category_escalate", escalat: true},
		{name: "data corruption", labels: map[string]string{"alertname": "PostgresDataChecksumFailure"}, chosen: "data_corruption_escalate", escalat: true},
		{name: "compliance", labels: map[string]string{"alertname": "AuditLogDisabled"}, chosen: "compliance_escalate", escalat: true},
		{name: "ambiguous: many alerts in one namespace", labels: pod,
			query:  map[string][]Sample{"oom": {s(1)}, "owner": owner, "limit": limit, "firing": {s(1, "alertname", "A"), s(1, "alertname", "B"), s(2, "alertname", "C")}},
			chosen: "ambiguous_multi_signal", escalat: true},
		{name: "hostile container label", labels: map[string]string{"alertname": "KubeContainerOOMKilled", "namespace": "shop", "pod": "p", "container": "--kubeconfig=/tmp/evil"},
			query: map[string][]Sample{"owner": owner, "limit": limit}, chosen: "oom_killed_raise_limit", target: "shop/api", argv: nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			q := tc.query
			if q == nil {
				q = map[string][]Sample{}
			}
			// Queries the case does not mention returned nothing.
			for _, rb := range set.Candidates(tc.labels) {
				for _, qq := range rb.Queries {
					if _, ok := q[qq.Name]; !ok {
						q[qq.Name] = nil
					}
				}
			}
			env := &Env{Labels: tc.labels, Query: q, Host: TestHost, Now: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)}
			d := set.Decide(set.Candidates(tc.labels), env, nil)
			got := ""
			if d.Chosen != nil {
				got = d.Chosen.Name
			}
			if got != tc.chosen {
				t.Fatalf("chosen %q, want %q\nlow: %+v\nalternatives: %+v", got, tc.chosen, d.LowConfidence, d.Alternatives)
			}
			if d.Chosen == nil {
				return
			}
			if d.Chosen.Runbook.Escalate != tc.escalat {
				t.Errorf("escalate %v", d.Chosen.Runbook.Escalate)
			}
			if d.Chosen.Target != tc.target && !tc.escalat {
				t.Errorf("target %q, want %q", d.Chosen.Target, tc.target)
			}
			if tc.escalat {
				return
			}
			calls, err := set.Plan(d.Chosen.Runbook, Vars{Labels: tc.labels, Query: q})
			if tc.argv == nil && tc.name == "hostile container label" {
				if err == nil {
					t.Fatalf("hostile label planned %q", calls[0].Argv)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.argv != nil && strings.Join(calls[0].Argv, "\x00") != strings.Join(tc.argv, "\x00") {
				t.Errorf("argv\n got %q\nwant %q", calls[0].Argv, tc.argv)
			}
			if len(calls[0].Argv) > 0 {
				if prog := calls[0].Argv[0]; (prog == "kubectl" || prog == "cmctl") && calls[0].Env["KUBECONFIG"] != "/etc/medic/kubeconfig" {
					t.Errorf("%s runs without its KUBECONFIG: %v", prog, calls[0].Env)
				}
			}
		})
	}
	// Every shipped runbook has a case that chooses it.
	covered := map[string]bool{}
	for _, tc := range cases {
		covered[tc.chosen] = true
	}
	for _, rb := range set.Runbooks {
		if !covered[rb.Name] {
			t.Errorf("runbook %s has no test case", rb.Name)
		}
	}
}

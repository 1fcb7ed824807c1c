package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"
)

// up starts the whole lab and returns once Prometheus scrapes every
// target and medic, Alertmanager and systemd answer.
func (l *lab) up(ctx context.Context) error {
	ctx, l.cancel = context.WithCancel(ctx)
	if err := l.ensurePackages(); err != nil {
		return err
	}
	step := func(what string) { fmt.Fprintf(os.Stderr, "lab: %s\n", what) }
	step("building medic and its tools")
	if err := l.build(); err != nil {
		return err
	}
	var err error
	for _, a := range []*string{&l.promAddr, &l.amAddr, &l.medicAddr, &l.nodeAddr, &l.kafkaMetricsAddr, &l.sinkAddr} {
		if *a, err = freeAddr(); err != nil {
			return err
		}
	}

	step("booting systemd with the demo services")
	for n := 1; n <= l.o.runs; n++ {
		for kind, id := range map[string]string{"shop": "hung", "leaky": "leak"} {
			if !l.o.want(id) {
				continue
			}
			if err := l.demoUnit(fmt.Sprintf("%s-%d", kind, n)); err != nil {
				return err
			}
		}
		for kind, id := range map[string]string{"api": "slow", "pay": "worse"} {
			if !l.o.want(id) {
				continue
			}
			if err := l.templatedService(fmt.Sprintf("%s-%d", kind, n)); err != nil {
				return err
			}
		}
	}
	if l.bus, err = l.startSandbox(); err != nil {
		return err
	}
	for _, unit := range l.units {
		if err := l.startUnit(unit); err != nil {
			return err
		}
	}
	for job, b := range l.balancers {
		if err := l.serve(l.services[job], b); err != nil {
			return err
		}
		if err := l.serve(l.downstreamAddrs[job], l.downstreams[job]); err != nil {
			return err
		}
		l.bg.Add(1)
		go func() { defer l.bg.Done(); loadAsync(l.loadContext(ctx, job), "http://"+l.services[job]+"/", 40) }()
	}

	step("starting Kafka, its producers and consumers")
	if l.kafka, err = startKafka(); err != nil {
		return err
	}
	for n := 1; n <= l.o.runs; n++ {
		group, topic := fmt.Sprintf("billing-%d", n), fmt.Sprintf("orders-%d", n)
		if err := l.kafka.addTopic(ctx, topic, group); err != nil {
			return err
		}
		l.bg.Add(2)
		go func() { defer l.bg.Done(); l.kafka.produce(l.loadContext(ctx, group), topic, 30) }()
		go func() { defer l.bg.Done(); l.superviseConsumer(ctx, group, topic) }()
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", l.kafka.serveMetrics)
	if err := l.serve(l.kafkaMetricsAddr, mux); err != nil {
		return err
	}
	sink := http.NewServeMux()
	sink.HandleFunc("POST /brief", func(w http.ResponseWriter, r *http.Request) {
		var m map[string]any
		if json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&m) == nil {
			select {
			case l.briefs <- m:
			default:
			}
		}
	})
	if err := l.serve(l.sinkAddr, sink); err != nil {
		return err
	}

	for n := 1; n <= l.o.runs; n++ {
		if l.o.want("unknown") {
			job := fmt.Sprintf("checkout-%d", n)
			addr, err := freeAddr()
			if err != nil {
				return err
			}
			p, err := l.start(job, nil, filepath.Join(l.dir, "bin", "medic-lab"), "demo", "--listen", addr)
			if err != nil {
				return err
			}
			if err := waitHTTP(ctx, p, "http://"+addr+"/metrics", 10*time.Second); err != nil {
				return err
			}
			l.services[job] = addr
			l.bg.Add(1)
			go func() { defer l.bg.Done(); load(l.loadContext(ctx, job), "http://"+addr+"/", 20) }()
		}
		if l.o.want("disk") {
			if err := l.mountFS(fmt.Sprintf("fs-%d", n)); err != nil {
				return err
			}
		}
	}

	step("starting node_exporter, Prometheus, medic and Alertmanager")
	node, err := l.start("node_exporter", []string{"DBUS_SYSTEM_BUS_ADDRESS=" + l.bus}, "/usr/bin/prometheus-node-exporter",
		"--web.listen-address="+l.nodeAddr, "--collector.disable-defaults", "--collector.uname", "--collector.filesystem",
		"--collector.systemd", "--collector.systemd.unit-include=(shop|leaky)-[0-9]+\\.service|(api|pay)-[0-9]+@[0-9]+\\.service")
	if err != nil {
		return err
	}
	if err := waitHTTP(ctx, node, "http://"+l.nodeAddr+"/metrics", 10*time.Second); err != nil {
		return err
	}
	if err := l.startPrometheus(ctx); err != nil {
		return err
	}
	if err := l.startMedic(ctx); err != nil {
		return err
	}
	if err := l.startAlertmanager(ctx); err != nil {
		return err
	}
	// Faults are injected once every target is scraped, so that the
	// timings are the pipeline's, not its start's.
	want := len(l.services) + 2
	return l.until(ctx, 60*time.Second, fmt.Sprintf("Prometheus to scrape all %d targets", want), func() (bool, error) {
		s, err := l.query(ctx, "count(up == 1)")
		return err == nil && len(s) == 1 && int(s[0].Value) == want, nil
	})
}

// loadContext is the context of the traffic a run's service gets: it ends
// when the run is over, so that two cores are not shared with the load of
// every run at once.
func (l *lab) loadContext(ctx context.Context, job string) context.Context {
	ctx, cancel := context.WithCancel(ctx)
	l.mu.Lock()
	l.loads[job] = cancel
	l.mu.Unlock()
	return ctx
}

// endLoad stops the traffic of a run's service.
func (l *lab) endLoad(job string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if cancel := l.loads[job]; cancel != nil {
		cancel()
	}
}

// ensurePackages installs Debian's servers when one is missing, with the
// script the test suite uses.
func (l *lab) ensurePackages() error {
	for _, bin := range []string{"/usr/bin/prometheus", "/usr/bin/prometheus-alertmanager", "/usr/bin/prometheus-node-exporter", "/usr/bin/busctl", "/usr/bin/dbus-daemon"} {
		if _, err := os.Stat(bin); err != nil {
			cmd := exec.Command(filepath.Join(l.repo, "scripts/install-deps.sh"))
			cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
			if err := cmd.Run(); err != nil {
				return fmt.Errorf("scripts/install-deps.sh: %w", err)
			}
			return nil
		}
	}
	return nil
}

// build puts medic, its Kafka tool, the cache cleaner and the lab itself
// (which the demo services and consumers run) into bin/, the first entry
// of medic's PATH, as /usr/lib/medic/tools is on an installed host.
func (l *lab) build() error {
	bin := filepath.Join(l.dir, "bin")
	for _, b := range [][2]string{{"medic", "."}, {"medic-kafka-dead-letter", "./scripts/tools/medic-kafka-dead-letter"}, {"medic-lab", "./scripts/lab"}} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(bin, b[0]), b[1])
		cmd.Dir = l.repo
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %v\n%s", b[1], err, out)
		}
	}
	src, err := os.ReadFile(filepath.Join(l.repo, "scripts/tools/medic-clean-caches"))
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(bin, "medic-clean-caches"), src, 0o755)
}

// demoUnit writes the systemd unit of a demo service; the units see the
// lab's folder as /run/medic-test.
func (l *lab) demoUnit(job string) error {
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	l.services[job] = addr
	unit := fmt.Sprintf("[Unit]\nDescription=medic lab demo %s\nDefaultDependencies=no\n[Service]\nExecStart=/run/medic-test/bin/medic-lab demo --listen %s\n", job, addr)
	l.units = append(l.units, job+".service")
	return os.WriteFile(filepath.Join(l.dir, "units", job+".service"), []byte(unit), 0o644)
}

// templatedService writes the template unit of a service that runs as
// JOB@N.service instances behind a balancer, with a downstream of its
// own, and has two instances started.
func (l *lab) templatedService(job string) error {
	base, err := freePortRange(maxInstances + 1)
	if err != nil {
		return err
	}
	lb, err := freeAddr()
	if err != nil {
		return err
	}
	down, err := freeAddr()
	if err != nil {
		return err
	}
	l.services[job], l.downstreamAddrs[job] = lb, down
	l.balancers[job], l.downstreams[job] = newBalancer(base), &downstream{}
	unit := fmt.Sprintf("[Unit]\nDescription=medic lab %s instance %%i\nDefaultDependencies=no\n[Service]\n"+
		"ExecStart=/run/medic-test/bin/medic-lab instance --port-base %d --instance %%i --downstream http://%s/\n", job, base, down)
	l.units = append(l.units, job+"@1.service", job+"@2.service")
	return os.WriteFile(filepath.Join(l.dir, "units", job+"@.service"), []byte(unit), 0o644)
}

// freePortRange finds n consecutive free 127.0.0.1 ports and returns the
// one before the first.
func freePortRange(n int) (int, error) {
	for try := 0; try < 100; try++ {
		base := 20000 + int(time.Now().UnixNano()%30000)
		ok := true
		for p := base + 1; p <= base+n && ok; p++ {
			ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
			if err != nil {
				ok = false
				continue
			}
			ln.Close()
		}
		if ok {
			return base, nil
		}
	}
	return 0, fmt.Errorf("no %d free ports in a row", n)
}

func (l *lab) startUnit(unit string) error {
	out, err := exec.Command("busctl", "--address="+l.bus, "call", "org.freedesktop.systemd1", "/org/freedesktop/systemd1",
		"org.freedesktop.systemd1.Manager", "StartUnit", "ss", unit, "replace").CombinedOutput()
	if err != nil {
		return fmt.Errorf("start %s: %v: %s", unit, err, out)
	}
	return nil
}

// mountFS mounts a small tmpfs for the disk scenario, with live files on
// it that must survive the clean-up.
func (l *lab) mountFS(name string) error {
	mp := filepath.Join(l.dir, name)
	if err := os.MkdirAll(mp, 0o755); err != nil {
		return err
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=8m,mode=0755", "medic-lab", mp).CombinedOutput(); err != nil {
		return fmt.Errorf("mount a tmpfs at %s: %v: %s", mp, err, out)
	}
	l.mu.Lock()
	l.mounts = append(l.mounts, mp)
	l.mu.Unlock()
	l.saveState()
	old := time.Now().Add(-2 * time.Hour)
	for path, size := range liveFiles(mp) {
		os.MkdirAll(filepath.Dir(path), 0o755)
		if err := os.WriteFile(path, make([]byte, size), 0o644); err != nil {
			return err
		}
		os.Chtimes(path, old, old)
	}
	return nil
}

// liveFiles are what a disk clean-up must leave: the log being written, a
// binlog, and data, one of them numbered like a rotated log.
func liveFiles(mp string) map[string]int {
	return map[string]int{filepath.Join(mp, "log", "app.log"): 64 << 10, filepath.Join(mp, "log", "mysql-bin.000042"): 64 << 10,
		filepath.Join(mp, "data", "orders.db"): 256 << 10, filepath.Join(mp, "data", "orders.db.1"): 16 << 10}
}

func (l *lab) startPrometheus(ctx context.Context) error {
	if err := os.WriteFile(filepath.Join(l.dir, "rules.yml"), []byte(labRules), 0o644); err != nil {
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [rules.yml]\n")
	fmt.Fprintf(&b, "alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: [%q]\n", l.amAddr)
	b.WriteString("scrape_configs:\n")
	// node_exporter reports every filesystem of this machine; the lab
	// keeps only its own tmpfs, so that no fault of the machine's own
	// disks reaches medic, whose disk runbook would act on them.
	var fsList []string
	for _, mp := range l.mounts {
		fsList = append(fsList, regexp.QuoteMeta(mp))
	}
	keep := "(" + strings.Join(fsList, "|") + ")"
	if len(fsList) == 0 {
		keep = "()"
	}
	fmt.Fprintf(&b, `  - job_name: node
    static_configs: [{targets: [%q]}]
    metric_relabel_configs:
      - source_labels: [mountpoint]
        regex: %q
        target_label: __tmp_lab_fs
        replacement: "1"
      - source_labels: [__name__, __tmp_lab_fs]
        regex: "node_filesystem_.+;"
        action: drop
      - regex: __tmp_lab_fs
        action: labeldrop
  - job_name: kafka
    static_configs: [{targets: [%q]}]
`, l.nodeAddr, keep, l.kafkaMetricsAddr)
	jobs := make([]string, 0, len(l.services))
	for job := range l.services {
		jobs = append(jobs, job)
	}
	sort.Strings(jobs)
	for _, job := range jobs {
		fmt.Fprintf(&b, "  - job_name: %q\n    static_configs: [{targets: [%q]}]\n", job, l.services[job])
	}
	cfg := filepath.Join(l.dir, "prometheus.yml")
	if err := os.WriteFile(cfg, []byte(b.String()), 0o644); err != nil {
		return err
	}
	p, err := l.start("prometheus", nil, "/usr/bin/prometheus", "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(l.dir, "data", "prometheus"),
		"--web.listen-address="+l.promAddr, "--rules.alert.resend-delay=1s")
	if err != nil {
		return err
	}
	return waitHTTP(ctx, p, "http://"+l.promAddr+"/-/ready", 30*time.Second)
}

// startMedic runs `medic serve` with the shipped runbooks.hcl, copied
// byte for byte beside its config so that the shipped oncall_webhook tool
// reads its URL there, and the lab's settings in medic.hcl: the stall
// window of a Kafka partition at three of the lab's one-second scrapes,
// the sandbox's systemd, and briefs to the lab's webhook sink.
func (l *lab) startMedic(ctx context.Context) error {
	runbooks, err := os.ReadFile(filepath.Join(l.repo, "runbooks.hcl"))
	if err != nil {
		return err
	}
	files := map[string]string{
		"runbooks.hcl":       string(runbooks),
		"oncall-webhook-url": "http://" + l.sinkAddr + "/brief\n",
		"token":              l.token + "\n",
		"approver-token":     l.approverToken + "\n",
		"medic.hcl": fmt.Sprintf(`runbooks  = ["runbooks.hcl"]
variables = { kafka_stall_window = "5s", service_latency_window = "5s" }
web {
  listen_address      = %q
  bearer_token_file   = "token"
  approver_token_file = "approver-token"
}
storage { path = "data/medic.db" }
prometheus { url = "http://%s" }
remediation { systemd_bus = %q }
# The lab breaks up to 24 things in ten minutes, six of them for one
# runbook; the default storm brake (10 actions across the fleet in 10
# minutes) and spread limit (5 targets of a runbook an hour) would ask a
# human for the rest, as they should on a real fleet.
policy_config {
  storm_limit          = 100
  max_targets_per_hour = 20
}
escalation {
  notify   = "oncall_webhook"
  group_by = ["alertname", "job", "consumergroup", "mountpoint"]
}
`, l.medicAddr, l.promAddr, l.bus),
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(l.dir, name), []byte(text), 0o600); err != nil {
			return err
		}
	}
	env := []string{"PATH=" + filepath.Join(l.dir, "bin") + ":/usr/sbin:/usr/bin:/sbin:/bin"}
	p, err := l.start("medic", env, filepath.Join(l.dir, "bin", "medic"), "serve", "--config.file="+filepath.Join(l.dir, "medic.hcl"))
	if err != nil {
		return err
	}
	return waitHTTP(ctx, p, "http://"+l.medicAddr+"/-/ready", 30*time.Second)
}

// startAlertmanager runs Alertmanager with the shipped
// examples/alertmanager.yml, pointed at the lab's medic and token, and
// group_wait and group_interval at one second instead of 30s and 5m.
func (l *lab) startAlertmanager(ctx context.Context) error {
	example, err := os.ReadFile(filepath.Join(l.repo, "examples/alertmanager.yml"))
	if err != nil {
		return err
	}
	cfg := strings.NewReplacer("http://127.0.0.1:9095/api/v1/alerts", "http://"+l.medicAddr+"/api/v1/alerts",
		"/etc/medic/token", filepath.Join(l.dir, "token"), "group_wait: 30s", "group_wait: 1s", "group_interval: 5m", "group_interval: 1s").Replace(string(example))
	path := filepath.Join(l.dir, "alertmanager.yml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return err
	}
	p, err := l.start("alertmanager", nil, "/usr/bin/prometheus-alertmanager", "--config.file="+path,
		"--storage.path="+filepath.Join(l.dir, "data", "alertmanager"), "--web.listen-address="+l.amAddr, "--cluster.listen-address=")
	if err != nil {
		return err
	}
	return waitHTTP(ctx, p, "http://"+l.amAddr+"/-/ready", 30*time.Second)
}

// superviseConsumer runs a consumer and starts it again one second after
// it exits, as systemd's Restart=always with RestartSec=1s would.
func (l *lab) superviseConsumer(ctx context.Context, group, topic string) {
	logf, err := os.OpenFile(filepath.Join(l.dir, "logs", "consumer-"+group+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return
	}
	defer logf.Close()
	for ctx.Err() == nil {
		cmd := exec.CommandContext(ctx, filepath.Join(l.dir, "bin", "medic-lab"), "consumer", "--brokers", l.kafka.addr, "--group", group, "--topic", topic)
		cmd.Stdout, cmd.Stderr = logf, logf
		err := cmd.Run()
		fmt.Fprintf(logf, "%s consumer exited: %v\n", time.Now().Format(time.RFC3339Nano), err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// load sends perSecond GET requests to url until ctx ends.
func load(ctx context.Context, url string, perSecond int) {
	t := time.NewTicker(time.Second / time.Duration(perSecond))
	defer t.Stop()
	c := &http.Client{Timeout: time.Second}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if resp, err := c.Get(url); err == nil {
			resp.Body.Close()
		}
	}
}

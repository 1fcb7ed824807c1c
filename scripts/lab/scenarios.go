package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"medic/engine"
	"medic/state"
)

// scenario is one fault: inject breaks something real and returns what
// tells its incident apart; check says whether the outcome is the one
// expected.
type scenario struct {
	id, name string
	// job is the prefix of the service each run breaks: its traffic
	// stops when the run is over.
	job    string
	short  bool // in the test suite's run
	inject func(ctx context.Context, l *lab, n int) (match map[string]string, err error)
	// want is the runbook, the tool of the first action and the outcome;
	// an empty runbook and tool mean none.
	runbook, tool, outcome string
	// extra checks what the incident alone does not show.
	extra func(ctx context.Context, l *lab, n int, inc state.Incident) error
}

var scenarios = []scenario{
	{id: "control", name: "control (no fault)", short: true},
	{id: "kafka", name: "Kafka poison pill", job: "billing", short: true, inject: injectPoisonPill, runbook: "kafka_poison_pill", tool: "kafka_dead_letter", outcome: state.OutcomeRemediated, extra: checkPastPill},
	{id: "hung", name: "hung service (SIGSTOP)", short: true, inject: injectHang, runbook: "host_service_down_restart", tool: "systemd_restart", outcome: state.OutcomeRemediated},
	{id: "leak", name: "memory leak", inject: injectLeak, runbook: "host_service_memory_leak", tool: "systemd_restart", outcome: state.OutcomeRemediated},
	{id: "disk", name: "filesystem 99% full", inject: injectDiskFull, runbook: "host_filesystem_free_space", tool: "delete_rotated_logs", outcome: state.OutcomeRemediated, extra: checkLiveFiles},
	{id: "slow", name: "slow downstream", job: "api", inject: injectDownstream("api", downstreamSlow), runbook: "host_service_scale_out", tool: "systemd_start", outcome: state.OutcomeRemediated, extra: restoreDownstream("api")},
	{id: "unknown", name: "unknown fault", job: "checkout", inject: injectErrors, outcome: state.OutcomeEscalated, extra: checkBrief},
	{id: "worse", name: "a fix that makes it worse", job: "pay", short: true, inject: injectDownstream("pay", downstreamContended), runbook: "host_service_scale_out", tool: "systemd_start", outcome: state.OutcomeEscalated, extra: checkRolledBack},
}

// injectDownstream makes the downstream of a templated service slow or
// contended.
func injectDownstream(kind string, mode int32) func(context.Context, *lab, int) (map[string]string, error) {
	return func(ctx context.Context, l *lab, n int) (map[string]string, error) {
		job := fmt.Sprintf("%s-%d", kind, n)
		l.downstreams[job].mode.Store(mode)
		return map[string]string{"alertname": "ServiceLatencyHigh", "job": job}, nil
	}
}

func restoreDownstream(kind string) func(context.Context, *lab, int, state.Incident) error {
	return func(ctx context.Context, l *lab, n int, inc state.Incident) error {
		l.downstreams[fmt.Sprintf("%s-%d", kind, n)].mode.Store(downstreamNormal)
		return nil
	}
}

// checkRolledBack: the third instance was stopped again, and the
// escalation says why.
func checkRolledBack(ctx context.Context, l *lab, n int, inc state.Incident) error {
	defer restoreDownstream("pay")(ctx, l, n, inc)
	acts, err := l.actions(ctx, inc.ID)
	if err != nil {
		return err
	}
	if len(acts) != 2 || !acts[1].Rollback || acts[1].Tool != "systemd_stop" || acts[1].State != state.ActionSucceeded {
		return fmt.Errorf("want the start and its rollback, got %d actions", len(acts))
	}
	for _, e := range inc.Timeline {
		if e.Kind == "escalated" && strings.Contains(e.Message, "made it worse") {
			return nil
		}
	}
	return fmt.Errorf("the escalation does not say the step made it worse")
}

// result is one run of a scenario.
type result struct {
	inc                                  state.Incident
	fault, firing, received, acted, done time.Time
	action, verification                 string
	err                                  error
}

func (l *lab) runScenarios(ctx context.Context) bool {
	var rows [][]result
	var names []string
	for _, sc := range scenarios {
		if !l.o.want(sc.id) {
			continue
		}
		var runs []result
		for n := 1; n <= l.o.runs && ctx.Err() == nil; n++ {
			fmt.Fprintf(os.Stderr, "lab: %s, run %d of %d\n", sc.name, n, l.o.runs)
			r := l.runOne(ctx, sc, n)
			if sc.job != "" {
				l.endLoad(fmt.Sprintf("%s-%d", sc.job, n))
			}
			if r.err != nil {
				fmt.Fprintf(os.Stderr, "lab: %s, run %d: FAILED: %v\n", sc.name, n, r.err)
			}
			runs = append(runs, r)
		}
		rows, names = append(rows, runs), append(names, sc.name)
	}
	return printTable(os.Stdout, names, rows)
}

func (l *lab) runOne(ctx context.Context, sc scenario, n int) (r result) {
	if sc.inject == nil {
		return l.control(ctx)
	}
	r.fault = time.Now()
	match, err := sc.inject(ctx, l, n)
	if err != nil {
		r.err = fmt.Errorf("inject: %w", err)
		return r
	}
	var inc *state.Incident
	r.err = l.until(ctx, 90*time.Second, "the incident to settle", func() (bool, error) {
		incs, err := l.incidents(ctx)
		if err != nil {
			return false, nil
		}
		for i := range incs {
			if len(incs[i].Alerts) > 0 && matches(incs[i].Alerts[0].Labels, match) {
				inc = &incs[i]
				return inc.Outcome != "", nil
			}
		}
		return false, nil
	})
	if r.err != nil {
		if inc != nil {
			r.err = fmt.Errorf("%w:\n%s", r.err, timeline(*inc))
		}
		return r
	}
	r.inc = *inc
	r.firing, r.received = inc.Alerts[0].StartsAt, inc.OpenedAt
	if inc.RecoveredAt != nil {
		r.done = *inc.RecoveredAt
	}
	acts, err := l.actions(ctx, inc.ID)
	if err != nil {
		r.err = err
		return r
	}
	if len(acts) > 0 {
		r.acted, r.action = acts[0].StartedAt, acts[0].Tool+" "+string(acts[0].State)
	}
	for _, e := range inc.Timeline {
		if e.Kind == "verified" {
			r.verification = verifiedRE.ReplaceAllString(e.Message, "")
		}
	}
	var problems []string
	if inc.Remediation.Runbook != sc.runbook {
		problems = append(problems, fmt.Sprintf("runbook %q, want %q", inc.Remediation.Runbook, sc.runbook))
	}
	if inc.Outcome != sc.outcome {
		problems = append(problems, fmt.Sprintf("outcome %s, want %s", inc.Outcome, sc.outcome))
	}
	if (sc.tool == "") != (len(acts) == 0) || (sc.tool != "" && (acts[0].Tool != sc.tool || acts[0].State != state.ActionSucceeded)) {
		problems = append(problems, fmt.Sprintf("actions %q, want %q succeeded", r.action, sc.tool))
	}
	if sc.extra != nil {
		if err := sc.extra(ctx, l, n, *inc); err != nil {
			problems = append(problems, err.Error())
		}
	}
	if len(problems) > 0 {
		r.err = fmt.Errorf("incident %d: %s\n%s", inc.ID, strings.Join(problems, "; "), timeline(*inc))
	}
	return r
}

// control runs for as long as a fault run takes, with no fault: medic
// must open no incident and run nothing.
func (l *lab) control(ctx context.Context) (r result) {
	before, err := l.incidents(ctx)
	if err != nil {
		r.err = err
		return r
	}
	acts, err := l.actions(ctx, 0)
	if err != nil {
		r.err = err
		return r
	}
	r.fault = time.Now()
	select {
	case <-ctx.Done():
	case <-time.After(15 * time.Second):
	}
	after, err := l.incidents(ctx)
	if err != nil {
		r.err = err
		return r
	}
	acts2, err := l.actions(ctx, 0)
	if err != nil {
		r.err = err
		return r
	}
	r.action, r.verification = fmt.Sprintf("%d actions", len(acts2)-len(acts)), fmt.Sprintf("%d incidents in 15s", len(after)-len(before))
	if len(after) != len(before) || len(acts2) != len(acts) {
		var b strings.Builder
		for _, inc := range after[:len(after)-len(before)] {
			b.WriteString(timeline(inc))
		}
		r.err = fmt.Errorf("with no fault medic opened %d incidents and ran %d actions:\n%s", len(after)-len(before), len(acts2)-len(acts), b.String())
	}
	return r
}

func injectPoisonPill(ctx context.Context, l *lab, n int) (map[string]string, error) {
	group, topic := fmt.Sprintf("billing-%d", n), fmt.Sprintf("orders-%d", n)
	if err := l.kafka.poison(ctx, topic, 1); err != nil {
		return nil, err
	}
	return map[string]string{"alertname": "KafkaConsumersGroup", "consumergroup": group}, nil
}

// checkPastPill: the group committed past the pill, and consumes again.
func checkPastPill(ctx context.Context, l *lab, n int, inc state.Incident) error {
	group := fmt.Sprintf("billing-%d", n)
	return l.until(ctx, 10*time.Second, group+" to consume again", func() (bool, error) {
		s, err := l.query(ctx, fmt.Sprintf(`max(kafka_consumergroup_lag{consumergroup=%q})`, group))
		return err == nil && len(s) == 1 && s[0].Value <= 100, nil
	})
}

// injectHang stops a demo service with SIGSTOP: systemd still reports it
// active, and Prometheus's scrapes of it time out.
func injectHang(ctx context.Context, l *lab, n int) (map[string]string, error) {
	job := fmt.Sprintf("shop-%d", n)
	pid, err := demoPID(l.services[job])
	if err != nil {
		return nil, err
	}
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		return nil, err
	}
	return map[string]string{"alertname": "PrometheusTargetMissing", "job": job}, nil
}

// demoPID finds the host's PID of the demo service serving addr: systemd
// runs it in a PID namespace of its own.
func demoPID(addr string) (int, error) {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		args := strings.Split(string(b), "\x00")
		if len(args) > 3 && strings.HasSuffix(args[0], "medic-lab") && args[1] == "demo" && slices.Contains(args, addr) {
			return pid, nil
		}
	}
	return 0, fmt.Errorf("no demo process serves %s", addr)
}

func injectLeak(ctx context.Context, l *lab, n int) (map[string]string, error) {
	job := fmt.Sprintf("leaky-%d", n)
	return map[string]string{"alertname": "ServiceMemoryLeak", "job": job}, post(ctx, "http://"+l.services[job]+"/leak")
}

func injectErrors(ctx context.Context, l *lab, n int) (map[string]string, error) {
	job := fmt.Sprintf("checkout-%d", n)
	return map[string]string{"alertname": "CheckoutErrors", "job": job}, post(ctx, "http://"+l.services[job]+"/fail")
}

// checkBrief: the escalation's brief reached the on-call webhook.
func checkBrief(ctx context.Context, l *lab, n int, inc state.Incident) error {
	deadline := time.After(20 * time.Second)
	for {
		select {
		case m := <-l.briefs:
			if b, _ := json.Marshal(m); bytes.Contains(b, fmt.Appendf(nil, "/api/v1/incidents/%d", inc.ID)) {
				return nil
			}
		case <-deadline:
			return fmt.Errorf("no brief of incident %d reached the webhook", inc.ID)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// injectDiskFull fills the tmpfs to 99% with rotated logs of the last
// days, as a logrotate whose compression outgrew the disk leaves them.
func injectDiskFull(ctx context.Context, l *lab, n int) (map[string]string, error) {
	mp := filepath.Join(l.dir, fmt.Sprintf("fs-%d", n))
	old := time.Now().Add(-2 * time.Hour)
	chunk := bytes.Repeat([]byte("r"), 256<<10)
	for i := 1; ; i++ {
		var st syscall.Statfs_t
		if err := syscall.Statfs(mp, &st); err != nil {
			return nil, err
		}
		used := 1 - float64(st.Bavail)/float64(st.Blocks)
		if used >= 0.99 {
			break
		}
		need := int((0.99-used)*float64(st.Blocks)*float64(st.Bsize)) + int(st.Bsize)
		size := min(len(chunk), need, int(st.Bavail-1)*int(st.Bsize))
		if size <= 0 {
			break
		}
		path := filepath.Join(mp, "log", fmt.Sprintf("app.log.%d.gz", i))
		if err := os.WriteFile(path, chunk[:size], 0o644); err != nil {
			return nil, err
		}
		os.Chtimes(path, old, old)
	}
	return map[string]string{"alertname": "NodeFilesystemAlmostOutOfSpace", "mountpoint": mp}, nil
}

// checkLiveFiles: the clean-up kept the live log, the binlog and the data.
func checkLiveFiles(ctx context.Context, l *lab, n int, inc state.Incident) error {
	for path, size := range liveFiles(filepath.Join(l.dir, fmt.Sprintf("fs-%d", n))) {
		if st, err := os.Stat(path); err != nil || st.Size() != int64(size) {
			return fmt.Errorf("live file %s was touched: %v", path, err)
		}
	}
	return nil
}

var verifiedRE = regexp.MustCompile(`^verification of action [0-9]+: `)

func matches(labels, want map[string]string) bool {
	for k, v := range want {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func timeline(inc state.Incident) string {
	var b strings.Builder
	fmt.Fprintf(&b, "  incident %d (%s, %s):\n", inc.ID, inc.Key, inc.Outcome)
	for _, e := range inc.Timeline {
		fmt.Fprintf(&b, "    %s %-18s %s\n", e.Time.Format("15:04:05.000"), e.Kind, e.Message)
	}
	return b.String()
}

// until polls cond every 100 ms until it holds, ctx ends or timeout
// passes.
func (l *lab) until(ctx context.Context, timeout time.Duration, what string, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("waited %s for %s", timeout, what)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

type sample struct {
	Labels map[string]string
	Value  float64
}

func (l *lab) query(ctx context.Context, q string) ([]sample, error) {
	var r struct {
		Status string `json:"status"`
		Data   struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := getJSON(ctx, "http://"+l.promAddr+"/api/v1/query?query="+url.QueryEscape(q), "", &r); err != nil {
		return nil, err
	}
	var out []sample
	for _, s := range r.Data.Result {
		str, _ := s.Value[1].(string)
		v, _ := strconv.ParseFloat(str, 64)
		out = append(out, sample{s.Metric, v})
	}
	return out, nil
}

// incidents lists every incident, newest first, in full.
func (l *lab) incidents(ctx context.Context) ([]state.Incident, error) {
	var out []state.Incident
	var before uint64
	for {
		var page struct {
			Data []engine.IncidentSummary `json:"data"`
			Next uint64                   `json:"next"`
		}
		path := "/api/v1/incidents?state=all"
		if before != 0 {
			path += fmt.Sprintf("&before=%d", before)
		}
		if err := getJSON(ctx, "http://"+l.medicAddr+path, l.token, &page); err != nil {
			return nil, err
		}
		for _, s := range page.Data {
			var full struct {
				Data state.Incident `json:"data"`
			}
			if err := getJSON(ctx, fmt.Sprintf("http://%s/api/v1/incidents/%d", l.medicAddr, s.ID), l.token, &full); err == nil {
				out = append(out, full.Data)
			}
		}
		if before = page.Next; before == 0 {
			return out, nil
		}
	}
}

// actions lists the journal's actions, of one incident or (0) of all.
func (l *lab) actions(ctx context.Context, incident uint64) ([]state.Action, error) {
	var body struct {
		Data []state.Action `json:"data"`
	}
	path := "/api/v1/actions"
	if incident != 0 {
		path += fmt.Sprintf("?incident=%d", incident)
	}
	err := getJSON(ctx, "http://"+l.medicAddr+path, l.token, &body)
	sort.Slice(body.Data, func(i, j int) bool { return body.Data[i].ID < body.Data[j].ID })
	return body.Data, err
}

func getJSON(ctx context.Context, url, token string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

func post(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST %s: %s", url, resp.Status)
	}
	return nil
}

// printTable prints one row per scenario, with the median of its runs'
// times, and says whether every run reached its outcome.
func printTable(out *os.File, names []string, rows [][]result) bool {
	ok := true
	passedRuns, failedRuns := 0, 0
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "SCENARIO\tRUNS\tALERT\tDECISION\tACTION\tVERIFICATION\tFAULT→FIRING\t→RECEIVED\t→ACTION\t→RECOVERED\tMEDIC (RECEIVED→ACTION)")
	for i, runs := range rows {
		passed := 0
		for _, r := range runs {
			if r.err == nil {
				passed++
			}
		}
		if passed != len(runs) || len(runs) == 0 {
			ok = false
		}
		passedRuns, failedRuns = passedRuns+passed, failedRuns+len(runs)-passed
		last := runs[len(runs)-1]
		alert, decision := "-", "-"
		if len(last.inc.Alerts) > 0 {
			alert = last.inc.Alerts[0].Labels["alertname"]
			decision = last.inc.Outcome
			if rb := last.inc.Remediation.Runbook; rb != "" {
				decision = rb
			}
		}
		med := func(f func(r result) (time.Time, time.Time)) string {
			var ds []time.Duration
			for _, r := range runs {
				if a, b := f(r); !a.IsZero() && !b.IsZero() && r.err == nil {
					ds = append(ds, b.Sub(a))
				}
			}
			if len(ds) == 0 {
				return "-"
			}
			slices.Sort(ds)
			d := ds[len(ds)/2]
			if d < time.Second {
				return d.Round(time.Millisecond).String()
			}
			return d.Round(10 * time.Millisecond).String()
		}
		fmt.Fprintf(w, "%s\t%d/%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", names[i], passed, len(runs), alert, decision, orDash(last.action), orDash(last.verification),
			med(func(r result) (time.Time, time.Time) { return r.fault, r.firing }),
			med(func(r result) (time.Time, time.Time) { return r.fault, r.received }),
			med(func(r result) (time.Time, time.Time) { return r.fault, r.acted }),
			med(func(r result) (time.Time, time.Time) { return r.fault, r.done }),
			med(func(r result) (time.Time, time.Time) { return r.received, r.acted }))
	}
	w.Flush()
	if ok {
		fmt.Fprintln(out, "every scenario reached its expected outcome")
	} else {
		fmt.Fprintln(out, "FAILED: a scenario missed its expected outcome (see above)")
	}
	fmt.Fprintf(out, "lab: %d passed, %d failed\n", passedRuns, failedRuns)
	return ok
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

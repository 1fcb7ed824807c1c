package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/prometheus/common/version"

	"medic/engine"
	"medic/state"
)

// apiGet is a client command's request to the daemon. It returns the body
// of a 200, or prints the daemon's error and returns the exit code: 1 for a
// 404, 2 for everything else.
func apiGet(cf clientFlags, path string, q url.Values, stderr io.Writer) ([]byte, int) {
	return apiRequest(cf, http.MethodGet, path, q, nil, stderr)
}

// apiRequest is apiGet for any method, with an optional JSON body.
func apiRequest(cf clientFlags, method, path string, q url.Values, reqBody []byte, stderr io.Writer) ([]byte, int) {
	base, err := url.Parse(cf.url)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		fmt.Fprintf(stderr, "medic: --medic.url %q is not an http(s) URL\n", cf.url)
		return nil, exitError
	}
	token := cf.token
	if cf.tokenFile != "" {
		token, err = engine.ReadToken(cf.tokenFile)
		if err != nil {
			fmt.Fprintf(stderr, "medic: %v\n", err)
			return nil, exitError
		}
	}
	u := base.JoinPath(path)
	u.RawQuery = q.Encode()
	ctx, cancel := context.WithTimeout(context.Background(), cf.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, u.String(), bytes.NewReader(reqBody))
	if err != nil {
		fmt.Fprintf(stderr, "medic: %v\n", err)
		return nil, exitError
	}
	if reqBody != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("User-Agent", version.ComponentUserAgent("medic"))
	client := http.DefaultClient
	if cf.httpConfig != "" {
		if client, err = engine.HTTPClientFromFile(cf.httpConfig); err != nil {
			fmt.Fprintf(stderr, "medic: --http.config.file: %v\n", err)
			return nil, exitError
		}
	}
	resp, err := client.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "medic: %v\n", err)
		return nil, exitError
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		fmt.Fprintf(stderr, "medic: reading response: %v\n", err)
		return nil, exitError
	}
	if resp.StatusCode != http.StatusOK {
		var eb struct {
			Error string `json:"error"`
		}
		msg := strings.TrimSpace(string(body))
		if json.Unmarshal(body, &eb) == nil && eb.Error != "" {
			msg = eb.Error
		}
		fmt.Fprintf(stderr, "medic: %s: %s\n", resp.Status, msg)
		if resp.StatusCode == http.StatusNotFound {
			return nil, exitFailed
		}
		return nil, exitError
	}
	return body, exitOK
}

func runIncidents(cf clientFlags, f incidentsFlags, stdout, stderr io.Writer) int {
	if f.id != "" {
		body, code := apiGet(cf, "/api/v1/incidents/"+url.PathEscape(f.id), nil, stderr)
		if code != exitOK {
			return code
		}
		var env struct {
			Data json.RawMessage `json:"data"`
		}
		if err := json.Unmarshal(body, &env); err != nil {
			fmt.Fprintf(stderr, "medic: decoding response: %v\n", err)
			return exitError
		}
		if f.output == "json" {
			return printJSON(stdout, env.Data)
		}
		var inc state.Incident
		if err := json.Unmarshal(env.Data, &inc); err != nil {
			fmt.Fprintf(stderr, "medic: decoding incident: %v\n", err)
			return exitError
		}
		printIncident(stdout, &inc)
		return exitOK
	}
	// The API pages its lists; follow the pages up to the limit.
	var incs []engine.IncidentSummary
	var before uint64
	for {
		q := url.Values{"state": {f.state}, "limit": {fmt.Sprint(engine.MaxPageSize)}}
		if f.limit > 0 {
			q.Set("limit", fmt.Sprint(min(f.limit-len(incs), engine.MaxPageSize)))
		}
		if before != 0 {
			q.Set("before", fmt.Sprint(before))
		}
		body, code := apiGet(cf, "/api/v1/incidents", q, stderr)
		if code != exitOK {
			return code
		}
		var page struct {
			Data []engine.IncidentSummary `json:"data"`
			Next uint64                   `json:"next"`
		}
		if err := json.Unmarshal(body, &page); err != nil {
			fmt.Fprintf(stderr, "medic: decoding incidents: %v\n", err)
			return exitError
		}
		incs = append(incs, page.Data...)
		if before = page.Next; before == 0 || (f.limit > 0 && len(incs) >= f.limit) {
			break
		}
	}
	if f.output == "json" {
		b, _ := json.Marshal(incs)
		return printJSON(stdout, b)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tPHASE\tOUTCOME\tOPENED\tUPDATED\tALERTS\tKEY")
	for _, inc := range incs {
		outcome, phase := inc.Outcome, string(inc.Phase)
		if outcome == "" {
			outcome = "-"
		}
		if phase == "" {
			phase = "-"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", inc.ID, inc.State, phase, outcome, inc.OpenedAt.UTC().Format(time.RFC3339),
			inc.UpdatedAt.UTC().Format(time.RFC3339), strings.Join(inc.Alertnames, ","), inc.Key)
	}
	tw.Flush()
	return exitOK
}

// printJSON prints raw JSON indented.
func printJSON(w io.Writer, raw []byte) int {
	var pretty any
	_ = json.Unmarshal(raw, &pretty)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(pretty)
	return exitOK
}

func printIncident(w io.Writer, inc *state.Incident) {
	fmt.Fprintf(w, "Incident %d (%s)\n  key:     %s\n  opened:  %s\n  updated: %s\n", inc.ID, inc.State, inc.Key,
		inc.OpenedAt.UTC().Format(time.RFC3339), inc.UpdatedAt.UTC().Format(time.RFC3339))
	if inc.ClosedAt != nil {
		fmt.Fprintf(w, "  closed:  %s\n", inc.ClosedAt.UTC().Format(time.RFC3339))
	}
	if p := inc.Remediation; p.Phase != "" {
		fmt.Fprintf(w, "  phase:   %s (since %s)\n", p.Phase, p.Since.UTC().Format(time.RFC3339))
	}
	if inc.Outcome != "" {
		fmt.Fprintf(w, "  outcome: %s\n", inc.Outcome)
	}
	if inc.RecoveredAt != nil {
		fmt.Fprintf(w, "  recovered: %s (%s after opening)\n", inc.RecoveredAt.UTC().Format(time.RFC3339), inc.RecoveredAt.Sub(inc.OpenedAt).Round(time.Millisecond))
	}
	fmt.Fprintln(w, "Alerts:")
	for _, a := range inc.Alerts {
		keys := make([]string, 0, len(a.Labels))
		for k := range a.Labels {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var ls []string
		for _, k := range keys {
			ls = append(ls, fmt.Sprintf("%s=%q", k, a.Labels[k]))
		}
		fmt.Fprintf(w, "  %s %-8s since %s {%s}\n", a.Fingerprint, a.Status, a.StartsAt.UTC().Format(time.RFC3339), strings.Join(ls, ", "))
	}
	fmt.Fprintln(w, "Timeline:")
	for _, e := range inc.Timeline {
		fmt.Fprintf(w, "  %s  %-15s %s\n", e.Time.UTC().Format(time.RFC3339), e.Kind, e.Message)
	}
	if inc.TimelineDropped > 0 {
		fmt.Fprintf(w, "  (%d older events dropped)\n", inc.TimelineDropped)
	}
}

type auditFlags struct {
	incident uint64
	since    string
	verify   bool
	output   string
	// storage, with verify, checks a state file offline.
	storage        string
	keyFile        string
	checkpointFile string
}

// verifyOffline checks a state file's audit log without a daemon: the
// chain, the MACs under the key, and the checkpoints.
func verifyOffline(f auditFlags, stdout, stderr io.Writer) int {
	sc := engine.StorageConfig{Path: f.storage, AuditKeyFile: f.keyFile, AuditCheckpointFile: f.checkpointFile}
	keyFile, checkpoints := sc.AuditFiles()
	key, err := engine.ReadAuditKey(keyFile)
	if err != nil {
		fmt.Fprintf(stderr, "medic: the audit key is needed to verify: %v\n", err)
		return exitError
	}
	if err := checkStateFile(f.storage); err != nil {
		fmt.Fprintf(stderr, "medic: %v\n", err)
		return exitFailed
	}
	store, err := state.Open(f.storage, state.Options{ReadOnly: true, LockTimeout: time.Second})
	if err != nil {
		fmt.Fprintf(stderr, "medic: %v\n", err)
		return exitError
	}
	defer store.Close()
	n, err := engine.VerifyAudit(store, key, checkpoints)
	if err != nil {
		fmt.Fprintf(stdout, "FAILED: the audit log is not intact after %d good entries: %s\n", n, err)
		return exitFailed
	}
	fmt.Fprintf(stdout, "SUCCESS: %d entries, hash chain, MACs and checkpoints intact\n", n)
	return exitOK
}

// runAudit prints the audit log, or checks its hash chain with --verify
// (exit 1 when broken).
func runAudit(cf clientFlags, f auditFlags, stdout, stderr io.Writer) int {
	if f.storage != "" {
		if !f.verify {
			fmt.Fprintln(stderr, "medic: error: --storage.path goes with --verify")
			return exitError
		}
		return verifyOffline(f, stdout, stderr)
	}
	if f.verify {
		body, code := apiGet(cf, "/api/v1/audit/verify", nil, stderr)
		if code != exitOK {
			return code
		}
		var r struct {
			Data struct {
				Valid   bool   `json:"valid"`
				Entries int    `json:"entries"`
				Error   string `json:"error"`
			} `json:"data"`
		}
		if err := json.Unmarshal(body, &r); err != nil {
			fmt.Fprintf(stderr, "medic: decoding response: %v\n", err)
			return exitError
		}
		if !r.Data.Valid {
			fmt.Fprintf(stdout, "FAILED: the audit chain is broken after %d good entries: %s\n", r.Data.Entries, r.Data.Error)
			return exitFailed
		}
		fmt.Fprintf(stdout, "SUCCESS: %d entries, hash chain, MACs and checkpoints intact\n", r.Data.Entries)
		return exitOK
	}
	q := url.Values{}
	if f.incident > 0 {
		q.Set("incident", fmt.Sprint(f.incident))
	}
	if f.since != "" {
		q.Set("since", f.since)
	}
	body, code := apiGet(cf, "/api/v1/audit", q, stderr)
	if code != exitOK {
		return code
	}
	if f.output == "json" {
		stdout.Write(body)
		return exitOK
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tTIME\tINCIDENT\tKIND\tACTOR\tDETAILS")
	dec := json.NewDecoder(bytes.NewReader(body))
	for dec.More() {
		var e state.AuditEntry
		if err := dec.Decode(&e); err != nil {
			fmt.Fprintf(stderr, "medic: decoding the audit log: %v\n", err)
			return exitError
		}
		fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%s\t%s\n", e.Seq, e.Time.UTC().Format(time.RFC3339), e.Incident, e.Kind, e.Actor, e.Details)
	}
	tw.Flush()
	return exitOK
}

type approveFlags struct {
	id        uint64
	reason    string
	by        string
	tokenFile string
}

// runApprove approves or denies a pending call with the approver token
// (from --medic.approver-token-file or $MEDIC_APPROVER_TOKEN).
func runApprove(cf clientFlags, f approveFlags, approve bool, stdout, stderr io.Writer) int {
	cf.tokenFile, cf.token = f.tokenFile, os.Getenv("MEDIC_APPROVER_TOKEN")
	verb := "deny"
	if approve {
		verb = "approve"
	}
	body, _ := json.Marshal(map[string]string{"by": f.by, "reason": f.reason})
	out, code := apiRequest(cf, http.MethodPost, fmt.Sprintf("/api/v1/incidents/%d/%s", f.id, verb), nil, body, stderr)
	if code != exitOK {
		return code
	}
	var r struct {
		Data    state.Approval `json:"data"`
		Message string         `json:"message"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		fmt.Fprintf(stderr, "medic: decoding response: %v\n", err)
		return exitError
	}
	fmt.Fprintf(stdout, "incident %d: %s %s: %s\n", f.id, r.Data.Tool, r.Data.State, r.Message)
	return exitOK
}

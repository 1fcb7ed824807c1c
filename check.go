package main

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hashicorp/hcl/v2"

	"medic/engine"
	"medic/rules"
)

// diagRecord is one diagnostic of `medic check --output json`.
type diagRecord struct {
	Severity string `json:"severity"`
	Summary  string `json:"summary"`
	Detail   string `json:"detail,omitempty"`
	File     string `json:"file,omitempty"`
	Line     int    `json:"line,omitempty"`
	Column   int    `json:"column,omitempty"`
}

func runCheck(files []string, output string, stdout, stderr io.Writer) int {
	results := engine.Check(files)
	failed := false
	type fileRecord struct {
		engine.CheckResult
		Valid       bool         `json:"valid"`
		Diagnostics []diagRecord `json:"diagnostics"`
	}
	var records []fileRecord
	for _, r := range results {
		bad := r.Diags.HasErrors()
		failed = failed || bad
		if output == "json" {
			rec := fileRecord{CheckResult: r, Valid: !bad, Diagnostics: []diagRecord{}}
			for _, d := range r.Diags {
				dr := diagRecord{Severity: "error", Summary: d.Summary, Detail: d.Detail}
				if d.Severity == hcl.DiagWarning {
					dr.Severity = "warning"
				}
				if d.Subject != nil {
					dr.File, dr.Line, dr.Column = d.Subject.Filename, d.Subject.Start.Line, d.Subject.Start.Column
				}
				rec.Diagnostics = append(rec.Diagnostics, dr)
			}
			records = append(records, rec)
			continue
		}
		fmt.Fprintf(stdout, "Checking %s\n", r.File)
		rules.WriteDiagnostics(stderr, r.Diags)
		if bad {
			fmt.Fprintf(stdout, "  FAILED: %d error(s)\n\n", len(r.Diags.Errs()))
			continue
		}
		fmt.Fprintf(stdout, "  SUCCESS: %d tools, %d runbooks\n\n", r.Tools, r.Runbooks)
	}
	if output == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(records)
	}
	if failed {
		return exitFailed
	}
	return exitOK
}

type replayFlags struct {
	configFile, series, at, output, payload, dir, llm, hostname string
}

// runReplay decides one payload in dry-run. It exits 0 with the decision,
// whatever it is, and 2 when the payload, config, runbooks or series cannot
// be read.
func runReplay(f replayFlags, stdout, stderr io.Writer) int {
	now := time.Now()
	if f.at != "" {
		t, err := time.Parse(time.RFC3339, f.at)
		if err != nil {
			fmt.Fprintf(stderr, "medic: --at %q is not an RFC 3339 time\n", f.at)
			return exitError
		}
		now = t
	}
	cfg, diags := engine.LoadConfig(f.configFile)
	rules.WriteDiagnostics(stderr, diags)
	if diags.HasErrors() {
		return exitError
	}
	if (f.payload == "") == (f.dir == "") {
		fmt.Fprintln(stderr, "medic: replay takes one PAYLOAD or --dir DIR")
		return exitError
	}
	// The same runbooks, policy and sources as serve builds from the config.
	if f.llm == "off" {
		cfg.LLM.Provider = ""
	}
	base, err := engine.BuildDecider(cfg, slog.New(slog.NewTextHandler(stderr, nil)))
	if err != nil {
		fmt.Fprintf(stderr, "medic: %v\n", err)
		return exitError
	}
	if f.hostname != "" {
		base.Host = rules.HostNamed(f.hostname)
	}
	ctx := context.Background()
	// decide replays one payload with the series file given, if any.
	decide := func(payload, series string) (engine.Trace, error) {
		d := *base
		if series != "" {
			sf, err := engine.LoadSeriesFile(series)
			if err != nil {
				return engine.Trace{}, err
			}
			d.Sources.Prom, d.QueryStubs = sf, sf.Queries
		}
		body, err := os.ReadFile(payload)
		if err != nil {
			return engine.Trace{}, err
		}
		return d.DecidePayload(ctx, body, now), nil
	}
	if f.dir != "" {
		return replayDir(f, decide, stdout, stderr)
	}
	t, err := decide(f.payload, f.series)
	if err != nil {
		fmt.Fprintf(stderr, "medic: %v\n", err)
		return exitError
	}

	if f.output == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(t)
		return exitOK
	}
	fmt.Fprintf(stdout, "decision: %s\n", t.Decision)
	if t.Error != "" {
		fmt.Fprintf(stdout, "  rejected by the intake: %s\n", t.Error)
	}
	for _, a := range t.Alerts {
		fmt.Fprintf(stdout, "alert %s (%s): %s", a.Alertname, a.Fingerprint, a.Decision)
		if a.Reason != "" {
			fmt.Fprintf(stdout, ": %s", a.Reason)
		}
		fmt.Fprintln(stdout)
		if a.Runbook != "" {
			fmt.Fprintf(stdout, "  runbook %s, confidence %.2f, target %s (%d queries, %.1f ms)\n", a.Runbook, a.Confidence, a.Target, a.Queries, a.EnrichMillis)
		}
		for _, o := range a.Considered {
			fmt.Fprintf(stdout, "  considered %s: %s\n", o.Name, o.Reason)
		}
		for _, o := range a.LowConfidence {
			fmt.Fprintf(stdout, "  low confidence %s: %s\n", o.Name, o.Reason)
		}
		if l := a.LLM; l != nil {
			ex := l.Exchange
			fmt.Fprintf(stdout, "  llm %s %s: %s (prompt %d tokens estimated, %d reported; reply %d tokens; %d tries)\n",
				ex.Provider, ex.Model, l.Result, ex.Prompt.Tokens, ex.PromptTokens, ex.OutputTokens, ex.Tries)
			if l.Diagnosis != nil {
				fmt.Fprintf(stdout, "    hypothesis (confidence %.2f): %s\n", l.Diagnosis.Confidence, l.Diagnosis.RootCause)
			}
			if l.Reason != "" {
				fmt.Fprintf(stdout, "    %s\n", l.Reason)
			}
		}
		for _, c := range a.Calls {
			fmt.Fprintf(stdout, "  call %s %q: policy %s (%s)\n", c.Tool, c.Argv, c.Policy.Result, strings.Join(c.Policy.Reasons, "; "))
			if c.Rollback != nil {
				fmt.Fprintf(stdout, "    rollback %s %q: policy %s\n", c.Rollback.Tool, c.Rollback.Argv, c.RollbackPolicy.Result)
			}
		}
	}
	return exitOK
}

// runTests prints SUCCESS or FAILED per file, as promtool test rules does,
// with a line per difference. Exit 0 when all pass, 1 when any fails, 2 when
// a file cannot be loaded.
func runTests(files []string, run, output string, stdout, stderr io.Writer) int {
	var re *regexp.Regexp
	if run != "" {
		var err error
		if re, err = regexp.Compile(run); err != nil {
			fmt.Fprintf(stderr, "medic: --run: %v\n", err)
			return exitError
		}
	}
	results := engine.RunTests(files, re)
	if output == "junit" {
		return writeJUnit(results, stdout, stderr)
	}
	code := exitOK
	for _, r := range results {
		fmt.Fprintf(stdout, "Unit Testing: %s\n", r.File)
		if r.Diags.HasErrors() {
			rules.WriteDiagnostics(stderr, r.Diags)
			fmt.Fprintf(stdout, "  FAILED: the file could not be loaded\n\n")
			code = exitError
			continue
		}
		if !r.Failed() {
			fmt.Fprintf(stdout, "  SUCCESS (%d tests)\n\n", len(r.Results))
			continue
		}
		fmt.Fprintln(stdout, "  FAILED:")
		for _, t := range r.Results {
			if len(t.Diffs) == 0 {
				continue
			}
			fmt.Fprintf(stdout, "    test %q:\n", t.Name)
			for _, d := range t.Diffs {
				fmt.Fprintf(stdout, "      %s\n", d)
			}
		}
		fmt.Fprintln(stdout)
		if code == exitOK {
			code = exitFailed
		}
	}
	return code
}

type junitSuites struct {
	XMLName xml.Name     `xml:"testsuites"`
	Suites  []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name     string      `xml:"name,attr"`
	Tests    int         `xml:"tests,attr"`
	Failures int         `xml:"failures,attr"`
	Errors   int         `xml:"errors,attr"`
	Cases    []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name      string `xml:"name,attr"`
	Classname string `xml:"classname,attr"`
	// Time is seconds as a plain decimal: JUnit's schema takes no exponent.
	Time    string        `xml:"time,attr"`
	Failure *junitFailure `xml:"failure,omitempty"`
}

type junitFailure struct {
	Message string `xml:"message,attr"`
	Text    string `xml:",chardata"`
}

// writeJUnit prints the results as JUnit XML for CI systems; a file that
// cannot load is a suite with one error.
func writeJUnit(results []engine.TestFileResult, stdout, stderr io.Writer) int {
	code := exitOK
	var out junitSuites
	for _, r := range results {
		s := junitSuite{Name: r.File}
		if r.Diags.HasErrors() {
			rules.WriteDiagnostics(stderr, r.Diags)
			s.Errors = 1
			code = exitError
		}
		for _, t := range r.Results {
			c := junitCase{Name: t.Name, Classname: r.File, Time: strconv.FormatFloat(t.Duration.Seconds(), 'f', 6, 64)}
			if len(t.Diffs) > 0 {
				c.Failure = &junitFailure{Message: t.Diffs[0], Text: strings.Join(t.Diffs, "\n")}
				s.Failures++
				if code == exitOK {
					code = exitFailed
				}
			}
			s.Cases = append(s.Cases, c)
		}
		s.Tests = len(s.Cases)
		out.Suites = append(out.Suites, s)
	}
	fmt.Fprint(stdout, xml.Header)
	enc := xml.NewEncoder(stdout)
	enc.Indent("", "  ")
	_ = enc.Encode(out)
	fmt.Fprintln(stdout)
	return code
}

// replayDir replays every payload of a folder and prints a summary table,
// or a JSON list of {file, trace}.
func replayDir(f replayFlags, decide func(payload, series string) (engine.Trace, error), stdout, stderr io.Writer) int {
	all, err := filepath.Glob(filepath.Join(f.dir, "*.json"))
	if err != nil {
		fmt.Fprintf(stderr, "medic: %v\n", err)
		return exitError
	}
	type entry struct {
		File  string       `json:"file"`
		Trace engine.Trace `json:"trace"`
	}
	var entries []entry
	for _, p := range all {
		if strings.HasSuffix(p, ".series.json") {
			continue
		}
		series := f.series
		if sib := strings.TrimSuffix(p, ".json") + ".series.json"; series == "" {
			if _, err := os.Stat(sib); err == nil {
				series = sib
			}
		}
		t, err := decide(p, series)
		if err != nil {
			fmt.Fprintf(stderr, "medic: %s: %v\n", p, err)
			return exitError
		}
		entries = append(entries, entry{File: p, Trace: t})
	}
	if f.output == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(entries)
		return exitOK
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FILE\tDECISION\tRUNBOOK\tREASON")
	for _, e := range entries {
		runbook, reason := "", e.Trace.Error
		if len(e.Trace.Alerts) > 0 {
			runbook, reason = e.Trace.Alerts[0].Runbook, e.Trace.Alerts[0].Reason
		}
		if len(reason) > 100 {
			reason = reason[:100] + "…"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", filepath.Base(e.File), e.Trace.Decision, runbook, reason)
	}
	tw.Flush()
	return exitOK
}

package actions

import (
	"fmt"
	"sort"
	"strings"
)

// Brief is what a human gets when medic escalates: enough to act on in a
// minute. Every string in it may come from an alert, so every renderer
// escapes or bounds it.
type Brief struct {
	Incident uint64 `json:"incident"`
	Title    string `json:"title"`
	// Reason says why medic stopped.
	Reason string `json:"reason"`
	// ReasonCode is the fixed-vocabulary reason, as in
	// medic_escalations_total.
	ReasonCode   string           `json:"reason_code"`
	Severity     string           `json:"severity"`
	Target       string           `json:"target,omitempty"`
	Alerts       []BriefAlert     `json:"alerts"`
	Enrichment   []BriefQuery     `json:"enrichment,omitempty"`
	Steps        []BriefStep      `json:"steps,omitempty"`
	Hypothesis   string           `json:"hypothesis,omitempty"`
	Alternatives []BriefCandidate `json:"alternatives,omitempty"`
	Links        BriefLinks       `json:"links"`
	// Commands are exact shell lines for a pending approval.
	Commands []string `json:"commands,omitempty"`
	// Also lists the other incidents of the brief's group that escalated
	// before it was sent, briefed in the same message: at most
	// BriefAlsoMax of them, and More counts the rest.
	Also []BriefIncident `json:"also,omitempty"`
	More int             `json:"more,omitempty"`
}

// BriefAlsoMax bounds the incidents a grouped brief lists besides its own.
const BriefAlsoMax = 50

// BriefIncident is another incident of a grouped brief, in one line.
type BriefIncident struct {
	Incident   uint64 `json:"incident"`
	Title      string `json:"title"`
	ReasonCode string `json:"reason_code"`
	Reason     string `json:"reason"`
	Link       string `json:"link"`
}

// BriefAlert is one alert with its key labels.
type BriefAlert struct {
	Name      string            `json:"name"`
	Status    string            `json:"status"`
	Labels    map[string]string `json:"labels"`
	Summary   string            `json:"summary,omitempty"`
	StartsAt  string            `json:"starts_at"`
	Generator string            `json:"generator_url,omitempty"`
	Runbook   string            `json:"runbook_url,omitempty"`
}

// BriefQuery is one enrichment result, summarised.
type BriefQuery struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// BriefStep is one step medic tried.
type BriefStep struct {
	Step   string   `json:"step"`
	Tool   string   `json:"tool"`
	Policy string   `json:"policy"`
	Result string   `json:"result"`
	Output string   `json:"output,omitempty"`
	Before *float64 `json:"before,omitempty"`
	After  *float64 `json:"after,omitempty"`
	Verify string   `json:"verify,omitempty"`
}

// BriefCandidate is a runbook that matched, and why it lost or won.
type BriefCandidate struct {
	Runbook string `json:"runbook"`
	Why     string `json:"why"`
}

// BriefLinks are where to look next.
type BriefLinks struct {
	Incident   string   `json:"incident"`
	Generators []string `json:"generators,omitempty"`
	Runbooks   []string `json:"runbooks,omitempty"`
}

// Bounds of what a brief carries into a message.
const (
	briefOutputMax = 500
	briefValueMax  = 200
)

func (b *Brief) Summary() string {
	if n := len(b.Also) + b.More; n > 0 {
		return fmt.Sprintf("medic escalates incident %d and %d more like it: %s — %s", b.Incident, n, b.Title, b.Reason)
	}
	return fmt.Sprintf("medic escalates incident %d: %s — %s", b.Incident, b.Title, b.Reason)
}

// alsoLines renders the group's other incidents, one a line, and the
// count of those not listed.
func (b *Brief) alsoLines() []string {
	out := make([]string, 0, len(b.Also)+1)
	for _, o := range b.Also {
		out = append(out, fmt.Sprintf("incident %d: %s — %s (%s)", o.Incident, truncate(o.Title, briefValueMax), truncate(o.Reason, briefValueMax), o.Link))
	}
	if b.More > 0 {
		out = append(out, fmt.Sprintf("… and %d more", b.More))
	}
	return out
}

// Text renders the brief as plain text, one fact a line, for the log and
// for channels without structure. Values are bounded, not escaped.
func (b *Brief) Text() string {
	var w strings.Builder
	fmt.Fprintf(&w, "%s\n", b.Summary())
	for _, a := range b.Alerts {
		fmt.Fprintf(&w, "alert %s (%s since %s): %s\n", a.Name, a.Status, a.StartsAt, labelLine(a.Labels))
		if a.Summary != "" {
			fmt.Fprintf(&w, "  %s\n", truncate(a.Summary, briefValueMax))
		}
	}
	for _, q := range b.Enrichment {
		fmt.Fprintf(&w, "query %s = %s\n", q.Name, truncate(q.Value, briefValueMax))
	}
	for i, s := range b.Steps {
		fmt.Fprintf(&w, "step %d %s: %s, policy %s, %s%s\n", i+1, s.Step, s.Tool, s.Policy, s.Result, verifyLine(s))
		if s.Output != "" {
			fmt.Fprintf(&w, "  output: %s\n", truncate(s.Output, briefOutputMax))
		}
	}
	if b.Hypothesis != "" {
		fmt.Fprintf(&w, "hypothesis: %s\n", b.Hypothesis)
	}
	for _, c := range b.Alternatives {
		fmt.Fprintf(&w, "alternative %s: %s\n", c.Runbook, c.Why)
	}
	fmt.Fprintf(&w, "incident: %s\n", b.Links.Incident)
	for _, l := range append(append([]string{}, b.Links.Generators...), b.Links.Runbooks...) {
		fmt.Fprintf(&w, "link: %s\n", l)
	}
	for _, c := range b.Commands {
		fmt.Fprintf(&w, "run: %s\n", c)
	}
	for _, l := range b.alsoLines() {
		fmt.Fprintf(&w, "also: %s\n", l)
	}
	return w.String()
}

func labelLine(l map[string]string) string {
	keys := make([]string, 0, len(l))
	for k := range l {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%q", k, truncate(l[k], briefValueMax)))
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

func verifyLine(s BriefStep) string {
	if s.Before == nil && s.After == nil && s.Verify == "" {
		return ""
	}
	f := func(v *float64) string {
		if v == nil {
			return "n/a"
		}
		return fmt.Sprintf("%g", *v)
	}
	return fmt.Sprintf("; verify %s (before %s, after %s)", s.Verify, f(s.Before), f(s.After))
}

// slackBrief is the brief in Block Kit: a header, the reason, the alerts,
// the steps, the hypothesis, the links and commands, within Slack's limits
// (50 blocks, 3000 characters a section, 150 a header). All text is
// escaped, so that alert text makes no link or mention; links are shown,
// not linked, for the same reason.
func slackBrief(b *Brief) map[string]any {
	section := func(text string) map[string]any {
		return map[string]any{"type": "section", "text": map[string]any{"type": "mrkdwn", "text": truncate(text, 3000)}}
	}
	title := fmt.Sprintf("[%s] medic escalates incident %d", strings.ToUpper(b.Severity), b.Incident)
	blocks := []any{
		map[string]any{"type": "header", "text": map[string]any{"type": "plain_text", "text": truncate(title, 150)}},
		section("*" + slackEscape(b.Title) + "*\n" + slackEscape(b.Reason)),
	}
	var alerts strings.Builder
	for i, a := range b.Alerts {
		if i == 10 {
			fmt.Fprintf(&alerts, "… and %d more\n", len(b.Alerts)-10)
			break
		}
		fmt.Fprintf(&alerts, "• *%s* (%s since %s) `%s`\n", slackEscape(a.Name), slackEscape(a.Status), slackEscape(a.StartsAt), slackEscape(labelLine(a.Labels)))
		if a.Summary != "" {
			fmt.Fprintf(&alerts, "  %s\n", slackEscape(truncate(a.Summary, briefValueMax)))
		}
	}
	blocks = append(blocks, section("*Alerts*\n"+alerts.String()))
	if len(b.Enrichment) > 0 {
		var q strings.Builder
		for _, e := range b.Enrichment {
			fmt.Fprintf(&q, "• %s = %s\n", slackEscape(e.Name), slackEscape(truncate(e.Value, briefValueMax)))
		}
		blocks = append(blocks, section("*Enrichment*\n"+q.String()))
	}
	for i, s := range b.Steps {
		if i == 20 {
			blocks = append(blocks, section(fmt.Sprintf("… and %d more steps", len(b.Steps)-20)))
			break
		}
		text := fmt.Sprintf("*Step %d: %s* (%s) · policy %s · %s%s", i+1, slackEscape(s.Step), slackEscape(s.Tool), slackEscape(s.Policy), slackEscape(s.Result), slackEscape(verifyLine(s)))
		if s.Output != "" {
			text += "\n```" + slackEscape(strings.ReplaceAll(truncate(s.Output, briefOutputMax), "```", "'''")) + "```"
		}
		blocks = append(blocks, section(text))
	}
	if b.Hypothesis != "" || len(b.Alternatives) > 0 {
		var h strings.Builder
		if b.Hypothesis != "" {
			fmt.Fprintf(&h, "*Hypothesis:* %s\n", slackEscape(b.Hypothesis))
		}
		for _, c := range b.Alternatives {
			fmt.Fprintf(&h, "• %s: %s\n", slackEscape(c.Runbook), slackEscape(c.Why))
		}
		blocks = append(blocks, section(h.String()))
	}
	if len(b.Commands) > 0 {
		blocks = append(blocks, section("*To decide the pending step:*\n```"+slackEscape(strings.Join(b.Commands, "\n"))+"```"))
	}
	if also := b.alsoLines(); len(also) > 0 {
		blocks = append(blocks, section(fmt.Sprintf("*Also escalated (%d)*\n", len(b.Also)+b.More)+slackEscape(strings.Join(also, "\n"))))
	}
	links := []string{"incident: " + b.Links.Incident}
	for _, l := range b.Links.Generators {
		links = append(links, "source: "+l)
	}
	for _, l := range b.Links.Runbooks {
		links = append(links, "runbook: "+l)
	}
	blocks = append(blocks, map[string]any{"type": "context", "elements": []any{
		map[string]any{"type": "mrkdwn", "text": truncate(slackEscape(strings.Join(links, " · ")), 3000)},
	}})
	return map[string]any{"text": truncate(b.Summary(), 3000), "blocks": blocks}
}

package engine

import (
	"maps"
	"slices"
	"sort"
	"strings"

	"medic/actions"
	"medic/llm"
	"medic/state"
)

// History: what the decision and the policy read from the state: the
// counts of the journal, a runbook's recent outcomes, and similar past
// incidents for the LLM.

// counts fills in the policy's counts from the journal, as of the moment it
// is asked: a plan that waited for a verification counts what happened
// meanwhile.
func (r *Remediator) counts(in *actions.Input, q state.CountQuery) {
	q.Now = r.now()
	c, err := r.Store.CountActions(q)
	if err != nil {
		r.Logger.Error("reading action counts failed", "component", "remediator", "err", err)
	}
	rate, runs := c.Tool.Rate()
	in.State.ExecutionsTargetHour, in.State.ActionsFleet10m, in.State.TargetsAffected = c.TargetHour, c.Fleet10m, c.TargetsAffected
	in.State.ToolRuns, in.State.ToolSuccessRate = runs, rate
	in.Idempotency.Repeat = c.Repeat
}

// similar finds up to 3 closed incidents among the last 500 whose first
// alert shares at least half of its label pairs with these labels (the
// Jaccard index), and what fixed each.
func (r *Remediator) similar(labels map[string]string) []llm.Past {
	incs, err := r.Store.Incidents(state.Filter{State: state.StateClosed, Limit: 500})
	if err != nil {
		return nil
	}
	var out []llm.Past
	for _, inc := range incs {
		if len(inc.Alerts) == 0 {
			continue
		}
		if sim := llm.Similarity(labels, inc.Alerts[0].Labels); sim >= 0.5 {
			out = append(out, llm.Past{ID: inc.ID, Similarity: sim, Alertname: inc.Alerts[0].Labels["alertname"], Outcome: inc.Outcome})
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Similarity > out[j].Similarity })
	if len(out) > 3 {
		out = out[:3]
	}
	// What fixed them: read from the journal for the three kept only.
	for i := range out {
		if out[i].Outcome != state.OutcomeRemediated {
			continue
		}
		if acts, err := r.Store.Actions(out[i].ID); err == nil {
			var tools []string
			for _, a := range acts {
				if a.State == state.ActionSucceeded && !a.Rollback {
					tools = append(tools, a.Tool+" "+formatArgs(a.Args))
				}
			}
			out[i].FixedBy = strings.Join(tools, "; ")
		}
	}
	return out
}

func formatArgs(args map[string]string) string {
	parts := make([]string, 0, len(args))
	for _, k := range slices.Sorted(maps.Keys(args)) {
		parts = append(parts, k+"="+args[k])
	}
	return strings.Join(parts, " ")
}

// runbookState reads a runbook's recent outcomes for the policy.
func (r *Remediator) runbookState(runbook string) (float64, int) {
	st, err := r.Store.RunbookStats(runbook)
	if err != nil {
		r.Logger.Error("reading runbook stats failed", "component", "remediator", "err", err)
	}
	return st.Rate()
}

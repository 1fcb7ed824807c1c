package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"medic/actions"
	"medic/rules"
)

// toolQueries runs a runbook's tool queries: read-only exec tools (the
// loader refuses any other), with the same argument validation and timeout
// as a step, each allowed by the policy first, and their standard output
// decoded as JSON for the conditions (tool.NAME). Nothing is journalled: a
// query changes nothing. Replay and medic test have no tool runner, so
// their tool queries fail and those runbooks do not match.
type toolQueries struct {
	d    *Decider
	exec *actions.Exec
}

func (q toolQueries) RunQuery(ctx context.Context, c rules.PlannedCall) (any, error) {
	tool := q.d.Rules.Tool(c.Tool)
	if tool == nil || tool.Executor.Kind != rules.ExecKind || !tool.ReadOnly {
		return nil, fmt.Errorf("tool query %s: only read-only exec tools can answer queries", c.Tool)
	}
	in := actions.Input{Call: actions.Call{Tool: c.Tool, Type: string(rules.ExecKind), Args: c.Args, Risk: string(c.Risk)},
		Source: "runbook", Mode: string(rules.ModeAuto), Confidence: 1, Config: q.d.Config.PolicyConfig}
	dec, allowed := q.d.Gate.Evaluate(ctx, in, time.Now())
	if allowed == nil {
		return nil, fmt.Errorf("tool query %s: policy %s: %s", c.Tool, dec.Result, strings.Join(dec.Reasons, "; "))
	}
	res, err := q.exec.Run(ctx, allowed, actions.ExecSpec{Tool: c.Tool, Argv: c.Argv, Env: c.Env, Dir: tool.Executor.Dir, Timeout: tool.Timeout})
	switch {
	case err != nil:
		return nil, fmt.Errorf("tool query %s: %w", c.Tool, err)
	case !res.Succeeded():
		return nil, fmt.Errorf("tool query %s exited %d: %s", c.Tool, res.ExitCode, strings.TrimSpace(res.Stderr+" "+res.Err))
	case res.StdoutDropped > 0:
		return nil, fmt.Errorf("tool query %s printed more than the executor keeps", c.Tool)
	}
	var out any
	if err := json.Unmarshal([]byte(res.Stdout), &out); err != nil {
		return nil, fmt.Errorf("tool query %s: its output is not JSON: %w", c.Tool, err)
	}
	return out, nil
}

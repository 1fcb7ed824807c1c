package actions

import (
	"sort"

	"github.com/open-policy-agent/opa/v1/ast"
)

// value builds the policy input as an ast.Value directly: converting the
// struct through ast.InterfaceToValue (a JSON round trip) cost more than
// evaluating most rules. It must stay in step with Input's JSON tags, which
// TestInputValueMatchesJSON checks.
func (in *Input) value() ast.Value {
	args := make([][2]*ast.Term, 0, len(in.Call.Args))
	keys := make([]string, 0, len(in.Call.Args))
	for k := range in.Call.Args {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		args = append(args, ast.Item(ast.StringTerm(k), ast.StringTerm(in.Call.Args[k])))
	}
	obj := ast.NewObject(
		ast.Item(ast.StringTerm("call"), ast.ObjectTerm(
			ast.Item(ast.StringTerm("tool"), ast.StringTerm(in.Call.Tool)),
			ast.Item(ast.StringTerm("type"), ast.StringTerm(in.Call.Type)),
			ast.Item(ast.StringTerm("args"), ast.ObjectTerm(args...)),
			ast.Item(ast.StringTerm("risk"), ast.StringTerm(in.Call.Risk)),
			ast.Item(ast.StringTerm("target"), ast.StringTerm(in.Call.Target)),
		)),
		ast.Item(ast.StringTerm("source"), ast.StringTerm(in.Source)),
		ast.Item(ast.StringTerm("confidence"), ast.FloatNumberTerm(in.Confidence)),
		ast.Item(ast.StringTerm("mode"), ast.StringTerm(in.Mode)),
		ast.Item(ast.StringTerm("state"), ast.ObjectTerm(
			ast.Item(ast.StringTerm("executions_target_hour"), ast.IntNumberTerm(in.State.ExecutionsTargetHour)),
			ast.Item(ast.StringTerm("actions_fleet_10m"), ast.IntNumberTerm(in.State.ActionsFleet10m)),
			ast.Item(ast.StringTerm("tool_runs"), ast.IntNumberTerm(in.State.ToolRuns)),
			ast.Item(ast.StringTerm("tool_success_rate"), ast.FloatNumberTerm(in.State.ToolSuccessRate)),
			ast.Item(ast.StringTerm("targets_affected"), ast.IntNumberTerm(in.State.TargetsAffected)),
			ast.Item(ast.StringTerm("fleet_size"), ast.IntNumberTerm(in.State.FleetSize)),
			ast.Item(ast.StringTerm("runbook_runs"), ast.IntNumberTerm(in.State.RunbookRuns)),
			ast.Item(ast.StringTerm("runbook_success_rate"), ast.FloatNumberTerm(in.State.RunbookSuccessRate)),
		)),
		ast.Item(ast.StringTerm("service"), ast.ObjectTerm(
			ast.Item(ast.StringTerm("critical"), ast.BooleanTerm(in.Service.Critical)),
		)),
		ast.Item(ast.StringTerm("idempotency"), ast.ObjectTerm(idempotencyItems(in.Idempotency)...)),
		ast.Item(ast.StringTerm("config"), ast.ObjectTerm(configItems(in.Config)...)),
	)
	if in.Runbook != "" {
		obj.Insert(ast.StringTerm("runbook"), ast.StringTerm(in.Runbook))
	}
	if in.Rollback {
		obj.Insert(ast.StringTerm("rollback"), ast.BooleanTerm(true))
	}
	if in.Escalation {
		obj.Insert(ast.StringTerm("escalation"), ast.BooleanTerm(true))
	}
	if in.Approved {
		obj.Insert(ast.StringTerm("approved"), ast.BooleanTerm(true))
	}
	return obj
}

func idempotencyItems(i Idempotency) [][2]*ast.Term {
	items := [][2]*ast.Term{ast.Item(ast.StringTerm("repeat"), ast.BooleanTerm(i.Repeat))}
	if i.Key != "" {
		items = append(items, ast.Item(ast.StringTerm("key"), ast.StringTerm(i.Key)))
	}
	return items
}

func configItems(c PolicyConfig) [][2]*ast.Term {
	var items [][2]*ast.Term
	if c.MaxPerTargetHour != 0 {
		items = append(items, ast.Item(ast.StringTerm("max_per_target_hour"), ast.IntNumberTerm(c.MaxPerTargetHour)))
	}
	if c.StormLimit != 0 {
		items = append(items, ast.Item(ast.StringTerm("storm_limit"), ast.IntNumberTerm(c.StormLimit)))
	}
	if c.MaxTargetsPerHour != 0 {
		items = append(items, ast.Item(ast.StringTerm("max_targets_per_hour"), ast.IntNumberTerm(c.MaxTargetsPerHour)))
	}
	if p := c.PeakHours; p != nil {
		items = append(items, ast.Item(ast.StringTerm("peak_hours"), ast.ObjectTerm(
			ast.Item(ast.StringTerm("start"), ast.IntNumberTerm(p.Start)),
			ast.Item(ast.StringTerm("end"), ast.IntNumberTerm(p.End)),
			ast.Item(ast.StringTerm("timezone"), ast.StringTerm(p.Timezone)),
		)))
	}
	return items
}

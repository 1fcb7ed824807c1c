# medic's default policy. It decides every tool call: allow, deny, or
# needs_approval, each with reasons. A policy file named in medic.hcl
# replaces it; it must define data.medic.policy.decision the same way.
package medic.policy

import rego.v1

# The input document is described in the README ("The policy gate").

# The thresholds are written where they are used: as literals they cost
# nothing to evaluate, where a rule per constant cost a quarter of each
# decision. They are:
#   0.2   the largest share of a fleet one action may touch
#   0.75  the confidence a medium-risk tool needs
#   0.85  the confidence an LLM proposal needs to skip approval
#   0.5   the recent success rate below which a tool needs approval
# The three limits below can be set through input.config.

max_per_target_hour := object.get(input.config, "max_per_target_hour", 3)

storm_limit := object.get(input.config, "storm_limit", 10)

# When a runbook declares no fleet, or its fleet query gave no answer, the
# share cannot be computed: the spread is bounded by a count instead, never
# left unlimited.
max_targets_per_hour := object.get(input.config, "max_targets_per_hour", 5)

# Rate limits, the blast radius and the storm brake hold back what medic
# starts, not an undo or the brief that tells a human. As a rule of its own
# it is evaluated once per decision, and each rule below tests its cheap,
# selective comparison first: a negation costs a sub-query, and in the
# common case the comparison fails before it is reached.
limited if {
	not input.rollback
	not input.escalation
}

# --- deny ---------------------------------------------------------------

deny contains msg if {
	input.state.executions_target_hour >= max_per_target_hour
	limited
	msg := sprintf("rate limit: %d executions of %s on %s in the last hour (at most %d)", [input.state.executions_target_hour, input.call.tool, input.call.target, max_per_target_hour])
}

deny contains msg if {
	input.state.fleet_size > 0
	share := input.state.targets_affected / input.state.fleet_size
	share > 0.2
	limited
	msg := sprintf("blast radius: %d of %d targets (share %v) is over %v of the fleet", [input.state.targets_affected, input.state.fleet_size, share, 0.2])
}

deny contains msg if {
	input.state.targets_affected > max_targets_per_hour
	input.state.fleet_size <= 0
	limited
	msg := sprintf("spread: %d distinct targets in an hour with no known fleet size (at most %d)", [input.state.targets_affected, max_targets_per_hour])
}

deny contains msg if {
	input.call.risk == "medium"
	input.confidence < 0.75
	msg := sprintf("confidence %v is below %v, which a medium-risk tool needs", [input.confidence, 0.75])
}

deny contains msg if {
	input.idempotency.repeat
	msg := sprintf("idempotent repeat: %s already ran within its window", [input.idempotency.key])
}

# --- needs approval ----------------------------------------------------

approval contains "high-risk tools always need approval" if input.call.risk == "high"

approval contains msg if {
	input.source == "llm"
	input.confidence < 0.85
	msg := sprintf("an LLM proposal with confidence %v (below %v) needs approval", [input.confidence, 0.85])
}

approval contains msg if {
	input.state.actions_fleet_10m >= storm_limit
	limited
	msg := sprintf("storm brake: %d actions across the fleet in 10 minutes (limit %d)", [input.state.actions_fleet_10m, storm_limit])
}

approval contains msg if {
	p := input.config.peak_hours
	input.service.critical == true
	[h, _, _] := time.clock([time.now_ns(), p.timezone])
	h >= p.start
	h < p.end
	msg := sprintf("peak hours (%v to %v, %v) on a critical service", [p.start, p.end, p.timezone])
}

approval contains msg if {
	input.state.tool_runs >= 5
	input.state.tool_success_rate < 0.5
	msg := sprintf("%s has a recent success rate of %v (below %v)", [input.call.tool, input.state.tool_success_rate, 0.5])
}

approval contains msg if {
	input.state.runbook_runs >= 5
	input.state.runbook_success_rate < 0.5
	msg := sprintf("runbook %s has a recent success rate of %v (below %v)", [input.runbook, input.state.runbook_success_rate, 0.5])
}

approval contains "mode approve: a human decides" if input.mode == "approve"

# --- decision ------------------------------------------------------------

# One chain, so each set is computed once: any denial wins; then any
# approval requirement, unless a human approved; then allow.
decision := {"result": "deny", "reasons": sort(deny)} if {
	count(deny) > 0
} else := {"result": "needs_approval", "reasons": sort(approval)} if {
	count(approval) > 0
	not input.approved
} else := {"result": "allow", "reasons": ["approved by a human"]} if {
	count(approval) > 0
} else := {"result": "allow", "reasons": ["every rule passed"]}

package medic.policy_test

import data.medic.policy
import rego.v1

base := {
	"call": {"tool": "k8s_scale", "type": "exec", "risk": "low", "target": "shop/api", "args": {}},
	"source": "runbook",
	"confidence": 0.9,
	"mode": "auto",
	"state": {"executions_target_hour": 0, "actions_fleet_10m": 0, "tool_runs": 0, "tool_success_rate": 1, "targets_affected": 1, "fleet_size": 100},
	"service": {"critical": false},
	"idempotency": {"repeat": false},
	"config": {},
}

test_allows_a_plain_call if {
	policy.decision.result == "allow" with input as base
}

test_third_execution_allowed_fourth_denied if {
	policy.decision.result == "allow" with input as object.union(base, {"state": object.union(base.state, {"executions_target_hour": 2})})
	policy.decision.result == "deny" with input as object.union(base, {"state": object.union(base.state, {"executions_target_hour": 3})})
}

test_fleet_share_boundary if {
	policy.decision.result == "allow" with input as object.union(base, {"state": object.union(base.state, {"targets_affected": 20})})
	policy.decision.result == "deny" with input as object.union(base, {"state": object.union(base.state, {"targets_affected": 21})})
}

test_high_risk_needs_approval if {
	policy.decision.result == "needs_approval" with input as object.union(base, {"call": object.union(base.call, {"risk": "high"})})
	policy.decision.result == "allow" with input as object.union(base, {"call": object.union(base.call, {"risk": "high"}), "approved": true})
}

test_medium_risk_confidence_boundary if {
	policy.decision.result == "allow" with input as object.union(base, {"call": object.union(base.call, {"risk": "medium"}), "confidence": 0.75})
	policy.decision.result == "deny" with input as object.union(base, {"call": object.union(base.call, {"risk": "medium"}), "confidence": 0.7499})
}

test_llm_needs_confidence_or_approval if {
	policy.decision.result == "needs_approval" with input as object.union(base, {"source": "llm", "confidence": 0.8})
	policy.decision.result == "allow" with input as object.union(base, {"source": "llm", "confidence": 0.85})
}

test_every_decision_has_reasons if {
	count(policy.decision.reasons) > 0 with input as base
}

test_failing_runbook_needs_approval if {
	policy.decision.result == "needs_approval" with input as object.union(base, {"runbook": "oom", "state": object.union(base.state, {"runbook_runs": 5, "runbook_success_rate": 0.4})})
	policy.decision.result == "allow" with input as object.union(base, {"runbook": "oom", "state": object.union(base.state, {"runbook_runs": 4, "runbook_success_rate": 0})})
}

test_escalation_passes_the_brakes if {
	policy.decision.result == "allow" with input as object.union(base, {"escalation": true, "state": object.union(base.state, {"executions_target_hour": 9, "actions_fleet_10m": 99})})
}

test_spread_without_a_fleet if {
	policy.decision.result == "allow" with input as object.union(base, {"state": object.union(base.state, {"fleet_size": 0, "targets_affected": 5})})
	policy.decision.result == "deny" with input as object.union(base, {"state": object.union(base.state, {"fleet_size": 0, "targets_affected": 6})})
	policy.decision.result == "allow" with input as object.union(base, {"config": {"max_targets_per_hour": 6}, "state": object.union(base.state, {"fleet_size": 0, "targets_affected": 6})})
}

test_rollback_passes_the_blast_radius if {
	policy.decision.result == "allow" with input as object.union(base, {"rollback": true, "state": object.union(base.state, {"targets_affected": 50})})
}

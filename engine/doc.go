// Package engine is medic's pipeline: the webhook intake that makes a
// notification durable before it answers, the worker that turns the inbox
// into incidents, the decision path shared by serve, replay and test, the
// remediator that acts under the policy gate (claiming the limits in the
// step that journals the intent), approvals, verification, rollback and
// escalation, the HTTP API, the audit key and checkpoints, and the daemon's
// configuration.
//
// engine uses rules, actions, llm and state; none of them uses engine.
package engine

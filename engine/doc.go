// Package engine is medic's pipeline, one file per job:
//
//   - intake.go, webhook.go: the webhook intake, which makes a notification
//     durable before it answers, and applies it to the incidents in that
//     same commit when nothing waits in the inbox.
//   - worker.go: the worker that turns the inbox into incidents, keyed by
//     what is broken: the matching runbook's target, or the alert's
//     group_by labels.
//   - decide.go, llm.go, sources.go, toolquery.go: the decision path shared
//     by serve, replay and test.
//   - remediate.go: the remediation of an incident as a persisted state
//     machine (deciding, held, awaiting_approval, executing, verifying,
//     rolling_back, awaiting_resolution, settled). Each transition is one
//     state.Change: the phase with its journal entry, audit entries and
//     timeline events in one transaction. The claim of the policy's limits
//     and the intent share that transaction. Up to 64 decisions run at
//     once; remediation.parallel bounds the ones that act.
//   - approval.go, verify.go, escalate.go: the phases that wait for a human,
//     measure a step in Prometheus (and roll it back), and hand over.
//   - briefs.go: the escalation briefs, queued with the escalation's commit
//     and sent grouped, as Alertmanager groups notifications.
//   - api.go, audit.go: the HTTP API, the audit key and checkpoints.
//   - config.go, engine.go, exposure.go: the daemon's configuration, its
//     swap, and the check of how the listener is exposed.
//   - check.go, testrun.go, series.go: medic check and medic test.
//   - metrics.go: the daemon's metrics; fault_on.go: faults for tests.
//   - daemon.go, systemd.go: medic serve's lifecycle: listener, worker,
//     remediator, checkpoints, reloads in one swap, sd_notify and the
//     watchdog, and the order of shutdown.
//
// engine uses rules, actions, llm and state; none of them uses engine.
package engine

// Package state owns medic's single bbolt file: the durable inbox that the
// webhook writes to before it answers 200 (or, with nothing waiting there,
// the commit that applies the notification at once), the incidents and
// their indexes,
// the per-fingerprint history that keeps re-sent notifications idempotent,
// the counters of ignored alerts, each incident's remediation phase and the
// Change that moves it (one transaction with its journal entry, audit
// entries and timeline events; Commit takes many), the folding of an
// incident into its target's (Rekey), the action journal and the audit log
// (each indexed by incident, the running actions indexed for a restart and
// the last hours' actions for the policy's counts;
// the log hash-chained and authenticated with a
// key kept outside the file, with checkpoints in a second file), approvals
// and their transitions, the queue of escalation briefs, outcomes and
// stats, and the offline check of a damaged file.
//
// The schema is a few large buckets with big-endian, time-ordered keys and a
// meta/schema_version key. Callers see record types and sentinel errors, never
// bbolt itself. Every byte slice handed out is copied before its transaction
// ends.
package state

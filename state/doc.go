// Package state owns medic's single bbolt file: the durable inbox that the
// webhook writes to before it answers 200, the incidents and their indexes,
// the per-fingerprint history that keeps re-sent notifications idempotent,
// and the counters of ignored alerts.
//
// The schema is a few large buckets with big-endian, time-ordered keys and a
// meta/schema_version key. Callers see record types and sentinel errors, never
// bbolt itself. Every byte slice handed out is copied before its transaction
// ends.
package state

// Package actions owns the policy gate and the tool executors. Every call
// is evaluated by a prepared OPA query first, and an executor only runs
// what the gate allowed: executors take an Allowed, which only the gate can
// make, so no caller can skip it.
//
// actions imports nothing of medic's.
package actions

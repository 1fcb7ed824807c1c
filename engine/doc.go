// Package engine is medic's pipeline: the webhook intake that makes a
// notification durable before it answers, the worker that turns the inbox
// into incidents, the read API, and the daemon's configuration.
//
// engine uses state (and, in later stages, rules, actions and llm); none of
// them uses engine.
package engine

// Package rules loads medic's runbook language: the tool registry and the
// runbooks, written in HCL with conditions in expr. It parses, validates and
// compiles everything once at load time, reporting every problem as an HCL
// diagnostic with its file, line and column, and it never does I/O beyond
// reading the files it is given.
//
// rules imports nothing of medic's.
package rules

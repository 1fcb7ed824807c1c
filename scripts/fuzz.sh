#!/usr/bin/env bash
# Runs every fuzz target for FUZZTIME each (default 30s). `go test` alone
# runs only their seeds. Minimisation is off: on this project's large
# dependency graph it stalled the workers for minutes per new input.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${FUZZTIME:-30s}
for pkg in ./engine ./rules ./llm ./state; do
  for target in $(go test "$pkg" -list '^Fuzz' | grep '^Fuzz'); do
    echo "== $pkg $target"
    go test "$pkg" -run '^$' -fuzz "^$target\$" -fuzztime "$fuzztime" -fuzzminimizetime 0s 2>&1 | tail -2
  done
done

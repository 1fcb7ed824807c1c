#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what the tests need
# (Debian's prometheus, prometheus-alertmanager and prometheus-node-exporter,
# started by the tests themselves on free 127.0.0.1 ports), checks formatting, vets,
# checks the shipped runbooks and runs their unit tests, runs every Go
# test with the race detector, and, as root, the lab's short run
# (scripts/lab --short: real faults healed by the shipped runbooks).
# .ci/run calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh

unformatted=$(gofmt -l $(git ls-files '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change:" >&2
  echo "$unformatted" >&2
  exit 1
fi
go vet ./...
go run . check runbooks.hcl examples/medic.hcl
go run . test examples/tests/*.hcl
go test -race -count=1 "$@" ./...
if [ "$(id -u)" -eq 0 ]; then
  go run ./scripts/lab --short
else
  echo "scripts/lab --short skipped: the lab needs root (its systemd sandbox and tmpfs)"
fi

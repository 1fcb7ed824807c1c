#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what the tests need
# (Debian's prometheus, prometheus-alertmanager and prometheus-node-exporter,
# started by the tests themselves on free 127.0.0.1 ports), checks formatting, vets,
# checks the shipped runbooks and runs their unit tests, and runs every Go
# test with the race detector.
# .ci/run calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
missing=()
[ -x /usr/bin/prometheus-alertmanager ] || missing+=(prometheus-alertmanager)
[ -x /usr/bin/promtool ] || missing+=(prometheus)
[ -x /usr/bin/prometheus-node-exporter ] || missing+=(prometheus-node-exporter)
command -v systemd-analyze >/dev/null || missing+=(systemd)
[ -x /usr/bin/dbus-daemon ] || missing+=(dbus)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

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

#!/usr/bin/env bash
# Builds ./medic with its version, revision and build date stamped in, as
# `medic version` and medic_build_info report them.
set -euo pipefail
cd "$(dirname "$0")/.."
pkg=github.com/prometheus/common/version
version=$(git describe --tags --always --dirty 2>/dev/null || echo devel)
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
branch=$(git rev-parse --abbrev-ref HEAD 2>/dev/null || echo unknown)
go build -trimpath -o "${1:-medic}" -ldflags "-X $pkg.Version=$version -X $pkg.Revision=$revision -X $pkg.Branch=$branch \
  -X $pkg.BuildUser=$(id -un)@$(hostname) -X $pkg.BuildDate=$(date -u +%Y%m%d-%H:%M:%S)" .

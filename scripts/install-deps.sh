#!/usr/bin/env bash
# Installs what the tests and the lab run for real, from Debian's packages,
# when missing: prometheus (with promtool), prometheus-alertmanager,
# prometheus-node-exporter, systemd and dbus (the sandboxed systemd).
set -euo pipefail
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

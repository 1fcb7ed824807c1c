#!/usr/bin/env bash
# Installs medic as a systemd service, or removes it.
#
#   scripts/install.sh                 install (or upgrade) and start
#   scripts/install.sh --uninstall     stop, remove the binary, unit and tools;
#                                      keep /etc/medic and /var/lib/medic
#   scripts/install.sh --uninstall --purge
#                                      also remove /etc/medic, /var/lib/medic
#                                      and the medic user
#
# Idempotent: existing config and token files are kept. DESTDIR=/some/root
# installs into a staging root for packaging: no user is created there and
# systemctl is not run. MEDIC_BIN names the binary to install (default
# ./medic, built with scripts/build.sh when missing); the Kafka tool is
# built from scripts/tools/medic-kafka-dead-letter the same way
# (MEDIC_KAFKA_TOOL, default ./medic-kafka-dead-letter).
set -euo pipefail
cd "$(dirname "$0")/.."

uninstall=0 purge=0
for arg in "$@"; do
  case "$arg" in
    --uninstall) uninstall=1 ;;
    --purge) purge=1 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown argument $arg" >&2; exit 2 ;;
  esac
done
if [ "$purge" = 1 ] && [ "$uninstall" = 0 ]; then
  echo "install.sh: --purge goes with --uninstall" >&2
  exit 2
fi

root=${DESTDIR:-}
bin_dir=$root/usr/local/bin
unit_dir=$root/etc/systemd/system
conf_dir=$root/etc/medic
state_dir=$root/var/lib/medic
tools_dir=$root/usr/lib/medic/tools
user=medic
live_systemd=0
if [ -z "$root" ] && [ -d /run/systemd/system ]; then live_systemd=1; fi

have_user() { id -u "$user" >/dev/null 2>&1; }

if [ "$uninstall" = 1 ]; then
  if [ "$live_systemd" = 1 ]; then
    systemctl disable --now medic.service >/dev/null 2>&1 || true
  fi
  rm -f "$bin_dir/medic" "$unit_dir/medic.service" "$tools_dir/medic-kafka-dead-letter" "$tools_dir/medic-clean-caches"
  rmdir "$tools_dir" "$root/usr/lib/medic" 2>/dev/null || true
  if [ "$purge" = 1 ]; then
    rm -rf "$conf_dir" "$state_dir"
    if [ -z "$root" ] && have_user; then userdel "$user" || true; fi
  fi
  if [ "$live_systemd" = 1 ]; then systemctl daemon-reload; fi
  echo "medic uninstalled$([ "$purge" = 1 ] && echo ", state and config purged" || echo "; /etc/medic and /var/lib/medic kept")"
  exit 0
fi

medic_bin=${MEDIC_BIN:-./medic}
if [ ! -x "$medic_bin" ]; then
  scripts/build.sh "$medic_bin"
fi
kafka_tool=${MEDIC_KAFKA_TOOL:-./medic-kafka-dead-letter}
if [ ! -x "$kafka_tool" ]; then
  go build -trimpath -o "$kafka_tool" ./scripts/tools/medic-kafka-dead-letter
fi

# The service user, on a live system only; packages create it in postinst.
if [ -z "$root" ] && ! have_user; then
  useradd --system --home-dir /var/lib/medic --no-create-home --shell /usr/sbin/nologin "$user"
fi

install -d -m 0755 "$bin_dir" "$unit_dir" "$tools_dir"
install -m 0755 "$medic_bin" "$bin_dir/medic"
install -m 0644 scripts/medic.service "$unit_dir/medic.service"
install -m 0755 "$kafka_tool" "$tools_dir/medic-kafka-dead-letter"
install -m 0755 scripts/tools/medic-clean-caches "$tools_dir/"
install -d -m 0750 "$conf_dir"
install -d -m 0700 "$state_dir"

if [ ! -e "$conf_dir/medic.hcl" ]; then
  cat >"$conf_dir/medic.hcl" <<'HCL'
# medic.hcl installed by scripts/install.sh; examples/medic.hcl documents
# every key. Reload with `systemctl reload medic`.
runbooks = ["runbooks.hcl"]

web {
  listen_address      = "127.0.0.1:9095"
  bearer_token_file   = "token"
  approver_token_file = "approver-token"
}

storage {
  path = "/var/lib/medic/medic.db"
}

prometheus {
  url = "http://127.0.0.1:9090"
}
HCL
  chmod 0640 "$conf_dir/medic.hcl"
fi
if [ ! -e "$conf_dir/runbooks.hcl" ]; then
  install -m 0640 runbooks.hcl "$conf_dir/runbooks.hcl"
fi
for tok in token approver-token; do
  if [ ! -e "$conf_dir/$tok" ]; then
    (umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$conf_dir/$tok" && echo >>"$conf_dir/$tok")
  fi
  chmod 0600 "$conf_dir/$tok"
done

# Ownership: config readable by the service, the token and the state its own.
if have_user && [ "$(id -u)" = 0 ]; then
  chown root:"$user" "$conf_dir" "$conf_dir/medic.hcl" "$conf_dir/runbooks.hcl"
  chown "$user":"$user" "$conf_dir/token" "$conf_dir/approver-token" "$state_dir"
else
  echo "install.sh: user $user missing or not root: files keep their current owner" >&2
fi

if [ "$live_systemd" = 1 ]; then
  systemctl daemon-reload
  systemctl enable medic.service >/dev/null
  systemctl restart medic.service
  echo "medic installed and started; token in $conf_dir/token"
else
  echo "medic installed into ${root:-/}"
fi

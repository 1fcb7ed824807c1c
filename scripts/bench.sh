#!/usr/bin/env bash
# Intake benchmarks. Prints medians (benchstat) of:
#   1. BenchmarkIntake: the real handler behind a real HTTP server on
#      loopback, 64 concurrent keep-alive clients, 1- and 100-alert payloads,
#      fsynced into bbolt ("store"), with the worker draining concurrently
#      ("store+worker"), and the decode-only ceiling. At -cpu 2 (plain) and
#      -cpu 4 (what `medic serve` runs with on 2 cores: NumCPU+2).
#   2. BenchmarkIntakeGroupCommit: the queue committer against bbolt's
#      db.Batch at several MaxBatchDelay values.
#   3. BenchmarkEnqueue: the store alone.
#   4. fdatasync calls per commit, counted with strace.
#   5. The built binary under wrk: 64 connections, 2 threads, 15 s.
#   6. The decision path: candidate runbooks among 500, matching and
#      rendering, the policy gate and its floor, one whole decision.
# Results land in ${OUT_DIR:-bench-results}/. COUNT sets -count (default 6).
#
# `scripts/bench.sh storm` instead sends ALERTS (default 10000) unique alerts
# that no runbook matches, as 100-alert notifications, to the built binary
# with remediation.parallel = PARALLEL (default 4), and prints how long after
# the last POST every one was decided (escalated), the decisions per second,
# and the peak RSS. RUNS (default 3) runs, each on a fresh state file.
set -euo pipefail
cd "$(dirname "$0")/.."
count=${COUNT:-6}
out=${OUT_DIR:-bench-results}
mkdir -p "$out"

if [ "${1:-}" = storm ]; then
  alerts=${ALERTS:-10000}
  scripts/build.sh "$out/medic"
  for run in $(seq "${RUNS:-3}"); do
    dir=$(mktemp -d)
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    printf 'web { listen_address = "127.0.0.1:%s" }\nstorage { path = "%s/medic.db" }\nremediation { parallel = %s }\n' \
      "$port" "$dir" "${PARALLEL:-4}" > "$dir/medic.hcl"
    "$out/medic" serve --config.file "$dir/medic.hcl" --log.level error > "$dir/serve.log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/-/ready" >/dev/null && break; sleep 0.1; done
    python3 - "$alerts" "$run" > "$dir/bodies" <<'PY'
import json, sys
n, run = int(sys.argv[1]), int(sys.argv[2])
for b in range(0, n, 100):
    alerts = [{"status": "firing", "labels": {"alertname": "Storm", "instance": "i%d" % i},
               "startsAt": "2026-01-01T00:00:00Z", "fingerprint": "%016x" % (run << 32 | i)} for i in range(b, min(b + 100, n))]
    print(json.dumps({"version": "4", "status": "firing", "receiver": "medic", "alerts": alerts}))
PY
    t0=$(date +%s.%N)
    while read -r body; do
      curl -sf -XPOST -H 'Content-Type: application/json' "http://127.0.0.1:$port/api/v1/alerts" --data-binary "$body" >/dev/null
    done < "$dir/bodies"
    t1=$(date +%s.%N)
    until [ "$(curl -sf "http://127.0.0.1:$port/metrics" | awk '/^medic_incidents_total\{outcome="escalated"\}/{printf "%d", $2}')" -ge "$alerts" ] 2>/dev/null; do
      sleep 0.1
    done
    t2=$(date +%s.%N)
    rss=$(awk '/VmHWM/{print int($2/1024)}' "/proc/$pid/status")
    kill "$pid"; wait "$pid" 2>/dev/null || true
    rm -rf "$dir"
    awk -v a="$alerts" -v t0="$t0" -v t1="$t1" -v t2="$t2" -v rss="$rss" -v run="$run" \
      'BEGIN{printf "run %d: posted in %.1f s; all decided %.2f s after the last POST; %.0f decisions/s; peak RSS %d MiB\n", run, t1-t0, t2-t1, a/(t2-t0), rss}' \
      | tee -a "$out/storm.txt"
  done
  exit 0
fi

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v strace >/dev/null || need+=(strace)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
benchstat="go run golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da"

go test -c -o "$out/engine.test" ./engine
go test -c -o "$out/state.test" ./state
"$out/engine.test" -test.run '^$' -test.bench 'BenchmarkIntake$' -test.benchtime 20000x -test.count "$count" -test.cpu 2,4 | tee "$out/intake.txt"
"$out/engine.test" -test.run '^$' -test.bench 'BenchmarkIntakeGroupCommit' -test.benchtime 20000x -test.count "$count" -test.cpu 4 | tee "$out/groupcommit.txt"
"$out/state.test" -test.run '^$' -test.bench 'BenchmarkEnqueue' -test.benchtime 20000x -test.count "$count" | tee "$out/enqueue.txt"
echo "== medians =="
$benchstat "$out/intake.txt" "$out/groupcommit.txt" "$out/enqueue.txt" | tee "$out/medians.txt"

echo "== decision path =="
go test -c -o "$out/rules.test" ./rules
go test -c -o "$out/actions.test" ./actions
"$out/rules.test" -test.run '^$' -test.bench 'BenchmarkCandidates|BenchmarkMatchRender' -test.count "$count" | tee "$out/decision.txt"
"$out/actions.test" -test.run '^$' -test.bench 'BenchmarkPolicy' -test.count "$count" | tee -a "$out/decision.txt"
"$out/engine.test" -test.run '^$' -test.bench 'BenchmarkDecide$' -test.count "$count" | tee -a "$out/decision.txt"
$benchstat "$out/decision.txt" | tee "$out/decision-medians.txt"

echo "== fdatasync per commit =="
strace -f -qq -c -e trace=fdatasync,fsync -o "$out/strace.txt" \
  "$out/engine.test" -test.run '^$' -test.bench 'Intake$/^alerts=1$/^store$' -test.benchtime 20000x -test.cpu 4 | tee "$out/strace-bench.txt"
syncs=$(awk '$NF=="fdatasync"{print $4}' "$out/strace.txt")
perc=$(grep -o '[0-9.]* notif/commit' "$out/strace-bench.txt" | awk '{print $1}')
awk -v s="$syncs" -v p="$perc" 'BEGIN{c=20000/p; printf "fdatasync calls: %d, commits: %.0f, fdatasync per commit: %.2f, per notification: %.3f\n", s, c, s/c, s/20000}' | tee "$out/fsync.txt"

echo "== built binary under wrk =="
scripts/build.sh "$out/medic"
dir=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$out/medic" serve --web.listen-address "127.0.0.1:$port" --storage.path "$dir/medic.db" --log.level warn &
pid=$!
trap 'kill $pid 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/-/ready" >/dev/null && break; sleep 0.1; done
for alerts in 1 100; do
  body="$dir/body-$alerts.json"
  MEDIC_BENCH_PAYLOAD="$body" MEDIC_BENCH_ALERTS=$alerts "$out/engine.test" -test.run '^TestWriteBenchPayload$' >/dev/null
  for run in $(seq 3); do
    echo "-- $alerts alert(s), run $run"
    BODY_FILE="$body" wrk -t2 -c64 -d15s --latency -s scripts/wrk-post.lua "http://127.0.0.1:$port/api/v1/alerts" | tee -a "$out/wrk-$alerts.txt"
  done
done
curl -s "http://127.0.0.1:$port/metrics" | grep -E '^medic_(inbox|notifications_received_total\{result="accepted"|incidents_open)' | tee "$out/wrk-metrics.txt"

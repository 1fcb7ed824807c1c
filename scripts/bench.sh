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
# to the built binary as notifications of BATCH (default 100) alerts, over
# CONNS (default 16) keep-alive connections, as Alertmanager sends groups
# concurrently, then
# one alert that a runbook acts on, and prints how long after the last POST
# every storm alert was decided, the decisions per second, how long the
# acting alert took from its POST to its tool's process running, and the
# peak RSS. KIND=escalate (default): no runbook matches the storm, every
# alert escalates; KIND=shadow: a shadow-mode runbook matches each one.
# MEDIC_BIN measures a binary built elsewhere. PARALLEL sets remediation.parallel (default: the config's default). RUNS
# (default 3) runs, each on a fresh state file.
#
# `scripts/bench.sh latency` posts ALERTS (default 200) alerts, one at a
# time, that a runbook acts on with a tool that writes when its main ran,
# and prints the median time from each POST to then, over RUNS (default 3)
# runs; then, under strace, the fdatasync calls between accepting a POST
# and the execve of its tool. MEDIC_BIN measures a binary built elsewhere.
set -euo pipefail
cd "$(dirname "$0")/.."
count=${COUNT:-6}
out=${OUT_DIR:-bench-results}
mkdir -p "$out"

if [ "${1:-}" = storm ]; then
  alerts=${ALERTS:-10000} batch=${BATCH:-100} kind=${KIND:-escalate}
  bin=${MEDIC_BIN:-}
  if [ -z "$bin" ]; then
    scripts/build.sh "$out/medic"
    bin=$(realpath "$out/medic")
  fi
  for run in $(seq "${RUNS:-3}"); do
    dir=$(mktemp -d)
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    {
      printf 'runbooks = ["runbooks.hcl"]\nweb { listen_address = "127.0.0.1:%s" }\nstorage { path = "%s/medic.db" }\n' "$port" "$dir"
      [ -z "${PARALLEL:-}" ] || printf 'remediation { parallel = %s }\n' "$PARALLEL"
    } > "$dir/medic.hcl"
    cat > "$dir/runbooks.hcl" <<HCL
tool "mark" {
  description = "Writes when it started."
  risk        = "low"
  exec { command = ["/bin/sh", "-c", "date +%s.%N > $dir/acted"] }
}
runbook "urgent" {
  description = "Acts at once."
  matchers = ["alertname=\"Urgent\""]
  target = "\${labels.instance}"
  step "mark" { tool = "mark" }
}
HCL
    metric='medic_incidents_total{outcome="escalated"}'
    if [ "$kind" = shadow ]; then
      # One allowed verdict per shadow run of the one-step runbook (and
      # one for the acting alert): a count older binaries keep too.
      metric='medic_policy_decisions_total{result="allow"}'
      cat >> "$dir/runbooks.hcl" <<'HCL'
runbook "storm" {
  description = "Matches the storm, in shadow mode."
  mode        = "shadow"
  matchers = ["alertname=\"Storm\""]
  target = "${labels.instance}"
  step "mark" { tool = "mark" }
}
HCL
    fi
    (cd "$dir" && exec "$bin" serve --config.file medic.hcl --log.level error > serve.log 2>&1) &
    pid=$!
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/-/ready" >/dev/null && break; sleep 0.1; done
    python3 - "$alerts" "$run" "$batch" > "$dir/bodies" <<'PY'
import json, sys
n, run, batch = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
for b in range(0, n, batch):
    alerts = [{"status": "firing", "labels": {"alertname": "Storm", "instance": "i%d" % i},
               "startsAt": "2026-01-01T00:00:00Z", "fingerprint": "%016x" % (run << 32 | i)} for i in range(b, min(b + batch, n))]
    print(json.dumps({"version": "4", "status": "firing", "receiver": "medic", "alerts": alerts}))
PY
    urgent='{"version":"4","status":"firing","receiver":"medic","alerts":[{"status":"firing","labels":{"alertname":"Urgent","instance":"u"},"startsAt":"2026-01-01T00:00:00Z","fingerprint":"00000000000000ff"}]}'
    t0=$(date +%s.%N)
    python3 - "$port" "$dir/bodies" "${CONNS:-16}" <<'PY'
import http.client, sys, threading
port, bodies, conns = int(sys.argv[1]), open(sys.argv[2]).read().splitlines(), int(sys.argv[3])
failed = []
def post(part):
    c = http.client.HTTPConnection("127.0.0.1", port)
    for body in part:
        c.request("POST", "/api/v1/alerts", body, {"Content-Type": "application/json"})
        r = c.getresponse(); r.read()
        if r.status != 200: failed.append(r.status)
ts = [threading.Thread(target=post, args=(bodies[i::conns],)) for i in range(conns)]
for t in ts: t.start()
for t in ts: t.join()
if failed: sys.exit("POST failed: %s" % failed[:5])
PY
    t1=$(date +%s.%N)
    tu=$(date +%s.%N)
    curl -sf -XPOST -H 'Content-Type: application/json' "http://127.0.0.1:$port/api/v1/alerts" --data-binary "$urgent" >/dev/null
    until [ "$(curl -sf "http://127.0.0.1:$port/metrics" | awk -v m="$metric" '$1==m{printf "%d", $2}')" -ge "$alerts" ] 2>/dev/null; do
      sleep 0.05
    done
    t2=$(date +%s.%N)
    until [ -s "$dir/acted" ]; do sleep 0.05; done
    acted=$(cat "$dir/acted")
    rss=$(awk '/VmHWM/{print int($2/1024)}' "/proc/$pid/status")
    kill "$pid"; wait "$pid" 2>/dev/null || true
    rm -rf "$dir"
    awk -v a="$alerts" -v t0="$t0" -v t1="$t1" -v t2="$t2" -v ta="$acted" -v tu="$tu" -v rss="$rss" -v run="$run" -v k="$kind" -v b="$batch" \
      'BEGIN{printf "%s, %d-alert notifications, run %d: posted in %.1f s; all decided %.2f s after the last POST; %.0f decisions/s; urgent alert acted on %.3f s after its POST; peak RSS %d MiB\n", k, b, run, t1-t0, t2-t1, a/(t2-t0), ta-tu, rss}' \
      | tee -a "$out/storm.txt"
  done
  exit 0
fi

if [ "${1:-}" = latency ]; then
  bin=${MEDIC_BIN:-}
  if [ -z "$bin" ]; then
    scripts/build.sh "$out/medic"
    bin=$(realpath "$out/medic")
  fi
  need=()
  command -v strace >/dev/null || need+=(strace)
  command -v cc >/dev/null || need+=(gcc libc6-dev)
  if [ ${#need[@]} -gt 0 ]; then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
  # The tool writes when it started running: what "the tool's process
  # running" means to whoever waits for it, whatever medic records. It is
  # a static C program, whose start costs the least.
  stampdir=$(mktemp -d)
  printf '#include <stdio.h>\n#include <time.h>\nint main(int argc, char **argv) {\n  struct timespec t;\n  clock_gettime(CLOCK_REALTIME, &t);\n  FILE *f = fopen(argv[1], "w");\n  fprintf(f, "%%lld\\n", (long long)t.tv_sec * 1000000000LL + t.tv_nsec);\n  return fclose(f);\n}\n' > "$stampdir/stamp.c"
  cc -O2 -static -o "$stampdir/stamp" "$stampdir/stamp.c"
  for run in $(seq "${RUNS:-3}") strace; do
    dir=$(mktemp -d)
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    # The policy's rate limits would stop a bench of hundreds of actions.
    printf 'runbooks = ["runbooks.hcl"]\nweb { listen_address = "127.0.0.1:%s" }\nstorage { path = "%s/medic.db" }\npolicy_config {\n  storm_limit = 1000000\n  max_targets_per_hour = 1000000\n}\n' \
      "$port" "$dir" > "$dir/medic.hcl"
    cat > "$dir/runbooks.hcl" <<HCL
tool "stamp" {
  description = "Writes when it ran."
  risk        = "low"
  param "n" { pattern = "[0-9]+" }
  exec { command = ["$stampdir/stamp", "$dir/ran-\${param.n}"] }
}
runbook "act" {
  description = "Acts at once."
  matchers = ["alertname=\"Act\""]
  target = "\${labels.n}"
  step "stamp" {
    tool = "stamp"
    args = { n = "\${labels.n}" }
  }
}
HCL
    (cd "$dir" && exec "$bin" serve --config.file medic.hcl --log.level error > serve.log 2>&1) &
    pid=$!
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/-/ready" >/dev/null && break; sleep 0.1; done
    n=${ALERTS:-200}
    if [ "$run" = strace ]; then
      n=30
      strace -f -ttt --seccomp-bpf -e trace=accept4,fdatasync,execve -o "$dir/trace" -p "$pid" 2>/dev/null &
      tracer=$!
      sleep 1
    fi
    python3 - "$port" "$n" "$run" "$dir" <<'PY' | tee -a "$out/latency.txt"
import http.client, json, os, statistics, sys, time
port, n, run, d = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
lat = []
for i in range(n):
    body = json.dumps({"version": "4", "status": "firing", "receiver": "medic", "alerts": [{"status": "firing",
        "labels": {"alertname": "Act", "n": str(i)}, "startsAt": "2026-01-01T00:00:00Z", "fingerprint": "%016x" % (0xa000 + i)}]})
    c = http.client.HTTPConnection("127.0.0.1", port)
    c.connect()
    t0 = time.time_ns()
    c.request("POST", "/api/v1/alerts", body, {"Content-Type": "application/json"})
    c.getresponse().read()
    c.close()
    ran = "%s/ran-%d" % (d, i)
    for _ in range(500):
        if os.path.exists(ran) and os.path.getsize(ran) > 0:
            break
        time.sleep(0.01)
    lat.append((int(open(ran).read()) - t0) / 1e6)
    time.sleep(0.05)
lat.sort()
if run != "strace":
    print("run %s: POST to the tool's process running, over %d alerts: median %.2f ms, p10 %.2f, p90 %.2f" % (
        run, n, statistics.median(lat), lat[n // 10], lat[n * 9 // 10]))
PY
    if [ "$run" = strace ]; then
      kill "$tracer"; wait "$tracer" 2>/dev/null || true
      python3 - "$dir/trace" <<'PY' | tee -a "$out/latency.txt"
import re, statistics, sys
syncs, start, n = [], False, 0
for line in open(sys.argv[1]):
    m = re.match(r"\d+\s+[\d.]+\s+(\w+)\(", line)
    if not m or "= -1" in line:
        continue
    call = m.group(1)
    if call == "accept4" and not start:
        start, n = True, 0
    elif call == "fdatasync" and start:
        n += 1
    elif call == "execve" and start and "/stamp" in line:
        syncs.append(n)
        start = False
print("under strace: fdatasync calls from accepting a POST to its tool's execve: median %d (min %d, max %d) over %d alerts; bbolt syncs twice a commit" % (
    statistics.median(syncs), min(syncs), max(syncs), len(syncs)))
PY
    fi
    kill "$pid"; wait "$pid" 2>/dev/null || true
    rm -rf "$dir"
  done
  rm -rf "$stampdir"
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

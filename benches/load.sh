#!/usr/bin/env bash
# Load benchmark of the HTTP service, on loopback only, bounded in time and count.
#
#   1. Every worker busy training, GET /v1/jobs/{id} for $DURATION:
#      a. at a fixed rate of $RATE req/s (`hey -q`), reporting throughput, p99 and non-200
#         responses (target: >= 5,000 req/s with p99 < 10 ms and no errors);
#      b. closed-loop with `wrk` for the peak throughput (its p99 is latency at saturation, with
#         wrk, the runtime and the workers sharing the two cores).
#   2. A burst of $BURST tiny job submissions with `hey` (while the workers are still busy):
#      each must be 202 or 503; then the long jobs are cancelled, the queue drains, and every
#      accepted job must reach a terminal status (none lost). The server's RSS is printed before
#      and after.
#
# Tools (Debian packages): apt-get install wrk hey
# Usage: benches/load.sh            (builds the release binary if needed)
#        DURATION=20s BURST=10000 CONNECTIONS=32 benches/load.sh
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-20s}"
RATE="${RATE:-10000}"
CONNECTIONS="${CONNECTIONS:-32}"
BURST="${BURST:-10000}"
BURST_CONCURRENCY="${BURST_CONCURRENCY:-50}"
for tool in wrk hey curl python3; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install wrk hey curl)"; exit 1; }
done

cargo build --release --quiet --bin gradscope
bin=./target/release/gradscope
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
base="http://127.0.0.1:$port"
work="$(mktemp -d)"
# Workers: one per core (the default). Retention high enough that no accepted job is evicted
# before it is counted.
RUST_LOG=warn "$bin" serve --bind "127.0.0.1:$port" --queue-capacity 256 --retain-jobs 20000 \
  --log-format json >"$work/server.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 100); do "$bin" healthcheck --url "$base/readyz" 2>/dev/null && break; sleep 0.1; done
workers="$(curl -fsS "$base/readyz" | python3 -c 'import json, sys; print(json.load(sys.stdin)["workers"])')"
rss() { awk '/VmRSS/ {print $2 " kB"}' "/proc/$server/status"; }
echo "server pid $server on $base, $workers workers, RSS $(rss)"

json() { python3 -c "import json, sys; print(json.load(sys.stdin)$1)"; }
# A run that keeps a core busy for minutes: 4 x 64 tanh MLP, batch 64, a million steps.
long='{"name":"load: keep a worker busy","model":{"input_dim":2,"layers":[{"type":"mlp","depth":4,"width":64,"activation":"tanh"},{"type":"dense","units":2}]},"data":{"type":"spirals","samples":1024},"training":{"steps":1000000,"batch_size":64},"probes":{"every":100}}'
long_ids=()
for _ in $(seq 1 "$workers"); do
  long_ids+=("$(curl -fsS -X POST "$base/v1/jobs" -H 'content-type: application/json' -d "$long" | json "['id']")")
done
sleep 1
running="$(curl -fsS "$base/readyz" | json "['running']")"
echo "training jobs running: $running of $workers workers"
target="$base/v1/jobs/${long_ids[0]}"

echo
echo "== 1a. GET /v1/jobs/{id} at $RATE req/s with every worker training: hey -z $DURATION -c 50 -q $((RATE / 50))"
hey -z "$DURATION" -c 50 -q "$((RATE / 50))" "$target" | tee "$work/hey-get.txt"
rate_rps="$(awk '/Requests\/sec/ {print $2}' "$work/hey-get.txt")"
rate_p99="$(awk '$1 == "99%" {print $3 " s"}' "$work/hey-get.txt")"
rate_ok="$(awk '/\[200\]/ {print $2}' "$work/hey-get.txt")"
rate_all="$(awk '/responses/ {s += $2} END {print s + 0}' "$work/hey-get.txt")"
echo "RESULT get_job at a fixed rate: ${rate_rps} req/s, p99 ${rate_p99}, $((rate_all - rate_ok)) non-200 of ${rate_all}"
echo "training jobs running: $(curl -fsS "$base/readyz" | json "['running']")"

echo
echo "== 1b. GET /v1/jobs/{id} closed-loop (peak throughput): wrk -t2 -c$CONNECTIONS -d$DURATION"
wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency "$target" | tee "$work/wrk.txt"
rps="$(awk '/Requests\/sec/ {print $2}' "$work/wrk.txt")"
p99="$(awk '$1 == "99%" {print $2}' "$work/wrk.txt")"
non2xx="$(awk '/Non-2xx/ {print $NF}' "$work/wrk.txt")"
sockerr="$(awk '/Socket errors/ {print}' "$work/wrk.txt")"
echo "RESULT get_job peak: ${rps} req/s, p99 at saturation ${p99}, non-2xx ${non2xx:-0}${sockerr:+, $sockerr}"
still="$(curl -fsS "$base/readyz" | json "['running']")"
echo "training jobs still running after the run: $still"

echo
echo "== 2. burst: $BURST POST /v1/jobs (tiny specs), $BURST_CONCURRENCY at a time, workers still busy"
tiny='{"model":{"input_dim":2,"layers":[{"type":"dense","units":4,"activation":"tanh"},{"type":"dense","units":2}]},"data":{"type":"xor","samples":32},"training":{"steps":20,"batch_size":8}}'
echo "$tiny" >"$work/tiny.json"
echo "RSS before the burst: $(rss)"
hey -n "$BURST" -c "$BURST_CONCURRENCY" -m POST -T application/json -D "$work/tiny.json" "$base/v1/jobs" | tee "$work/hey.txt"
accepted="$(awk '/\[202\]/ {print $2}' "$work/hey.txt")"; accepted="${accepted:-0}"
refused="$(awk '/\[503\]/ {print $2}' "$work/hey.txt")"; refused="${refused:-0}"
echo "RSS after the burst: $(rss)"
for id in "${long_ids[@]}"; do curl -fsS -X POST "$base/v1/jobs/$id/cancel" >/dev/null; done
# Wait for the queue to drain, then count terminal jobs through the metrics.
for _ in $(seq 1 600); do
  q="$(curl -fsS "$base/readyz" | json "['queued']")"
  [ "$q" = "0" ] && break
  sleep 0.1
done
sleep 0.5
metrics="$(curl -fsS "$base/metrics")"
finished="$(echo "$metrics" | awk '/^gradscope_jobs_finished_total/ {s += $2} END {print s + 0}')"
submitted="$(echo "$metrics" | awk '/^gradscope_jobs_submitted_total\{outcome="accepted"\}/ {print $2}')"
expected=$((accepted + ${#long_ids[@]}))
echo "RSS after draining: $(rss)"
echo "RESULT burst: $BURST sent, $accepted accepted (202), $refused refused (503), other $((BURST - accepted - refused)); server counted $submitted accepted, $finished finished (expected $expected incl. the ${#long_ids[@]} long jobs)"
status=0
[ $((accepted + refused)) -eq "$BURST" ] || { echo "FAIL: some submissions were neither 202 nor 503"; status=1; }
[ "$finished" -eq "$expected" ] || { echo "FAIL: accepted jobs lost"; status=1; }
kill -TERM "$server"; wait "$server" || true
trap - EXIT
rm -rf "$work"
exit "$status"

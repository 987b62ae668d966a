#!/usr/bin/env bash
# wrk against a running creditsd: charges, account reads and /healthz, 64 connections,
# 2 threads, 10 s each; one line per endpoint with requests/s, p50/p90/p99 and the
# server's CPU time per request (from /proc, so it stays comparable on a busy machine).
#
#   KEY=cdk_… bench/http/run.sh LABEL SERVER_PID [http://127.0.0.1:8000]
set -euo pipefail
label=$1
pid=$2
url=${3:-http://127.0.0.1:8000}
export BENCH_DIR
BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
: "${KEY:?set KEY to the secret of an app or admin key}"
cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
ticks=$(getconf CLK_TCK)
for endpoint in ${ENDPOINTS:-charges account healthz}; do
  path=/
  [ "$endpoint" = healthz ] && path=/healthz
  before=$(cpu)
  result=$(wrk -t2 -c64 -d"${SECONDS_EACH:-10}"s --latency -s "$BENCH_DIR/$endpoint.lua" "$url$path" \
    | grep RESULT)
  after=$(cpu)
  requests=$(sed -E 's/.*requests=([0-9]+).*/\1/' <<<"$result")
  cpu_us=$(awk -v a="$before" -v b="$after" -v n="$requests" -v t="$ticks" \
    'BEGIN { printf "%.0f", (b - a) / t / n * 1e6 }')
  read -r load _ </proc/loadavg
  echo "$label $endpoint $result cpu_us=$cpu_us load=$load"
  sleep 2
done

#!/usr/bin/env bash
# Load-tests a local cluster (scripts/run-cluster.sh: 3 ingesters with
# replication factor 3, a distributor, a querier) and reports the
# distributor's CPU per million samples and each ingester's CPU per million
# samples it stored (every sample is stored 3 times), from /proc.
# Usage: bench/cluster.sh [SERIES]   (default 100000); DURATION (default 60s);
# ISOBAR_BIN runs that binary instead of building the working tree.
set -euo pipefail
cd "$(dirname "$0")/.."
series=${1:-100000}
duration=${DURATION:-60s}
work=$(mktemp -d)
if [ -n "${ISOBAR_BIN:-}" ]; then cp "$ISOBAR_BIN" "$work/isobar"; else go build -o "$work/isobar" ./cmd/isobar; fi
go build -o "$work/loadgen" ./bench/cmd/loadgen
ISOBAR_BIN="$work/isobar" CLUSTER_DIR="$work/cluster" bash scripts/run-cluster.sh >"$work/cluster.out" 2>&1 &
cluster=$!
trap 'kill $cluster 2>/dev/null; wait $cluster 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 1 300); do
  [ "$(curl -s 127.0.0.1:9010/ring | grep -o '>ACTIVE<' | wc -l)" = 3 ] && break; sleep 0.1
done
pid_of() { awk -v n="$1:" '$1 == n { gsub(/[(),]/, "", $4); print $4 }' "$work/cluster.out"; }
cpu() { awk '{ print ($14 + $15) / 100 }' "/proc/$1/stat"; }
declare -A before
for n in ingester-1 ingester-2 ingester-3; do before[$n]=$(cpu "$(pid_of $n)"); done
"$work/loadgen" -url http://127.0.0.1:9009/api/v1/push -series "$series" -duration "$duration" \
  -pid "$(pid_of distributor)" -out "$work/result.json" >"$work/loadgen.log" 2>&1 || { cat "$work/loadgen.log"; exit 1; }
grep -E '^(steady|warmup|  steady|  creation|  rss|  error)' "$work/loadgen.log" | sed 's/^/distributor: /'
total=$(python3 -c "import json; print(json.load(open('$work/result.json'))['total_samples_accepted'])")
for n in ingester-1 ingester-2 ingester-3; do
  used=$(awk -v a="${before[$n]}" -v b="$(cpu "$(pid_of $n)")" 'BEGIN { print b - a }')
  awk -v n="$n" -v u="$used" -v s="$total" 'BEGIN { printf "%s: %.1f CPU-s for %d replicated samples: %.2f CPU-s per million\n", n, u, s, u / (s / 1e6) }'
done

#!/usr/bin/env bash
# Times a private cloud's fleet dashboard (bench/cmd/querybench's queries)
# over SERIES series (default 1,000,000), ROUNDS samples each (default 40,
# 15 s apart), held alike by: isobar's single binary, a local cluster
# (scripts/run-cluster.sh: 3 ingesters with RF=3) asked through its querier
# and through its query-frontend (split and sharded), and Debian's
# Prometheus. Results caches are off, so that every run computes; the
# table goes to stdout, the figures to bench/results/dashboard-SERIES.json.
# Usage: bench/dashboard.sh [SERIES]   (make test-deps installs Prometheus)
set -euo pipefail
cd "$(dirname "$0")/.."
series=${1:-1000000}
rounds=${ROUNDS:-40}
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
echo "building into $work" >&2
go build -o "$work/isobar" ./cmd/isobar
go build -o "$work/loadgen" ./bench/cmd/loadgen
go build -o "$work/querybench" ./bench/cmd/querybench
flags="-distributor.ingestion-rate-limit=1e9 -distributor.ingestion-burst-size=2000000000 -query-frontend.cache-results=false -querier.timeout=5m"

# shellcheck disable=SC2086
"$work/isobar" -server.http-listen-address=127.0.0.1 -server.http-listen-port=19009 -server.grpc-listen-port=19095 \
  -data.dir="$work/single" $flags >"$work/single.log" 2>&1 &
pids+=($!)
ISOBAR_BIN="$work/isobar" CLUSTER_DIR="$work/cluster" ISOBAR_FLAGS="$flags" bash scripts/run-cluster.sh >"$work/cluster.out" 2>&1 &
pids+=($!)
echo 'global: {}' >"$work/prom.yml"
prometheus --config.file="$work/prom.yml" --web.enable-remote-write-receiver --storage.tsdb.path="$work/prom" \
  --web.listen-address=127.0.0.1:19090 --query.timeout=5m >"$work/prometheus.log" 2>&1 &
pids+=($!)

ready() { for _ in $(seq 1 600); do curl -sf "$1" >/dev/null && return 0; sleep 0.1; done; echo "not ready: $1" >&2; return 1; }
ready http://127.0.0.1:19009/ready
ready http://127.0.0.1:19090/-/ready
for _ in $(seq 1 600); do
  [ "$(curl -s 127.0.0.1:9010/ring | grep -o '>ACTIVE<' | wc -l)" = 3 ] && break; sleep 0.1
done
ready http://127.0.0.1:9016/ready

for t in single=http://127.0.0.1:19009/api/v1/push cluster=http://127.0.0.1:9009/api/v1/push prometheus=http://127.0.0.1:19090/api/v1/write; do
  name=${t%%=*} url=${t#*=}
  echo "writing $series series × $rounds samples to $name" >&2
  "$work/loadgen" -url "$url" -series "$series" -warmup-rounds "$rounds" -max-warmup 1h -duration 1s \
    -samples-per-second 1 -out "$work/load-$name.json" 2>"$work/load-$name.log" >/dev/null \
    || { tail "$work/load-$name.log" >&2; exit 1; }
  grep -E '^(warmup|  warmup)' "$work/load-$name.log" | sed "s/^/$name: /" >&2 || true
done

mkdir -p bench/results
"$work/querybench" -range 1h -step 30s -runs 5 -out "bench/results/dashboard-$series.json" \
  -target single=http://127.0.0.1:19009 -target cluster-querier=http://127.0.0.1:9010 \
  -target cluster-frontend=http://127.0.0.1:9016 -target prometheus=http://127.0.0.1:19090

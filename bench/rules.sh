#!/usr/bin/env bash
# Measures the ruler under a rule load: isobar's single binary holds SERIES
# workload series (default 1,000,000) scraped every minute (loadgen keeps
# writing one sample a series a minute, after 20 minutes of history), and
# bench/cmd/rulebench loads the rule pack plus copies of its recording rules
# up to RULES rules (default 5,000), evaluated every minute. It prints time
# per group, missed iterations, CPU-seconds per minute and memory, with and
# without the rules; the figures go to bench/results/rules-SERIES.json.
# Usage: bench/rules.sh [SERIES]   (BASELINE=2m DURATION=5m RULES=5000)
set -euo pipefail
cd "$(dirname "$0")/.."
series=${1:-1000000}
rules=${RULES:-5000}
baseline=${BASELINE:-2m}
duration=${DURATION:-5m}
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
echo "building into $work" >&2
go build -o "$work/isobar" ./cmd/isobar
go build -o "$work/loadgen" ./bench/cmd/loadgen
go build -o "$work/rulebench" ./bench/cmd/rulebench

"$work/isobar" -server.http-listen-address=127.0.0.1 -server.http-listen-port=19009 -server.grpc-listen-port=19095 \
  -data.dir="$work/single" -distributor.ingestion-rate-limit=1e9 -distributor.ingestion-burst-size=2000000000 \
  -ruler.max-rule-groups-per-tenant=5000 -ruler.max-rules-per-rule-group=100 -ruler.evaluation-interval=1m \
  >"$work/isobar.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 600); do curl -sf http://127.0.0.1:19009/ready >/dev/null && break; sleep 0.1; done
curl -sf http://127.0.0.1:19009/ready >/dev/null || { tail "$work/isobar.log" >&2; exit 1; }

echo "writing $series series: 20 minutes of history, then a sample a series a minute" >&2
"$work/loadgen" -url http://127.0.0.1:19009/api/v1/push -series "$series" -interval 1m -lookback 20m \
  -warmup-rounds 20 -max-warmup 1h -samples-per-second $((series / 60)) -duration 2h -progress 30s \
  >/dev/null 2>"$work/loadgen.log" &
pids+=($!)
until grep -q steady "$work/loadgen.log"; do
  sleep 5
  kill -0 "${pids[1]}" 2>/dev/null || { tail "$work/loadgen.log" >&2; exit 1; }
done
tail -n 2 "$work/loadgen.log" >&2

mkdir -p bench/results
"$work/rulebench" -url http://127.0.0.1:19009 -rules "$rules" -baseline "$baseline" -duration "$duration" \
  -out "bench/results/rules-$series.json"

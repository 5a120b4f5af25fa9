#!/usr/bin/env bash
# Runs the same remote-write load against isobar and against Prometheus'
# remote-write receiver, one after the other on this machine, and prints one
# table row per run. Usage: bench/compare.sh [SERIES...]   (default: 100000 1000000)
# DURATION (default 60s) sets the steady phase. RATE (samples/s, default: as
# fast as each server accepts) gives both servers the same load, so memory is
# compared at the same number of samples per series. Results go to bench/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
series_list=("${@:-100000 1000000}")
[ $# -eq 0 ] && series_list=(100000 1000000)
duration=${DURATION:-60s}
rate=${RATE:-0}
out=bench/results
mkdir -p "$out"
work=$(mktemp -d)
trap 'kill "${pid:-}" 2>/dev/null || true; rm -rf "$work"' EXIT

go build -o "$work/isobar" ./cmd/isobar
go build -o "$work/loadgen" ./bench/cmd/loadgen
command -v prometheus >/dev/null || { echo "prometheus not installed: run make test-deps" >&2; exit 1; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_ready() { # url
  for _ in $(seq 1 300); do curl -sf "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "server at $1 never became ready" >&2; return 1
}

printf '| server | series | samples/s | CPU-s per 1M samples | µs CPU per new series | RSS B/series (end) | peak RSS B/series | p99 latency |\n'
printf '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n'
for series in "${series_list[@]}"; do
  for server in isobar prometheus; do
    port=$(free_port)
    rm -rf "$work/data"
    if [ "$server" = isobar ]; then
      "$work/isobar" -data.dir="$work/data" -server.http-listen-address=127.0.0.1 -server.http-listen-port="$port" >"$work/server.log" 2>&1 &
      pid=$!; url="http://127.0.0.1:$port/api/v1/push"; wait_ready "http://127.0.0.1:$port/ready"
    else
      echo 'global: {}' >"$work/prom.yml"
      prometheus --config.file="$work/prom.yml" --web.enable-remote-write-receiver --storage.tsdb.path="$work/data" \
        --web.listen-address="127.0.0.1:$port" >"$work/server.log" 2>&1 &
      pid=$!; url="http://127.0.0.1:$port/api/v1/write"; wait_ready "http://127.0.0.1:$port/-/ready"
    fi
    json="$out/$server-$series-rate$rate.json"
    "$work/loadgen" -url "$url" -series "$series" -duration "$duration" -samples-per-second "$rate" -pid "$pid" -out "$json" >"$work/loadgen.log" 2>&1 || { cat "$work/loadgen.log" >&2; exit 1; }
    hwm=$(awk '/VmHWM/ {print $2*1024}' "/proc/$pid/status")
    kill "$pid"; wait "$pid" 2>/dev/null || true
    python3 - "$json" "$server" "$series" "$hwm" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); server, series, hwm = sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
st, srv = r["steady"], r.get("server") or {}
def g(d, *keys):
    for k in keys:
        if k in d: return d[k]
    return float("nan")
print(f"| {server} | {series:,} | {g(st,'samples_per_second','SamplesPerSecond'):,.0f} | "
      f"{g(srv,'cpu_seconds_per_million_samples','CPUSecondsPerMillionSamples'):.2f} | "
      f"{g(srv,'creation_us_per_series','CreationMicrosPerSeries'):.1f} | "
      f"{g(srv,'rss_bytes_per_series','RSSBytesPerSeries'):,.0f} | {hwm/series:,.0f} | "
      f"{st['latency'].get('p99_ms', float('nan')):.1f} ms |")
PY
  done
done

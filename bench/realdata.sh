#!/usr/bin/env bash
# Measures the bytes per sample of real exporter data in the bucket: a
# Prometheus scrapes itself and a node exporter every second and
# remote-writes to isobar (-target=all, filesystem bucket) for DURATION;
# then isobar cuts and ships its head, and this script divides the size of
# the shipped blocks by the samples they hold. Needs prometheus and
# prometheus-node-exporter (apt-get install prometheus prometheus-node-exporter).
# Usage: DURATION=480 bench/realdata.sh   (seconds; default 480)
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${DURATION:-480}
work=$(mktemp -d)
go build -o "$work/isobar" ./cmd/isobar
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
ne=$(free_port); ip=$(free_port); ig=$(free_port); pp=$(free_port)
cat >"$work/prom.yml" <<YAML
global: {scrape_interval: 1s}
scrape_configs:
  - {job_name: prometheus, static_configs: [{targets: ['127.0.0.1:$pp']}]}
  - {job_name: node, static_configs: [{targets: ['127.0.0.1:$ne']}]}
remote_write: [{url: 'http://127.0.0.1:$ip/api/v1/push'}]
YAML
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
prometheus-node-exporter --web.listen-address=127.0.0.1:$ne >"$work/ne.log" 2>&1 & pids+=($!)
"$work/isobar" -data.dir="$work/data" -server.http-listen-address=127.0.0.1 -server.http-listen-port=$ip \
  -server.grpc-listen-port=$ig >"$work/isobar.log" 2>&1 & pids+=($!)
for _ in $(seq 1 100); do curl -sf "127.0.0.1:$ip/ready" >/dev/null && break; sleep 0.1; done
prometheus --config.file="$work/prom.yml" --storage.tsdb.path="$work/prom" --web.listen-address=127.0.0.1:$pp \
  >"$work/prom.log" 2>&1 & pids+=($!)
for ((s = 0; s < duration; s += 30)); do
  sleep 30
  n=$(curl -s -G "127.0.0.1:$ip/api/v1/query" --data-urlencode 'query=count({__name__=~".+"})' | python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else 0)')
  echo "$((s + 30))/${duration}s: $n series" >&2
done
curl -sf -XPOST "127.0.0.1:$ip/ingester/flush"
python3 - "$work/data/bucket" <<'PY'
import json, os, sys
root = sys.argv[1]
samples = size = chunks = index = 0
for tenant in os.listdir(root):
    for block in os.listdir(os.path.join(root, tenant)):
        d = os.path.join(root, tenant, block)
        if not os.path.exists(os.path.join(d, "meta.json")):
            continue
        samples += json.load(open(os.path.join(d, "meta.json")))["stats"]["numSamples"]
        for dirpath, _, files in os.walk(d):
            for f in files:
                n = os.path.getsize(os.path.join(dirpath, f))
                size += n
                if "/chunks" in dirpath: chunks += n
                if f == "index": index += n
print(json.dumps({"samples": samples, "bytes": size, "bytes_per_sample": size / samples,
                  "chunk_bytes_per_sample": chunks / samples, "index_bytes_per_sample": index / samples}))
PY

#!/usr/bin/env bash
# Starts a local cluster on 127.0.0.1: 3 ingesters (replication factor 3),
# 1 distributor (push to :9009), 1 querier (:9010) behind a query-frontend
# (query at :9016), 1 store-gateway, 1 compactor and 2 rulers (:9017, :9018), joined by memberlist gossip
# and sharing a filesystem bucket. Data, bucket and logs go under ./data/cluster. Ctrl-C stops it.
# ISOBAR_FLAGS (space-separated) go to every member. TLS=1 secures the
# traffic between members: a CA made here with openssl signs one certificate
# that every member presents, gRPC is mutual TLS (a client without a
# certificate of that CA is refused) and memberlist gossips over TLS with a
# cluster label.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${ISOBAR_BIN:-./isobar}
base=${CLUSTER_DIR:-./data/cluster}
mkdir -p "$base"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null' EXIT INT TERM

if [ "${TLS:-0}" = 1 ]; then
  tls="$base/tls"
  mkdir -p "$tls"
  if [ ! -f "$tls/member.crt" ]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 -subj "/CN=isobar local CA" \
      -keyout "$tls/ca.key" -out "$tls/ca.crt" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=isobar member" \
      -keyout "$tls/member.key" -out "$tls/member.csr" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n' >"$tls/ext.cnf"
    openssl x509 -req -in "$tls/member.csr" -CA "$tls/ca.crt" -CAkey "$tls/ca.key" -CAcreateserial -days 365 \
      -extfile "$tls/ext.cnf" -out "$tls/member.crt" 2>/dev/null
  fi
  ISOBAR_FLAGS="${ISOBAR_FLAGS:-} -internal-grpc.tls-cert-file=$tls/member.crt -internal-grpc.tls-key-file=$tls/member.key \
-internal-grpc.tls-ca-file=$tls/ca.crt -memberlist.tls-enabled=true -memberlist.tls-cert-path=$tls/member.crt \
-memberlist.tls-key-path=$tls/member.key -memberlist.tls-ca-path=$tls/ca.crt -memberlist.cluster-label=isobar-local"
  echo "TLS between members: certificates in $tls"
fi

start() { # name http-port grpc-port memberlist-port target [flags...]
  local name=$1 http=$2 grpc=$3 ml=$4 target=$5; shift 5
  "$bin" -target="$target" -data.dir="$base/$name" \
    -server.http-listen-address=127.0.0.1 -server.http-listen-port="$http" -server.grpc-listen-port="$grpc" \
    -ring.store=memberlist -ring.instance-id="$name" -ring.instance-addr=127.0.0.1 \
    -memberlist.bind-addr=127.0.0.1 -memberlist.bind-port="$ml" -memberlist.join=127.0.0.1:7946 \
    -bucket.filesystem.dir="$base/bucket" ${ISOBAR_FLAGS:-} "$@" >"$base/$name.log" 2>&1 &
  pids+=($!)
  echo "$name: http://127.0.0.1:$http (pid $!, log $base/$name.log)"
}

start ingester-1 9011 9095 7946 ingester
start ingester-2 9012 9096 7947 ingester
start ingester-3 9013 9097 7948 ingester
start distributor 9009 9098 7949 distributor
start querier 9010 9099 7950 querier
start store-gateway 9014 9100 7951 store-gateway
start compactor 9015 9101 7952 compactor
start query-frontend 9016 9102 7953 query-frontend -query-frontend.downstream-url=http://127.0.0.1:9010
start ruler-1 9017 9103 7954 ruler -ruler.query-frontend.address=127.0.0.1:9016
start ruler-2 9018 9104 7955 ruler -ruler.query-frontend.address=127.0.0.1:9016
echo "push: http://127.0.0.1:9009/api/v1/push   query: http://127.0.0.1:9016/prometheus (frontend; the querier itself: :9010)"
echo "rings: http://127.0.0.1:9010/ring (ingesters)   http://127.0.0.1:9010/store-gateway/ring   http://127.0.0.1:9017/ruler/ring"
echo "rules: http://127.0.0.1:9017/prometheus/config/v1/rules (either ruler)"
wait

#!/usr/bin/env bash
# Installs the real peers the tests run against:
# - Debian's Prometheus: remote-write sender and reference for query results;
# - memcached: the store-gateway's shared chunk cache in the cache tests;
# - Debian's Alertmanager: receives the ruler's alerts in the ruler's
#   end-to-end tests; promtool (with prometheus) checks the rule pack;
# - versitygw, an S3 server, through the Go module proxy: it holds the
#   bucket of the S3 client tests and of the long-term storage end-to-end
#   tests. It lands in $(go env GOPATH)/bin.
set -euo pipefail

VERSITYGW_VERSION=v1.8.0
gobin="$(go env GOPATH)/bin"

need=()
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
command -v memcached >/dev/null 2>&1 || need+=(memcached)
command -v prometheus-alertmanager >/dev/null 2>&1 || need+=(prometheus-alertmanager)

if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "need root or sudo to install: ${need[*]}" >&2; exit 1; }
    sudo="sudo"
  fi
  echo "installing: ${need[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
prometheus --version 2>&1 | sed -n 1p  # sed reads it all: no SIGPIPE under pipefail
memcached -V
prometheus-alertmanager --version 2>&1 | sed -n 1p

if [ ! -x "$gobin/versitygw" ]; then
  echo "installing versitygw $VERSITYGW_VERSION (a few minutes on a cold module cache)"
  go install "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION"
fi
"$gobin/versitygw" --version 2>&1 | sed -n 1p  # sed reads it all: no SIGPIPE under pipefail

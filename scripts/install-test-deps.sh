#!/usr/bin/env bash
# Installs the real peers the end-to-end tests run against: Debian's
# Prometheus (remote-write sender and reference for query results).
set -euo pipefail

need=()
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)

if [ ${#need[@]} -eq 0 ]; then
  echo "test dependencies present: $(prometheus --version 2>&1 | head -1)"
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "need root or sudo to install: ${need[*]}" >&2; exit 1; }
  sudo="sudo"
fi
echo "installing: ${need[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
prometheus --version 2>&1 | head -1

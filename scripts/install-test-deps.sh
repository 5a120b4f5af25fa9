#!/usr/bin/env bash
# Installs the real peers the tests run against:
# - Debian's Prometheus: remote-write sender and reference for query results;
# - memcached: the store-gateway's shared chunk cache in the cache tests;
# - Debian's Alertmanager: receives the ruler's alerts in the ruler's
#   end-to-end tests; promtool (with prometheus) checks the rule pack;
# - versitygw, an S3 server, through the Go module proxy: it holds the
#   bucket of the S3 client tests and of the long-term storage end-to-end
#   tests. It lands in $(go env GOPATH)/bin.
# - Prometheus 3, built from the prometheus module (Debian's is 2.42, which
#   has no remote write 2.0): the 2.0 sender and reference receiver of the
#   end-to-end tests, as $(go env GOPATH)/bin/prometheus3. v0.309.1 is the
#   newest whose server the module proxy lets us build (shared notes).
# - OpenStack Keystone, Debian's python3-keystone: the identity service of
#   the -auth.type=keystone end-to-end test, which sets it up on SQLite.
# - Ory Hydra, an OpenID Connect provider, built from its module with SQLite
#   (its in-memory store): it issues the JWTs of the -auth.type=oidc
#   end-to-end test, as $(go env GOPATH)/bin/hydra.
set -euo pipefail

VERSITYGW_VERSION=v1.8.0
PROMETHEUS3_VERSION=v0.309.1 # = Prometheus 3.9.1
PROMETHEUS3_RELEASE=3.9.1
HYDRA_VERSION=v2.3.0
# Hydra's own go.mod replaces pop with Ory's fork; a module that requires
# Hydra must say so itself.
HYDRA_POP=github.com/ory/pop/v6@v6.2.1-0.20241121111754-e5dfc0f3344b
gobin="$(go env GOPATH)/bin"

need=()
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
command -v memcached >/dev/null 2>&1 || need+=(memcached)
command -v prometheus-alertmanager >/dev/null 2>&1 || need+=(prometheus-alertmanager)
command -v keystone-wsgi-public >/dev/null 2>&1 || need+=(python3-keystone)

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
keystone-manage --version 2>&1 | sed -n 1p | sed 's/^/keystone /'

if [ ! -x "$gobin/versitygw" ]; then
  echo "installing versitygw $VERSITYGW_VERSION (a few minutes on a cold module cache)"
  go install "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION"
fi
"$gobin/versitygw" --version 2>&1 | sed -n 1p  # sed reads it all: no SIGPIPE under pipefail

if ! "$gobin/prometheus3" --version 2>/dev/null | sed -n 1p | grep -q "version $PROMETHEUS3_RELEASE "; then
  echo "building Prometheus 3 from github.com/prometheus/prometheus@$PROMETHEUS3_VERSION (a few minutes on a cold module cache)"
  wrapper=$(mktemp -d)
  trap 'rm -rf "${wrapper:-}" "${hydra_wrapper:-}"' EXIT
  printf 'module isobar.test/prometheus3\n\ngo %s\n' "$(go env GOVERSION | sed 's/^go//')" >"$wrapper/go.mod"
  (cd "$wrapper" && go get "github.com/prometheus/prometheus/cmd/prometheus@$PROMETHEUS3_VERSION" \
    && go build -ldflags "-X github.com/prometheus/common/version.Version=$PROMETHEUS3_RELEASE" \
      -o "$gobin/prometheus3" github.com/prometheus/prometheus/cmd/prometheus)
fi
"$gobin/prometheus3" --version 2>&1 | sed -n 1p

if ! "$gobin/hydra" version 2>/dev/null | sed -n 1p | grep -q "isobar-test-$HYDRA_VERSION"; then
  echo "building Ory Hydra $HYDRA_VERSION with SQLite (about two minutes on a cold module cache)"
  hydra_wrapper=$(mktemp -d)
  trap 'rm -rf "${wrapper:-}" "${hydra_wrapper:-}"' EXIT
  printf 'module isobar.test/hydra\n\ngo %s\n' "$(go env GOVERSION | sed 's/^go//')" >"$hydra_wrapper/go.mod"
  (cd "$hydra_wrapper" && go mod edit -replace "github.com/gobuffalo/pop/v6=$HYDRA_POP" \
    && { go get "github.com/ory/hydra/v2@$HYDRA_VERSION" >"$hydra_wrapper/get.log" 2>&1 || { cat "$hydra_wrapper/get.log" >&2; false; }; } \
    && go build -tags sqlite,sqlite_omit_load_extension \
      -ldflags "-X github.com/ory/hydra/v2/driver/config.Version=isobar-test-$HYDRA_VERSION" \
      -o "$gobin/hydra" github.com/ory/hydra/v2)
fi
"$gobin/hydra" version 2>&1 | sed -n 1p

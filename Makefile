# Isobar. `make run` starts the single binary; `make test` installs what the
# tests need and runs them all.
GO       ?= go
BIN      := isobar
FUZZTIME ?= 100000x
# The S3 server of the tests; scripts/install-test-deps.sh installs it there.
VERSITYGW ?= $(shell $(GO) env GOPATH)/bin/versitygw
# Prometheus 3, built from the prometheus module by the same script.
PROMETHEUS3 ?= $(shell $(GO) env GOPATH)/bin/prometheus3
HYDRA ?= $(shell $(GO) env GOPATH)/bin/hydra

.PHONY: all build run run-cluster test test-deps rules unit race e2e fuzz bench bench-go vet clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/isobar

# Embedded defaults: tenant "anonymous", data under ./data, HTTP on :9009.
run: build
	./$(BIN)

# A local cluster: 3 ingesters, a distributor (:9009), a querier (:9010)
# behind a query-frontend (:9016), a store-gateway and a compactor.
run-cluster: build
	bash scripts/run-cluster.sh

test: test-deps vet rules unit race fuzz e2e

test-deps:
	bash scripts/install-test-deps.sh

# -stdmethods=false: Prometheus' sample iterators, which we implement, have
# a Seek(int64) that is not io.Seeker's.
vet:
	$(GO) vet -stdmethods=false ./...
	$(GO) vet -stdmethods=false -tags e2e ./cmd/isobar/e2e/

# The private-cloud rule pack: promtool check rules and test rules.
rules:
	bash deployments/rules/check.sh

unit:
	ISOBAR_REQUIRE_MEMCACHED=1 ISOBAR_VERSITYGW=$(VERSITYGW) $(GO) test -count=1 ./...

# Every package but the end-to-end tests, under the race detector; -short
# leaves out the slowest (the PromQL suite over the ring), which unit runs.
race:
	ISOBAR_REQUIRE_MEMCACHED=1 ISOBAR_VERSITYGW=$(VERSITYGW) $(GO) test -count=1 -race -short ./tsdb/... ./ingest/... ./pkg/... ./querier/... ./cmd/isobar/app/

# Short runs of every fuzz target, bounded by executions (a time bound can end
# in a spurious "context deadline exceeded" on a busy machine); longer runs:
# make fuzz FUZZTIME=10m.
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzUnmarshal$$' -fuzztime $(FUZZTIME) ./pkg/rwproto
	$(GO) test -run '^$$' -fuzz '^FuzzUnmarshalV2$$' -fuzztime $(FUZZTIME) ./pkg/rwproto
	$(GO) test -run '^$$' -fuzz '^FuzzValidate$$' -fuzztime $(FUZZTIME) ./pkg/tenant
	$(GO) test -run '^$$' -fuzz '^FuzzHandler$$' -fuzztime $(FUZZTIME) ./ingest/remotewrite
	$(GO) test -run '^$$' -fuzz '^FuzzOTLP$$' -fuzztime $(FUZZTIME) ./ingest/remotewrite
	$(GO) test -run '^$$' -fuzz '^FuzzLegacyNames$$' -fuzztime $(FUZZTIME) ./pkg/validation
	$(GO) test -run '^$$' -fuzz '^FuzzDecoders$$' -fuzztime $(FUZZTIME) ./pkg/rpc
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeFrame$$' -fuzztime $(FUZZTIME) ./pkg/rpc
	$(GO) test -run '^$$' -fuzz '^FuzzUnmarshalSeries$$' -fuzztime $(FUZZTIME) ./pkg/promapi
	$(GO) test -run '^$$' -fuzz '^FuzzGate$$' -fuzztime $(FUZZTIME) ./pkg/auth
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeMatrix$$' -fuzztime $(FUZZTIME) ./querier/frontend

# End-to-end tests: real isobar processes, a real Prometheus, a real S3 server.
e2e: build
	ISOBAR_BIN=$(CURDIR)/$(BIN) ISOBAR_VERSITYGW=$(VERSITYGW) ISOBAR_PROMETHEUS3=$(PROMETHEUS3) ISOBAR_HYDRA=$(HYDRA) $(GO) test -count=1 -timeout 20m -tags e2e ./cmd/isobar/e2e/

# Go micro-benchmarks of the hot paths.
bench-go:
	$(GO) test -run '^$$' -bench . -benchmem ./pkg/rwproto ./pkg/validation ./tsdb/ingester ./querier/api ./cmd/isobar/app

# Load test against a running isobar (make run in another terminal).
bench:
	$(GO) run ./bench/cmd/loadgen -url http://127.0.0.1:9009/api/v1/push -series 100000 -duration 60s

clean:
	rm -f $(BIN)

# shoal — `make help` lists the targets.
GO      ?= go
BIN     := bin/shoal
PKGS    := ./...
# One static binary: no cgo anywhere in what we ship.
export CGO_ENABLED := 0

.DEFAULT_GOAL := help
.PHONY: help deps build run test test-unit test-race test-integration bench lint clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-18s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

deps: ## install what the build and tests need (Debian packages when root, Go modules)
	@scripts/install-deps.sh
	$(GO) mod download

build: ## build the static binary bin/shoal
	$(GO) build -trimpath -ldflags "-s -w" -o $(BIN) ./cmd/shoal

run: build ## run one server node on embedded defaults (data in ./shoal-data, API on 127.0.0.1:7480)
	$(BIN) server

test: deps lint test-unit test-race test-integration ## install deps, then run every test
	@echo "make test: all suites passed"

test-unit: ## unit and in-process cluster tests
	$(GO) test -count=1 -timeout 15m $(PKGS)

test-race: ## the race detector on the packages with concurrency (needs cgo for -race)
	CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 15m ./cluster/... ./node/... ./transfer/... ./bootsvc/... ./nbd/...

test-integration: build ## real bin/shoal processes on loopback, one package at a time
	SHOAL_BIN=$(CURDIR)/$(BIN) $(GO) test -tags integration -p 1 -count=1 -timeout 30m ./integration/...

bench: build ## benchmarks with real processes; prints figures and ratios
	SHOAL_BIN=$(CURDIR)/$(BIN) $(GO) test -tags integration -p 1 -run '^$$' -bench . -benchtime 1x -timeout 40m ./integration/...

lint: ## gofmt and go vet
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) vet -tags integration ./integration/...

clean: ## remove build output
	rm -rf bin

.PHONY: demo
demo: deps build ## a throwaway lab in network namespaces: 3 nodes, 2 QEMU machines boot diskless from them (root)
	SHOAL_BIN=$(CURDIR)/$(BIN) scripts/demo.sh

.PHONY: bench-fleet
bench-fleet: build ## fleet benchmark in network namespaces (root): shoal vs central HTTP vs bound, N=5,10,20 (FLEET_NS="5", FLEET_BASELINE=0 for quick runs)
	SHOAL_BIN=$(CURDIR)/$(BIN) bench/fleet.sh

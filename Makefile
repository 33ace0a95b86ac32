# Loom's build. `make help` lists the targets.

GO        ?= go
BIN       := bin
GOBIN_DIR := $(shell $(GO) env GOPATH)/bin
SLURM_CMDS := sbatch squeue scancel sinfo sacct scontrol srun salloc
STATICCHECK_VERSION := v0.8.2
# VERSION is what `loom version` prints: the nearest tag and commit, or dev
# outside a git checkout.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
# BENCH_PKGS are the packages with go test benchmarks (func Benchmark...).
BENCH_PKGS = $(sort $(dir $(shell git ls-files '*_test.go' | xargs grep -l '^func Benchmark' 2>/dev/null)))
PROTOC_GEN_GO_VERSION := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2

# go-nvml's cgo wrappers call NVML functions newer headers mark deprecated;
# gcc's screens of warnings about them on a first build tell a user nothing.
export CGO_CFLAGS ?= -O2 -g -Wno-deprecated-declarations

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

.PHONY: build
build: ## build bin/loom (the client), bin/loomd (daemons and tools), the Slurm command links (bin/sbatch, ...) and bin/mnist
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN)/loom ./cmd/loom
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN)/loomd ./cmd/loomd
	$(GO) build -o $(BIN)/mnist ./examples/mnist
	@for c in $(SLURM_CMDS); do ln -sf loom $(BIN)/$$c; done

.PHONY: run
run: build ## start the dev cluster, run the 8-rank hello gang, then train MNIST on 2 nodes x 2 ranks
	@# Every dev cluster numbers jobs from 1: drop the last run's checkpoints
	@# so this one starts from step 0 instead of resuming a finished job.
	rm -rf .loom/job-*
	$(BIN)/loom dev --agents 2 --profile dgx-h100 --run examples/hello/hello.sbatch --run examples/mnist/train.sbatch

.PHONY: hello
hello: build ## start the dev cluster and run the hello job (prints each rank's environment)
	$(BIN)/loom dev --agents 2 --profile dgx-h100 --run examples/hello/hello.sbatch

.PHONY: test
test: ## unit and integration tests (go test ./...)
	$(GO) test -count=1 ./...

.PHONY: test-race
test-race: ## the tests under the race detector
	$(GO) test -count=1 -race ./...

# FUZZTIME is how long make fuzz runs each fuzz target; FUZZ_MINIMIZE
# bounds the minimisation of each new input (Go's default, 60 s, would take
# a short run's whole time).
FUZZTIME ?= 10s
FUZZ_MINIMIZE ?= 2s
# FUZZ_TARGETS are the fuzz targets, as package-directory:FuzzName.
FUZZ_TARGETS = $(shell git grep -o '^func Fuzz[A-Za-z0-9_]*' -- '*_test.go' | sed 's|^\(.*\)/[^/]*_test.go:func |\1:|')

.PHONY: fuzz
fuzz: ## run every go test fuzz target for FUZZTIME each (default 10s)
	@# Go 1.26's coordinator can end a run that found nothing with "context
	@# deadline exceeded" (go.dev/issue/75804, fixed in Go 1.27): only a run
	@# that wrote a failing input, or failed otherwise, fails this target.
	@set -e; log=$$(mktemp); trap 'rm -f $$log' EXIT; \
	for t in $(FUZZ_TARGETS); do \
		echo "== $${t#*:} (./$${t%%:*}, $(FUZZTIME))"; \
		if $(GO) test -run '^$$' -fuzz "^$${t#*:}$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZ_MINIMIZE) ./$${t%%:*} >$$log 2>&1; then \
			tail -n 1 $$log; continue; fi; \
		cat $$log; \
		if grep -q 'Failing input written' $$log || ! grep -qx '    context deadline exceeded' $$log; then exit 1; fi; \
		echo "(no failing input: Go's fuzz deadline race, go.dev/issue/75804)"; \
	done

.PHONY: test-rdma
test-rdma: ## build netcoll with its RDMA verbs transport (cgo, libibverbs-dev) and run its tests that need no device
	$(GO) test -count=1 -tags rdma -run 'RDMA' ./netcoll/...

.PHONY: e2e
e2e: build ## end-to-end tests that start real loom processes
	$(GO) test -count=1 -p 1 -tags e2e -timeout 25m ./test/...

.PHONY: bench
bench: ## the go test benchmarks of every package that has some (loom bench ... runs the others)
	$(GO) test -run '^$$' -bench . -benchtime 3x $(addprefix ./,$(BENCH_PKGS))

.PHONY: lint
lint: ## gofmt, go vet and staticcheck
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@command -v staticcheck >/dev/null 2>&1 || test -x $(GOBIN_DIR)/staticcheck || $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	PATH=$(GOBIN_DIR):$$PATH staticcheck ./...

.PHONY: test-rules
test-rules: ## check the Prometheus alert rules in deploy/prometheus and run their promtool unit tests
	@command -v promtool >/dev/null 2>&1 || { echo "promtool not found (apt-get install prometheus)"; exit 1; }
	promtool check rules deploy/prometheus/rules.yml
	cd deploy/prometheus && promtool test rules rules_test.yml

.PHONY: proto
proto: ## regenerate api/loom.pb.go, api/apirpc (gRPC services) and api/apiclient (the CLI's stubs) from the .proto files
	@command -v protoc >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq protobuf-compiler)
	@test -x $(GOBIN_DIR)/protoc-gen-go || $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	@test -x $(GOBIN_DIR)/protoc-gen-go-grpc || $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
	$(GO) build -o $(BIN)/protoc-gen-loomclient ./internal/protoc-gen-loomclient
	PATH=$(GOBIN_DIR):$$PATH protoc -I. --go_out=. --go_opt=paths=source_relative api/loom.proto
	PATH=$(GOBIN_DIR):$$PATH protoc -I. --go_out=. --go_opt=paths=source_relative \
		--go-grpc_out=. --go-grpc_opt=paths=source_relative \
		--plugin=protoc-gen-loomclient=$(BIN)/protoc-gen-loomclient --loomclient_out=. \
		api/apirpc/service.proto

.PHONY: check
check: lint test-rules test ## everything CI runs

.PHONY: clean
clean: ## remove build outputs
	rm -rf $(BIN)

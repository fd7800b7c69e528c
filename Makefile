# Quarry: one entry point. `make run` and `make test` work on a fresh machine.
SHELL := /bin/bash
.DEFAULT_GOAL := help

CARGO ?= cargo
TOOLS := hack/tools.sh
REGISTRY_ADDR ?= 127.0.0.1:5000
REGISTRY_DATA ?= ./quarry-data
VERSION ?= 0.1.0
SOAK_SECONDS ?= 180

.PHONY: help build run run-registry image static test-static lint-files kind-e2e e2e test test-unit test-e2e tools tools-test tools-k8s tools-kind tools-bench bench fuzz soak fmt lint crds

help: ## List targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

build: ## Build all crates (debug)
	$(CARGO) build --workspace --locked

run: tools-k8s ## The whole product locally: control plane, operator, example QuarryRegistry, registry on 127.0.0.1:5000
	$(CARGO) build --locked -p quarry-registry -p quarry-operator -p quarry-local
	eval "$$($(TOOLS) env)" && QUARRY_LISTEN=$(REGISTRY_ADDR) QUARRY_DATA=$(REGISTRY_DATA) ./target/debug/quarry-local

run-registry: ## Only the registry, on 127.0.0.1:5000 with data in ./quarry-data
	$(CARGO) build --locked -p quarry-registry --release
	./target/release/quarry-registry --listen $(REGISTRY_ADDR) --storage-path $(REGISTRY_DATA)

tools: ## Build every third-party test and benchmark tool (cached outside the repo)
	$(TOOLS) install all

tools-test: ## Build the tools `make test` needs
	$(TOOLS) install test

tools-k8s: ## Build the local control plane (etcd, kube-apiserver, controller manager, scheduler, kubectl, kwok)
	$(TOOLS) install k8s

crds: ## Regenerate crds/ (and its copies in deploy/ and the chart) from the Rust types
	$(CARGO) run --locked -q -p quarry-operator --bin crdgen > crds/quarryregistries.quarry.dev.yaml
	cp crds/quarryregistries.quarry.dev.yaml deploy/crd/quarryregistries.quarry.dev.yaml
	cp crds/quarryregistries.quarry.dev.yaml charts/quarry-operator/crds/quarryregistries.quarry.dev.yaml
	cp crds/quarryregistries.quarry.dev.yaml deploy/olm/manifests/quarryregistries.quarry.dev.yaml

tools-kind: ## Build what real pods need: kind, the node image's parts, Debian's docker.io
	$(TOOLS) install kind

tools-bench: ## Build the tools `make bench` needs
	$(TOOLS) install bench

test: tools-test tools-k8s tools-kind lint lint-files test-static ## Everything CI proves: lint, unit and e2e tests, real pods in kind, with a one-line total
	@mkdir -p target
	@set -o pipefail; $(MAKE) --no-print-directory test-unit test-e2e kind-e2e 2>&1 | tee target/test-output.log; \
	status=$$?; \
	awk '/^test result:/ {p += $$4; f += $$6} /^kind-e2e: .*passed$$/ {k = "passed"} /^kind-e2e: FAILED/ {k = "FAILED"} \
	  END {printf "tests: %d passed, %d failed; kind-e2e: %s\n", p, f, (k == "" ? "not run" : k)}' target/test-output.log; \
	exit $$status

test-unit: ## Unit and handler tests, CRD freshness
	$(CARGO) test --workspace --locked --lib --bins
	$(CARGO) test --locked -p quarry-operator --tests

test-e2e: tools-test tools-k8s ## Black-box tests: the real binaries, real clients, a real control plane
	$(CARGO) build --locked -p quarry-registry -p quarry-operator
	eval "$$($(TOOLS) env)" && $(CARGO) test --locked -p quarry-e2e -- --test-threads=2

bench: tools-bench tools-k8s ## Registry vs CNCF distribution (transfers, S3, garbage collection), and operator convergence (report in docs/benchmarks.md)
	$(CARGO) build --locked -p quarry-registry -p quarry-operator --release
	$(CARGO) build --locked -p quarry-e2e --bin quarry-operator-bench --bin quarry-gc-bench && $(CARGO) build --locked -p quarry-e2e --release --bin quarry-load-bench --bin quarry-delay-relay
	eval "$$($(TOOLS) env)" && hack/bench.sh && hack/bench-s3.sh && hack/bench-gc.sh && hack/bench-load.sh && hack/bench-proxy.sh && hack/bench-ui.sh

fuzz: ## Fuzz every parser of untrusted input for FUZZ_SECONDS each (60; cargo-fuzz, nightly); make test replays fuzz/corpus and fuzz/regressions
	$(TOOLS) install fuzz
	eval "$$($(TOOLS) env)" && hack/fuzz.sh

soak: tools-test ## Soak with faults for SOAK_SECONDS per backend (180): mixed load and GC while registries are killed -9 and MinIO restarted; make test runs 30 s
	$(CARGO) build --locked -p quarry-registry -p quarry-operator
	eval "$$($(TOOLS) env)" && QUARRY_SOAK_SECONDS=$(SOAK_SECONDS) $(CARGO) test --locked -p quarry-e2e --test soak -- --nocapture --test-threads=1

image: $(if $(BUILD_IN_CONTAINER),,static) ## The registry and operator images, FROM scratch with the static binaries (podman or docker; nothing pulled)
	hack/images.sh $(VERSION)

static: ## The static binaries the images ship (target/static/)
	RUSTFLAGS="-C target-feature=+crt-static" $(CARGO) build --locked --release --target x86_64-unknown-linux-gnu --target-dir target/static -p quarry-registry -p quarry-operator

test-static: static ## Prove the image binaries are static and run
	@for b in quarry-registry quarry-operator; do \
	  f=target/static/x86_64-unknown-linux-gnu/release/$$b; \
	  if ! ldd $$f 2>&1 | grep -qE 'statically linked|not a dynamic executable'; then echo "$$b is dynamically linked"; exit 1; fi; \
	  $$f --version || exit 1; \
	done; echo "static binaries: ok"

lint-files: tools-test ## hadolint the Containerfile, shellcheck the scripts
	eval "$$($(TOOLS) env)" && $$QUARRY_TOOL_HADOLINT Containerfile deploy/olm/bundle.Containerfile && $$QUARRY_TOOL_SHELLCHECK hack/*.sh hack/runc-bounded .ci/run

kind-e2e: tools-test tools-k8s tools-kind static ## Real pods: kind on this machine (node image built here), images, Helm, the user's path end to end (hack/kind-e2e.sh)
	eval "$$($(TOOLS) env)" && hack/kind-e2e.sh

e2e: tools-test tools-k8s ## The kind-e2e scenario against the local control plane (the registry process stands in for the pod)
	$(CARGO) build --locked -p quarry-registry -p quarry-operator
	eval "$$($(TOOLS) env)" && $(CARGO) test --locked -p quarry-e2e --test install -- scenario

fmt: ## Format the code
	$(CARGO) fmt --all

lint: ## rustfmt check, clippy with warnings as errors, cargo deny (licenses, duplicate majors, sources)
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
	$(TOOLS) install cargo-deny >/dev/null
	$$($(TOOLS) path cargo-deny) --locked check licenses bans sources

# Everyday targets. `make demo` and `make test` are the two commands the README promises.
.PHONY: all build test lint fmt crd demo demo-down cluster cluster-down control-plane emulator bench clean

CLUSTER_DIR ?= $(CURDIR)/target/cluster

all: build

build:
	cargo build --locked --workspace --bins

## test: every tier (unit, client, reconciler, end-to-end against a real control plane)
test:
	tools/run-tests.sh

## lint: formatting and clippy, as CI runs them
lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

fmt:
	cargo fmt --all

## crd: regenerate the committed CRDs (one file per kind) from the Rust types, and the Helm chart's copies
# The names `aep-streaming-operator crd` takes; tests/crd.rs fails on a kind whose file is missing or stale, and
# tools/test-install.sh on a chart copy that is not byte-identical (Helm reads CRDs only from the chart's crds/).
CRD_KINDS := streamingconnection streamingdataflow
CHART_CRDS := charts/aep-streaming-operator/crds
crd:
	for kind in $(CRD_KINDS); do \
	  cargo run --quiet --locked -p aep-streaming-operator -- crd $$kind > crds/$$kind.yaml || exit 1; \
	  cp crds/$$kind.yaml $(CHART_CRDS)/$$kind.yaml || exit 1; \
	done

## demo: control plane + emulator + operator + examples, left running (stop with `make demo-down`)
demo:
	tools/demo.sh up

demo-down:
	tools/demo.sh down

## cluster: start a local control plane in the background; cluster-down stops it
cluster:
	tools/cluster.sh up $(CLUSTER_DIR)

cluster-down:
	tools/cluster.sh down $(CLUSTER_DIR)

## control-plane: build (or find) kube-apiserver, kube-controller-manager, etcd and kubectl
control-plane:
	tools/build-control-plane.sh

## bench: N = 200, 1000 and 3000 StreamingConnections (BENCH_SIZES), each on a fresh control plane; prints time
## to all Ready with its ratios to the Flow lower bound and the API-server baseline, calls and writes per object,
## steady state, a restart, CPU and peak RSS (JSON in target/bench/; docs/benchmark.md lists every BENCH_* knob)
bench:
	tools/bench.sh

## emulator: run aep-emulator in the foreground on 127.0.0.1:8080
emulator:
	cargo run --locked -p aep-emulator --bin aep-emulator

clean:
	cargo clean

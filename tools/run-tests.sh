#!/usr/bin/env bash
# Every test tier: unit, client (emulator in-process), reconciler (mocked API server), then end to end
# against a real kube-apiserver + etcd + kube-controller-manager. Used by `make test` and `.ci/run`.
#
# With AEP_E2E_KUBECONFIG set, the end-to-end tests use that cluster; otherwise a fresh one is started
# in target/cluster-test and always stopped afterwards, whether the tests pass or fail.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

echo "== tiers 1-3: unit, client and reconciler tests"
cargo test --locked --workspace --all-targets

echo "== the Argo CD health check (Lua) against its test cases"
deploy/gitops/test-health.sh

echo "== the OCI image: built twice from the release binary, its layers, user, entrypoint and labels, run from its root file system"
tools/test-image.sh

echo "== tier 4: end-to-end and reliability tests against a real control plane"
# Each scenario keeps its operator logs, kubeconfig and emulator state here for a post-mortem.
rm -rf target/e2e-logs
cargo build --locked --workspace --bins
if [[ -z ${AEP_E2E_KUBECONFIG:-} ]]; then
  cluster_dir=$PWD/target/cluster-test
  trap 'tools/cluster.sh down "$cluster_dir" || true' EXIT
  tools/cluster.sh up "$cluster_dir"
  export AEP_E2E_KUBECONFIG=$cluster_dir/kubeconfig AEP_E2E_CLUSTER_DIR=$cluster_dir
  # shellcheck disable=SC1091
  source "$cluster_dir/env"
  AEP_E2E_KUBECTL=$(command -v kubectl)
  export AEP_E2E_KUBECTL
fi
# The end-to-end and reliability tests share one cluster and some watch all namespaces, so they
# run one at a time.
cargo test --locked --test e2e --test e2e_dataflow --test reliability -- --ignored --test-threads=1

echo "== monitoring: promtool on the alert rules and the live /metrics, the dashboard's metrics, the example apps"
tools/test-monitoring.sh

echo "== install: the Helm chart (lint, dry run, install, upgrade, uninstall) and the kustomize bases"
tools/test-install.sh

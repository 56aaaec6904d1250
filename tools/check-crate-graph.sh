#!/usr/bin/env bash
# The crate graph's forbidden arrows (ARCHITECTURE.md), checked on the resolved dependency tree:
# - the Flow Service client (aep-flow) pulls in no Kubernetes crate and not the emulator;
# - the emulator (aep-emulator) pulls in neither the client nor a Kubernetes crate;
# - the operator binary's normal dependencies contain neither the emulator, the test kit, nor a crate
#   that only the emulator uses.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

failed=0

# deps_of PACKAGE: the names of the crates PACKAGE depends on (normal edges only, no dev/build deps).
deps_of() {
  cargo tree --locked --offline -p "$1" -e normal --prefix none --format '{p}' | awk '{print $1}' | sort -u
}

# forbid PACKAGE CRATE...: fails when any CRATE is in PACKAGE's normal dependency tree.
forbid() {
  local package=$1
  shift
  local deps
  deps=$(deps_of "$package")
  for crate in "$@"; do
    if grep -qx -- "$crate" <<<"$deps"; then
      echo "crate graph: $package must not depend on $crate" >&2
      cargo tree --locked --offline -p "$package" -e normal -i "$crate" >&2 || true
      failed=1
    fi
  done
}

forbid aep-flow kube kube-client kube-runtime k8s-openapi aep-emulator aep-testkit
forbid aep-emulator aep-flow kube kube-client kube-runtime k8s-openapi aep-testkit
# sha2 and hex hash and encode the emulator's ids and etags; the operator never needs them.
forbid aep-streaming-operator aep-emulator aep-testkit sha2 hex

if [[ $failed -ne 0 ]]; then
  exit 1
fi
echo "crate graph: no forbidden dependency"

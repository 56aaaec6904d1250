#!/usr/bin/env bash
# Builds (once per machine) or finds helm v3 and prints the path of the binary as the LAST line of stdout:
#   HELM=$(tools/helm.sh | tail -1)
# Progress and go output go to stderr.
#
# helm is compiled from the Go module proxy (`go install helm.sh/helm/v3/cmd/helm@VERSION`), the only download
# site this project relies on, into a cache folder OUTSIDE the repository, like the control plane:
#   ${XDG_CACHE_HOME:-$HOME/.cache}/aep-streaming-operator/tools/helm-<version>/bin/helm
# About 2-4 minutes on 2 cores with a cold Go cache; 0.1 s when present.
#
# Environment:
#   AEP_HELM   use this helm binary as it is (nothing is built); it must be helm v3.
set -euo pipefail

# The newest Helm 3 release when this was written (Helm 4 changed the CLI and the chart API; the chart here is
# apiVersion v2, which Helm 3 and 4 both install). Bump it in a commit of its own.
helm_version=v3.22.0

log() { printf '[helm.sh] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

if [[ -n ${AEP_HELM:-} ]]; then
  [[ -x $AEP_HELM ]] || die "AEP_HELM=$AEP_HELM is not an executable file"
  [[ $("$AEP_HELM" version --short 2>/dev/null) == v3.* ]] || die "AEP_HELM=$AEP_HELM is not helm v3"
  echo "$AEP_HELM"
  exit 0
fi

tools_cache=${XDG_CACHE_HOME:-$HOME/.cache}/aep-streaming-operator/tools
helm_dir=$tools_cache/helm-$helm_version
helm_bin=$helm_dir/bin/helm

# Present only if it reports the pinned version, so a broken or half-copied file is rebuilt.
is_current() { [[ -x $helm_bin && $("$helm_bin" version --short 2>/dev/null) == "$helm_version"* ]]; }

if ! is_current; then
  command -v go >/dev/null || die "go is not on PATH (needed once, to build helm $helm_version)"
  mkdir -p "$tools_cache"
  # Two `make test` runs at once build it once: the second waits, then finds it.
  exec 9>"$helm_dir.lock"
  flock 9
  if ! is_current; then
    export GOWORK=off CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -buildvcs=false"
    # helm's own Makefile stamps the version and the Kubernetes version that `helm template` and `helm lint`
    # assume without a cluster (otherwise v1.20). The latter is the minor of the client-go that helm is built
    # with, read from helm's go.mod as its Makefile does.
    helm_gomod=$(go mod download -json "helm.sh/helm/v3@$helm_version" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
    [[ -f $helm_gomod ]] || die "go mod download of helm.sh/helm/v3@$helm_version gave no go.mod"
    client_go=$(sed -n 's#^[[:space:]]*k8s\.io/client-go[[:space:]]\+v0\.\([0-9]\+\)\..*#\1#p' "$helm_gomod" | head -n1)
    [[ $client_go =~ ^[0-9]+$ ]] || die "cannot read the k8s.io/client-go version from $helm_gomod"
    ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$helm_version"
    for package in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
      ldflags+=" -X $package.k8sVersionMajor=1 -X $package.k8sVersionMinor=$client_go"
    done
    partial=$helm_dir.partial-$$
    rm -rf "$partial"
    # shellcheck disable=SC2064 # expand now: the trap must remove this very folder
    trap "rm -rf '$partial'" EXIT
    log "building helm $helm_version into $helm_dir (once per machine; 2-4 minutes with a cold Go cache)"
    GOBIN=$partial/bin go install -trimpath -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$helm_version" >&2 \
      || die "go install helm.sh/helm/v3/cmd/helm@$helm_version failed"
    # Moved into place only once complete, so an interrupted build is never taken for a good one.
    rm -rf "$helm_dir"
    mv -T "$partial" "$helm_dir"
    trap - EXIT
    is_current || die "the freshly built $helm_bin does not report $helm_version"
  fi
  flock -u 9
fi
echo "$helm_bin"

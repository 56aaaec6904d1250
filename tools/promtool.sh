#!/usr/bin/env bash
# Builds (once per machine) or finds promtool and prints the path of the binary as the LAST line of stdout:
#   PROMTOOL=$(tools/promtool.sh | tail -1)
# Progress and go output go to stderr.
#
# promtool checks the operator's /metrics (`promtool check metrics`) and the alert rules shipped with the chart
# (`promtool check rules`, `promtool test rules`). It is compiled from the Go module proxy, the only download
# site this project relies on, into a cache folder OUTSIDE the repository, like the control plane and helm:
#   ${XDG_CACHE_HOME:-$HOME/.cache}/aep-streaming-operator/tools/promtool-<version>/bin/promtool
# About 3-5 minutes on 2 busy cores with a cold Go cache (Prometheus has many dependencies); 0.1 s when present.
#
# Environment:
#   AEP_PROMTOOL   use this promtool binary as it is (nothing is built).
set -euo pipefail

# Prometheus 3.16.0. Its Go module is versioned v0.<major*100+minor>.<patch> (Prometheus has no /v3 module
# path), so Prometheus 3.16.0 is github.com/prometheus/prometheus@v0.316.0. Bump both in a commit of its own.
prometheus_module_version=v0.316.0
prometheus_version=3.16.0

log() { printf '[promtool.sh] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

if [[ -n ${AEP_PROMTOOL:-} ]]; then
  [[ -x $AEP_PROMTOOL ]] || die "AEP_PROMTOOL=$AEP_PROMTOOL is not an executable file"
  echo "$AEP_PROMTOOL"
  exit 0
fi

tools_cache=${XDG_CACHE_HOME:-$HOME/.cache}/aep-streaming-operator/tools
promtool_dir=$tools_cache/promtool-$prometheus_version
promtool_bin=$promtool_dir/bin/promtool

# Present only if it reports the pinned version, so a broken or half-copied file is rebuilt.
is_current() {
  [[ -x $promtool_bin && $("$promtool_bin" --version 2>/dev/null) == "promtool, version $prometheus_version "* ]]
}

if ! is_current; then
  command -v go >/dev/null || die "go is not on PATH (needed once, to build promtool $prometheus_version)"
  mkdir -p "$tools_cache"
  # Two `make test` runs at once build it once: the second waits, then finds it.
  exec 9>"$promtool_dir.lock"
  flock 9
  if ! is_current; then
    export GOWORK=off CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -buildvcs=false"
    # The version stamp that Prometheus's own release build (.promu.yml) sets, so `--version` can be checked.
    ldflags="-s -w -X github.com/prometheus/common/version.Version=$prometheus_version"
    ldflags+=" -X github.com/prometheus/common/version.Revision=$prometheus_module_version"
    partial=$promtool_dir.partial-$$
    rm -rf "$partial"
    # shellcheck disable=SC2064 # expand now: the trap must remove this very folder
    trap "rm -rf '$partial'" EXIT
    log "building promtool $prometheus_version into $promtool_dir (once per machine; 3-5 minutes with a cold Go cache)"
    # netgo: the pure-Go resolver, as Prometheus's release build uses (no cgo here anyway).
    GOBIN=$partial/bin go install -trimpath -tags netgo -ldflags "$ldflags" \
      "github.com/prometheus/prometheus/cmd/promtool@$prometheus_module_version" >&2 \
      || die "go install github.com/prometheus/prometheus/cmd/promtool@$prometheus_module_version failed"
    # Moved into place only once complete, so an interrupted build is never taken for a good one.
    rm -rf "$promtool_dir"
    mv -T "$partial" "$promtool_dir"
    trap - EXIT
    is_current || die "the freshly built $promtool_bin does not report version $prometheus_version"
  fi
  flock -u 9
fi
echo "$promtool_bin"

#!/usr/bin/env bash
# Builds (once per machine) or finds crane and prints the path of the binary as the LAST line of stdout:
#   CRANE=$(tools/crane.sh | tail -1)
# Progress and go output go to stderr.
#
# crane (github.com/google/go-containerregistry) assembles and inspects the operator's OCI image without a
# container engine (tools/build-image.sh, tools/test-image.sh; README "Image" says why crane). It is compiled
# from the Go module proxy, the only download site this project relies on, into a cache folder OUTSIDE the
# repository, like the control plane and helm:
#   ${XDG_CACHE_HOME:-$HOME/.cache}/aep-streaming-operator/tools/crane-<version>/bin/crane
# About 1 minute on 2 busy cores with a cold Go cache; 0.1 s when present.
#
# Environment:
#   AEP_CRANE   use this crane binary as it is (nothing is built).
set -euo pipefail

# The newest go-containerregistry release when this was written. Bump it in a commit of its own.
crane_version=v0.22.1

log() { printf '[crane.sh] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

if [[ -n ${AEP_CRANE:-} ]]; then
  [[ -x $AEP_CRANE ]] || die "AEP_CRANE=$AEP_CRANE is not an executable file"
  echo "$AEP_CRANE"
  exit 0
fi

tools_cache=${XDG_CACHE_HOME:-$HOME/.cache}/aep-streaming-operator/tools
crane_dir=$tools_cache/crane-$crane_version
crane_bin=$crane_dir/bin/crane

# Present only if it reports the pinned version, so a broken or half-copied file is rebuilt.
is_current() { [[ -x $crane_bin && $("$crane_bin" version 2>/dev/null) == "$crane_version" ]]; }

if ! is_current; then
  command -v go >/dev/null || die "go is not on PATH (needed once, to build crane $crane_version)"
  mkdir -p "$tools_cache"
  # Two `make test` runs at once build it once: the second waits, then finds it.
  exec 9>"$crane_dir.lock"
  flock 9
  if ! is_current; then
    export GOWORK=off CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -buildvcs=false"
    # The version stamp of crane's own release build (.goreleaser.yml), so `crane version` can be checked.
    ldflags="-s -w -X github.com/google/go-containerregistry/cmd/crane/cmd.Version=$crane_version"
    partial=$crane_dir.partial-$$
    rm -rf "$partial"
    # shellcheck disable=SC2064 # expand now: the trap must remove this very folder
    trap "rm -rf '$partial'" EXIT
    log "building crane $crane_version into $crane_dir (once per machine; about a minute with a cold Go cache)"
    GOBIN=$partial/bin go install -trimpath -ldflags "$ldflags" \
      "github.com/google/go-containerregistry/cmd/crane@$crane_version" >&2 \
      || die "go install github.com/google/go-containerregistry/cmd/crane@$crane_version failed"
    # Moved into place only once complete, so an interrupted build is never taken for a good one.
    rm -rf "$crane_dir"
    mv -T "$partial" "$crane_dir"
    trap - EXIT
    is_current || die "the freshly built $crane_bin does not report $crane_version"
  fi
  flock -u 9
fi
echo "$crane_bin"

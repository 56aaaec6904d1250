#!/usr/bin/env bash
# Builds the operator's container image WITHOUT a container engine: a reproducible OCI image layout.
#
#   tools/build-image.sh                 # -> target/image/oci/ (OCI image layout) and target/image/image.tar
#   tools/build-image.sh --out DIR       # the same under DIR
#   tools/build-image.sh rootfs DIR BIN  # only lay out the root file system (the Dockerfile uses this)
#
# The last line of stdout is the image's manifest digest (sha256:…); progress goes to stderr.
#
# What is in the image (one layer, FROM scratch; the Dockerfile builds the same):
#   /aep-streaming-operator            the release binary, statically linked against glibc (see below)
#   /etc/passwd, /etc/group            root (0) and nonroot (65532), distroless's names and numbers, so that
#                                      USER 65532:65532 and runAsUser 65532 name a real user
#   /etc/nsswitch.conf                 `hosts: files dns`, what glibc's resolver reads
#   /etc/ssl/certs/ca-certificates.crt the Debian ca-certificates bundle: the trust roots of the Kubernetes and
#                                      Flow Service clients (rustls with the system's roots, and --ca-file)
#   /home/nonroot (0700, 65532), /tmp (1777)
# Config: USER 65532:65532, ENTRYPOINT ["/aep-streaming-operator"], CMD ["run"], port 8080/tcp, linux/amd64,
# and the OCI labels title, description, version, revision, created, licenses and source.
#
# Why a static glibc binary: the only Rust target installed here is x86_64-unknown-linux-gnu (no musl target,
# and rustup cannot download one), and `-C target-feature=+crt-static` links glibc statically for it. The
# operator needs no dlopen: TLS is rustls (with ring), not OpenSSL; and since glibc 2.34 the `files` and `dns`
# name services that getaddrinfo uses are built into libc itself, so host names resolve from /etc/hosts and
# /etc/resolv.conf (which the kubelet mounts) with no libnss_*.so in the image. tools/test-image.sh checks
# this: no dynamic section, and a host name resolved by the binary in the unpacked root file system. Shipping
# the shared libraries instead (libc, libm, libgcc_s, the loader) would add 3 MB and a second set of files to
# keep in step with the build machine's glibc, for nothing.
#
# Why crane (github.com/google/go-containerregistry, built by tools/crane.sh from the Go module proxy): it
# writes OCI layouts and image tarballs, and sets config and labels, with no daemon, no root and no
# user namespaces (umoci's unpack/repack need the latter to own files as 65532 unless run as root). crane
# works against a registry, so this script runs crane's own registry (`crane registry serve`) on 127.0.0.1 for
# the few seconds of the build, then pulls the result into an OCI layout. The layer itself is a tarball this
# script writes (sorted entries, numeric owners, every mtime SOURCE_DATE_EPOCH, gzip without a timestamp),
# which crane takes as it is: the same sources give the same layer, config and manifest digests.
#
# Environment:
#   SOURCE_DATE_EPOCH      file mtimes and the `created` label (default: the last commit's time)
#   AEP_IMAGE_SOURCE       the org.opencontainers.image.source label (default: the git remote `origin` if it
#                          is an https URL; otherwise the label is left out)
#   AEP_IMAGE_BINARY       use this binary instead of building one (it must be static)
#   CARGO_TARGET_DIR       as cargo uses it (default target/)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# The user of distroless's "nonroot" images, which deploy/deployment.yaml and the chart run as.
readonly NONROOT_ID=65532
readonly RUST_TARGET=x86_64-unknown-linux-gnu
readonly IMAGE_NAME=aep-streaming-operator

log() { printf '[build-image] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Lays out the root file system in $1 (which must not exist or be empty) around the binary $2. Plain bash and
# coreutils, so that the Dockerfile's builder stage runs exactly this.
lay_out_rootfs() {
  local root=$1 binary=$2 ca_bundle=${AEP_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
  [[ -f $binary ]] || die "no binary at $binary"
  [[ -s $ca_bundle ]] || die "no CA bundle at $ca_bundle (Debian: apt-get install ca-certificates)"
  mkdir -p "$root"
  [[ -z $(ls -A "$root") ]] || die "$root is not empty"
  install -d -m 0755 "$root/etc" "$root/etc/ssl" "$root/etc/ssl/certs" "$root/home"
  install -d -m 0700 "$root/home/nonroot"
  install -d -m 1777 "$root/tmp"
  install -m 0755 "$binary" "$root/aep-streaming-operator"
  install -m 0644 "$ca_bundle" "$root/etc/ssl/certs/ca-certificates.crt"
  # distroless's entries (no login shell exists in the image).
  printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' \
    "nonroot:x:$NONROOT_ID:$NONROOT_ID:nonroot:/home/nonroot:/sbin/nologin" >"$root/etc/passwd"
  printf '%s\n' 'root:x:0:' "nonroot:x:$NONROOT_ID:" >"$root/etc/group"
  # Without this file glibc's default for hosts is `dns [!UNAVAIL=return] files`; /etc/hosts first is what
  # every distribution (and distroless) configures.
  printf '%s\n' 'hosts: files dns' >"$root/etc/nsswitch.conf"
  chmod 0644 "$root/etc/passwd" "$root/etc/group" "$root/etc/nsswitch.conf"
}

if [[ ${1:-} == rootfs ]]; then
  [[ $# -eq 3 ]] || die "usage: $0 rootfs DIR BINARY"
  lay_out_rootfs "$2" "$3"
  exit 0
fi

out_dir=target/image
while (($#)); do
  case $1 in
    --out) out_dir=${2:?--out needs a folder}; shift 2 ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) die "unknown argument: $1" ;;
  esac
done

command -v python3 >/dev/null || die "python3 is needed to write the layer"
crane=$(tools/crane.sh | tail -n1)

# ---------------------------------------------------------------- the release binary
target_dir=${CARGO_TARGET_DIR:-target}
if [[ -n ${AEP_IMAGE_BINARY:-} ]]; then
  binary=$AEP_IMAGE_BINARY
else
  # RUSTFLAGS with an explicit --target reach only the binary's own crates: build scripts and proc macros stay
  # dynamic, as they must. The binary lands in target/<triple>/release/, beside (not over) a normal release
  # build. Symbols are stripped: they are a third of the size and nothing in a container reads them.
  log "building the static release binary (cargo build --release --target $RUST_TARGET)"
  RUSTFLAGS="-C target-feature=+crt-static" CARGO_PROFILE_RELEASE_STRIP=symbols \
    cargo build --locked --release --target "$RUST_TARGET" -p aep-streaming-operator --bin aep-streaming-operator >&2
  binary=$target_dir/$RUST_TARGET/release/aep-streaming-operator
fi
[[ -x $binary ]] || die "no executable binary at $binary"
if readelf --dynamic "$binary" 2>/dev/null | grep -q NEEDED; then
  die "$binary needs shared libraries, and the image has none: build it with -C target-feature=+crt-static"
fi
version_line=$("$binary" --version) # "aep-streaming-operator 0.1.0"
version=${version_line##* }
[[ $version =~ ^[0-9]+\.[0-9]+\.[0-9]+ ]] || die "cannot read a version from '$version_line'"

# ---------------------------------------------------------------- labels and time
if [[ -z ${SOURCE_DATE_EPOCH:-} ]]; then
  SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null) || die "no SOURCE_DATE_EPOCH and no git history"
fi
[[ $SOURCE_DATE_EPOCH =~ ^[0-9]+$ ]] || die "SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH is not a number of seconds"
export SOURCE_DATE_EPOCH
created=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
# A build from uncommitted changes must not pass for the commit it started from.
if [[ $revision != unknown && -n $(git status --porcelain --untracked-files=no 2>/dev/null) ]]; then
  revision+=-dirty
fi
source_url=${AEP_IMAGE_SOURCE:-}
if [[ -z $source_url ]]; then
  origin=$(git remote get-url origin 2>/dev/null || true)
  [[ $origin == https://* ]] && source_url=${origin%.git}
fi
license=$(sed -n 's/^license = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
[[ -n $license ]] || die "no license in Cargo.toml"

# ---------------------------------------------------------------- the layer
work=$(mktemp -d)
registry_pid=
cleanup() {
  if [[ -n $registry_pid ]]; then kill "$registry_pid" 2>/dev/null || true; wait "$registry_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

lay_out_rootfs "$work/rootfs" "$binary"
# Python's tarfile, not GNU tar: each entry's owner is set by path (65532 for /home/nonroot, 0 elsewhere) with
# no chown on disk, so it runs as any user. Entries sorted by path, parents first; mtime SOURCE_DATE_EPOCH;
# numeric owners only (no user names); modes as laid out (umask-independent: lay_out_rootfs sets each).
python3 - "$work/rootfs" "$work/layer.tar.gz" "$SOURCE_DATE_EPOCH" "$NONROOT_ID" <<'PY'
import gzip, io, os, sys, tarfile

root, out, epoch, nonroot = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
owned_by_nonroot = {"home/nonroot"}
paths = []
for directory, dirs, files in os.walk(root):
    for name in dirs + files:
        paths.append(os.path.relpath(os.path.join(directory, name), root))
buffer = io.BytesIO()
with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
    for path in sorted(paths):
        full = os.path.join(root, path)
        info = tar.gettarinfo(full, arcname=path)
        if info.type not in (tarfile.REGTYPE, tarfile.DIRTYPE):
            sys.exit(f"unexpected file type in the root file system: {path}")
        info.mtime = epoch
        info.uid = info.gid = nonroot if path in owned_by_nonroot else 0
        info.uname = info.gname = ""
        info.mode = os.stat(full).st_mode & 0o7777
        info.pax_headers = {}
        if info.isfile():
            with open(full, "rb") as f:
                tar.addfile(info, f)
        else:
            tar.addfile(info)
# gzip with no file name and mtime 0 in its header, at a fixed level: the same tar gives the same bytes.
with open(out, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz:
    gz.write(buffer.getvalue())
PY
log "layer: $(sha256sum "$work/layer.tar.gz" | cut -d' ' -f1) ($(du -h "$work/layer.tar.gz" | cut -f1) compressed)"

# ---------------------------------------------------------------- assemble with crane
# crane's own registry, on loopback only, in memory, for the duration of this script.
"$crane" registry serve --address 127.0.0.1:0 >"$work/registry.log" 2>&1 &
registry_pid=$!
port=
for _ in $(seq 1 100); do
  port=$(sed -n 's/.*serving on port \([0-9]\+\).*/\1/p' "$work/registry.log" | head -n1)
  [[ -n $port ]] && break
  kill -0 "$registry_pid" 2>/dev/null || die "crane registry serve exited: $(cat "$work/registry.log")"
  sleep 0.1
done
[[ -n $port ]] || die "crane registry serve did not report its port"
ref=127.0.0.1:$port/$IMAGE_NAME:$version

labels=(
  --label "org.opencontainers.image.title=$IMAGE_NAME"
  --label "org.opencontainers.image.description=Kubernetes operator that manages Adobe Experience Platform streaming connections"
  --label "org.opencontainers.image.version=$version"
  --label "org.opencontainers.image.revision=$revision"
  --label "org.opencontainers.image.created=$created"
  --label "org.opencontainers.image.licenses=$license"
)
[[ -n $source_url ]] && labels+=(--label "org.opencontainers.image.source=$source_url")
[[ -n $source_url ]] || log "no AEP_IMAGE_SOURCE and no https origin remote: the image has no source label"

# OCI media types (not Docker's) from an empty base; then the config, as the Dockerfile sets it.
"$crane" append --oci-empty-base -f "$work/layer.tar.gz" -t "$ref" >/dev/null 2>"$work/crane.log" \
  || die "crane append failed: $(cat "$work/crane.log")"
"$crane" mutate "$ref" -t "$ref" \
  --set-platform linux/amd64 \
  --user "$NONROOT_ID:$NONROOT_ID" \
  --entrypoint /aep-streaming-operator \
  --cmd run \
  --workdir / \
  --exposed-ports 8080/tcp \
  "${labels[@]}" >/dev/null 2>"$work/crane.log" \
  || die "crane mutate failed: $(cat "$work/crane.log")"

# The results are replaced whole, so a failed build never leaves a half-written layout behind.
mkdir -p "$out_dir"
rm -rf "$out_dir/oci.partial" "$out_dir/image.tar.partial"
"$crane" pull --format=oci "$ref" "$out_dir/oci.partial" 2>"$work/crane.log" \
  || die "crane pull (OCI layout) failed: $(cat "$work/crane.log")"
# The tarball is tagged with the plain name (what `docker load` then lists), not with the build registry's
# address, whose port changes with every build. Re-saving changes nothing in the image (same digests).
"$crane" mutate "$ref" -t "$IMAGE_NAME:$version" -o "$out_dir/image.tar.partial" 2>"$work/crane.log" \
  || die "crane mutate -o (tarball) failed: $(cat "$work/crane.log")"
digest=$("$crane" digest "$ref")
rm -rf "$out_dir/oci" "$out_dir/image.tar"
mv "$out_dir/oci.partial" "$out_dir/oci"
mv "$out_dir/image.tar.partial" "$out_dir/image.tar"

log "image $IMAGE_NAME:$version $digest"
log "  OCI layout: $out_dir/oci   (crane push $out_dir/oci REGISTRY/$IMAGE_NAME:$version)"
log "  tarball:    $out_dir/image.tar   (docker load -i $out_dir/image.tar)"
echo "$digest"

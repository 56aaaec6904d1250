# syntax=docker/dockerfile:1.7
#
# The operator's image for those with a container engine. It builds the same image as tools/build-image.sh
# (which needs none, and is what `make test` builds and checks): one static binary FROM scratch, with the same
# files, user, entrypoint and labels. tools/test-image.sh checks that this file and the script agree (the files'
# contents, USER, ENTRYPOINT, CMD, EXPOSE and the label names).
#
#   docker build -t aep-streaming-operator:dev .
#   docker buildx build --platform linux/amd64,linux/arm64 -t REGISTRY/aep-streaming-operator:TAG \
#     --build-arg VERSION=0.1.0 --build-arg REVISION=$(git rev-parse HEAD) \
#     --build-arg SOURCE_URL=https://github.com/OWNER/aep-streaming-operator \
#     --build-arg CREATED=$(date -u -d @$(git log -1 --format=%ct) +%Y-%m-%dT%H:%M:%SZ) \
#     --build-arg SOURCE_DATE_EPOCH=$(git log -1 --format=%ct) \
#     --output type=image,rewrite-timestamp=true .      # reproducible file times (BuildKit >= 0.13)
#
# Needs BuildKit (the default builder since Docker 23) for the cache mounts and the heredocs. The emulator is not
# in this image: it is a development tool (`cargo run -p aep-emulator`), and the operator binary does not link
# its crate.

# Debian, like the machines that run tools/build-image.sh: glibc 2.36, the ca-certificates bundle, binutils.
# buildx builds each platform natively (under emulation for the foreign one), so no cross toolchain is needed.
FROM rust:1-bookworm AS builder

WORKDIR /build

# .dockerignore admits only what the compiler needs (manifest, lockfile, sources), so this layer changes only
# when the code does.
COPY . .

# Set by buildx from --platform; plain `docker build` leaves it empty and gets amd64.
ARG TARGETARCH

# glibc linked statically: the image has no shared libraries. RUSTFLAGS with an explicit --target reach only the
# binary, not build scripts or proc macros, which must stay dynamic. tools/build-image.sh explains why static
# glibc is enough (rustls instead of OpenSSL; the files and dns name services are part of libc since glibc 2.34).
# The target directory is a cache mount, so the binary is copied out in the same step.
ENV RUSTFLAGS="-C target-feature=+crt-static" \
    CARGO_PROFILE_RELEASE_STRIP=symbols

RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/build/target,sharing=locked \
    set -eu; \
    case "${TARGETARCH:-amd64}" in \
      amd64) target=x86_64-unknown-linux-gnu ;; \
      arm64) target=aarch64-unknown-linux-gnu ;; \
      *) echo "unsupported TARGETARCH: ${TARGETARCH}" >&2; exit 1 ;; \
    esac; \
    cargo build --release --locked --target "$target" -p aep-streaming-operator --bin aep-streaming-operator; \
    binary="target/$target/release/aep-streaming-operator"; \
    readelf --dynamic "$binary" > /tmp/dynamic-section; \
    if grep NEEDED /tmp/dynamic-section; then \
      echo "$binary links the shared libraries above; the final image has none" >&2; exit 1; \
    fi; \
    install -D -m 0755 "$binary" /rootfs/aep-streaming-operator

# The root file system, as tools/build-image.sh lays it out: distroless's root (0) and nonroot (65532) users, the
# name-service switch glibc reads, the Debian CA bundle (the trust roots of the Kubernetes and Flow Service
# clients), a private home for 65532 and a /tmp.
RUN install -d -m 0755 /rootfs/etc/ssl/certs /rootfs/home \
 && install -d -m 0700 -o 65532 -g 65532 /rootfs/home/nonroot \
 && install -d -m 1777 /rootfs/tmp \
 && install -m 0644 /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/ca-certificates.crt
COPY --chmod=0644 <<EOF /rootfs/etc/passwd
root:x:0:0:root:/root:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
EOF
COPY --chmod=0644 <<EOF /rootfs/etc/group
root:x:0:
nonroot:x:65532:
EOF
COPY --chmod=0644 <<EOF /rootfs/etc/nsswitch.conf
hosts: files dns
EOF

FROM scratch

ARG VERSION=0.1.0
ARG REVISION=unknown
# The repository URL, e.g. --build-arg SOURCE_URL=https://github.com/OWNER/aep-streaming-operator
ARG SOURCE_URL=""
# The last commit's time in RFC 3339, as tools/build-image.sh labels it:
#   --build-arg CREATED=$(date -u -d @$(git log -1 --format=%ct) +%Y-%m-%dT%H:%M:%SZ)
ARG CREATED=""

LABEL org.opencontainers.image.title="aep-streaming-operator" \
      org.opencontainers.image.description="Kubernetes operator that manages Adobe Experience Platform streaming connections" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}"

COPY --from=builder /rootfs/ /

# distroless's "nonroot" user, matching runAsUser/runAsGroup in deploy/deployment.yaml and the chart.
USER 65532:65532
WORKDIR /

# /metrics, /healthz and /readyz (--metrics-addr, default 0.0.0.0:8080).
EXPOSE 8080

ENTRYPOINT ["/aep-streaming-operator"]
CMD ["run"]

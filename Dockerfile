# syntax=docker/dockerfile:1
#
# The operator as one static musl binary in a distroless, non-root image.
#
#   docker build -t aep-streaming-operator:dev .
#   docker buildx build --platform linux/amd64,linux/arm64 -t REGISTRY/aep-streaming-operator:TAG .
#
# Needs BuildKit (the default builder since Docker 23) for the cache mounts. The emulator is not in
# this image: it is a development tool (`cargo run -p aep-emulator`), and the operator binary does not link its crate.

# Alpine's host triple is already *-unknown-linux-musl, so no cross toolchain is needed; buildx
# builds each platform natively (under emulation for the foreign one).
FROM rust:1-alpine AS builder

# gcc and musl-dev compile and link the C/assembly parts of `ring` (TLS) and `psm`; musl-dev also
# provides the static libc and start files. Versions are not pinned: Alpine drops old package
# versions from its mirrors, so a pin breaks the build within weeks.
# hadolint ignore=DL3018
RUN apk add --no-cache gcc musl-dev

WORKDIR /build

# .dockerignore admits only what the compiler needs (manifest, lockfile, sources), so this layer
# changes only when the code does.
COPY . .

# Set by buildx from --platform; plain `docker build` leaves it empty and gets amd64.
ARG TARGETARCH

# Statically linked (the musl default, stated so that no toolchain default can change it) and
# stripped. RUSTFLAGS with an explicit --target reaches only the binary, not build scripts or proc
# macros, which must stay dynamic. The target directory is a cache mount, so the binary is copied
# out in the same step.
ENV RUSTFLAGS="-C target-feature=+crt-static" \
    CARGO_PROFILE_RELEASE_STRIP=symbols

RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/build/target,sharing=locked \
    set -eu; \
    case "${TARGETARCH:-amd64}" in \
      amd64) target=x86_64-unknown-linux-musl ;; \
      arm64) target=aarch64-unknown-linux-musl ;; \
      *) echo "unsupported TARGETARCH: ${TARGETARCH}" >&2; exit 1 ;; \
    esac; \
    cargo build --release --locked --target "$target" --bin aep-streaming-operator; \
    binary="target/$target/release/aep-streaming-operator"; \
    readelf --dynamic "$binary" > /tmp/dynamic-section; \
    if grep NEEDED /tmp/dynamic-section; then \
      echo "$binary links the shared libraries above; the final image has none" >&2; exit 1; \
    fi; \
    install -D -m 0755 "$binary" /out/aep-streaming-operator

# distroless/static: no shell, no package manager; CA certificates, /etc/passwd and tzdata only.
# The CA bundle matters: the Kubernetes client can fall back to the system roots.
FROM gcr.io/distroless/static-debian12:nonroot

ARG VERSION=0.1.0
ARG REVISION=unknown
# The repository URL, e.g. --build-arg SOURCE_URL=https://github.com/OWNER/aep-streaming-operator
ARG SOURCE_URL=""

LABEL org.opencontainers.image.title="aep-streaming-operator" \
      org.opencontainers.image.description="Kubernetes operator that manages Adobe Experience Platform streaming connections" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"

COPY --from=builder /out/aep-streaming-operator /aep-streaming-operator

# The distroless "nonroot" user, matching runAsUser/runAsGroup in deploy/deployment.yaml.
USER 65532:65532

# /metrics, /healthz and /readyz (--metrics-addr, default 0.0.0.0:8080).
EXPOSE 8080

ENTRYPOINT ["/aep-streaming-operator"]
CMD ["run"]

# syntax=docker/dockerfile:1.7
#
# Minyi container image: the `minyi` binary (every service: `minyi serve <service>`) and, once it
# exists, the `minyi-handler` CLI client. Nothing else from the build ends up in the image.
#
#   docker build -t minyi:dev .
#   docker run --rm minyi:dev serve intake --dump-config
#
# Build needs BuildKit (cache mounts). protox compiles the .proto files, so no system protoc.

ARG RUST_VERSION=1.95

############################ builder ############################
FROM rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /src
COPY . .
# The cargo registry, git checkouts and target/ live in BuildKit cache mounts, so rebuilds after a
# source change only recompile what changed. Because target/ is a cache mount (not part of the
# layer), the binaries are copied out to /out/bin in the same RUN.
RUN --mount=type=cache,id=minyi-cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,id=minyi-cargo-git,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,id=minyi-target,target=/src/target,sharing=locked \
    cargo build --release --locked -p minyi --bins \
 && mkdir -p /out/bin \
 && for bin in minyi minyi-handler; do \
      if [ -f "target/release/$bin" ]; then install -m 0755 "target/release/$bin" /out/bin/; fi; \
    done \
 && test -x /out/bin/minyi

############################ runtime ############################
FROM debian:bookworm-slim AS runtime
# ca-certificates: rustls verifies PostgreSQL/RabbitMQ/Redis TLS certificates against the system
# roots when TLS URLs are used.
# Unpinned on purpose: ca-certificates should be the current one from bookworm's security updates.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 minyi \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/minyi --create-home \
      --shell /usr/sbin/nologin minyi \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/minyi/data

COPY --from=builder /out/bin/ /usr/local/bin/

# Listen on every interface inside the container (the binary defaults to 127.0.0.1).
# MINYI_DATA_DIR: the catalog directory and the classifier model default to paths under it and
# are written when missing, so it must be writable (a volume when the root filesystem is not).
ENV MINYI_GRPC_ADDR=0.0.0.0:50051 \
    MINYI_HTTP_ADDR=0.0.0.0:8080 \
    MINYI_DATA_DIR=/var/lib/minyi/data \
    MINYI_LOG_FORMAT=json

WORKDIR /var/lib/minyi
USER 10001:10001
# 50051: gRPC (service API, grpc.health.v1.Health, reflection); 8080: HTTP (/healthz, /metrics);
# 8081: plaintext gRPC health only, when MINYI_HEALTH_ADDR is set (Kubernetes probes).
# `serve` needs MINYI_TLS_CERT_FILE/MINYI_TLS_KEY_FILE, or MINYI_TLS_ALLOW_PLAINTEXT=true, to
# listen on 0.0.0.0 (docs/OPERATIONS.md, "TLS").
EXPOSE 50051 8080 8081

# HEALTHCHECK: `minyi health` asks the process's gRPC health service: the plaintext health port
# when MINYI_HEALTH_ADDR is set (as in Kubernetes, which uses its own gRPC probes on it anyway),
# else the gRPC port (https when the process serves TLS; then also set MINYI_CA_FILE, or set
# MINYI_HEALTH_ADDR). Used by `docker run` and Compose.
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
  CMD ["minyi", "health"]

ENTRYPOINT ["minyi"]
CMD ["--help"]

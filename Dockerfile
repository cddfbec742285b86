# syntax=docker/dockerfile:1
#
# The Switchyard gateway image: one static-ish binary on debian:bookworm-slim, as a non-root user.
#
#   docker build -t switchyard:0.1.0 .
#   docker run --rm -p 8080:8080 switchyard:0.1.0          # the simulated demo fleet
#   docker run --rm -p 8080:8080 -v "$PWD/switchyard.toml:/etc/switchyard/switchyard.toml:ro" \
#       switchyard:0.1.0 --config /etc/switchyard/switchyard.toml
#
# Needs BuildKit (the default builder since Docker 23) for the cache mounts. deploy/README.md says
# what else ships beside this file and how it is checked.

# The builder and the runtime are both Debian 12 (bookworm), so the binary's glibc is the one it
# runs on. 1.95 is the toolchain the project is developed with (rust-version is 1.85).
ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-slim-bookworm AS builder
WORKDIR /src
# The whole workspace: cargo reads every member's manifest (bench/* included) even for `-p`.
# .dockerignore keeps target/, .git and caches out of the context.
COPY . .
# Dependency caching: the registry, git checkouts and target/ live in BuildKit cache mounts, so a
# rebuild after a source change recompiles only the workspace's own crates, not the ~400
# dependencies. (cargo-chef would put the dependencies in an image layer instead, which helps a
# CI builder without a persistent cache; it is one more tool to install and pin, and on a
# developer's machine the cache mounts do the same job.) The binary is copied out of the cache
# mount, which is not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p switchyard \
    && install -D -m 0755 target/release/switchyard /out/switchyard

FROM debian:bookworm-slim AS runtime
# A fixed numeric uid/gid, so that Kubernetes' runAsNonRoot can check it without a passwd lookup.
RUN groupadd --system --gid 10001 switchyard \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/switchyard --create-home \
        --shell /usr/sbin/nologin switchyard
COPY --from=builder /out/switchyard /usr/local/bin/switchyard
# The embedded default keeps SQLite here (switchyard.db); with SWITCHYARD_DATABASE_URL set to a
# postgres:// URL nothing is written to disk.
WORKDIR /var/lib/switchyard
USER 10001:10001
EXPOSE 8080
# HEALTHCHECK: the image has no curl or wget, and the binary has no health-check subcommand.
# Rather than install curl (with libcurl and a dozen libraries, more than the gateway itself
# needs), the check uses bash, which bookworm-slim already has: /dev/tcp opens the connection,
# the request is one line of HTTP/1.0, and the check passes when the status line says 200.
# Docker's --timeout kills it if the gateway accepts but does not answer. The port is 8080 (the
# shipped configs' listen port) unless SWITCHYARD_HEALTHCHECK_PORT says otherwise.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${SWITCHYARD_HEALTHCHECK_PORT:-8080} && printf 'GET /healthz HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && IFS= read -r status <&3 && [[ $status == HTTP/1.?' 200 '* ]]"]
ENTRYPOINT ["switchyard", "serve"]
# With no config, `serve` runs the simulated demo fleet; 0.0.0.0 so that it is reachable from
# outside the container. Give `--config /etc/switchyard/switchyard.toml` (as deploy/compose and
# deploy/k8s do) to replace these arguments; the file's [server] listen applies then.
CMD ["--listen", "0.0.0.0:8080"]

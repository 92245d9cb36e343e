# syntax=docker/dockerfile:1
#
# The buildfleet images: one binary, every role chosen by arguments.
#
#   docker build --target runtime -t REGISTRY/buildfleet:0.1.0 .          # coordinator, cache
#   docker build --target runner  -t REGISTRY/buildfleet:0.1.0-runner .   # runner + build tools
#   docker run REGISTRY/buildfleet:0.1.0 coordinator --listen 0.0.0.0:7700 --tokens …
#
# Base images are pinned by tag here, NOT by digest: the machines this
# repository is developed and checked on cannot pull images, so no digest
# written here could have been checked, and a made-up one is worse than
# none. Pin them when you build, with the digests your registry reports:
#
#   docker buildx imagetools inspect rust:1.95.0-bookworm   # "Digest: sha256:…"
#   docker buildx imagetools inspect debian:bookworm-slim
#   docker build --build-arg RUST_IMAGE=rust:1.95.0-bookworm@sha256:… \
#                --build-arg BASE_IMAGE=debian:bookworm-slim@sha256:… …
#
# The Rust version is rust-toolchain.toml's channel (scripts/check-dockerfile
# checks they agree). apt packages are not pinned to versions (DL3008 is
# ignored below): Debian drops a stable package's old version from its
# mirrors when a fix supersedes it, so a pinned install breaks on the next
# security update; the base image's digest is the pin.
ARG RUST_IMAGE=rust:1.95.0-bookworm
ARG BASE_IMAGE=debian:bookworm-slim

# --- build: the same packages scripts/setup installs for CI, then a release build.
FROM ${RUST_IMAGE} AS build
# clang and libclang-dev: RocksDB's bindings are generated with bindgen.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends clang g++ libclang-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The cache mounts keep the registry and compiled dependencies (RocksDB takes
# many minutes) between builds on one builder; the binary is copied out of
# the mounted target directory before the mount goes away.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p buildfleet \
 && install -D -m 0755 target/release/buildfleet /out/buildfleet

# --- base: a small Debian with CA certificates and the unprivileged user.
FROM ${BASE_IMAGE} AS base
# The binary needs only libc, libm, libgcc_s and libstdc++ (RocksDB is C++),
# all in the slim image; scripts/check-dockerfile checks the list.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 buildfleet \
 && useradd --uid 10001 --gid 10001 --create-home --home-dir /home/buildfleet \
      --shell /bin/bash buildfleet \
 && install -d -o 10001 -g 10001 /data /work
COPY --from=build /out/buildfleet /usr/local/bin/buildfleet

# --- runner: the runner role with bash and the common build tools. Steps run
# as this image's user (10001) unless the runner is started as root with
# --step-user (the chart's runners.stepUsers), which isolates them further.
FROM base AS runner
USER 0:0
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      bash build-essential curl file git jq make openssh-client patch \
      pkg-config python3 python3-pip python3-venv unzip xz-utils zip zstd \
 && rm -rf /var/lib/apt/lists/*
USER 10001:10001
WORKDIR /work
ENTRYPOINT ["buildfleet"]
CMD ["runner", "--help"]

# --- runtime (the default target): coordinator and cache.
FROM base AS runtime
USER 10001:10001
WORKDIR /data
EXPOSE 7700 7701 9090
ENTRYPOINT ["buildfleet"]
CMD ["--help"]

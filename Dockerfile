# Builds the squash-frontend image from source: one static binary on an empty image, for every
# platform asked, cross-compiled on the build machine (the compiler is never emulated):
#   docker buildx build --platform linux/amd64,linux/arm64 -t <registry>/squash-frontend .
# Platforms: linux/amd64, linux/arm64, linux/arm/v7, linux/386, linux/ppc64le, linux/s390x,
# each proved by `make cross`; scripts/cross-target.sh maps each to its Rust target and gcc
# linker (and linux/riscv64 too, not proved: Debian's riscv64 Rust std could not be installed). A release (scripts/release-image.sh) passes VERSION, REVISION and
# SOURCE, which become the image's OCI labels and are compiled into the binary.
#
# Stages other builds replace:
# - RUST_IMAGE (build argument): the toolchain image, any Debian-based image with rustc and
#   cargo for the build platform. Offline, scripts/cross.sh makes one from Debian's packages
#   (scripts/debian-rust.Dockerfile) and passes --build-arg RUST_IMAGE=<it>.
# - `crates` (named context, empty by default): vendored crates for a build that cannot reach
#   the crates registry, --build-context crates=<dir> with the `cargo vendor` output in
#   <dir>/vendor and its source replacement in <dir>/config.toml (directory = "/crates/vendor").
# - `build` (named context): the tests build the final stage from a binary built on the host,
#   --build-context build=<dir with out/squash-frontend> --target frontend.
ARG RUST_IMAGE=rust:1.95-bookworm

FROM scratch AS crates

# The toolchain runs on the build machine's platform and links for TARGETPLATFORM. Its first
# steps are the same in `build` and `test-build` (one cache): a stage of their own would keep
# BuildKit 0.13 (Docker 26) resolving RUST_IMAGE when `build` is replaced by a named context.
FROM --platform=$BUILDPLATFORM ${RUST_IMAGE} AS build
COPY --chmod=755 scripts/cross-target.sh /usr/local/bin/cross-target
ENV CARGO_HOME=/usr/local/cargo
ARG TARGETPLATFORM
RUN cross-target setup "$TARGETPLATFORM"
WORKDIR /src
COPY . .
ARG TARGETARCH TARGETVARIANT VERSION=dev REVISION=unknown
RUN --mount=type=bind,from=crates,target=/crates \
    --mount=type=cache,id=squash-cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,id=squash-target-$TARGETARCH$TARGETVARIANT,target=/src/target \
    if [ -f /crates/config.toml ]; then set -- --config /crates/config.toml; fi && \
    SQUASH_FRONTEND_VERSION="$VERSION" SQUASH_FRONTEND_REVISION="$REVISION" \
      cross-target cargo "$TARGETPLATFORM" "$@" build --release --locked -p squash-frontend && \
    mkdir -p /out && \
    cp "target/$(cross-target triple "$TARGETPLATFORM")/release/squash-frontend" /out/

# The tests of the crates the binary is made of, compiled for TARGETPLATFORM and not run
# (scripts/cross.sh runs them under qemu-user): --target test-binaries --output type=local,...
FROM --platform=$BUILDPLATFORM ${RUST_IMAGE} AS test-build
COPY --chmod=755 scripts/cross-target.sh /usr/local/bin/cross-target
ENV CARGO_HOME=/usr/local/cargo
ARG TARGETPLATFORM
RUN cross-target setup "$TARGETPLATFORM"
WORKDIR /src
COPY . .
ARG TARGETARCH TARGETVARIANT
RUN --mount=type=bind,from=crates,target=/crates \
    --mount=type=cache,id=squash-cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,id=squash-test-target-$TARGETARCH$TARGETVARIANT,target=/src/target \
    if [ -f /crates/config.toml ]; then set -- --config /crates/config.toml; fi && \
    cross-target cargo "$TARGETPLATFORM" "$@" test --locked --no-run --message-format=json \
      -p treesync -p squash-frontend --lib --bins --test gateway_flow >/tmp/tests.json && \
    mkdir -p /out && \
    grep -E '"profile":\{[^}]*"test":true' /tmp/tests.json | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | xargs -I{} cp {} /out/

FROM scratch AS test-binaries
COPY --from=test-build /out/ /

FROM scratch AS frontend
COPY --from=build /out/squash-frontend /bin/squash-frontend
# The frontend needs no network: BuildKit runs it with none.
LABEL moby.buildkit.frontend.network.none="true"
# What we accept from buildx and pass on to the Dockerfile frontend, which implements them.
LABEL moby.buildkit.frontend.caps="moby.buildkit.frontend.inputs,moby.buildkit.frontend.subrequests,moby.buildkit.frontend.contexts,moby.buildkit.frontend.gitquerystring"
ARG VERSION=dev REVISION=unknown SOURCE=unknown
LABEL org.opencontainers.image.title="squash-frontend" \
      org.opencontainers.image.description="A BuildKit frontend that builds a Dockerfile and returns the image squashed, with the same config" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="$SOURCE" \
      org.opencontainers.image.version="$VERSION" \
      org.opencontainers.image.revision="$REVISION"
ENTRYPOINT ["/bin/squash-frontend"]

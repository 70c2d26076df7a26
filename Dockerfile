# Builds the squash-frontend image from source: one static binary on an empty image.
#   docker buildx build -t <registry>/squash-frontend .
# The tests build the same final stage from a binary built on the host, by replacing the
# `build` stage with a local directory: --build-context build=<dir with out/squash-frontend>.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    target="$(rustc -vV | sed -n 's/^host: //p')" && \
    RUSTFLAGS="-C target-feature=+crt-static" \
      cargo build --release --locked -p squash-frontend --target "$target" && \
    mkdir -p /out && cp "target/$target/release/squash-frontend" /out/

FROM scratch AS frontend
COPY --from=build /out/squash-frontend /bin/squash-frontend
# The frontend needs no network: BuildKit runs it with none.
LABEL moby.buildkit.frontend.network.none="true"
# What we accept from buildx and pass on to the Dockerfile frontend, which implements them.
LABEL moby.buildkit.frontend.caps="moby.buildkit.frontend.inputs,moby.buildkit.frontend.subrequests,moby.buildkit.frontend.contexts,moby.buildkit.frontend.gitquerystring"
ENTRYPOINT ["/bin/squash-frontend"]

# A Rust toolchain made of Debian's packages only (rustc, cargo, and for every target platform
# its std, libstd-rust-dev:ARCH, and its gcc cross linker), to feed the top-level Dockerfile's
# build stages where no Rust image and no rustup download can be reached:
#   docker buildx build --network host --build-arg PLATFORMS="linux/amd64 linux/arm64" \
#     --build-context debian=docker-image://<a Debian sid image> -t <tag> -f scripts/debian-rust.Dockerfile scripts
#   docker buildx build --build-arg RUST_IMAGE=<tag> --build-context crates=<vendored crates> ...
# scripts/cross.sh makes it (from a debootstrap of sid) and uses it. Debian's rustc and every
# libstd-rust-dev:ARCH come from one source package, so they always match; sid's is new enough
# for the workspace's rust-version.
FROM debian
COPY --chmod=755 cross-target.sh /usr/local/bin/cross-target
ARG PLATFORMS="linux/amd64 linux/arm64"
# sid's Release file may be past its Valid-Until on a mirror that lags: the date checks are
# lifted for the update, while its signature and every package's hash are still checked.
RUN set -eu; \
    native=$(dpkg --print-architecture); \
    debs=""; \
    for p in $PLATFORMS; do \
      set -- $(cross-target debs "$p"); \
      arch=${1#libstd-rust-dev:}; \
      if [ "$arch" = "$native" ]; then debs="$debs libstd-rust-dev gcc libc6-dev"; \
      else dpkg --add-architecture "$arch"; debs="$debs $*"; fi; \
    done; \
    apt-get -o Acquire::Check-Valid-Until=false -o Acquire::Check-Date=false update; \
    apt-get install -y --no-install-recommends rustc cargo ca-certificates $debs; \
    rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb; \
    rustc -V; cargo -V; \
    for p in $PLATFORMS; do t=$(cross-target triple "$p"); \
      test -d "$(rustc --print sysroot)/lib/rustlib/$t/lib" || { echo "no std for $t" >&2; exit 1; }; done
ENV CARGO_HOME=/usr/local/cargo

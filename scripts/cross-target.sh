#!/bin/sh
# The cross-compilation facts of one target platform, for the Dockerfile's build stages (which
# run on the build machine's platform and compile for TARGETPLATFORM) and for scripts/cross.sh.
#   cross-target.sh triple PLATFORM     the Rust target triple, e.g. aarch64-unknown-linux-gnu
#   cross-target.sh debs PLATFORM...    the Debian packages a Debian rustc needs to target them
#   cross-target.sh setup PLATFORM      make the target buildable here: its std (rustup target
#                                       add, or Debian's libstd-rust-dev:ARCH already installed)
#                                       and its C linker (gcc-TRIPLE); does nothing if both exist
#   cross-target.sh cargo PLATFORM ARGS...   cargo ARGS --target TRIPLE, linked statically
#                                       with the target's gcc
# PLATFORM is os/arch[/variant] as BuildKit names it: linux/amd64, linux/arm64, linux/arm/v7,
# linux/386, linux/ppc64le, linux/s390x, linux/riscv64. POSIX sh: the Rust images have no bash
# in every variant.
set -eu

die() {
    echo "cross-target: $*" >&2
    exit 1
}

# facts PLATFORM: sets triple (Rust), gnu (gcc's prefix) and arch (Debian's name).
facts() {
    case $1 in
    linux/amd64) triple=x86_64-unknown-linux-gnu gnu=x86_64-linux-gnu arch=amd64 ;;
    linux/arm64 | linux/arm64/v8) triple=aarch64-unknown-linux-gnu gnu=aarch64-linux-gnu arch=arm64 ;;
    linux/arm/v7) triple=armv7-unknown-linux-gnueabihf gnu=arm-linux-gnueabihf arch=armhf ;;
    linux/386) triple=i686-unknown-linux-gnu gnu=i686-linux-gnu arch=i386 ;;
    linux/ppc64le) triple=powerpc64le-unknown-linux-gnu gnu=powerpc64le-linux-gnu arch=ppc64el ;;
    linux/s390x) triple=s390x-unknown-linux-gnu gnu=s390x-linux-gnu arch=s390x ;;
    linux/riscv64) triple=riscv64gc-unknown-linux-gnu gnu=riscv64-linux-gnu arch=riscv64 ;;
    *) die "unsupported platform '$1' (supported: linux/amd64, linux/arm64, linux/arm/v7, linux/386, linux/ppc64le, linux/s390x, linux/riscv64)" ;;
    esac
}

host_triple() { rustc -vV | sed -n 's/^host: //p'; }

# The C compiler that links for the target: the system's own for a native build, else gcc-TRIPLE.
linker() {
    if [ "$triple" = "$(host_triple)" ]; then echo cc; else echo "$gnu-gcc"; fi
}

has_std() { [ -d "$(rustc --print sysroot)/lib/rustlib/$triple/lib" ]; }

case ${1:-} in
triple)
    facts "${2:?platform}"
    echo "$triple"
    ;;
debs)
    shift
    for p in "$@"; do
        facts "$p"
        # gcc's Debian name spells x86_64 with a dash.
        echo "libstd-rust-dev:$arch gcc-$(echo "$gnu" | tr _ -) libc6-dev-$arch-cross"
    done
    ;;
setup)
    facts "${2:?platform}"
    if ! has_std; then
        command -v rustup >/dev/null ||
            die "no Rust std for $triple and no rustup: with Debian's rustc, install libstd-rust-dev:$arch"
        rustup target add "$triple"
    fi
    cc=$(linker)
    if ! command -v "$cc" >/dev/null; then
        apt-get update
        apt-get install -y --no-install-recommends "gcc-$(echo "$gnu" | tr _ -)" "libc6-dev-$arch-cross"
        rm -rf /var/lib/apt/lists/*
    fi
    echo "cross-target: $triple: rustc $(rustc -V | cut -d' ' -f2), linker $cc" >&2
    ;;
cargo)
    facts "${2:?platform}"
    shift 2
    cc=$(linker)
    var=$(echo "$triple" | tr 'a-z-' 'A-Z_')
    # crt-static: one static binary, run by BuildKit from an empty image.
    env "CARGO_TARGET_${var}_LINKER=$cc" "CC_$(echo "$triple" | tr - _)=$cc" \
        RUSTFLAGS="-C target-feature=+crt-static" cargo "$@" --target "$triple"
    ;;
*)
    sed -n '2,/^set -eu/{/^set -eu/d;s/^# \{0,1\}//;p}' "$0" >&2
    exit 2
    ;;
esac

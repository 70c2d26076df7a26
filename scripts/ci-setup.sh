#!/usr/bin/env bash
# Makes a fresh Debian 12 machine (or container) ready for `make test`, as root: the Debian
# packages the tests and scripts use, and Rust (the pinned stable with clippy and rustfmt, and
# nightly for the fuzz targets) through rustup. Idempotent. The CI workflow runs it in a
# privileged debian:bookworm job container; scripts/engine.sh then starts its own engines.
set -euo pipefail

RUST=1.95.0
# rustup: curl; scripts/engine.sh: iproute2, procps, util-linux, debootstrap; the crates' C
# code: gcc; scripts/lint.sh: python3-venv.
PACKAGES=(ca-certificates curl git make gcc libc6-dev iproute2 procps util-linux debootstrap
    python3-venv)

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

export PATH=$HOME/.cargo/bin:$PATH
if ! command -v rustup >/dev/null; then
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --default-toolchain none
fi
rustup toolchain install "$RUST" --profile minimal --component clippy,rustfmt
rustup default "$RUST"
rustup toolchain install nightly --profile minimal
if [ -n "${GITHUB_PATH:-}" ]; then echo "$HOME/.cargo/bin" >>"$GITHUB_PATH"; fi

# In a job container on a cgroup v2 host, a nested dockerd can make its cgroups only once no
# process sits in the namespace's root cgroup: move them to a leaf, as docker-in-docker does.
if [ "${GITHUB_ACTIONS:-}" = true ] && [ -f /.dockerenv ] && [ -f /sys/fs/cgroup/cgroup.controllers ]; then
    mkdir -p /sys/fs/cgroup/init
    xargs -rn1 </sys/fs/cgroup/cgroup.procs >/sys/fs/cgroup/init/cgroup.procs 2>/dev/null || true
    sed -e 's/ / +/g' -e 's/^/+/' </sys/fs/cgroup/cgroup.controllers >/sys/fs/cgroup/cgroup.subtree_control
fi
echo "ci-setup: $(rustc -V), $(cargo +nightly -V)"

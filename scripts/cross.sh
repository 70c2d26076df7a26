#!/usr/bin/env bash
# Proves the release build offline, on an engine with the containerd image store (`make cross`
# starts one and runs this in its environment):
#   1. a Rust toolchain made of Debian sid's packages (scripts/debian-rust.Dockerfile on a
#      debootstrap of sid), since no Rust image and no rustup download can be reached, and the
#      crates vendored on the host (the build cannot reach the crates registry);
#   2. the top-level Dockerfile built for PLATFORMS by scripts/release-image.sh, as the release
#      workflow runs it, pushed to the local registry: one index, each platform's image with
#      the OCI labels and annotations, SBOM and provenance attestations, the release tags;
#   3. each binary is a static executable of its platform and answers --version (under
#      qemu-user for a foreign one);
#   4. the tests of the crates the binary is made of (treesync, squash-frontend), compiled for
#      each foreign platform by the Dockerfile's test-binaries target, pass under qemu-user;
#   5. a linux/amd64 + linux/arm64 build with RUN steps (emulated) through that frontend image,
#      resolved from the registry, squashed in full and base mode, and again by the image's
#      arm64 variant (integration/tests/cross_platform.rs).
#   scripts/cross.sh
# Environment: PLATFORMS (comma-separated, default linux/amd64,linux/arm64, which it must hold;
# the toolchain covers linux/amd64, arm64, arm/v7, 386, ppc64le, s390x), SQUASH_ENGINE_MIRROR.
# Installs qemu-user-static and binfmt-support with the host's apt if missing, and mounts
# binfmt_misc if it is not. Caches under ~/.cache/squash-frontend/cross and target/cross.
set -euo pipefail
cd "$(dirname "$0")/.."

PLATFORMS=${PLATFORMS:-linux/amd64,linux/arm64}
TOOLCHAIN_PLATFORMS="linux/amd64 linux/arm64 linux/arm/v7 linux/386 linux/ppc64le linux/s390x"
MIRROR=${SQUASH_ENGINE_MIRROR:-http://deb.debian.org/debian}
CACHE=$HOME/.cache/squash-frontend/cross
OUT=target/cross
REPO=squash-cross/squash-frontend
T0=$SECONDS
PROVED=()
declare -A DIGESTS # platform -> its image's manifest digest in the pushed index

log() { printf 'cross: %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}
proved() {
    PROVED+=("$*")
    log "ok: $*"
}
step() { log "--- $* ($((SECONDS - T0))s)"; }

# qemu's name for a platform's architecture.
qemu_arch() {
    case $1 in
    linux/arm64*) echo aarch64 ;;
    linux/arm/v7) echo arm ;;
    linux/386) echo i386 ;;
    linux/ppc64le) echo ppc64le ;;
    linux/s390x) echo s390x ;;
    linux/riscv64) echo riscv64 ;;
    *) echo x86_64 ;;
    esac
}
host_platform() {
    case $(uname -m) in
    x86_64) echo linux/amd64 ;;
    aarch64) echo linux/arm64 ;;
    *) die "unsupported build machine $(uname -m)" ;;
    esac
}
# The platforms asked, one a line; the foreign ones.
platforms() { tr ',' '\n' <<<"$PLATFORMS"; }
foreign() { platforms | grep -vxF "$(host_platform)" || true; }

need_engine() {
    docker info --format '{{json .DriverStatus}}' 2>/dev/null | grep -q io.containerd.snapshotter ||
        die "needs an engine with the containerd image store (multi-platform builds): make cross"
}

# qemu-user with binfmt_misc, so the engine runs foreign RUN steps and this script foreign tests.
binfmt() {
    if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
        log "mounting binfmt_misc"
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
    fi
    if ! command -v qemu-aarch64-static >/dev/null || ! command -v update-binfmts >/dev/null; then
        log "installing qemu-user-static and binfmt-support"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q qemu-user-static binfmt-support >&2 ||
            { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q qemu-user-static binfmt-support >&2; }
    fi
    # The engine runs the end-to-end build's arm64 RUN steps through binfmt_misc; this script
    # runs the other foreign binaries with qemu-ARCH-static itself.
    local a=aarch64
    [ "$(host_platform)" = linux/amd64 ] || a=x86_64
    [ -e "/proc/sys/fs/binfmt_misc/qemu-$a" ] || update-binfmts --enable "qemu-$a" >&2 ||
        die "cannot register qemu-$a with binfmt_misc"
    grep -q '^flags: .*F' "/proc/sys/fs/binfmt_misc/qemu-$a" ||
        die "qemu-$a is registered without the F flag: containers cannot use it"
    QEMU_BINFMT=$a
}

# The Debian toolchain image, remade when its recipe changes.
toolchain() {
    local sum tag base=squash-cross/debian:sid tarball=$CACHE/debian-sid-minbase.tar
    sum=$(cat scripts/debian-rust.Dockerfile scripts/cross-target.sh <(echo "$TOOLCHAIN_PLATFORMS") | sha256sum | cut -c1-12)
    tag=squash-cross/rust:sid-$sum
    TOOLCHAIN=$tag
    if docker image inspect "$tag" >/dev/null 2>&1; then
        log "toolchain $tag exists"
        return 0
    fi
    if ! docker image inspect "$base" >/dev/null 2>&1; then
        if [ ! -s "$tarball" ]; then
            command -v debootstrap >/dev/null || apt-get install -y -q debootstrap >&2
            local tmp
            mkdir -p "$CACHE"
            tmp=$(mktemp -d "$CACHE/debootstrap.XXXXXX")
            log "debootstrap --variant=minbase sid (once per machine)"
            debootstrap --variant=minbase sid "$tmp/rootfs" "$MIRROR" >"$tmp/log" 2>&1 ||
                { tail -n 20 "$tmp/log" >&2; die "debootstrap failed"; }
            rm -rf "$tmp"/rootfs/var/cache/apt/archives/*.deb "$tmp"/rootfs/var/lib/apt/lists/*
            tar --numeric-owner -C "$tmp/rootfs" -cf "$tarball.tmp" .
            mv "$tarball.tmp" "$tarball"
            rm -rf "$tmp"
        fi
        docker import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            "$tarball" "$base" >&2
    fi
    log "building the toolchain $tag for $TOOLCHAIN_PLATFORMS (Debian's rustc, cargo, std and gcc per target)"
    docker buildx build --network host --load --provenance=false --sbom=false \
        --build-arg PLATFORMS="$TOOLCHAIN_PLATFORMS" --build-context "debian=docker-image://$base" \
        -t "$tag" -f scripts/debian-rust.Dockerfile scripts >&2
}

# The crates, vendored on the host, with the source replacement the Dockerfile reads.
vendor() {
    mkdir -p "$OUT/crates"
    cargo vendor --locked --versioned-dirs --quiet "$OUT/crates/vendor" >/dev/null
    cat >"$OUT/crates/config.toml" <<'EOF'
[source.crates-io]
replace-with = "vendored-sources"

[source.vendored-sources]
directory = "/crates/vendor"
EOF
}

# An SBOM generator that needs no network (the default scanner image comes from a public
# registry): it writes the files of the scanned image, with their digests, as an SPDX
# document in an in-toto statement.
sbom_generator() {
    SBOM_GENERATOR=squash-cross/sbom-generator:1
    docker image inspect "$SBOM_GENERATOR" >/dev/null 2>&1 && return 0
    local ctx=$OUT/sbom-generator
    mkdir -p "$ctx"
    cat >"$ctx/sbom.sh" <<'EOF'
#!/bin/sh
set -eu
src=$BUILDKIT_SCAN_SOURCE
files=$(cd "$src" && find . -type f | sort | while read -r f; do
  sum=$(sha256sum "$f" | cut -d' ' -f1)
  printf '{"fileName":"%s","SPDXID":"SPDXRef-File-%s","checksums":[{"algorithm":"SHA256","checksumValue":"%s"}]},' "${f#.}" "$sum" "$sum"
done)
cat >"$BUILDKIT_SCAN_DESTINATION/sbom.spdx.json" <<JSON
{"_type":"https://in-toto.io/Statement/v0.1","predicateType":"https://spdx.dev/Document",
 "predicate":{"spdxVersion":"SPDX-2.3","dataLicense":"CC0-1.0","SPDXID":"SPDXRef-DOCUMENT",
  "name":"squash-frontend","documentNamespace":"https://spdx.org/spdxdocs/squash-frontend-cross",
  "creationInfo":{"created":"1970-01-01T00:00:00Z","creators":["Tool: squash-frontend cross test"]},
  "files":[${files%,}]}}
JSON
EOF
    printf 'FROM squash-test/busybox\nCOPY --chmod=755 sbom.sh /bin/sbom\nENTRYPOINT ["/bin/sbom"]\n' >"$ctx/Dockerfile"
    docker buildx build --load --provenance=false --sbom=false -t "$SBOM_GENERATOR" "$ctx" >&2
}


# registry_get PATH [ACCEPT]: a GET on the local registry's API.
registry_get() {
    curl -fsS -H "Accept: ${2:-application/json}" "http://$SQUASH_REGISTRY/v2/$1"
}

INDEX_TYPE=application/vnd.oci.image.index.v1+json
MANIFEST_TYPE=application/vnd.oci.image.manifest.v1+json

# Checks what the release build pushed: tags, index, platforms, labels, annotations, attestations.
check_pushed() {
    local version=$1 tags index p digest manifest config want
    tags=$(registry_get "$REPO/tags/list" | jq -r '.tags | sort | join(" ")')
    want=$(scripts/release-image.sh tags "v$version" "v$version" | sort | tr '\n' ' ' | sed 's/ $//')
    [ "$tags" = "$want" ] || die "the registry has tags '$tags', not '$want'"
    proved "release tags pushed: $tags"
    index=$(registry_get "$REPO/manifests/$version" "$INDEX_TYPE")
    jq -e '.mediaType == "application/vnd.oci.image.index.v1+json"' <<<"$index" >/dev/null ||
        die "$REPO:$version is not an OCI index"
    for k in title description licenses source version revision; do
        jq -e --arg k "org.opencontainers.image.$k" '.annotations[$k] | length > 0' <<<"$index" >/dev/null ||
            die "the index has no annotation org.opencontainers.image.$k"
    done
    for p in $(platforms); do
        local os=${p%%/*} rest=${p#*/} arch variant=
        arch=${rest%%/*}
        [ "$rest" = "$arch" ] || variant=${rest#*/}
        digest=$(jq -r --arg os "$os" --arg a "$arch" --arg v "$variant" \
            '.manifests[] | select(.platform.os == $os and .platform.architecture == $a and ((.platform.variant // "") == $v)) | .digest' <<<"$index")
        [ -n "$digest" ] || die "the index has no $p image"
        manifest=$(registry_get "$REPO/manifests/$digest" "$MANIFEST_TYPE")
        [ "$(jq -r '.annotations["org.opencontainers.image.version"]' <<<"$manifest")" = "$version" ] ||
            die "$p: the manifest's version annotation is not $version"
        config=$(registry_get "$REPO/blobs/$(jq -r .config.digest <<<"$manifest")")
        jq -e --arg v "$version" --arg r "$REVISION" '
            .config.Labels as $l
            | $l["moby.buildkit.frontend.network.none"] == "true"
            and ($l["moby.buildkit.frontend.caps"] | startswith("moby.buildkit.frontend.inputs,"))
            and $l["org.opencontainers.image.version"] == $v
            and $l["org.opencontainers.image.revision"] == $r
            and $l["org.opencontainers.image.licenses"] == "Apache-2.0"
            and $l["org.opencontainers.image.title"] == "squash-frontend"
            and ($l["org.opencontainers.image.source"] | length > 0)
            and ($l["org.opencontainers.image.description"] | length > 0)
            and .config.Entrypoint == ["/bin/squash-frontend"]
            and (.rootfs.diff_ids | length) == 1' <<<"$config" >/dev/null ||
            die "$p: the image config lacks a label or the entrypoint: $(jq -c '.config' <<<"$config")"
        # The attestation manifest of this image: an SBOM and a provenance statement.
        local att types
        att=$(jq -r --arg d "$digest" '.manifests[] | select(.annotations["vnd.docker.reference.digest"] == $d) | .digest' <<<"$index")
        [ -n "$att" ] || die "$p: no attestation manifest"
        types=$(registry_get "$REPO/manifests/$att" "$MANIFEST_TYPE" |
            jq -r '[.layers[].annotations["in-toto.io/predicate-type"]] | sort | join(" ")')
        { grep -q spdx <<<"$types" && grep -q slsa.dev/provenance <<<"$types"; } ||
            die "$p: the attestations are '$types', not an SBOM and a provenance"
        DIGESTS[$p]=$digest
        proved "$p: image $digest, one layer, labels and annotations (version $version, revision ${REVISION:0:12}), entrypoint, attestations: $types"
    done
}

# Each platform's binary: static, of its architecture, answers --version (emulated if foreign).
check_binaries() {
    local dir=$OUT/bin p bin desc out a
    rm -rf "$dir"
    docker buildx build --platform "$PLATFORMS" --target frontend --provenance=false --sbom=false \
        --build-arg "VERSION=$VERSION" --build-arg "REVISION=$REVISION" "${OFFLINE[@]}" \
        --output "type=local,dest=$dir" . >"$OUT/bin.log" 2>&1 || { tail -n 30 "$OUT/bin.log" >&2; die "building the binaries failed"; }
    for p in $(platforms); do
        bin=$dir/${p//\//_}/bin/squash-frontend
        if [ "$(platforms | wc -l)" = 1 ]; then bin=$dir/bin/squash-frontend; fi
        desc=$(file -b "$bin")
        grep -q 'statically linked' <<<"$desc" || grep -q 'static-pie linked' <<<"$desc" ||
            die "$p: $bin is not static: $desc"
        if [ "$p" = "$(host_platform)" ]; then out=$("$bin" --version 2>&1); else
            a=$(qemu_arch "$p")
            out=$("qemu-$a-static" "$bin" --version 2>&1)
        fi
        proved "$p binary: ${desc%%, BuildID*}; --version: $out"
    done
}

# The foreign platforms' test binaries, run under qemu-user. One test is left out: qemu-user
# does not pass statx's mount id on to the program (the x86_64 test binary fails the same way
# under qemu-x86_64-static), so treesync cannot see the mount points that test makes.
QEMU_SKIP=sync::tests::mount_points_inside_dst_are_never_entered
run_tests() {
    local p dir a bin out passed total=0 n
    for p in $(foreign); do
        dir=$OUT/tests/${p//\//_}
        rm -rf "$dir"
        docker buildx build --platform "$p" --target test-binaries --provenance=false --sbom=false \
            "${OFFLINE[@]}" --output "type=local,dest=$dir" . >"$OUT/tests.log" 2>&1 ||
            { tail -n 30 "$OUT/tests.log" >&2; die "building the $p test binaries failed"; }
        a=$(qemu_arch "$p")
        n=0 passed=0
        for bin in "$dir"/*; do
            file -b "$bin" | grep -q "ELF" || continue
            log "$p: qemu-$a-static $(basename "$bin")"
            out=$(cd "$OUT" && "qemu-$a-static" "$OLDPWD/$bin" --test-threads 2 --skip "$QEMU_SKIP" 2>&1) ||
                { printf '%s\n' "$out" | tail -n 40 >&2; die "$p: $(basename "$bin") failed under qemu-$a-static"; }
            passed=$((passed + $(awk '/^test result: ok\./ { n += $4 } END { print n + 0 }' <<<"$out")))
            n=$((n + 1))
        done
        [ "$n" -gt 0 ] || die "$p: no test binary was built"
        total=$((total + passed))
        proved "$p: $passed tests of treesync and squash-frontend pass under qemu-$a-static (all but $QEMU_SKIP; $n test binaries, $(file -b "$bin" | cut -d, -f2 | sed 's/^ //'))"
    done
}

main() {
    local t
    need_engine
    { grep -qxF linux/amd64 <<<"$(platforms)" && grep -qxF linux/arm64 <<<"$(platforms)"; } ||
        die "PLATFORMS must hold linux/amd64 and linux/arm64 (the end-to-end build's), not $PLATFORMS"
    mkdir -p "$OUT"
    step "qemu-user and binfmt_misc"
    binfmt
    proved "qemu-user-static installed, qemu-$QEMU_BINFMT registered with binfmt_misc (flag F: usable in containers)"
    step "toolchain and vendored crates"
    toolchain
    vendor
    # What the offline build adds to every build of the top-level Dockerfile.
    OFFLINE=(--build-arg "RUST_IMAGE=$TOOLCHAIN" --build-context "crates=$OUT/crates")
    proved "toolchain $TOOLCHAIN: $(docker run --rm "$TOOLCHAIN" rustc -V), crates vendored in $OUT/crates"
    sbom_generator
    eval "$(scripts/engine.sh registry start)"
    VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
    REVISION=$(git rev-parse HEAD)
    export REVISION
    step "release build of $PLATFORMS, pushed to $SQUASH_REGISTRY/$REPO"
    t=$SECONDS
    PLATFORMS=$PLATFORMS SOURCE=https://example.invalid/squash-frontend \
        scripts/release-image.sh "$SQUASH_REGISTRY/$REPO" "v$VERSION" \
        "${OFFLINE[@]}" --sbom="generator=$SBOM_GENERATOR" >"$OUT/release.log" 2>&1 ||
        { tail -n 40 "$OUT/release.log" >&2; die "the release build failed (log: $OUT/release.log)"; }
    proved "scripts/release-image.sh built $PLATFORMS by cross-compiling and pushed it in $((SECONDS - t))s"
    check_pushed "$VERSION"
    step "the binaries"
    check_binaries
    step "the foreign platforms' tests under qemu-user"
    run_tests
    step "a multi-platform build with RUN steps through the frontend image from the registry"
    scripts/engine.sh images >/dev/null 2>&1
    SQUASH_CROSS_FRONTEND=$SQUASH_REGISTRY/$REPO:$VERSION \
        SQUASH_CROSS_FRONTEND_ARM64=$SQUASH_REGISTRY/$REPO@${DIGESTS[linux/arm64]} \
        cargo test -p integration --locked --test cross_platform -- --ignored --nocapture \
        >"$OUT/e2e.log" 2>&1 || { tail -n 60 "$OUT/e2e.log" >&2; die "the end-to-end build failed (log: $OUT/e2e.log)"; }
    grep '^\[cross' "$OUT/e2e.log" | sed 's/^/    /' >&2
    proved "a linux/amd64 + linux/arm64 build with RUN steps through $SQUASH_REGISTRY/$REPO:$VERSION, squashed in full and base mode and by its arm64 variant: $(grep -E '^test result' "$OUT/e2e.log" | tail -n 1)"
    log "=== proved in $((SECONDS - T0))s:"
    printf '  - %s\n' "${PROVED[@]}"
}

main "$@"

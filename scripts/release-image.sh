#!/usr/bin/env bash
# Builds the multi-platform frontend image of a release and pushes it (or writes it elsewhere),
# as the release workflow does and as `make cross` does against the local registry:
#   scripts/release-image.sh IMAGE VERSION [BUILDX-ARGS...]
#     IMAGE    e.g. ghcr.io/<org>/squash-frontend (lowercased)
#     VERSION  the release tag, vX.Y.Z
#   scripts/release-image.sh tags VERSION [TAG...]
#     prints the tags VERSION is pushed under, given the release tags TAG... (default: the
#     repository's `git tag` list): X.Y.Z always; X.Y, X and latest only when VERSION is the
#     newest release of its minor line, its major line, and of all.
#   scripts/release-image.sh selftest      checks `tags` on a table of cases (make check)
# Every tag is pushed in one build (--push), with SBOM and provenance attestations
# (--sbom=true --provenance=mode=max), the OCI labels (from build arguments) and annotations
# (index and manifests): title, description, licenses, source, version, revision. BUILDX-ARGS
# come last, so they can replace the SBOM generator or feed the offline build stages.
# Environment: PLATFORMS (comma-separated, default below), REVISION (default: git HEAD),
# SOURCE (default: $GITHUB_SERVER_URL/$GITHUB_REPOSITORY, else the origin remote's URL).
set -euo pipefail
cd "$(dirname "$0")/.."

PLATFORMS=${PLATFORMS:-linux/amd64,linux/arm64,linux/arm/v7,linux/386,linux/ppc64le,linux/s390x}
TITLE=squash-frontend
DESCRIPTION="A BuildKit frontend that builds a Dockerfile and returns the image squashed, with the same config"
LICENSES=Apache-2.0
RELEASE_RE='^v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$'

die() {
    echo "release-image: $*" >&2
    exit 1
}

# newest PREFIX TAG...: the highest release among the TAGs that start with PREFIX.
newest() {
    local prefix=$1
    shift
    printf '%s\n' "$@" | grep -E "$RELEASE_RE" | awk -v p="$prefix" 'index($0, p) == 1' |
        sort -t. -k1.2,1n -k2,2n -k3,3n | tail -n 1
}

# tags VERSION TAG...: the tags VERSION goes out under (see the header).
tags() {
    local version=$1
    shift
    [[ $version =~ $RELEASE_RE ]] || die "'$version' is not a release tag vX.Y.Z"
    local x=${BASH_REMATCH[1]} y=${BASH_REMATCH[2]} z=${BASH_REMATCH[3]}
    set -- "$version" "$@"
    echo "$x.$y.$z"
    if [ "$(newest "v$x.$y." "$@")" = "$version" ]; then echo "$x.$y"; fi
    if [ "$(newest "v$x." "$@")" = "$version" ]; then echo "$x"; fi
    if [ "$(newest v "$@")" = "$version" ]; then echo latest; fi
}

release_tags() { git tag --list 'v*'; }

source_url() {
    if [ -n "${SOURCE:-}" ]; then
        echo "$SOURCE"
    elif [ -n "${GITHUB_SERVER_URL:-}" ] && [ -n "${GITHUB_REPOSITORY:-}" ]; then
        echo "$GITHUB_SERVER_URL/$GITHUB_REPOSITORY"
    else
        git remote get-url origin 2>/dev/null | sed -E 's#^git@([^:]+):#https://\1/#; s#\.git$##' || echo unknown
    fi
}

selftest() {
    local history="v0.9.9 v1.2.3 v1.2.4 v1.2.10 v1.3.0 v1.10.0 v1.20.0 v2.0.0" failed=0 case got
    local -a cases=(
        "v2.0.0=2.0.0 2.0 2 latest"
        "v3.0.0=3.0.0 3.0 3 latest"
        "v1.20.0=1.20.0 1.20 1"
        "v1.20.1=1.20.1 1.20 1"
        "v1.3.0=1.3.0 1.3"
        "v1.2.10=1.2.10 1.2"
        "v1.2.4=1.2.4"
        "v0.9.9=0.9.9 0.9 0"
        "v0.10.0=0.10.0 0.10 0"
    )
    for case in "${cases[@]}"; do
        # shellcheck disable=SC2086 # the history is words
        got=$(tags "${case%%=*}" $history | tr '\n' ' ' | sed 's/ $//')
        if [ "$got" != "${case#*=}" ]; then
            echo "release-image selftest: ${case%%=*} after $history: '$got', not '${case#*=}'" >&2
            failed=1
        fi
    done
    for case in 1.2.3 v1.2 v01.2.3 v1.2.3-rc1 v1.2.3.4; do
        if (tags "$case" >/dev/null 2>&1); then
            echo "release-image selftest: '$case' was taken for a release tag" >&2
            failed=1
        fi
    done
    [ "$failed" = 0 ] || exit 1
    echo "release-image selftest: ${#cases[@]} tag cases and 5 refusals passed"
}

if [ "${1:-}" = selftest ]; then
    selftest
    exit 0
fi
if [ "${1:-}" = tags ]; then
    [ $# -ge 2 ] || die "usage: $0 tags VERSION [TAG...]"
    version=$2
    shift 2
    if [ $# -eq 0 ]; then
        mapfile -t existing < <(release_tags)
        set -- "${existing[@]}"
    fi
    tags "$version" "$@"
    exit 0
fi

[ $# -ge 2 ] || die "usage: $0 IMAGE VERSION [BUILDX-ARGS...]  |  $0 tags VERSION [TAG...]"
image=$(tr '[:upper:]' '[:lower:]' <<<"$1")
version=$2
shift 2
mapfile -t existing < <(release_tags)
mapfile -t pushed < <(tags "$version" "${existing[@]}")
revision=${REVISION:-$(git rev-parse HEAD)}
source=$(source_url)
number=${version#v}

args=(--platform "$PLATFORMS"
    --build-arg "VERSION=$number" --build-arg "REVISION=$revision" --build-arg "SOURCE=$source")
for kv in "title=$TITLE" "description=$DESCRIPTION" "licenses=$LICENSES" "source=$source" \
    "version=$number" "revision=$revision"; do
    args+=(--annotation "index,manifest:org.opencontainers.image.$kv")
done
for t in "${pushed[@]}"; do args+=(-t "$image:$t"); done
args+=(--push --sbom=true --provenance=mode=max)

echo "release-image: $image $version ($revision) for $PLATFORMS, tags: ${pushed[*]}" >&2
docker buildx build "${args[@]}" "$@" .

#!/usr/bin/env bash
# Builds the frontend image on the running engine from a static binary built on this host,
# with the top-level Dockerfile's final stage (its `build` stage replaced by that binary).
#   scripts/frontend-image.sh [TAG]     (default squash-frontend:dev)
# Several may run at once (one per engine): each uses a build context of its own.
set -euo pipefail
cd "$(dirname "$0")/.."
tag="${1:-squash-frontend:dev}"
target="$(rustc -vV | sed -n 's/^host: //p')"
# The checkout's commit, compiled in and labelled as a release build does (none outside git).
revision=$(git rev-parse HEAD 2>/dev/null || true)
SQUASH_FRONTEND_REVISION=$revision RUSTFLAGS="-C target-feature=+crt-static" \
  cargo build --release --locked -p squash-frontend --target "$target" >&2
mkdir -p target/frontend-image
ctx=$(mktemp -d target/frontend-image/ctx.XXXXXX)
trap 'rm -rf "$ctx"' EXIT
mkdir -p "$ctx/out"
cp "target/$target/release/squash-frontend" "$ctx/out/"
docker buildx build --quiet --load --provenance=false --sbom=false \
  --build-arg REVISION="${revision:-unknown}" \
  --build-context build="$ctx" --target frontend -t "$tag" -f Dockerfile "$ctx" >/dev/null
echo "$tag"

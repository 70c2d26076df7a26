#!/usr/bin/env bash
# Builds an example three ways (plain, squashed, base-preserving) on the running engine and
# prints layers and sizes side by side; an example that splits (`# squash-split=`, with an
# app/VERSION file) is then rebuilt after a change of its app, to show which layers stay.
#   scripts/demo.sh FRONTEND_IMAGE EXAMPLE_DIR
set -euo pipefail
frontend="${1:?frontend image}"
example="${2:?example directory}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp -r "$example/." "$work/"
# The plain build is the same Dockerfile without our syntax line; the squashed builds use
# the frontend image given here, whatever the example names.
sed '1{/^# *syntax=/d}' "$example/Dockerfile" > "$work/Dockerfile.plain"
sed "1s|^# *syntax=.*|# syntax=$frontend|" "$example/Dockerfile" > "$work/Dockerfile"
name="squash-demo-$(basename "$example")"
build() { # tag dockerfile [args...]: the build's progress goes to $work/<tag>.log
  local tag="$1" file="$2"; shift 2
  local log="$work/${tag##*:}.log"
  echo "== building $tag" >&2
  local start=$SECONDS
  docker buildx build --progress=plain --load --network host --provenance=false -t "$tag" -f "$file" "$@" "$work" >"$log" 2>&1 ||
    { tail -n 30 "$log" >&2; exit 1; }
  echo "   $((SECONDS - start)) s" >&2
}
# report LOG: the squash report in a build's progress (the lines of the step that printed
# "squash report (", up to its cost line), without the step's number and time.
report() {
  awk '
    !id && / squash report \(/ { id = $1 }
    id && $1 == id && NF > 2 {
      line = $0; sub(/^#[0-9]+ [0-9.]+ /, "", line); print "  " line
      if (line ~ /made from metadata/) exit
    }' "$1"
}
build "$name:plain" "$work/Dockerfile.plain"
build "$name:squashed" "$work/Dockerfile" --build-arg SQUASH_MODE=full
build "$name:base" "$work/Dockerfile" --build-arg SQUASH_MODE=base
printf '\n%-32s %7s %12s\n' IMAGE LAYERS SIZE
for t in plain squashed base; do
  docker image inspect "$name:$t" --format '{{len .RootFS.Layers}} {{.Size}}' |
    awk -v n="$name:$t" '{ printf "%-32s %7s %9.1f MB\n", n, $1, $2 / 1e6 }'
done
echo "(SIZE is docker image inspect's .Size: the compressed layers on the containerd image store,"
echo " the unpacked layers on the classic store.)"
for t in squashed base; do
  echo
  echo "The squash report of $name:$t, from its build's progress output:"
  out=$(report "$work/$t.log")
  if [ -n "$out" ]; then
    printf '%s\n' "$out"
  else
    echo "  (none: the squash step was taken from the build cache, which prints nothing; it is in the"
    echo "   first build's output, or run 'docker builder prune' and make demo again)"
  fi
done
echo
runs() { # runs TAG: what the image prints when run
  printf '%s runs: ' "$1"
  docker run --rm "$1" 2>/dev/null | head -5
}
for t in plain squashed base; do runs "$name:$t"; done
echo
echo "History of $name:base, newest first (SIZE: what the entry's layer holds; 0B: an entry"
echo "without a layer; the base image's entries at the bottom, the squashed layer on top):"
docker history --no-trunc --format '{{.Size}}\t{{.CreatedBy}}' "$name:base" |
  awk -F'\t' '{ by = $2 == "" ? "(no description)" : $2
    if (length(by) > 110) by = substr(by, 1, 107) "..."
    printf "  %8s  %s\n", $1, by }'

# An example with a `# squash-split=` directive (examples/split): a one-line change of its app
# (app/VERSION), rebuilt in base mode, to show which layers stay the same.
if grep -q '^# *squash-split=' "$example/Dockerfile" && [ -f "$work/app/VERSION" ]; then
  echo
  echo "A one-line change of the app (app/VERSION), rebuilt in base mode:"
  layers() { docker image inspect "$1" --format '{{range .RootFS.Layers}}{{println .}}{{end}}' | sed '/^$/d'; }
  layers "$name:base" >"$work/layers-before"
  echo 2 >"$work/app/VERSION"
  build "$name:base-changed" "$work/Dockerfile" --build-arg SQUASH_MODE=base
  layers "$name:base-changed" >"$work/layers-after"
  k=0
  while IFS= read -r id; do
    k=$((k + 1))
    if grep -qx "$id" "$work/layers-before"; then what="the same as before the change"; else what="new"; fi
    printf '  layer %d  %s  %s\n' "$k" "${id:7:12}" "$what"
  done <"$work/layers-after"
  echo "(diff IDs; a registry that holds the first image receives only the new layers.)"
  runs "$name:base-changed"
fi

#!/usr/bin/env bash
# e2e.sh - the end-to-end suite on every engine generation and store, side by side.
#
#   scripts/e2e.sh [PAIR...]          PAIR is ENGINE-STORE: 26-classic 26-c8d 28-classic 28-c8d
#                                     (default: all four)
# Environment:
#   E2E_JOBS          how many pairs run at once (default 2)
#   E2E_THREADS       test threads per pair (default 3)
#   E2E_FILTER        passed to the test binaries (a test name filter; default: every test)
#   FRONTEND_IMAGE    the frontend image's tag in each engine (default squash-frontend:dev)
#
# The test binaries are built once; each pair gets its own engine (scripts/engine.sh: state,
# bridge and docker CLI of its own), its base images and the frontend image, loses the test
# images an earlier run left there, and runs every test binary in turn with its engine's
# environment. Its output goes to target/e2e/PAIR.log.
# At the end one table says, per pair, the engine's versions, what passed and failed and how
# long it took; the exit status is non-zero if any pair failed. The local registry (for the
# push tests) is shared by all pairs.
set -euo pipefail
cd "$(dirname "$0")/.."

PAIRS=("$@")
[ ${#PAIRS[@]} -gt 0 ] || PAIRS=(26-classic 26-c8d 28-classic 28-c8d)
# The order they start in: the containerd-store pairs, which take the longest, one after the
# other, the classic ones beside them (26-c8d with 26-classic, then 28-classic, then 28-c8d
# once 26-c8d is done). Clean-clone runs of this suite on this machine (2 CPUs), all pairs:
# 1507 s in this order; 1442 s with the two containerd pairs first, side by side (each then
# took 900 s); within what runs vary by. On 2026-12-01: 1328 s in this order, 1301 s with the
# longest first in each slot (26-c8d beside 26-classic, then 28-c8d, then 28-classic): the
# suite keeps both CPUs busy, so the order moves little (one pair alone keeps them 74 % busy).
ORDER=()
for p in 26-c8d 26-classic 28-classic 28-c8d; do
  if [[ " ${PAIRS[*]} " == *" $p "* ]]; then ORDER+=("$p"); fi
done
JOBS=${E2E_JOBS:-2}
THREADS=${E2E_THREADS:-3}
FILTER=${E2E_FILTER:-}
IMAGE=${FRONTEND_IMAGE:-squash-frontend:dev}
OUT=target/e2e
ENGINE_SH=scripts/engine.sh

log() { printf 'e2e: %s\n' "$*" >&2; }

for p in "${PAIRS[@]}"; do
  case $p in
    26-classic | 26-c8d | 28-classic | 28-c8d) ;;
    *) log "unknown pair '$p' (valid: 26-classic 26-c8d 28-classic 28-c8d)"; exit 2 ;;
  esac
done

start=$SECONDS
rm -rf "$OUT" && mkdir -p "$OUT"

# The test binaries, built once: their paths, from cargo's own report. Built for the whole
# workspace, as `make check` builds its tests, so that the dependencies keep the features they
# were built with there (`-p integration` alone selects fewer and rebuilt nine of them, 15 s);
# the integration package's test targets are the suite.
log "building the test binaries"
cargo test --workspace --locked --tests --no-run --message-format=json 2>"$OUT/build.log" |
  python3 -c '
import json, os, sys
for line in sys.stdin:
    m = json.loads(line)
    if (m.get("reason") == "compiler-artifact" and m.get("executable")
            and m["target"]["kind"] == ["test"]
            and os.path.basename(os.path.dirname(m["manifest_path"])) == "integration"):
        print(m["executable"])
' | sort >"$OUT/binaries" || { tail -n 40 "$OUT/build.log" >&2; exit 1; }
[ -s "$OUT/binaries" ] || { log "no test binaries were built"; tail -n 40 "$OUT/build.log" >&2; exit 1; }
# The frontend binary, built once too (each pair only packs it into an image).
target="$(rustc -vV | sed -n 's/^host: //p')"
SQUASH_FRONTEND_REVISION=$(git rev-parse HEAD 2>/dev/null || true) RUSTFLAGS="-C target-feature=+crt-static" \
  cargo build --release --locked -p squash-frontend --target "$target" >>"$OUT/build.log" 2>&1 ||
  { tail -n 40 "$OUT/build.log" >&2; exit 1; }
log "built in $((SECONDS - start))s: $(wc -l <"$OUT/binaries") test binaries"

# The engines, installed once before any pair starts (the installs share a cache).
for e in $(printf '%s\n' "${PAIRS[@]}" | cut -d- -f1 | sort -u); do
  "$ENGINE_SH" install "$e" 2>>"$OUT/build.log"
done
eval "$("$ENGINE_SH" registry start 2>>"$OUT/build.log")"
export SQUASH_REGISTRY

# remove_leftovers: the test images (`squash-e2e-*` tags) an earlier run left in this engine,
# in one command. The tests leave their small images (integration/src/scenario.rs,
# REMOVE_AT_ONCE_ABOVE: each removal costs the containerd store a garbage collection of the
# whole store); here, before the tests, they cost nothing on a fresh engine.
remove_leftovers() {
  local tags
  tags=$(docker images --format '{{.Repository}}:{{.Tag}}' | grep '^squash-e2e-' || true)
  [ -n "$tags" ] || return 0
  log "removing $(wc -l <<<"$tags") test images an earlier run left"
  # shellcheck disable=SC2086 # one tag a word
  docker rmi -f $tags >/dev/null
}

# run_pair PAIR: one pair's suite, in a subshell with that engine's environment.
run_pair() {
  local pair=$1 engine=${1%-*} store=${1#*-} log=$OUT/$1.log t0=$SECONDS rc=0 bin
  # Each step checked on its own: `set -e` does not reach into a group whose status is tested.
  local env_lines
  if ! env_lines=$("$ENGINE_SH" start "$engine" "$store" 2>>"$log") ||
    ! eval "$env_lines" ||
    ! "$ENGINE_SH" images >>"$log" 2>&1 ||
    ! remove_leftovers >>"$log" 2>&1 ||
    ! scripts/frontend-image.sh "$IMAGE" >>"$log" 2>&1; then
    echo "setup failed" >"$OUT/$pair.status"
    echo "$((SECONDS - t0))" >"$OUT/$pair.seconds"
    "$ENGINE_SH" stop "$engine" "$store" >>"$log" 2>&1 || true
    return 0
  fi
  printf 'e2e: %s ready in %ss: %s\n' "$pair" "$((SECONDS - t0))" \
    "$(docker version --format 'server {{.Server.Version}}') $(docker buildx version)" >>"$log"
  while IFS= read -r bin; do
    printf '\n=== %s\n' "$(basename "$bin")" >>"$log"
    # shellcheck disable=SC2086 # FILTER is a list of words on purpose
    SQUASH_FRONTEND_IMAGE=$IMAGE "$bin" --test-threads "$THREADS" $FILTER >>"$log" 2>&1 || rc=1
  done <"$OUT/binaries"
  "$ENGINE_SH" stop "$engine" "$store" >>"$log" 2>&1 || true
  if [ "$rc" = 0 ]; then echo "passed" >"$OUT/$pair.status"; else echo "FAILED" >"$OUT/$pair.status"; fi
  echo "$((SECONDS - t0))" >"$OUT/$pair.seconds"
}

log "running ${PAIRS[*]}, $JOBS at a time, logs in $OUT/"
running=()
for pair in "${ORDER[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n || true; done
  log "start $pair"
  run_pair "$pair" &
  running+=($!)
done
wait "${running[@]}" || true

# The table.
failed=0
printf '\n%-12s %-8s %6s %6s %7s  %s\n' pair result passed failed seconds engine >&2
for pair in "${PAIRS[@]}"; do
  log_file=$OUT/$pair.log
  status=$(cat "$OUT/$pair.status" 2>/dev/null || echo "no result")
  passed=$(grep -ho 'test result: [A-Za-z]*\. [0-9]* passed' "$log_file" 2>/dev/null | awk '{s += $4} END {print s + 0}')
  nfail=$(grep -ho '; [0-9]* failed' "$log_file" 2>/dev/null | awk '{s += $2} END {print s + 0}')
  engine=$(sed -n 's/^e2e: [^ ]* ready in [0-9]*s: //p' "$log_file" 2>/dev/null | head -n1)
  printf '%-12s %-8s %6s %6s %7s  %s\n' "$pair" "$status" "$passed" "$nfail" "$(cat "$OUT/$pair.seconds" 2>/dev/null || echo -)" "$engine" >&2
  if [ "$status" != passed ]; then
    failed=1
    grep -h -- '^test .* FAILED$\|^    [a-z_0-9]*$' "$log_file" 2>/dev/null | sed "s/^/  $pair: /" >&2 || true
  fi
done
log "all pairs in $((SECONDS - start))s"
if [ "$failed" = 1 ]; then
  for pair in "${PAIRS[@]}"; do
    [ "$(cat "$OUT/$pair.status" 2>/dev/null)" = passed ] && continue
    printf '\n----- %s: the failures (whole log: %s) -----\n' "$pair" "$OUT/$pair.log" >&2
    awk '/^failures:$/ {on = 1} on {print} /^test result:/ {on = 0}' "$OUT/$pair.log" | head -n 300 >&2
    [ -s "$OUT/$pair.log" ] && ! grep -q '^failures:$' "$OUT/$pair.log" && tail -n 40 "$OUT/$pair.log" >&2
  done
  exit 1
fi

#!/usr/bin/env bash
# bench.sh - what squashing costs and saves, against the alternatives, side by side.
#
# Builds each workload of bench/ several ways on the running engine (containerd image store),
# prints one table per workload (median of the runs, min-max shown) and the targets with
# pass/miss, and writes the same into BENCHMARKS.md between its bench markers (the prose
# around them is kept).
#
#   eval "$(scripts/engine.sh start c8d)" && scripts/engine.sh images &&
#     scripts/frontend-image.sh && scripts/bench.sh          (what `make bench` runs)
#
# Ways (BENCH_WAYS; each workload runs those that apply to it, see wl_ways):
#        plain        the Dockerfile as is, no syntax line
#        multistage   the final stage named, + `FROM scratch` + `COPY --from=<final> / /`
#        full         `# syntax=<frontend>` on top, --build-arg SQUASH_MODE=full
#        base         the same, --build-arg SQUASH_MODE=base
#        split        the same, SQUASH_MODE=base and SQUASH_SPLIT=app (toolchain only: the stage
#                     `app` ends where the app is built; what follows is a layer of its own)
#        split-noreport the same, with SQUASH_REPORT=off (no report; on the containerd store
#                     the engine makes the upper layer, no step of ours runs; workload 5 only)
#        import       the plain build, then `docker export` of a container | `docker import`
#      Peers, each pinned and installed privately on first use (versions below):
#        dsquash      the plain build, then docker-squash (PyPI) squashing every layer
#        dsquash-base the plain build, then docker-squash -f N (the N layers above the base)
#        crane        the plain build, pushed to a local registry, then `crane flatten`
#                     (Debian's crane; no mode that keeps the base)
#        buildah-squash  `buildah bud --squash` (one layer), Debian's buildah, own store
#        buildah      `buildah bud --layers=false` (the base's layers + one)
# Workloads (BENCH_WORKLOADS, numbers or names):
#        1 toolchain    ~300 MB C/C++ toolchain installed with apt, app built, toolchain purged
#        2 churn        1 GiB of random files written, half deleted in a later layer
#        3 smallfiles   50,000 small files over 5 layers
#        4 cached       workload 1 rebuilt with nothing changed (fully cached)
#        5 incremental  workload 1 rebuilt after a change to the last RUN (a build argument
#                       only that RUN uses)
#        6 large1g      bench/large at 1 GiB: many files and 9 large ones, a third deleted
#        7 large4g      the same at 4 GiB
#
# Environment:
#   BENCH_RUNS         runs per way for workloads 1, 2, 3, 5 (default 3)
#   BENCH_LARGE_RUNS   runs per way for workloads 6 and 7 (default 1)
#   BENCH_CACHED_RUNS  runs per way for workload 4 (default: the larger of 5 and BENCH_RUNS)
#   BENCH_WORKLOADS    which workloads, e.g. "1 4" or "toolchain,cached" (default: all)
#   BENCH_WAYS         which ways, e.g. "plain,full,base,crane" (default: all); plain always
#                      runs where another way needs it (the derived ways, the config check)
#   BENCH_PEER_TIMEOUT seconds a peer's own step may take before it is stopped and reported
#                      as not finished (default 1200)
#   BENCH_LARGE_MIB    the sizes of workloads 6 and 7 in MiB (default "1024 4096")
#   BENCH_MIN_FREE_GB  stop when the disk under /var/tmp has less free (default 8)
#   BENCH_PROBES       1 (default) also runs the "where the time goes" probes, 0 skips them
#   BENCH_PROBE_RUNS   runs of each probe build (default 1)
#   BENCH_OUT          the Markdown file to write (default BENCHMARKS.md; "-" writes none)
#   BENCH_KEEP         1 keeps the benchmark's images (squash-bench/*) afterwards
#   BENCH_REPORT_ONLY  1 rewrites the report from the last run's figures (target/bench/),
#                      without building anything
#   BENCH_APPEND       1 keeps the last run's figures and adds (or redoes) the workloads of
#                      BENCH_WORKLOADS, e.g. to finish a run that was interrupted
#   FRONTEND_IMAGE     the frontend image to benchmark (default squash-frontend:dev)
#   SQUASH_ENGINE_STATE, SQUASH_ENGINE_CACHE  as for scripts/engine.sh: the registry and
#                        buildah's store live in the state dir, the peers in the cache
#   SQUASH_DAEMON_LOG    the engine's daemon log (scripts/engine.sh's `export` lines set it;
#                        else $SQUASH_ENGINE_STATE/${SQUASH_ENGINE:-26}-c8d/dockerd.log, the state
#                        dir defaulting to /var/tmp/squash-engine)
#
# Cold builds: `docker builder prune -af` before each one. That empties BuildKit's cache
# (every step of the workload, and our squash step, runs again) but keeps the image store,
# so the base image and the frontend image stay, as they would on a developer's machine.
# `--no-cache` would not do: our frontend's own steps would still find their inputs cached.
set -euo pipefail

cd "$(dirname "$0")/.."
REPO=$PWD
FRONTEND=${FRONTEND_IMAGE:-squash-frontend:dev}
RUNS=${BENCH_RUNS:-3}
LARGE_RUNS=${BENCH_LARGE_RUNS:-1}
PEER_TIMEOUT=${BENCH_PEER_TIMEOUT:-1200}
read -r LARGE1_MIB LARGE2_MIB <<<"${BENCH_LARGE_MIB:-1024 4096}"
MIN_FREE_GB=${BENCH_MIN_FREE_GB:-8}
CACHED_RUNS=${BENCH_CACHED_RUNS:-$((RUNS > 5 ? RUNS : 5))}
PROBES=${BENCH_PROBES:-1}
PROBE_RUNS=${BENCH_PROBE_RUNS:-1}
OUT=${BENCH_OUT:-BENCHMARKS.md}
KEEP=${BENCH_KEEP:-0}
STATE=${SQUASH_ENGINE_STATE:-/var/tmp/squash-engine}
DLOG=${SQUASH_DAEMON_LOG:-$STATE/${SQUASH_ENGINE:-26}-c8d/dockerd.log}
EDIR=$(dirname "$DLOG") # the engine's state dir, where scripts/engine.sh started it
# Every way, in the order of the tables. Derived ways start from the plain build of the same
# run (its time is the plain build's plus theirs); the others build the Dockerfile themselves.
ALL_WAYS=(plain multistage full base split split-noreport import dsquash dsquash-base crane buildah-squash buildah)
DERIVED_WAYS=" import dsquash dsquash-base crane "
LOGS=$REPO/target/bench # per-build logs and the raw figures, kept for a closer look (gitignored)
RES=$LOGS/results.tsv   # workload way phase run wall_s engine_cpu_s fe_rss_kib fe_ms squash_step_s export_layers_s unpack_s report_ms report_rss_kib tool_s tool_cpu_s tool_rss_kib
SIZES=$LOGS/sizes.tsv   # workload way inspect_size compressed layers pull top_layer compression config_kept layer_tars
PUSH=$LOGS/push.tsv     # workload way bytes_to_push_after_the_change layers (workload 5)
NOTES=$LOGS/notes.tsv   # workload way text: a way that failed, did not finish or was not run
META=$LOGS/meta.sh      # machine, engine, settings of the run (for BENCH_REPORT_ONLY)
BENCH_DATE="" MACHINE="" ENGINE="" ELAPSED="" WORKLOADS="" FRONTEND_SIZE="" FRONTEND_TARS="" PEERS="" QUIET=""
T0=$SECONDS

log() { printf 'bench: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------------------
# Settings and preflight

# Workload numbers from BENCH_WORKLOADS (numbers or names, commas or spaces). Run order is
# 1, 4, 5, 2, 3, 6, 7: 4 and 5 start from the cache workload 1's last run leaves behind, so
# their warm-up costs seconds instead of another cold build.
parse_workloads() {
  local w out=()
  for w in $(tr ',' ' ' <<<"${BENCH_WORKLOADS:-1 2 3 4 5 6 7}"); do
    case $w in
      1 | toolchain) out+=(1) ;;
      2 | churn) out+=(2) ;;
      3 | smallfiles) out+=(3) ;;
      4 | cached) out+=(4) ;;
      5 | incremental) out+=(5) ;;
      6 | large1g) out+=(6) ;;
      7 | large4g) out+=(7) ;;
      *) die "unknown workload '$w' in BENCH_WORKLOADS (1-7 or toolchain, churn, smallfiles, cached, incremental, large1g, large4g)" ;;
    esac
  done
  for w in 1 4 5 2 3 6 7; do
    if printf '%s\n' "${out[@]}" | grep -qx "$w"; then printf '%s ' "$w"; fi
  done
}

wl_name() { case $1 in 1) echo toolchain ;; 2) echo churn ;; 3) echo smallfiles ;; 4) echo cached ;; 5) echo incremental ;; 6) echo large1g ;; 7) echo large4g ;; esac; }
wl_dir() { case $1 in 1 | 4 | 5) echo toolchain ;; 2) echo churn ;; 3) echo smallfiles ;; 6 | 7) echo large ;; esac; }
wl_mib() { case $1 in 6) echo "$LARGE1_MIB" ;; 7) echo "$LARGE2_MIB" ;; esac; }
# The build arguments of a workload (every way, peers too).
wl_args() { case $1 in 6 | 7) printf '%s\n' --build-arg "SIZE_MIB=$(wl_mib "$1")" ;; esac; }
wl_runs() { case $1 in 6 | 7) echo "$LARGE_RUNS" ;; *) echo "$RUNS" ;; esac; }
# The ways a workload runs, of those BENCH_WAYS selects (plain whenever another one runs).
wl_ways() {
  local all w sel=""
  case $1 in
    1) all="plain multistage full base split import dsquash dsquash-base crane buildah-squash buildah" ;;
    2 | 3) all="plain multistage full base import dsquash dsquash-base crane buildah-squash buildah" ;;
    4) all="plain multistage full base split import" ;;
    5) all="plain multistage full base split split-noreport import dsquash dsquash-base crane" ;;
    6 | 7) all="plain full base dsquash dsquash-base crane buildah-squash buildah" ;;
  esac
  for w in $all; do
    if [ "$w" = plain ] || [[ " $WAYS " == *" $w "* ]]; then sel="$sel $w"; fi
  done
  echo "${sel# }"
}
wl_has() { [[ " $(wl_ways "$1") " == *" $2 "* ]]; } # wl_has WL WAY
wl_phase() { case $1 in 4) echo cached ;; 5) echo incremental ;; *) echo cold ;; esac; }
wl_title() {
  case $1 in
    1) echo "1. toolchain: ~300 MB C/C++ toolchain installed with apt, app built, toolchain purged; Debian base; cold builds" ;;
    2) echo "2. churn: 1 GiB of random files written, half deleted in a later layer; busybox base; cold builds" ;;
    3) echo "3. smallfiles: 50,000 small files over 5 layers; busybox base; cold builds" ;;
    4) echo "4. cached: workload 1 rebuilt with no change (fully cached)" ;;
    5) echo "5. incremental: workload 1 rebuilt after a one-line change in the last RUN" ;;
    6 | 7) echo "$1. large, $(wl_mib "$1") MiB: many files of 1-63 KiB (half the bytes) and 9 large ones, a third of both deleted in a later step; Debian base; cold builds" ;;
  esac
}
# BENCH_WAYS: the ways named, checked.
parse_ways() {
  local w
  for w in $(tr ',' ' ' <<<"${BENCH_WAYS:-${ALL_WAYS[*]}}"); do
    [[ " ${ALL_WAYS[*]} " == *" $w "* ]] || die "unknown way '$w' in BENCH_WAYS (${ALL_WAYS[*]})"
    printf '%s ' "$w"
  done
}
# The image at the bottom of the workload's final stage: what "a host that has the base" has.
wl_base() { awk 'toupper($1) == "FROM" { b = $2 } END { print b }' "bench/$(wl_dir "$1")/Dockerfile"; }

# GNU time measures each timed command's wall time into a file of its own, apart from the
# command's output.
need_gnu_time() {
  if /usr/bin/time --version 2>&1 | grep -q 'GNU'; then return 0; fi
  log "installing GNU time (apt-get install -y time)"
  apt-get -q install -y time >&2 || { apt-get -q update >&2 && apt-get -q install -y time >&2; }
  /usr/bin/time --version 2>&1 | grep -q 'GNU' || die "GNU time did not install"
}

preflight() {
  [ -n "$WORKLOADS" ] || die "BENCH_WORKLOADS selects no workload"
  [[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "BENCH_RUNS must be a positive number, got '$RUNS'"
  [[ $CACHED_RUNS =~ ^[1-9][0-9]*$ ]] || die "BENCH_CACHED_RUNS must be a positive number, got '$CACHED_RUNS'"
  [[ $PROBE_RUNS =~ ^[1-9][0-9]*$ ]] || die "BENCH_PROBE_RUNS must be a positive number, got '$PROBE_RUNS'"
  need_gnu_time
  docker version >/dev/null 2>&1 || die "no engine: run eval \"\$(scripts/engine.sh start c8d)\" first (or make bench)"
  docker buildx version >/dev/null 2>&1 || die "docker buildx does not work with this engine"
  # The figures (compressed blobs in `docker save`, DiffOp/MergeOp for base mode, build
  # cache and images sharing one snapshotter) are those of the containerd image store.
  docker info --format '{{json .DriverStatus}}' | grep -q 'io.containerd.snapshotter' ||
    die "the engine does not use the containerd image store; start it with: scripts/engine.sh start c8d"
  local wl
  for wl in $WORKLOADS; do
    docker image inspect "$(wl_base "$wl")" >/dev/null 2>&1 || die "$(wl_base "$wl") is missing: run scripts/engine.sh images"
  done
  docker image inspect "$FRONTEND" >/dev/null 2>&1 || die "$FRONTEND is missing: run scripts/frontend-image.sh $FRONTEND"
  if [ ! -r "$DLOG" ]; then
    log "warning: no daemon log at $DLOG (an engine not started by scripts/engine.sh?); the frontend's peak RSS is looked for in the build output only"
  fi
}

# ---------------------------------------------------------------------------
# Measuring

# CPU seconds (user + system) of the engine's own processes: dockerd (BuildKit runs inside
# it: copying, diffing, compressing) and its containerd (unpacking). RUN steps run in
# containers outside these, so this is the engine's share of a build; close to the wall
# time, it says one core was busy with it. Empty when scripts/engine.sh did not start it.
TICKS=$(getconf CLK_TCK)
ENGINE_PIDS=""
engine_pids() {
  local f pid
  for f in "$EDIR/docker.pid" "$EDIR/exec/containerd/containerd.pid"; do
    pid=$(cat "$f" 2>/dev/null || true)
    if [ -n "$pid" ] && [ -r "/proc/$pid/stat" ]; then printf '%s ' "$pid"; fi
  done
}
engine_ticks() {
  [ -n "$ENGINE_PIDS" ] || { echo ""; return 0; }
  local pid total=0 st
  for pid in $ENGINE_PIDS; do
    st=$(cat "/proc/$pid/stat" 2>/dev/null) || { echo ""; return 0; }
    # Fields after "(comm) ": state is 1st, utime and stime are the 12th and 13th.
    total=$((total + $(awk '{ print $12 + $13 }' <<<"${st##*) }")))
  done
  echo "$total"
}
cpu_seconds() { # cpu_seconds BEFORE AFTER
  if [ -z "$1" ] || [ -z "$2" ]; then echo "-"; else awk -v a="$1" -v b="$2" -v t="$TICKS" 'BEGIN { printf "%.2f", (b - a) / t }'; fi
}
dlog_size() { stat -c %s "$DLOG" 2>/dev/null || echo 0; }

# Each frontend run writes one line "squash-frontend: exit N after M ms, peak RSS K KiB" to
# its stderr, which the engine copies to its daemon log. Reads the lines added since OFFSET
# (and the build's own output, should an engine show it there), prints "RSS_KIB MS" of the
# run with the largest RSS, or "- -" when there was none (plain builds).
FE_LINE='squash-frontend: exit -?[0-9]+ after [0-9]+ ms, peak RSS [0-9]+ KiB'
frontend_run() { # frontend_run OFFSET BUILD_LOG
  local lines
  lines=$({
    if [ -r "$DLOG" ]; then tail -c +"$(($1 + 1))" "$DLOG"; fi
    cat "$2"
  } | grep -aoE "$FE_LINE" || true)
  if [ -z "$lines" ]; then echo "- -"; return 0; fi
  if grep -qvE 'exit 0 ' <<<"$lines"; then log "warning: a frontend run did not exit 0: $(grep -vE 'exit 0 ' <<<"$lines" | head -n1)"; fi
  # squash-frontend: exit 0 after 40 ms, peak RSS 2232 KiB -> $5 = ms, $9 = KiB
  awk '$9 + 0 >= rss { rss = $9 + 0; ms = $5 } END { print rss, ms }' <<<"$lines"
}

# Where a build's time went, from BuildKit's plain progress output: the squash step (our
# copy, or the trick's `COPY --from=... / /`; "-" when there is none), "exporting layers"
# (making the layer tars and compressing them) and "unpacking" (the containerd store
# unpacking the new layers into its snapshotter). Prints "STEP LAYERS UNPACK" in seconds.
phases_of() {
  awk '
    /^#[0-9]+ / {
      id = $1; rest = substr($0, length(id) + 2)
      if (!(id in seen)) {
        seen[id] = 1
        if (rest ~ /^squash: / || rest ~ /COPY --from=bench-final \/ \/$/) sq[id] = 1
      }
      if ($2 == "DONE" && (id in sq)) { t = $3; sub(/s$/, "", t); step += t; any = 1 }
      if (rest ~ /^exporting layers [0-9.]+s done$/) { t = $4; sub(/s$/, "", t); layers += t }
      if (rest ~ /^unpacking to .* [0-9.]+s done$/) { t = $(NF - 1); sub(/s$/, "", t); unpack += t }
    }
    END { printf "%s %.1f %.1f\n", any ? sprintf("%.1f", step) : "-", layers, unpack }' "$1"
}

# record WL WAY PHASE RUN WALL ENGINE_CPU FE_RSS FE_MS STEP LAYERS UNPACK [REPORT_MS
# REPORT_RSS TOOL_S TOOL_CPU TOOL_RSS]: one line of results.tsv ("-" for what is missing).
record() {
  local f=("$@")
  while [ "${#f[@]}" -lt 16 ]; do f+=(-); done
  (
    IFS=$'\t'
    echo "${f[*]}"
  ) >>"$RES"
}
note() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$NOTES"; } # note WL WAY TEXT
note_of() { awk -F'\t' -v w="$1" -v y="$2" '$1 == w && $2 == y { t = $3 } END { print t }' "$NOTES"; }

# try_timed KEY COMMAND...: runs COMMAND with its output in $LOGS/KEY.log, measured by GNU
# time (wall, CPU and peak RSS of the command and what it waits for) into a file of its own,
# and the engine's CPU time around it. Returns the command's status. Sets T_WALL, T_CPU
# (the engine's), T_TOOLCPU (the command's user + system), T_RSS (KiB).
try_timed() {
  local key=$1 c0 c1 rc=0 line
  shift
  # Flush what earlier builds wrote, so this one does not pay for their writeback.
  sync
  c0=$(engine_ticks)
  /usr/bin/time -f '%e %U %S %M' -o "$LOGS/$key.time" "$@" >"$LOGS/$key.log" 2>&1 || rc=$?
  c1=$(engine_ticks)
  line=$(tail -n 1 "$LOGS/$key.time")
  read -r T_WALL T_TOOLCPU T_RSS <<<"$(awk '{ printf "%s %.2f %s\n", $1, $2 + $3, $4 }' <<<"$line")"
  T_CPU=$(cpu_seconds "$c0" "$c1")
  return "$rc"
}
# timed KEY COMMAND...: try_timed, and on failure shows the end of the log and stops.
timed() {
  local key=$1
  if ! try_timed "$@"; then
    log "$key failed; the end of $LOGS/$key.log:"
    tail -n 25 "$LOGS/$key.log" >&2
    # The engine's unpack race (docs/ci.md, Troubleshooting): nothing of ours failed, and a
    # build right after it would be cached, so the run is not redone here.
    if grep -q 'failed to prepare extraction snapshot.*parent snapshot .* does not exist' "$LOGS/$key.log"; then
      log "that is the engine's unpack race (docs/ci.md, Troubleshooting), not a failure of the build; run the workload again (BENCH_APPEND=1 BENCH_WORKLOADS=...)"
    fi
    exit 1
  fi
}

# The disk the engines, the registry and /var/tmp share: stop, saying so, when it runs low.
disk_check() { # disk_check WHERE
  local free
  free=$(df -Pk /var/tmp | awk 'NR == 2 { printf "%d", $4 / 1048576 }')
  if [ "$free" -lt "$MIN_FREE_GB" ]; then
    die "only $free GiB free on the disk under /var/tmp ($1); stopping (BENCH_MIN_FREE_GB=$MIN_FREE_GB). Free space, or run fewer workloads (BENCH_WORKLOADS)"
  fi
}

# Our in-build report steps end their output with "(made from metadata in N ms, peak RSS N
# KiB)"; prints "MS KIB": their times summed (a split at a stage reports in two steps: the
# stage's steps, then the rest) and the largest peak RSS, or "- -".
report_cost() { # report_cost BUILD_LOG
  { grep -aoE 'made from metadata in [0-9]+ ms, peak RSS [0-9]+ KiB' "$1" || true; } |
    awk '{ ms += $5 } $9 + 0 >= rss { rss = $9 + 0 } END { if (NR) print ms, rss; else print "- -" }'
}

# Our in-build sync steps end their output with "squash-frontend sync: ..., in N ms" (or
# "N paths in N ms"); prints their times summed, or "-".
sync_cost() { # sync_cost BUILD_LOG
  { grep -aoE 'squash-frontend sync: .* in [0-9]+ ms$' "$1" || true; } |
    awk '{ ms += $(NF - 1) } END { if (NR) print ms; else print "-" }'
}

# build KEY DOCKERFILE CONTEXT [BUILDX ARGS...]: one timed build; the caller's arguments say
# where the image goes (-t TAG --load, or --output). Sets B_WALL, B_CPU, B_RSS, B_FEMS,
# B_PHASES ("STEP LAYERS UNPACK"), B_REPORT ("MS KIB" of our report, or "- -"), B_SYNC (ms of
# our sync steps, or "-").
build() {
  local key=$1 file=$2 ctx=$3 off fe
  shift 3
  off=$(dlog_size)
  timed "$key" docker buildx build --progress=plain --network host --provenance=false --sbom=false \
    -f "$file" "$@" "$ctx"
  B_WALL=$T_WALL
  B_CPU=$T_CPU
  fe=$(frontend_run "$off" "$LOGS/$key.log")
  B_RSS=${fe% *}
  B_FEMS=${fe#* }
  B_PHASES=$(phases_of "$LOGS/$key.log")
  B_REPORT=$(report_cost "$LOGS/$key.log")
  B_SYNC=$(sync_cost "$LOGS/$key.log")
}

# export_import SRC DST KEY: the `docker export | docker import` way on the image SRC, timed
# from `docker create` to the imported image. Sets E_WALL, E_CPU.
export_import() {
  local src=$1 dst=$2 key=$3
  docker image rm -f "$dst" >/dev/null 2>&1 || true
  # shellcheck disable=SC2016 # the inner script gets its values as $1, $2
  timed "$key" bash -c '
      set -euo pipefail
      c=$(docker create "$1" true)
      docker export "$c" | docker import - "$2"
      docker rm "$c" >/dev/null' _ "$src" "$dst"
  E_WALL=$T_WALL
  E_CPU=$T_CPU
}

add() { # add A B: sum of two figures, "-" if either is missing
  if [ "$1" = - ] || [ "$2" = - ]; then echo -; else awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a + b }'; fi
}

# A cold start for the next build: no build cache (steps, our squash step, the context),
# no leftover image of this tag; base and frontend images stay in the image store.
cold() {
  docker image rm -f "$1" >/dev/null 2>&1 || true
  docker builder prune -af >/dev/null
}

# ---------------------------------------------------------------------------
# Images: sizes, layers, blobs

# The layer blobs of an image as a registry would get them: `docker save` (containerd
# store) writes the stored, compressed blobs. Prints "DIGEST SIZE COMPRESSION TAR_SIZE" per
# layer, bottom first; TAR_SIZE is the layer uncompressed (what it unpacks from). A layer
# stored uncompressed (docker-squash loads plain tars) is weighed as `gzip -6` would send
# it, kind "tar(gzip-est)", its digest still the tar's.
layer_blobs() {
  local tag=$1 d layers
  d=$(mktemp -d "$WORK/save.XXXXXX")
  docker save -o "$d/img.tar" "$tag"
  # manifest.json: [{"Config":"blobs/sha256/..","RepoTags":[..],"Layers":["blobs/sha256/<hex>",..]}]
  layers=$(tar -xOf "$d/img.tar" manifest.json |
    awk '{ s = s $0 } END { sub(/.*"Layers":\[/, "", s); sub(/\].*/, "", s); gsub(/[" ]/, "", s); n = split(s, a, ","); for (i = 1; i <= n; i++) print a[i] }')
  [ -n "$layers" ] || die "docker save of $tag has no layers in manifest.json"
  tar -tvf "$d/img.tar" >"$d/list"
  local path size magic kind usize
  while IFS= read -r path; do
    size=$(awk -v p="$path" '$6 == p { print $3 }' "$d/list")
    # The first bytes tell the compression: 1f8b gzip, 28b52ffd zstd, else a plain tar.
    magic=$( (tar -xOf "$d/img.tar" "$path" 2>/dev/null || true) | head -c 4 | od -An -tx1 | tr -d ' \n')
    case $magic in
      1f8b*) kind=gzip usize=$(tar -xOf "$d/img.tar" "$path" | gzip -dc | wc -c) ;;
      28b52ffd) kind=zstd usize=- ;;
      *) kind="tar(gzip-est)" usize=$size size=$(tar -xOf "$d/img.tar" "$path" | gzip -6 | wc -c) ;;
    esac
    printf 'sha256:%s %s %s %s\n' "${path##*/}" "$size" "$kind" "$usize"
  done <<<"$layers"
  rm -rf "$d"
}

# The config fields a user sees in `docker run` (what the multi-stage trick and import lose).
CONFIG_FIELDS=(Env Cmd Entrypoint User WorkingDir Labels ExposedPorts)
config_of() { # config_of TAG: one line per field
  local f
  for f in "${CONFIG_FIELDS[@]}"; do printf '%s=%s\n' "$f" "$(docker image inspect -f "{{json .Config.$f}}" "$1")"; done
}
# config_kept TAG PLAIN_CONFIG_FILE: "yes", or "no (the fields that differ)".
config_kept() {
  local diff
  diff=$(diff <(config_of "$1") "$2" | sed -n 's/^< \([A-Za-z]*\)=.*/\1/p' | paste -sd, || true)
  if [ -z "$diff" ]; then echo yes; else echo "no (${diff//,/, })"; fi
}

declare -A BASE_BLOBS=() # base image -> its "DIGEST SIZE KIND TAR_SIZE" lines
declare -A REG_REF=()    # WL:WAY -> the registry reference an image was pulled from

# registry_blobs REF: layer_blobs' lines for an image in the local registry, from its
# manifest (the blobs as pushed) and the blobs themselves (their uncompressed size).
registry_blobs() {
  local ref=$1 repo tag url m digest size kind usize
  repo=${ref#*/} tag=${repo##*:} repo=${repo%:*}
  url=http://${ref%%/*}/v2/$repo
  m=$(curl -fsS -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
    -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' "$url/manifests/$tag")
  python3 -c 'import json, sys; [print(l["digest"], l["size"], l["mediaType"]) for l in json.load(sys.stdin)["layers"]]' <<<"$m" |
    while read -r digest size kind; do
      case $kind in
        *gzip*) kind=gzip usize=$(curl -fsS "$url/blobs/$digest" | gzip -dc | wc -c) ;;
        *zstd*) kind=zstd usize=- ;;
        *) kind=tar usize=$size ;;
      esac
      printf '%s %s %s %s\n' "$digest" "$size" "$kind" "$usize"
    done
}

# measure_image WL WAY TAG: records the image's sizes (the images of the last run).
measure_image() {
  local wl=$1 way=$2 tag=$3 base size layers blobs comp pull top kinds kept tars
  base=$(wl_base "$wl")
  [ -n "${BASE_BLOBS[$base]:-}" ] || BASE_BLOBS[$base]=$(layer_blobs "$base")
  if ! awk -F'\t' -v w="$wl" '$1 == w && $2 == "base-image" { f = 1 } END { exit !f }' "$SIZES"; then
    printf '%s\tbase-image\t-\t%s\t%s\n' "$wl" "$(awk '{ s += $2 } END { printf "%.0f\n", s }' <<<"${BASE_BLOBS[$base]}")" \
      "$(wc -l <<<"${BASE_BLOBS[$base]}")" >>"$SIZES"
  fi
  # On this engine (Docker 26, containerd store) .Size of a built image is its content size
  # (compressed blobs + manifest + config), so the uncompressed figure is the layer tars.
  size=$(docker image inspect -f '{{.Size}}' "$tag")
  layers=$(docker image inspect -f '{{len .RootFS.Layers}}' "$tag")
  # An image pulled from the registry (buildah's) is weighed there: the engine does not fetch
  # the blobs of layers it already has unpacked, so `docker save` cannot give them.
  if [ -n "${REG_REF[$wl:$way]:-}" ]; then blobs=$(registry_blobs "${REG_REF[$wl:$way]}"); else blobs=$(layer_blobs "$tag"); fi
  comp=$(awk '{ s += $2 } END { printf "%.0f\n", s }' <<<"$blobs")
  # What a host that already has the base image must pull: the layers it lacks, by their
  # content (diff ID): a blob compressed anew (buildah pushes the base's layer recompressed)
  # is not pulled again where the layer is there.
  pull=$(awk 'NR == FNR { have[$1] = 1; next } !($1 in have) { s += $2 } END { printf "%.0f\n", s }' \
    <(docker image inspect -f '{{range .RootFS.Layers}}{{println .}}{{end}}' "$base" | sed '/^$/d') \
    <(paste -d' ' <(docker image inspect -f '{{range .RootFS.Layers}}{{println .}}{{end}}' "$tag" | sed '/^$/d') \
      <(awk '{ print $2 }' <<<"$blobs")))
  top=$(tail -n 1 <<<"$blobs" | awk '{ print $2 }')
  kinds=$(awk '{ print $3 }' <<<"$blobs" | sort -u | paste -sd+)
  tars=$(awk '$4 == "-" { u = 1 } { s += $4 } END { if (u) print "-"; else printf "%.0f\n", s }' <<<"$blobs")
  kept=$(config_kept "$tag" "$LOGS/config-w$wl.txt")
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$wl" "$way" "$size" "$comp" "$layers" "$pull" "$top" "$kinds" "$kept" "$tars" >>"$SIZES"
}

# ---------------------------------------------------------------------------
# Workloads

# prepare WL: a build context with the Dockerfiles of the ways. Prints its directory.
prepare() {
  local ctx
  ctx=$WORK/ctx-$(wl_dir "$1")
  if [ ! -d "$ctx" ]; then
    mkdir -p "$ctx"
    cp -r "bench/$(wl_dir "$1")/." "$ctx/"
    mv "$ctx/Dockerfile" "$ctx/Dockerfile.plain"
    # Our way: the one line on top of the unchanged Dockerfile.
    { printf '# syntax=%s\n' "$FRONTEND"; cat "$ctx/Dockerfile.plain"; } >"$ctx/Dockerfile.squash"
    # The split way: the same, with the first stage named `app` and a stage `FROM app` from
    # the line the Dockerfile marks (`# bench: ... split ...`); the files are the same.
    if grep -q '^# bench: the "squash split"' "$ctx/Dockerfile.squash"; then
      awk '!named && toupper($1) == "FROM" { $0 = $0 " AS app"; named = 1 }
        /^# bench: the "squash split"/ && !staged { print "FROM app"; staged = 1 }
        { print }' "$ctx/Dockerfile.squash" >"$ctx/Dockerfile.split"
    fi
    # The manual trick: name the final stage, copy its whole filesystem onto scratch.
    # Everything the image config held (ENV, CMD, USER, WORKDIR, ...) is lost with it.
    awk '{ line[NR] = $0; if (toupper($1) == "FROM") last = NR }
      END {
        for (i = 1; i <= NR; i++) {
          if (i == last) {
            n = split(line[i], f, /[ \t]+/)
            if (n >= 4 && toupper(f[n - 1]) == "AS") name = f[n]
            else { name = "bench-final"; line[i] = line[i] " AS " name }
          }
          print line[i]
        }
        print "FROM scratch"
        print "COPY --from=" name " / /"
      }' "$ctx/Dockerfile.plain" >"$ctx/Dockerfile.multistage"
  fi
  echo "$ctx"
}

# way_args WAY CTX: the Dockerfile (W_FILE) and build arguments (W_ARGS) of a way. `off`
# (squash mode off: our frontend runs and returns the build as it is) is a probe.
way_args() {
  W_ARGS=()
  case $1 in
    plain) W_FILE=$2/Dockerfile.plain ;;
    multistage) W_FILE=$2/Dockerfile.multistage ;;
    full | base | off) W_FILE=$2/Dockerfile.squash W_ARGS=(--build-arg "SQUASH_MODE=$1") ;;
    split) W_FILE=$2/Dockerfile.split W_ARGS=(--build-arg SQUASH_MODE=base --build-arg SQUASH_SPLIT=app) ;;
    split-noreport) W_FILE=$2/Dockerfile.split W_ARGS=(--build-arg SQUASH_MODE=base --build-arg SQUASH_SPLIT=app --build-arg SQUASH_REPORT=off) ;;
    *) die "unknown way $1" ;;
  esac
}

# way_build WL WAY RUN PHASE TAG CTX [EXTRA ARGS]: one build of WAY into TAG, recorded; after
# a plain build, also the ways derived from it (export/import, docker-squash, crane).
way_build() {
  local wl=$1 way=$2 run=$3 phase=$4 tag=$5 ctx=$6
  shift 6
  case $way in
    buildah | buildah-squash)
      buildah_way "$wl" "$way" "$run" "$phase" "$tag" "$ctx" "$@"
      return 0
      ;;
  esac
  disk_check "before workload $wl $way"
  way_args "$way" "$ctx"
  build "w$wl-$way-$phase-$run" "$W_FILE" "$ctx" -t "$tag" --load "${W_ARGS[@]}" "$@"
  # shellcheck disable=SC2086 # B_PHASES and B_REPORT are words on purpose
  record "$wl" "$way" "$phase" "$run" "$B_WALL" "$B_CPU" "$B_RSS" "$B_FEMS" $B_PHASES $B_REPORT
  log "  workload $wl run $run $way: ${B_WALL}s (engine CPU ${B_CPU}s; squash step, export layers, unpack: $B_PHASES; report ms, KiB: $B_REPORT; sync ms: $B_SYNC)"
  if [ "$way" = plain ]; then
    config_of "$tag" >"$LOGS/config-w$wl.txt"
    derive "$wl" "$run" "$phase" "$tag" "$B_WALL" "$B_CPU"
  fi
}

# derive WL RUN PHASE PLAIN_TAG PLAIN_WALL PLAIN_CPU: the ways that start from the plain build.
derive() {
  local wl=$1 run=$2 phase=$3 src=$4 pw=$5 pc=$6 dst
  dst=${src%:*}
  # The large workloads: the build cache's copies of the steps go before the peers run.
  if [ "$wl" -ge 6 ]; then docker builder prune -af >/dev/null; fi
  # Export/import cannot be cached: in the cached workload, it runs in the first RUNS runs.
  if wl_has "$wl" import && { [ "$phase" != cached ] || [ "$run" -le "$RUNS" ]; }; then
    # The import way is the plain build followed by export | import of its container.
    export_import "$src" "$dst:import" "w$wl-import-$phase-$run"
    record "$wl" import "$phase" "$run" "$(add "$pw" "$E_WALL")" "$(add "$pc" "$E_CPU")" - - - - -
    record "$wl" export-import-only "$phase" "$run" "$E_WALL" "$E_CPU" - - - - -
    log "  workload $wl run $run import: ${pw}s + ${E_WALL}s export/import"
  fi
  local w
  for w in dsquash dsquash-base crane; do
    wl_has "$wl" "$w" || continue
    case $w in
      crane) crane_way "$wl" "$run" "$phase" "$src" "$dst:crane" "$pw" "$pc" ;;
      *) dsquash_way "$wl" "$w" "$run" "$phase" "$src" "$dst:$w" "$pw" "$pc" ;;
    esac
    # The large workloads: each image measured and removed before the next way runs.
    if [ "$wl" -ge 6 ] && [ "$run" = "$(wl_runs "$wl")" ]; then measure_and_drop "$wl" "$w"; fi
  done
  return 0
}

# The ways in a different order each run, so that a slow spell of the shared machine does
# not always land on the same way: rotated by the run's number, and reversed on even runs. A
# rotation alone keeps the cycle, so each way would always follow the same other one, and a
# build pays for some of what the build before it left the engine to do (measured, workload 5:
# the split rebuild took 0.81 s right after a base-mode build and 0.70 s right after a plain
# one, medians of five alternations, when the rotation had it after base mode every run).
# Reversed every other run, each way follows one neighbour in odd runs and the other in even.
rotated() { # rotated RUN WAY...
  local run=$1 i k
  shift
  for ((i = 0; i < $#; i++)); do
    if ((run % 2 == 0)); then
      k=$((($# - 1 - i + run - 1) % $# + 1))
    else
      k=$(((i + run - 1) % $# + 1))
    fi
    printf '%s ' "${!k}"
  done
}

# The ways of a workload that build (the derived ones follow the plain build).
own_ways() { # own_ways WL
  local w
  for w in $(wl_ways "$1"); do
    [[ $DERIVED_WAYS == *" $w "* ]] || printf '%s ' "$w"
  done
}

run_cold() { # workloads 1, 2, 3, 6, 7
  local wl=$1 ctx run way name runs
  name=$(wl_name "$wl")
  runs=$(wl_runs "$wl")
  ctx=$(prepare "$wl")
  local wargs=()
  mapfile -t wargs < <(wl_args "$wl")
  log "workload $wl ($name): $runs cold run(s) of each way: $(wl_ways "$wl")"
  for ((run = 1; run <= runs; run++)); do
    # shellcheck disable=SC2046 # the ways are words
    for way in $(rotated "$run" $(own_ways "$wl")); do
      cold "squash-bench/$name:$way"
      way_build "$wl" "$way" "$run" cold "squash-bench/$name:$way" "$ctx" "${wargs[@]}"
      # The large workloads: measure each image of the last run and drop it, so that the
      # disk holds one of them at a time (and the engine's cache is not left full).
      if [ "$run" = "$runs" ] && [ "$wl" -ge 6 ]; then measure_and_drop "$wl" "$way"; fi
    done
  done
  if [ "$wl" -lt 6 ]; then
    for way in $(wl_ways "$wl"); do
      if docker image inspect "squash-bench/$name:$way" >/dev/null 2>&1; then measure_image "$wl" "$way" "squash-bench/$name:$way"; fi
    done
    # Measured: the images go (BENCH_KEEP keeps them), so that the disk holds one workload's.
    [ "$KEEP" = 1 ] || docker image ls --format '{{.Repository}}:{{.Tag}}' "squash-bench/$name" | xargs -r docker image rm -f >/dev/null
  fi
  if [ "$PROBES" = 1 ] && [ "$wl" = 2 ]; then probe_cold_zstd "$ctx"; fi
}

# measure_and_drop WL WAY: the sizes of WAY's image, then the image removed (and the build
# cache emptied).
measure_and_drop() {
  local wl=$1 way=$2 name w ways=$2
  name=$(wl_name "$wl")
  for w in $ways; do
    if docker image inspect "squash-bench/$name:$w" >/dev/null 2>&1; then measure_image "$wl" "$w" "squash-bench/$name:$w"; fi
  done
  for w in $ways; do docker image rm -f "squash-bench/$name:$w" >/dev/null 2>&1 || true; done
  docker builder prune -af >/dev/null
}

# The cache every way of workloads 4 and 5 starts from: one untimed build of each. The
# Dockerfile's steps are shared (our frontend hands the same graph to the same Dockerfile
# frontend), so after the first build only each way's own last step runs.
WARMED=""
warm_toolchain() {
  local ctx=$1 way
  [ -z "$WARMED" ] || return 0
  log "warming the cache for workloads 4 and 5 (untimed)"
  for way in $(own_ways 5) off; do
    way_args "$way" "$ctx"
    build "warmup-$way" "$W_FILE" "$ctx" -t "squash-bench/toolchain-warm:$way" --load "${W_ARGS[@]}"
  done
  WARMED=1
}

run_cached() { # workload 4
  local ctx run way ways
  ctx=$(prepare 4)
  warm_toolchain "$ctx"
  # Squash mode off splits the added latency: running a frontend image at all, against
  # what our squash adds on top.
  ways=$(own_ways 4)
  if [ "$PROBES" = 1 ]; then ways="$ways off"; fi
  log "workload 4 (cached): $CACHED_RUNS fully cached rebuild(s) of each way"
  for ((run = 1; run <= CACHED_RUNS; run++)); do
    # shellcheck disable=SC2086 # the ways are words
    for way in $(rotated "$run" $ways); do
      way_build 4 "$way" "$run" cached "squash-bench/toolchain-warm:$way" "$ctx"
    done
  done
}

# What a registry that has the previous image receives for the new one: the bytes of the
# layers whose digest is new. Prints "BYTES LAYERS".
pushed_bytes() { # pushed_bytes OLD_BLOBS NEW_BLOBS (layer_blobs lines)
  awk 'NR == FNR { have[$1] = 1; next } !($1 in have) { s += $2 } { n++ } END { printf "%.0f %d\n", s, n }' \
    <(printf '%s\n' "$1") <(printf '%s\n' "$2")
}

run_incremental() { # workload 5
  local ctx run way tag
  local -A prev=()
  ctx=$(prepare 5)
  warm_toolchain "$ctx"
  log "workload 5 (incremental): $RUNS rebuild(s) of each way after a change in the last RUN"
  for ((run = 1; run <= RUNS; run++)); do
    if [ "$run" = "$RUNS" ]; then
      # The layers each way's image has before the last change, to weigh what it changes.
      for way in $(wl_ways 5); do
        tag=squash-bench/toolchain-warm:$way
        if docker image inspect "$tag" >/dev/null 2>&1; then prev[$way]=$(layer_blobs "$tag"); fi
      done
    fi
    # shellcheck disable=SC2046 # the ways are words
    for way in $(rotated "$run" $(own_ways 5)); do
      # A value no build has used: exactly the last RUN (and what follows it) runs again. Of
      # one length for every way (the way's name hashed), as the file it writes is what the
      # ways' bytes to push are compared on.
      way_build 5 "$way" "$run" incremental "squash-bench/toolchain-warm:$way" "$ctx" \
        --build-arg "APP_REV=bench-$$-$run-$(printf '%s' "$way" | sha256sum | cut -c1-8)"
    done
  done
  for way in "${!prev[@]}"; do
    tag=squash-bench/toolchain-warm:$way
    docker image inspect "$tag" >/dev/null 2>&1 || continue
    printf '5\t%s\t%s\n' "$way" "$(pushed_bytes "${prev[$way]}" "$(layer_blobs "$tag")" | tr ' ' '\t')" >>"$PUSH"
  done
  # Right here, while the cache still holds workload 1 (the cold workloads prune it).
  if [ "$PROBES" = 1 ]; then probe_incremental "$ctx"; fi
}

# ---------------------------------------------------------------------------
# Peers: docker-squash, crane, buildah; pinned, installed privately on first use.

PEER_CACHE=${SQUASH_ENGINE_CACHE:-$HOME/.cache/squash-frontend/engine}
DSQ_PIN=docker-squash==1.2.2
DSQ_VENV=$PEER_CACHE/docker-squash/venv
CRANE_PINS='sid: crane=0.20.7+ds1-5'
BUILDAH_PINS='bookworm: buildah=1.28.2+ds1-3+deb12u1+b3 golang-github-containers-common=0.50.1+ds1-4 libgpgme11=1.18.0-3+b1'
CRANE="" BUILDAH_ROOT="" BDIR=$STATE/buildah
declare -A FAILED=() # way -> the workload it failed on (it is not run again)

peers_wanted() { local w; for w in dsquash dsquash-base crane buildah-squash buildah; do [[ " $WAYS " == *" $w "* ]] && return 0; done; return 1; }

# install_peers: each selected peer, once; prints their versions into PEERS.
install_peers() {
  local v=()
  if [[ " $WAYS " == *" dsquash"* ]]; then
    if [ "$(cat "$DSQ_VENV/.pin" 2>/dev/null)" != "$DSQ_PIN" ]; then
      log "installing $DSQ_PIN into $DSQ_VENV"
      rm -rf "$DSQ_VENV"
      python3 -m venv "$DSQ_VENV" >&2
      "$DSQ_VENV/bin/pip" install --quiet --disable-pip-version-check "$DSQ_PIN" >&2
      echo "$DSQ_PIN" >"$DSQ_VENV/.pin"
    fi
    v+=("docker-squash $("$DSQ_VENV/bin/docker-squash" --version 2>&1 | tail -n 1) (PyPI, with $("$DSQ_VENV/bin/pip" list --disable-pip-version-check 2>/dev/null | awk '$1 == "docker" { print "docker-py " $2 }'), $("$DSQ_VENV/bin/python" --version))")
  fi
  if [[ " $WAYS " == *" crane "* ]] || [[ " $WAYS " == *" buildah"* ]]; then
    eval "$(scripts/engine.sh registry start)"
    v+=("local registry $(sed -n 's/^took: //p' "$PEER_CACHE/registry/root/.installed" 2>/dev/null)")
  fi
  if [[ " $WAYS " == *" crane "* ]]; then
    CRANE=$(scripts/engine.sh install-debs crane "$CRANE_PINS" usr/bin/crane)/usr/bin/crane
    v+=("crane $(sed -n 's/^took: crane=//p' "${CRANE%/usr/bin/crane}/.installed") (Debian sid)")
  fi
  if [[ " $WAYS " == *" buildah"* ]]; then
    BUILDAH_ROOT=$(scripts/engine.sh install-debs buildah "$BUILDAH_PINS" usr/bin/buildah)
    buildah_setup
    v+=("buildah $(buildah --version | awk '{ print $3 }') ($(sed -n 's/^took: //p' "$BUILDAH_ROOT/.installed"); Debian bookworm), runc $("$BUILDAH_RUNC" --version | awk 'NR == 1 { print $3 }'), storage driver overlay, --isolation oci, --network host")
  fi
  PEERS=$(printf '%s; ' "${v[@]}" | sed 's/; $//')
}

# buildah, unpacked: its own store, run dir and configuration under the state dir, the
# engine's runc (bookworm's) as its runtime.
BUILDAH_RUNC=""
buildah_setup() {
  buildah_cmd
  BUILDAH_RUNC=$PEER_CACHE/${SQUASH_ENGINE:-26}/root/usr/sbin/runc
  [ -x "$BUILDAH_RUNC" ] || die "no runc at $BUILDAH_RUNC (scripts/engine.sh install ${SQUASH_ENGINE:-26})"
  mkdir -p "$BDIR/conf" "$BDIR/root" "$BDIR/run"
  printf '{ "default": [{ "type": "insecureAcceptAnything" }] }\n' >"$BDIR/conf/policy.json"
  printf 'unqualified-search-registries = []\n[[registry]]\nlocation = "%s"\ninsecure = true\n' "$SQUASH_REGISTRY" >"$BDIR/conf/registries.conf"
  printf '[storage]\ndriver = "overlay"\ngraphroot = "%s"\nrunroot = "%s"\n' "$BDIR/root" "$BDIR/run" >"$BDIR/conf/storage.conf"
  printf '[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\nruntime = "runc"\n[engine.runtimes]\nrunc = ["%s"]\n' "$BUILDAH_RUNC" >"$BDIR/conf/containers.conf"
}
# buildah_cmd: the command line that runs the unpacked buildah with its configuration.
buildah_cmd() {
  BUILDAH=(env "LD_LIBRARY_PATH=$BUILDAH_ROOT/usr/lib/x86_64-linux-gnu" "CONTAINERS_CONF=$BDIR/conf/containers.conf"
    "CONTAINERS_STORAGE_CONF=$BDIR/conf/storage.conf" "CONTAINERS_REGISTRIES_CONF=$BDIR/conf/registries.conf"
    "$BUILDAH_ROOT/usr/bin/buildah")
}
BUILDAH=()
buildah() { "${BUILDAH[@]}" "$@"; }
# buildah_base IMAGE: the base image in buildah's store under its own name, through the
# registry (not timed: the base is there before a build, as in the engine's store).
buildah_base() {
  buildah inspect --type image "$1" >/dev/null 2>&1 && return 0
  docker tag "$1" "$SQUASH_REGISTRY/$1"
  docker push -q "$SQUASH_REGISTRY/$1" >/dev/null
  docker image rm "$SQUASH_REGISTRY/$1" >/dev/null
  buildah pull --signature-policy "$BDIR/conf/policy.json" --tls-verify=false -q "$SQUASH_REGISTRY/$1" >/dev/null
  buildah tag "$SQUASH_REGISTRY/$1" "$1"
}
# registry_to_engine REF TAG: pulls REF into the engine as TAG (to measure it; not timed).
registry_to_engine() {
  docker pull -q "$1" >/dev/null
  docker tag "$1" "$2"
  docker image rm "$1" >/dev/null
}
# The registry keeps what is pushed; the large workloads empty it between ways.
registry_reset() {
  local data=$STATE/registry/data
  [ -d "$data" ] && [ "$(du -sm "$data" | awk '{ print $1 }')" -gt 500 ] || return 0
  log "emptying the local registry ($(du -sh "$data" | awk '{ print $1 }'))"
  scripts/engine.sh registry stop >&2
  rm -rf "$data"
  eval "$(scripts/engine.sh registry start)"
  buildah_setup_registry
}
buildah_setup_registry() { if [ -n "$BUILDAH_ROOT" ]; then buildah_setup; fi; }

# peer_failed WL WAY KEY RC: notes why a peer's run gave no image; later workloads skip it.
peer_failed() {
  local wl=$1 way=$2 key=$3 rc=$4 why
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    why="did not finish within ${PEER_TIMEOUT} s (BENCH_PEER_TIMEOUT); stopped"
  else
    why="failed (exit $rc): $({ grep -aE 'ERROR|Error|error' "$LOGS/$key.log" || true; } | tail -n 1 | cut -c1-200)"
  fi
  note "$wl" "$way" "$why"
  FAILED[$way]=$wl
  log "  workload $wl $way: $why"
}
skip_failed() { # skip_failed WL WAY: true (and noted) when WAY already failed
  [ -n "${FAILED[$2]:-}" ] || return 1
  # On an earlier run of this workload: the note of that run says why, and stays.
  [ "${FAILED[$2]}" = "$1" ] || note "$1" "$2" "not run: it failed on workload ${FAILED[$2]} (see there)"
  return 0
}

# dsquash_way WL WAY RUN PHASE SRC DST PLAIN_WALL PLAIN_CPU: docker-squash on the plain image
# SRC (every layer, or the layers above the base for dsquash-base), loaded as DST.
dsquash_way() {
  local wl=$1 way=$2 run=$3 phase=$4 src=$5 dst=$6 pw=$7 pc=$8 key args=() n rc=0 tmp
  skip_failed "$wl" "$way" && return 0
  disk_check "before workload $wl $way"
  key=w$wl-$way-$phase-$run
  tmp=$WORK/dsquash
  rm -rf "$tmp"
  docker image rm -f "$dst" >/dev/null 2>&1 || true
  if [ "$way" = dsquash-base ]; then
    # -f takes a layer ID or a count of history entries; the IDs of this store's history are
    # not layer IDs, so: the entries above the base's.
    n=$(($(docker history -q "$src" | wc -l) - $(docker history -q "$(wl_base "$wl")" | wc -l)))
    args=(-f "$n")
  fi
  try_timed "$key" timeout -k 30 "$PEER_TIMEOUT" "$DSQ_VENV/bin/docker-squash" --tmp-dir "$tmp" "${args[@]}" -t "$dst" "$src" || rc=$?
  rm -rf "$tmp"
  if [ "$rc" = 0 ] && ! docker image inspect "$dst" >/dev/null 2>&1; then
    local why="docker-squash reports success, but the engine has no image $dst"
    # Once, the engine's own word: the same squash written to a file and loaded by hand.
    if [ -z "${FAILED[$way]:-}" ] && "$DSQ_VENV/bin/docker-squash" --tmp-dir "$tmp" "${args[@]}" -t "$dst" \
      --output-path "$WORK/dsquash.tar" "$src" >"$LOGS/$key-diagnose.log" 2>&1; then
      why="$why; \`docker load\` of its archive says: $({ docker load -i "$WORK/dsquash.tar" 2>&1 || true; } | tail -n 1 | cut -c1-200)"
    fi
    rm -rf "$tmp" "$WORK/dsquash.tar"
    note "$wl" "$way" "$why"
    FAILED[$way]=$wl
    log "  workload $wl $way: $why"
    return 0
  fi
  [ "$rc" = 0 ] || { peer_failed "$wl" "$way" "$key" "$rc"; return 0; }
  record "$wl" "$way" "$phase" "$run" "$(add "$pw" "$T_WALL")" "$(add "$pc" "$T_CPU")" - - - - - - - "$T_WALL" "$T_TOOLCPU" "$T_RSS"
  log "  workload $wl run $run $way: ${pw}s + ${T_WALL}s docker-squash (its CPU ${T_TOOLCPU}s, peak RSS ${T_RSS} KiB)"
}

# crane_way WL RUN PHASE SRC DST PLAIN_WALL PLAIN_CPU: the plain image pushed to the local
# registry, flattened there by crane; the time is the build's + the push's + crane's. The
# result is pulled into the engine (not timed) to be measured like the others.
crane_way() {
  local wl=$1 run=$2 phase=$3 src=$4 dst=$5 pw=$6 pc=$7 key ref rc=0 push_wall push_cpu
  skip_failed "$wl" crane && return 0
  disk_check "before workload $wl crane"
  [ "$wl" -lt 6 ] || registry_reset
  key=w$wl-crane-$phase-$run
  ref=$SQUASH_REGISTRY/squash-bench/$(wl_name "$wl")
  docker image rm -f "$dst" >/dev/null 2>&1 || true
  docker tag "$src" "$ref:plain"
  timed "$key-push" docker push -q "$ref:plain"
  push_wall=$T_WALL push_cpu=$T_CPU
  docker image rm "$ref:plain" >/dev/null
  try_timed "$key" timeout -k 30 "$PEER_TIMEOUT" "$CRANE" flatten "$ref:plain" -t "$ref:crane" || rc=$?
  [ "$rc" = 0 ] || { peer_failed "$wl" crane "$key" "$rc"; return 0; }
  record "$wl" crane "$phase" "$run" "$(add "$(add "$pw" "$push_wall")" "$T_WALL")" "$(add "$(add "$pc" "$push_cpu")" "$T_CPU")" - - - - - - - "$T_WALL" "$T_TOOLCPU" "$T_RSS"
  record "$wl" crane-push-only "$phase" "$run" "$push_wall" "$push_cpu" - - - - -
  log "  workload $wl run $run crane: ${pw}s + ${push_wall}s push + ${T_WALL}s flatten (its CPU ${T_TOOLCPU}s, peak RSS ${T_RSS} KiB)"
  registry_to_engine "$ref:crane" "$dst"
}

# buildah_way WL WAY RUN PHASE TAG CTX [ARGS]: buildah builds the plain Dockerfile in its own
# store (--squash: one layer; --layers=false: the base's layers + one); the time is the build's
# (its layers stay uncompressed in its store). Then, not in that time, pushed to the registry
# (which compresses them; timed apart) and pulled into the engine to be measured.
buildah_way() {
  local wl=$1 way=$2 run=$3 phase=$4 tag=$5 ctx=$6 key rc=0 mode ref
  shift 6
  skip_failed "$wl" "$way" && return 0
  disk_check "before workload $wl $way"
  [ "$wl" -lt 6 ] || registry_reset
  key=w$wl-$way-$phase-$run
  case $way in buildah-squash) mode=--squash ;; *) mode=--layers=false ;; esac
  buildah_base "$(wl_base "$wl")"
  buildah rmi -f "$tag" >/dev/null 2>&1 || true
  buildah rm -a >/dev/null 2>&1 || true
  docker image rm -f "$tag" >/dev/null 2>&1 || true
  try_timed "$key" timeout -k 30 "$PEER_TIMEOUT" "${BUILDAH[@]}" bud \
    --signature-policy "$BDIR/conf/policy.json" --network host --isolation oci --pull=never \
    "$mode" -f "$ctx/Dockerfile.plain" -t "$tag" "$@" "$ctx" || rc=$?
  [ "$rc" = 0 ] || { peer_failed "$wl" "$way" "$key" "$rc"; buildah rm -a >/dev/null 2>&1 || true; return 0; }
  # The engine does none of buildah's work: no engine CPU.
  record "$wl" "$way" "$phase" "$run" "$T_WALL" - - - - - - - - "$T_WALL" "$T_TOOLCPU" "$T_RSS"
  log "  workload $wl run $run $way: ${T_WALL}s (its CPU ${T_TOOLCPU}s, peak RSS ${T_RSS} KiB)"
  ref=$SQUASH_REGISTRY/squash-bench/$(wl_name "$wl"):$way
  timed "$key-push" "${BUILDAH[@]}" push --signature-policy "$BDIR/conf/policy.json" --tls-verify=false -q "$tag" "docker://$ref"
  record "$wl" "$way-push-only" "$phase" "$run" "$T_WALL" "$T_CPU" - - - - - - - "$T_WALL" "$T_TOOLCPU" "$T_RSS"
  docker pull -q "$ref" >/dev/null
  docker tag "$ref" "$tag"
  docker image rm "$ref" >/dev/null
  REG_REF[$wl:$way]=$ref
  buildah rmi -f "$tag" >/dev/null 2>&1 || true
}
# ---------------------------------------------------------------------------
# Probes: where the time of a squashed build goes, and what a user can set about it

# The export compresses each new layer with gzip, on one core. The same builds with
# `--output type=image,compression=uncompressed|gzip|zstd` separate the compression from the
# rest. Workload 5 (incremental), full squash: it compresses the whole filesystem again
# while a plain build compresses one small layer. (Uncompressed only where all layers are
# new: for layers that already have a gzip blob, BuildKit would first decompress them.)
# Workload 2 (cold, 1 GiB), zstd for plain and full: the user's knob where compression
# costs the most. Each probe runs right after its workload, while that one's cache is there.
probe_incremental() { # probe_incremental CTX
  local ctx=$1 comp run
  log "probe: workload 5, full squash with layers uncompressed, gzip and zstd; plain with zstd"
  for ((run = 1; run <= PROBE_RUNS; run++)); do
    for comp in $(rotated "$run" uncompressed gzip zstd); do
      probe_build 5 full "$comp" "$run" "$ctx" incremental --build-arg "APP_REV=probe-$$-$run-$comp"
    done
    probe_build 5 plain zstd "$run" "$ctx" incremental --build-arg "APP_REV=probe-$$-$run-zstd-plain"
  done
}

probe_cold_zstd() { # probe_cold_zstd CTX (workload 2)
  local ctx=$1 way run
  log "probe: workload 2 cold, plain and full squash with zstd layers"
  for ((run = 1; run <= PROBE_RUNS; run++)); do
    for way in $(rotated "$run" plain full); do
      cold "squash-bench/probe:$way-zstd"
      probe_build 2 "$way" zstd "$run" "$ctx" cold
    done
  done
}

probe_build() { # probe_build WL WAY COMPRESSION RUN CTX PHASE [ARGS]
  local wl=$1 way=$2 comp=$3 run=$4 ctx=$5 phase=$6
  shift 6
  way_args "$way" "$ctx"
  # type=image stores the image in the engine's image store as --load does, with the new
  # layers compressed as asked (existing blobs, e.g. the base's, stay gzip).
  build "probe-w$wl-$way-$comp-$run" "$W_FILE" "$ctx" \
    --output "type=image,name=squash-bench/probe:$way-$comp,compression=$comp" "${W_ARGS[@]}" "$@"
  # shellcheck disable=SC2086 # B_PHASES is three words on purpose
  record "$wl" "$way" "probe-$phase-$comp" "$run" "$B_WALL" "$B_CPU" "$B_RSS" "$B_FEMS" $B_PHASES
  log "  probe workload $wl $way $comp: ${B_WALL}s (engine CPU ${B_CPU}s; squash step, export layers, unpack: $B_PHASES)"
}

# ---------------------------------------------------------------------------
# Report

# figure WL WAY PHASE COLUMN: "median min max n" of one figure over the runs ("- - - 0" if
# none). Not called `stat`: that is the coreutils command dlog_size uses.
figure() {
  awk -F'\t' -v w="$1" -v y="$2" -v p="$3" -v c="$4" '$1 == w && $2 == y && $3 == p && $c != "-" { print $c }' "$RES" |
    sort -g | awk '{ v[NR] = $1 } END {
      if (NR == 0) { print "- - - 0"; exit }
      m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
      print m, v[1], v[NR], NR }'
}
median() { figure "$@" | awk '{ print $1 }'; }
runs_of() { figure "$@" | awk '{ print $4 }'; }
secs() { # "median (min-max)" in seconds
  figure "$@" | awk '$4 == 0 { print "-"; next } $4 == 1 { printf "%.2f\n", $1; next } { printf "%.2f (%.2f-%.2f)\n", $1, $2, $3 }'
}
cpu() { figure "$@" | awk '$4 == 0 { print "-"; next } { printf "%.1f\n", $1 }'; }
# phases WL WAY PHASE: medians of "squash step / export layers / unpack" in seconds.
phases() {
  local s l u
  s=$(figure "$1" "$2" "$3" 9 | awk '$4 == 0 { print "-"; next } { printf "%.1f\n", $1 }')
  l=$(figure "$1" "$2" "$3" 10 | awk '$4 == 0 { print "-"; next } { printf "%.1f\n", $1 }')
  u=$(figure "$1" "$2" "$3" 11 | awk '$4 == 0 { print "-"; next } { printf "%.1f\n", $1 }')
  if [ "$l" = - ]; then echo -; else echo "$s / $l / $u"; fi
}
size_of() { # size_of WL WAY FIELD(3 .Size, 4 compressed, 5 layers, 6 pull, 7 top, 8 kinds, 9 kept, 10 tars)
  awk -F'\t' -v w="$1" -v y="$2" -v c="$3" '$1 == w && $2 == y { print $c }' "$SIZES"
}
mb() { if [ -z "$1" ] || [ "$1" = - ]; then echo -; else awk -v b="$1" 'BEGIN { printf "%.1f", b / 1e6 }'; fi; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || a == "" || b == "" || b == 0) print "-"; else printf "%.2f", a / b }'; }
le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a != "-" && b != "-" && a != "" && b != "" && a + 0 <= b + 0) }'; }
verdict() { if le "$1" "$2"; then echo pass; else echo "**miss**"; fi; }
# Sizes: a squashed layer and the trick's hold the same files, and their gzip streams can
# differ by some bytes (directory times of the build); within 0.01 % counts as a tie.
size_verdict() {
  if le "$1" "$2"; then
    echo pass
  elif le "$1" "$(awk -v b="$2" 'BEGIN { printf "%.0f", b * 1.0001 }')"; then
    echo "pass (tie: +$(awk -v a="$1" -v b="$2" 'BEGIN { print a - b }') bytes)"
  else
    echo "**miss**"
  fi
}
vs_plain() { # vs_plain WL WAY PHASE: median wall time minus the plain build's, in ms
  awk -v a="$(median "$1" "$2" "$3" 5)" -v b="$(median "$1" plain "$3" 5)" \
    'BEGIN { if (a == "-" || b == "-") print "-"; else printf "%+.0f", (a - b) * 1000 }'
}
way_label() {
  case $1 in
    plain) echo "plain build" ;;
    multistage) echo "multi-stage trick" ;;
    full) echo "squash full" ;;
    base) echo "squash base" ;;
    split) echo "squash split (base, SQUASH_SPLIT=app)" ;;
    split-noreport) echo "squash split, SQUASH_REPORT=off" ;;
    import) echo "plain + export/import" ;;
    off) echo "squash off (probe)" ;;
    dsquash) echo "plain + docker-squash (all layers)" ;;
    dsquash-base) echo "plain + docker-squash -f N (base kept)" ;;
    crane) echo "plain + push + crane flatten" ;;
    buildah-squash) echo "buildah bud --squash" ;;
    buildah) echo "buildah bud --layers=false" ;;
  esac
}
rss_of() { # rss_of WL WAY PHASE: the frontend's peak RSS in MiB, "median (max)"
  figure "$1" "$2" "$3" 7 | awk '$4 == 0 { print "-"; next } { printf "%.1f (max %.1f)\n", $1 / 1024, $3 / 1024 }'
}
# tool WL WAY PHASE: a peer's own step: "wall s / CPU s / peak RSS MiB" (medians), or "-".
tool() {
  local w c r
  w=$(figure "$1" "$2" "$3" 14 | awk '$4 == 0 { print "-"; next } { printf "%.2f\n", $1 }')
  [ "$w" != - ] || { echo -; return 0; }
  c=$(figure "$1" "$2" "$3" 15 | awk '{ printf "%.1f\n", $1 }')
  r=$(figure "$1" "$2" "$3" 16 | awk '{ printf "%.0f\n", $1 / 1024 }')
  echo "$w / $c / $r"
}
# A row of a way that has no figures: what the notes say of it.
noted_row() { # noted_row WL WAY COLUMNS
  local t
  t=$(note_of "$1" "$2")
  [ -n "$t" ] || t="no figures"
  printf '| %s | %s |%s\n' "$(way_label "$2")" "$t" "$(printf ' - |%.0s' $(seq 2 "$3"))"
}
# The report our in-build step prints, per squash way of a workload: ms, share, RSS.
report_cost_rows() { # report_cost_rows WL PHASE
  local wl=$1 phase=$2 way ms share rss
  for way in full base split; do
    [ "$(runs_of "$wl" "$way" "$phase" 12)" != 0 ] || continue
    ms=$(median "$wl" "$way" "$phase" 12)
    share=$(awk -F'\t' -v w="$wl" -v y="$way" -v p="$phase" '$1 == w && $2 == y && $3 == p && $12 != "-" { print 100 * $12 / 1000 / $5 }' "$RES" |
      sort -g | awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.1f\n", m }')
    rss=$(figure "$wl" "$way" "$phase" 13 | awk '{ print $3 }')
    printf '%s %s %s %s %s\n' "$way" "$ms" "$share" "$rss" "$(median "$wl" "$way" "$phase" 5)"
  done
}

report() {
  local wl way phase cols
  echo "Run of $BENCH_DATE. Machine: $MACHINE; shared with other jobs, so timings are noisy: medians with min-max are shown, and differences of a few percent are noise.${QUIET:+ $QUIET}"
  echo
  echo "Engine: $ENGINE."
  echo
  echo "Frontend image $FRONTEND: $(mb "$FRONTEND_SIZE") MB (\`docker image inspect .Size\`, which this engine gives as compressed content), $(mb "$FRONTEND_TARS") MB uncompressed."
  echo
  [ -z "$PEERS" ] || { echo "Peers: $PEERS."; echo; }
  # Counted from the figures: a run that added workloads (BENCH_APPEND) may have run them more
  # or fewer times than the rest.
  local per="" w
  for w in $(tr " " "\n" <<<"$WORKLOADS" | sort -n); do
    per+="$w: $(runs_of "$w" plain "$(wl_phase "$w")" 5), "
  done
  echo "Runs of each way, by workload: ${per%, }; $PROBE_RUNS of each probe; a peer's own step is stopped after $PEER_TIMEOUT s. Cold: \`docker builder prune -af\` before each build; base and frontend images stay (in buildah's store too). Wall times in seconds: median (min-max); a derived way's time is the plain build's plus its own steps'. Engine CPU: CPU seconds of dockerd (BuildKit runs in it) and containerd during the build, median; RUN steps are not in it. Peer alone: the peer's own step (docker-squash; crane flatten; buildah bud), wall s / CPU s (user + system, its child processes included) / peak RSS MiB (the largest process of it), from GNU time. Phases (from BuildKit's progress output, medians, s): the squash step (our copy or diff; the trick's \`COPY --from\`) / exporting layers (tar + gzip) / unpacking into the image store. Sizes are of the last run's image: uncompressed = the layer tars, compressed = the layer blobs as pushed (a layer stored uncompressed is weighed as gzip -6 would send it: \"tar(gzip-est)\"). MB = 10^6 bytes, MiB = 2^20 bytes. The whole benchmark took $ELAPSED."
  for wl in $WORKLOADS; do
    phase=$(wl_phase "$wl")
    echo
    echo "#### $(wl_title "$wl")"
    echo
    if [ "$phase" = cold ]; then
      echo "| way | wall s | engine CPU s | peer alone: s / CPU s / RSS MiB | phases s | uncompressed MB | compressed MB | layers | to pull, host has base, MB | config kept | frontend peak RSS MiB |"
      echo "|---|---|---|---|---|---|---|---|---|---|---|"
      for way in $(wl_ways "$wl"); do
        if [ "$(runs_of "$wl" "$way" "$phase" 5)" = 0 ]; then noted_row "$wl" "$way" 10; continue; fi
        echo "| $(way_label "$way") | $(secs "$wl" "$way" "$phase" 5) | $(cpu "$wl" "$way" "$phase" 6) | $(tool "$wl" "$way" "$phase") | $(phases "$wl" "$way" "$phase") | $(mb "$(size_of "$wl" "$way" 10)") | $(mb "$(size_of "$wl" "$way" 4)") ($(size_of "$wl" "$way" 8)) | $(size_of "$wl" "$way" 5) | $(mb "$(size_of "$wl" "$way" 6)") | $(size_of "$wl" "$way" 9) | $(rss_of "$wl" "$way" "$phase") |"
      done
      echo
      local extra=""
      [ "$(runs_of "$wl" export-import-only "$phase" 5)" = 0 ] || extra="Export/import alone: $(secs "$wl" export-import-only "$phase" 5) s. "
      [ "$(runs_of "$wl" crane-push-only "$phase" 5)" = 0 ] || extra="${extra}The push of the plain image before crane flatten: $(secs "$wl" crane-push-only "$phase" 5) s. "
      for way in buildah-squash buildah; do
        [ "$(runs_of "$wl" "$way-push-only" "$phase" 5)" = 0 ] || extra="${extra}\`buildah push\` of the $(way_label "$way") image to the registry (not in its time; compresses its layers): $(secs "$wl" "$way-push-only" "$phase" 5) s. "
      done
      [ -z "$(size_of "$wl" base 7)" ] || extra="${extra}The layer base mode adds: $(mb "$(size_of "$wl" base 7)") MB compressed."
      echo "$extra"
    else
      echo "| way | wall s | engine CPU s | peer alone: s / CPU s / RSS MiB | phases s | vs plain, ms (medians) | frontend process ms | frontend peak RSS MiB | layers | bytes to push after the change |"
      echo "|---|---|---|---|---|---|---|---|---|---|"
      for way in $(wl_ways "$wl") off; do
        if [ "$(runs_of "$wl" "$way" "$phase" 5)" = 0 ]; then
          [ -z "$(note_of "$wl" "$way")" ] || noted_row "$wl" "$way" 9
          continue
        fi
        echo "| $(way_label "$way") | $(secs "$wl" "$way" "$phase" 5) | $(cpu "$wl" "$way" "$phase" 6) | $(tool "$wl" "$way" "$phase") | $(phases "$wl" "$way" "$phase") | $(vs_plain "$wl" "$way" "$phase") | $(median "$wl" "$way" "$phase" 8) | $(rss_of "$wl" "$way" "$phase") | $(push_of "$wl" "$way" 4) | $(push_bytes_of "$wl" "$way") |"
      done
      echo
      [ "$(runs_of "$wl" export-import-only "$phase" 5)" = 0 ] || echo "Export/import alone: $(secs "$wl" export-import-only "$phase" 5) s."
      if [ "$wl" = 5 ] && [ -s "$PUSH" ]; then
        echo
        echo "Bytes to push after the change: the compressed layers of the last run's image whose digest its image before that run did not have (what a registry that has the previous image receives)."
      fi
    fi
    if [ "$phase" = cold ] && [ -n "$(report_cost_rows "$wl" "$phase")" ]; then
      echo
      echo "The report (made by our in-build step, printed in the build's output; from each build's line \`(made from metadata in N ms, peak RSS N KiB)\`):"
      echo
      echo "| way | report ms (median) | share of the build's wall time (median) | report peak RSS MiB (max) |"
      echo "|---|---|---|---|"
      report_cost_rows "$wl" "$phase" | while read -r way cols share rss _; do
        echo "| $(way_label "$way") | $cols | $share % | $(awk -v k="$rss" 'BEGIN { printf "%.1f", k / 1024 }') |"
      done
    fi
  done
  if grep -q $'\tprobe-' "$RES"; then
    echo
    echo "#### Where the time goes: compression of the new layers"
    echo
    echo "The same builds with \`--output type=image,name=...,compression=uncompressed|gzip|zstd\` (\`--load\` gives gzip). gzip minus uncompressed is what the engine's gzip costs."
    echo
    echo "| build | way | compression | wall s | engine CPU s | phases s |"
    echo "|---|---|---|---|---|---|"
    local p comp
    for p in probe-incremental probe-cold; do
      for wl in 5 2; do
        for way in plain multistage full; do
          for comp in uncompressed gzip zstd; do
            [ "$(runs_of "$wl" "$way" "$p-$comp" 5)" != 0 ] || continue
            echo "| workload $wl ${p#probe-} | $(way_label "$way") | $comp | $(secs "$wl" "$way" "$p-$comp" 5) | $(cpu "$wl" "$way" "$p-$comp" 6) | $(phases "$wl" "$way" "$p-$comp") |"
          done
        done
      done
    done
  fi
  echo
  echo "#### Targets"
  echo
  targets
}
push_of() { awk -F'\t' -v w="$1" -v y="$2" -v c="$3" '$1 == w && $2 == y { v = $c } END { print (v == "" ? "-" : v) }' "$PUSH"; }
push_bytes_of() { # "N bytes (M MB)" or "-"
  local b
  b=$(push_of "$1" "$2" 3)
  if [ "$b" = - ]; then echo -; else echo "$b ($(mb "$b") MB)"; fi
}
has_wl() { [[ " $WORKLOADS " == *" $1 "* ]]; }
# verdicts in capitals in the target lines the issues ask for
pm() { if le "$1" "$2"; then echo PASS; else echo "**MISS**"; fi; }

targets() {
  local wl f p m plain_c fu mu pu fc mc pc pull top maxrss phase added
  echo "| target | figure | verdict |"
  echo "|---|---|---|"
  for wl in 1 2 3 5; do
    has_wl "$wl" || continue
    phase=$(wl_phase "$wl")
    f=$(median "$wl" full "$phase" 5)
    p=$(median "$wl" plain "$phase" 5)
    m=$(median "$wl" multistage "$phase" 5)
    echo "| workload $wl ($phase): full squash wall time <= 1.15x the plain build | ${f} s / ${p} s = $(ratio "$f" "$p")x | $(verdict "$(ratio "$f" "$p")" 1.15) |"
    echo "| workload $wl ($phase): full squash wall time <= 1.05x the multi-stage trick | ${f} s / ${m} s = $(ratio "$f" "$m")x | $(verdict "$(ratio "$f" "$m")" 1.05) |"
  done
  if has_wl 4; then
    plain_c=$(median 4 plain cached 5)
    for m in full base split; do
      [ "$(runs_of 4 "$m" cached 5)" != 0 ] || continue
      added=$(awk -v a="$(median 4 "$m" cached 5)" -v b="$plain_c" 'BEGIN { printf "%.0f", (a - b) * 1000 }')
      echo "| fully cached rebuild, squash $m: added latency <= 150 ms (median of $(runs_of 4 "$m" cached 5)) | $(median 4 "$m" cached 5) s - ${plain_c} s = ${added} ms | $(verdict "$added" 150) |"
    done
  fi
  for wl in 1 2 3; do
    has_wl "$wl" || continue
    fu=$(size_of "$wl" full 10) mu=$(size_of "$wl" multistage 10) pu=$(size_of "$wl" plain 10)
    fc=$(size_of "$wl" full 4) mc=$(size_of "$wl" multistage 4) pc=$(size_of "$wl" plain 4)
    echo "| workload $wl: squashed size <= the multi-stage trick's (uncompressed; compressed) | $(mb "$fu") vs $(mb "$mu") MB; $(mb "$fc") vs $(mb "$mc") MB | $(size_verdict "$fu" "$mu"); $(size_verdict "$fc" "$mc") |"
    echo "| workload $wl: squashed size <= the plain build's (uncompressed; compressed) | $(mb "$fu") vs $(mb "$pu") MB; $(mb "$fc") vs $(mb "$pc") MB | $(size_verdict "$fu" "$pu"); $(size_verdict "$fc" "$pc") |"
    pull=$(size_of "$wl" base 6)
    top=$(size_of "$wl" base 7)
    echo "| workload $wl: base mode, bytes to pull for a host with the base <= its squashed layer + 1% | $pull bytes to pull, layer $top bytes (plain build: $(mb "$(size_of "$wl" plain 6)") MB to pull) | $(verdict "$pull" "$(awk -v t="$top" 'BEGIN { printf "%.0f", t * 1.01 }')") |"
  done
  # The report's cost (on the toolchain workload, cold).
  if has_wl 1; then
    local way ms share rss wall
    while read -r way ms share rss wall; do
      echo "| report cost, workload 1 (cold), $(way_label "$way"): <= 5 % of the build's wall time | $ms ms of $wall s = $share % (median of the runs' shares) | $(pm "$share" 5) |"
      echo "| report cost, workload 1 (cold), $(way_label "$way"): peak RSS <= 20 MB | $(mb "$((rss * 1024))") MB ($rss KiB, max of the runs) | $(pm "$((rss * 1024))" 20000000) |"
    done < <(report_cost_rows 1 cold)
  fi
  # Split squash after an app-only change, with the report and without.
  local way s pl bl sl sb ab
  for way in split split-noreport; do
    has_wl 5 && [ "$(runs_of 5 "$way" incremental 5)" != 0 ] || continue
    s=$(median 5 "$way" incremental 5) pl=$(median 5 plain incremental 5)
    echo "| workload 5 (incremental): $(way_label "$way") wall time <= 1.5x the plain build | ${s} s / ${pl} s = $(ratio "$s" "$pl")x | $(pm "$(ratio "$s" "$pl")" 1.5) |"
    bl=$(size_of 1 base-image 5)
    [ -n "$bl" ] || bl=$(docker image inspect -f '{{len .RootFS.Layers}}' "$(wl_base 5)" 2>/dev/null || echo -)
    sl=$(push_of 5 "$way" 4)
    echo "| workload 5: $(way_label "$way") layers <= the base's layers + 2 | $sl layers, base $bl | $(pm "$sl" "$((bl + 2))") |"
    sb=$(push_of 5 "$way" 3) ab=$(push_of 5 plain 3)
    echo "| workload 5: $(way_label "$way") bytes to push after the change <= the app layer + 1 % (the plain build's changed layer) | $sb bytes vs $ab bytes | $(pm "$sb" "$(awk -v t="$ab" 'BEGIN { printf "%.0f", t * 1.01 }')") |"
  done
  # Against the peers: our full and base squash faster than each peer that ran, per workload.
  local peers w best bw ok
  for wl in 1 2 3 5 6 7; do
    has_wl "$wl" || continue
    phase=$(wl_phase "$wl")
    peers=""
    for w in dsquash dsquash-base crane buildah-squash buildah; do
      [ "$(runs_of "$wl" "$w" "$phase" 5)" = 0 ] || peers="${peers:+$peers }$w"
    done
    [ -n "$peers" ] || continue
    best="" bw=""
    for w in $peers; do
      p=$(median "$wl" "$w" "$phase" 5)
      if [ -z "$bw" ] || le "$p" "$bw"; then bw=$p best=$w; fi
    done
    for m in full base; do
      f=$(median "$wl" "$m" "$phase" 5)
      [ "$f" != - ] || continue
      ok=PASS
      awk -v a="$f" -v b="$bw" 'BEGIN { exit !(a < b) }' || ok="**MISS**"
      echo "| workload $wl ($phase): squash $m faster than every peer that ran (${peers// /, }) | ${f} s vs the fastest, $(way_label "$best"), ${bw} s | $ok |"
    done
    for w in dsquash dsquash-base crane buildah-squash buildah; do
      if [ "$(runs_of "$wl" "$w" "$phase" 5)" = 0 ] && [ -n "$(note_of "$wl" "$w")" ]; then
        echo "| workload $wl: $(way_label "$w") | $(note_of "$wl" "$w") | not compared |"
      fi
    done
  done
  for wl in 6 7; do
    has_wl "$wl" || continue
    local full_c base_blobs real
    pull=$(size_of "$wl" base 6)
    # The real delta: what the finished image holds above the base, compressed, as the full
    # squash's one layer gives it, less the base's own blobs.
    full_c=$(size_of "$wl" full 4)
    base_blobs=$(size_of "$wl" base-image 4)
    real=$(awk -v a="$full_c" -v b="$base_blobs" 'BEGIN { if (a == "") print "-"; else printf "%.0f", a - b }')
    echo "| workload $wl: base mode, bytes to pull for a host with the base <= the real delta + 1 % (full squash's layer less the base's blobs) | $pull vs $real bytes | $(pm "$pull" "$(awk -v t="$real" 'BEGIN { printf "%.0f", t * 1.01 }')") |"
  done
  if has_wl 7; then
    maxrss=$(awk -F'\t' '$1 == 7 && $7 != "-" && $7 + 0 > m { m = $7 + 0 } END { print m + 0 }' "$RES")
    echo "| workload 7 ($(wl_mib 7) MiB): frontend peak RSS <= 30 MB | $(mb "$((maxrss * 1024))") MB ($maxrss KiB, max of full and base) | $(pm "$((maxrss * 1024))" 30000000) |"
    maxrss=$(awk -F'\t' '$1 == 7 && $13 != "-" && $13 + 0 > m { m = $13 + 0 } END { print m + 0 }' "$RES")
    echo "| workload 7 ($(wl_mib 7) MiB): our in-build step (the report) peak RSS <= 30 MB | $(mb "$((maxrss * 1024))") MB ($maxrss KiB) | $(pm "$((maxrss * 1024))" 30000000) |"
  fi
  echo "| frontend image <= 8 MB | $(mb "$FRONTEND_SIZE") MB (.Size); $(mb "$FRONTEND_TARS") MB uncompressed | $(verdict "$FRONTEND_SIZE" 8000000); $(verdict "$FRONTEND_TARS" 8000000) |"
  maxrss=$(awk -F'\t' '$7 != "-" && $7 + 0 > m { m = $7 + 0 } END { print m + 0 }' "$RES")
  if [ "$maxrss" = 0 ]; then
    echo "| frontend peak RSS <= 30 MB | no frontend run line found in $DLOG | **miss** |"
  else
    echo "| frontend peak RSS <= 30 MB | max $(mb "$((maxrss * 1024))") MB over $(awk -F'\t' '$7 != "-"' "$RES" | wc -l) runs | $(verdict "$((maxrss * 1024))" 30000000) |"
  fi
}

# Puts the report between the markers of BENCHMARKS.md, keeping the prose around them.
write_markdown() {
  local report=$1 begin='<!-- bench:begin (written by scripts/bench.sh) -->' end='<!-- bench:end -->'
  [ "$OUT" != - ] || return 0
  if [ ! -f "$OUT" ] || ! grep -qF "$begin" "$OUT"; then
    # shellcheck disable=SC2016 # backquotes are Markdown here
    { [ -f "$OUT" ] && cat "$OUT" && echo || printf '# Benchmarks\n\nRun with `make bench`.\n\n'; printf '%s\n%s\n' "$begin" "$end"; } >"$OUT.tmp"
    mv "$OUT.tmp" "$OUT"
  fi
  awk -v b="$begin" -v e="$end" -v f="$report" '
    $0 == b { print; while ((getline l < f) > 0) print l; skip = 1; next }
    $0 == e { skip = 0 }
    !skip { print }' "$OUT" >"$OUT.tmp"
  mv "$OUT.tmp" "$OUT"
  log "wrote $OUT"
}

# What the report says about the machine and the engine, kept with the figures.
write_meta() {
  BENCH_DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
  MACHINE="$(nproc) cores ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)), $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) memory, kernel $(uname -r)"
  ENGINE="Docker $(docker version --format '{{.Server.Version}}') (client $(docker version --format '{{.Client.Version}}'); $(docker version --format '{{range .Server.Components}}{{.Name}} {{.Version}}, {{end}}' | sed 's/, $//')), $(docker buildx version | awk '{ print $1, $2 }'), storage driver $(docker info --format '{{.Driver}}') with the containerd image store ($(docker info --format '{{json .DriverStatus}}' | grep -o 'io.containerd.snapshotter[^"]*' | head -n1))"
  {
    printf 'BENCH_DATE=%q\nMACHINE=%q\nENGINE=%q\n' "$BENCH_DATE" "$MACHINE" "$ENGINE"
    printf 'WORKLOADS=%q\nRUNS=%q\nCACHED_RUNS=%q\nPROBE_RUNS=%q\n' "$WORKLOADS" "$RUNS" "$CACHED_RUNS" "$PROBE_RUNS"
    printf 'FRONTEND=%q\nFRONTEND_SIZE=%q\nFRONTEND_TARS=%q\n' "$FRONTEND" "$FRONTEND_SIZE" "$FRONTEND_TARS"
    printf 'WAYS=%q\nLARGE_RUNS=%q\nPEER_TIMEOUT=%q\nLARGE1_MIB=%q\nLARGE2_MIB=%q\nPEERS=%q\nQUIET=%q\n' \
      "$WAYS" "$LARGE_RUNS" "$PEER_TIMEOUT" "$LARGE1_MIB" "$LARGE2_MIB" "$PEERS" "$QUIET"
  } >"$META"
}

cleanup() {
  if [ "$KEEP" != 1 ]; then
    docker image ls --format '{{.Repository}}:{{.Tag}}' 'squash-bench/*' 2>/dev/null | xargs -r docker image rm -f >/dev/null 2>&1 || true
    docker builder prune -af >/dev/null 2>&1 || true
  fi
  if [ -n "$BUILDAH_ROOT" ]; then buildah rm -a >/dev/null 2>&1 || true; fi
  rm -rf "$WORK"
}

# BENCH_WAIT_FOR=FILE: before measuring, wait (polling each minute) up to BENCH_WAIT_MIN
# minutes (default 45) for FILE to exist, a sign that the shared machine is quiet; without
# it, the run goes ahead and the report says so.
wait_quiet() {
  local f=${BENCH_WAIT_FOR:-} max=${BENCH_WAIT_MIN:-45} waited=0
  [ -n "$f" ] || return 0
  while [ ! -e "$f" ] && [ "$waited" -lt "$max" ]; do
    log "waiting for $f (the machine quiet): $waited of $max min"
    sleep 60
    waited=$((waited + 1))
  done
  if [ ! -e "$f" ]; then
    QUIET="The machine was not quiet: other work shared its 2 cores during this run (the sign of a quiet machine had not come after $max min of waiting)."
    log "$f did not appear in $max min; running anyway"
  else
    QUIET="The machine was otherwise quiet during this run."
  fi
}

# ---------------------------------------------------------------------------

main() {
  if [ "${BENCH_REPORT_ONLY:-0}" = 1 ]; then
    [ -r "$META" ] || die "no earlier run in $LOGS"
    # shellcheck source=/dev/null
    . "$META"
    report >"$LOGS/report.md"
    cat "$LOGS/report.md"
    write_markdown "$LOGS/report.md"
    return 0
  fi
  WORKLOADS=$(parse_workloads)
  WAYS=" $(parse_ways)"
  preflight
  local before="" before_s=0 wl f
  if [ "${BENCH_APPEND:-0}" = 1 ] && [ -r "$META" ]; then
    # The figures of the workloads run now replace theirs; the others stay.
    before=$(sed -n 's/^WORKLOADS=//p' "$META" | tr -d "'\\")
    before_s=$(sed -n 's/^ELAPSED_S=//p' "$META")
    for wl in $WORKLOADS; do
      awk -F'\t' -v w="$wl" '$1 != w' "$RES" >"$RES.tmp" && mv "$RES.tmp" "$RES"
      for f in "$SIZES" "$PUSH" "$NOTES"; do
        awk -F'\t' -v w="$wl" '$1 != w' "$f" >"$f.tmp" && mv "$f.tmp" "$f"
      done
    done
    log "appending to the run in $LOGS (workloads $before)"
  else
    rm -rf "$LOGS" && mkdir -p "$LOGS"
    : >"$RES"
    : >"$SIZES"
  fi
  touch "$PUSH" "$NOTES"
  local now=$WORKLOADS
  WORKLOADS=$(BENCH_WORKLOADS="$before $now" parse_workloads)
  WORK=$(mktemp -d /var/tmp/squash-bench.XXXXXX)
  trap cleanup EXIT
  ENGINE_PIDS=$(engine_pids)
  [ -n "$ENGINE_PIDS" ] || log "warning: engine processes unknown (not started by scripts/engine.sh); no engine CPU figures"
  FRONTEND_SIZE=$(docker image inspect -f '{{.Size}}' "$FRONTEND")
  FRONTEND_TARS=$(layer_blobs "$FRONTEND" | awk '{ s += $4 } END { printf "%.0f\n", s }')
  if peers_wanted; then install_peers; log "peers: $PEERS"; fi
  wait_quiet
  write_meta
  log "workloads: $now; ways: $WAYS; $RUNS run(s) per way ($LARGE_RUNS for the large ones), $CACHED_RUNS for the cached rebuild; logs in $LOGS"
  for wl in $now; do
    case $wl in
      1 | 2 | 3 | 6 | 7) run_cold "$wl" ;;
      4) run_cached ;;
      5) run_incremental ;;
    esac
  done
  local took=$((SECONDS - T0 + ${before_s:-0}))
  ELAPSED="$((took / 60)) min $((took % 60)) s"
  [ -z "$before" ] || ELAPSED="$ELAPSED (in more than one invocation)"
  printf 'ELAPSED=%q\nELAPSED_S=%q\n' "$ELAPSED" "$took" >>"$META"
  report >"$LOGS/report.md"
  cat "$LOGS/report.md"
  write_markdown "$LOGS/report.md"
  log "done in $ELAPSED"
}

main "$@"


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
# Ways:  plain       the Dockerfile as is, no syntax line
#        multistage  the final stage named, + `FROM scratch` + `COPY --from=<final> / /`
#        full        `# syntax=<frontend>` on top, --build-arg SQUASH_MODE=full
#        base        the same, --build-arg SQUASH_MODE=base
#        import      the plain build, then `docker export` of a container | `docker import`
# Workloads (BENCH_WORKLOADS, numbers or names):
#        1 toolchain    ~300 MB C/C++ toolchain installed with apt, app built, toolchain purged
#        2 churn        1 GiB of random files written, half deleted in a later layer
#        3 smallfiles   50,000 small files over 5 layers
#        4 cached       workload 1 rebuilt with nothing changed (fully cached)
#        5 incremental  workload 1 rebuilt after a change to the last RUN (a build argument
#                       only that RUN uses)
#
# Environment:
#   BENCH_RUNS         runs per way for workloads 1, 2, 3, 5 (default 3)
#   BENCH_CACHED_RUNS  runs per way for workload 4 (default: the larger of 5 and BENCH_RUNS)
#   BENCH_WORKLOADS    which workloads, e.g. "1 4" or "toolchain,cached" (default: all)
#   BENCH_PROBES       1 (default) also runs the "where the time goes" probes, 0 skips them
#   BENCH_PROBE_RUNS   runs of each probe build (default 1)
#   BENCH_OUT          the Markdown file to write (default BENCHMARKS.md; "-" writes none)
#   BENCH_KEEP         1 keeps the benchmark's images (squash-bench/*) afterwards
#   BENCH_REPORT_ONLY  1 rewrites the report from the last run's figures (target/bench/),
#                      without building anything
#   BENCH_APPEND       1 keeps the last run's figures and adds (or redoes) the workloads of
#                      BENCH_WORKLOADS, e.g. to finish a run that was interrupted
#   FRONTEND_IMAGE     the frontend image to benchmark (default squash-frontend:dev)
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
CACHED_RUNS=${BENCH_CACHED_RUNS:-$((RUNS > 5 ? RUNS : 5))}
PROBES=${BENCH_PROBES:-1}
PROBE_RUNS=${BENCH_PROBE_RUNS:-1}
OUT=${BENCH_OUT:-BENCHMARKS.md}
KEEP=${BENCH_KEEP:-0}
STATE=${SQUASH_ENGINE_STATE:-/var/tmp/squash-engine}
DLOG=${SQUASH_DAEMON_LOG:-$STATE/${SQUASH_ENGINE:-26}-c8d/dockerd.log}
EDIR=$(dirname "$DLOG") # the engine's state dir, where scripts/engine.sh started it
# The ways built for the table; import is derived from the plain build of the same run.
BUILD_WAYS=(plain multistage full base)
ALL_WAYS=(plain multistage full base import)
LOGS=$REPO/target/bench # per-build logs and the raw figures, kept for a closer look (gitignored)
RES=$LOGS/results.tsv   # workload way phase run wall_s engine_cpu_s fe_rss_kib fe_ms squash_step_s export_layers_s unpack_s
SIZES=$LOGS/sizes.tsv   # workload way inspect_size compressed layers pull top_layer compression config_kept layer_tars
META=$LOGS/meta.sh      # machine, engine, settings of the run (for BENCH_REPORT_ONLY)
BENCH_DATE="" MACHINE="" ENGINE="" ELAPSED="" WORKLOADS="" FRONTEND_SIZE="" FRONTEND_TARS=""
T0=$SECONDS

log() { printf 'bench: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------------------
# Settings and preflight

# Workload numbers from BENCH_WORKLOADS (numbers or names, commas or spaces). Run order is
# 1, 4, 5, 2, 3: 4 and 5 start from the cache workload 1's last run leaves behind, so their
# warm-up costs seconds instead of another cold build.
parse_workloads() {
  local w out=()
  for w in $(tr ',' ' ' <<<"${BENCH_WORKLOADS:-1 2 3 4 5}"); do
    case $w in
      1 | toolchain) out+=(1) ;;
      2 | churn) out+=(2) ;;
      3 | smallfiles) out+=(3) ;;
      4 | cached) out+=(4) ;;
      5 | incremental) out+=(5) ;;
      *) die "unknown workload '$w' in BENCH_WORKLOADS (1-5 or toolchain, churn, smallfiles, cached, incremental)" ;;
    esac
  done
  for w in 1 4 5 2 3; do
    if printf '%s\n' "${out[@]}" | grep -qx "$w"; then printf '%s ' "$w"; fi
  done
}

wl_name() { case $1 in 1) echo toolchain ;; 2) echo churn ;; 3) echo smallfiles ;; 4) echo cached ;; 5) echo incremental ;; esac; }
wl_dir() { case $1 in 1 | 4 | 5) echo toolchain ;; 2) echo churn ;; 3) echo smallfiles ;; esac; }
wl_phase() { case $1 in 4) echo cached ;; 5) echo incremental ;; *) echo cold ;; esac; }
wl_title() {
  case $1 in
    1) echo "1. toolchain: ~300 MB C/C++ toolchain installed with apt, app built, toolchain purged; Debian base; cold builds" ;;
    2) echo "2. churn: 1 GiB of random files written, half deleted in a later layer; busybox base; cold builds" ;;
    3) echo "3. smallfiles: 50,000 small files over 5 layers; busybox base; cold builds" ;;
    4) echo "4. cached: workload 1 rebuilt with no change (fully cached)" ;;
    5) echo "5. incremental: workload 1 rebuilt after a one-line change in the last RUN" ;;
  esac
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

record() { printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$RES"; }

# timed KEY COMMAND...: runs COMMAND with its output in $LOGS/KEY.log, its wall time measured
# by GNU time into a file of its own, and the engine's CPU time around it; on failure shows the
# end of the log and stops. Sets T_WALL, T_CPU.
timed() {
  local key=$1 c0 c1
  shift
  # Flush what earlier builds wrote, so this one does not pay for their writeback.
  sync
  c0=$(engine_ticks)
  if ! /usr/bin/time -f '%e' -o "$LOGS/$key.time" "$@" >"$LOGS/$key.log" 2>&1; then
    log "$key failed; the end of $LOGS/$key.log:"
    tail -n 25 "$LOGS/$key.log" >&2
    exit 1
  fi
  c1=$(engine_ticks)
  T_WALL=$(tail -n 1 "$LOGS/$key.time")
  T_CPU=$(cpu_seconds "$c0" "$c1")
}

# build KEY DOCKERFILE CONTEXT [BUILDX ARGS...]: one timed build; the caller's arguments say
# where the image goes (-t TAG --load, or --output). Sets B_WALL, B_CPU, B_RSS, B_FEMS,
# B_PHASES ("STEP LAYERS UNPACK").
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
# layer, bottom first; TAR_SIZE is the layer uncompressed (what it unpacks from).
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
      *) kind=tar usize=$size ;;
    esac
    printf 'sha256:%s %s %s %s\n' "${path##*/}" "$size" "$kind" "$usize"
  done <<<"$layers"
  rm -rf "$d"
}

# The config fields a user sees in `docker run` (what the multi-stage trick and import lose).
config_of() { docker image inspect -f '{{json .Config.Env}} {{json .Config.Cmd}} {{json .Config.Entrypoint}} {{.Config.User}} {{.Config.WorkingDir}} {{json .Config.Labels}} {{json .Config.ExposedPorts}}' "$1"; }

declare -A BASE_BLOBS=() # base image -> its "DIGEST SIZE KIND TAR_SIZE" lines

# measure_image WL WAY TAG: records the image's sizes (the images of the last run).
measure_image() {
  local wl=$1 way=$2 tag=$3 base size layers blobs comp pull top kinds kept tars
  base=$(wl_base "$wl")
  [ -n "${BASE_BLOBS[$base]:-}" ] || BASE_BLOBS[$base]=$(layer_blobs "$base")
  # On this engine (Docker 26, containerd store) .Size of a built image is its content size
  # (compressed blobs + manifest + config), so the uncompressed figure is the layer tars.
  size=$(docker image inspect -f '{{.Size}}' "$tag")
  layers=$(docker image inspect -f '{{len .RootFS.Layers}}' "$tag")
  blobs=$(layer_blobs "$tag")
  comp=$(awk '{ s += $2 } END { print s + 0 }' <<<"$blobs")
  # What a host that already has the base image must pull: the blobs it lacks.
  pull=$(awk 'NR == FNR { have[$1] = 1; next } !($1 in have) { s += $2 } END { print s + 0 }' \
    <(printf '%s\n' "${BASE_BLOBS[$base]}") <(printf '%s\n' "$blobs"))
  top=$(tail -n 1 <<<"$blobs" | awk '{ print $2 }')
  kinds=$(awk '{ print $3 }' <<<"$blobs" | sort -u | paste -sd+)
  tars=$(awk '$4 == "-" { u = 1 } { s += $4 } END { print u ? "-" : s + 0 }' <<<"$blobs")
  if [ "$(config_of "$tag")" = "$(config_of "squash-bench/$(wl_name "$wl"):plain")" ]; then kept=yes; else kept=no; fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$wl" "$way" "$size" "$comp" "$layers" "$pull" "$top" "$kinds" "$kept" "$tars" >>"$SIZES"
}

# ---------------------------------------------------------------------------
# Workloads

# prepare WL: a build context with the three Dockerfiles. Prints its directory.
prepare() {
  local ctx
  ctx=$WORK/ctx-$(wl_dir "$1")
  if [ ! -d "$ctx" ]; then
    mkdir -p "$ctx"
    cp -r "bench/$(wl_dir "$1")/." "$ctx/"
    mv "$ctx/Dockerfile" "$ctx/Dockerfile.plain"
    # Our way: the one line on top of the unchanged Dockerfile.
    { printf '# syntax=%s\n' "$FRONTEND"; cat "$ctx/Dockerfile.plain"; } >"$ctx/Dockerfile.squash"
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
    *) die "unknown way $1" ;;
  esac
}

# way_build WL WAY RUN PHASE TAG CTX [EXTRA ARGS]: one build of WAY into TAG, recorded; after
# a plain build (up to run IMPORT_RUNS), also the export/import way.
IMPORT_RUNS=0
way_build() {
  local wl=$1 way=$2 run=$3 phase=$4 tag=$5 ctx=$6
  shift 6
  way_args "$way" "$ctx"
  build "w$wl-$way-$phase-$run" "$W_FILE" "$ctx" -t "$tag" --load "${W_ARGS[@]}" "$@"
  # shellcheck disable=SC2086 # B_PHASES is three words on purpose
  record "$wl" "$way" "$phase" "$run" "$B_WALL" "$B_CPU" "$B_RSS" "$B_FEMS" $B_PHASES
  log "  workload $wl run $run $way: ${B_WALL}s (engine CPU ${B_CPU}s; squash step, export layers, unpack: $B_PHASES)"
  if [ "$way" = plain ] && [ "$run" -le "$IMPORT_RUNS" ]; then
    # The import way is the plain build followed by export | import of its container.
    export_import "$tag" "squash-bench/$(wl_name "$wl"):import" "w$wl-import-$phase-$run"
    record "$wl" import "$phase" "$run" "$(add "$B_WALL" "$E_WALL")" "$(add "$B_CPU" "$E_CPU")" - - - - -
    record "$wl" export-import-only "$phase" "$run" "$E_WALL" "$E_CPU" - - - - -
    log "  workload $wl run $run import: ${B_WALL}s + ${E_WALL}s export/import"
  fi
}

# The ways in a different order each run, so that a slow spell of the shared machine does
# not always land on the same way.
rotated() { # rotated RUN WAY...
  local run=$1 i
  shift
  for ((i = 0; i < $#; i++)); do
    local k=$(((i + run - 1) % $# + 1))
    printf '%s ' "${!k}"
  done
}

run_cold() { # workloads 1, 2, 3
  local wl=$1 ctx run way name
  name=$(wl_name "$wl")
  ctx=$(prepare "$wl")
  IMPORT_RUNS=$RUNS
  log "workload $wl ($name): $RUNS cold run(s) of each way"
  for ((run = 1; run <= RUNS; run++)); do
    for way in $(rotated "$run" "${BUILD_WAYS[@]}"); do
      cold "squash-bench/$name:$way"
      way_build "$wl" "$way" "$run" cold "squash-bench/$name:$way" "$ctx"
    done
  done
  for way in "${ALL_WAYS[@]}"; do measure_image "$wl" "$way" "squash-bench/$name:$way"; done
  if [ "$PROBES" = 1 ] && [ "$wl" = 2 ]; then probe_cold_zstd "$ctx"; fi
}

# The cache every way of workloads 4 and 5 starts from: one untimed build of each. The
# Dockerfile's steps are shared (our frontend hands the same graph to the same Dockerfile
# frontend), so after the first build only each way's own last step runs.
WARMED=""
warm_toolchain() {
  local ctx=$1 way
  [ -z "$WARMED" ] || return 0
  log "warming the cache for workloads 4 and 5 (untimed)"
  for way in "${BUILD_WAYS[@]}" off; do
    way_args "$way" "$ctx"
    build "warmup-$way" "$W_FILE" "$ctx" -t "squash-bench/toolchain-warm:$way" --load "${W_ARGS[@]}"
  done
  WARMED=1
}

run_cached() { # workload 4
  local ctx run way ways=("${BUILD_WAYS[@]}")
  ctx=$(prepare 4)
  warm_toolchain "$ctx"
  # Squash mode off splits the added latency: running a frontend image at all, against
  # what our squash adds on top.
  if [ "$PROBES" = 1 ]; then ways+=(off); fi
  # Export/import cannot be cached: its cost is the same in every run, so fewer runs of it.
  IMPORT_RUNS=$RUNS
  log "workload 4 (cached): $CACHED_RUNS fully cached rebuild(s) of each way"
  for ((run = 1; run <= CACHED_RUNS; run++)); do
    for way in $(rotated "$run" "${ways[@]}"); do
      way_build 4 "$way" "$run" cached "squash-bench/toolchain-warm:$way" "$ctx"
    done
  done
}

run_incremental() { # workload 5
  local ctx run way
  ctx=$(prepare 5)
  warm_toolchain "$ctx"
  IMPORT_RUNS=$RUNS
  log "workload 5 (incremental): $RUNS rebuild(s) of each way after a change in the last RUN"
  for ((run = 1; run <= RUNS; run++)); do
    for way in $(rotated "$run" "${BUILD_WAYS[@]}"); do
      # A value no build has used: exactly the last RUN (and what follows it) runs again.
      way_build 5 "$way" "$run" incremental "squash-bench/toolchain-warm:$way" "$ctx" \
        --build-arg "APP_REV=bench-$$-$run-$way"
    done
  done
  # Right here, while the cache still holds workload 1 (the cold workloads prune it).
  if [ "$PROBES" = 1 ]; then probe_incremental "$ctx"; fi
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
    import) echo "plain + export/import" ;;
    off) echo "squash off (probe)" ;;
  esac
}
rss_of() { # rss_of WL WAY PHASE: the frontend's peak RSS in MiB, "median (max)"
  figure "$1" "$2" "$3" 7 | awk '$4 == 0 { print "-"; next } { printf "%.1f (max %.1f)\n", $1 / 1024, $3 / 1024 }'
}

report() {
  local wl way phase
  echo "Run of $BENCH_DATE. Machine: $MACHINE; shared with other jobs, so timings are noisy: medians with min-max are shown, and differences of a few percent are noise."
  echo
  echo "Engine: $ENGINE."
  echo
  echo "Frontend image $FRONTEND: $(mb "$FRONTEND_SIZE") MB (\`docker image inspect .Size\`, which this engine gives as compressed content), $(mb "$FRONTEND_TARS") MB uncompressed."
  echo
  echo "Runs: $RUNS of each way (cold and incremental), $CACHED_RUNS (fully cached), $PROBE_RUNS of each probe. Cold: \`docker builder prune -af\` before each build; base and frontend images stay. Wall times in seconds: median (min-max). Engine CPU: CPU seconds of dockerd (BuildKit runs in it) and containerd during the build, median; RUN steps are not in it. Phases (from BuildKit's progress output, medians, s): the squash step (our copy or diff; the trick's \`COPY --from\`) / exporting layers (tar + gzip) / unpacking into the image store. Sizes are of the last run's image: uncompressed = the layer tars, compressed = the layer blobs as pushed. MB = 10^6 bytes, MiB = 2^20 bytes. The whole benchmark took $ELAPSED."
  for wl in $WORKLOADS; do
    phase=$(wl_phase "$wl")
    echo
    echo "#### $(wl_title "$wl")"
    echo
    if [ "$phase" = cold ]; then
      echo "| way | wall s | engine CPU s | phases s | uncompressed MB | compressed MB | layers | to pull, host has base, MB | config kept | frontend peak RSS MiB |"
      echo "|---|---|---|---|---|---|---|---|---|---|"
      for way in "${ALL_WAYS[@]}"; do
        echo "| $(way_label "$way") | $(secs "$wl" "$way" "$phase" 5) | $(cpu "$wl" "$way" "$phase" 6) | $(phases "$wl" "$way" "$phase") | $(mb "$(size_of "$wl" "$way" 10)") | $(mb "$(size_of "$wl" "$way" 4)") ($(size_of "$wl" "$way" 8)) | $(size_of "$wl" "$way" 5) | $(mb "$(size_of "$wl" "$way" 6)") | $(size_of "$wl" "$way" 9) | $(rss_of "$wl" "$way" "$phase") |"
      done
      echo
      echo "Export/import alone: $(secs "$wl" export-import-only "$phase" 5) s. The layer base mode adds: $(mb "$(size_of "$wl" base 7)") MB compressed. \`.Size\` as this engine reports it (content: compressed blobs + config): $(for way in "${ALL_WAYS[@]}"; do printf '%s %s MB; ' "$way" "$(mb "$(size_of "$wl" "$way" 3)")"; done | sed 's/; $//')."
    else
      echo "| way | wall s | engine CPU s | phases s | vs plain, ms (medians) | frontend process ms | frontend peak RSS MiB |"
      echo "|---|---|---|---|---|---|---|"
      for way in "${ALL_WAYS[@]}" off; do
        [ "$(runs_of "$wl" "$way" "$phase" 5)" != 0 ] || continue
        echo "| $(way_label "$way") | $(secs "$wl" "$way" "$phase" 5) | $(cpu "$wl" "$way" "$phase" 6) | $(phases "$wl" "$way" "$phase") | $(vs_plain "$wl" "$way" "$phase") | $(median "$wl" "$way" "$phase" 8) | $(rss_of "$wl" "$way" "$phase") |"
      done
      echo
      echo "Export/import alone: $(secs "$wl" export-import-only "$phase" 5) s."
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

targets() {
  local wl f p m plain_c fu mu pu fc mc pc pull top maxrss phase added
  echo "| target | figure | verdict |"
  echo "|---|---|---|"
  for wl in 1 2 3 5; do
    [[ " $WORKLOADS " == *" $wl "* ]] || continue
    phase=$(wl_phase "$wl")
    f=$(median "$wl" full "$phase" 5)
    p=$(median "$wl" plain "$phase" 5)
    m=$(median "$wl" multistage "$phase" 5)
    echo "| workload $wl ($phase): full squash wall time <= 1.15x the plain build | ${f} s / ${p} s = $(ratio "$f" "$p")x | $(verdict "$(ratio "$f" "$p")" 1.15) |"
    echo "| workload $wl ($phase): full squash wall time <= 1.05x the multi-stage trick | ${f} s / ${m} s = $(ratio "$f" "$m")x | $(verdict "$(ratio "$f" "$m")" 1.05) |"
  done
  if [[ " $WORKLOADS " == *" 4 "* ]]; then
    plain_c=$(median 4 plain cached 5)
    for m in full base; do
      added=$(awk -v a="$(median 4 "$m" cached 5)" -v b="$plain_c" 'BEGIN { printf "%.0f", (a - b) * 1000 }')
      echo "| fully cached rebuild, squash $m: added latency <= 150 ms (median of $(runs_of 4 "$m" cached 5)) | $(median 4 "$m" cached 5) s - ${plain_c} s = ${added} ms | $(verdict "$added" 150) |"
    done
  fi
  for wl in 1 2 3; do
    [[ " $WORKLOADS " == *" $wl "* ]] || continue
    fu=$(size_of "$wl" full 10) mu=$(size_of "$wl" multistage 10) pu=$(size_of "$wl" plain 10)
    fc=$(size_of "$wl" full 4) mc=$(size_of "$wl" multistage 4) pc=$(size_of "$wl" plain 4)
    echo "| workload $wl: squashed size <= the multi-stage trick's (uncompressed; compressed) | $(mb "$fu") vs $(mb "$mu") MB; $(mb "$fc") vs $(mb "$mc") MB | $(size_verdict "$fu" "$mu"); $(size_verdict "$fc" "$mc") |"
    echo "| workload $wl: squashed size <= the plain build's (uncompressed; compressed) | $(mb "$fu") vs $(mb "$pu") MB; $(mb "$fc") vs $(mb "$pc") MB | $(size_verdict "$fu" "$pu"); $(size_verdict "$fc" "$pc") |"
    pull=$(size_of "$wl" base 6)
    top=$(size_of "$wl" base 7)
    echo "| workload $wl: base mode, bytes to pull for a host with the base <= its squashed layer + 1% | $pull bytes to pull, layer $top bytes (plain build: $(mb "$(size_of "$wl" plain 6)") MB to pull) | $(verdict "$pull" "$(awk -v t="$top" 'BEGIN { printf "%.0f", t * 1.01 }')") |"
  done
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
  } >"$META"
}

cleanup() {
  if [ "$KEEP" != 1 ]; then
    docker image ls --format '{{.Repository}}:{{.Tag}}' 'squash-bench/*' 2>/dev/null | xargs -r docker image rm -f >/dev/null 2>&1 || true
    docker builder prune -af >/dev/null 2>&1 || true
  fi
  rm -rf "$WORK"
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
  preflight
  local before="" before_s=0 wl
  if [ "${BENCH_APPEND:-0}" = 1 ] && [ -r "$META" ]; then
    # The figures of the workloads run now replace theirs; the others stay.
    before=$(sed -n 's/^WORKLOADS=//p' "$META" | tr -d "'\\")
    before_s=$(sed -n 's/^ELAPSED_S=//p' "$META")
    for wl in $WORKLOADS; do
      awk -F'\t' -v w="$wl" '$1 != w' "$RES" >"$RES.tmp" && mv "$RES.tmp" "$RES"
      awk -F'\t' -v w="$wl" '$1 != w' "$SIZES" >"$SIZES.tmp" && mv "$SIZES.tmp" "$SIZES"
    done
    log "appending to the run in $LOGS (workloads $before)"
  else
    rm -rf "$LOGS" && mkdir -p "$LOGS"
    : >"$RES"
    : >"$SIZES"
  fi
  local now=$WORKLOADS
  WORKLOADS=$(BENCH_WORKLOADS="$before $now" parse_workloads)
  WORK=$(mktemp -d /var/tmp/squash-bench.XXXXXX)
  trap cleanup EXIT
  ENGINE_PIDS=$(engine_pids)
  [ -n "$ENGINE_PIDS" ] || log "warning: engine processes unknown (not started by scripts/engine.sh); no engine CPU figures"
  FRONTEND_SIZE=$(docker image inspect -f '{{.Size}}' "$FRONTEND")
  FRONTEND_TARS=$(layer_blobs "$FRONTEND" | awk '{ s += $4 } END { print s + 0 }')
  write_meta
  log "workloads: $now; $RUNS run(s) per way, $CACHED_RUNS for the cached rebuild; logs in $LOGS"
  for wl in $now; do
    case $wl in
      1 | 2 | 3) run_cold "$wl" ;;
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

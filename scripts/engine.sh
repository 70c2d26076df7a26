#!/usr/bin/env bash
# engine.sh - a private Docker engine (dockerd + buildx) for squash-frontend tests.
#
# The dev/CI machines have a docker CLI but no engine, no buildx and no registry
# access; only Debian's mirror is reachable. So the engine comes from Debian
# trixie's packages (unpacked, never installed), runc from the machine's own
# release, and base images are made locally from Debian packages.
#
# Usage:
#   scripts/engine.sh install                 fetch + unpack the engine into the cache (idempotent)
#   scripts/engine.sh start classic|c8d       start (or reuse) an engine; prints `export` lines
#   scripts/engine.sh env classic|c8d         print the `export` lines of a running engine
#   scripts/engine.sh stop [classic|c8d]      stop the engine(s) this script started (idempotent)
#   scripts/engine.sh images                  create the local base images (idempotent)
#   scripts/engine.sh status                  which mode runs, versions, storage driver
#   scripts/engine.sh selftest                build/run/save/network-host/syntax checks on the running engine
#
#   eval "$(scripts/engine.sh start c8d)" && scripts/engine.sh images
#
# Environment:
#   SQUASH_ENGINE_CACHE   downloads + unpacked engine  (default ~/.cache/squash-frontend/engine)
#   SQUASH_ENGINE_STATE   per-mode daemon state        (default /var/tmp/squash-engine)
#   SQUASH_ENGINE_START_TIMEOUT  seconds to wait for dockerd (default 90)
#   SQUASH_ENGINE_MIRROR  Debian mirror (default http://deb.debian.org/debian)
#
# Everything but stdout `export` lines goes to stderr.
set -euo pipefail

CACHE=${SQUASH_ENGINE_CACHE:-$HOME/.cache/squash-frontend/engine}
STATE=${SQUASH_ENGINE_STATE:-/var/tmp/squash-engine}
MIRROR=${SQUASH_ENGINE_MIRROR:-http://deb.debian.org/debian}
START_TIMEOUT=${SQUASH_ENGINE_START_TIMEOUT:-90}
ROOT=$CACHE/root            # dpkg -x target: trixie engine + bookworm runc
CLIENT_BIN=$CACHE/client-bin # only `docker` (trixie CLI), so PATH shadows nothing else
MODES=(classic c8d)
# Engine packages from trixie. docker.io no longer ships the CLI (docker-cli),
# docker-init is a symlink to tini's tini-static (static, so trixie's is fine).
TRIXIE_PKGS=(docker.io docker-cli containerd docker-buildx tini)
BASE_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

log() { printf 'engine: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" >&2
}

# ---------------------------------------------------------------------------
# apt helpers

# papt SUITE ARCH KEYRING apt-get|apt-cache ARGS...
# Runs apt against a completely private state/cache/config tree under
# $CACHE/apt/SUITE-ARCH. APT_CONFIG is used rather than only `-o`, because it is
# read BEFORE /etc/apt/apt.conf.d, so it can redirect Dir::Etc::Parts/Main and
# keep system snippets (DEP-11 targets, docker-clean hooks) out. The system's
# sources, lists and dpkg status are never read or written.
papt() {
  local suite=$1 arch=$2 keyring=$3 tool=$4; shift 4
  local d=$CACHE/apt/$suite-$arch
  mkdir -p "$d"/etc/apt.conf.d "$d"/etc/sources.list.d "$d"/etc/preferences.d \
    "$d"/etc/trusted.gpg.d "$d"/state/lists/partial "$d"/cache/archives/partial "$d"/log
  touch "$d"/status "$d"/etc/apt.conf
  printf 'deb [signed-by=%s] %s %s main\n' "$keyring" "$MIRROR" "$suite" >"$d"/etc/sources.list
  # Keep a proxy the system may need; nothing else from the system config.
  local proxy
  proxy=$(apt-config dump Acquire::http::Proxy 2>/dev/null | sed -n 's/^Acquire::http::Proxy "\(.*\)";$/\1/p' | head -n1)
  cat >"$d"/apt.conf <<EOF
Dir::Etc::Parts "$d/etc/apt.conf.d";
Dir::Etc::Main "$d/etc/apt.conf";
Dir::Etc::SourceList "$d/etc/sources.list";
Dir::Etc::SourceParts "$d/etc/sources.list.d";
Dir::Etc::Preferences "$d/etc/preferences";
Dir::Etc::PreferencesParts "$d/etc/preferences.d";
Dir::Etc::Trusted "$d/etc/trusted.gpg";
Dir::Etc::TrustedParts "$d/etc/trusted.gpg.d";
Dir::State "$d/state";
Dir::State::Lists "$d/state/lists";
Dir::State::status "$d/status";
Dir::Cache "$d/cache";
Dir::Cache::archives "$d/cache/archives";
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
Dir::Log "$d/log";
APT::Architecture "$arch";
APT::Architectures { "$arch"; };
Acquire::Languages "none";
// The cache lives under \$HOME, which the _apt sandbox user cannot write.
APT::Sandbox::User "root";
EOF
  if [ -n "$proxy" ]; then printf 'Acquire::http::Proxy "%s";\n' "$proxy" >>"$d"/apt.conf; fi
  APT_CONFIG=$d/apt.conf "$tool" -q "$@"
}

# papt_update SUITE ARCH KEYRING: update the private lists; fail unless the
# InRelease signature verified (apt only warns for some signature failures).
papt_update() {
  local suite=$1 arch=$2 keyring=$3 out
  if out=$(papt "$suite" "$arch" "$keyring" apt-get update 2>&1) &&
    ! grep -Eq 'NO_PUBKEY|GPG error|not signed|EXPKEYSIG|BADSIG|^E:' <<<"$out" &&
    compgen -G "$CACHE/apt/$suite-$arch/state/lists/*_dists_${suite}_InRelease" >/dev/null; then
    return 0
  fi
  printf '%s\n' "$out" | tail -n 5 >&2
  return 1
}

# system_download PKG...: `apt-get download` with the machine's own apt (its
# release, e.g. bookworm), into the current directory. `apt-get update` only
# if the lists are missing or stale (allowed; touches nothing else).
system_download() {
  local opts=(-q -o APT::Sandbox::User=root)
  if apt-get "${opts[@]}" download "$@" >&2; then return 0; fi
  log "system apt lists missing or stale; running apt-get update"
  apt-get -q update >&2
  apt-get "${opts[@]}" download "$@" >&2
}

# trixie_keyring: a keyring that verifies trixie's InRelease. The machine's
# debian-archive-keyring (2023.3+deb12u2 on bookworm) already carries the
# trixie keys; if an older machine's doesn't, the newest keyring its own
# (signature-verified) bookworm lists offer is fetched and used instead.
trixie_keyring() {
  local sys=/usr/share/keyrings/debian-archive-keyring.gpg
  if [ -r "$sys" ] && papt_update trixie amd64 "$sys"; then
    printf '%s\n' "$sys"; return 0
  fi
  log "system keyring cannot verify trixie; fetching debian-archive-keyring through the system's lists"
  local kd=$CACHE/keyring
  rm -rf "$kd" && mkdir -p "$kd/deb"
  (cd "$kd/deb" && system_download debian-archive-keyring)
  dpkg -x "$kd"/deb/debian-archive-keyring_*.deb "$kd/root"
  local k=$kd/root/usr/share/keyrings/debian-archive-keyring.gpg
  papt_update trixie amd64 "$k" || die "no available keyring verifies trixie's Release file; refusing to skip verification"
  printf '%s\n' "$k"
}

# ---------------------------------------------------------------------------
# install

installed() { [ -e "$ROOT/.installed" ] && [ -x "$ROOT/usr/sbin/dockerd" ]; }

cmd_install() {
  mkdir -p "$CACHE"
  # Serialise concurrent installs (e.g. two test jobs starting both modes).
  exec 9>"$CACHE/.lock"
  flock 9
  if installed; then
    exec 9>&-
    log "engine already installed in $ROOT"
    return 0
  fi
  local t0=$SECONDS keyring debs=$CACHE/debs
  rm -rf "$debs" && mkdir -p "$debs/trixie" "$debs/system"
  keyring=$(trixie_keyring)
  log "trixie lists verified with $keyring"
  (cd "$debs/trixie" && papt trixie amd64 "$keyring" apt-get download "${TRIXIE_PKGS[@]}" >&2)
  # runc from the machine's own release: trixie's is linked against a newer glibc.
  (cd "$debs/system" && system_download runc)
  local tmp=$ROOT.tmp deb
  rm -rf "$tmp" && mkdir -p "$tmp"
  for deb in "$debs"/trixie/*.deb "$debs"/system/*.deb; do
    dpkg -x "$deb" "$tmp"
  done
  # Client-side PATH entry with only the docker CLI in it.
  rm -rf "$CLIENT_BIN" && mkdir -p "$CLIENT_BIN"
  ln -s "$ROOT/usr/bin/docker" "$CLIENT_BIN/docker"
  (cd "$debs" && ls trixie system) >"$tmp/.installed"
  rm -rf "$ROOT" && mv "$tmp" "$ROOT"
  exec 9>&-
  log "installed into $ROOT in $((SECONDS - t0))s: $(tr '\n' ' ' <"$ROOT/.installed")"
}

# ---------------------------------------------------------------------------
# daemon management

check_mode() {
  case ${1:-} in
    classic | c8d) ;;
    *) die "mode must be classic or c8d, got '${1:-}'" ;;
  esac
}

mdir() { printf '%s/%s\n' "$STATE" "$1"; }
sock() { printf '%s/docker.sock\n' "$(mdir "$1")"; }

daemon_pid() { # prints the pid of a live dockerd of this mode, or fails
  local pf pid
  pf=$(mdir "$1")/docker.pid
  [ -s "$pf" ] || return 1
  pid=$(cat "$pf")
  [ -d "/proc/$pid" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q 'dockerd' || return 1
  printf '%s\n' "$pid"
}

# The engine's own client, so client and daemon versions match.
dk() { # dk MODE docker-args...
  local m=$1; shift
  DOCKER_HOST=unix://$(sock "$m") DOCKER_CONFIG=$(mdir "$m")/docker-config \
    "$ROOT/usr/bin/docker" "$@"
}

env_lines() { # env_lines MODE
  local m=$1
  printf 'export DOCKER_HOST=%q\n' "unix://$(sock "$m")"
  printf 'export DOCKER_CONFIG=%q\n' "$(mdir "$m")/docker-config"
  # $PATH stays literal: it expands when the line is eval'd/sourced.
  # shellcheck disable=SC2016
  printf 'export PATH=%q:"$PATH"\n' "$CLIENT_BIN"
  printf 'export SQUASH_ENGINE_MODE=%q\n' "$m"
}

# store_of CMD...: which image store the engine that `CMD... info` reaches uses.
store_of() {
  local ds
  ds=$(timeout 20 "$@" info --format '{{.Driver}} {{json .DriverStatus}}' 2>/dev/null) || return 1
  if grep -q 'io.containerd.snapshotter' <<<"$ds"; then echo c8d; else echo "classic(${ds%% *})"; fi
}

is_ours() { # DOCKER_HOST points into our state dir
  case ${DOCKER_HOST:-} in "unix://$STATE"/*) return 0 ;; esac
  return 1
}

# An engine the caller already has (CI service, developer's own dockerd).
try_external() { # try_external MODE
  local m=$1 host=${DOCKER_HOST:-}
  if [ -z "$host" ]; then
    [ -S /var/run/docker.sock ] || return 1
    host=unix:///var/run/docker.sock
  fi
  is_ours && return 1
  command -v docker >/dev/null || return 1
  DOCKER_HOST=$host timeout 20 docker version >/dev/null 2>&1 || return 1
  log "found a working engine at $host"
  DOCKER_HOST=$host timeout 20 docker buildx version >/dev/null 2>&1 ||
    die "engine at $host has no working 'docker buildx'; unset DOCKER_HOST (or stop it) to use a private engine"
  local store
  store=$(store_of env DOCKER_HOST="$host" docker) || die "cannot read 'docker info' from $host"
  if { [ "$m" = c8d ] && [ "$store" != c8d ]; } || { [ "$m" = classic ] && [ "$store" = c8d ]; }; then
    die "engine at $host uses the $store image store, but '$m' was requested; unset DOCKER_HOST (or stop it) to use a private engine"
  fi
  log "reusing engine at $host ($store store)"
  mkdir -p "$(mdir "$m")"
  {
    printf 'export DOCKER_HOST=%q\n' "$host"
    printf 'export SQUASH_ENGINE_MODE=%q\n' "$m"
  } | tee "$(mdir "$m")/env"
  return 0
}

write_daemon_config() { # write_daemon_config MODE FILE
  case $1 in
    classic) printf '{\n  "storage-driver": "overlay2",\n  "features": {"containerd-snapshotter": false}\n}\n' ;;
    c8d) printf '{\n  "features": {"containerd-snapshotter": true}\n}\n' ;;
  esac >"$2"
}

cmd_start() {
  local m=${1:-}
  check_mode "$m"
  if ! is_ours && try_external "$m"; then return 0; fi

  local d pid other
  d=$(mdir "$m")
  if pid=$(daemon_pid "$m") && dk "$m" version >/dev/null 2>&1; then
    log "$m engine already running (pid $pid)"
    env_lines "$m" | tee "$d/env"
    return 0
  fi
  # One private engine at a time: both would otherwise fight over docker0 and
  # halve the 2 cores. Switching modes is a stop + start (data roots persist).
  for other in "${MODES[@]}"; do
    if [ "$other" != "$m" ] && daemon_pid "$other" >/dev/null; then
      log "stopping the $other engine first (one private engine at a time)"
      stop_mode "$other"
    fi
  done
  stop_mode "$m" # leftovers of a crashed run (stale pidfile, mounts)

  local t0=$SECONDS
  cmd_install
  mkdir -p "$d"/data "$d"/exec "$d"/docker-config/cli-plugins
  [ "${#d}" -lt 80 ] || log "warning: state path '$d' is long; unix socket paths are limited to 107 bytes"
  ln -sfn "$ROOT/usr/libexec/docker/cli-plugins/docker-buildx" "$d/docker-config/cli-plugins/docker-buildx"
  [ -e "$d/docker-config/config.json" ] || printf '{}\n' >"$d/docker-config/config.json"
  write_daemon_config "$m" "$d/daemon.json"
  rm -f "$d/docker.sock"

  # dockerd finds containerd, containerd-shim-runc-v2, runc and docker-init on
  # PATH and starts its own managed containerd under --exec-root/--data-root.
  # --iptables/--ip6tables=false: no iptables binary needed, no host firewall
  # changes. --ip-forward=false: leave the host's sysctl alone. So containers
  # on the default bridge have no way out; builds that need the network use
  # --network host. (--bridge=none is not an option: BuildKit's RUN steps then
  # fail with "network bridge not found".) docker0 is removed again by `stop`
  # if this script created it.
  log "starting dockerd ($m) in $d"
  : >"$d/dockerd.log"
  if [ ! -e /sys/class/net/docker0 ]; then touch "$d/created-docker0"; fi
  # The daemon outlives this script: it must not inherit any open descriptor of the caller
  # (e.g. a `flock` lock file, which it would then hold for as long as it runs).
  local fd
  for fd in /proc/"$BASHPID"/fd/*; do
    fd=${fd##*/}
    if [ "$fd" -gt 2 ] && [ "$fd" != 255 ]; then eval "exec $fd>&-"; fi
  done 2>/dev/null
  PATH=$ROOT/usr/bin:$ROOT/usr/sbin:$ROOT/usr/libexec/docker:$PATH \
    setsid "$ROOT/usr/sbin/dockerd" \
    --config-file "$d/daemon.json" \
    --data-root "$d/data" \
    --exec-root "$d/exec" \
    --pidfile "$d/docker.pid" \
    --host "unix://$d/docker.sock" \
    --iptables=false --ip6tables=false --ip-forward=false \
    </dev/null >>"$d/dockerd.log" 2>&1 9>&- &
  local launched=$! waited=0
  until dk "$m" version >/dev/null 2>&1; do
    if ! kill -0 "$launched" 2>/dev/null; then
      log "dockerd exited during startup; log tail:"
      tail -n 40 "$d/dockerd.log" >&2
      exit 1
    fi
    if [ "$waited" -ge "$((START_TIMEOUT * 2))" ]; then
      log "dockerd did not answer within ${START_TIMEOUT}s; log tail:"
      tail -n 40 "$d/dockerd.log" >&2
      stop_mode "$m"
      exit 1
    fi
    sleep 0.5
    waited=$((waited + 1))
  done
  dk "$m" buildx version >/dev/null || die "docker buildx does not work with the $m engine"
  local store
  store=$(store_of env DOCKER_HOST="unix://$(sock "$m")" "$ROOT/usr/bin/docker") || die "cannot read docker info"
  if { [ "$m" = c8d ] && [ "$store" != c8d ]; } || { [ "$m" = classic ] && [ "$store" = c8d ]; }; then
    die "started $m engine reports the $store store"
  fi
  log "$m engine up in $((SECONDS - t0))s ($store store, pid $(cat "$d/docker.pid"))"
  env_lines "$m" | tee "$d/env"
}

cmd_env() {
  local m=${1:-}
  check_mode "$m"
  daemon_pid "$m" >/dev/null || die "the $m engine is not running"
  env_lines "$m"
}

stop_mode() { # stop_mode MODE: stop our dockerd + its containerd, unmount leftovers
  local m=$1 d pid n cpid mp
  d=$(mdir "$m")
  if pid=$(daemon_pid "$m"); then
    log "stopping $m dockerd (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((n = 0; n < 60; n++)); do
      [ -d "/proc/$pid" ] || break
      sleep 0.5
    done
    if [ -d "/proc/$pid" ]; then
      log "dockerd $pid ignored SIGTERM for 30s; killing"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 1
    fi
  fi
  # The managed containerd normally exits with dockerd; not after a SIGKILL.
  cpid=$(cat "$d/exec/containerd/containerd.pid" 2>/dev/null || true)
  if [ -n "$cpid" ] && [ -d "/proc/$cpid" ] && tr '\0' ' ' <"/proc/$cpid/cmdline" | grep -q containerd; then
    log "stopping leftover containerd (pid $cpid)"
    kill -TERM "$cpid" 2>/dev/null || true
    for ((n = 0; n < 20; n++)); do
      [ -d "/proc/$cpid" ] || break
      sleep 0.5
    done
    kill -KILL "$cpid" 2>/dev/null || true
  fi
  # Shims outlive a killed containerd by design; end them and their containers
  # (a container's init is the shim's child; killing it ends its pid namespace).
  local spid child
  for spid in $(pgrep -f -- "-address $d/exec/containerd/containerd.sock" || true); do
    log "stopping leftover shim $spid and its containers"
    for child in $(pgrep -P "$spid" || true); do kill -KILL "$child" 2>/dev/null || true; done
    kill -KILL "$spid" 2>/dev/null || true
  done
  # Unmount anything left under this mode's state (overlay, netns, shm), deepest first.
  if [ -d "$d" ]; then
    while IFS= read -r mp; do
      umount "$mp" 2>/dev/null || umount -l "$mp" 2>/dev/null || log "warning: cannot unmount $mp"
    done < <(awk -v p="$d/" 'index($5, p) == 1 {print $5}' /proc/self/mountinfo | sort -r)
    rm -f "$d/docker.pid" "$d/docker.sock"
  fi
  # Remove the bridge dockerd made, once no engine of ours uses it.
  if [ -e "$d/created-docker0" ] && [ -z "$(running_modes)" ]; then
    if [ -e /sys/class/net/docker0 ]; then ip link delete docker0 2>/dev/null || log "warning: cannot delete docker0"; fi
    rm -f "$d/created-docker0"
  fi
}

cmd_stop() {
  local m
  if [ $# -gt 0 ]; then check_mode "$1"; stop_mode "$1"; return 0; fi
  for m in "${MODES[@]}"; do stop_mode "$m"; done
}

running_modes() {
  local m
  for m in "${MODES[@]}"; do
    if daemon_pid "$m" >/dev/null; then echo "$m"; fi
  done
}

cmd_status() {
  local m any=0
  for m in "${MODES[@]}"; do
    if pid=$(daemon_pid "$m"); then
      any=1
      echo "$m: running (pid $pid, unix://$(sock "$m"))"
      dk "$m" version --format '  client {{.Client.Version}} (api {{.Client.APIVersion}}), server {{.Server.Version}} (api {{.Server.APIVersion}})' || true
      printf '  buildx: %s\n' "$(dk "$m" buildx version 2>&1)"
      dk "$m" info --format '  storage driver: {{.Driver}} {{json .DriverStatus}}; cgroup {{.CgroupDriver}} v{{.CgroupVersion}}' || true
      dk "$m" info --format '  containerd {{.ContainerdCommit.ID}}, runc {{.RuncCommit.ID}}' || true
    else
      echo "$m: not running"
    fi
  done
  if [ "$any" = 0 ] && [ -n "${DOCKER_HOST:-}" ] && ! is_ours; then
    echo "DOCKER_HOST=$DOCKER_HOST: $(store_of docker || echo unreachable) store"
  fi
}

# ---------------------------------------------------------------------------
# base images

# Make sure `docker` talks to a started engine: the caller's env, or the one
# private engine that is running.
need_engine() {
  if [ -z "${DOCKER_HOST:-}" ]; then
    local running
    running=$(running_modes)
    [ "$(wc -w <<<"$running")" = 1 ] || die "no DOCKER_HOST set and not exactly one private engine running; run: eval \"\$($0 start c8d)\""
    eval "$(env_lines "$running")"
    log "using the running $running engine"
  fi
  docker version >/dev/null 2>&1 || die "docker cannot reach ${DOCKER_HOST}"
}

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

# busybox_rootfs DIR ARCH: a tiny rootfs from bookworm's busybox-static.
busybox_rootfs() {
  local dir=$1 arch=$2 debdir=$CACHE/debs/busybox-$2
  if ! compgen -G "$debdir/busybox-static_*.deb" >/dev/null; then
    mkdir -p "$debdir"
    if [ "$arch" = "$(dpkg --print-architecture)" ]; then
      (cd "$debdir" && system_download busybox-static)
    else
      # Foreign arch via private lists, so the system's apt gets no new architecture.
      papt_update bookworm "$arch" /usr/share/keyrings/debian-archive-keyring.gpg ||
        die "cannot verify bookworm lists for $arch"
      (cd "$debdir" && papt bookworm "$arch" /usr/share/keyrings/debian-archive-keyring.gpg apt-get download "busybox-static:$arch" >&2)
    fi
  fi
  mkdir -p "$dir"
  dpkg -x "$debdir"/busybox-static_*.deb "$dir"
  rm -rf "${dir:?}/usr/share"
  local bb=$dir/bin/busybox applet
  [ -x "$bb" ] || die "busybox-static has no /bin/busybox"
  # Equivalent of `busybox --install -s` inside the rootfs (links to
  # /bin/busybox at the applets' usual paths) without running the binary in a
  # chroot; a foreign-arch rootfs reuses the host build's list (same version).
  local list=$CACHE/debs/busybox-applets.txt
  if [ "$arch" = "$(dpkg --print-architecture)" ]; then
    "$bb" --list-full >"$list"
  fi
  [ -s "$list" ] || die "no busybox applet list yet (the host-arch image is made first)"
  while IFS= read -r applet; do
    if [ -z "$applet" ] || [ "$applet" = bin/busybox ]; then continue; fi
    mkdir -p "$dir/$(dirname "$applet")"
    [ -e "$dir/$applet" ] || ln -s /bin/busybox "$dir/$applet"
  done <"$list"
  mkdir -p "$dir"/etc "$dir"/root "$dir"/tmp "$dir"/proc "$dir"/sys "$dir"/dev "$dir"/home
  chmod 1777 "$dir/tmp"
  chmod 0700 "$dir/root"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$dir/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\nnobody:x:65534:\n' >"$dir/etc/group"
}

import_dir() { # import_dir DIR TAG CMD-JSON [--platform P]
  local dir=$1 tag=$2 cmdjson=$3; shift 3
  tar --numeric-owner -C "$dir" -cf - . |
    docker import "$@" --change "ENV PATH=$BASE_PATH" --change "CMD $cmdjson" - "$tag" >&2
}

image_busybox() {
  local tag=squash-test/busybox:latest
  if have_image "$tag"; then log "$tag exists"; return 0; fi
  local tmp
  tmp=$(mktemp -d "$CACHE/busybox.XXXXXX")
  busybox_rootfs "$tmp/rootfs" "$(dpkg --print-architecture)"
  import_dir "$tmp/rootfs" "$tag" '["sh"]'
  rm -rf "$tmp"
  log "created $tag"
}

image_busybox_layers() {
  local tag=squash-test/busybox-layers:latest
  if have_image "$tag"; then log "$tag exists"; return 0; fi
  # Several layers on top of the single imported one, with the content kinds
  # squashing must preserve: big file, dir, setuid bit, hardlinks, ENV/LABEL.
  # No attestations, so the c8d store holds a plain single-platform image.
  docker buildx build --load --provenance=false --sbom=false -t "$tag" - >&2 <<'EOF'
FROM squash-test/busybox:latest
RUN mkdir -p /base && head -c 5242880 /dev/urandom >/base/big
RUN mkdir -p /base/dir && echo one >/base/dir/one && echo two >/base/dir/two
RUN echo suid >/base/suid && chmod 4755 /base/suid \
 && echo linked >/base/hl-a && ln /base/hl-a /base/hl-b
ENV SQUASH_BASE=busybox-layers
LABEL org.example.squash-test.base="busybox-layers"
EOF
  log "created $tag"
}

image_debian() {
  local tag=squash-test/debian:bookworm tarball=$CACHE/debian-bookworm-minbase.tar
  if have_image "$tag"; then log "$tag exists"; return 0; fi
  if [ ! -s "$tarball" ]; then
    if ! command -v debootstrap >/dev/null; then
      log "installing debootstrap"
      apt-get -q install -y debootstrap >&2 || { apt-get -q update >&2 && apt-get -q install -y debootstrap >&2; }
    fi
    local tmp t0=$SECONDS
    tmp=$(mktemp -d "$CACHE/debootstrap.XXXXXX")
    log "debootstrap --variant=minbase bookworm (once per machine)"
    if ! debootstrap --variant=minbase bookworm "$tmp/rootfs" "$MIRROR" >"$tmp/log" 2>&1; then
      tail -n 20 "$tmp/log" >&2
      tail -n 20 "$tmp/rootfs/debootstrap/debootstrap.log" >&2 2>/dev/null || true
      die "debootstrap failed"
    fi
    # Like the official images: no package caches, no downloaded lists.
    rm -rf "$tmp"/rootfs/var/cache/apt/archives/*.deb "$tmp"/rootfs/var/lib/apt/lists/* \
      "$tmp"/rootfs/var/cache/apt/*.bin "$tmp"/rootfs/var/log/*.log
    tar --numeric-owner -C "$tmp/rootfs" -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    rm -rf "$tmp"
    log "debian rootfs cached in $tarball ($((SECONDS - t0))s)"
  fi
  docker import --change "ENV PATH=$BASE_PATH" --change 'CMD ["bash"]' "$tarball" "$tag" >&2
  log "created $tag"
}

image_busybox_arm64() {
  local tag=squash-test/busybox-arm64:latest
  if have_image "$tag"; then log "$tag exists"; return 0; fi
  local tmp
  tmp=$(mktemp -d "$CACHE/busybox-arm64.XXXXXX")
  # The applet list comes from the host-arch busybox (same version, same list).
  if ! busybox_rootfs "$tmp/rootfs" arm64; then
    rm -rf "$tmp"; log "warning: skipping $tag"; return 0
  fi
  import_dir "$tmp/rootfs" "$tag" '["sh"]' --platform linux/arm64
  rm -rf "$tmp"
  log "created $tag"
}

cmd_images() {
  need_engine
  mkdir -p "$CACHE"
  image_busybox
  image_busybox_layers
  image_debian
  # Optional foreign-arch image for multi-platform tests; cheap (one small .deb).
  image_busybox_arm64 || log "warning: arm64 busybox image not created"
  docker image ls --format '{{.Repository}}:{{.Tag}} {{.ID}} {{.Size}}' 'squash-test/*' >&2
}

# ---------------------------------------------------------------------------
# selftest: what the squash tests rely on, checked against the current engine.

cmd_selftest() {
  need_engine
  local store tmp
  store=$(store_of docker) || die "docker info failed"
  tmp=$(mktemp -d)
  log "selftest against $DOCKER_HOST ($store store)"
  printf 'FROM squash-test/busybox\nRUN echo built-by-selftest >/hello\nCMD ["cat","/hello"]\n' >"$tmp/Dockerfile"
  docker buildx build --load -t squash-selftest/t1 -f "$tmp/Dockerfile" "$tmp" >&2
  [ "$(docker run --rm squash-selftest/t1)" = built-by-selftest ] || die "docker run output mismatch"
  log "ok: build + run"
  printf 'FROM squash-test/debian:bookworm\nRUN apt-get update && apt-get install -y --no-install-recommends hello && hello\n' >"$tmp/Dockerfile.net"
  docker buildx build --network host --load -t squash-selftest/net -f "$tmp/Dockerfile.net" "$tmp" >&2
  log "ok: --network host build reached the Debian mirror"
  docker save squash-selftest/t1 -o "$tmp/save.tar"
  tar -tf "$tmp/save.tar" | grep -q 'manifest.json' || die "docker save produced no manifest.json"
  log "ok: docker save ($(du -h "$tmp/save.tar" | cut -f1))"
  if [ "$store" = c8d ]; then
    docker buildx build --output "type=oci,dest=$tmp/oci.tar" -f "$tmp/Dockerfile" "$tmp" >&2
    tar -tf "$tmp/oci.tar" | grep -q 'index.json' || die "oci output has no index.json"
    log "ok: --output type=oci"
  fi
  # A fake frontend that exits 3: "exit code: 3" proves the engine found the
  # image locally and ran it (a registry lookup fails with "failed to resolve
  # source metadata ... registry-1.docker.io ...").
  printf 'FROM squash-test/busybox\nENTRYPOINT ["sh","-c","exit 3"]\n' >"$tmp/Dockerfile.fe"
  docker buildx build --load --provenance=false -t localtest/frontend:dev -f "$tmp/Dockerfile.fe" "$tmp" >&2
  printf '# syntax=localtest/frontend:dev\nFROM scratch\n' >"$tmp/Dockerfile.syn"
  local out
  out=$(docker buildx build -f "$tmp/Dockerfile.syn" "$tmp" 2>&1) && die "syntax build unexpectedly succeeded"
  printf '%s\n' "$out" | tail -n 3 >&2
  if ! grep -q 'exit code: 3' <<<"$out"; then
    log "FAIL: the # syntax= image was not run from the local store"
    rm -rf "$tmp"; return 1
  fi
  log "ok: # syntax=localtest/frontend:dev was found locally and run"
  docker image rm squash-selftest/t1 squash-selftest/net localtest/frontend:dev >/dev/null 2>&1 || true
  rm -rf "$tmp"
  log "selftest passed"
}

# ---------------------------------------------------------------------------

main() {
  local cmd=${1:-}
  [ $# -gt 0 ] && shift
  case $cmd in
    install) cmd_install ;;
    start) cmd_start "$@" ;;
    env) cmd_env "$@" ;;
    stop) cmd_stop "$@" ;;
    images) cmd_images ;;
    status) cmd_status ;;
    selftest) cmd_selftest ;;
    -h | --help | help) usage ;;
    *) usage; exit 2 ;;
  esac
}

main "$@"

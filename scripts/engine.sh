#!/usr/bin/env bash
# engine.sh - private Docker engines (dockerd + buildx) and a local registry for
# squash-frontend tests.
#
# The dev/CI machines have a docker CLI but no engine, no buildx and no registry
# access; only Debian's mirror is reachable. So the engines come from Debian's
# packages (unpacked, never installed), runc and the registry from bookworm's,
# and base images are made locally from Debian packages.
#
# Two engine generations, each in either image store (classic: overlay2;
# c8d: the containerd image store):
#   26  trixie's packages: Docker 26.1, BuildKit 0.13, buildx 0.13, containerd 1.7
#   28  sid's packages:    Docker 28.5, BuildKit 0.25, buildx 0.29, containerd 2.1
# Each (engine, store) pair is a dockerd of its own, with its own state dir,
# socket, bridge (sqe-ENGINE-STORE on a /24 of its own), DOCKER_CONFIG (with
# that generation's buildx) and client docker CLI: any of the four can run side
# by side. The exact package versions tested are pinned below (PINS).
#
# Usage (ENGINE is 26 or 28, and 26 when left out; STORE is classic or c8d):
#   scripts/engine.sh install [ENGINE|registry|all]  fetch + unpack into the cache (idempotent)
#   scripts/engine.sh start [ENGINE] STORE       start (or reuse) an engine; prints `export` lines
#   scripts/engine.sh env [ENGINE] STORE         print the `export` lines of a running engine
#   scripts/engine.sh stop [ENGINE] [STORE]      stop what this script started (idempotent):
#                                                no argument: every engine and the registry
#   scripts/engine.sh registry start|env|stop    a local registry on 127.0.0.1; start and env
#                                                print `export SQUASH_REGISTRY=127.0.0.1:PORT`
#   scripts/engine.sh install-debs NAME 'SUITE: PKG=VER ...[; SUITE: ...]' [FILE...]
#                                                other tools' packages, pinned, fetched with
#                                                private lists and unpacked (dpkg -x) into
#                                                the cache; prints the root (the benchmark's
#                                                peers)
#   scripts/engine.sh images                     create the local base images in the engine
#                                                the environment points at (idempotent)
#   scripts/engine.sh status                     engines and registry: running, versions, stores
#   scripts/engine.sh selftest [[ENGINE] STORE]  build/run/save/network-host/syntax/registry
#                                                checks on that running engine (default: the
#                                                one the environment points at)
#
#   eval "$(scripts/engine.sh start 28 c8d)" && scripts/engine.sh images
#   eval "$(scripts/engine.sh registry start)"   # then: docker push "$SQUASH_REGISTRY/..."
#
# The `export` lines set DOCKER_HOST, DOCKER_CONFIG, PATH (the engine's own
# docker CLI first), SQUASH_ENGINE (26|28), SQUASH_ENGINE_MODE (classic|c8d)
# and SQUASH_DAEMON_LOG.
#
# Environment:
#   SQUASH_ENGINE_CACHE   downloads + unpacked engines (default ~/.cache/squash-frontend/engine)
#   SQUASH_ENGINE_STATE   daemon state per engine, registry (default /var/tmp/squash-engine)
#   SQUASH_ENGINE_NET     first two octets of the engines' bridge networks (default 10.213)
#   SQUASH_ENGINE_BRIDGE  prefix of the bridges' names (default sqe; at most 4 characters);
#                         with STATE and NET, lets two sets of engines run on one machine
#   SQUASH_ENGINE_START_TIMEOUT  seconds to wait for dockerd (default 90)
#   SQUASH_ENGINE_MIRROR  Debian mirror (default http://deb.debian.org/debian)
#
# Everything but stdout `export` lines goes to stderr.
set -euo pipefail

CACHE=${SQUASH_ENGINE_CACHE:-$HOME/.cache/squash-frontend/engine}
STATE=${SQUASH_ENGINE_STATE:-/var/tmp/squash-engine}
MIRROR=${SQUASH_ENGINE_MIRROR:-http://deb.debian.org/debian}
START_TIMEOUT=${SQUASH_ENGINE_START_TIMEOUT:-90}
NET=${SQUASH_ENGINE_NET:-10.213}
BRIDGE_PREFIX=${SQUASH_ENGINE_BRIDGE:-sqe}
ARCH=$(dpkg --print-architecture)
BASE_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# ---------------------------------------------------------------------------
# The package versions tested, per engine: change them here only. A pinned
# version the mirror no longer carries (sid and stable point releases move on)
# is replaced by the mirror's current one, with a warning; `install` records
# what it took, and `start` and `status` print it.
ENGINES=(26 28)
MODES=(classic c8d)
# docker.io no longer ships the CLI (docker-cli); its docker-init is a symlink
# to tini-static, which trixie's tini carries and sid ships as tini-static.
declare -A SUITE PINS
SUITE[26]=trixie
PINS[26]="docker.io=26.1.5+dfsg1-9+deb13u1+b1 docker-cli=26.1.5+dfsg1-9+deb13u1+b1
  containerd=1.7.24~ds1-6+deb13u1 docker-buildx=0.13.1+ds1-3 tini=0.19.0-3+b8"
SUITE[28]=sid
PINS[28]="docker.io=28.5.2+dfsg4-5 docker-cli=28.5.2+dfsg4-5
  containerd=2.1.9+ds1-5 docker-buildx=0.29.1+ds1-4 tini-static=0.19.0-6+b2"
# For every engine, from the machine's release: runc (trixie's and sid's are
# linked against a newer glibc than Debian 12's); and the local registry.
HOST_SUITE=bookworm
PINS_RUNC="runc=1.1.5+ds1-1+deb12u1"
PINS_REGISTRY="docker-registry=2.8.2+ds1-1"

log() { printf 'engine: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
loud() { printf '\nengine: !!! WARNING: %s\n\n' "$*" >&2; }

usage() {
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" >&2
}

suite_of() { printf '%s\n' "${SUITE[$1]}"; }
pins_of() { printf '%s\n' "${PINS[$1]}" | tr -s ' \n' '  ' | sed 's/^ //;s/ $//'; }

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
  # sid's InRelease is valid for a week only (Valid-Until), and the reachable
  # mirror may serve one past that date; apt then drops the whole suite ("Release
  # file ... is expired"). For sid alone the date check is lifted: the InRelease
  # signature (signed-by) is still verified, and every package is checked
  # against its hashes. Stable suites carry no Valid-Until.
  local opts="signed-by=$keyring"
  if [ "$suite" = sid ]; then opts="$opts check-valid-until=no"; fi
  printf 'deb [%s] %s %s main\n' "$opts" "$MIRROR" "$suite" >"$d"/etc/sources.list
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


# suite_keyring SUITE: update SUITE's private lists and print a keyring that
# verified its InRelease. The machine's debian-archive-keyring (2023.3+deb12u2
# on bookworm) already carries the trixie and sid keys; if an older machine's
# doesn't, the newest keyring its own (signature-verified) lists offer is
# fetched and used instead.
suite_keyring() {
  local suite=$1 sys=/usr/share/keyrings/debian-archive-keyring.gpg
  if [ -r "$sys" ] && papt_update "$suite" "$ARCH" "$sys"; then
    printf '%s\n' "$sys"; return 0
  fi
  local kd=$CACHE/keyring
  local k=$kd/root/usr/share/keyrings/debian-archive-keyring.gpg
  if [ ! -r "$k" ]; then
    log "system keyring cannot verify $suite; fetching debian-archive-keyring through the system's lists"
    rm -rf "$kd" && mkdir -p "$kd/deb"
    (cd "$kd/deb" && system_download debian-archive-keyring)
    dpkg -x "$kd"/deb/debian-archive-keyring_*.deb "$kd/root"
  fi
  papt_update "$suite" "$ARCH" "$k" || die "no available keyring verifies $suite's Release file; refusing to skip verification"
  printf '%s\n' "$k"
}

# fetch_pinned SUITE KEYRING DIR PKG=VERSION...: download the pinned versions
# from SUITE's (updated) private lists into DIR, or, for a version the mirror
# no longer carries, its current one, loudly. Appends what it took to
# DIR/versions.
fetch_pinned() {
  local suite=$1 keyring=$2 dir=$3; shift 3
  local pin pkg ver avail cur take=()
  for pin in "$@"; do
    pkg=${pin%%=*} ver=${pin#*=}
    avail=$(papt "$suite" "$ARCH" "$keyring" apt-cache madison "$pkg" | awk -F'|' '{ gsub(/ /, "", $2); print $2 }')
    if grep -qxF -- "$ver" <<<"$avail"; then
      take+=("$pkg=$ver")
      continue
    fi
    cur=$(papt "$suite" "$ARCH" "$keyring" apt-cache policy "$pkg" | sed -n 's/^ *Candidate: //p')
    if [ -z "$cur" ] || [ "$cur" = "(none)" ]; then die "$suite on $MIRROR has no $pkg at all (pinned: $ver)"; fi
    loud "$suite on $MIRROR no longer has $pkg $ver (the version tested); using its current $pkg $cur instead. Once tested, pin it in scripts/engine.sh."
    take+=("$pkg=$cur")
  done
  mkdir -p "$dir"
  (cd "$dir" && papt "$suite" "$ARCH" "$keyring" apt-get download "${take[@]}" >&2)
  printf '%s\n' "${take[@]}" >>"$dir/versions"
}

# The cache: $CACHE/ENGINE/{root,client-bin,debs}, $CACHE/registry/{root,debs},
# private apt trees in $CACHE/apt/SUITE-ARCH.
eroot() { printf '%s/%s/root\n' "$CACHE" "$1"; }

# What an install of ENGINE (or "registry") is made from; a root recorded for
# other pins is installed anew.
pins_line() {
  case $1 in
    registry) printf '%s: %s\n' "$HOST_SUITE" "$PINS_REGISTRY" ;;
    26 | 28) printf '%s: %s; %s: %s\n' "$(suite_of "$1")" "$(pins_of "$1")" "$HOST_SUITE" "$PINS_RUNC" ;;
    *)
      [ -n "${OTHER_PINS[$1]:-}" ] || die "nothing is pinned for '$1'"
      printf '%s\n' "${OTHER_PINS[$1]}"
      ;;
  esac
}
# Other tools unpacked the same way (install-debs): NAME -> "SUITE: PKG=VER ...[; SUITE: ...]".
declare -A OTHER_PINS=()
installed() { # installed ENGINE|registry
  local root
  root=$(eroot "$1")
  [ -s "$root/.installed" ] && grep -qxF "pins: $(pins_line "$1")" "$root/.installed"
}
# The package versions an installed root was made of, on one line.
installed_versions() { sed -n 's/^took: //p' "$(eroot "$1")/.installed" 2>/dev/null; }

# warn_unpinned ENGINE|registry: loudly, every package of an installed root
# that is not the version pinned (the mirror had moved on at install time).
warn_unpinned() {
  local got pinned
  pinned=$(pins_line "$1" | tr -s '; ' '\n' | grep '=' || true)
  for got in $(installed_versions "$1"); do
    if ! grep -qxF -- "$got" <<<"$pinned"; then
      loud "$1 runs $got, not the version pinned: $(grep -F -- "${got%%=*}=" <<<"$pinned" || echo none)"
    fi
  done
}

lock() { mkdir -p "$CACHE" && exec 9>"$CACHE/.lock" && flock 9; }
unlock() { exec 9>&-; }

# unpack WHAT DEBDIR FILE...: dpkg -x every .deb under DEBDIR into WHAT's root
# (made anew), check that FILEs exist there, record the pins and versions.
unpack() {
  local what=$1 debs=$2; shift 2
  local root tmp deb f
  root=$(eroot "$what")
  tmp=$root.tmp
  rm -rf "$tmp" && mkdir -p "$tmp"
  for deb in "$debs"/*/*.deb; do dpkg -x "$deb" "$tmp"; done
  for f in "$@"; do
    [ -e "$tmp/$f" ] || die "$what: the packages have no $f ($(cat "$debs"/*/versions | tr '\n' ' '))"
  done
  {
    printf 'pins: %s\n' "$(pins_line "$what")"
    printf 'took: %s\n' "$(cat "$debs"/*/versions | tr '\n' ' ' | sed 's/ $//')"
  } >"$tmp/.installed"
  rm -rf "$root" && mv "$tmp" "$root"
}

install_engine() { # install_engine ENGINE
  local e=$1 suite root t0=$SECONDS keyring debs
  suite=$(suite_of "$e")
  root=$(eroot "$e")
  debs=$CACHE/$e/debs
  lock
  if installed "$e"; then
    unlock
    log "engine $e already installed in $root"
    return 0
  fi
  log "installing engine $e from $suite into $root"
  rm -rf "$debs"
  keyring=$(suite_keyring "$suite")
  log "$suite lists verified with $keyring"
  # shellcheck disable=SC2046 # the pins are words
  fetch_pinned "$suite" "$keyring" "$debs/$suite" $(pins_of "$e")
  keyring=$(suite_keyring "$HOST_SUITE")
  # shellcheck disable=SC2086
  fetch_pinned "$HOST_SUITE" "$keyring" "$debs/$HOST_SUITE" $PINS_RUNC
  unpack "$e" "$debs" usr/sbin/dockerd usr/bin/containerd usr/bin/containerd-shim-runc-v2 \
    usr/sbin/runc usr/bin/docker usr/libexec/docker/cli-plugins/docker-buildx \
    usr/bin/docker-init
  # Client-side PATH entry with only this engine's docker CLI in it.
  rm -rf "$CACHE/$e/client-bin" && mkdir -p "$CACHE/$e/client-bin"
  ln -s "$root/usr/bin/docker" "$CACHE/$e/client-bin/docker"
  unlock
  log "installed engine $e in $((SECONDS - t0))s: $(installed_versions "$e")"
}

install_registry() {
  local root t0=$SECONDS keyring debs=$CACHE/registry/debs
  root=$(eroot registry)
  lock
  if installed registry; then
    unlock
    log "registry already installed in $root"
    return 0
  fi
  log "installing the registry into $root"
  rm -rf "$debs"
  keyring=$(suite_keyring "$HOST_SUITE")
  # shellcheck disable=SC2086
  fetch_pinned "$HOST_SUITE" "$keyring" "$debs/$HOST_SUITE" $PINS_REGISTRY
  unpack registry "$debs" usr/bin/docker-registry
  unlock
  log "installed the registry in $((SECONDS - t0))s: $(installed_versions registry)"
}

# install_debs NAME PINS FILE...: the packages PINS names ("SUITE: PKG=VER ...; SUITE: ..."),
# fetched through each suite's private, verified lists and unpacked into NAME's root in the
# cache (made anew when the pins change), with FILEs checked there; prints the root. For
# tools besides the engines (the benchmark's peers); their version record is ROOT/.installed.
install_debs() {
  local name=$1 pins=$2 root part suite keyring t0=$SECONDS
  shift 2
  case $name in 26 | 28 | registry | apt | debs | keyring | "") die "install-debs: '$name' is taken" ;; esac
  OTHER_PINS[$name]=$(tr -s ' \n' '  ' <<<"$pins" | sed 's/^ //;s/ $//')
  root=$(eroot "$name")
  lock
  if installed "$name"; then
    unlock
    log "$name already installed in $root"
  else
    log "installing $name into $root"
    rm -rf "$CACHE/$name/debs"
    while IFS= read -r part; do
      suite=$(awk -F: '{ gsub(/ /, "", $1); print $1 }' <<<"$part")
      [ -n "$suite" ] || continue
      keyring=$(suite_keyring "$suite")
      # shellcheck disable=SC2046 # the pins are words
      fetch_pinned "$suite" "$keyring" "$CACHE/$name/debs/$suite" $(cut -d: -f2- <<<"$part")
    done < <(tr ';' '\n' <<<"${OTHER_PINS[$name]}")
    unpack "$name" "$CACHE/$name/debs" "$@"
    unlock
    log "installed $name in $((SECONDS - t0))s: $(installed_versions "$name")"
  fi
  warn_unpinned "$name"
  printf '%s\n' "$root"
}

cmd_install() {
  local what=${1:-26}
  case $what in
    all) install_engine 26; install_engine 28; install_registry ;;
    registry) install_registry ;;
    *) check_engine "$what"; install_engine "$what" ;;
  esac
}

# ---------------------------------------------------------------------------
# daemon management

check_engine() {
  case ${1:-} in
    26 | 28) ;;
    *) die "engine must be 26 or 28, got '${1:-}'" ;;
  esac
}

check_mode() {
  case ${1:-} in
    classic | c8d) ;;
    *) die "store must be classic or c8d, got '${1:-}'" ;;
  esac
}

# parse_pair WHAT ARGS...: "[ENGINE] STORE" into E and M (engine 26 when left out).
E='' M=''
parse_pair() {
  local what=$1; shift
  case $# in
    1) E=26 M=$1 ;;
    2) E=$1 M=$2 ;;
    *) die "usage: $0 $what [26|28] classic|c8d" ;;
  esac
  check_engine "$E"
  check_mode "$M"
}

pdir() { printf '%s/%s-%s\n' "$STATE" "$1" "$2"; } # pdir ENGINE STORE: its state dir
sock() { printf '%s/docker.sock\n' "$(pdir "$1" "$2")"; }

# Each pair's bridge: $NET.N.0/24, N = 1..4, not docker0's 172.17.0.0/16.
# Networks an engine makes itself (docker network create) come from Docker's
# default pools, which skip ranges the host already routes. No engine gets
# default-address-pools: a dockerd that has them deletes any interface named
# docker0 when it restarts on an existing state, whatever its --bridge (and
# docker0 may be another engine's).
pair_index() {
  case $1-$2 in
    26-classic) echo 1 ;;
    26-c8d) echo 2 ;;
    28-classic) echo 3 ;;
    28-c8d) echo 4 ;;
  esac
}
bridge_of() { printf '%s-%s-%s\n' "$BRIDGE_PREFIX" "$1" "$2"; }
bridge_cidr() { printf '%s.%s.1/24\n' "$NET" "$(pair_index "$1" "$2")"; } # the bridge's own address

# bridge_users BRIDGE: pids of the dockerds started with --bridge=BRIDGE.
bridge_users() { pgrep -f -- "--bridge=$1( |\$)" | tr '\n' ' ' | sed 's/ $//' || true; }

# bridge_up ENGINE STORE: create (or reset, after a crash) the pair's bridge.
bridge_up() {
  local br cidr net users other
  br=$(bridge_of "$1" "$2")
  cidr=$(bridge_cidr "$1" "$2")
  net=${cidr%.1/24}.0/24
  users=$(bridge_users "$br")
  [ -z "$users" ] || die "bridge $br is in use by dockerd pid $users (an engine of another state dir than $STATE?)"
  other=$(ip -4 route show match "$net" | awk -v br="$br" '$1 != "default" { for (i = 1; i < NF; i++) if ($i == "dev" && $(i + 1) != br) print }')
  [ -z "$other" ] || die "$net is routed elsewhere on this machine ($other); set SQUASH_ENGINE_NET to two other octets"
  if [ ! -e "/sys/class/net/$br" ]; then
    ip link add name "$br" type bridge || die "cannot create bridge $br"
  fi
  ip -4 addr flush dev "$br"
  ip addr add "$cidr" dev "$br"
  ip link set "$br" up
}

# bridge_down ENGINE STORE: remove the pair's bridge unless a dockerd still uses it.
bridge_down() {
  local br
  br=$(bridge_of "$1" "$2")
  [ -e "/sys/class/net/$br" ] || return 0
  if [ -n "$(bridge_users "$br")" ]; then
    log "bridge $br still in use by dockerd pid $(bridge_users "$br"); left in place"
    return 0
  fi
  ip link delete "$br" type bridge 2>/dev/null || log "warning: cannot delete bridge $br"
}

daemon_pid() { # daemon_pid DIR: prints the pid of the live dockerd whose state is DIR, or fails
  local d=$1 pid
  [ -s "$d/docker.pid" ] || return 1
  pid=$(cat "$d/docker.pid")
  [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "--data-root $d/data " || return 1
  printf '%s\n' "$pid"
}

# The engine's own client, so client and daemon versions match.
dk() { # dk ENGINE STORE docker-args...
  local e=$1 m=$2; shift 2
  DOCKER_HOST=unix://$(sock "$e" "$m") DOCKER_CONFIG=$(pdir "$e" "$m")/docker-config \
    "$(eroot "$e")/usr/bin/docker" "$@"
}

env_lines() { # env_lines ENGINE STORE
  local e=$1 m=$2
  printf 'export DOCKER_HOST=%q\n' "unix://$(sock "$e" "$m")"
  printf 'export DOCKER_CONFIG=%q\n' "$(pdir "$e" "$m")/docker-config"
  # $PATH stays literal: it expands when the line is eval'd/sourced.
  # shellcheck disable=SC2016
  printf 'export PATH=%q:"$PATH"\n' "$CACHE/$e/client-bin"
  printf 'export SQUASH_ENGINE=%q\n' "$e"
  printf 'export SQUASH_ENGINE_MODE=%q\n' "$m"
  printf 'export SQUASH_DAEMON_LOG=%q\n' "$(pdir "$e" "$m")/dockerd.log"
}

# store_of CMD...: which image store the engine that `CMD... info` reaches uses.
store_of() {
  local ds
  ds=$(timeout 20 "$@" info --format '{{.Driver}} {{json .DriverStatus}}' 2>/dev/null) || return 1
  if grep -q 'io.containerd.snapshotter' <<<"$ds"; then echo c8d; else echo "classic(${ds%% *})"; fi
}

# describe ENGINE STORE: the versions that run and the store, on stderr.
describe() {
  local e=$1 m=$2 store
  store=$(store_of env DOCKER_HOST="unix://$(sock "$e" "$m")" "$(eroot "$e")/usr/bin/docker") || store=unknown
  log "  server: $(dk "$e" "$m" version --format '{{range .Server.Components}}{{.Name}} {{.Version}}, {{end}}' 2>&1 | sed 's/, $//')"
  log "  client: docker $(dk "$e" "$m" version --format '{{.Client.Version}}' 2>&1), $(dk "$e" "$m" buildx version 2>&1)"
  log "  store: $store, storage driver $(dk "$e" "$m" info --format '{{.Driver}}' 2>&1)"
  log "  packages ($(suite_of "$e"), $HOST_SUITE): $(installed_versions "$e")"
}

is_ours() { # DOCKER_HOST points into our state dir
  case ${DOCKER_HOST:-} in "unix://$STATE"/*) return 0 ;; esac
  return 1
}

# An engine the caller already has (CI service, developer's own dockerd). Its
# generation is checked only when the caller named one.
try_external() { # try_external ENGINE STORE ENGINE-NAMED(0|1)
  local e=$1 m=$2 named=$3 host=${DOCKER_HOST:-}
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
  local store version
  store=$(store_of env DOCKER_HOST="$host" docker) || die "cannot read 'docker info' from $host"
  if { [ "$m" = c8d ] && [ "$store" != c8d ]; } || { [ "$m" = classic ] && [ "$store" = c8d ]; }; then
    die "engine at $host uses the $store image store, but '$m' was requested; unset DOCKER_HOST (or stop it) to use a private engine"
  fi
  version=$(DOCKER_HOST=$host timeout 20 docker version --format '{{.Server.Version}}' 2>/dev/null) || version=unknown
  if [ "$named" = 1 ] && [ "${version%%.*}" != "$e" ]; then
    die "engine at $host is Docker $version, but engine $e was requested; unset DOCKER_HOST (or stop it) to use a private engine"
  fi
  log "reusing engine at $host (Docker $version, $store store)"
  mkdir -p "$(pdir "$e" "$m")"
  {
    printf 'export DOCKER_HOST=%q\n' "$host"
    printf 'export SQUASH_ENGINE_MODE=%q\n' "$m"
  } | tee "$(pdir "$e" "$m")/env"
  return 0
}

write_daemon_config() { # write_daemon_config STORE FILE (no default-address-pools: see pair_index)
  case $1 in
    classic) printf '{\n  "storage-driver": "overlay2",\n  "features": {"containerd-snapshotter": false}\n}\n' ;;
    c8d) printf '{\n  "features": {"containerd-snapshotter": true}\n}\n' ;;
  esac >"$2"
}

# spawn LOG CMD...: run CMD in a session of its own, stdin /dev/null, output
# appended to LOG; $! is its pid (the subshell execs setsid, which execs CMD).
# It outlives this script, so it must not inherit any open descriptor of the
# caller (e.g. the install lock, which it would hold for as long as it runs).
spawn() {
  local out=$1; shift
  (
    for fd in /proc/"$BASHPID"/fd/*; do
      fd=${fd##*/}
      if [ "$fd" -gt 2 ] && [ "$fd" != 255 ]; then eval "exec $fd>&-"; fi
    done 2>/dev/null
    exec setsid "$@" </dev/null >>"$out" 2>&1
  ) &
}

# db_holders DIR: names the processes that have the pair's containerd metadata database open
# (bolt locks it: a second containerd on it waits), for the log.
db_holders() {
  local db=$1/data/containerd/daemon/io.containerd.metadata.v1.bolt/meta.db fd pid
  for fd in /proc/[0-9]*/fd/*; do
    [ "$(readlink "$fd" 2>/dev/null)" = "$db" ] || continue
    pid=${fd#/proc/}
    pid=${pid%%/*}
    log "  $db is open in pid $pid: $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | cut -c1-200)"
  done
}

# launch_dockerd ENGINE STORE DIR ROOT BRIDGE: starts the pair's dockerd and waits until it
# answers. Status 2: dockerd exited during startup; 1: it did not answer in time (each with the
# log's tail shown).
launch_dockerd() {
  local e=$1 m=$2 d=$3 root=$4 br=$5
  # dockerd finds containerd, containerd-shim-runc-v2, runc and docker-init on
  # PATH and starts its own managed containerd under --exec-root/--data-root.
  # --iptables/--ip6tables=false: no iptables binary needed, no host firewall
  # changes. --ip-forward=false: leave the host's sysctl alone. So containers
  # on the pair's bridge have no way out; builds that need the network use
  # --network host. (--bridge=none is not an option: BuildKit's RUN steps then
  # fail with "network bridge not found".) The bridge is made by `start` and removed
  # by `stop`; dockerd takes its subnet from the bridge's address.
  log "starting dockerd (engine $e, $m store) in $d, bridge $br $(bridge_cidr "$e" "$m")"
  : >"$d/dockerd.log"
  spawn "$d/dockerd.log" env PATH="$root/usr/bin:$root/usr/sbin:$root/usr/libexec/docker:$PATH" \
    "$root/usr/sbin/dockerd" \
    --config-file "$d/daemon.json" \
    --data-root "$d/data" \
    --exec-root "$d/exec" \
    --pidfile "$d/docker.pid" \
    --host "unix://$d/docker.sock" \
    --bridge="$br" \
    --iptables=false --ip6tables=false --ip-forward=false
  local launched=$! waited=0
  until dk "$e" "$m" version >/dev/null 2>&1; do
    if ! kill -0 "$launched" 2>/dev/null; then
      log "dockerd exited during startup; log tail:"
      tail -n 40 "$d/dockerd.log" >&2
      return 2
    fi
    if [ "$waited" -ge "$((START_TIMEOUT * 2))" ]; then
      log "dockerd did not answer within ${START_TIMEOUT}s; log tail:"
      tail -n 40 "$d/dockerd.log" >&2
      return 1
    fi
    sleep 0.5
    waited=$((waited + 1))
  done
}

cmd_start() {
  parse_pair start "$@"
  local e=$E m=$M named=0
  if [ $# -eq 2 ]; then named=1; fi
  if ! is_ours && try_external "$e" "$m" "$named"; then return 0; fi

  local d pid
  d=$(pdir "$e" "$m")
  if pid=$(daemon_pid "$d") && dk "$e" "$m" version >/dev/null 2>&1; then
    log "engine $e $m already running (pid $pid)"
    describe "$e" "$m"
    env_lines "$e" "$m" | tee "$d/env"
    return 0
  fi
  stop_pair "$e" "$m" # leftovers of a crashed run (stale pid file, mounts, bridge)

  local t0=$SECONDS root br
  install_engine "$e"
  root=$(eroot "$e")
  br=$(bridge_of "$e" "$m")
  log "engine $e ($(suite_of "$e")): $(installed_versions "$e")"
  warn_unpinned "$e"
  mkdir -p "$d"/data "$d"/exec "$d"/docker-config/cli-plugins
  [ "${#d}" -lt 70 ] || log "warning: state path '$d' is long; unix socket paths are limited to 107 bytes"
  # This generation's buildx, found through DOCKER_CONFIG: each pair has its own.
  ln -sfn "$root/usr/libexec/docker/cli-plugins/docker-buildx" "$d/docker-config/cli-plugins/docker-buildx"
  [ -e "$d/docker-config/config.json" ] || printf '{}\n' >"$d/docker-config/config.json"
  write_daemon_config "$m" "$d/daemon.json"
  rm -f "$d/docker.sock"
  bridge_up "$e" "$m"

  # One more try where dockerd gave up on its managed containerd: that start has a fixed
  # 15 s limit, which containerd missed twice here (2026-12-01) opening its metadata database
  # (containerd's "waiting for response from boltdb open") while other pairs' engines started,
  # stopped or built: no other process held the database, and the disk was busy (I/O pressure
  # 79 % over 10 s just after). Started again, with the database read once, it came up in 3 s.
  local attempt rc
  for attempt in 1 2; do
    rc=0
    launch_dockerd "$e" "$m" "$d" "$root" "$br" || rc=$?
    [ "$rc" = 0 ] && break
    if [ "$rc" != 2 ] || [ "$attempt" = 2 ] || ! grep -q 'timeout waiting for containerd to start' "$d/dockerd.log"; then
      stop_pair "$e" "$m"
      exit 1
    fi
    log "dockerd's managed containerd did not start within dockerd's limit; starting the engine once more"
    # Named before stop_pair, which ends a leftover containerd of this pair's own.
    db_holders "$d"
    stop_pair "$e" "$m"
    bridge_up "$e" "$m"
  done
  dk "$e" "$m" buildx version >/dev/null || die "docker buildx does not work with engine $e $m"
  local store
  store=$(store_of env DOCKER_HOST="unix://$(sock "$e" "$m")" "$root/usr/bin/docker") || die "cannot read docker info"
  if { [ "$m" = c8d ] && [ "$store" != c8d ]; } || { [ "$m" = classic ] && [ "$store" = c8d ]; }; then
    die "started engine $e $m reports the $store store"
  fi
  log "engine $e $m up in $((SECONDS - t0))s (pid $(cat "$d/docker.pid"))"
  describe "$e" "$m"
  env_lines "$e" "$m" | tee "$d/env"
}

cmd_env() {
  parse_pair env "$@"
  daemon_pid "$(pdir "$E" "$M")" >/dev/null || die "engine $E $M is not running"
  env_lines "$E" "$M"
}

stop_dir() { # stop_dir DIR NAME: stop the dockerd of DIR + its containerd, unmount leftovers
  local d=$1 name=$2 pid n cpid mp
  if pid=$(daemon_pid "$d"); then
    log "stopping $name (dockerd pid $pid)"
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
  if [ -n "$cpid" ] && [ -d "/proc/$cpid" ] && tr '\0' ' ' <"/proc/$cpid/cmdline" | grep -qF -- "$d/exec/containerd"; then
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
  # Unmount anything left under this state dir (overlay, netns, shm), deepest first.
  if [ -d "$d" ]; then
    while IFS= read -r mp; do
      umount "$mp" 2>/dev/null || umount -l "$mp" 2>/dev/null || log "warning: cannot unmount $mp"
    done < <(awk -v p="$d/" 'index($5, p) == 1 {print $5}' /proc/self/mountinfo | sort -r)
    # containerd's pid file too: a managed containerd that exited with a dockerd that gave up
    # on it can still be an unreaped process, which the next dockerd takes for a live one and
    # waits 10 s on (seen here, "containerd is still running"), most of its 15 s to start one.
    rm -f "$d/docker.pid" "$d/docker.sock" "$d/exec/containerd/containerd.pid"
  fi
}

stop_pair() { # stop_pair ENGINE STORE
  stop_dir "$(pdir "$1" "$2")" "engine $1 $2"
  bridge_down "$1" "$2"
}

# Engines of an older engine.sh ran from $STATE/classic and $STATE/c8d on
# docker0, which it created when missing (and marked so): stopped by `stop`,
# and docker0 removed if that script made it and no dockerd may still use it.
stop_legacy() {
  local m d
  for m in "${MODES[@]}"; do
    d=$STATE/$m
    [ -d "$d" ] || continue
    stop_dir "$d" "the $m engine of an older engine.sh"
    if [ -e "$d/created-docker0" ]; then
      if [ -e /sys/class/net/docker0 ] && [ -z "$(docker0_users)" ]; then
        ip link delete docker0 2>/dev/null || log "warning: cannot delete docker0"
      fi
      rm -f "$d/created-docker0"
    fi
  done
}
# Pids of the dockerds that may use docker0: those started without --bridge=.
docker0_users() {
  local pid
  for pid in $(pgrep -x dockerd || true); do
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- '--bridge=' || echo "$pid"
  done
}
legacy_running() {
  local m
  for m in "${MODES[@]}"; do
    if daemon_pid "$STATE/$m" >/dev/null; then echo "$m"; fi
  done
}

cmd_stop() {
  local e m
  case $# in
    0)
      for e in "${ENGINES[@]}"; do
        for m in "${MODES[@]}"; do stop_pair "$e" "$m"; done
      done
      stop_legacy
      registry_stop
      ;;
    1)
      case $1 in
        26 | 28) for m in "${MODES[@]}"; do stop_pair "$1" "$m"; done ;;
        registry) registry_stop ;;
        *) check_mode "$1"; stop_pair 26 "$1" ;;
      esac
      ;;
    *) parse_pair stop "$@"; stop_pair "$E" "$M" ;;
  esac
}

running_pairs() {
  local e m
  for e in "${ENGINES[@]}"; do
    for m in "${MODES[@]}"; do
      if daemon_pid "$(pdir "$e" "$m")" >/dev/null; then echo "$e $m"; fi
    done
  done
}

cmd_status() {
  local e m pid any=0
  for e in "${ENGINES[@]}"; do
    for m in "${MODES[@]}"; do
      if pid=$(daemon_pid "$(pdir "$e" "$m")"); then
        any=1
        log "engine $e $m: running (pid $pid, unix://$(sock "$e" "$m"), bridge $(bridge_of "$e" "$m") $(bridge_cidr "$e" "$m"))"
        describe "$e" "$m"
      else
        log "engine $e $m: not running"
      fi
    done
  done
  for m in $(legacy_running); do
    log "an engine of an older engine.sh runs from $STATE/$m (pid $(daemon_pid "$STATE/$m")); '$0 stop' ends it"
  done
  local port
  if pid=$(registry_pid); then
    port=$(cat "$RDIR/port" 2>/dev/null || echo '?')
    log "registry: running (pid $pid, 127.0.0.1:$port, $(installed_versions registry))"
  else
    log "registry: not running"
  fi
  if [ "$any" = 0 ] && [ -n "${DOCKER_HOST:-}" ] && ! is_ours; then
    log "DOCKER_HOST=$DOCKER_HOST: $(store_of docker || echo unreachable) store"
  fi
}

# ---------------------------------------------------------------------------
# the local registry: Debian's docker-registry on 127.0.0.1, storage in $RDIR

RDIR=$STATE/registry

registry_pid() {
  local pid
  [ -s "$RDIR/registry.pid" ] || return 1
  pid=$(cat "$RDIR/registry.pid")
  [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$RDIR/config.yml" || return 1
  printf '%s\n' "$pid"
}

listening_port() { # listening_port PID: a TCP port PID listens on
  ss -Hltnp 2>/dev/null | awk -v p="pid=$1," 'index($0, p) { n = split($4, a, ":"); print a[n]; exit }'
}
port_free() { [ -z "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]; }

registry_answers() { # registry_answers PORT: GET /v2/ answers 200
  local reply
  # shellcheck disable=SC2016 # $1 is the inner shell's
  reply=$(timeout 5 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" && printf "GET /v2/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n" >&3 && head -n 1 <&3' _ "$1" 2>/dev/null) || return 1
  [[ $reply == HTTP/1.?\ 200* ]]
}

registry_running_port() { # the port of the running registry that answers, or fails
  local port
  registry_pid >/dev/null || return 1
  port=$(cat "$RDIR/port" 2>/dev/null) || return 1
  registry_answers "$port" || return 1
  printf '%s\n' "$port"
}

registry_start() {
  local pid port
  if port=$(registry_running_port); then
    log "registry already running (pid $(registry_pid)) on 127.0.0.1:$port"
    printf 'export SQUASH_REGISTRY=%q\n' "127.0.0.1:$port"
    return 0
  fi
  registry_stop # a stale pid file, or a registry that stopped answering
  install_registry
  mkdir -p "$RDIR/data"
  # The port of last time if it is free (pushed images keep their names), else
  # one the kernel picks (port 0), read back from the listening socket.
  port=$(cat "$RDIR/port" 2>/dev/null || true)
  if [ -z "$port" ] || ! port_free "$port"; then port=0; fi
  cat >"$RDIR/config.yml" <<YAML
version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: $RDIR/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
YAML
  printf '=== %s: registry start\n' "$(date -u +%FT%TZ)" >>"$RDIR/registry.log"
  spawn "$RDIR/registry.log" "$(eroot registry)/usr/bin/docker-registry" serve "$RDIR/config.yml"
  pid=$!
  printf '%s\n' "$pid" >"$RDIR/registry.pid"
  local waited=0 p
  while :; do
    if ! kill -0 "$pid" 2>/dev/null; then
      log "the registry exited during startup; log tail:"
      tail -n 20 "$RDIR/registry.log" >&2
      rm -f "$RDIR/registry.pid"
      exit 1
    fi
    p=$port
    if [ "$p" = 0 ]; then p=$(listening_port "$pid"); fi
    if [ -n "$p" ] && registry_answers "$p"; then break; fi
    if [ "$waited" -ge 40 ]; then
      log "the registry did not answer within 20s; log tail:"
      tail -n 20 "$RDIR/registry.log" >&2
      registry_stop
      exit 1
    fi
    sleep 0.5
    waited=$((waited + 1))
  done
  printf '%s\n' "$p" >"$RDIR/port"
  log "registry up on 127.0.0.1:$p (pid $pid, $(installed_versions registry), storage $RDIR/data)"
  warn_unpinned registry
  printf 'export SQUASH_REGISTRY=%q\n' "127.0.0.1:$p"
}

registry_stop() {
  local pid n
  if pid=$(registry_pid); then
    log "stopping the registry (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((n = 0; n < 20; n++)); do
      [ -d "/proc/$pid" ] || break
      sleep 0.5
    done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$RDIR/registry.pid"
}

cmd_registry() {
  local port
  case ${1:-} in
    start) registry_start ;;
    env)
      port=$(registry_running_port) || die "the registry is not running; run: eval \"\$($0 registry start)\""
      printf 'export SQUASH_REGISTRY=%q\n' "127.0.0.1:$port"
      ;;
    stop) registry_stop ;;
    *) die "usage: $0 registry start|env|stop" ;;
  esac
}

# ---------------------------------------------------------------------------
# base images

# Make sure `docker` talks to a started engine: the caller's env, or the one
# private engine that is running.
need_engine() {
  if [ -z "${DOCKER_HOST:-}" ]; then
    local running
    running=$(running_pairs)
    if [ -z "$running" ] || [ "$(wc -l <<<"$running")" != 1 ]; then
      die "no DOCKER_HOST set and not exactly one private engine running; run: eval \"\$($0 start 26 c8d)\""
    fi
    # shellcheck disable=SC2086 # "ENGINE STORE"
    eval "$(env_lines $running)"
    log "using the running engine $running"
  fi
  command -v docker >/dev/null || die "no docker CLI on PATH: eval the output of '$0 start ...' first"
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
    docker import "$@" --change "ENV PATH=$BASE_PATH" --change "CMD $cmdjson" - "$tag" >/dev/null
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
  # No attestations, so the c8d store holds a plain single-platform image. Quiet: the
  # image's ID is not needed, and an error still reaches stderr.
  docker buildx build -q --load --provenance=false --sbom=false -t "$tag" - >/dev/null <<'EOF'
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
  docker import --change "ENV PATH=$BASE_PATH" --change 'CMD ["bash"]' "$tarball" "$tag" >/dev/null
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
  # The rootfs files (busybox's applet list, the debootstrap tarball) are shared by every
  # engine: one `images` at a time makes them (several engines may start side by side).
  exec 8>"$CACHE/.images.lock"
  flock 8
  image_busybox
  image_busybox_layers
  image_debian
  # Optional foreign-arch image for multi-platform tests; cheap (one small .deb).
  image_busybox_arm64 || log "warning: arm64 busybox image not created"
  docker image ls --format '{{.Repository}}:{{.Tag}} {{.ID}} {{.Size}}' 'squash-test/*' >&2
  exec 8>&-
}


# ---------------------------------------------------------------------------
# selftest: what the squash tests rely on, checked against an engine.

# syntax_check DOCKERFILE-DIR REF WHERE: a build whose `# syntax=REF` names the
# fake frontend (it exits 3) must fail with "exit code: 3": the engine found the
# image (WHERE: "locally", "in the registry") and ran it; a failed lookup ends
# with "failed to resolve source metadata ...".
syntax_check() {
  local tmp=$1 ref=$2 where=$3 out
  printf '# syntax=%s\nFROM scratch\n' "$ref" >"$tmp/Dockerfile.syn"
  out=$(docker buildx build -f "$tmp/Dockerfile.syn" "$tmp" 2>&1) && die "syntax build unexpectedly succeeded"
  printf '%s\n' "$out" | tail -n 3 >&2
  if ! grep -q 'exit code: 3' <<<"$out"; then
    log "FAIL: the # syntax=$ref image was not found $where and run"
    return 1
  fi
  log "ok: # syntax=$ref was found $where and run"
}

cmd_selftest() {
  if [ $# -gt 0 ]; then
    parse_pair selftest "$@"
    daemon_pid "$(pdir "$E" "$M")" >/dev/null || die "engine $E $M is not running; run: $0 start $E $M"
    eval "$(env_lines "$E" "$M")"
  fi
  need_engine
  local store tmp
  store=$(store_of docker) || die "docker info failed"
  tmp=$(mktemp -d)
  log "selftest against $DOCKER_HOST (Docker $(docker version --format '{{.Server.Version}}'), $store store)"
  printf 'FROM squash-test/busybox\nRUN echo built-by-selftest >/hello\nCMD ["cat","/hello"]\n' >"$tmp/Dockerfile"
  docker buildx build --load -t squash-selftest/t1 -f "$tmp/Dockerfile" "$tmp" >&2
  [ "$(docker run --rm squash-selftest/t1)" = built-by-selftest ] || die "docker run output mismatch"
  log "ok: build + run"
  printf 'FROM squash-test/debian:bookworm\nRUN apt-get update && apt-get install -y --no-install-recommends hello && hello\n' >"$tmp/Dockerfile.net"
  docker buildx build --network host --load -t squash-selftest/net -f "$tmp/Dockerfile.net" "$tmp" >&2
  log "ok: --network host build reached the Debian mirror"
  docker save squash-selftest/t1 -o "$tmp/save.tar"
  # (The listing is read whole: `tar | grep -q` fails under pipefail when grep stops early.)
  grep -qx 'manifest.json' <<<"$(tar -tf "$tmp/save.tar")" || die "docker save produced no manifest.json"
  log "ok: docker save ($(du -h "$tmp/save.tar" | cut -f1))"
  if [ "$store" = c8d ]; then
    docker buildx build --output "type=oci,dest=$tmp/oci.tar" -f "$tmp/Dockerfile" "$tmp" >&2
    grep -qx 'index.json' <<<"$(tar -tf "$tmp/oci.tar")" || die "oci output has no index.json"
    log "ok: --output type=oci"
  fi
  printf 'FROM squash-test/busybox\nENTRYPOINT ["sh","-c","exit 3"]\n' >"$tmp/Dockerfile.fe"
  docker buildx build --load --provenance=false -t localtest/frontend:dev -f "$tmp/Dockerfile.fe" "$tmp" >&2
  syntax_check "$tmp" localtest/frontend:dev locally || { rm -rf "$tmp"; return 1; }

  # The local registry (started here if it is not running, and stopped again):
  # the engine pushes to it and pulls from it over plain HTTP (dockerd counts
  # 127.0.0.0/8 as an insecure registry), and BuildKit resolves a # syntax=
  # image from it, with no local copy left.
  local reg started=0 sfx img fe
  if ! reg=127.0.0.1:$(registry_running_port); then
    reg=$(registry_start) || die "cannot start the registry"
    reg=${reg#export SQUASH_REGISTRY=}
    started=1
    trap 'registry_stop' EXIT
  fi
  sfx=${SQUASH_ENGINE:-x}-${store%%(*}
  img=$reg/squash-selftest/t1:$sfx
  fe=$reg/squash-selftest/frontend:$sfx
  docker tag squash-selftest/t1 "$img"
  docker push -q "$img" >&2
  docker image rm "$img" squash-selftest/t1 >/dev/null
  docker pull -q "$img" >&2
  [ "$(docker run --rm "$img")" = built-by-selftest ] || die "the image pulled from $reg runs wrong"
  log "ok: push to and pull from $reg"
  docker tag localtest/frontend:dev "$fe"
  docker push -q "$fe" >&2
  docker image rm "$fe" localtest/frontend:dev >/dev/null
  local rc=0
  syntax_check "$tmp" "$fe" "in the registry $reg" || rc=1
  docker image rm squash-selftest/net "$img" >/dev/null 2>&1 || true
  if [ "$started" = 1 ]; then registry_stop; trap - EXIT; fi
  rm -rf "$tmp"
  [ "$rc" = 0 ] || return 1
  log "selftest passed"
}

# ---------------------------------------------------------------------------

main() {
  local cmd=${1:-}
  [ $# -gt 0 ] && shift
  case $cmd in
    install) cmd_install "$@" ;;
    install-debs)
      [ $# -ge 2 ] || die "usage: $0 install-debs NAME 'SUITE: PKG=VERSION ...[; SUITE: ...]' [FILE...]"
      install_debs "$@"
      ;;
    start) cmd_start "$@" ;;
    env) cmd_env "$@" ;;
    stop) cmd_stop "$@" ;;
    registry) cmd_registry "$@" ;;
    images) cmd_images ;;
    status) cmd_status ;;
    selftest) cmd_selftest "$@" ;;
    -h | --help | help) usage ;;
    *) usage; exit 2 ;;
  esac
}

# Sourced (`. scripts/engine.sh`), it only defines its functions: other scripts use its apt
# helpers (private lists, pinned versions, unpacked roots) for tools of their own.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then main "$@"; fi

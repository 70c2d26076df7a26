#!/usr/bin/env bash
# Builds every fuzz target and runs them all at once for SECONDS (default 20).
#   fuzz/run.sh [SECONDS] [TARGET...]     (no TARGET: all of them)
# Prints one line per target with the executions run; exits non-zero if any target crashed
# (a panic, a failed assertion, a timeout or running out of memory), after
# printing the panic with its backtrace and where the crashing input was saved.
# Needs rustup's nightly toolchain; installs cargo-fuzz from crates.io if it is missing.
# The fuzzer's growing corpora and logs stay under fuzz/target/ (git-ignored); the seeds in
# fuzz/corpus/<target>/ are only read; crash inputs go to fuzz/artifacts/<target>/.
set -euo pipefail

secs=${1:-20}
shift || true
case $secs in
'' | *[!0-9]*)
    echo "usage: $0 [SECONDS] [TARGET...]" >&2
    exit 2
    ;;
esac

fuzz_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$fuzz_dir/.."

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "run.sh: the nightly toolchain is missing (rustup toolchain install nightly)" >&2
    exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "run.sh: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked --version '^0.13'
fi

# A target dir set for the main workspace must not take the fuzz build elsewhere.
unset CARGO_TARGET_DIR
# A panic's backtrace goes into the target's log.
export RUST_BACKTRACE=${RUST_BACKTRACE:-1}

# No sanitizer: the targets run safe Rust only (the crate's one `unsafe`, the gateway's borrow of
# fds 0 and 1, is not reached from them), where an out-of-bounds access is a panic already.
# AddressSanitizer would find nothing more and costs build time (133 s against 91 to 102 s for
# the four targets here, 2 cores) and executions (a quarter as many per second).
sanitizer=(--sanitizer none)

build_start=$(date +%s)
cargo +nightly fuzz build --fuzz-dir "$fuzz_dir" "${sanitizer[@]}"
echo "fuzz build: $(($(date +%s) - build_start)) s"

if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list --fuzz-dir "$fuzz_dir")
fi

# A target's working corpus (what its runs add) and its log, for the run and the summary.
work_of() { echo "$fuzz_dir/target/corpus/$1"; }
log_of() { echo "$fuzz_dir/target/logs/$1.log"; }

# run_one TARGET: one target's run; its output goes to its log, its exit status next to it.
run_one() {
    local t=$1 work log status=0
    work=$(work_of "$t")
    log=$(log_of "$t")
    mkdir -p "$work" "$(dirname "$log")"
    rm -f "$log.status"
    local dirs=("$work")
    if [ -d "$fuzz_dir/corpus/$t" ]; then
        dirs+=("$fuzz_dir/corpus/$t")
    fi
    local args=(-max_total_time="$secs" -timeout=20 -rss_limit_mb=2048 -print_final_stats=1)
    if [ -f "$fuzz_dir/dict/$t.dict" ]; then
        args+=(-dict="$fuzz_dir/dict/$t.dict")
    fi
    cargo +nightly fuzz run --fuzz-dir "$fuzz_dir" "${sanitizer[@]}" "$t" "${dirs[@]}" \
        -- "${args[@]}" >"$log" 2>&1 || status=$?
    echo "$status" >"$log.status"
}

# The targets run side by side: each fuzzes one process for SECONDS of wall time, so all of
# them take SECONDS, not SECONDS per target (with fewer executions each where they share cores).
for t in "${targets[@]}"; do
    run_one "$t" &
done
wait

failed=()
for t in "${targets[@]}"; do
    work=$(work_of "$t")
    log=$(log_of "$t")
    status=$(cat "$log.status" 2>/dev/null || echo "none")
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    corpus=$(wc -l < <(find "$work" -type f))
    if [ "$status" = 0 ]; then
        printf 'fuzz %-11s ok     %10s executions in %s s (corpus %s)\n' "$t" "${execs:-?}" "$secs" "$corpus"
    else
        printf 'fuzz %-11s FAILED %10s executions (exit %s; log %s)\n' "$t" "${execs:-?}" "$status" "$log"
        # The panic message and its backtrace, then what libFuzzer says and where the input is.
        sed -n '/panicked at/,/^==[0-9]*==/p' "$log" | grep -v '^==' | head -n 40 | sed 's/^/    | /' || true
        grep -E '^==[0-9]+== ?ERROR|^SUMMARY:|Test unit written to' "$log" | sed 's/^/    | /' || true
        failed+=("$t")
    fi
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: crashed: ${failed[*]}" >&2
    exit 1
fi
echo "fuzz: ${#targets[@]} targets, no crash"

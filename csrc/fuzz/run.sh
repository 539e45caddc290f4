#!/usr/bin/env bash
# Build and run the libFuzzer target of the C core for a bounded time.
#
#   csrc/fuzz/run.sh [SECONDS] [libFuzzer flags...]
#
# SECONDS defaults to 90 (CI); 0 only replays regress/, the seeds and the
# corpus. Steps: find clang (installed with apt-get
# when missing and we are root; exit 77 if that is impossible), build,
# generate the seed corpus (valid dicts made through the C API), replay
# the regression inputs in regress/ and the seeds, then fuzz. New inputs
# accumulate in csrc/fuzz/corpus/ (kept between runs); a crash, a leak or
# a timeout (-timeout=10 s: a hang) writes csrc/fuzz/artifacts/crash-*
# (or leak-*, timeout-*) and makes this script fail. Reproduce one with
#   csrc/fuzz/build/fuzz_dict csrc/fuzz/artifacts/crash-...
# and keep it as a regression input by copying it into regress/.
#
# FUZZ_JOBS=N runs N fuzzing processes (-fork=N), for the long run:
#   FUZZ_JOBS=$(nproc) csrc/fuzz/run.sh 3600
set -euo pipefail
cd "$(dirname "$0")"
SECS="${1:-90}"
shift || true

if ! command -v clang >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "fuzz: installing clang" >&2
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang) >/dev/null 2>&1 || true
    fi
fi
if ! command -v clang >/dev/null 2>&1; then
    echo "fuzz: clang is not installed and could not be installed (need root and apt-get)" >&2
    exit 77
fi
# The target must not run under a preloaded sanitizer runtime of another build.
unset LD_PRELOAD ASAN_OPTIONS UBSAN_OPTIONS

# Runs may overlap (pytest and a manual run): build under a lock, and give
# each run its own seeds and log.
mkdir -p build corpus artifacts
flock build/.lock make -s
SEEDS=$(mktemp -d build/seeds.XXXXXX)
LOG="$SEEDS.log"
cleanup() {
    rm -rf "$SEEDS" "$LOG"
    # Work files of fuzzer processes that are gone (a crash skips their
    # own cleanup): /dev/shm/shmdict-fuzz-PID and shmdict-fuzz-base-PID-N.
    for f in /dev/shm/shmdict-fuzz-*; do
        [ -e "$f" ] || continue
        pid=${f#/dev/shm/shmdict-fuzz-}
        pid=${pid#base-}
        pid=${pid%%-*}
        kill -0 "$pid" 2>/dev/null || rm -f "$f"
    done
}
trap cleanup EXIT
./build/gen_corpus "$SEEDS"

export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
regress=(regress/*)
if [ -e "${regress[0]}" ]; then
    echo "fuzz: replaying ${#regress[@]} regression inputs"
    for f in "${regress[@]}"; do
        # Each input runs REGRESS_RUNS times: some failures depend on
        # timing (1-5 ms TTLs expiring between operations).
        if ! ./build/fuzz_dict -runs="${REGRESS_RUNS:-2000}" -timeout=10 "$f" >"$LOG" 2>&1; then
            grep -E "ERROR|runtime error|fuzz_dict:|SUMMARY" "$LOG" | head -5 >&2
            echo "fuzz: regression input $f FAILS" >&2
            failed=1
        fi
    done
    [ -z "${failed:-}" ] || exit 1
fi
if [ "$SECS" = 0 ]; then
    # Replay only: run every seed and corpus input once.
    ./build/fuzz_dict -runs=0 -timeout=10 corpus "$SEEDS" >"$LOG" 2>&1 || {
        tail -30 "$LOG"
        exit 1
    }
    n=$(( $(ls "$SEEDS" | wc -l) + $(ls corpus | wc -l) ))
    echo "FIGURES {\"test\": \"libfuzzer_replay\", \"inputs\": $n}"
    exit 0
fi

FORK=()
if [ -n "${FUZZ_JOBS:-}" ]; then FORK=(-fork="$FUZZ_JOBS"); fi
set +e
./build/fuzz_dict corpus "$SEEDS" "${FORK[@]}" \
    -max_total_time="$SECS" -timeout=10 -rss_limit_mb=4096 -max_len=270000 \
    -artifact_prefix=artifacts/ -print_final_stats=1 "$@" >"$LOG" 2>&1
rc=$?
set -e
tail -25 "$LOG"
execs=$(grep -E "stat::number_of_executed_units|^#[0-9]+.*DONE" "$LOG" | grep -oE "[0-9]+" | head -1 || true)
if [ -z "$execs" ]; then
    execs=$(grep -oE "^#[0-9]+" "$LOG" | tail -1 | tr -d '#' || echo 0)
fi
corpus=$(ls corpus | wc -l)
echo "FIGURES {\"test\": \"libfuzzer\", \"seconds\": $SECS, \"executions\": ${execs:-0}, \"corpus\": $corpus, \"exit\": $rc}"
if [ "$rc" != 0 ]; then
    cp "$LOG" build/fuzz-failed.log
    echo "fuzz: FAILED (exit $rc); see $PWD/build/fuzz-failed.log and $PWD/artifacts/" >&2
    exit 1
fi

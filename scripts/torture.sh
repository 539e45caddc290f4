#!/usr/bin/env bash
# The long reliability run (RELIABILITY.md): the crash, corruption, load and
# fuzz tests with counts far beyond CI's, once with one stripe per dict and
# once with dicts split into 4 stripes. Every test appends its figures to
# build/reliability-figures.jsonl; the totals are printed at the end.
#
#   ./scripts/torture.sh              # SCALE=10: about 45 minutes on 2 cores
#   SCALE=50 ./scripts/torture.sh     # overnight
#   SCALE=1 ./scripts/torture.sh      # the CI counts
#
# Each count can also be set directly (it then wins over SCALE):
#   SHMDICT_TORTURE_KILLS     SIGKILLs of working processes   (1500 x SCALE)
#   SHMDICT_TORTURE_WORKERS   worker processes                (4)
#   SHMDICT_WAKEUP_KILLS      kills in the lost-wake-up test   (1000 x SCALE)
#   SHMDICT_CORRUPTIONS       corrupted dicts                 (400 x SCALE)
#   SHMDICT_LIVE_CORRUPTIONS  dicts corrupted while in use    (40 x SCALE)
#   SHMDICT_BAD_FILES         random bad files                (40 x SCALE)
#   SHMDICT_LOAD_SECONDS      load test duration per case     (5 x SCALE)
#   SHMDICT_LOAD_PROCS        load test processes             (4)
#   FUZZ_SECONDS              libFuzzer run                   (90 x SCALE)
#   FUZZ_JOBS                 libFuzzer processes             (nproc)
#   TORTURE_PYTEST_ARGS       more pytest arguments, e.g. '-k "not stripes"'
#   SHMDICT_RANDOM_SEEDS      1: fresh random seeds each run  (1; CI: 0, fixed)
# A failure stops the run; its message names the seed (SHMDICT_TORTURE_SEED,
# SHMDICT_CORRUPT_SEED) or the saved input (csrc/fuzz/artifacts/,
# SHMDICT_CORRUPT_ARTIFACTS) that reproduces it.
source "$(dirname "$0")/_venv.sh"
SCALE="${SCALE:-10}"
FIG="$ROOT/build/reliability-figures.jsonl"
mkdir -p "$ROOT/build"
: >"$FIG"
export SHMDICT_FIGURES="$FIG"
export SHMDICT_TORTURE_KILLS="${SHMDICT_TORTURE_KILLS:-$((1500 * SCALE))}"
export SHMDICT_WAKEUP_KILLS="${SHMDICT_WAKEUP_KILLS:-$((1000 * SCALE))}"
export SHMDICT_CORRUPTIONS="${SHMDICT_CORRUPTIONS:-$((400 * SCALE))}"
export SHMDICT_LIVE_CORRUPTIONS="${SHMDICT_LIVE_CORRUPTIONS:-$((40 * SCALE))}"
export SHMDICT_BAD_FILES="${SHMDICT_BAD_FILES:-$((40 * SCALE))}"
export SHMDICT_LOAD_SECONDS="${SHMDICT_LOAD_SECONDS:-$((5 * SCALE))}"
# Unlike CI (fixed seeds), the long run explores new cases every time.
export SHMDICT_RANDOM_SEEDS="${SHMDICT_RANDOM_SEEDS:-1}"
export SHMDICT_FUZZ_SECONDS=0 # pytest only replays; the long fuzz run is below
FUZZ_SECONDS="${FUZZ_SECONDS:-$((90 * SCALE))}"
START=$(date +%s)

TESTS=(tests/test_crash.py tests/test_torture.py tests/test_corruption.py tests/test_fuzz.py tests/test_load.py)
echo "== reliability tests, one stripe (SCALE=$SCALE)"
EXTRA=()
if [ -n "${TORTURE_PYTEST_ARGS:-}" ]; then eval "EXTRA=($TORTURE_PYTEST_ARGS)"; fi
# The per-test limit (pyproject: timeout = 900 s) grows with the counts.
TIMEOUT=(-o "timeout=$((900 * SCALE))")
python -m pytest -q -p no:cacheprovider -x "${TIMEOUT[@]}" "${TESTS[@]}" "${EXTRA[@]}"
echo "== reliability tests, dicts split into 4 stripes"
SHMDICT_STRIPES=4 python -m pytest -q -p no:cacheprovider -x "${TIMEOUT[@]}" "${TESTS[@]}" \
    -k "not libfuzzer and not bad_files and not names and not mode and not symlink" \
    "${EXTRA[@]}"

echo "== libFuzzer, $FUZZ_SECONDS s"
FUZZ_JOBS="${FUZZ_JOBS:-$(nproc)}" csrc/fuzz/run.sh "$FUZZ_SECONDS" | tee build/fuzz-run.txt
grep '^FIGURES ' build/fuzz-run.txt | sed 's/^FIGURES //' >>"$FIG"

echo "== totals ($(($(date +%s) - START)) s)"
python - "$FIG" <<'EOF'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
def total(test, key):
    return sum(r.get(key, 0) for r in rows if r["test"] == test)
print(f"kills survived (torture):         {total('torture', 'kills')}"
      f" ({total('torture', 'kills_in_lock')} while holding the lock;"
      f" {total('torture', 'ops')} operations)")
print(f"kills survived (wake-up test):    {total('waiter_wakeups', 'kills')}")
print(f"injected crash points covered:    {total('crash_points', 'points')}"
      f" (+{total('crash_points', 'recovery_points')} inside recovery)")
print(f"corrupted dicts attacked:         {total('corruption', 'cases')}"
      f" static, {total('live_corruption', 'cases')} live"
      f" ({total('live_corruption', 'writes')} live writes);"
      f" {total('corruption', 'calls') + total('live_corruption', 'calls')} calls")
print(f"bad files tried:                  {total('bad_files', 'files')}")
print(f"fuzz executions:                  {total('libfuzzer', 'executions')}")
print(f"operations under load:            {total('load', 'operations')}")
EOF

#!/usr/bin/env bash
# External judge: cachelib's own generic cache test mixins (CommonTests,
# ClearTests, HasTests, DeleteManyWithPrefixTests, SerializerTests) from its
# source distribution, run with pytest against
# shmdict.contrib.cachelib.SharedMemoryCache, with and without a key
# prefix, on a shared dict and on Redis (a private server the script starts
# with tests/redis_servers.py, and stops by pid on exit); then our own
# Flask-Caching tests in the same environment, on both.
#   JUDGE_VENV   the virtualenv to use (default: build/venv-judges); made
#                if missing, from $PYTHON (default: python3)
# Prints pytest's summaries and a line "cachelib judge (BACKEND): N passed,
# N failed, N skipped" per backend; exits non-zero unless, on both, every
# collected test ran and passed (none failed or skipped).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${JUDGE_VENV:-$ROOT/build/venv-judges}"
WORK="$ROOT/build/judges/cachelib"
# shellcheck source=judges/venv.sh
source scripts/judges/venv.sh
PY="$JUDGE_PY"
# shellcheck source=judges/redis.sh
source scripts/judges/redis.sh

quiet_pip() {
    if ! "$PY" -m pip "$@" >"$WORK/pip.log" 2>&1; then
        cat "$WORK/pip.log" >&2
        exit 1
    fi
}

# The sdist, once: cachelib's tests ship only in it.
mkdir -p "$WORK"
SDIST="$(ls "$WORK"/cachelib-*.tar.gz 2>/dev/null | sort -V | tail -1 || true)"
if [ -z "$SDIST" ]; then
    quiet_pip download -q --no-binary :all: --no-deps -d "$WORK" cachelib
    SDIST="$(ls "$WORK"/cachelib-*.tar.gz | sort -V | tail -1)"
fi
SRC="$WORK/$(basename "$SDIST" .tar.gz)"
[ -d "$SRC" ] || tar -xzf "$SDIST" -C "$WORK"
VERSION="$(basename "$SRC" | sed 's/^cachelib-//')"
if [ "$("$PY" -c 'import cachelib; print(cachelib.__version__)' 2>/dev/null || true)" != "$VERSION" ]; then
    quiet_pip install -q "$SRC"
fi
# cachelib's conftest imports pytest-xprocess (for its server fixtures).
"$PY" -c "import pytest, xprocess, flask_caching, hypothesis" 2>/dev/null \
    || quiet_pip install -q pytest pytest-xprocess flask-caching hypothesis


cp scripts/judges/cachelib_cache_tests.py "$SRC/tests/test_shmdict_cache.py"
LOG="$WORK/last-run.log"
(cd "$SRC" && PYTHONPATH="$ROOT/src" "$PY" -m pytest -p no:cacheprovider -q \
    --collect-only tests/test_shmdict_cache.py) >"$WORK/collected.txt" 2>&1 || true
set +e
(cd "$SRC" && PYTHONPATH="$ROOT/src" "$PY" -m pytest -p no:cacheprovider -rs -v \
    tests/test_shmdict_cache.py) >"$LOG" 2>&1
rc=$?
set -e
grep -E "^=+ .* in [0-9.]+s" "$LOG" | tail -1
grep -E "^(FAILED|ERROR) " "$LOG" || true
status=0
for backend in shm redis; do
    # Test ids hold the backend's name: test_x[shm-CustomCache-no_key_prefix].
    pat="\[([^]]*-)?$backend-"
    collected=$(grep -c -E "$pat" "$WORK/collected.txt" || true)
    passed=$(grep -E "$pat" "$LOG" | grep -c " PASSED" || true)
    failed=$(grep -E "$pat" "$LOG" | grep -c -E " (FAILED|ERROR)" || true)
    skipped=$(grep -E "$pat" "$LOG" | grep -c " SKIPPED" || true)
    echo "cachelib judge ($backend, cachelib $VERSION, full log: ${LOG#"$ROOT"/}): $passed passed, $failed failed, $skipped skipped ($collected collected)"
    if [ "$collected" = 0 ] || [ "$passed" != "$collected" ] || [ "$failed" != 0 ] || [ "$skipped" != 0 ]; then
        status=1
    fi
done

# Flask-Caching resolves CACHE_TYPE's import path itself: check that path
# with Flask-Caching installed here (our test, not cachelib's), on both
# backends (the harness's fixtures reuse the server started above).
set +e
PYTHONPATH="$ROOT/src" "$PY" -m pytest -q -p no:cacheprovider -k flask \
    tests/test_contrib_cachelib.py >"$WORK/flask.log" 2>&1
frc=$?
set -e
echo "flask-caching check: $(tail -1 "$WORK/flask.log")"
if [ "$rc" != 0 ] || [ "$status" != 0 ] || [ "$frc" != 0 ]; then
    exit 1
fi

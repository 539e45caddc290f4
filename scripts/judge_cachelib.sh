#!/usr/bin/env bash
# External judge: cachelib's own generic cache test mixins (CommonTests,
# ClearTests, HasTests, DeleteManyWithPrefixTests, SerializerTests) from its
# source distribution, run with pytest against
# shmdict.contrib.cachelib.SharedMemoryCache, with and without a key
# prefix; then our own Flask-Caching tests in the same environment.
#   JUDGE_VENV   the virtualenv to use (default: build/venv-judges); made
#                if missing, from $PYTHON (default: python3)
# Prints pytest's summaries and a line "cachelib judge: N passed, N failed,
# N skipped"; exits non-zero if any test failed or none ran.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${JUDGE_VENV:-$ROOT/build/venv-judges}"
WORK="$ROOT/build/judges/cachelib"
# shellcheck source=judges/venv.sh
source scripts/judges/venv.sh
PY="$JUDGE_PY"

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
set +e
(cd "$SRC" && PYTHONPATH="$ROOT/src" "$PY" -m pytest -p no:cacheprovider -rs -v \
    tests/test_shmdict_cache.py) >"$LOG" 2>&1
rc=$?
set -e
summary="$(grep -E "^=+ .* in [0-9.]+s" "$LOG" | tail -1)"
echo "$summary"
grep -E "^(FAILED|ERROR) " "$LOG" || true
count() { echo "$summary" | grep -o -E "[0-9]+ $1" | grep -o -E "[0-9]+" || echo 0; }
passed=$(count passed); failed=$(( $(count failed) + $(count error) )); skipped=$(count skipped)
echo "cachelib judge (cachelib $VERSION, full log: ${LOG#"$ROOT"/}): $passed passed, $failed failed, $skipped skipped"

# Flask-Caching resolves CACHE_TYPE's import path itself: check that path
# with Flask-Caching installed here (our test, not cachelib's).
set +e
PYTHONPATH="$ROOT/src" "$PY" -m pytest -q -p no:cacheprovider -k flask \
    tests/test_contrib_cachelib.py >"$WORK/flask.log" 2>&1
frc=$?
set -e
echo "flask-caching check: $(tail -1 "$WORK/flask.log")"
if [ "$rc" != 0 ] || [ "$passed" = 0 ] || [ "$failed" != 0 ] || [ "$frc" != 0 ]; then
    exit 1
fi

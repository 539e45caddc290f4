#!/usr/bin/env bash
# External judge: Django's own cache test suite (BaseCacheTests from
# tests/cache/tests.py of the Django 5.2 LTS source distribution) against
# shmdict.contrib.django.SharedMemoryCache, with Django's test runner.
#   JUDGE_VENV   the virtualenv to use (default: build/venv-judges); made
#                if missing, from $PYTHON (default: python3)
# Prints Django's summary and a line "django judge: N passed, N failed,
# N skipped"; exits non-zero if any test failed or none ran.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${JUDGE_VENV:-$ROOT/build/venv-judges}"
WORK="$ROOT/build/judges/django"
# shellcheck source=judges/venv.sh
source scripts/judges/venv.sh
PY="$JUDGE_PY"

# The sdist, once: Django's tests ship only in it.
mkdir -p "$WORK"
SDIST="$(ls "$WORK"/django-5.2.*.tar.gz 2>/dev/null | sort -V | tail -1 || true)"
if [ -z "$SDIST" ]; then
    if ! "$PY" -m pip download -q --no-binary :all: --no-deps -d "$WORK" \
        "django>=5.2,<5.3" >"$WORK/pip.log" 2>&1; then
        cat "$WORK/pip.log" >&2
        exit 1
    fi
    SDIST="$(ls "$WORK"/django-5.2.*.tar.gz | sort -V | tail -1)"
fi
SRC="$WORK/$(basename "$SDIST" .tar.gz)"
[ -d "$SRC" ] || tar -xzf "$SDIST" -C "$WORK"
VERSION="$(basename "$SRC" | sed 's/^django-//')"
if [ "$("$PY" -c 'import django; print(django.__version__)' 2>/dev/null || true)" != "$VERSION" ]; then
    if ! "$PY" -m pip install -q "$SRC" >"$WORK/pip.log" 2>&1; then
        cat "$WORK/pip.log" >&2
        exit 1
    fi
fi


cp scripts/judges/django_cache_tests.py "$SRC/tests/cache/tests_shmdict.py"
LOG="$WORK/last-run.log"
set +e
(cd "$SRC/tests" && PYTHONPATH="$ROOT/src" "$PY" runtests.py \
    --settings=test_sqlite --parallel=1 --noinput -v 2 \
    cache.tests_shmdict) >"$LOG" 2>&1
rc=$?
set -e
grep -E "^(Ran |OK|FAILED)|^(ERROR|FAIL):" "$LOG" || tail -30 "$LOG"
ran=$(sed -n 's/^Ran \([0-9]*\) test.*/\1/p' "$LOG")
skipped=$(grep -c " \.\.\. skipped" "$LOG" || true)
failed=$(grep -c -E "^(ERROR|FAIL):" "$LOG" || true)
ran=${ran:-0}
passed=$((ran - skipped - failed))
echo "django judge (Django $VERSION, full log: ${LOG#"$ROOT"/}): $passed passed, $failed failed, $skipped skipped"
if [ "$rc" != 0 ] || [ "$ran" = 0 ] || [ "$failed" != 0 ]; then
    exit 1
fi

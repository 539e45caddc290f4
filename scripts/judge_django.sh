#!/usr/bin/env bash
# External judge: Django's own cache test suite (BaseCacheTests from
# tests/cache/tests.py of the Django 5.2 LTS source distribution) against
# shmdict.contrib.django.SharedMemoryCache, with Django's test runner:
# once on a shared dict (LOCATION a name), once on Redis (LOCATION the URL
# of a private server the script starts with tests/redis_servers.py, and
# stops by pid on exit).
#   JUDGE_VENV   the virtualenv to use (default: build/venv-judges); made
#                if missing, from $PYTHON (default: python3)
# Prints Django's summary and a line "django judge (BACKEND): N passed,
# N failed, N skipped" per backend; exits non-zero unless, on both, every
# test ran and passed (none failed or skipped).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${JUDGE_VENV:-$ROOT/build/venv-judges}"
WORK="$ROOT/build/judges/django"
# shellcheck source=judges/venv.sh
source scripts/judges/venv.sh
PY="$JUDGE_PY"
# shellcheck source=judges/redis.sh
source scripts/judges/redis.sh

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
status=0
for backend in shm redis; do
    case "$backend" in
    shm) CLASS=SharedMemoryCacheTests ;;
    redis) CLASS=SharedMemoryCacheOnRedisTests ;;
    esac
    LOG="$WORK/last-run-$backend.log"
    set +e
    (cd "$SRC/tests" && PYTHONPATH="$ROOT/src" "$PY" runtests.py \
        --settings=test_sqlite --parallel=1 --noinput -v 2 \
        "cache.tests_shmdict.$CLASS") >"$LOG" 2>&1
    rc=$?
    set -e
    grep -E "^(Ran |OK|FAILED)|^(ERROR|FAIL):" "$LOG" || tail -30 "$LOG"
    ran=$(sed -n 's/^Ran \([0-9]*\) test.*/\1/p' "$LOG")
    skipped=$(grep -c " \.\.\. skipped" "$LOG" || true)
    failed=$(grep -c -E "^(ERROR|FAIL):" "$LOG" || true)
    ran=${ran:-0}
    passed=$((ran - skipped - failed))
    echo "django judge ($backend, Django $VERSION, full log: ${LOG#"$ROOT"/}): $passed passed, $failed failed, $skipped skipped"
    if [ "$rc" != 0 ] || [ "$ran" = 0 ] || [ "$failed" != 0 ] || [ "$skipped" != 0 ]; then
        status=1
    fi
done
exit "$status"

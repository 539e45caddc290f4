#!/usr/bin/env bash
# Smoke run on the other Pythons shmdict supports (test.sh itself runs on
# .venv's): for each of python3.10, 3.12 and 3.13 found on PATH or under
# ~/.pyenv/versions/*/bin, build the extension with -Werror into
# build/py3.X and run the API and multi-process tests against it.
# Versions not on the machine are skipped, and said so at the end; so are
# those that cannot build an extension (no Python.h, or no venv module, as
# with Debian's python3.X without python3.X-dev or -venv).
#   build/venv-3.X   a venv per version with setuptools, pytest and
#                    hypothesis (pins from requirements-dev.txt); made on
#                    the first run, reused after
#   SHMDICT_SMOKE_PYTHONS   versions to try (default "3.10 3.12 3.13")
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VERSIONS="${SHMDICT_SMOKE_PYTHONS:-3.10 3.12 3.13}"
REQS="$(grep -E '^(setuptools|pytest|hypothesis)\b' requirements-dev.txt)"
TESTS=(tests/test_api.py tests/test_multiprocess.py)

# The first working interpreter for version $1: PATH first, then pyenv's
# (a pyenv shim on PATH fails when that version is not selected, so each
# candidate is run, and must report the version asked for).
find_python() {
    local v="$1" c
    for c in "$(command -v "python$v" || true)" \
        $(ls -d "$HOME"/.pyenv/versions/"$v".*/bin/"python$v" 2>/dev/null | sort -rV); do
        [ -n "$c" ] || continue
        c="$("$c" -c "import sys
assert '%d.%d' % sys.version_info[:2] == '$v'
print(sys.executable)" 2>/dev/null)" || continue
        echo "$c"
        return 0
    done
    return 1
}

# Make or reuse build/venv-$1 for interpreter $2; install REQS once.
venv_for() {
    local py="$2" venv="$ROOT/build/venv-$1"
    if ! "$venv/bin/python" -c "" 2>/dev/null; then
        rm -rf "$venv"
        "$py" -m venv "$venv" || return 1
    fi
    if [ "$(cat "$venv/.smoke-reqs" 2>/dev/null)" != "$REQS" ]; then
        echo "   installing into $venv: $(echo $REQS)"
        "$venv/bin/python" -m pip install -q --disable-pip-version-check \
            $REQS || return 1
        echo "$REQS" >"$venv/.smoke-reqs"
    fi
}

# Build for venv $1 into build/py$1 and run the tests there.
build_and_test() {
    local vpy="$ROOT/build/venv-$1/bin/python" lib="build/py$1"
    local log="build/smoke-$1-build.log"
    mkdir -p "$lib/shmdict"
    if ! SHMDICT_DEV=1 "$vpy" setup.py -q build_ext --force \
        --build-lib "$lib" --build-temp "build/tmp-$1" >"$log" 2>&1; then
        cat "$log"
        echo "   build failed (log: $log)"
        return 1
    fi
    # The pure-Python half of the package, next to the .so just built.
    rm -f "$lib"/shmdict/*.py "$lib"/shmdict/*.pyi
    cp src/shmdict/*.py src/shmdict/*.pyi src/shmdict/py.typed "$lib/shmdict/" ||
        return 1
    # The extension on this Python; the Redis backend is pure Python and
    # runs in the main pass, so its parameters are left out here.
    SHMDICT_BACKENDS=shm "$vpy" -m pytest -q -p no:cacheprovider \
        -o pythonpath="$lib" "${TESTS[@]}"
}

# Why interpreter $1 cannot build and test the extension, if it cannot.
unfit() {
    "$1" -c "import os, sysconfig
if not os.path.exists(os.path.join(sysconfig.get_paths()['include'], 'Python.h')):
    print('no Python.h')
else:
    import ensurepip, venv" 2>/dev/null || echo "no venv or ensurepip module"
}

ran="" skipped="" cannot="" failed=""
for v in $VERSIONS; do
    if ! py="$(find_python "$v")"; then
        echo "-- python$v: not found, skipped"
        skipped="$skipped $v"
        continue
    fi
    why="$(unfit "$py")"
    if [ -n "$why" ]; then
        echo "-- python$v ($py): $why, skipped"
        cannot="$cannot $v($why)"
        continue
    fi
    echo "-- python$v ($py)"
    if venv_for "$v" "$py" && build_and_test "$v"; then
        ran="$ran $v"
    else
        failed="$failed $v"
    fi
done
echo "== smoke: ran:${ran:- none}; skipped (absent):${skipped:- none};" \
    "${cannot:+skipped (cannot build):$cannot; }failed:${failed:- none}"
[ -z "$failed" ]

#!/usr/bin/env bash
# The whole test suite, from a fresh clone:
#   1. the C core's unit tests (-Werror; plain, ASan+UBSan, TSan)
#   2. ruff, mypy --strict, and stubtest of the extension against its .pyi
#   3. pytest, then again with dicts split into stripes (same counts)
#   4. pytest again against an ASan+UBSan build of the extension
#   5. external judges: the frameworks' own test suites against our
#      backends (scripts/judge_*.sh, in build/venv-judges)
#   6. a smoke run on Python 3.10, 3.12 and 3.13, those on the machine
#      (scripts/smoke_pythons.sh)
# SHMDICT_QUICK=1 skips 4, 5, 6 and the sanitizer builds of 1.
source "$(dirname "$0")/_venv.sh"
QUICK="${SHMDICT_QUICK:-0}"

echo "== C unit tests"
make -s -C csrc test
if [ "$QUICK" != 1 ]; then
    make -s -C csrc test SAN=1
    make -s -C csrc test TSAN=1
fi

echo "== clang-format, ruff, mypy, stubtest"
if command -v clang-format >/dev/null; then
    clang-format --dry-run --Werror csrc/*.c csrc/*.h csrc/tests/*.c src/shmdict/_core/*.c src/shmdict/_core/*.h
else
    echo "clang-format not installed: C formatting not checked"
fi
ruff check src tests benchmarks examples
ruff format --check src tests benchmarks examples
mypy
MYPYPATH=src mypy --strict tests
PYTHONPATH=src python -m mypy.stubtest shmdict._core --allowlist .stubtest-allowlist

echo "== pytest"
python -m pytest -q -p no:cacheprovider tests

# This pass and the ASan one test the C engine: the conformance modules
# run on shm alone (SHMDICT_BACKENDS), and the Redis modules are skipped.
# A real second pass: the same tests and the same counts (crash, torture,
# corruption, load and fuzz runs are not scaled down; this pass takes
# about 2.5 minutes more than it did with a quarter of them). What does
# not run striped, and why: the one-heap tests of test_memory.py (the
# `one_heap` fixture: big values and full-dict checks that only hold for
# one heap) and test_ttl.py::test_expired_space_is_reused (capacity
# compared key for key with a fresh dict's) use the default layout; a
# test that asks for a stripe count of its own keeps it.
echo "== pytest with every dict split into up to 4 stripes"
SHMDICT_STRIPES=4 SHMDICT_BACKENDS=shm python -m pytest -q -p no:cacheprovider tests

if [ "$QUICK" != 1 ]; then
    echo "== pytest under ASan+UBSan"
    ASAN_PKG="$ROOT/build/asan-pkg"
    rm -rf "$ASAN_PKG" && mkdir -p "$ASAN_PKG"
    cp -r src/shmdict "$ASAN_PKG/"
    rm -f "$ASAN_PKG"/shmdict/*.so
    SHMDICT_DEV=1 SHMDICT_SANITIZE=1 python setup.py -q build_ext \
        --build-temp build/asan-tmp --build-lib "$ASAN_PKG" --force 2>&1 \
        | grep -v -E "BetaConfiguration|warnings.warn|cannot be found" || true
    LD_PRELOAD="$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)" \
    ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    SHMDICT_BACKENDS=shm \
        python -m pytest -q -p no:cacheprovider -o pythonpath="$ASAN_PKG" \
        -m "not no_asan" tests
fi

if [ "$QUICK" != 1 ]; then
    echo "== external judges"
    scripts/judge_django.sh
    scripts/judge_cachelib.sh
    scripts/judge_limits.sh
fi

if [ "$QUICK" != 1 ]; then
    echo "== smoke run: API and multi-process tests on the other Pythons"
    scripts/smoke_pythons.sh
fi
echo "== all tests passed"

# Sourced by the other scripts: make .venv (once), install what the
# project needs, and build the extension in place.
#   SHMDICT_VENV   where the virtualenv lives (default: .venv in the repo)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${SHMDICT_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
    echo "== creating $VENV"
    "$PY" -m venv "$VENV"
fi
# What the tests need besides Python packages: clang with libFuzzer for
# tests/test_fuzz.py. Installed with apt-get only when missing (and only as
# root); the test itself never installs anything, and fails under CI
# (SHMDICT_CI=1, set by .ci/run) when the tools are not there.
fuzz_probe() {
    local dir rc
    dir="$(mktemp -d)"
    echo 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { return 0; }' >"$dir/p.c"
    clang -fsanitize=fuzzer -o "$dir/p" "$dir/p.c" >/dev/null 2>&1 && rc=0 || rc=1
    rm -rf "$dir"
    return "$rc"
}
if ! command -v clang >/dev/null 2>&1 || ! fuzz_probe; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "== installing clang and libFuzzer (apt-get)"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -qq clang libclang-rt-dev >/dev/null || true
    fi
    if ! command -v clang >/dev/null 2>&1 || ! fuzz_probe; then
        echo "clang with libFuzzer is not available: tests/test_fuzz.py will skip" \
            "(or fail, under SHMDICT_CI=1)"
    fi
fi
# shellcheck disable=SC1091
. "$VENV/bin/activate"
python -m pip install -q --upgrade pip >/dev/null
python -m pip install -q -r requirements-dev.txt
# The Redis backend's tests start real servers (tests/redis_servers.py).
if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
    echo "== installing redis-server (apt-get)"
    sudo_=""
    [ "$(id -u)" -eq 0 ] || sudo_="sudo -n"
    if ! { $sudo_ apt-get update -qq && $sudo_ apt-get install -y -qq redis-server; } >/dev/null 2>&1; then
        echo "!! could not install redis-server: the Redis tests will be skipped" \
             "(install it: apt-get install redis-server)" >&2
    fi
fi
echo "== building shmdict._core"
SHMDICT_DEV=1 python setup.py -q build_ext --inplace 2>&1 | grep -v -E "BetaConfiguration|warnings.warn|cannot be found" || true
python -c "import sys; sys.path.insert(0, 'src'); import shmdict" 

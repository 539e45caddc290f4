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

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
echo "== building shmdict._core"
SHMDICT_DEV=1 python setup.py -q build_ext --inplace 2>&1 | grep -v -E "BetaConfiguration|warnings.warn|cannot be found" || true
python -c "import sys; sys.path.insert(0, 'src'); import shmdict" 

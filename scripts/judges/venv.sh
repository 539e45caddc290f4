# Sourced by the scripts/judge_*.sh: the judges' shared virtualenv, and the
# extension built in place for its Python.
#   VENV (set by the caller)  the virtualenv; made from $PYTHON (default
#                             python3) if missing
# Sets JUDGE_PY to its python.
if [ ! -x "$VENV/bin/python" ]; then
    echo "== creating $VENV"
    "${PYTHON:-python3}" -m venv "$VENV"
fi
JUDGE_PY="$VENV/bin/python"
# The extension's build needs setuptools 77 or later (pyproject's license
# field); a fresh venv may come with an older one.
"$JUDGE_PY" -m pip install -q --disable-pip-version-check "setuptools>=77" \
    >/dev/null 2>&1 || echo "judge: could not upgrade setuptools" >&2
SHMDICT_DEV=1 "$JUDGE_PY" setup.py -q build_ext --inplace 2>&1 \
    | grep -v -E "BetaConfiguration|warnings.warn|bdist_wheel|warn\(|cannot be found|FutureWarning" || true

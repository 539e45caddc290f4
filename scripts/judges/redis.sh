# Sourced by the scripts/judge_*.sh after judges/venv.sh: a private Redis
# for the run, from the test harness (tests/redis_servers.py: a standalone
# server on a unix socket, and a Cluster on loopback ports), stopped by
# pid when the script exits, whatever the exit.
#   JUDGE_PY (set by venv.sh)   the python that runs the harness
# Exports SHMDICT_JUDGE_REDIS_URL (the standalone server's URL), and the
# harness's SHMDICT_REDIS_URL / SHMDICT_REDIS_CLUSTER_URL lines.
"$JUDGE_PY" -c "import redis" 2>/dev/null \
    || "$JUDGE_PY" -m pip install -q --disable-pip-version-check "redis>=5.0" >/dev/null
REDIS_DIR="$(mktemp -d "${TMPDIR:-/tmp}/shmdict-judge-redis.XXXXXX")"
judge_stop_redis() {
    "$JUDGE_PY" "$ROOT/tests/redis_servers.py" stop "$REDIS_DIR" >/dev/null 2>&1 || true
    rm -rf "$REDIS_DIR"
}
trap judge_stop_redis EXIT
while IFS= read -r line; do
    case "$line" in
    SHMDICT_*=*) export "${line?}" ;;
    esac
done < <("$JUDGE_PY" "$ROOT/tests/redis_servers.py" start "$REDIS_DIR")
if [ -z "${SHMDICT_REDIS_URL:-}" ]; then
    echo "judge: the Redis harness did not start a server (tests/redis_servers.py)" >&2
    exit 1
fi
export SHMDICT_JUDGE_REDIS_URL="$SHMDICT_REDIS_URL"
echo "== Redis for the judge: $SHMDICT_JUDGE_REDIS_URL"

#!/usr/bin/env bash
# Install what benchmarks/bench.py compares against.
#
# Debian packages: redis-server, PHP CLI + APCu, nginx + the Lua module.
# Each apt package is installed on its own so that one failure does not stop
# the others; bench.py reports any peer it cannot start as "skipped (reason)".
# Python peers come from benchmarks/requirements.txt.
set -u
here="$(cd "$(dirname "$0")" && pwd)"
py="${PYTHON:-python3}"

if command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    sudo_=""
    [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && sudo_="sudo"
    $sudo_ apt-get update -q || echo "setup.sh: apt-get update failed" >&2
    for pkg in redis-server php-cli php-apcu nginx libnginx-mod-http-lua; do
        if ! $sudo_ apt-get install -y -q --no-install-recommends "$pkg"; then
            echo "setup.sh: apt-get install $pkg failed (the peer will be skipped)" >&2
        fi
    done
    # Debian starts services on install where it can; the benchmark runs its
    # own private instances, so stop the system-wide ones if they came up.
    for svc in redis-server nginx; do
        (command -v systemctl >/dev/null 2>&1 && $sudo_ systemctl stop "$svc") >/dev/null 2>&1 || true
        (command -v service >/dev/null 2>&1 && $sudo_ service "$svc" stop) >/dev/null 2>&1 || true
    done
else
    echo "setup.sh: no apt-get; native peers (redis, APCu, nginx) will be skipped" >&2
fi

"$py" -m pip install -q -r "$here/requirements.txt" || {
    echo "setup.sh: some pip requirements failed; retrying one by one" >&2
    grep -v '^\s*#' "$here/requirements.txt" | sed 's/#.*//' | while read -r req; do
        [ -n "$req" ] && { "$py" -m pip install -q "$req" || echo "setup.sh: pip install $req failed" >&2; }
    done
}
exit 0

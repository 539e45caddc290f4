#!/usr/bin/env bash
# External judge: the limits library's own storage and strategy tests, run
# against shmdict.contrib.limits: on a shared dict (shmdict:// and
# async+shmdict://) and on Redis (shmdict+unix:// and async+shmdict+unix://,
# a private server the script starts with tests/redis_servers.py and stops
# by pid on exit).
#
#   1. makes build/venv-judges (shared by the external judges) if missing
#      and installs scripts/judges/limits-requirements.txt into it;
#   2. downloads the limits sdist with pip (checked against its sha256),
#      unpacks it under build/judges/limits/, and applies
#      scripts/judges/limits-$VERSION.patch, which adds a "shmdict" (and
#      "shmdict-async") storage to the storages limits' suite is
#      parametrized over, with a fixture that empties the dict before each
#      test as the redis fixtures flush redis, and "shmdict-redis" (and
#      "shmdict-redis-async") on the server, whose fixture empties the
#      run's namespace;
#   3. runs tests/test_storage.py, tests/test_strategy.py, their tests/aio/
#      twins and tests/integration/test_concurrency.py for the shmdict
#      params, plus limits' own in-memory storage as a control
#      (SHMDICT_JUDGE_CONTROL=0 leaves it out); the server-backed params
#      (redis, memcached, mongodb, ...) are deselected;
#   4. fails unless every shmdict test that the suite collects ran and
#      passed, for each of the four: none failed, skipped or deselected.
# Takes about two minutes (one without the control); most of it is the
# tests' own sleeps.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

VERSION=5.8.0
SHA256=c9e0d74aed837e8f6f50d1fcebcf5fd8130957287206bc3799adaee5092655da
VENV="${SHMDICT_JUDGES_VENV:-$ROOT/build/venv-judges}"
WORK="$ROOT/build/judges/limits"
SRC="$WORK/limits-$VERSION"
FILES=(
    tests/test_storage.py
    tests/test_strategy.py
    tests/aio/test_storage.py
    tests/aio/test_strategy.py
    tests/integration/test_concurrency.py
)

# shellcheck source=judges/venv.sh
source scripts/judges/venv.sh
JPY="$JUDGE_PY"
"$JPY" -m pip install -q --disable-pip-version-check \
    -r scripts/judges/limits-requirements.txt
# shellcheck source=judges/redis.sh
source scripts/judges/redis.sh

mkdir -p "$WORK"
SDIST="$WORK/limits-$VERSION.tar.gz"
if [ ! -f "$SDIST" ]; then
    "$JPY" -m pip download -q --disable-pip-version-check \
        --no-binary :all: --no-deps "limits==$VERSION" -d "$WORK"
fi
echo "$SHA256  $SDIST" | sha256sum -c --quiet -
rm -rf "$SRC"
tar xzf "$SDIST" -C "$WORK"
patch -d "$SRC" -p0 -s --fuzz=0 <"scripts/judges/limits-$VERSION.patch"

export PYTHONPATH="$ROOT/src"
export SHMDICT_JUDGE_DICT="limits-judge-$$"
KEEP="shmdict"
if [ "${SHMDICT_JUDGE_CONTROL:-1}" = 1 ]; then
    KEEP="shmdict or in-memory"
fi
cd "$SRC"
# limits' pytest.ini adds coverage and its own report flags: replace them.
PYTEST=("$JPY" -m pytest -p no:cacheprovider -o addopts=)

# Every shmdict test the suite has, before any selection.
"${PYTEST[@]}" -q --collect-only "${FILES[@]}" >collected.txt

status=0
"${PYTEST[@]}" -q --tb=short -rfEsxX --no-success-flaky-report \
    --junitxml=results.xml -k "$KEEP" "${FILES[@]}" 2>&1 | tee pytest.log ||
    status=$?

"$JPY" - "$VERSION" collected.txt results.xml pytest.log <<'EOF' || status=1
"""Count outcomes per storage, and hold shmdict to: all collected, all run,
all passed."""
import re
import sys
import xml.etree.ElementTree as ET

version, collected_path, results_path, log_path = sys.argv[1:]
PARAMS = ("shmdict", "shmdict-async", "shmdict-redis", "shmdict-redis-async")
want = dict.fromkeys(PARAMS, 0)
for line in open(collected_path):
    m = re.search(r"\[(shmdict(?:-redis)?(?:-async)?)\]$", line.strip())
    if m:
        want[m.group(1)] += 1

# A test that @flaky ran again appears once per run: its last run counts.
final = {}
for case in ET.parse(results_path).iter("testcase"):
    name, where = case.get("name", ""), case.get("classname", "")
    outcome = "passed"
    for child in case:
        if child.tag in ("failure", "error"):
            outcome = "failed"
        elif child.tag == "skipped":
            outcome = "skipped"
    final[where, name] = outcome
counts = {}
for (where, name), outcome in final.items():
    m = re.search(r"\[([^\]]+)\]$", name)
    if not m:
        continue
    param = m.group(1)
    if param == "in-memory":
        is_async = ".aio." in where or "Async" in where
        param = "in-memory-async" if is_async else "in-memory"
    row = counts.setdefault(param, {"passed": 0, "failed": 0, "skipped": 0})
    row[outcome] += 1

reruns = sum(
    1 for line in open(log_path) if "[shmdict" in line and " failed (" in line
)
ok = True
print(f"== limits judge (limits {version})")
for param in (*PARAMS, "in-memory", "in-memory-async"):
    row = counts.get(param)
    if row is None:
        continue
    print(f"{param}: {row['passed']} passed, {row['failed']} failed, "
          f"{row['skipped']} skipped")
for param, n in want.items():
    row = counts.get(param, {"passed": 0, "failed": 0, "skipped": 0})
    if n == 0 or row["passed"] != n or row["failed"] or row["skipped"]:
        ok = False
        print(f"{param}: {n} collected, but {row['passed']} passed, "
              f"{row['failed']} failed, {row['skipped']} skipped")
if reruns:
    # limits marks its timing-sensitive tests @flaky, for every storage;
    # the log above says which failed once and why.
    print(f"note: {reruns} shmdict run(s) failed once and passed when "
          "retried by limits' @flaky mark (see the Flaky Test Report above)")
sys.exit(0 if ok else 1)
EOF

if [ -e "${SHMDICT_DIR:-/dev/shm}/$SHMDICT_JUDGE_DICT" ]; then
    echo "the judge left its dict $SHMDICT_JUDGE_DICT in /dev/shm"
    status=1
fi
exit "$status"

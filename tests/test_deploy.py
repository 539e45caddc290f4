"""Where dicts are deployed: a small or full tmpfs, files tampered with
under live handles, pools of equal workers, machines without /proc.

The tmpfs tests mount a tiny tmpfs of their own (root only; skipped with
the reason otherwise) and put dicts there with ``dir=``. Each scenario that
could die of SIGBUS runs in a child process, so that a signal is seen as
the child's exit status rather than as the end of the test session.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest

import shmdict
from tests.helpers import new_name, tmpfs

MiB = 1 << 20
KiB = 1 << 10
# Children import the build this session imports (the ASan one, in that pass).
SRC = os.path.dirname(os.path.dirname(os.path.abspath(shmdict.__file__)))


@pytest.fixture
def tiny() -> Iterator[str]:
    """A 4 MiB tmpfs, as a container's /dev/shm might be, only smaller."""
    with tmpfs("4m") as where:
        yield where


def fill_fs(where: str, name: str = "filler") -> str:
    """Fill the filesystem at *where* with an unrelated file; return its path."""
    path = os.path.join(where, name)
    with open(path, "wb", buffering=0) as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\xa5" * 4096)
            f.flush()
    assert os.statvfs(where).f_bavail == 0
    return path


# What every child starts with: its imports, and fill() as fill_fs above.
CHILD_PRELUDE = """
import json, os, sys
import shmdict

def fill(where, name="filler"):
    path = os.path.join(where, name)
    with open(path, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"x" * 4096)
        except OSError:
            pass
    assert os.statvfs(where).f_bavail == 0
    return path
"""


def run_child(code: str, *args: str, timeout: float = 120) -> Any:
    """Run *code* (which prints one JSON line last) in a fresh interpreter,
    after CHILD_PRELUDE; fail the test if it died of a signal or exited
    non-zero."""
    env = {
        **os.environ,
        "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    r = subprocess.run(
        [sys.executable, "-c", CHILD_PRELUDE + textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
    assert r.returncode >= 0, (
        f"child killed by {signal.Signals(-r.returncode).name}\n{r.stderr}"
    )
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


# ---- a full filesystem: every kind of write --------------------------------

WRITE_KINDS = {
    "set": "d.set(f'new{i}', b'w' * 3000)",
    "set_many": "d.set_many({f'm{i}.{j}': b'w' * 3000 for j in range(8)})",
    "lpush": "d.lpush('queue', b'w' * 3000)",
    "add": "d.add(f'add{i}', b'w' * 3000)",
    "incr_init": "d.incr(f'counter{i}', 1, init=0)",
    "setdefault": "d.setdefault(f'sd{i}', b'w' * 3000)",
}

FULL_FS_CHILD = """
where, kind, stmt = sys.argv[1], sys.argv[2], sys.argv[3]
d = shmdict.new("dict", 3 << 20, dir=where)
stored = {}
for i in range(40):                      # acknowledged items, before the fill
    d.set(f"k{i}", f"value {i}" * 20)
    stored[f"k{i}"] = f"value {i}" * 20
filler = fill(where)                      # another program fills the tmpfs
assert os.statvfs(where).f_bavail == 0
errors, done = [], 0
for i in range(2000):
    try:
        exec(stmt)
        done += 1
    except shmdict.NoMemoryError as e:
        errors.append(str(e))
        break
intact = all(d[k] == v for k, v in stored.items())
problems = d.verify()
os.unlink(filler)                         # room again: the dict goes on
exec(stmt, {"d": d, "i": 99999})
after = d.verify()
print(json.dumps({"errors": errors, "done": done, "intact": intact,
                  "problems": problems, "after": after}))
"""


@pytest.mark.parametrize("kind", sorted(WRITE_KINDS))
def test_full_filesystem_write_raises_and_keeps_everything(
    tiny: str, kind: str
) -> None:
    r = run_child(FULL_FS_CHILD, tiny, kind, WRITE_KINDS[kind])
    assert r["errors"], f"{r['done']} writes and no NoMemoryError"
    msg = r["errors"][0]
    for words in ("filesystem", "is full", "--shm-size", "emptyDir", "medium: Memory"):
        assert words in msg, msg
    assert r["intact"] is True
    assert r["problems"] == []
    assert r["after"] == []


def test_new_key_into_a_fresh_index_page(tiny: str) -> None:
    """Keys land in buckets all over the index; on a full filesystem the
    first key whose index page was never used must be refused, not fault."""
    r = run_child(
        """
        where = sys.argv[1]
        d = shmdict.new("dict", 3 << 20, dir=where)
        d["first"] = 1
        blocks0 = os.stat(d.path).st_blocks
        fill(where)
        refused = None
        for i in range(5000):             # tiny values: the heap has room
            try:
                d[f"n{i}"] = i
            except shmdict.NoMemoryError as e:
                refused = i
                break
        ok = all(d[f"n{j}"] == j for j in range(refused or 0))
        print(json.dumps({"refused": refused, "ok": ok, "first": d["first"],
                          "verify": d.verify(),
                          "grew": os.stat(d.path).st_blocks > blocks0}))
        """,
        tiny,
    )
    assert r["refused"] is not None, "5000 keys into a full filesystem"
    assert r["ok"] is True
    assert r["first"] == 1
    assert r["verify"] == []


def test_read_hit_in_evicting_dict_on_full_filesystem(tiny: str) -> None:
    """A hit marks its bucket for CLOCK; that byte must be in a page that
    was reserved with the key's index page, so reads never fault."""
    r = run_child(
        """
        where = sys.argv[1]
        d = shmdict.new("dict", 3 << 20, dir=where, evict=True)
        keys = [f"k{i}" for i in range(3000)]
        for k in keys:
            d[k] = k
        fill(where)
        peer = shmdict.get("dict", dir=where)   # no per-handle cache yet
        hits = sum(peer.get(k) == k for k in keys)
        print(json.dumps({"hits": hits, "verify": d.verify()}))
        """,
        tiny,
    )
    assert r["hits"] == 3000
    assert r["verify"] == []


def test_evicting_dict_makes_room_inside_its_pages(tiny: str) -> None:
    """An evicting dict on a full filesystem evicts into pages it already
    has, as it would when its own heap is full (as long as the key's index
    page is in use: see test_new_key_into_a_fresh_index_page)."""
    r = run_child(
        """
        where = sys.argv[1]
        d = shmdict.new("dict", 3 << 20, dir=where, evict=True)
        # Give every index page a key first: a key whose index page was
        # never used needs a new page, which no eviction can give.
        for i in range(5000):
            d[f"t{i}"] = 0
        for i in range(5000):
            del d[f"t{i}"]
        for i in range(200):
            d[f"k{i}"] = b"v" * 2000
        fill(where)
        errors = 0
        for i in range(200, 600):
            try:
                d[f"k{i}"] = b"v" * 2000
            except shmdict.NoMemoryError:
                errors += 1
        print(json.dumps({"errors": errors, "last": d.get("k599") is not None,
                          "evictions": d.stats()["evictions"],
                          "verify": d.verify()}))
        """,
        tiny,
    )
    assert r["errors"] == 0
    assert r["last"] is True
    assert r["evictions"] > 0
    assert r["verify"] == []


def test_new_on_a_full_filesystem(tiny: str) -> None:
    fill_fs(tiny)
    name = new_name()
    with pytest.raises(shmdict.NoMemoryError, match="is full"):
        shmdict.new(name, 1 * MiB, dir=tiny)
    assert not shmdict.exists(name, dir=tiny)
    assert sorted(os.listdir(tiny)) == ["filler"]  # no half-made file left


def test_new_refuses_a_size_the_filesystem_can_never_hold(tiny: str) -> None:
    with pytest.raises(shmdict.NoMemoryError, match="can never fit"):
        shmdict.new(new_name(), 1 << 30, dir=tiny)
    with pytest.raises(shmdict.NoMemoryError, match="can never fit"):
        shmdict.open(new_name(), 8 * MiB, dir=tiny)
    assert os.listdir(tiny) == []


def test_reserve_claims_everything_up_front(tiny: str) -> None:
    name = new_name()
    with shmdict.new(name, 2 * MiB, dir=tiny, reserve=True) as d:
        st = d.stats()
        assert st["reserved"] is True
        assert st["bytes_reserved"] == 2 * MiB
        fill_fs(tiny)
        # The dict fills its own heap; the full filesystem never shows.
        n = 0
        try:
            while True:
                d[f"k{n}"] = b"v" * 1000
                n += 1
        except shmdict.NoMemoryError as e:
            assert "filesystem" not in str(e)  # noqa: PT017 - the loop's end
        assert n > 1500
        assert d.verify() == []
    os.unlink(os.path.join(tiny, "filler"))
    # A reservation the filesystem can't hold fails at once, leaving nothing.
    with (
        shmdict.new("other", 3 * MiB, dir=tiny, reserve=True),
        pytest.raises(shmdict.NoMemoryError, match="is full"),
    ):
        shmdict.new(name, 2 * MiB, dir=tiny, reserve=True)
    assert os.listdir(tiny) == []


def test_without_reserve_memory_follows_the_items(tiny: str) -> None:
    with shmdict.new(new_name(), 3 * MiB, dir=tiny) as d:
        before = d.stats()["bytes_reserved"]
        assert before < 256 * KiB
        for i in range(500):
            d[f"k{i}"] = b"v" * 1000
        after = d.stats()["bytes_reserved"]
        # ~600 KiB of entries, reserved in chunks of at most 1 MiB.
        assert 500 * 1000 < after - before < 500 * 1000 + 1100 * KiB


def test_another_process_fills_the_filesystem_while_we_write(tiny: str) -> None:
    """The issue's report: an unrelated file grows until tmpfs is full, and
    the writer got SIGBUS two sets later. Now it gets NoMemoryError."""
    r = run_child(
        """
        import subprocess
        where = sys.argv[1]
        d = shmdict.new("dict", 3 << 20, dir=where)
        done = 0
        filler = subprocess.Popen([sys.executable, "-c",
            "import sys\\nf = open(sys.argv[1], 'wb', buffering=0)\\n"
            "try:\\n    while True:\\n        f.write(b'x' * 65536); f.flush()\\n"
            "except OSError:\\n    pass\\n", os.path.join(where, "filler")])
        err = None
        try:
            for i in range(100000):
                d[f"k{i}"] = b"v" * 500
                done += 1
        except shmdict.NoMemoryError as e:
            err = str(e)
        filler.wait()
        ok = all(d[f"k{i}"] == b"v" * 500 for i in range(done))
        print(json.dumps({"err": err, "done": done, "ok": ok,
                          "verify": d.verify()}))
        """,
        tiny,
    )
    assert r["err"] is not None
    assert "is full" in r["err"]
    assert r["ok"] is True
    assert r["verify"] == []


# ---- a file truncated or replaced under live handles -----------------------

TRUNCATE_CHILD = """
name, cut, op = sys.argv[1], sys.argv[2], sys.argv[3]
d = shmdict.new(name, 4 << 20)
for i in range(3000):
    d[f"k{i}"] = f"value {i}" * 10
peer = shmdict.get(name)                  # a live peer in this process
size = d.size
length = {"half": size // 2, "page": 4096, "zero": 0}[cut]
os.truncate(d.path, length)               # as another process would
ops = {
    "get": lambda h: [h.get(f"k{i}") for i in range(3000)],
    "set": lambda h: h.set("new", 1),
    "incr": lambda h: h.incr("n", 1, init=0),
    "get_keys": lambda h: h.get_keys(),
    "verify": lambda h: h.verify(),
}
results = []
for h in (peer, d):
    for attempt in range(2):
        try:
            ops[op](h)
            results.append("ok")
        except shmdict.CorruptError as e:
            results.append("CorruptError: " + str(e))
# Every handle is broken for good once it saw the damage.
later = []
for h in (peer, d):
    try:
        h.set("later", 1)
        later.append("ok")
    except shmdict.CorruptError:
        later.append("CorruptError")
peer.close()
d.close()
print(json.dumps({"results": results, "later": later}))
"""


@pytest.mark.parametrize("op", ["get", "set", "incr", "get_keys", "verify"])
@pytest.mark.parametrize("cut", ["half", "page", "zero"])
def test_truncated_file_gives_corrupt_error(name: str, cut: str, op: str) -> None:
    r = run_child(TRUNCATE_CHILD, name, cut, op)
    results = r["results"]
    # A write, a scan or anything after a cut that took the lock pages must
    # notice; a get of keys whose pages all survived may still answer them.
    if op != "get" or cut != "half":
        assert all(x.startswith("CorruptError") for x in results), results
        assert "truncated" in results[0], results
    else:
        assert all(x == "ok" or "truncated" in x for x in results), results
    assert r["later"] == ["CorruptError", "CorruptError"]


def test_file_replaced_by_rename_keeps_old_handles_working(name: str) -> None:
    """A new file renamed over the name: open handles keep the old file
    (as after remove()), and new handles get the new one."""
    with shmdict.new(name, 1 * MiB) as d:
        d["a"] = 1
        other = new_name()
        with shmdict.new(other, 1 * MiB) as o:
            o["a"] = 2
            os.rename(o.path, d.path)
            assert d["a"] == 1
            d["b"] = 3
            assert d.verify() == []
            with shmdict.get(name) as fresh:
                assert fresh["a"] == 2


def test_file_rewritten_in_place_gives_errors_not_signals(name: str) -> None:
    """cp over a dict: truncated to 0, then written again with other bytes."""
    r = run_child(
        """
        name = sys.argv[1]
        d = shmdict.new(name, 1 << 20)
        for i in range(500):
            d[f"k{i}"] = i
        with open(d.path, "r+b") as f:      # what cp does to an existing file
            f.truncate(0)
            f.write(os.urandom(1 << 20))
        seen = []
        for op in (lambda: d.set("x", 1), lambda: d.verify(),
                   lambda: d.get_keys(), lambda: d.incr("k1", 1)):
            try:
                op()
                seen.append("ok")
            except shmdict.Error as e:
                seen.append(type(e).__name__)
        print(json.dumps({"seen": seen}))
        """,
        name,
    )
    assert all(s == "CorruptError" for s in r["seen"]), r["seen"]


# ---- open(): pools of equals ------------------------------------------------


def _opener(name: str, size: int, barrier: object, out: object) -> None:
    barrier.wait()  # type: ignore[attr-defined]
    try:
        d = shmdict.open(name, size)
    except ValueError as e:
        out.put(("mismatch", str(e)))  # type: ignore[attr-defined]
        return
    # Nothing half-built: the dict answers and checks out at once.
    n = d.incr("n", 1, init=0)
    ino = os.stat(d.path).st_ino
    ok = d.verify() == [] and not d.owner
    out.put(("ok", d.created, n, ino, ok))  # type: ignore[attr-defined]
    d.close()


def _race(name: str, sizes: list[int]) -> list[Any]:
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(len(sizes))
    out = ctx.Queue()
    procs = [ctx.Process(target=_opener, args=(name, s, barrier, out)) for s in sizes]
    for p in procs:
        p.start()
    got = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    return got


@pytest.mark.no_asan
def test_open_raced_by_8_processes(name_factory) -> None:  # type: ignore[no-untyped-def]
    for _ in range(200):
        name = name_factory()
        got = _race(name, [1 * MiB] * 8)
        assert all(g[0] == "ok" for g in got), got
        assert sum(g[1] for g in got) == 1  # exactly one creator
        assert sorted(g[2] for g in got) == list(range(1, 9))  # one dict
        assert len({g[3] for g in got}) == 1
        assert all(g[4] for g in got)
        # The dict outlives every handle, until remove().
        with shmdict.get(name) as d:
            assert d["n"] == 8
        shmdict.remove(name)


def test_open_race_with_a_mismatched_size(name_factory) -> None:  # type: ignore[no-untyped-def]
    for _ in range(20):
        name = name_factory()
        got = _race(name, [1 * MiB] * 7 + [2 * MiB])
        oks = [g for g in got if g[0] == "ok"]
        bad = [g for g in got if g[0] == "mismatch"]
        # Whoever created it set the size; the others asking otherwise are
        # refused, and say what differs.
        assert len(oks) in (1, 7)
        assert len(oks) + len(bad) == 8
        assert sum(g[1] for g in oks) == 1
        assert all("size=" in g[1] for g in bad)
        shmdict.remove(name)


def test_open_mismatch_and_ownership(name: str) -> None:
    with shmdict.open(name, 1 * MiB, evict=True) as d:
        assert d.created
        assert not d.owner
        d["k"] = 1
    assert shmdict.exists(name)  # no owner: close keeps it
    with pytest.raises(ValueError, match="evict=True"):
        shmdict.open(name, 1 * MiB)
    with pytest.raises(ValueError, match="size=1048576"):
        shmdict.open(name, 2 * MiB, evict=True)
    with shmdict.open(name, 1 * MiB, evict=True) as d:
        assert not d.created
        assert d["k"] == 1
    # new() never takes over an open() dict: it has no creator to outlive.
    with pytest.raises(FileExistsError):
        shmdict.new(name, 1 * MiB)
    shmdict.remove(name)


# ---- dir= and SHMDICT_DIR ----------------------------------------------------


def test_dir_and_env(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    where = str(tmp_path)
    with shmdict.new("d1", 1 * MiB, dir=where) as d:
        assert d.path == os.path.join(where, "d1")
        d["a"] = 1
        with shmdict.get("d1", dir=where) as p:
            assert p["a"] == 1
        monkeypatch.setenv("SHMDICT_DIR", where)
        assert shmdict.default_dir() == where
        with shmdict.get("d1") as p:
            assert p["a"] == 1
        assert shmdict.exists("d1")
    assert not os.path.exists(os.path.join(where, "d1"))
    # The same refusals as in /dev/shm: a symlink at the name.
    os.symlink("/etc/passwd", os.path.join(where, "link"))
    with pytest.raises(OSError, match="link"):
        shmdict.get("link")
    with pytest.raises(ValueError, match="invalid directory"):
        shmdict.new("x", 1 * MiB, dir="")


# ---- no /proc -------------------------------------------------------------------


@pytest.mark.no_asan  # the sanitizers' runtime needs /proc
def test_new_works_without_proc(tiny: str) -> None:
    """Publishing the new file goes through /proc/self/fd; without /proc it
    is built under a temporary name and linked, just as atomically."""
    code = CHILD_PRELUDE + textwrap.dedent(
        """
        where = sys.argv[1]
        assert not os.path.exists("/proc/self/fd")
        d = shmdict.new("noproc", 1 << 20, dir=where)
        d["a"] = 1
        with shmdict.get("noproc", dir=where) as p:
            v = p["a"]
        names = sorted(os.listdir(where))
        d.close()
        print(json.dumps({"v": v, "names": names, "left": os.listdir(where)}))
        """
    )
    r = subprocess.run(
        [
            "unshare",
            "-m",
            "sh",
            "-c",
            'umount -l /proc && exec "$@"',
            "sh",
            sys.executable,
            "-c",
            code,
            tiny,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONPATH": SRC},
    )
    if r.returncode and "unshare" in r.stderr:
        pytest.skip(f"no private mount namespace: {r.stderr.strip()}")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out == {"v": 1, "names": ["noproc"], "left": []}


def test_big_overwrite_on_a_full_filesystem(tiny: str) -> None:
    """An overwrite that fits where the old value is needs no new page; one
    that needs pages the filesystem lacks is refused before the old value
    is dropped."""
    r = run_child(
        """
        where = sys.argv[1]
        d = shmdict.new("dict", 3 << 20, dir=where, stripes=1)
        d["big"] = b"a" * 600_000
        d["small"] = 1
        fill(where)
        d["big"] = b"b" * 600_000           # in the old value's place
        same = d["big"] == b"b" * 600_000
        try:
            d["big"] = b"c" * 2_000_000     # needs pages nobody has
            grew = "stored"
        except shmdict.NoMemoryError as e:
            grew = str(e)
        print(json.dumps({"same": same, "grew": grew,
                          "kept": d["big"] == b"b" * 600_000,
                          "small": d["small"], "verify": d.verify()}))
        """,
        tiny,
    )
    assert r["same"] is True
    assert "is full" in r["grew"]
    assert r["kept"] is True
    assert r["small"] == 1
    assert r["verify"] == []


# ---- the SIGBUS handler among others --------------------------------------------

GUARD_CHILD = """
import faulthandler, mmap, signal
mode = sys.argv[2]
if mode in ("before", "foreign"):
    faulthandler.enable()
d = shmdict.new(sys.argv[1], 1 << 20)
d["a"] = 1
if mode == "after":
    faulthandler.enable()            # in front of shmdict's handler now
if mode in ("before", "after", "plain"):
    os.truncate(d.path, 0)
    try:
        d["b"] = 2
        print(json.dumps({"outcome": "stored"}))
    except shmdict.CorruptError as e:
        print(json.dumps({"outcome": str(e)}))
    sys.exit(0)
if mode in ("foreign", "foreign-plain"):  # a fault that is none of ours
    # Named after the test's dict, so the test's teardown removes it: the
    # process dies before it could.
    with open(f"/dev/shm/{sys.argv[1]}-foreign", "w+b") as f:
        f.truncate(8192)
        m = mmap.mmap(f.fileno(), 8192)
        f.truncate(0)
        m[4096]
if mode == "kill":
    os.kill(os.getpid(), signal.SIGBUS)
    import time
    time.sleep(5)
print(json.dumps({"outcome": "survived"}))
"""


# AddressSanitizer installs a SIGBUS handler of its own, which reports a
# fault that reaches it and exits: the chain these tests follow is not the
# one a normal process has.
NOT_UNDER_ASAN = pytest.mark.no_asan


@pytest.mark.parametrize(
    "mode", ["before", pytest.param("after", marks=NOT_UNDER_ASAN), "plain"]
)
def test_guard_works_beside_faulthandler(name: str, mode: str) -> None:
    """faulthandler enabled before the first open (as pytest does), after
    it (in front of ours), or not at all: a truncated dict is a
    CorruptError all the same."""
    r = run_child(GUARD_CHILD, name, mode)
    assert "truncated" in r["outcome"]


@NOT_UNDER_ASAN
@pytest.mark.parametrize("mode", ["foreign", "foreign-plain", "kill"])
def test_other_sigbus_still_kills(name: str, mode: str) -> None:
    """A fault outside any dict, and a SIGBUS sent with kill, end the
    process as they would without shmdict (faulthandler's report first,
    where it is enabled)."""
    env = {**os.environ, "PYTHONPATH": SRC}
    r = subprocess.run(
        [sys.executable, "-c", CHILD_PRELUDE + GUARD_CHILD, name, mode],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert r.returncode == -signal.SIGBUS, (r.returncode, r.stdout, r.stderr)
    assert "survived" not in r.stdout
    if mode == "foreign":
        assert "Bus error" in r.stderr
    with contextlib.suppress(FileNotFoundError):
        shmdict.remove(name)

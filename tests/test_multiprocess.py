"""Real processes (spawn and fork) and threads sharing one dict: exact
counters, no torn values, attach/close/fork rules, racing creators; and the
feature set across processes (add, incr with init, cas loops, setdefault,
pop, producer/consumer lists, batch snapshots and an evicting dict under
several writers).

Child entry points are module-level functions so spawn can import them.
Children report failure through their exit code (and a traceback on
stderr) and their results through the dict itself; every join has a
deadline. Nothing asserts timing.
"""

from __future__ import annotations

import gc
import os
import random
import signal
import struct
import sys
import threading
import time
import zlib
from array import array
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

import shmdict

from .helpers import mp_ctx, stopped_writer, wait_for

MiB = 1 << 20
START_METHODS = ["spawn", "fork"]
JOIN_TIMEOUT = 20.0
FEATURE_JOIN_TIMEOUT = 60.0  # the feature races run longer
BARRIER_TIMEOUT = 30.0
LONG = 1000.0

SharedDict = shmdict.SharedDict


# ---------------------------------------------------------------- helpers


def run_procs(
    ctx: Any,
    target: Callable[..., Any],
    args_list: Sequence[tuple[Any, ...]],
    timeout: float = JOIN_TIMEOUT,
    expect_codes: Sequence[int] | None = None,
    before_join: Callable[[], None] | None = None,
) -> None:
    """Start one process per args tuple, join them all by a deadline."""
    procs = [ctx.Process(target=target, args=a) for a in args_list]
    for p in procs:
        p.start()
    try:
        if before_join is not None:
            before_join()
        deadline = time.monotonic() + timeout
        for p in procs:
            p.join(max(0.0, deadline - time.monotonic()))
    finally:
        hung = [p for p in procs if p.is_alive()]
        for p in hung:
            p.kill()
            p.join(5)
    assert not hung, f"{len(hung)} child process(es) did not finish in {timeout} s"
    codes = [p.exitcode for p in procs]
    want = list(expect_codes) if expect_codes is not None else [0] * len(procs)
    assert codes == want, f"exit codes {codes}, expected {want}"


def run_released(
    d: SharedDict,
    method: str,
    target: Callable[..., None],
    args_list: Sequence[tuple[Any, ...]],
    timeout: float = FEATURE_JOIN_TIMEOUT,
) -> None:
    """run_procs with the start barrier: a fresh ``ready``/``go`` pair in
    *d*, released once every child is ready; expect exit 0."""
    d["ready"] = 0
    d["go"] = False
    run_procs(
        mp_ctx(method),
        target,
        args_list,
        timeout=timeout,
        before_join=_release(d, len(args_list)),
    )


def _start_barrier(h: SharedDict) -> None:
    """Children: announce readiness, then wait for the parent's go."""
    h.incr("ready", 1)
    end = time.monotonic() + BARRIER_TIMEOUT
    while not h.get("go"):
        if time.monotonic() > end:
            raise AssertionError("no go from the parent")
        time.sleep(0.0005)


def _release(d: SharedDict, n: int) -> Callable[[], None]:
    def release() -> None:
        wait_for(lambda: d.get("ready") == n, what=f"{n} children ready")
        d["go"] = True

    return release


# ---------------------------------------------------------------- counters


def _incr_worker(name: str, n: int) -> None:
    with shmdict.get(name) as h:
        _start_barrier(h)
        for i in range(n):
            h.incr("ctr", 1)
            h.incr("fctr", 1.0)
            h.incr("tctr", 1)
            h.incr("bal", 3 if i % 2 else -3)


@pytest.mark.parametrize("method", START_METHODS)
def test_concurrent_incr_is_exact(d: SharedDict, method: str) -> None:
    nproc, n = 4, 10_000
    d.update(ctr=0, fctr=0.0, bal=0, ready=0)
    d.set("tctr", 0, LONG)
    run_procs(
        mp_ctx(method),
        _incr_worker,
        [(d.name, n)] * nproc,
        before_join=_release(d, nproc),
    )
    assert d["ctr"] == nproc * n
    assert type(d["ctr"]) is int
    assert d["fctr"] == float(nproc * n)
    assert type(d["fctr"]) is float
    assert d["tctr"] == nproc * n
    t = d.ttl("tctr")
    assert t is not None
    assert 0 < t <= LONG
    assert d["bal"] == 0
    assert d.verify() == []


# ---------------------------------------------------------------- torn values

N_SLOTS = 8


def _make_value(rng: random.Random, wid: int, i: int) -> object:
    kind = i % 3
    if kind == 0:
        body = rng.randbytes(rng.randrange(0, 3000))
        return struct.pack("<II", len(body), zlib.crc32(body)) + body
    if kind == 1:
        ch = "\u00e9\u20acaZ"[i % 4]
        text = ch * rng.randrange(0, 1000)
        return f"{wid}:{i}:{len(text)}:{zlib.crc32(text.encode())}:{text}"
    x = rng.getrandbits(31)
    return (x << 32) | zlib.crc32(x.to_bytes(4, "little"))


def _check_value(v: object) -> None:
    if v is None:
        return
    if isinstance(v, bytes):
        n, crc = struct.unpack_from("<II", v)
        body = v[8:]
        assert len(body) == n, f"torn bytes: header says {n}, got {len(body)}"
        assert zlib.crc32(body) == crc, "torn bytes: checksum"
    elif isinstance(v, str):
        _wid, _i, n, crc, text = v.split(":", 4)
        assert len(text) == int(n), f"torn str: {len(text)} != {n}"
        assert zlib.crc32(text.encode()) == int(crc), "torn str: checksum"
    elif isinstance(v, int) and not isinstance(v, bool):
        x = v >> 32
        assert v & 0xFFFFFFFF == zlib.crc32(x.to_bytes(4, "little")), f"torn int {v:#x}"
    else:
        raise AssertionError(f"unexpected value type {type(v)!r}")


READS_WANTED = 1000  # values each reader must see while the writers write
READ_SECONDS = 1.5  # and for at least this long
PROGRESS_DEADLINE = JOIN_TIMEOUT - 5  # generous: the children give up here


def _writer(name: str, wid: int, n_readers: int) -> None:
    """Write until every reader has seen READS_WANTED values: how long that
    takes depends on the machine, not on a fixed time."""
    rng = random.Random(wid)
    with shmdict.get(name) as h:
        _start_barrier(h)
        end = time.monotonic() + PROGRESS_DEADLINE
        i = 0
        while i % 16 or h.get("readers_done") != n_readers:
            assert time.monotonic() < end, "the readers made no progress"
            i += 1
            key = f"slot{rng.randrange(N_SLOTS)}"
            r = rng.random()
            if r < 0.05:
                h.delete(key)
            elif r < 0.15:
                h.set(key, _make_value(rng, wid, i), LONG)  # type: ignore[arg-type]
            else:
                h[key] = _make_value(rng, wid, i)  # type: ignore[assignment]
        h.incr("writers_done", 1)


def _reader(name: str, n_writers: int) -> None:
    """Read (and check) for READ_SECONDS and until READS_WANTED values were
    seen (however long a loaded machine takes, up to a generous deadline),
    all while the writers write (they go on until every reader is done)."""
    values_seen = 0
    known = ("ready", "go", "writers_done", "readers_done")
    with shmdict.get(name) as h:
        _start_barrier(h)
        start = time.monotonic()
        end = start + PROGRESS_DEADLINE
        while values_seen < READS_WANTED or time.monotonic() < start + READ_SECONDS:
            assert time.monotonic() < end, (
                f"only {values_seen} values read in {PROGRESS_DEADLINE} s"
            )
            for s in range(N_SLOTS):
                v = h.get(f"slot{s}")
                _check_value(v)
                values_seen += v is not None
            for k in h.get_keys():
                assert isinstance(k, str)
                assert k in known or k.startswith("slot"), k
            assert h.get("writers_done") == 0, "a writer stopped early"
        h.incr("readers_done", 1)
        end = time.monotonic() + PROGRESS_DEADLINE
        while h.get("writers_done") != n_writers:
            assert time.monotonic() < end, "writers did not finish"
            time.sleep(0.001)


@pytest.mark.parametrize("method", START_METHODS)
def test_no_torn_values(d: SharedDict, method: str) -> None:
    n_writers, n_readers = 2, 2
    d.update(ready=0, writers_done=0, readers_done=0)
    args: list[tuple[Any, ...]] = [(d.name, w, n_readers) for w in range(n_writers)]
    procs = [(_writer, a) for a in args] + [(_reader, (d.name, n_writers))] * n_readers
    ctx = mp_ctx(method)

    # Writers and readers have different targets: start them by hand.
    ps = [ctx.Process(target=t, args=a) for t, a in procs]
    for p in ps:
        p.start()
    try:
        _release(d, len(ps))()
        deadline = time.monotonic() + JOIN_TIMEOUT
        for p in ps:
            p.join(max(0.0, deadline - time.monotonic()))
    finally:
        hung = [p for p in ps if p.is_alive()]
        for p in hung:
            p.kill()
            p.join(5)
    assert not hung
    assert [p.exitcode for p in ps] == [0] * len(ps)
    for s in range(N_SLOTS):
        _check_value(d.get(f"slot{s}"))
    assert d.verify() == []


# ---------------------------------------------------------------- leaving


def _attach_and_leave(name: str, how: str) -> None:
    if how == "with":
        with shmdict.get(name) as h:
            h[f"from-{how}"] = how
        return
    h = shmdict.get(name)
    h[f"from-{how}"] = how
    if how == "close":
        h.close()
    elif how == "no-close":
        # Left for interpreter shutdown (spawn) or os._exit (fork).
        globals()["_leaked_handle"] = h
    elif how == "gc":
        del h
        gc.collect()
    elif how == "os-exit":
        os._exit(0)
    elif how == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)


LEAVE_WAYS = ["close", "with", "no-close", "gc", "os-exit", "sigkill"]


@pytest.mark.parametrize("how", LEAVE_WAYS)
@pytest.mark.parametrize("method", START_METHODS)
def test_attaching_process_never_removes(d: SharedDict, method: str, how: str) -> None:
    d["keep"] = 1
    code = -signal.SIGKILL if how == "sigkill" else 0
    run_procs(mp_ctx(method), _attach_and_leave, [(d.name, how)], expect_codes=[code])
    assert shmdict.exists(d.name)
    assert os.path.exists(d.path)
    assert d[f"from-{how}"] == how
    assert d["keep"] == 1
    d["after"] = 2
    with shmdict.get(d.name) as p:  # the name still opens
        assert p["after"] == 2
    assert d.verify() == []


def _peer_outlives_owner(name: str) -> None:
    h = shmdict.get(name)
    h.incr("ready", 1)
    end = time.monotonic() + JOIN_TIMEOUT
    while not h.get("go"):
        assert time.monotonic() < end, "no go"
        time.sleep(0.001)
    # The owner has closed: the name is gone, this handle still works.
    try:
        shmdict.get(name).close()
        h["reopen"] = "opened"
    except FileNotFoundError:
        h["reopen"] = "FileNotFoundError"
    for _ in range(100):
        h.incr("n", 1)
    h["child"] = "alive"
    h.set("big", b"x" * 100_000)
    assert h.verify() == []
    h.close()


@pytest.mark.parametrize("method", START_METHODS)
def test_owner_closes_while_peers_go_on(name: str, method: str) -> None:
    d = shmdict.new(name, MiB)
    d.update(n=0, ready=0)
    p = shmdict.get(name)

    def close_owner() -> None:
        wait_for(lambda: p.get("ready") == 2, what="peers ready")
        d.close()
        assert not shmdict.exists(name)
        p["go"] = True

    run_procs(
        mp_ctx(method), _peer_outlives_owner, [(name,)] * 2, before_join=close_owner
    )
    assert p["reopen"] == "FileNotFoundError"
    assert p["n"] == 200
    assert p["child"] == "alive"
    assert p["big"] == b"x" * 100_000
    assert p.verify() == []
    p.close()
    assert not shmdict.exists(name)


# ---------------------------------------------------------------- fork


def test_os_fork_child_never_removes(d: SharedDict) -> None:
    d["a"] = 1
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 0
        try:
            if d.owner:
                code = 3
            d["child"] = os.getpid()
            d.incr("a", 1)
            d.close()
            if not d.closed:
                code = 4
        except BaseException:
            code = 5
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, (
        "child failed: 3 = owner is True in the child, 4 = close did not close, "
        "5 = raised"
    )
    assert os.path.exists(d.path)
    assert shmdict.exists(d.name)
    assert d["child"] == pid
    assert d["a"] == 2
    assert d.owner is True
    assert d.verify() == []


def test_os_fork_child_exit_without_close(d: SharedDict) -> None:
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            d["child"] = 1
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert shmdict.exists(d.name)
    assert d["child"] == 1


def _use_handle(h: SharedDict, tag: str) -> None:
    assert h.owner is False, "a handle in a child process must not be the owner"
    assert not h.closed
    h[f"from-{tag}"] = os.getpid()
    h.incr("n", 1)
    h.close()


@pytest.mark.parametrize("method", START_METHODS)
def test_handle_passed_to_child(d: SharedDict, method: str) -> None:
    """spawn pickles the handle (a peer reopened by name); fork inherits a
    copy of the owner handle. Neither may remove the file."""
    d["n"] = 0
    run_procs(mp_ctx(method), _use_handle, [(d, method)])
    assert d[f"from-{method}"] not in (None, os.getpid())
    assert d["n"] == 1
    assert shmdict.exists(d.name)
    with shmdict.get(d.name) as p:
        run_procs(mp_ctx(method), _use_handle, [(p, method + "-peer")])
    assert d["n"] == 2
    assert shmdict.exists(d.name)
    assert d.verify() == []


def _pool_task(h: SharedDict, i: int) -> tuple[int, bool]:
    h[f"t{i}"] = i
    return os.getpid(), h.owner


@pytest.mark.parametrize("method", START_METHODS)
def test_handle_through_pool(d: SharedDict, method: str) -> None:
    with mp_ctx(method).Pool(2) as pool:
        res = pool.starmap_async(_pool_task, [(d, i) for i in range(8)]).get(
            JOIN_TIMEOUT
        )
    assert all(owner is False for _, owner in res)
    assert all(pid != os.getpid() for pid, _ in res)
    assert sorted(k for k in d if k.startswith("t")) == sorted(
        f"t{i}" for i in range(8)
    )
    assert all(d[f"t{i}"] == i for i in range(8))
    assert shmdict.exists(d.name)


# ---------------------------------------------------------------- killed peer


def _hammer(name: str) -> None:
    rng = random.Random(os.getpid())
    h = shmdict.get(name)
    h.incr("ready", 1)
    while True:
        k = f"h{rng.randrange(50)}"
        r = rng.random()
        if r < 0.5:
            h[k] = rng.randbytes(rng.randrange(2000))
        elif r < 0.7:
            h.delete(k)
        elif r < 0.8:
            h.set(k, rng.randrange(1000), LONG)
        else:
            h.incr("ops", 1)


def _after_kill_check(name: str) -> None:
    try:
        h = shmdict.get(name, lock_timeout=5.0)
        h["probe"] = 1
        assert h["probe"] == 1
        h.incr("ops", 1)
        h.get_keys()
        h.delete("probe")
        # The lock's undo log repairs whatever the killed peer left half-done.
        assert h.verify() == [], h.verify()
        h.close()
    except shmdict.LockTimeout:
        os._exit(2)


def test_peer_killed_mid_operation_does_not_wedge(d: SharedDict) -> None:
    """A peer SIGKILLed in the middle of operations must not leave the lock
    held: the next users get in (no LockTimeout)."""
    ctx = mp_ctx("fork")
    d["ops"] = 0
    rng = random.Random(1234)
    for _ in range(20):
        d["ready"] = 0
        p = ctx.Process(target=_hammer, args=(d.name,))
        p.start()
        try:
            wait_for(lambda: d.get("ready") == 1, what="hammer ready")
            time.sleep(rng.uniform(0.005, 0.05))
        finally:
            p.kill()
            p.join(5)
        assert p.exitcode == -signal.SIGKILL
        # Check from a separate process so that a wedged or damaged dict
        # cannot hang or crash the test runner itself.
        run_procs(mp_ctx("fork"), _after_kill_check, [(d.name,)], timeout=15)


# ---------------------------------------------------------------- threads


def test_threads_share_one_handle_incr(d: SharedDict) -> None:
    d["n"] = 0
    d["f"] = 0.0
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def work() -> None:
        try:
            start.wait(10)
            for _ in range(2000):
                d.incr("n", 1)
                d.incr("f", 0.5)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    ts = [threading.Thread(target=work) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(JOIN_TIMEOUT)
    assert not any(t.is_alive() for t in ts)
    assert errors == []
    assert d["n"] == 8000
    assert d["f"] == 4000.0
    assert d.verify() == []


def test_threads_mixed_ops_one_handle(d: SharedDict) -> None:
    errors: list[BaseException] = []

    def work(tid: int) -> None:
        try:
            rng = random.Random(tid)
            mine: dict[str, bytes] = {}
            for i in range(1500):
                k = f"t{tid}-{rng.randrange(30)}"
                if rng.random() < 0.7:
                    v = bytes([tid]) * rng.randrange(500)
                    d[k] = v
                    mine[k] = v
                else:
                    assert d.delete(k) is (k in mine)
                    mine.pop(k, None)
                probe = f"t{tid}-{rng.randrange(30)}"
                assert d.get(probe) == mine.get(probe)
                if i % 100 == 0:
                    assert all(isinstance(x, str) for x in d.get_keys())
            assert {k: d[k] for k in mine} == mine
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    ts = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(JOIN_TIMEOUT)
    assert not any(t.is_alive() for t in ts)
    assert errors == []
    assert d.verify() == []


def _close_under_threads(name: str) -> None:
    d = shmdict.new(name, MiB)
    outcomes: list[str] = []
    go = threading.Event()

    def work(tid: int) -> None:
        go.wait()
        i = 0
        try:
            while True:
                k = f"k{tid}-{i % 20}"
                d[k] = b"v" * (i % 700)
                d.get(k)
                d.incr("n", 1) if "n" in d else d.set("n", 0)
                d.get_keys()
                i += 1
        except ValueError:
            outcomes.append("ValueError")
        except BaseException as e:
            outcomes.append(repr(e))

    ts = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(3)]
    for t in ts:
        t.start()
    go.set()
    time.sleep(0.2)
    d.close()
    for t in ts:
        t.join(10)
    if any(t.is_alive() for t in ts):
        os._exit(3)
    if outcomes != ["ValueError"] * 3:
        print("thread outcomes:", outcomes, file=sys.stderr)
        os._exit(4)


def test_close_while_threads_use_handle(name: str) -> None:
    """Closing a handle that other threads are using: they get ValueError,
    nothing crashes. Run in a child so a crash cannot take pytest down."""
    run_procs(mp_ctx("spawn"), _close_under_threads, [(name,)])
    assert not shmdict.exists(name)


def test_items_snapshot_during_concurrent_deletes(d: SharedDict) -> None:
    """items()/values()/dict(d) stay usable while another handle deletes
    and re-adds keys: no KeyError for a key that vanished mid-iteration."""
    stop = threading.Event()
    errors: list[BaseException] = []
    churn_errors: list[BaseException] = []

    def churn() -> None:
        try:
            with shmdict.get(d.name) as h:
                i = 0
                while not stop.is_set():
                    k = f"c{i % 200}"
                    if k in h:
                        h.delete(k)
                    else:
                        h[k] = i
                    i += 1
        except BaseException as e:  # reported to the test below
            churn_errors.append(e)

    for i in range(200):
        d[f"c{i}"] = i
    t = threading.Thread(target=churn)
    t.start()
    try:
        for _ in range(300):
            try:
                snap = dict(d.items())
                vals = list(d.values())
                assert all(isinstance(k, str) for k in snap)
                assert len(vals) <= 200
            except KeyError as e:
                errors.append(e)
                break
    finally:
        stop.set()
        t.join(JOIN_TIMEOUT)
    assert not t.is_alive(), "the churn thread did not stop"
    assert churn_errors == [], f"the churn thread raised {churn_errors[0]!r}"
    assert errors == [], f"iteration raised {errors[0]!r} for a key deleted meanwhile"


# ---------------------------------------------------------------- races on names


def _race_new(name: str, barrier: Any, results: Any, hold: Any) -> None:
    barrier.wait(JOIN_TIMEOUT)
    try:
        d = shmdict.new(name, MiB)
    except FileExistsError:
        results.put("FileExistsError")
        return
    except BaseException as e:  # reported to the parent
        results.put(repr(e))
        return
    d["winner"] = os.getpid()
    results.put("won")
    hold.wait(JOIN_TIMEOUT)
    d.close()


def _collect(q: Any, n: int) -> list[str]:
    return sorted(q.get(timeout=JOIN_TIMEOUT) for _ in range(n))


@pytest.mark.parametrize("dead_creator", [False, True], ids=["fresh", "takeover"])
def test_racing_new_has_one_winner(name: str, dead_creator: bool) -> None:
    """Processes calling new() on one name at once: exactly one wins, the
    others get FileExistsError, also when taking over a dead creator's file."""
    ctx = mp_ctx("fork")
    if dead_creator:
        ready = ctx.Event()
        p = ctx.Process(target=_create_then_wait, args=(name, ready))
        p.start()
        assert ready.wait(JOIN_TIMEOUT)
        p.kill()
        p.join(5)
        assert shmdict.exists(name)
    n = 6
    barrier, results, hold = ctx.Barrier(n), ctx.Queue(), ctx.Event()
    procs = [
        ctx.Process(target=_race_new, args=(name, barrier, results, hold))
        for _ in range(n)
    ]
    for p in procs:
        p.start()
    try:
        outcomes = _collect(results, n)
        assert outcomes == ["FileExistsError"] * (n - 1) + ["won"], outcomes
        with shmdict.get(name) as peer:
            assert peer["winner"] in [p.pid for p in procs]
            assert peer.verify() == []
    finally:
        hold.set()
        for p in procs:
            p.join(JOIN_TIMEOUT)
            if p.is_alive():
                p.kill()
                p.join(5)
    assert [p.exitcode for p in procs] == [0] * n
    assert not shmdict.exists(name)


def _create_then_wait(name: str, ready: Any) -> None:
    d = shmdict.new(name, MiB)
    d["old"] = 1
    ready.set()
    time.sleep(JOIN_TIMEOUT)
    d.close()


def _create_close_loop(name: str, done: Any) -> None:
    """Create, write and close the dict until *done* is set (or 120 s)."""
    end = time.monotonic() + 120
    while not done.is_set() and time.monotonic() < end:
        d = shmdict.new(name, MiB)
        d["k"] = "v"
        d.close()


def _get_loop(name: str, done: Any, results: Any) -> None:
    """get() the dict for at least 1.5 s and until it opened it 20 times
    (a loaded machine gives the creator fewer turns), at most 60 s; then
    set *done* and report what each try gave."""
    seen: dict[str, int] = {}
    start = time.monotonic()
    while True:
        elapsed = time.monotonic() - start
        if elapsed > 60 or (elapsed > 1.5 and seen.get("ok", 0) >= 20):
            break
        try:
            with shmdict.get(name) as p:
                p.get("k")
            out = "ok"
        except FileNotFoundError:
            out = "FileNotFoundError"
        except BaseException as e:
            out = f"{type(e).__name__}: {e}"
        seen[out] = seen.get(out, 0) + 1
    done.set()
    results.put(seen)


def test_get_never_sees_a_half_made_dict(name: str) -> None:
    """While one process creates and closes the dict over and over, get()
    from another either opens a complete dict or finds no file: never a
    CorruptError (or anything else) from catching new() half-way. The
    getter runs until it has opened the dict 20 times (progress, not a
    fixed time, so a loaded machine only makes it longer)."""
    ctx = mp_ctx("fork")
    results = ctx.Queue()
    done = ctx.Event()
    creator = ctx.Process(target=_create_close_loop, args=(name, done))
    getter = ctx.Process(target=_get_loop, args=(name, done, results))
    creator.start()
    getter.start()
    try:
        seen = results.get(timeout=JOIN_TIMEOUT + 60)
    finally:
        done.set()
        for p in (creator, getter):
            p.join(JOIN_TIMEOUT)
            if p.is_alive():
                p.kill()
                p.join(5)
    assert creator.exitcode == 0
    assert set(seen) <= {"ok", "FileNotFoundError"}, seen
    assert seen.get("ok", 0) >= 20, seen


# ---------------------------------------------------------------- lock timeout


def test_lock_timeout_on_stopped_holder(d: SharedDict) -> None:
    """A peer stopped (SIGSTOP) while it holds the lock makes others raise
    LockTimeout after their lock_timeout (one timeout, not less, and not
    two), changing nothing; each wait counts once in stats()["lock_waits"];
    once the peer goes on, everything works again. Deterministic: the
    stopped peer holds the lock for as long as the test wants."""
    timeout = 1.0
    d["k"] = "before"
    q = shmdict.get(d.name, lock_timeout=timeout)
    waits0 = d.stats()["lock_waits"]
    calls: list[Callable[[], object]] = [
        lambda: q.set("k", "mine"),
        lambda: q.get("k"),  # a lock-free read falls back to the lock
    ]
    with stopped_writer(d.name, "k", "the peer's"):
        for call in calls:
            start = time.monotonic()
            with pytest.raises(shmdict.LockTimeout):
                call()
            took = time.monotonic() - start
            # Generous above (a loaded machine, a sanitizer build), but
            # below two timeouts: test_lock_wait.py checks that closer.
            assert timeout - 0.01 <= took < 2 * timeout, f"waited {took:.3f} s"
    q.close()
    # (stats() takes the lock too: read once the peer has gone on.)
    assert d.stats()["lock_waits"] - waits0 == 2
    assert d["k"] == "the peer's"
    d["after"] = 1
    assert d["after"] == 1
    assert d.verify() == []


# ================================================================ the feature set


def _ints(b: object) -> list[int]:
    assert isinstance(b, bytes)
    a = array("q")
    a.frombytes(b)
    return a.tolist()


def _pack(xs: Sequence[int]) -> bytes:
    return array("q", xs).tobytes()


@pytest.fixture
def big(name: str) -> Iterator[SharedDict]:
    """An 8 MiB dict owned by this process."""
    sd = shmdict.new(name, 8 * MiB)
    try:
        yield sd
    finally:
        sd.close()


# ---------------------------------------------------------------- add


ADD_ROUNDS = 2000


def _add_worker(name: str, wid: int) -> None:
    with shmdict.get(name) as h:
        _start_barrier(h)
        mine = 0
        for r in range(ADD_ROUNDS):
            if h.add(f"k{r}", wid):
                mine += 1
                h.incr(f"wins{r}", 1, init=0)
                h.set(f"by{r}", wid)
        h.set(f"mine{wid}", mine)


@pytest.mark.parametrize("method", START_METHODS)
def test_add_has_exactly_one_winner(big: SharedDict, method: str) -> None:
    n = 4
    run_released(big, method, _add_worker, [(big.name, w) for w in range(n)])
    for r in range(ADD_ROUNDS):
        assert big.get(f"wins{r}") == 1, r
        winner = big[f"k{r}"]
        assert winner in range(n)
        assert big[f"by{r}"] == winner
    assert sum(big[f"mine{w}"] for w in range(n)) == ADD_ROUNDS  # type: ignore[misc]
    assert big.verify() == []


# ---------------------------------------------------------------- incr init


INCR_KEYS = 20
INCR_REPS = 500


def _incr_init_worker(name: str, wid: int) -> None:
    with shmdict.get(name) as h:
        _start_barrier(h)
        for _i in range(INCR_REPS):
            for j in range(INCR_KEYS):
                # Offset the order per worker so they meet on every key.
                k = (j + wid * 7) % INCR_KEYS
                h.incr(f"c{k}", 1, init=0)
                h.incr(f"f{k}", 0.5, init=100.0, init_ttl=LONG)
            h.incr("big", 3, init=10)


@pytest.mark.parametrize("method", START_METHODS)
def test_incr_init_on_missing_keys_is_exact(big: SharedDict, method: str) -> None:
    n = 4
    run_released(big, method, _incr_init_worker, [(big.name, w) for w in range(n)])
    for k in range(INCR_KEYS):
        c = big[f"c{k}"]
        assert type(c) is int
        assert c == n * INCR_REPS
        f = big[f"f{k}"]
        assert type(f) is float
        assert f == 100.0 + 0.5 * n * INCR_REPS
        t = big.ttl(f"f{k}")
        assert t is not None
        assert 0 < t <= LONG + 0.0011
        assert big.ttl(f"c{k}") == 0
    assert big["big"] == 10 + 3 * n * INCR_REPS
    assert big.verify() == []


# ---------------------------------------------------------------- cas


CAS_REPS = 1500


def _cas_worker(name: str, wid: int) -> None:
    with shmdict.get(name) as h:
        _start_barrier(h)
        h.setdefault("n", 0)
        h.setdefault("s", "")
        retries = 0
        for _ in range(CAS_REPS):
            while True:
                v = h.get("n")
                assert type(v) is int
                if h.cas("n", v, v + 1):
                    break
                retries += 1
            # A str counter: each success appends one character.
            while True:
                s = h.get("s")
                assert isinstance(s, str)
                if h.cas("s", s, s + "x"):
                    break
        h.set(f"retries{wid}", retries)


@pytest.mark.parametrize("method", START_METHODS)
def test_cas_increment_loops_are_exact(big: SharedDict, method: str) -> None:
    n = 4
    run_released(big, method, _cas_worker, [(big.name, w) for w in range(n)])
    assert big["n"] == n * CAS_REPS
    assert type(big["n"]) is int
    assert big["s"] == "x" * (n * CAS_REPS)
    assert all(isinstance(big[f"retries{w}"], int) for w in range(n))
    assert big.verify() == []


# ---------------------------------------------------------------- setdefault, pop


SD_ROUNDS = 1000


def _setdefault_worker(name: str, wid: int) -> None:
    with shmdict.get(name) as h:
        _start_barrier(h)
        seen = [h.setdefault(f"s{r}", wid * 1000 + r) for r in range(SD_ROUNDS)]
        assert all(type(v) is int for v in seen)
        h.set(f"seen{wid}", _pack(seen))  # type: ignore[arg-type]


@pytest.mark.parametrize("method", START_METHODS)
def test_setdefault_everyone_sees_the_same_value(big: SharedDict, method: str) -> None:
    n = 4
    run_released(big, method, _setdefault_worker, [(big.name, w) for w in range(n)])
    seen = [_ints(big[f"seen{w}"]) for w in range(n)]
    for r in range(SD_ROUNDS):
        stored = big[f"s{r}"]
        assert isinstance(stored, int)
        assert stored % 1000 == r
        assert [s[r] for s in seen] == [stored] * n, r
    assert big.verify() == []


POP_KEYS = 3000


def _pop_worker(name: str, wid: int) -> None:
    with shmdict.get(name) as h:
        _start_barrier(h)
        got: list[int] = []
        order = range(POP_KEYS) if wid % 2 == 0 else range(POP_KEYS - 1, -1, -1)
        for i in order:
            v = h.pop(f"p{i}", None)
            if v is not None:
                assert v == i * 3
                got.append(i)
        h.set(f"got{wid}", _pack(got))


@pytest.mark.parametrize("method", START_METHODS)
def test_pop_hands_each_item_to_one_process(big: SharedDict, method: str) -> None:
    n = 4
    big.set_many({f"p{i}": i * 3 for i in range(POP_KEYS)})
    run_released(big, method, _pop_worker, [(big.name, w) for w in range(n)])
    got = Counter(i for w in range(n) for i in _ints(big[f"got{w}"]))
    assert got == Counter(range(POP_KEYS))
    assert not any(f"p{i}" in big for i in range(POP_KEYS))
    assert big.verify() == []


# ---------------------------------------------------------------- lists


ITEMS_PER_PRODUCER = 5000


def _producer(name: str, wid: int, push: str) -> None:
    with shmdict.get(name) as h:
        _start_barrier(h)
        fn = getattr(h, push)
        for i in range(ITEMS_PER_PRODUCER):
            # Every third item is a str, so items of several types and sizes
            # travel; all encode (producer, index).
            item = wid * 1_000_000 + i
            fn("q", item if i % 3 else f"{item}:" + "p" * (i % 50))
        h.incr("producers_done", 1, init=0)


def _consumer(name: str, cid: int, pop: str, n_producers: int) -> None:
    with shmdict.get(name) as h:
        _start_barrier(h)
        fn = getattr(h, pop)
        got: list[int] = []
        end = time.monotonic() + FEATURE_JOIN_TIMEOUT
        while True:
            done = h.get("producers_done", 0) == n_producers
            item = fn("q")
            if item is None:
                if done:
                    break  # every item was pushed before done was read
                if time.monotonic() > end:
                    raise AssertionError("consumer gave up waiting")
                time.sleep(0.0002)
                continue
            if isinstance(item, str):
                num, _, pad = item.partition(":")
                assert pad == "p" * ((int(num) % 1_000_000) % 50)
                got.append(int(num))
            else:
                assert type(item) is int
                got.append(item)
        h.set(f"res{cid}", _pack(got))


@pytest.mark.parametrize("ends", [("rpush", "lpop"), ("lpush", "rpop")])
@pytest.mark.parametrize("method", START_METHODS)
def test_producers_and_consumers_share_a_queue(
    big: SharedDict, method: str, ends: tuple[str, str]
) -> None:
    push, pop = ends
    n_prod, n_cons = 3, 3
    args: list[tuple[Any, ...]] = [(big.name, w, push) for w in range(n_prod)]
    run_released(
        big,
        method,
        _dispatch,
        [("p", *a) for a in args]
        + [("c", big.name, c, pop, n_prod) for c in range(n_cons)],
    )
    results = [_ints(big[f"res{c}"]) for c in range(n_cons)]
    everything = Counter(x for r in results for x in r)
    want = Counter(
        w * 1_000_000 + i for w in range(n_prod) for i in range(ITEMS_PER_PRODUCER)
    )
    assert everything == want  # each item consumed exactly once
    # The queue is FIFO: each consumer sees each producer's items in order.
    for r in results:
        for w in range(n_prod):
            mine = [x for x in r if x // 1_000_000 == w]
            assert mine == sorted(mine)
    assert "q" not in big
    assert big.llen("q") == 0
    big.set("drain", 0)
    assert big.verify() == []


def _dispatch(kind: str, *args: Any) -> None:
    if kind == "p":
        _producer(*args)
    else:
        _consumer(*args)


# ---------------------------------------------------------------- batches


BATCH_KEYS = ["a", "b", "c", "d"]


BATCH_READERS = 2


def _batch_writer(name: str, reps: int) -> None:
    with shmdict.get(name) as h:
        _start_barrier(h)
        # At least `reps` batches, and on until every reader has seen a full
        # batch while the writer was still writing (else a reader scheduled
        # late could legitimately count 0, and the test would check nothing).
        end = time.monotonic() + BARRIER_TIMEOUT
        i = 0
        while i < reps or not all(h.get(f"saw{r}") for r in range(BATCH_READERS)):
            if i >= reps and time.monotonic() > end:
                break  # the parent's `seen > 0` check then fails
            if i % 5 == 4:
                n = h.delete_many(BATCH_KEYS)
                assert n in (0, len(BATCH_KEYS))
            else:
                # Values of different sizes, so some are not overwritten in
                # place.
                h.set_many({k: f"{i}:" + "v" * (i % 200) for k in BATCH_KEYS})
            i += 1
        h.set("writer_done", True)


def _batch_reader(name: str, rid: int) -> None:
    with shmdict.get(name) as h:
        _start_barrier(h)
        seen = 0
        while not h.get("writer_done"):
            snap = h.get_many(BATCH_KEYS)
            # All or nothing, and all from the same set_many.
            assert len(snap) in (0, len(BATCH_KEYS)), snap
            assert len(set(snap.values())) <= 1, snap
            if snap and not seen:
                h.set(f"saw{rid}", True)
            seen += bool(snap)
        h.set(f"seen{rid}", seen)


@pytest.mark.parametrize("method", START_METHODS)
def test_batches_are_atomic_to_other_processes(big: SharedDict, method: str) -> None:
    run_released(
        big,
        method,
        _batch_dispatch,
        [("w", big.name, 20000)] + [("r", big.name, r) for r in range(BATCH_READERS)],
    )
    assert big["writer_done"] is True
    for r in range(BATCH_READERS):
        # Each reader saw full batches while the writer wrote.
        seen = big[f"seen{r}"]
        assert isinstance(seen, int)
        assert seen > 0, f"reader {r} saw no batch"
        assert big[f"saw{r}"] is True
    assert big.verify() == []


def _batch_dispatch(kind: str, name: str, arg: int) -> None:
    if kind == "w":
        _batch_writer(name, arg)
    else:
        _batch_reader(name, arg)


# ---------------------------------------------------------------- eviction


def _evict_worker(ctl_name: str, name: str, wid: int, reps: int) -> None:
    # The start barrier lives in a plain dict: churn here could evict it.
    with shmdict.get(ctl_name) as ctl:
        _start_barrier(ctl)
    with shmdict.get(name) as h:
        for i in range(reps):
            k = f"w{wid}:{i}"
            v = b"%d" % i * (1 + i % 300)
            h.set(k, v)  # never NoMemoryError: every value fits
            got = h.get(k)
            assert got is None or got == v  # another process may evict it
            if i % 10 == 0:
                h.incr(f"ctr{wid}", 1, init=0)
                h.add(f"a{wid}:{i % 50}", i)


@pytest.mark.parametrize("method", START_METHODS)
def test_evicting_dict_under_several_writers(
    big: SharedDict, name_factory: Callable[[], str], method: str
) -> None:
    with shmdict.new(name_factory(), shmdict.MIN_SIZE, evict=True) as d:
        n = 3
        run_released(
            big,
            method,
            _evict_worker,
            [(big.name, d.name, w, 2000) for w in range(n)],
        )
        st = d.stats()
        assert st["evictions"] > 0
        assert d.verify() == []
        assert len(d) == len(d.get_keys()) == st["entries"]
        # Every key still there holds what its writer stored.
        survivors = 0
        for k, v in d.get_many(d.get_keys()).items():
            if k.startswith("w") and ":" in k:
                i = int(k.partition(":")[2])
                assert v == b"%d" % i * (1 + i % 300), k
                survivors += 1
            elif k.startswith("ctr"):
                assert type(v) is int
                assert v >= 1
            elif k.startswith("a"):
                assert type(v) is int
                assert v % 10 == 0
        assert survivors > 0

"""shmdict.recipes across real processes: Lock, cached, RateLimiter.

Every test runs on a shared dict and on a RedisDict (tests/backends.py),
the ones without processes or sleeps on the Cluster too: the ``d`` fixture
is either, and a child opens its own handle from the spec string it is
given (:func:`attach`).

Child entry points are module-level functions so that spawn can import
them; a child reports through the dict and its exit code, and every join
has a deadline. Nothing here asserts that something was fast: deadlines
are generous, and the assertions are on counts (or on lower bounds of
times, which load can only lengthen).
"""

from __future__ import annotations

import math
import os
import pickle
import signal
import struct
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol, cast

import pytest

import shmdict
from shmdict.recipes import Lock, RateLimiter, cached, clock_for

from .backends import ALL, attach, spec_of
from .helpers import mp_ctx, wait_for

# The annotation of a dict here: a RedisDict has the same API (it is Any
# to the checker, as the fixture's value is).
SharedDict = shmdict.SharedDict
JOIN_TIMEOUT = 30.0


# ---------------------------------------------------------------- helpers


@pytest.fixture
def d(store: Any) -> Any:
    """The test's dict: a fresh shared dict or RedisDict (``store``)."""
    return store


def start(target: Callable[..., Any], *args: Any, method: str = "fork") -> Any:
    p = mp_ctx(method).Process(target=target, args=args)
    p.start()
    return p


def join(procs: Sequence[Any], timeout: float = JOIN_TIMEOUT) -> list[int]:
    """Join every process by one deadline; kill (and fail on) the hung."""
    deadline = time.monotonic() + timeout
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
    hung = [p for p in procs if p.is_alive()]
    for p in hung:
        p.kill()
        p.join(5)
    assert not hung, f"{len(hung)} child process(es) did not finish in {timeout} s"
    return [p.exitcode for p in procs]


def run(
    target: Callable[..., Any],
    args_list: Sequence[tuple[Any, ...]],
    method: str = "fork",
) -> None:
    """One process per args tuple; all must exit 0."""
    codes = join([start(target, *a, method=method) for a in args_list])
    assert codes == [0] * len(codes), f"exit codes {codes}"


def barrier(h: SharedDict, n: int) -> None:
    """Children: wait until all *n* have arrived, so they start together."""
    h.incr("arrived", 1, init=0)
    wait_for(lambda: h.get("arrived") == n, f"{n} children")


class CachedFn(Protocol):
    """What cached() adds to a function (its declared type is the function's)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...
    def key_for(self, *args: Any, **kwargs: Any) -> str: ...
    def invalidate(self, *args: Any, **kwargs: Any) -> bool: ...


def as_cached(f: object) -> CachedFn:
    return cast(CachedFn, f)


# ---------------------------------------------------------------- Lock


def _locked_increments(name: str, nproc: int, n: int) -> None:
    with attach(name) as h:
        barrier(h, nproc)
        for _ in range(n):
            with Lock(h, "counter", ttl=10, timeout=JOIN_TIMEOUT):
                if h.incr("inside", 1, init=0) != 1:
                    h.incr("overlaps", 1, init=0)
                value = h.get("counter")
                assert isinstance(value, int)
                time.sleep(0.0003)  # widen the read-modify-write window
                h.set("counter", value + 1)
                h.incr("inside", -1)


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_lock_excludes_every_process(d: SharedDict, method: str) -> None:
    """A plain get/set counter under the lock: not one update lost."""
    nproc, n = 4, 40
    d["counter"] = 0
    run(_locked_increments, [(spec_of(d), nproc, n)] * nproc, method)
    assert d["counter"] == nproc * n
    assert d.get("overlaps") is None
    assert not Lock(d, "counter", ttl=1).locked()


def _hold_until_killed(name: str, ttl: float) -> None:
    h = attach(name)
    lock = Lock(h, "victim", ttl=ttl)
    assert lock.acquire(blocking=False)
    h["held"] = True
    time.sleep(JOIN_TIMEOUT * 2)


def test_lock_of_a_killed_holder_frees_after_its_ttl(d: SharedDict) -> None:
    p = start(_hold_until_killed, spec_of(d), 2.0)
    try:
        wait_for(lambda: d.get("held") is True, "the child to take the lock")
        mine = Lock(d, "victim", ttl=10)
        left = d.ttl(mine.key)
        assert left is not None
        got = mine.acquire(blocking=False)
        if left > 0.5:  # not already ran out on a very busy machine
            assert not got
            assert mine.locked()
    finally:
        os.kill(p.pid, signal.SIGKILL)
        assert join([p]) == [-signal.SIGKILL]
    # Nobody will release it: it frees itself when its ttl ends.
    assert got or mine.acquire(timeout=JOIN_TIMEOUT)
    assert mine.owned()
    mine.release()
    assert not mine.locked()


def _try_to_take(name: str, lock_name: str, timeout: float, want: bool) -> None:
    with attach(name) as h:
        lock = Lock(h, lock_name, ttl=30)
        assert lock.acquire(timeout=timeout) is want
        if want:
            h["taken_by_child"] = True


def test_extend_keeps_the_lock_past_its_first_ttl(d: SharedDict) -> None:
    lock = Lock(d, "e", ttl=0.5)
    assert lock.acquire(blocking=False)
    assert lock.extend(30)
    left = d.ttl(lock.key)
    assert left is not None
    assert left > 10
    # The child tries for 1 s, well past the first ttl of 0.5 s.
    run(_try_to_take, [(spec_of(d), "e", 1.0, False)])
    assert lock.owned()
    assert lock.extend()  # back to the constructor's ttl
    left = d.ttl(lock.key)
    assert left is not None
    assert left <= 0.5
    lock.release()
    run(_try_to_take, [(spec_of(d), "e", 0, True)])


def test_a_lock_lost_to_its_ttl_is_neither_extended_nor_released(
    d: SharedDict,
) -> None:
    lock = Lock(d, "lost", ttl=0.05)
    assert lock.acquire()
    wait_for(lambda: not lock.locked(), "the ttl to run out")
    run(_try_to_take, [(spec_of(d), "lost", JOIN_TIMEOUT, True)])
    token = d.get(lock.key)
    assert not lock.owned()
    assert not lock.extend(30)
    with pytest.raises(RuntimeError, match="no longer held"):
        lock.release()
    assert d.get(lock.key) == token  # the child's hold is untouched
    assert lock.locked()
    # Lost and forgotten: this object may try again, and waits its turn.
    assert not lock.acquire(blocking=False)


def _release_what_others_hold(name: str) -> None:
    with attach(name) as h:
        other = Lock(h, "busy", ttl=30)
        assert other.locked()
        assert not other.owned()
        with pytest.raises(RuntimeError, match="not held by this Lock object"):
            other.release()
        assert not other.extend(60)
        assert other.locked()
        h["refused"] = True


def test_release_by_a_non_holder_is_refused(d: SharedDict) -> None:
    lock = Lock(d, "busy", ttl=30)
    assert lock.acquire(blocking=False)
    token = d.get(lock.key)
    run(_release_what_others_hold, [(spec_of(d),)])
    assert d.get("refused") is True
    assert d.get(lock.key) == token
    assert lock.owned()
    lock.release()
    with pytest.raises(RuntimeError, match="not held"):
        lock.release()  # twice
    assert not lock.locked()


def _time_out(name: str) -> None:
    with attach(name) as h:
        lock = Lock(h, "held", ttl=30)
        t0 = time.monotonic()
        assert not lock.acquire(timeout=0.3)
        assert time.monotonic() - t0 >= 0.3
        assert not lock.acquire(blocking=False)
        t0 = time.monotonic()
        with pytest.raises(TimeoutError, match=r"within 0\.2 s"):  # noqa: SIM117
            with Lock(h, "held", ttl=30, timeout=0.2):
                raise AssertionError("entered a held lock")
        assert time.monotonic() - t0 >= 0.2
        with pytest.raises(TimeoutError, match="held by another"):  # noqa: SIM117
            with Lock(h, "held", ttl=30, blocking=False):
                raise AssertionError("entered a held lock")
        h["timed_out"] = True


def test_acquire_gives_up_at_its_timeout(d: SharedDict) -> None:
    with Lock(d, "held", ttl=30) as lock:
        run(_time_out, [(spec_of(d),)])
        assert lock.owned()
    assert d.get("timed_out") is True
    assert not lock.locked()


def test_waiting_polls_with_backoff(
    d: SharedDict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """1 ms at first, doubling to 50 ms: a wait never spins."""
    pauses: list[float] = []
    real_sleep = time.sleep

    def sleep(s: float) -> None:
        pauses.append(s)
        real_sleep(s)

    monkeypatch.setattr(time, "sleep", sleep)  # recipes calls time.sleep
    holder = Lock(d, "slow", ttl=30)
    assert holder.acquire()
    assert not Lock(d, "slow", ttl=30).acquire(timeout=0.4)
    assert pauses
    assert 0 < pauses[0] <= 0.001
    assert max(pauses) <= 0.05
    assert max(pauses) >= 0.004  # it did back off
    assert len(pauses) < 40  # about 15 for 0.4 s; a spin would make thousands


@pytest.mark.parametrize("backend", ALL, indirect=True)
def test_lock_arguments(d: SharedDict) -> None:
    for ttl in (0, -1, math.nan, math.inf):
        with pytest.raises(ValueError, match="ttl"):
            Lock(d, "a", ttl=ttl)
    with pytest.raises(TypeError):
        Lock(d, "a", ttl="1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="empty"):
        Lock(d, "", ttl=1)
    with pytest.raises(ValueError, match="timeout"):
        Lock(d, "a", ttl=1, timeout=-1)
    with pytest.raises(ValueError, match="non-blocking"):
        Lock(d, "a", ttl=1, timeout=1, blocking=False)
    lock = Lock(d, "a", ttl=1, timeout=math.inf)
    assert lock.timeout is None
    with pytest.raises(ValueError, match="non-blocking"):
        lock.acquire(blocking=False, timeout=1)
    assert lock.acquire(timeout=0)
    with pytest.raises(RuntimeError, match="not reentrant"):
        lock.acquire()
    assert lock.key == "lock:a"
    assert "held" in repr(lock)
    lock.release()


# ---------------------------------------------------------------- cached


_handle: list[SharedDict] = []  # a child's handle, for module-level functions


def _slow_square(x: int) -> dict[str, int]:
    _handle[0].incr("computations", 1, init=0)
    time.sleep(0.5)
    return {"square": x * x, "pid": os.getpid()}


def _call_slow_square(name: str, nproc: int, i: int) -> None:
    with attach(name) as h:
        _handle.append(h)
        f = cached(h, 60)(_slow_square)  # the default key, made in each process
        barrier(h, nproc)
        h.set(f"got:{i}", pickle.dumps(f(7)))


def test_cached_computes_a_miss_once_for_all_processes(d: SharedDict) -> None:
    nproc = 8
    run(_call_slow_square, [(spec_of(d), nproc, i) for i in range(nproc)])
    assert d["computations"] == 1
    results = set()
    for i in range(nproc):
        got = d[f"got:{i}"]
        assert isinstance(got, bytes)
        results.add(tuple(sorted(pickle.loads(got).items())))
    assert len(results) == 1, results  # all saw the one computed value
    (result,) = results
    assert dict(result)["square"] == 49
    assert type(d["cached:tests.test_recipes._slow_square(x=7)"]) is shmdict.Pickled


_calls: list[tuple[Any, ...]] = []


def _record(*args: Any) -> Any:
    _calls.append(args)
    return args[0] if args else None


@pytest.mark.parametrize("backend", ALL, indirect=True)
def test_cached_values_none_and_keys(d: SharedDict) -> None:
    _calls.clear()
    f = as_cached(cached(d, 60)(_record))
    assert f(None) is None
    assert f(None) is None  # a cached None is a hit, not a miss
    assert _calls == [(None,)]
    assert f(5) == 5
    assert f(5) == 5
    assert type(d[f.key_for(5)]) is int  # native values are stored as such
    obj = {"a": [1, 2]}
    assert f(obj) == obj
    got = f({"a": [1, 2]})
    assert got == obj
    assert got is not obj  # unpickled from the dict
    assert type(d[f.key_for(obj)]) is shmdict.Pickled
    assert len(_calls) == 3
    assert f.key_for(1) == "cached:tests.test_recipes._record(args=(1,))"
    assert len(f.key_for("x" * 1000)) < 120  # long arguments are hashed

    def g(a: int, b: int = 2, **kw: int) -> int:
        return a + b + sum(kw.values())

    cg = as_cached(cached(d, 60, prefix="p:")(g))
    assert cg.key_for(1) == cg.key_for(a=1, b=2) == cg.key_for(1, 2)
    assert cg.key_for(1, x=1, y=2) == cg.key_for(1, y=2, x=1)
    assert cg.key_for(1).startswith("p:tests.test_recipes.")
    assert cg(1, z=3) == 6
    assert d[cg.key_for(1, z=3)] == 6
    assert g.__name__ == "g"
    with pytest.raises(TypeError):
        cg(1, 2, 3)  # what g itself would raise
    ck = as_cached(cached(d, 60, key=lambda a, **kw: f"g:{a}")(g))
    assert ck.key_for(1) == "cached:g:1"
    assert ck(1) == 3


def _versioned(h: SharedDict) -> int:
    version = h.incr("version", 1, init=0)
    if h.get("block_pid") == os.getpid():
        h["computing"] = True
        wait_for(lambda: h.get("go") is True, "the parent's go")
    assert isinstance(version, int)
    return version


def _versioned_fn(h: SharedDict) -> CachedFn:
    return as_cached(
        cached(h, 0.2, stale_ttl=60, key=lambda: "v")(lambda: _versioned(h))
    )


def _recompute_blocked(name: str) -> None:
    with attach(name) as h:
        h["block_pid"] = os.getpid()
        assert _versioned_fn(h)() == 2


def _read_stale(name: str, i: int) -> None:
    with attach(name) as h:
        h[f"stale:{i}"] = _versioned_fn(h)()


def test_cached_serves_the_stale_value_while_one_recomputes(d: SharedDict) -> None:
    f = _versioned_fn(d)
    assert f() == 1
    assert f() == 1
    key = f.key_for()

    def is_stale() -> bool:
        left = d.ttl(key)
        return left is not None and left <= 60

    wait_for(is_stale, "the entry to go stale")
    computer = start(_recompute_blocked, spec_of(d))
    try:
        wait_for(lambda: d.get("computing") is True, "the recomputation")
        assert f() == 1  # stale, at once: the computer is blocked
        run(_read_stale, [(spec_of(d), i) for i in range(3)])
        assert [d[f"stale:{i}"] for i in range(3)] == [1, 1, 1]
        assert d["version"] == 2  # nobody else recomputed
    finally:
        d["go"] = True
        assert join([computer]) == [0]
    assert f() == 2  # fresh again
    assert d["version"] == 2


def _invalidate(name: str) -> None:
    with attach(name) as h:
        f = as_cached(cached(h, 60, key=lambda x: f"inv:{x}")(lambda x: _record(x)))
        assert f.invalidate(3)
        assert not f.invalidate(3)


def test_invalidate_reaches_every_process(d: SharedDict) -> None:
    _calls.clear()
    f = as_cached(cached(d, 60, key=lambda x: f"inv:{x}")(lambda x: _record(x)))
    assert f(3) == 3
    assert f(3) == 3
    assert len(_calls) == 1
    run(_invalidate, [(spec_of(d),)])
    assert f(3) == 3
    assert len(_calls) == 2


def _hangs_in_one_process(h: SharedDict) -> int:
    n = h.incr("computations", 1, init=0)
    if h.get("hang_pid") == os.getpid():
        h["started"] = True
        time.sleep(JOIN_TIMEOUT * 2)
    time.sleep(0.5)  # the others wait for this one rather than compute too
    assert isinstance(n, int)
    return n


def _hanging_fn(h: SharedDict) -> CachedFn:
    return as_cached(
        cached(h, 60, lock_timeout=1.0, key=lambda: "h")(
            lambda: _hangs_in_one_process(h)
        )
    )


def _compute_and_hang(name: str) -> None:
    h = attach(name)
    h["hang_pid"] = os.getpid()
    _hanging_fn(h)()


def _wait_for_value(name: str, i: int) -> None:
    with attach(name) as h:
        h[f"got:{i}"] = _hanging_fn(h)()


def test_another_process_computes_when_the_computer_dies(d: SharedDict) -> None:
    hung = start(_compute_and_hang, spec_of(d))
    try:
        wait_for(lambda: d.get("started") is True, "the first computation")
        waiters = [start(_wait_for_value, spec_of(d), i) for i in range(3)]
    finally:
        os.kill(hung.pid, signal.SIGKILL)
        assert join([hung]) == [-signal.SIGKILL]
    assert join(waiters) == [0, 0, 0]
    # The dead one's computation, then exactly one more after its lock's ttl.
    assert d["computations"] == 2
    assert [d[f"got:{i}"] for i in range(3)] == [2, 2, 2]


def test_a_wait_that_times_out_computes_anyway(d: SharedDict) -> None:
    _calls.clear()
    f = as_cached(cached(d, 60, lock_timeout=0.2, key=lambda: "t")(lambda: _record(1)))
    blocker = Lock(d, f.key_for(), ttl=30)  # as if a computer were stuck
    assert blocker.acquire()
    t0 = time.monotonic()
    assert f() == 1
    assert time.monotonic() - t0 >= 0.2
    assert len(_calls) == 1
    assert d[f.key_for()] == 1  # and stored
    assert blocker.owned()
    blocker.release()


def test_an_exception_is_not_cached_and_frees_the_lock(d: SharedDict) -> None:
    calls = 0

    def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OSError("down")
        return "up"

    f = as_cached(cached(d, 60)(flaky))
    with pytest.raises(OSError, match="down"):
        f()
    assert not Lock(d, f.key_for(), ttl=1).locked()
    assert f() == "up"
    assert f() == "up"
    assert calls == 2


def test_cached_arguments(d: SharedDict) -> None:
    with pytest.raises(ValueError, match="ttl"):
        cached(d, 0)
    with pytest.raises(ValueError, match="stale_ttl"):
        cached(d, 1, stale_ttl=-1)
    with pytest.raises(ValueError, match="lock_timeout"):
        cached(d, 1, lock_timeout=0)
    with pytest.raises(TypeError, match="prefix"):
        cached(d, 1, prefix=1)  # type: ignore[arg-type]
    f = as_cached(cached(d, 1, key=lambda: 5)(lambda: 1))  # type: ignore[arg-type,return-value]
    with pytest.raises(TypeError, match="key"):
        f()


# ---------------------------------------------------------------- RateLimiter

BIG = 1e6  # a window no test outlives


def fresh_window(d: SharedDict, per: float, need: float = 30.0) -> None:
    """Sleep past the window boundary if less than *need* s of it is left
    (on the dict's clock)."""
    left = per - clock_for(d)() % per
    if left < need:
        time.sleep(left + 0.01)


def _hammer(name: str, algorithm: str, limit: int, nproc: int, i: int) -> None:
    with attach(name) as h:
        rl = RateLimiter(h, "api", limit, BIG, algorithm=algorithm)
        barrier(h, nproc)
        allowed = sum(rl.hit() for _ in range(limit * 2))
        h[f"allowed:{i}"] = allowed


@pytest.mark.parametrize("algorithm", ["fixed", "sliding", "token"])
def test_a_window_lets_exactly_the_limit_through(d: SharedDict, algorithm: str) -> None:
    """4 processes, 200 hits, a limit of 25: 25 allowed, whatever the order."""
    nproc, limit = 4, 25
    fresh_window(d, BIG)
    run(_hammer, [(spec_of(d), algorithm, limit, nproc, i) for i in range(nproc)])
    assert sum(cast(int, d[f"allowed:{i}"]) for i in range(nproc)) == limit
    rl = RateLimiter(d, "api", limit, BIG, algorithm=algorithm)
    assert rl.remaining() == 0
    assert not rl.hit()
    assert rl.retry_after() > 0
    rl.reset()
    assert rl.remaining() == limit
    assert rl.retry_after() == 0
    assert rl.hit(limit)
    assert not rl.hit()


@pytest.mark.parametrize("backend", ALL, indirect=True)
def test_fixed_window_counts_cost_and_takes_refusals_back(d: SharedDict) -> None:
    fresh_window(d, BIG)
    rl = RateLimiter(d, "c", 10, BIG, algorithm="fixed")
    assert rl.hit(6)
    assert not rl.hit(5)  # refused: and not counted
    assert rl.remaining() == 4
    assert rl.hit(4)
    assert not rl.hit(11)  # more than the limit can ever allow
    with pytest.raises(ValueError, match="cost"):
        rl.hit(0)


def _hit_once(name: str, limit: int, per: float) -> None:
    with attach(name) as h:
        assert RateLimiter(h, "bucket", limit, per, algorithm="token").hit()


def test_token_bucket_refills(d: SharedDict) -> None:
    limit, per = 5, 0.5  # 10 tokens a second
    rl = RateLimiter(d, "bucket", limit, per, algorithm="token")
    t0 = time.monotonic()
    drained = 0
    while rl.hit():
        drained += 1
    assert limit <= drained <= limit + (time.monotonic() - t0) * limit / per
    wait = rl.retry_after()
    assert wait <= per / limit  # at most one token's refill away
    time.sleep(wait)
    run(_hit_once, [(spec_of(d), limit, per)])  # a token came back, for anyone
    time.sleep(per)
    assert rl.remaining() == limit  # full again, and then no longer stored
    wait_for(lambda: "ratelimit:token:bucket" not in d, "the full bucket to expire")
    assert rl.retry_after() == 0


def _hammer_for(name: str, algorithm: str, limit: int, per: float, i: int) -> None:
    """Hit for about 1.2 s; record the (before, after) times of the hits
    allowed, packed as doubles."""
    with attach(name) as h:
        rl = RateLimiter(h, "s", limit, per, algorithm=algorithm)
        times: list[float] = []
        refused = 0
        end = time.monotonic() + 1.2
        while time.monotonic() < end:
            t0 = rl.clock()
            ok = rl.hit()
            t1 = rl.clock()
            if ok:
                times += (t0, t1)
            else:
                refused += 1
            time.sleep(0.0005)
        h[f"times:{i}"] = struct.pack(f"<{len(times)}d", *times)
        h[f"refused:{i}"] = refused


def _allowed(d: SharedDict, nproc: int) -> list[tuple[float, float]]:
    spans = []
    for i in range(nproc):
        raw = d[f"times:{i}"]
        assert isinstance(raw, bytes)
        flat = struct.unpack(f"<{len(raw) // 8}d", raw)
        spans += list(zip(flat[::2], flat[1::2], strict=True))
    assert sum(cast(int, d[f"refused:{i}"]) for i in range(nproc)) > 0
    return spans


def test_sliding_window_never_exceeds_its_weighted_estimate(d: SharedDict) -> None:
    """For each window, the hits surely counted in it (allowed with their
    call entirely inside it) and those surely counted in the one before
    satisfy ``before * (1 - elapsed) + this <= limit``, with *elapsed*
    taken at the end of the last such call, later than its check."""
    nproc, limit, per = 4, 20, 0.3
    run(_hammer_for, [(spec_of(d), "sliding", limit, per, i) for i in range(nproc)])
    spans = _allowed(d, nproc)
    sure: dict[int, list[float]] = {}
    for t0, t1 in spans:
        if math.floor(t0 / per) == math.floor(t1 / per):
            sure.setdefault(math.floor(t1 / per), []).append(t1)
    assert len(sure) >= 2
    checked = 0
    for idx, ends in sure.items():
        assert len(ends) <= limit
        before = len(sure.get(idx - 1, []))
        last = max(ends) / per
        elapsed = min(max(last - math.floor(last), 0.0), 1.0)
        assert before * (1 - elapsed) + len(ends) <= limit + 1e-6, (idx, before)
        checked += before > 0
    assert checked  # the weighting was put to the test at least once


def test_token_bucket_across_processes_stays_within_its_refill(d: SharedDict) -> None:
    nproc, limit, per = 4, 10, 1.0
    t0 = time.monotonic()
    run(_hammer_for, [(spec_of(d), "token", limit, per, i) for i in range(nproc)])
    elapsed = time.monotonic() - t0
    allowed = len(_allowed(d, nproc))
    assert limit <= allowed <= limit + elapsed * limit / per + 1


@pytest.mark.parametrize("backend", ALL, indirect=True)
def test_retry_after_of_the_windows(d: SharedDict) -> None:
    fresh_window(d, BIG)
    for algorithm in ("fixed", "sliding"):
        rl = RateLimiter(d, "r", 3, BIG, algorithm=algorithm)
        assert rl.hit(3)
        left = BIG - rl.clock() % BIG
        # this window's end (sliding: then the old window weighs 3 for a
        # while: 1/3 of the next one must pass too)
        want = left if algorithm == "fixed" else left + BIG / 3
        assert abs(rl.retry_after() - want) < 5


def test_rate_limiter_arguments(d: SharedDict) -> None:
    with pytest.raises(ValueError, match="algorithm"):
        RateLimiter(d, "k", 1, 1, algorithm="leaky")
    with pytest.raises(ValueError, match="limit"):
        RateLimiter(d, "k", 0, 1)
    with pytest.raises(TypeError, match="limit"):
        RateLimiter(d, "k", 1.5, 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="per"):
        RateLimiter(d, "k", 1, 0)
    with pytest.raises(ValueError, match="key"):
        RateLimiter(d, "", 1, 1)
    rl = RateLimiter(d, "k", 2, 1, algorithm="token")
    with pytest.raises(TypeError, match="cost"):
        rl.hit(True)
    assert "token" in repr(rl)

"""shmdict.contrib.limits: the storage for the limits library.

Real processes share one limit; a fake clock (the module's ``time``
replaced) checks the window arithmetic without sleeping; a few tests sleep
briefly to see keys expire on the dict's own clock. limits' own suite runs
against the storage in scripts/judge_limits.sh.

The tests that take ``uri`` or ``storage`` run on a shared dict
(``shmdict://NAME``) and on Redis (``shmdict+unix://...?namespace=NAME``;
tests/backends.py), the cheap ones on the Cluster too
(``shmdict+redis+cluster://``); those that take ``name`` are about the
shared dict's own options, size and file, and say so.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip(
    "limits", reason="limits is not installed (pip install -r requirements-dev.txt)"
)

import limits.aio.strategies as aio_strategies
from limits import (
    RateLimitItem,
    RateLimitItemPerDay,
    RateLimitItemPerHour,
    RateLimitItemPerMinute,
    RateLimitItemPerSecond,
    strategies,
)
from limits.errors import ConfigurationError, StorageError
from limits.storage import storage_from_string

import shmdict
import shmdict.contrib.limits as sl
from shmdict.contrib.limits import AsyncShmdictStorage, ShmdictStorage
from shmdict.redis import RedisDict

from .backends import ALL, Backend
from .helpers import fill_until_full

MiB = 1 << 20
JOIN_TIMEOUT = 30.0
STRATEGIES: dict[str, strategies.KnownStrategy] = {
    "fixed": strategies.FixedWindowRateLimiter,
    "moving": strategies.MovingWindowRateLimiter,
    "sliding": strategies.SlidingWindowCounterRateLimiter,
}
AIO_STRATEGIES: dict[
    str,
    type[aio_strategies.FixedWindowRateLimiter]
    | type[aio_strategies.MovingWindowRateLimiter]
    | type[aio_strategies.SlidingWindowCounterRateLimiter],
] = {
    "fixed": aio_strategies.FixedWindowRateLimiter,
    "moving": aio_strategies.MovingWindowRateLimiter,
    "sliding": aio_strategies.SlidingWindowCounterRateLimiter,
}


def storage_uri(backend: Backend) -> str:
    """The storage URI of the test's dict: ``shmdict://NAME?size=1M``, or
    ``shmdict+`` and the server's URL with the namespace NAME."""
    if not backend.remote:
        return f"shmdict://{backend.name}?size=1M"
    join = "&" if "?" in backend.url else "?"
    return f"shmdict+{backend.url}{join}namespace={backend.name}"


def shm_of(storage: ShmdictStorage | AsyncShmdictStorage) -> shmdict.SharedDict:
    """The shared dict of a ``shmdict://`` storage."""
    d = storage.shared_dict
    assert isinstance(d, shmdict.SharedDict)
    return d


@pytest.fixture
def uri(backend: Backend) -> str:
    return storage_uri(backend)


@pytest.fixture
def storage(uri: str) -> Iterator[ShmdictStorage]:
    s = ShmdictStorage(uri)
    yield s
    s.close()


class FakeClock:
    """Stands in for the module's ``time``: wall-clock seconds we set."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    c = FakeClock(1_000_000.0)
    monkeypatch.setattr(sl, "time", c)
    return c


# ---------------------------------------------------------------- the URI


def test_the_schemes_make_our_storages(name: str) -> None:
    s = storage_from_string(f"shmdict://{name}?size=2M&evict=false")
    a = storage_from_string(f"async+shmdict://{name}?size=2M&evict=false")
    assert isinstance(s, ShmdictStorage)
    assert isinstance(a, AsyncShmdictStorage)
    try:
        assert shm_of(s).size == 2 * MiB
        assert shm_of(s).stats()["evict"] is False
        assert shm_of(s).owner is False  # open(): no worker owns it
        assert shm_of(a).path == shm_of(s).path
    finally:
        s.close()
        a.close()


def test_options_and_their_defaults(name: str, tmp_path: Any) -> None:
    s = ShmdictStorage(f"shmdict://{name}")
    try:
        assert shm_of(s).size == sl.DEFAULT_SIZE
        assert shm_of(s).stats()["evict"] is True
    finally:
        s.close()
    shmdict.remove(name)
    # Keyword options win over the query; the path form names the dict too.
    s = ShmdictStorage(
        f"shmdict:///{name}?size=1M&evict=true",
        size=2 * MiB,
        evict=False,
        dir=str(tmp_path),
        key_prefix="app",
        lock_timeout=2,
    )
    try:
        assert shm_of(s).path == f"{tmp_path}/{name}"
        assert shm_of(s).size == 2 * MiB
        assert shm_of(s).lock_timeout == 2.0
        s.incr("k", 60)
        assert s.shared_dict.get_keys() == ["app:c:k"]
    finally:
        s.close()


@pytest.mark.parametrize(
    "query",
    [
        "",  # no name
        "?size=1M",  # still no name
        "x/y",  # two names
        "NAME?colour=red",  # unknown option
        "NAME?size=1M&size=2M",  # repeated
        "NAME?size=lots",
        "NAME?size=1T",
        "NAME?evict=maybe",
        "NAME?lock_timeout=soon",
        "NAME?size=1000",  # below shmdict.MIN_SIZE
    ],
)
def test_bad_uris_are_configuration_errors(name: str, query: str) -> None:
    with pytest.raises(ConfigurationError):
        ShmdictStorage("shmdict://" + query.replace("NAME", name))
    assert not shmdict.exists(name)


def test_a_dict_made_with_other_settings_is_refused(name: str) -> None:
    s = ShmdictStorage(f"shmdict://{name}?size=1M")
    try:
        with pytest.raises(ConfigurationError, match="size"):
            ShmdictStorage(f"shmdict://{name}?size=2M")
        with pytest.raises(ConfigurationError, match="evict"):
            ShmdictStorage(f"shmdict://{name}?size=1M&evict=no")
    finally:
        s.close()


def test_sizes_take_binary_suffixes() -> None:
    assert sl._size("64K") == 64 << 10
    assert sl._size("16m") == 16 << 20
    assert sl._size("16MiB") == 16 << 20
    assert sl._size("1G") == 1 << 30
    assert sl._size("65536") == 65536
    assert sl._size(65536) == 65536


@pytest.mark.parametrize("backend", [b for b in ALL if b != "shm"], indirect=True)
def test_the_redis_schemes_make_our_storages(backend: Backend) -> None:
    uri = storage_uri(backend)
    s = storage_from_string(uri, key_prefix="app")
    a = storage_from_string(f"async+{uri}")
    assert isinstance(s, ShmdictStorage)
    assert isinstance(a, AsyncShmdictStorage)
    try:
        d = s.shared_dict
        assert isinstance(d, RedisDict)
        assert d.namespace == backend.name
        assert d.cluster is (backend.kind == "cluster")
        s.incr("k", 60)
        assert d.get_keys() == ["app:c:k"]
        assert asyncio.run(a.get("k")) == 0  # its own prefix, LIMITS
    finally:
        s.close()
        a.close()


@pytest.mark.parametrize(
    "uri",
    [
        "shmdict+memcached://localhost:11211",
        "shmdict+redis://localhost:1?key_prefix=a&key_prefix=b",
        "shmdict+redis://localhost:1?namespace=",
    ],
)
def test_bad_redis_uris_are_configuration_errors(uri: str) -> None:
    with pytest.raises(ConfigurationError):
        ShmdictStorage(uri)


def test_importing_shmdict_does_not_import_limits() -> None:
    code = (
        "import sys, shmdict, shmdict.contrib\n"
        "assert 'limits' not in sys.modules, 'limits was imported'\n"
    )
    src = os.path.dirname(os.path.dirname(os.path.abspath(shmdict.__file__)))
    env = {**os.environ, "PYTHONPATH": src}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


# ---------------------------------------------------------------- fixed window


def test_fixed_window_counts_and_expires(storage: ShmdictStorage) -> None:
    item = RateLimitItemPerSecond(2, 1)
    limiter = strategies.FixedWindowRateLimiter(storage)
    before = time.time()
    assert limiter.hit(item, "a")
    assert limiter.hit(item, "a")
    assert not limiter.hit(item, "a")
    stats = limiter.get_window_stats(item, "a")
    assert stats.remaining == 0
    # The window started at the first hit and lasts the item's expiry.
    assert before < stats.reset_time <= time.time() + 1.0
    assert storage.get(item.key_for("a")) == 3  # refused hits count too
    time.sleep(1.05)
    assert storage.get(item.key_for("a")) == 0
    assert limiter.hit(item, "a")


def test_incr_keeps_the_expiry_of_the_first_hit(storage: ShmdictStorage) -> None:
    assert storage.incr("k", 10) == 1
    first = storage.get_expiry("k")
    time.sleep(0.05)
    assert storage.incr("k", 10, amount=5) == 6
    assert storage.get_expiry("k") == pytest.approx(first, abs=0.01)
    assert storage.get_expiry("missing") == pytest.approx(time.time(), abs=0.01)


# ---------------------------------------------------------------- moving window


def _window_value(storage: ShmdictStorage, key: str) -> list[tuple[float, int]]:
    raw = storage.shared_dict.get(f"LIMITS:m:{key}")
    assert isinstance(raw, bytes)
    return list(struct.iter_unpack("<dq", raw))


@pytest.mark.parametrize("backend", ALL, indirect=True)
def test_moving_window_slides_with_time(
    storage: ShmdictStorage, clock: FakeClock
) -> None:
    t0 = clock.now
    for step in range(3):
        clock.now = t0 + step
        assert storage.acquire_entry("k", 3, 10)
    clock.now = t0 + 5
    assert not storage.acquire_entry("k", 3, 10)
    assert storage.get_moving_window("k", 3, 10) == (t0, 3)
    clock.now = t0 + 10  # the first hit is still in [now - 10, now]
    assert not storage.acquire_entry("k", 3, 10)
    clock.now = t0 + 10.001
    assert storage.acquire_entry("k", 3, 10)
    assert storage.get_moving_window("k", 3, 10) == (t0 + 1, 3)
    # Hits that left the window are dropped from the value.
    assert [hits for _, hits in _window_value(storage, "k")] == [1, 1, 1]
    clock.now = t0 + 100
    assert storage.get_moving_window("k", 3, 10) == (t0 + 100, 0)


def test_moving_window_costs_are_runs(
    storage: ShmdictStorage, clock: FakeClock
) -> None:
    t0 = clock.now
    assert not storage.acquire_entry("k", 1_000_000, 60, amount=1_000_001)
    assert storage.acquire_entry("k", 1_000_000, 60, amount=999_999)
    # A million hits cost one 16-byte run, not a million entries.
    assert _window_value(storage, "k") == [(t0, 999_999)]
    assert not storage.acquire_entry("k", 1_000_000, 60, amount=2)
    assert storage.acquire_entry("k", 1_000_000, 60)
    assert _window_value(storage, "k") == [(t0, 1_000_000)]
    # A smaller limit asked of the same key counts at most that many.
    assert storage.get_moving_window("k", 10, 60) == (t0, 10)


def test_moving_window_costs_of_zero_record_nothing(
    storage: ShmdictStorage, clock: FakeClock
) -> None:
    assert storage.acquire_entry("k", 1, 10)
    assert storage.acquire_entry("k", 1, 10, amount=0)
    assert _window_value(storage, "k") == [(clock.now, 1)]
    with pytest.raises(ValueError, match="negative"):
        storage.acquire_entry("k", 1, 10, amount=-1)


def test_moving_window_survives_a_clock_stepping_back(
    storage: ShmdictStorage, clock: FakeClock
) -> None:
    t0 = clock.now
    assert storage.acquire_entry("k", 5, 10)
    clock.now = t0 - 3
    assert storage.acquire_entry("k", 5, 10, amount=2)
    # Joined to the newest run, so the runs stay sorted.
    assert _window_value(storage, "k") == [(t0, 3)]
    assert storage.get_moving_window("k", 5, 10) == (t0, 3)


def test_moving_window_key_expires_with_its_window(storage: ShmdictStorage) -> None:
    item = RateLimitItemPerSecond(1, 1)
    limiter = strategies.MovingWindowRateLimiter(storage)
    assert limiter.hit(item)
    assert not limiter.hit(item)
    ttl = storage.shared_dict.ttl(f"LIMITS:m:{item.key_for()}")
    assert ttl is not None
    assert 0 < ttl <= 1.0
    time.sleep(1.05)
    assert storage.shared_dict.get_keys() == []
    assert limiter.hit(item)


# ---------------------------------------------------------------- sliding window


@pytest.mark.parametrize("backend", ALL, indirect=True)
def test_sliding_window_weighs_the_previous_window(
    storage: ShmdictStorage, clock: FakeClock
) -> None:
    expiry = 10
    clock.now = 100_000 * expiry + 3.0  # 3 s into a window
    for _ in range(6):
        assert storage.acquire_sliding_window_entry("k", 10, expiry)
    assert storage.get_sliding_window("k", expiry) == pytest.approx((0, 0, 6, 17))
    # 2.5 s into the next window the 6 old hits weigh 6 * 0.75 = 4.5.
    clock.now = 100_001 * expiry + 2.5
    prev, prev_ttl, cur, cur_ttl = storage.get_sliding_window("k", expiry)
    assert (prev, cur) == (6, 0)
    assert prev_ttl == pytest.approx(7.5)
    assert cur_ttl == pytest.approx(17.5)
    allowed = 0
    while storage.acquire_sliding_window_entry("k", 10, expiry):
        allowed += 1
    assert allowed == 6  # floor(4.5 + 5) + 1 = 10 is the last one that fits
    assert not storage.acquire_sliding_window_entry("k", 10, expiry, amount=11)
    # Two windows on, both counts are gone.
    clock.now = 100_003 * expiry
    assert storage.get_sliding_window("k", expiry) == pytest.approx((0, 0, 0, 20))
    assert storage.acquire_sliding_window_entry("k", 10, expiry, amount=10)


def test_sliding_window_clear(storage: ShmdictStorage) -> None:
    item = RateLimitItemPerMinute(2)
    limiter = strategies.SlidingWindowCounterRateLimiter(storage)
    assert limiter.hit(item)
    assert limiter.hit(item)
    assert not limiter.hit(item)
    limiter.clear(item)
    assert limiter.get_window_stats(item).remaining == 2
    ttl = storage.shared_dict.ttl(f"LIMITS:s:{item.key_for()}")
    assert ttl is None  # cleared


def test_sliding_window_key_lives_two_windows_at_most(
    storage: ShmdictStorage,
) -> None:
    assert storage.acquire_sliding_window_entry("k", 5, 60)
    ttl = storage.shared_dict.ttl("LIMITS:s:k")
    assert ttl is not None
    assert 60 <= ttl <= 120


# ---------------------------------------------------------------- whole storage


@pytest.mark.parametrize("backend", ALL, indirect=True)
def test_reset_clears_only_this_storage_keys(uri: str) -> None:
    a = ShmdictStorage(uri)
    b = ShmdictStorage(uri, key_prefix="other")
    try:
        a.shared_dict.set("unrelated", "keep me")
        for i in range(5):
            a.incr(f"k{i}", 60)
        a.acquire_entry("m", 5, 60)
        a.acquire_sliding_window_entry("s", 5, 60)
        b.incr("k0", 60)
        assert a.reset() == 7
        assert a.get("k0") == 0
        assert b.get("k0") == 1
        assert a.shared_dict.get("unrelated") == "keep me"
    finally:
        a.close()
        b.close()


def test_clear_forgets_every_strategy_of_a_key(storage: ShmdictStorage) -> None:
    storage.incr("k", 60)
    storage.acquire_entry("k", 5, 60)
    storage.acquire_sliding_window_entry("k", 5, 60)
    storage.clear("k")
    assert storage.shared_dict.get_keys() == []


def test_check_turns_false_once_closed(uri: str) -> None:
    s = ShmdictStorage(uri)
    assert s.check()
    s.close()
    assert not s.check()


def test_a_full_dict_that_does_not_evict_raises(name: str) -> None:
    # shm only: a dict's size bounds it; a Redis server's maxmemory does
    # (NoMemoryError on Redis is tested with the backend itself).
    plain = ShmdictStorage(f"shmdict://{name}?size=64K&evict=0")
    wrapped = ShmdictStorage(f"shmdict://{name}?size=64K&evict=0", wrap_exceptions=True)
    try:
        # Small fillers, then keys too long for any gap they leave.
        fill_until_full(shm_of(plain), "filler", 0)
        long = "x" * 200
        with pytest.raises(shmdict.NoMemoryError):
            plain.incr(f"counter-{long}", 60)
        with pytest.raises(StorageError) as info:
            wrapped.acquire_entry(f"window-{long}", 5, 60)
        assert isinstance(info.value.storage_error, shmdict.NoMemoryError)
    finally:
        plain.close()
        wrapped.close()


def test_a_full_dict_that_evicts_keeps_counting(name: str) -> None:
    # shm only: evict= is the dict's; on Redis the server's
    # maxmemory-policy evicts.
    s = ShmdictStorage(f"shmdict://{name}?size=64K")
    try:
        for i in range(20_000):  # far more than 64 KiB holds
            s.incr(f"client{i}", 60)
        assert s.get("client19999") == 1
        assert shm_of(s).stats()["evictions"] > 0
    finally:
        s.close()


@pytest.mark.parametrize("backend", ALL, indirect=True)
def test_values_of_other_types_are_type_errors(storage: ShmdictStorage) -> None:
    storage.shared_dict.set("LIMITS:c:k", "text")
    storage.shared_dict.set("LIMITS:m:k", b"odd")
    storage.shared_dict.set("LIMITS:s:k", 7)
    with pytest.raises(TypeError):
        storage.get("k")
    with pytest.raises(TypeError):
        storage.acquire_entry("k", 5, 60)
    with pytest.raises(TypeError):
        storage.get_sliding_window("k", 60)


# ---------------------------------------------------------------- async


def test_async_storage_runs_every_strategy(uri: str) -> None:
    async def main() -> dict[str, list[bool]]:
        storage = AsyncShmdictStorage(f"async+{uri}")
        try:
            assert await storage.check()
            item = RateLimitItemPerHour(3)
            got = {}
            for kind, cls in AIO_STRATEGIES.items():
                limiter = cls(storage)
                got[kind] = [await limiter.hit(item, kind) for _ in range(5)]
                assert (await limiter.get_window_stats(item, kind)).remaining == 0
            assert await storage.get(item.key_for("fixed")) == 5
            assert await storage.get_expiry(item.key_for("fixed")) > time.time()
            assert await storage.reset() == 3
            return got
        finally:
            storage.close()

    got = asyncio.run(main())
    assert got == {kind: [True] * 3 + [False] * 2 for kind in AIO_STRATEGIES}


def test_sync_and_async_storages_share_the_limits(uri: str) -> None:
    sync = ShmdictStorage(uri)
    item = RateLimitItemPerMinute(4)

    async def hits() -> list[bool]:
        storage = AsyncShmdictStorage(f"async+{uri}")
        try:
            limiter = aio_strategies.MovingWindowRateLimiter(storage)
            return [await limiter.hit(item) for _ in range(3)]
        finally:
            storage.close()

    try:
        limiter = strategies.MovingWindowRateLimiter(sync)
        assert limiter.hit(item)
        assert asyncio.run(hits()) == [True, True, True]
        assert not limiter.hit(item)
    finally:
        sync.close()


# ---------------------------------------------------------------- processes


WORKERS = 4
ATTEMPTS = 60
LIMIT = 100


def _item() -> RateLimitItem:
    # A year-long window: no window boundary falls inside the test.
    return RateLimitItemPerDay(LIMIT, 365)


def _hit_worker(uri: str, kind: str, wid: int) -> None:
    """A spawned worker: opens the storage by its URI."""
    storage = ShmdictStorage(uri)
    _hits(storage, kind, wid)
    storage.close()


def _hits(storage: ShmdictStorage, kind: str, wid: int) -> None:
    """Wait for the parent's go, make ATTEMPTS hits, record how many got
    through."""
    d = storage.shared_dict
    d.incr("ready", 1, init=0)
    end = time.monotonic() + JOIN_TIMEOUT
    while not d.get("go"):
        if time.monotonic() > end:
            raise SystemExit("no go from the parent")
        time.sleep(0.0005)
    limiter = STRATEGIES[kind](storage)
    allowed = sum(limiter.hit(_item(), "shared") for _ in range(ATTEMPTS))
    d.set(f"allowed:{wid}", allowed)


def _allowed(d: shmdict.DictLike) -> list[int]:
    got = [d.get(f"allowed:{w}") for w in range(WORKERS)]
    assert all(isinstance(n, int) for n in got), got
    return [n for n in got if isinstance(n, int)]


def _run_workers(ctx: Any, target: Any, args: list[tuple[Any, ...]], d: Any) -> None:
    procs = [ctx.Process(target=target, args=a) for a in args]
    for p in procs:
        p.start()
    try:
        end = time.monotonic() + JOIN_TIMEOUT
        while d.get("ready", 0) < len(procs):
            assert time.monotonic() < end, "the workers did not start"
            time.sleep(0.005)
        d.set("go", True)
        for p in procs:
            p.join(max(0.0, end - time.monotonic()))
    finally:
        hung = [p for p in procs if p.is_alive()]
        for p in hung:
            p.kill()
            p.join(5)
    assert not hung, "a worker did not finish"
    assert [p.exitcode for p in procs] == [0] * len(procs)


@pytest.mark.parametrize("kind", sorted(STRATEGIES))
def test_processes_share_one_limit_exactly(uri: str, kind: str) -> None:
    """4 spawned workers, each opening the storage by URI as a pool of
    equal workers does, make 240 attempts on a limit of 100: exactly 100
    get through."""
    storage = ShmdictStorage(uri)
    d = storage.shared_dict
    try:
        ctx = multiprocessing.get_context("spawn")
        _run_workers(ctx, _hit_worker, [(uri, kind, w) for w in range(WORKERS)], d)
        per_worker = _allowed(d)
        assert sum(per_worker) == LIMIT, per_worker
        limiter = STRATEGIES[kind](storage)
        assert limiter.get_window_stats(_item(), "shared").remaining == 0
    finally:
        storage.close()


def test_forked_workers_share_a_storage_made_before_the_fork(uri: str) -> None:
    """gunicorn --preload: the storage is made once, before the fork."""
    storage = ShmdictStorage(uri)
    d = storage.shared_dict
    try:
        ctx = multiprocessing.get_context("fork")
        args = [(storage, "moving", w) for w in range(WORKERS)]
        _run_workers(ctx, _hits, args, d)
        assert sum(_allowed(d)) == LIMIT
    finally:
        storage.close()

"""Expiry: ttl bounds, expire, incr and TTLs, invisibility of expired keys,
reuse of expired space, get_stale and flush_expired.

Nothing here asserts exact timings: short exptimes are waited out by polling
with a generous deadline, and "still alive" is only asserted for keys whose
exptime is far longer than any plausible stall of a loaded machine.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings

import shmdict

from .helpers import MiB, wait_expired, wait_until
from .redis_fixtures import peer
from .strategies import Value, same_value, values

SharedDict = shmdict.SharedDict

SHORT = 0.05  # an exptime that has surely passed after DEADLINE
DEADLINE = 10.0  # how long to wait for a short exptime to pass
LONG = 1000.0  # an exptime that surely does not pass during a test
# ms resolution: a ttl may round up to the next millisecond.
RESOLUTION = 0.0011
reuse_fixture = settings(
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)


def sleep_past(t: float) -> None:
    """Sleep until time.monotonic() (CLOCK_MONOTONIC) is past t."""
    while True:
        left = t - time.monotonic()
        if left <= 0:
            return
        time.sleep(left + 0.001)


def expire_short(d: SharedDict, key: str, value: object = 1) -> None:
    """Set key with a short exptime and wait until it has expired."""
    d.set(key, value, SHORT)  # type: ignore[arg-type]
    sleep_past(time.monotonic() + SHORT + 0.005)
    assert wait_until(lambda: d.ttl(key) is None)


# ---------------------------------------------------------------- ttl


def test_ttl_no_expiry_is_zero(d: SharedDict) -> None:
    d["a"] = 1
    d.set("b", 1, 0)
    d.set("c", 1, -5)
    assert d.ttl("a") == 0
    assert d.ttl("b") == 0
    assert d.ttl("c") == 0


def test_ttl_missing_is_none(d: SharedDict) -> None:
    assert d.ttl("nope") is None


@pytest.mark.parametrize("exptime", [1, 1.5, 100, 100.25, 86400 * 365, LONG])
def test_ttl_bounds(d: SharedDict, exptime: float) -> None:
    t0 = time.monotonic()
    d.set("k", "v", exptime)
    t = d.ttl("k")
    if t is None:  # only if the machine stalled for the whole exptime
        assert time.monotonic() - t0 >= exptime - RESOLUTION
        return
    assert isinstance(t, float)
    assert 0 < t <= exptime + RESOLUTION
    if exptime >= 100:
        assert t > exptime - 50  # generous: 50 s of stall tolerated


def test_ttl_decreases(d: SharedDict) -> None:
    d.set("k", 1, LONG)
    t1 = d.ttl("k")
    time.sleep(0.02)
    t2 = d.ttl("k")
    assert t1 is not None
    assert t2 is not None
    assert t2 < t1


def test_ttl_seen_by_peer(d: SharedDict) -> None:
    d.set("k", 1, LONG)
    with peer(d) as p:
        t = p.ttl("k")
        assert t is not None
        assert LONG - 50 < t <= LONG
        p.expire("k", 0)
    assert d.ttl("k") == 0


@pytest.mark.parametrize("exptime", [1e-9, 1e-6, 0.0001, 0.0005, 0.001, 0.002, 0.02])
def test_ttl_never_zero_for_expiring_key(d: SharedDict, exptime: float) -> None:
    """From set until expiry, ttl is a positive float; then None for good."""
    d.set("k", "v", exptime)
    seen: list[float | None] = []
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        t = d.ttl("k")
        seen.append(t)
        if t is None:
            break
    assert seen[-1] is None, "key never expired"
    alive = seen[:-1]
    assert all(t is not None and t > 0 for t in alive), seen[:20]
    assert all(t is not None and t <= exptime + RESOLUTION for t in alive)
    # Never comes back.
    for _ in range(50):
        assert d.ttl("k") is None
        assert "k" not in d


def test_short_exptime_expires(d: SharedDict) -> None:
    d.set("k", 1, SHORT)
    d["keep"] = 2
    assert wait_until(lambda: "k" not in d)
    assert d.get("k") is None
    assert d["keep"] == 2


def test_set_without_exptime_clears_ttl(d: SharedDict) -> None:
    d.set("k", 1, LONG)
    d.set("k", 2)
    assert d.ttl("k") == 0
    d.set("k", 3, LONG)
    d["k"] = 4
    assert d.ttl("k") == 0
    d.set("k", 5, LONG)
    d.set("k", 6, -1)
    assert d.ttl("k") == 0


def test_set_replaces_ttl(d: SharedDict) -> None:
    d.set("k", 1, 100)
    d.set("k", 1, LONG)
    t = d.ttl("k")
    assert t is not None
    assert t > 500
    d.set("k", 1, 100)
    t = d.ttl("k")
    assert t is not None
    assert t <= 100 + RESOLUTION


def test_set_with_ttl_on_persistent_key(d: SharedDict) -> None:
    d["k"] = 1
    d.set("k", 2, SHORT)
    assert wait_until(lambda: "k" not in d)


# ---------------------------------------------------------------- expire


def test_expire_sets_and_replaces(d: SharedDict) -> None:
    d["k"] = 1
    assert d.expire("k", 500) is True
    t = d.ttl("k")
    assert t is not None
    assert 450 < t <= 500 + RESOLUTION
    assert d.expire("k", 50) is True  # shortening is allowed
    t = d.ttl("k")
    assert t is not None
    assert 0 < t <= 50 + RESOLUTION
    assert d.expire("k", LONG) is True
    t = d.ttl("k")
    assert t is not None
    assert t > 500
    assert d["k"] == 1  # the value is untouched


@pytest.mark.parametrize("clear", [0, 0.0, -1, -0.001])
def test_expire_clears(d: SharedDict, clear: float) -> None:
    d.set("k", "v", LONG)
    assert d.expire("k", clear) is True
    assert d.ttl("k") == 0
    assert d["k"] == "v"


def test_expire_clear_keeps_key_past_old_expiry(d: SharedDict) -> None:
    exptime = 0.5
    for _ in range(5):
        t0 = time.monotonic()
        d.set("k", "v", exptime)
        if d.expire("k", 0):
            break
        # Only a stall longer than exptime may have let it expire first.
        assert time.monotonic() - t0 >= exptime - RESOLUTION
    else:
        pytest.skip("machine too loaded to clear a 0.5 s expiry in time")
    sleep_past(t0 + exptime + 0.1)
    assert d.get("k") == "v"
    assert d.ttl("k") == 0


def test_expire_short_then_gone(d: SharedDict) -> None:
    d["k"] = 1
    assert d.expire("k", SHORT) is True
    assert wait_until(lambda: "k" not in d)
    assert d.expire("k", LONG) is False  # does not resurrect
    assert "k" not in d


def test_expire_missing(d: SharedDict) -> None:
    assert d.expire("missing", 10) is False
    assert d.expire("missing", 0) is False
    assert "missing" not in d
    assert len(d) == 0


# ---------------------------------------------------------------- incr


def test_incr_keeps_ttl_when_omitted(d: SharedDict) -> None:
    d.set("k", 1, 100)
    assert d.incr("k", 1) == 2
    t = d.ttl("k")
    assert t is not None
    assert 50 < t <= 100 + RESOLUTION
    assert d.incr("k", 0.5, None) == 2.5
    t = d.ttl("k")
    assert t is not None
    assert 50 < t <= 100 + RESOLUTION


def test_incr_keeps_no_expiry(d: SharedDict) -> None:
    d["k"] = 1
    d.incr("k", 1)
    assert d.ttl("k") == 0


def test_incr_replaces_ttl(d: SharedDict) -> None:
    d.set("k", 1, 100)
    assert d.incr("k", 1, LONG) == 2
    t = d.ttl("k")
    assert t is not None
    assert t > 500
    assert d.incr("k", 1, 10) == 3
    t = d.ttl("k")
    assert t is not None
    assert 0 < t <= 10 + RESOLUTION
    d["p"] = 1
    d.incr("p", 1, 100)
    t = d.ttl("p")
    assert t is not None
    assert 50 < t <= 100 + RESOLUTION


@pytest.mark.parametrize("clear", [0, -1, -0.5])
def test_incr_clears_ttl(d: SharedDict, clear: float) -> None:
    d.set("k", 1, 100)
    assert d.incr("k", 1, clear) == 2
    assert d.ttl("k") == 0


def test_incr_short_ttl_expires(d: SharedDict) -> None:
    d["k"] = 1
    assert d.incr("k", 1, SHORT) == 2
    assert wait_until(lambda: "k" not in d)
    with pytest.raises(KeyError):
        d.incr("k", 1)


# ---------------------------------------------------------------- invisible


def test_expired_key_invisible_everywhere(d: SharedDict) -> None:
    d["keep"] = "k"
    expire_short(d, "gone", 41)
    with peer(d) as p:
        for h in (d, p):
            assert h.get("gone") is None
            assert h.get("gone", "dflt") == "dflt"
            assert "gone" not in h
            with pytest.raises(KeyError):
                h["gone"]
            assert len(h) == 1
            assert h.get_keys() == ["keep"]
            assert list(h) == ["keep"]
            assert list(h.keys()) == ["keep"]
            assert list(h.items()) == [("keep", "k")]
            assert list(h.values()) == ["k"]
            assert h == {"keep": "k"}
            assert h.ttl("gone") is None
            assert h.expire("gone", LONG) is False
            assert h.expire("gone", 0) is False
            with pytest.raises(KeyError):
                h.incr("gone", 1)
            with pytest.raises(KeyError):
                h.incr("gone", 1, LONG)
            assert h.pop("gone", None) is None
            assert h.verify() == []
        # Still gone after all of that.
        assert "gone" not in d


def test_delete_of_expired_key(d: SharedDict) -> None:
    expire_short(d, "gone")
    assert d.delete("gone") is False
    with pytest.raises(KeyError):
        del d["gone"]


def test_expired_key_set_again_is_fresh(d: SharedDict) -> None:
    expire_short(d, "k", "old")
    d["k"] = "new"
    assert d["k"] == "new"
    assert d.ttl("k") == 0
    assert len(d) == 1
    expire_short(d, "n", 5)
    d.set("n", 10)
    assert d.incr("n", 1) == 11


def test_many_expire_together(d: SharedDict) -> None:
    for i in range(200):
        d.set(f"t{i}", i, SHORT)
    for i in range(50):
        d[f"p{i}"] = i
    assert wait_until(lambda: len(d) == 50)
    assert sorted(d.get_keys()) == sorted(f"p{i}" for i in range(50))
    assert d.verify() == []


def test_flush_all_removes_ttl_keys(d: SharedDict) -> None:
    d.set("t", 1, LONG)
    d["p"] = 2
    d.flush_all()
    assert d.ttl("t") is None
    assert len(d) == 0


# ---------------------------------------------------------------- space


def _fill(
    d: SharedDict, prefix: str, value: bytes, exptime: float = 0, cap: int = 100_000
) -> int:
    """Set distinct keys until NoMemoryError; return how many fit."""
    for i in range(cap):
        try:
            d.set(f"{prefix}{i:06d}", value, exptime)
        except shmdict.NoMemoryError:
            return i
    raise AssertionError(f"{cap} items fit in {d.size} bytes: the dict never filled up")


def _fresh_capacity(name: str, size: int, value: bytes) -> int:
    with shmdict.new(name, size) as fresh:
        return _fill(fresh, "p", value)


@pytest.mark.parametrize("touch", [False, True], ids=["untouched", "read-after-expiry"])
@pytest.mark.parametrize("size", [shmdict.MIN_SIZE, MiB])
def test_expired_space_is_reused(
    name_factory: Callable[[], str],
    touch: bool,
    size: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Capacity is compared with a fresh dict's, key for key, which only
    # holds for one heap: keys spread over stripes differently.
    monkeypatch.delenv("SHMDICT_STRIPES", raising=False)
    value = b"v" * 1000
    n0 = _fresh_capacity(name_factory(), size, value)
    assert n0 > 10
    exptime = 0.3
    with shmdict.new(name_factory(), size) as d:
        n1 = _fill(d, "t", value, exptime, cap=10 * n0 + 100)
        last = time.monotonic()
        assert n1 > 0
        # Wait by the clock alone when untouched: reclaiming expired space
        # must not depend on someone reading the keys first.
        sleep_past(last + exptime + 0.05)
        if touch:
            assert wait_until(lambda: len(d) == 0)
        for i in range(n0):
            d.set(f"p{i:06d}", value)  # no NoMemoryError allowed
        assert len(d) == n0
        assert d.verify() == []


def test_expired_space_reused_by_overwrite_growth(name: str) -> None:
    """A key that grows into space freed by expiry elsewhere."""
    with shmdict.new(name, shmdict.MIN_SIZE) as d:
        d["grow"] = b"g"
        start = time.monotonic()
        n = _fill(d, "t", b"t" * 1000, exptime=0.3)
        last = time.monotonic()
        assert n > 10
        if last - start < 0.2:  # nothing can have expired yet
            with pytest.raises(shmdict.NoMemoryError):
                d["grow"] = b"G" * 20_000
            assert d["grow"] == b"g"
        sleep_past(last + 0.35)
        d["grow"] = b"G" * 20_000
        assert d["grow"] == b"G" * 20_000
        assert d.get_keys() == ["grow"]
        assert d.verify() == []


def test_items_while_keys_expire(d: SharedDict) -> None:
    """items()/values() never raise KeyError for a key that expires between
    being listed and being read."""
    end = time.monotonic() + 1.0
    rounds = 0
    while time.monotonic() < end:
        for i in range(100):
            d.set(f"e{i}", i, 0.001 + i * 0.00005)
        while len(d):
            snap = dict(d.items())
            vals = list(d.values())
            assert all(isinstance(v, int) for v in vals)
            assert all(snap[k] == int(k[1:]) for k in snap)
        rounds += 1
    assert rounds > 0


# ---------------------------------------------------------------- get_stale


def test_get_stale_live_and_missing(d: SharedDict) -> None:
    assert d.get_stale("a") is None
    d["a"] = 1
    assert d.get_stale("a") == (1, False)
    d.set("b", b"b" * 1000, LONG)
    assert d.get_stale("b") == (b"b" * 1000, False)
    r = d.get_stale("a")
    assert isinstance(r, tuple)
    assert type(r[0]) is int
    assert r[1] is False


@pytest.mark.shm_only(
    "an expired value is kept until its room is needed; Redis drops it"
)
def test_get_stale_expired_until_reclaimed(d: SharedDict) -> None:
    big = "\u00e9" * 2000
    d.set("a", big, SHORT)
    d.set("b", -0.0, SHORT)
    d.set("keep", 1)
    wait_expired(d, "a", "b")
    assert d.get("a") is None
    assert "a" not in d
    assert d.get_stale("a") == (big, True)
    r = d.get_stale("b")
    assert r is not None
    assert same_value(r[0], -0.0)
    assert r[1] is True
    # A write to the key reclaims it.
    assert d.delete("a") is False
    assert d.get_stale("a") is None
    # flush_expired reclaims the rest.
    assert d.flush_expired() == 1
    assert d.get_stale("b") is None
    assert d.get_stale("keep") == (1, False)
    assert d.verify() == []


@reuse_fixture
@given(v=values)
def test_get_stale_round_trip(d: SharedDict, v: Value) -> None:
    d["k"] = v
    r = d.get_stale("k")
    assert r is not None
    assert same_value(r[0], v)
    assert r[1] is False


# ---------------------------------------------------------------- flush_expired


@pytest.mark.shm_only("expired items wait for flush_expired; Redis frees them itself")
def test_flush_expired(d: SharedDict) -> None:
    assert d.flush_expired() == 0
    d.set_many({f"e{i}": i for i in range(20)}, SHORT)
    d.set_many({f"l{i}": i for i in range(5)})
    d.set("long", 1, LONG)
    wait_expired(d, *[f"e{i}" for i in range(20)])
    exp0 = d.stats()["expirations"]
    assert d.flush_expired() == 20
    assert d.flush_expired() == 0
    assert d.stats()["expirations"] - exp0 == 20
    st = d.stats()
    assert st["entries"] == 6
    assert st["expiring"] == 1
    assert sorted(d.get_keys()) == sorted([f"l{i}" for i in range(5)] + ["long"])
    assert all(d.get_stale(f"e{i}") is None for i in range(20))
    assert d.verify() == []


def test_flush_expired_never_exceeds_max_count(small: SharedDict) -> None:
    """flush_expired(max_count) frees *up to* max_count items. 300 keys in
    a 64 KiB dict (1024 buckets) are sure to share some buckets."""
    n = 300
    small.set_many({f"e{i}": i for i in range(n)}, SHORT)
    wait_expired(small, "e0", f"e{n - 1}")
    assert wait_until(lambda: len(small) == 0)
    results: list[int] = []
    while True:
        r = small.flush_expired(1)
        if r == 0:
            break
        results.append(r)
        assert len(results) <= n
    assert sum(results) == n
    assert max(results) == 1, f"flush_expired(1) freed {max(results)} items"
    mid: list[int] = []
    small.set_many({f"f{i}": i for i in range(n)}, SHORT)
    assert wait_until(lambda: len(small) == 0)
    while (r := small.flush_expired(7)) != 0:
        mid.append(r)
    assert sum(mid) == n
    assert max(mid) <= 7, f"flush_expired(7) freed {max(mid)} items"


@pytest.mark.shm_only("free_space: the server accounts for its own memory")
def test_flush_expired_gives_memory_back(d: SharedDict) -> None:
    cap = d.capacity()
    d.set_many({f"e{i}": b"x" * 1000 for i in range(50)}, SHORT)
    assert d.free_space() < cap - 50 * 1000
    wait_expired(d, "e0", "e49")
    assert d.flush_expired() == 50
    assert d.free_space() == cap


def test_flush_expired_bad_args(d: SharedDict) -> None:
    with pytest.raises(ValueError, match=">= 0"):
        d.flush_expired(-1)
    with pytest.raises(TypeError):
        d.flush_expired("1")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        d.flush_expired(True)

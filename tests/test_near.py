"""The near cache: a handle hands out a value it read before only while no
process has taken that key's stripe lock since. Every way a value can change
(a write through another handle or process, expiry, eviction, flush_all, a
crash repair) must show on the very next get."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
import time
from typing import Any

import pytest

import shmdict

from .helpers import MiB

SharedDict = shmdict.SharedDict


def _cached(d: SharedDict, key: str) -> bool:
    """Is key's value served from the near cache? (Two gets return the very
    same object only then: the core makes a new object on every read.) A
    key whose slot another key holds gets it on its second read, so read
    it twice first."""
    d.get(key)
    first = d.get(key)
    return d.get(key) is first


def test_repeated_get_is_served_from_cache(d: SharedDict) -> None:
    d["k"] = b"v" * 16
    assert d["k"] == b"v" * 16
    assert _cached(d, "k")
    d["s"] = "text"
    d["f"] = 1.5
    d["i"] = 10**15
    assert _cached(d, "s")
    assert _cached(d, "f")
    assert _cached(d, "i")
    # An equal key that is another object finds the same entry.
    other = "".join(["s"])
    assert d.get(other) is d.get("s")


def test_a_scan_does_not_push_out_a_kept_key(name: str) -> None:
    """Another key that lands in a held slot takes it only on its second
    read: a pass over many keys leaves the kept ones in place."""
    with shmdict.new(name, 16 * MiB) as d:
        for i in range(20_000):
            d[f"k{i}"] = i
        d["hot"] = "value"
        assert _cached(d, "hot")
        hot = d.get("hot")
        for i in range(20_000):  # each read once: many collide
            assert d[f"k{i}"] == i
        # After so many misses only one get in NEAR_SAMPLE (16) looks.
        assert any(d.get("hot") is hot for _ in range(16))


def test_huge_values_are_not_kept_expiring_ones_are(d: SharedDict) -> None:
    d["big"] = b"b" * 300
    d["huge"] = b"h" * (shmdict._core.NEAR_MAX_VALUE + 1)
    d.set("ttl", b"ttl", 100)  # (one-byte bytes are shared singletons)
    assert d["huge"] == b"h" * (shmdict._core.NEAR_MAX_VALUE + 1)
    assert not _cached(d, "huge")
    assert _cached(d, "big")
    assert _cached(d, "ttl")


def test_big_values_are_kept_within_the_budget(name: str) -> None:
    """Values over NEAR_SMALL_VALUE bytes are kept only while the objects
    held stay within NEAR_SLOT_BUDGET bytes per slot; small ones always."""
    core = shmdict._core
    slots = 64
    budget = slots * core.NEAR_SLOT_BUDGET
    table = core.NEAR_SLOT_BYTES * (slots + 1)  # (one to align it)
    size = core.NEAR_SMALL_VALUE * 4
    with shmdict.new(name, 4 * MiB, near_cache=slots) as d:
        for i in range(200):
            d[f"b{i}"] = bytes([i % 256]) * size
        assert _cached(d, "b0")  # a big value is kept while there is room
        held = 0
        for i in range(200):
            held += _cached(d, f"b{i}")
        # Some got in, and what is held stays within the budget.
        assert held > 0
        assert table < d.stats()["near_bytes"] <= table + budget
        full = d.stats()["near_bytes"]
        assert full > table + budget - size - 200  # it filled up to it
        # A small value still gets in.
        d["small"] = b"s" * 100
        assert _cached(d, "small")


class _Bytes(bytes):
    pass


def test_a_set_keeps_the_object_it_stored(d: SharedDict) -> None:
    """After a set of a key the cache holds, a get of the key gives back the
    very object stored, as a plain dict would, for the exact built-in
    types; other types come back as what the core stores them as, a new
    object each read (a subclass of bytes as bytes). A key the cache
    doesn't hold is not taken in by a set."""
    kept: list[bool | int | float | str | bytes | None] = [
        b"v" * 40,
        "t\u00e9xt",
        10**12,
        2.5,
        True,
        None,
        "x" * 200,
    ]
    for i, v in enumerate(kept):
        d.set(f"k{i}", v, 3600 if i % 2 else 0)
        got = d.get(f"k{i}")
        assert got is not v or v in (True, None)  # not held: read back
        assert _cached(d, f"k{i}")
        d.set(f"k{i}", v, 3600 if i % 2 else 0)
        assert d.get(f"k{i}") is v
    d["sub"] = b"x"
    assert _cached(d, "sub")
    sub = _Bytes(b"sub" * 10)
    d["sub"] = sub
    got = d.get("sub")
    assert got == sub
    assert got is not sub
    assert type(got) is bytes
    # Huge values are not kept by a set either.
    big = b"b" * (shmdict._core.NEAR_MAX_VALUE + 1)
    d["big"] = b"small"
    assert _cached(d, "big")
    d["big"] = big
    assert d.get("big") == big
    assert d.get("big") is not big


def test_a_set_through_another_handle_is_not_kept_here(d: SharedDict) -> None:
    with shmdict.get(d.name) as p:
        v = b"w" * 40
        p["k"] = b"first"
        assert _cached(p, "k")
        p["k"] = v
        assert p.get("k") is v
        got = d.get("k")
        assert got == v
        assert got is not v
        d["k"] = b"z" * 40  # this handle's set: p reads it again
        assert p.get("k") == b"z" * 40
        assert d.get("k") == b"z" * 40


def test_a_kept_set_expires(d: SharedDict) -> None:
    v = b"e" * 40
    d["k"] = b"first"
    assert _cached(d, "k")
    d.set("k", v, 0.05)  # within the clock's margin: read, not kept
    assert d.get("k") == v
    time.sleep(0.1)
    assert d.get("k") is None
    d["k"] = b"again"
    assert _cached(d, "k")
    d.set("k", v, 0.3)  # kept, while the coarse clock says surely so
    assert d.get("k") is v
    time.sleep(0.4)
    assert d.get("k") is None


def test_write_through_another_handle_shows(d: SharedDict) -> None:
    d["k"] = "old"
    assert _cached(d, "k")
    with shmdict.get(d.name) as p:
        p["k"] = "new"
        assert d["k"] == "new"
        assert _cached(d, "k")
        p.delete("k")
        assert d.get("k") is None
        assert "k" not in d
        p["k"] = 7
        assert d.get("k") == 7
        p.incr("k", 1)
        assert d.get("k") == 8
        p.expire("k", 0.05)
        assert d.get("k") == 8
        time.sleep(0.1)
        assert d.get("k") is None


def test_write_of_another_key_in_the_stripe_refreshes(d: SharedDict) -> None:
    d["a"] = 1
    assert _cached(d, "a")
    d["b"] = 2  # same stripe (a small dict has one): a is read again
    first = d.get("a")
    assert first == 1
    assert d.get("a") is first  # and kept again


def test_flush_all_through_another_handle(d: SharedDict) -> None:
    for i in range(50):
        d[f"k{i}"] = i
        assert _cached(d, f"k{i}")
    with shmdict.get(d.name) as p:
        p.flush_all()
    assert all(d.get(f"k{i}") is None for i in range(50))


def test_striped_dict_other_stripes_stay_cached(name: str) -> None:
    with shmdict.new(name, 64 * MiB, stripes=4) as d:
        for i in range(200):
            d[f"k{i}"] = i
        for i in range(200):
            d.get(f"k{i}")
        with shmdict.get(name) as p:
            p["k0"] = -1
            assert d["k0"] == -1
            assert all(d[f"k{i}"] == i for i in range(1, 200))
            p.flush_all()
            assert all(d.get(f"k{i}") is None for i in range(200))


def _writer(name: str, n: int) -> None:  # pragma: no cover - child
    with shmdict.get(name) as p:
        for i in range(n):
            p["k"] = i


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_reads_follow_a_writer_process(d: SharedDict, method: str) -> None:
    """A reader polling one key sees every value it sees in order, and the
    last one once the writer is done."""
    d["k"] = -1
    n = 20_000
    ctx: Any = mp.get_context(method)
    proc = ctx.Process(target=_writer, args=(d.name, n))
    proc.start()
    seen = -1
    while proc.is_alive():
        v = d["k"]
        assert isinstance(v, int)
        assert v >= seen
        seen = v
    proc.join()
    assert proc.exitcode == 0
    assert d["k"] == n - 1


def test_hits_are_counted(d: SharedDict) -> None:
    d["k"] = 1
    before = d.stats()["hits"]
    for _ in range(100):
        d.get("k")
    assert d.stats()["hits"] - before == 100


def test_eviction_sees_cached_reads(name: str) -> None:
    """A key read only from the near cache still counts as recently used."""
    with shmdict.new(name, shmdict.MIN_SIZE, evict=True) as d:
        d["hot"] = b"h" * 100
        for i in range(400):
            d.get("hot")
            d[f"cold{i}"] = b"c" * 100
        assert d["hot"] == b"h" * 100
        assert d.stats()["evictions"] > 0


@pytest.mark.crash_points
def test_crash_repair_invalidates(d: SharedDict) -> None:
    """A process killed inside a write: the repair moves the counter, so a
    kept value is read again."""
    d["k"] = "before"
    assert _cached(d, "k")
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            shmdict._core._crash_after(3)
            # Longer than "before": a logged write (a change of one word
            # would be stored alone, its third crash point past the store).
            d["k"] = "after, and longer"
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status)
    assert os.WTERMSIG(status) == signal.SIGKILL
    assert d["k"] == "before"
    d["k"] = "later"
    assert d["k"] == "later"


def test_close_drops_the_cache(name: str) -> None:
    """close() lets go of the kept objects at once, not only when the handle
    is freed: the cache's own references to the key and value go away."""
    d = shmdict.new(name, shmdict.MIN_SIZE)
    key = "".join(["k", "ey"])  # a str object of this test's own
    d[key] = b"v" * 16
    assert _cached(d, key)
    value = d.get(key)
    assert value == b"v" * 16
    # The cache holds one reference to each.
    key_refs = sys.getrefcount(key)
    value_refs = sys.getrefcount(value)
    d.close()
    assert sys.getrefcount(key) == key_refs - 1
    assert sys.getrefcount(value) == value_refs - 1
    with pytest.raises(ValueError, match="closed"):
        d.get(key)


# ---- per-key checks: what a write elsewhere keeps, what any change drops --


def _near(d: SharedDict) -> dict[str, int]:
    return {k: v for k, v in d.stats().items() if k.startswith("near_")}


def _in_child(fn: Any, *args: Any) -> None:
    """Run fn(*args) in a forked process (another pid, another handle)."""
    proc: Any = mp.get_context("fork").Process(target=fn, args=args)
    proc.start()
    proc.join()
    assert proc.exitcode == 0


def _child_set(name: str, key: str, value: Any, ttl: float = 0) -> None:
    with shmdict.get(name) as p:  # pragma: no cover - child
        p.set(key, value, ttl)


def _child_delete(name: str, key: str) -> None:
    with shmdict.get(name) as p:  # pragma: no cover - child
        p.delete(key)


def _child_incr(name: str, key: str) -> None:
    with shmdict.get(name) as p:  # pragma: no cover - child
        p.incr(key, 1)


def test_a_write_of_another_key_keeps_the_entry(name: str) -> None:
    """Another process writes other keys of the same stripe (the dict has
    one, whatever SHMDICT_STRIPES says): the kept value is still handed
    out, as a near-cache hit."""
    with shmdict.new(name, MiB, stripes=1) as d:
        assert d.stats()["stripes"] == 1
        _another_key_keeps_the_entry(d)


def _another_key_keeps_the_entry(d: SharedDict) -> None:
    d["a"] = "value of a"
    d["ctr"] = 0
    assert _cached(d, "a")
    kept = d.get("a")
    for _ in range(3):
        _in_child(_child_incr, d.name, "ctr")
        before = _near(d)["near_hits"]
        assert d.get("a") is kept
        assert _near(d)["near_hits"] == before + 1
    _in_child(_child_set, d.name, "b", b"x" * 40)
    before = _near(d)["near_hits"]
    assert d.get("a") is kept
    assert _near(d)["near_hits"] == before + 1
    # The same value written again is the same value: still a hit.
    _in_child(_child_set, d.name, "a", "value of a")
    assert d.get("a") is kept
    assert _near(d)["near_hits"] == before + 2


def test_a_write_of_the_key_by_another_process_shows_at_once(
    d: SharedDict,
) -> None:
    d["a"] = "old"
    assert _cached(d, "a")
    _in_child(_child_set, d.name, "a", "new")
    assert d.get("a") == "new"
    assert _cached(d, "a")
    _in_child(_child_set, d.name, "a", "nex")  # same length, other bytes
    assert d.get("a") == "nex"
    _in_child(_child_delete, d.name, "a")
    assert d.get("a") is None
    assert "a" not in d
    _in_child(_child_set, d.name, "a", 5)
    assert d.get("a") == 5
    assert _cached(d, "a")
    _in_child(_child_incr, d.name, "a")
    assert d.get("a") == 6


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (0, 0.0),  # int 0 and float 0.0: the same eight zero bytes
        (b"12", "12"),  # bytes and str: the same bytes
        ("12", b"12"),
        (b"ab", shmdict.Pickled(b"ab")),  # plain and tagged bytes
        ("caf\u00e9", "caf\u00e9".encode()),  # UTF-8 str and its bytes
        (None, False),
        (True, 1),
    ],
)
def test_same_bytes_of_another_type_show(
    d: SharedDict, first: Any, second: Any
) -> None:
    d["k"] = first
    assert _cached(d, "k") or first is None or first is True
    _in_child(_child_set, d.name, "k", second)
    got = d.get("k")
    assert type(got) is type(second)
    assert got == second
    _in_child(_child_set, d.name, "k", first)
    got = d.get("k")
    assert type(got) is type(first)
    assert got == first


def test_an_expiring_value_is_kept_until_it_expires_never_after(
    d: SharedDict,
) -> None:
    """Cached with a TTL: handed out from the cache while it is far from its
    expiry, and never once ttl() has said it expired."""
    for round_ in range(3):
        d.set("k", f"v{round_}", 0.4)
        d.set("other", 1, 0.4)
        # (a fresh handle each round, with an empty cache)
        with shmdict.get(d.name) as h:
            _expires_exactly(h)


def _expires_exactly(h: SharedDict) -> None:
    assert _cached(h, "k")
    kept = h.get("k")
    hits = _near(h)["near_hits"]
    assert h.get("k") is kept
    assert _near(h)["near_hits"] == hits + 1
    gone = False
    deadline = time.monotonic() + 5
    while not gone and time.monotonic() < deadline:
        left = h.ttl("k")  # None once expired by the precise clock
        got = h.get("k")
        gone = left is None  # then no get may return it
        # (close to its expiry it is read, not taken from the cache)
        assert got in ((None,) if gone else (None, kept))
    assert gone
    assert all(h.get("k") is None for _ in range(100))


def test_expire_of_a_kept_value_by_another_process(d: SharedDict) -> None:
    d["k"] = "v"
    assert _cached(d, "k")
    _in_child(_child_set, d.name, "k", "v", 0.3)  # the same value, a TTL
    assert d.get("k") == "v"
    time.sleep(0.35)
    assert d.get("k") is None
    assert d.ttl("k") is None


def test_eviction_of_a_kept_value(name: str) -> None:
    with shmdict.new(name, shmdict.MIN_SIZE, evict=True) as d:
        d["first"] = b"f" * 100
        assert _cached(d, "first")
        with shmdict.get(name) as p:
            i = 0
            while "first" in p:  # without reading it, so it is evicted
                p[f"fill{i}"] = b"x" * 100
                i += 1
        assert d.get("first") is None


def test_near_cache_off(name: str) -> None:
    with shmdict.new(name, shmdict.MIN_SIZE, near_cache=0) as d:
        d["k"] = "value"
        assert not _cached(d, "k")
        assert d.get("k") == "value"
        assert _near(d) == {
            "near_hits": 0,
            "near_misses": 0,
            "near_slots": 0,
            "near_bytes": 0,
        }
        hits = d.stats()["hits"]
        d.get("k")
        assert d.stats()["hits"] == hits + 1  # still counted by the dict
    with shmdict.new(name, shmdict.MIN_SIZE) as d, shmdict.get(name, near_cache=0) as p:
        d["k"] = "value"
        assert not _cached(p, "k")
        assert _cached(d, "k")


def test_a_cold_start_does_not_skip(name: str) -> None:
    """First reads into empty slots are misses that fill the cache: they
    don't make it skip."""
    with shmdict.new(name, 16 * MiB) as w, shmdict.get(name) as d:
        for i in range(3000):  # (another handle: d keeps nothing it set)
            w[f"k{i}"] = i
        for i in range(3000):
            d.get(f"k{i}")
        assert _near(d)["near_hits"] == 0
        for i in range(3000):
            d.get(f"k{i}")
        assert _near(d)["near_hits"] > 2500


def test_a_cache_that_misses_looks_less_often(name: str) -> None:
    """Once a quarter of the gets of a window (1024 that looked) find their
    slot held by another key, only one get in 16 looks; once fewer of
    those do, every get looks again."""
    with (
        shmdict.new(name, 16 * MiB) as w,
        shmdict.get(name, near_cache=1024) as d,
    ):
        for i in range(5000):
            w[f"k{i}"] = i
        w["hot"] = "v"
        for i in range(5000):  # each once: the table is full, so it skips
            d.get(f"k{i}")
        assert _near(d)["near_hits"] == 0
        for _ in range(160):  # 10 of these look: at most 9 find it
            d.get("hot")
        hits = _near(d)["near_hits"]
        assert hits <= 9
        for _ in range(3000):  # 1024 gets (64 looks) judge a window
            d.get("hot")
        assert _near(d)["near_hits"] - hits >= 900  # > 3000 / 16


def test_near_stats(name: str) -> None:
    with shmdict.new(name, shmdict.MIN_SIZE, near_cache=1000) as d:
        st = _near(d)
        assert st == {
            "near_hits": 0,
            "near_misses": 0,
            "near_slots": 1024,  # rounded up to a power of two
            "near_bytes": 0,  # no table until the first value is kept
        }
        d["k"] = "v" * 100
        for _ in range(10):
            d.get("k")
        d.get("missing")
        st = _near(d)
        assert st["near_hits"] == 9
        assert st["near_misses"] == 2
        table = 1025 * shmdict._core.NEAR_SLOT_BYTES  # (one to align it)
        assert table < st["near_bytes"] < table + 1000
        d.close()
        assert d.closed
    assert shmdict._core.DEFAULT_NEAR_CACHE == 32768
    assert shmdict._core.NEAR_SLOT_BYTES == 64
    with shmdict.new(name, shmdict.MIN_SIZE) as d:
        assert _near(d)["near_slots"] == shmdict._core.DEFAULT_NEAR_CACHE
        for bad in (-1, (1 << 22) + 1):
            with pytest.raises(ValueError, match="near_cache"):
                shmdict.get(name, near_cache=bad)


def test_get_many_uses_and_checks_kept_values(d: SharedDict) -> None:
    for i in range(20):
        d[f"k{i}"] = i
        assert _cached(d, f"k{i}")
    d["other"] = 1  # the counter moves: every kept value is checked
    hits = _near(d)["near_hits"]
    assert d.get_many([f"k{i}" for i in range(20)]) == {f"k{i}": i for i in range(20)}
    assert _near(d)["near_hits"] == hits + 20
    _in_child(_child_set, d.name, "k3", "changed")
    got = d.get_many([f"k{i}" for i in range(20)])
    assert got["k3"] == "changed"
    assert got["k4"] == 4

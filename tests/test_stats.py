"""Capacity, free_space() and stats(): the counters and what they count.

No timing is asserted.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

import shmdict

from .fileformat import FileLayout, entry_block
from .helpers import MiB, fill_shrinking, wait_expired

SharedDict = shmdict.SharedDict

SHORT = 0.05  # an exptime that has surely passed once we have polled
LONG = 1000.0  # an exptime that never passes during a test


# ---------------------------------------------------------------- capacity


def test_capacity_and_free_space(d: SharedDict) -> None:
    cap = d.capacity()
    assert type(cap) is int
    assert type(d.free_space()) is int
    assert 0 < cap < d.size
    assert d.free_space() == cap
    d["a"] = b"x" * 1000
    f1 = d.free_space()
    assert f1 <= cap - 1000
    d["b"] = b"x" * 1000
    f2 = d.free_space()
    assert f2 <= f1 - 1000
    del d["a"]  # "a" and "b" take blocks of the same size
    assert d.free_space() == f1
    d.flush_all()
    assert d.free_space() == cap
    assert d.capacity() == cap
    st = d.stats()
    assert st["capacity"] == cap
    assert st["bytes_free"] == cap
    assert st["bytes_used"] == 0


def test_free_space_comes_back_after_delete(d: SharedDict) -> None:
    cap = d.capacity()
    for i in range(100):
        d[f"k{i}"] = "v" * (i * 10)
    assert d.free_space() < cap
    for i in range(100):
        del d[f"k{i}"]
    assert d.free_space() == cap
    assert d.verify() == []


def test_capacity_scales_with_size(name_factory: Callable[[], str]) -> None:
    small = shmdict.new(name_factory(), shmdict.MIN_SIZE)
    big = shmdict.new(name_factory(), 4 * MiB)
    try:
        assert small.capacity() < big.capacity()
        assert big.capacity() > 3 * MiB
        with shmdict.get(big.name) as peer:
            assert peer.capacity() == big.capacity()
            assert peer.free_space() == big.free_space()
    finally:
        small.close()
        big.close()


def test_small_dict_fills_to_about_its_free_space(small: SharedDict) -> None:
    free = small.free_space()
    fill_shrinking(small)
    # Each entry costs 32 bytes plus key and value: most of the free space
    # is used by values once the dict is full.
    assert small.free_space() < 64
    assert small.stats()["bytes_used"] > free * 0.9
    with pytest.raises(shmdict.NoMemoryError):
        small["one more"] = b"x" * 100


# ---------------------------------------------------------------- stats


STAT_KEYS = {
    "entries",
    "expiring",
    "bytes_used",
    "bytes_free",
    "capacity",
    "hits",
    "misses",
    "sets",
    "evictions",
    "expirations",
    "lock_waits",
    "recoveries",
    "pending_free",
    "buckets",
    "evict",
    "reserved",
    "bytes_reserved",
    "fs_size",
    "fs_free",
}


def test_stats_keys_and_types(d: SharedDict) -> None:
    st = d.stats()
    assert set(st) >= STAT_KEYS
    for k, v in st.items():
        if k in ("evict", "reserved"):
            assert v is False, k
        else:
            assert type(v) is int, k
            assert v >= 0, k
    assert st["entries"] == 0
    assert st["bytes_used"] == 0
    # What the filesystem backs: the fixed pages, far below the size.
    assert 0 < st["bytes_reserved"] < d.size
    assert 0 < st["fs_free"] <= st["fs_size"]
    assert st["buckets"] > 0
    assert st["bytes_free"] + st["bytes_used"] == st["capacity"]


def test_stats_buckets_and_bytes_follow_the_layout(d: SharedDict) -> None:
    """buckets is the index of every stripe as the file holds it (fixed at
    new(): entries never change it); bytes_used is the sum of the blocks
    the entries take, by the block sizes of layout.h."""
    fl = FileLayout(d.path)
    assert d.stats()["buckets"] == fl.nbuckets * fl.nparts
    assert d.stats()["stripes"] == fl.nparts
    items = {
        "k": b"v" * 100,
        "key2": b"",
        "ninechars": b"x" * 7,  # the key's padding to 8 bytes takes a unit more
        "a-longer-key-of-24-bytes": b"x" * 4000,
    }
    d.set_many(items)
    want = sum(entry_block(len(k.encode()), len(v)) for k, v in items.items())
    st = d.stats()
    assert st["bytes_used"] == want
    assert st["buckets"] == fl.nbuckets * fl.nparts
    assert st["entries"] == len(items)
    d.delete("k")
    assert d.stats()["bytes_used"] == want - entry_block(1, 100)


def test_stats_entries_and_expiring(d: SharedDict) -> None:
    d.set_many({"a": 1, "b": 2})
    d.set("c", 3, LONG)
    d.set("d", 4, LONG)
    st = d.stats()
    assert st["entries"] == 4
    assert st["expiring"] == 2
    d.expire("a", LONG)
    d.expire("c", 0)
    st = d.stats()
    assert st["entries"] == 4
    assert st["expiring"] == 2
    d.pop("d")
    assert d.stats()["entries"] == 3
    assert d.stats()["expiring"] == 1
    assert d.stats()["bytes_used"] > 0
    assert d.stats()["bytes_free"] == d.free_space()


def test_stats_hits_and_misses_exact(d: SharedDict) -> None:
    d["a"] = 1
    d["big"] = b"x" * 5000
    st0 = d.stats()
    for _ in range(7):
        assert d.get("a") == 1
    for _ in range(3):
        assert d.get("nope") is None
    assert d.get("big") == b"x" * 5000
    assert d.get("nope", 5) == 5
    st = d.stats()
    assert st["hits"] - st0["hits"] == 8
    assert st["misses"] - st0["misses"] == 4
    # Visible from any handle: the counters live in the file.
    peer = shmdict.get(d.name)
    try:
        assert peer.get("a") == 1
        assert peer.stats()["hits"] - st0["hits"] == 9
    finally:
        peer.close()


def test_stats_hits_and_misses_under_threads(d: SharedDict) -> None:
    """Threads of one process may lose a count now and then (the counters
    take no locked instruction), but never invent one."""
    d["a"] = 1
    st0 = d.stats()
    n_threads, n = 4, 5000

    def work() -> None:
        for _ in range(n):
            assert d.get("a") == 1
            assert d.get("nope") is None

    threads = [threading.Thread(target=work) for _ in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    st = d.stats()
    hits = st["hits"] - st0["hits"]
    misses = st["misses"] - st0["misses"]
    assert n_threads * n // 2 <= hits <= n_threads * n
    assert n_threads * n // 2 <= misses <= n_threads * n


def test_stats_getitem_counts_one_lookup(d: SharedDict) -> None:
    """d[key] is one lookup, hit or miss, like get()."""
    d["a"] = 1
    st0 = d.stats()
    assert d["a"] == 1
    st1 = d.stats()
    assert (st1["hits"] - st0["hits"], st1["misses"] - st0["misses"]) == (1, 0)
    with pytest.raises(KeyError):
        d["nope"]
    st2 = d.stats()
    assert (st2["hits"] - st1["hits"], st2["misses"] - st1["misses"]) == (0, 1)


def test_stats_sets_and_expirations(d: SharedDict) -> None:
    st0 = d.stats()
    d["a"] = 1
    d.set("b", 2)
    d.set("a", "x" * 1000)  # not in place
    assert d.add("a", 3) is False
    assert d.stats()["sets"] - st0["sets"] >= 3
    d.set("e", 1, SHORT)
    wait_expired(d, "e")
    exp0 = d.stats()["expirations"]
    d.delete("e")  # a write that touches it reclaims it
    assert d.stats()["expirations"] - exp0 == 1
    assert d.stats()["evictions"] == 0
    assert d.stats()["recoveries"] == 0

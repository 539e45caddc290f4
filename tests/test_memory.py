"""Capacity: NoMemoryError on a full dict, overwrites that fit, reuse of
deleted space, no capacity lost to churn, and very large dicts."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable

import pytest

import shmdict

from .helpers import MiB
from .helpers import fill_until_full as fill
from .strategies import canon_map

SharedDict = shmdict.SharedDict
GiB = 1 << 30
SIZES = [shmdict.MIN_SIZE, MiB]


@pytest.fixture
def one_heap(monkeypatch: pytest.MonkeyPatch) -> None:
    """The default layout (one stripe for these sizes) even in the suite's
    striped pass: the test measures how one heap fills and refills (a
    "full" striped dict is only full in the stripe a key hashes to, and a
    value must fit in one stripe). The other tests here run striped then."""
    monkeypatch.delenv("SHMDICT_STRIPES", raising=False)


def largest_value(d: SharedDict) -> int:
    """The longest bytes value that fits in d now (d is left as it was)."""
    lo, hi = 0, d.size
    while lo < hi:
        mid = (lo + hi + 1) // 2
        try:
            d.set("\x00probe", b"x" * mid)
        except shmdict.NoMemoryError:
            hi = mid - 1
        else:
            d.delete("\x00probe")
            lo = mid
    return lo


def snapshot(d: SharedDict) -> dict[str, tuple[str, str]]:
    return canon_map(dict(d.items()))


@pytest.mark.usefixtures("one_heap")
@pytest.mark.parametrize("size", SIZES)
def test_full_dict_raises_and_keeps_old_values(name: str, size: int) -> None:
    with shmdict.new(name, size) as d:
        n = fill(d, "k", b"v" * 1000)
        assert n > 10
        assert len(d) == n
        before = snapshot(d)
        # Another item of the same shape does not fit either.
        with pytest.raises(shmdict.NoMemoryError):
            d.set("k9999999", b"w" * 1000)
        assert "k9999999" not in d
        # Growing an existing key past what is free fails and keeps the old value.
        with pytest.raises(shmdict.NoMemoryError):
            d.set("k0000000", b"x" * (size // 2))
        with pytest.raises(shmdict.NoMemoryError):
            d["k0000001"] = "y" * (size // 2)
        with pytest.raises(shmdict.NoMemoryError):
            d.set("k0000002", b"z" * (2 * size), 100)
        assert d["k0000000"] == b"v" * 1000
        assert d.ttl("k0000002") == 0
        assert snapshot(d) == before
        assert d.verify() == []
        with shmdict.get(name) as p:
            assert snapshot(p) == before


@pytest.mark.parametrize("size", SIZES)
def test_value_larger_than_dict(name: str, size: int) -> None:
    with shmdict.new(name, size) as d:
        d["a"] = 1
        with pytest.raises(shmdict.NoMemoryError):
            d["big"] = b"x" * size
        with pytest.raises(shmdict.NoMemoryError):
            d["big"] = "x" * (size + 1)
        with pytest.raises(shmdict.NoMemoryError):
            d["k" * min(size + 10, shmdict.MAX_KEY_BYTES)] = 1
        assert d == {"a": 1}
        assert d.verify() == []


@pytest.mark.usefixtures("one_heap")
@pytest.mark.parametrize("size", SIZES)
def test_big_single_value_fits(name: str, size: int) -> None:
    """Most of an empty dict is usable by one value (the rest is header,
    locks and index): at least a quarter of a 64 KiB dict, and most of a
    1 MiB one."""
    with shmdict.new(name, size) as d:
        big = largest_value(d)
        assert big >= (size // 4 if size < MiB else size * 3 // 4), big
        d["big"] = b"b" * big
        assert d["big"] == b"b" * big
        with pytest.raises(shmdict.NoMemoryError):
            d["big2"] = b"c" * big
        assert d.get_keys() == ["big"]
        assert d.verify() == []


@pytest.mark.parametrize("size", SIZES)
def test_overwrite_that_fits_in_full_dict(name: str, size: int) -> None:
    with shmdict.new(name, size) as d:
        n = fill(d, "k", b"v" * 1000)
        keys = sorted(d.get_keys())
        # Same size: fits once the old value is freed.
        for i, k in enumerate(keys):
            d[k] = bytes([i % 256]) * 1000
        for i, k in enumerate(keys):
            assert d[k] == bytes([i % 256]) * 1000
        # Smaller, of another type, then back to the full size.
        d[keys[0]] = 7
        d[keys[1]] = "s" * 10
        d[keys[0]] = b"a" * 1000
        d[keys[1]] = "b" * 1000
        assert d[keys[0]] == b"a" * 1000
        assert d[keys[1]] == "b" * 1000
        # With a TTL, too.
        d.set(keys[2], b"t" * 1000, 1000)
        assert d[keys[2]] == b"t" * 1000
        assert len(d) == n
        assert d.verify() == []


BIG = 600_000  # two of them don't fit in a 1 MiB dict
OTHERS: dict[str, shmdict.Value] = {"one": 1, "blob": b"b" * 20_000, "s": "x"}


def big_value(kind: str, fill: str, n: int = BIG) -> str | bytes:
    return fill * n if kind == "str" else fill.encode() * n


def overwrite(
    d: SharedDict, how: str, old: shmdict.Value, new: shmdict.Value, exptime: float
) -> object:
    """Overwrite key "k" (holding old) with new, the way `how` says; return
    what the call returned."""
    if how == "set":
        return d.set("k", new, exptime)
    if how == "setitem":
        assert exptime == 0
        d["k"] = new
        return True
    if how == "replace":
        return d.replace("k", new, exptime)
    if how == "safe_set":
        return d.safe_set("k", new, exptime)
    if how == "set_forcible":
        return d.set_forcible("k", new, exptime)
    if how == "set_many":
        d.set_many({"many1": 5, "k": new, "many2": "m"}, exptime)
        return True
    assert how == "cas"
    return d.cas("k", old, new, exptime if exptime else None)


OVERWRITES = [
    "set",
    "setitem",
    "replace",
    "safe_set",
    "set_forcible",
    "set_many",
    "cas",
]


@pytest.mark.usefixtures("one_heap")
@pytest.mark.parametrize(
    ("how", "exptime"),
    [(h, e) for h in OVERWRITES for e in (0, 1000.0) if not (h == "setitem" and e)],
)
@pytest.mark.parametrize("kind", ["str", "bytes"])
@pytest.mark.parametrize("evict", [False, True])
def test_big_overwrite_fits_in_old_place(
    name: str, evict: bool, kind: str, exptime: float, how: str
) -> None:
    """Overwriting succeeds whenever the new value fits once the old one is
    freed, at any size: a 600 KB value over a 600 KB one in a 1 MiB dict,
    where no second copy fits. Dropping the key's own old value is not an
    eviction: safe_set does it too, and no other key goes."""
    with shmdict.new(name, MiB, evict=evict) as d:
        old = big_value(kind, "o")
        d.set("k", old, exptime)
        d.update(OTHERS)
        assert d.free_space() < BIG  # no room beside the old value
        new = big_value(kind, "n", BIG - 8)
        res = overwrite(d, how, old, new, exptime)
        assert res == (0 if how == "set_forcible" else True)
        assert d.verify() == []
        got = d["k"]
        assert type(got) is type(new)
        assert got == new
        ttl = d.ttl("k")
        assert ttl is not None
        assert (0 < ttl <= exptime) if exptime else (ttl == 0)
        for k, v in OTHERS.items():
            assert d[k] == v
        if how == "set_many":
            assert d["many1"] == 5
            assert d["many2"] == "m"
        s = d.stats()
        assert s["evictions"] == 0
        assert s["entries"] == len(OTHERS) + 1 + (2 if how == "set_many" else 0)
        # And back to the old size, then a value of the other type.
        d["k"] = old
        assert d["k"] == old
        d["k"] = big_value("bytes" if kind == "str" else "str", "t")
        assert d.verify() == []


@pytest.mark.usefixtures("one_heap")
@pytest.mark.parametrize(
    ("evict", "how"),
    # An evicting dict would evict other keys to make room: there only
    # safe_set, which never does, must fail.
    [(False, h) for h in ("set", "replace", "safe_set", "set_many", "cas")]
    + [(True, "safe_set")],
)
def test_big_overwrite_that_does_not_fit_keeps_old(
    name: str, evict: bool, how: str
) -> None:
    """A new value that doesn't fit even once the old one is freed raises
    NoMemoryError and changes nothing."""
    with shmdict.new(name, MiB, evict=evict) as d:
        old = big_value("bytes", "o")
        d.set("k", old, 1000)
        d.update(OTHERS)
        d.update({f"fill{i}": b"f" * 50_000 for i in range(6)})
        before = snapshot(d)
        # It would fit in an empty dict, but not in the old value's place.
        new = big_value("bytes", "n", BIG + d.free_space() + 1024)
        assert len(new) < d.capacity() - 1024
        with pytest.raises(shmdict.NoMemoryError):
            overwrite(d, how, old, new, 0)
        # (set_many may have stored the items before "k": see e.stored.)
        after = {k: v for k, v in snapshot(d).items() if not k.startswith("many")}
        assert after == before
        assert d["k"] == old
        ttl = d.ttl("k")
        assert ttl is not None
        assert 0 < ttl <= 1000
        assert d.stats()["evictions"] == 0
        assert d.verify() == []


@pytest.mark.usefixtures("one_heap")
def test_big_overwrite_reclaims_expired_first(name: str) -> None:
    """A big value is put in the old one's place (which a crash in between
    can leave absent) only once nothing else can make room: expired entries
    are swept first, and when that makes room beside the old value, the
    overwrite is one ordinary, crash-atomic step."""
    with shmdict.new(name, MiB) as d:
        d["k"] = b"o" * 300_000
        d.set("exp", b"e" * 400_000, 0.001)
        d["other"] = 1
        time.sleep(0.01)
        assert d.free_space() < 300_000
        d["k"] = b"n" * 300_000
        assert d["k"] == b"n" * 300_000
        s = d.stats()
        assert s["expirations"] == 1
        assert s["entries"] == 2
        assert d.verify() == []


@pytest.mark.usefixtures("one_heap")
@pytest.mark.parametrize("size", SIZES)
def test_deleted_space_is_reused(name: str, size: int) -> None:
    with shmdict.new(name, size) as d:
        n = fill(d, "k", b"v" * 1000)
        for round_ in range(20):
            victim = f"k{(round_ * 7) % n:07d}"
            d.delete(victim)
            d.set(f"n{round_:07d}", b"n" * 1000)  # same shape as the deleted one
            assert len(d) == n
            with pytest.raises(shmdict.NoMemoryError):
                d.set("extra00", b"e" * 1000)
        assert d.verify() == []


@pytest.mark.parametrize("size", SIZES)
def test_fill_delete_all_fill_again(name: str, size: int) -> None:
    with shmdict.new(name, size) as d:
        value = b"v" * 500
        n0 = fill(d, "k", value)
        for _ in range(3):
            for k in d.get_keys():
                del d[k]
            assert len(d) == 0
            assert fill(d, "k", value) == n0
        assert d.verify() == []


@pytest.mark.parametrize("size", SIZES)
def test_flush_all_gives_all_capacity_back(name: str, size: int) -> None:
    with shmdict.new(name, size) as d:
        big = largest_value(d)
        n0 = fill(d, "k", b"v" * 300)
        for _ in range(3):
            d.flush_all()
            assert len(d) == 0
            assert d.verify() == []
            assert fill(d, "k", b"v" * 300) == n0
        d.flush_all()
        assert largest_value(d) == big
        assert d.verify() == []


@pytest.mark.parametrize("size", SIZES)
def test_small_items_freed_make_room_for_a_big_one(name: str, size: int) -> None:
    """Space freed by many small deletes coalesces into one big value."""
    with shmdict.new(name, size) as d:
        big = largest_value(d)
        fill(d, "s", b"s" * 40)
        with pytest.raises(shmdict.NoMemoryError):
            d["big"] = b"B" * big
        for k in d.get_keys():
            del d[k]
        assert largest_value(d) == big
        d["big"] = b"B" * big
        assert d["big"] == b"B" * big
        assert d.verify() == []


def test_deleted_small_items_count_as_free(name: str) -> None:
    """Small blocks kept whole for reuse (quick lists) are free space: the
    figures users see come back to where they were."""
    with shmdict.new(name, MiB) as d:
        free0 = d.free_space()
        for i in range(1000):
            d[f"k{i}"] = i if i % 2 else f"v{i}" * (i % 50)
        assert d.free_space() < free0
        for i in range(1000):
            del d[f"k{i}"]
        assert d.free_space() == free0
        assert d.stats()["bytes_used"] == 0
        assert d.verify() == []


@pytest.mark.parametrize("size", SIZES)
def test_small_deletes_leave_no_holes_for_bigger_entries(name: str, size: int) -> None:
    """A dict emptied of small entries holds as many bigger ones as a fresh
    one: the small blocks kept for reuse are merged back before a bigger
    block is taken, instead of staying behind as holes between them."""
    with shmdict.new(name, size) as d:
        n0 = fill(d, "b", b"B" * 1024)
        d.flush_all()
        rng = random.Random(7)
        for i in range(100_000):
            try:
                d[f"s{i}"] = b"s" * rng.randrange(1, 200)
            except shmdict.NoMemoryError:
                break
        for k in d.get_keys():
            del d[k]
        assert fill(d, "b", b"B" * 1024) == n0
        assert d.verify() == []


def test_tiny_items_capacity_stable(name: str) -> None:
    with shmdict.new(name, shmdict.MIN_SIZE) as d:
        n0 = fill(d, "i", 1)
        assert n0 > 100
        d.flush_all()
        assert fill(d, "i", 1) == n0
        assert d.verify() == []


def _random_value(rng: random.Random, max_len: int) -> object:
    n = int(rng.paretovariate(1.2) * 20) % max_len
    kind = rng.randrange(5)
    if kind == 0:
        return rng.randrange(-(2**63), 2**63)
    if kind == 1:
        return rng.random()
    if kind == 2:
        return "\u20ac" * (n // 3)
    return rng.randbytes(n)


@pytest.mark.usefixtures("one_heap")
@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("size", SIZES)
def test_churn_never_loses_capacity(
    name_factory: Callable[[], str], seed: int, size: int
) -> None:
    rng = random.Random(seed)
    probe = b"p" * 200
    with shmdict.new(name_factory(), size) as fresh:
        big0 = largest_value(fresh)
        n0 = fill(fresh, "p", probe)

    with shmdict.new(name_factory(), size) as d:
        model: dict[str, object] = {}
        max_len = size // 8
        nomem = 0
        for step in range(4000):
            op = rng.random()
            key = "k" * rng.randrange(1, 40) + str(rng.randrange(300))
            if op < 0.6:
                value = _random_value(rng, max_len)
                try:
                    d[key] = value  # type: ignore[assignment]
                    model[key] = value
                except shmdict.NoMemoryError:
                    nomem += 1
            elif op < 0.95:
                assert d.delete(key) is (key in model)
                model.pop(key, None)
            elif op < 0.99:
                d.flush_all()
                model.clear()
            else:
                assert snapshot(d) == canon_map(model)
                assert d.verify() == []
            if step % 500 == 0:
                assert len(d) == len(model)
        assert snapshot(d) == canon_map(model)
        assert d.verify() == []

        # Phase 2: delete everything one by one; the space must come back.
        for k in list(model):
            del d[k]
        assert len(d) == 0
        assert d.verify() == []
        # Freed blocks coalesce: the emptied dict is as good as a fresh one.
        assert largest_value(d) == big0
        n_deleted = fill(d, "p", probe)
        assert n_deleted == n0, (n_deleted, n0)

        # Phase 3: flush_all gives back exactly the fresh capacity.
        d.flush_all()
        assert d.verify() == []
        assert fill(d, "p", probe) == n0
        d.flush_all()
        assert largest_value(d) == big0
        assert d.verify() == []


@pytest.mark.parametrize("size", [16 * GiB, shmdict.MAX_SIZE], ids=["16GiB", "64GiB"])
def test_large_dict(name: str, size: int, big_dir: str) -> None:
    d = shmdict.new(name, size, dir=big_dir)
    try:
        # O(1) creation, shown without timing: new() commits a few pages.
        assert os.stat(d.path).st_blocks * 512 < MiB
        assert d.size == size
        assert os.stat(d.path).st_size == size
        d["a"] = 1
        d["b"] = "x" * 1000
        d.set("c", b"y" * (10 * MiB), 1000)
        d.incr("a", 41)
        assert d["a"] == 42
        assert d["b"] == "x" * 1000
        assert d["c"] == b"y" * (10 * MiB)
        with shmdict.get(name, dir=big_dir) as p:
            assert p.size == size
            assert p["a"] == 42
        # Sparse: new() must not touch every page (the tmpfs could not even
        # hold 64 GiB), and neither must a few small sets.
        allocated = os.stat(d.path).st_blocks * 512
        assert allocated < 64 * MiB, allocated
        d.delete("c")
        d["d"] = 4
        assert d.get("c") is None
        assert d["d"] == 4
    finally:
        d.close()
    assert not shmdict.exists(name, dir=big_dir)


SCANS: list[tuple[str, Callable[[SharedDict], object]]] = [
    ("get_keys", lambda d: d.get_keys()),
    ("len", lambda d: len(d)),
    ("iter", lambda d: list(d)),
    ("verify", lambda d: d.verify()),
    ("flush_all", lambda d: d.flush_all()),
]


@pytest.mark.parametrize("scan", [s for _, s in SCANS], ids=[i for i, _ in SCANS])
def test_scans_of_large_dict_commit_little(
    name: str, scan: Callable[[SharedDict], object]
) -> None:
    """Whole-dict operations on a nearly empty large dict must not touch
    (and so commit in the tmpfs) memory in proportion to the dict's size:
    "memory is committed only as items are stored"."""
    with shmdict.new(name, 16 * GiB) as d:
        d["a"] = 1
        d["b"] = b"x" * MiB
        scan(d)
        allocated = os.stat(d.path).st_blocks * 512
        assert allocated < 64 * MiB, f"{allocated >> 20} MiB of the file committed"
        assert len(d) in (0, 2)  # 0 after flush_all

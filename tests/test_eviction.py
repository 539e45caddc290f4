"""Eviction: shmdict.new(name, size, evict=True).

A full evicting dict makes room by reclaiming expired items first, then the
least recently used ones (CLOCK: a bucket read or written since the hand
last passed survives one pass; a new key is not marked until it is used).
set_forcible reports how many live items it evicted; safe_set and safe_add
never evict. Without evict (the default) a full dict raises NoMemoryError
and nothing changes.

All dicts here are 64 KiB (about 28 KiB of heap), so a few dozen values
fill them. No timing is asserted.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import shmdict

from .fileformat import entry_block
from .helpers import fill_until_full, wait_until
from .strategies import canon_map

SharedDict = shmdict.SharedDict

SIZE = shmdict.MIN_SIZE
SHORT = 0.05
LONG = 1000.0

reuse_fixture = settings(
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)


def snapshot(d: SharedDict) -> dict[str, tuple[str, str]]:
    return canon_map(dict(d.items()))


def max_fit(d: SharedDict) -> int:
    """The longest bytes value that an empty *d* stores under an 8-byte
    key (keys of 1 to 8 bytes cost the same)."""
    assert len(d) == 0
    lo, hi = 0, d.capacity()
    while lo < hi:
        mid = (lo + hi + 1) // 2
        try:
            d.set("kkkkkkkk", b"m" * mid)
        except shmdict.NoMemoryError:
            hi = mid - 1
        else:
            d.delete("kkkkkkkk")
            lo = mid
    assert d.free_space() == d.capacity()
    return lo


def churn(d: SharedDict, n: int, value_len: int = 400) -> int:
    """Insert n fresh keys of equal size; return the live items evicted."""
    return sum(d.set_forcible(f"c{i:06d}", b"v" * value_len) for i in range(n))


@pytest.fixture
def ed(name: str) -> Iterator[SharedDict]:
    """A fresh 64 KiB evicting dict."""
    sd = shmdict.new(name, SIZE, evict=True)
    try:
        yield sd
    finally:
        sd.close()


@pytest.fixture
def plain(name: str) -> Iterator[SharedDict]:
    """A fresh 64 KiB dict made without evict."""
    sd = shmdict.new(name, SIZE)
    try:
        yield sd
    finally:
        sd.close()


# ---------------------------------------------------------------- the flag


def test_evict_flag(ed: SharedDict, name_factory: Callable[[], str]) -> None:
    assert ed.stats()["evict"] is True
    with shmdict.new(name_factory(), SIZE) as plain:
        assert plain.stats()["evict"] is False
    with shmdict.new(name_factory(), SIZE, evict=False) as plain:
        assert plain.stats()["evict"] is False
    peer = shmdict.get(ed.name)
    try:
        # Eviction is a property of the dict, not of the handle.
        assert peer.stats()["evict"] is True
        assert churn(peer, 200) > 0
        assert ed.stats()["evictions"] > 0
    finally:
        peer.close()
    assert ed.verify() == []


# ---------------------------------------------------------------- without evict


def test_plain_full_dict_raises_and_changes_nothing(plain: SharedDict) -> None:
    i = fill_until_full(plain, "k", b"v" * 400)
    assert i > 10
    before = snapshot(plain)
    free = plain.free_space()
    calls: list[Callable[[], object]] = [
        lambda: plain.set("new", b"x" * 2000),
        lambda: plain.set_forcible("new", b"x" * 2000),
        lambda: plain.add("new", b"x" * 2000),
        lambda: plain.set("k0000000", b"x" * 2000),  # a bigger overwrite
        lambda: plain.rpush("list", b"x" * 2000),
        lambda: plain.set_many({"new": b"x" * 2000}),
        lambda: plain.setdefault("new", b"x" * 2000),
        lambda: plain.cas("k0000000", b"v" * 400, b"x" * 2000),
    ]
    for call in calls:
        with pytest.raises(shmdict.NoMemoryError):
            call()
        assert snapshot(plain) == before
        assert plain.free_space() == free
    assert plain.stats()["evictions"] == 0
    assert plain.verify() == []


# ---------------------------------------------------------------- never NoMemoryError


def test_evicting_dict_stores_anything_that_fits(ed: SharedDict) -> None:
    biggest = max_fit(ed)
    assert biggest > ed.capacity() // 2
    rng = random.Random(1234)
    sizes = [
        rng.choice([0, 10, 100, 1000, 5000, biggest // 2, biggest]) for _ in range(400)
    ]
    for i, n in enumerate(sizes):
        k = f"k{i:06d}"
        exptime = rng.choice([0, 0, 0, SHORT, LONG])
        ed.set(k, b"s" * n, exptime)  # never NoMemoryError
        # (A SHORT one may already have expired on a slow machine.)
        assert ed.get(k) == b"s" * n or (exptime == SHORT and k not in ed)
    st_ = ed.stats()
    assert st_["evictions"] > 0
    assert ed.verify() == []
    # The biggest value once more, over a dict full of others.
    ed.set("kkkkkkkk", b"m" * biggest)
    assert ed["kkkkkkkk"] == b"m" * biggest
    assert len(ed) == 1


@reuse_fixture
@given(
    ops=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=40),  # key number
            st.floats(min_value=0, max_value=1),  # size as a share of max_fit
            st.sampled_from(
                ["set", "set_forcible", "add", "replace", "setdefault", "cas"]
            ),
        ),
        min_size=1,
        max_size=40,
    )
)
# Found by Hypothesis: replacing a key with a value that needs the whole
# heap (see test_replace_that_evicts_everything).
@example(ops=[(0, 0.0, "set"), (1, 0.0, "set"), (0, 1.0, "replace")])
def test_evicting_dict_never_raises_property(
    ed: SharedDict, ops: list[tuple[int, float, str]]
) -> None:
    ed.flush_all()
    biggest = max_fit(ed)
    for kn, share, op in ops:
        k = f"k{kn}"
        v = b"p" * int(biggest * share)
        if op == "set":
            assert ed.set(k, v) is True
            assert ed[k] == v
        elif op == "set_forcible":
            assert ed.set_forcible(k, v) >= 0
            assert ed[k] == v
        elif op == "add":
            present = k in ed
            assert ed.add(k, v) is (not present)
            if not present:
                assert ed[k] == v
        elif op == "replace":
            present = k in ed
            assert ed.replace(k, v) is present
            if present:
                assert ed[k] == v
        elif op == "cas":
            old = ed.get(k)
            if old is not None:
                assert ed.cas(k, old, v) is True
                assert ed[k] == v
            else:
                assert ed.cas(k, b"", v) is False
                assert k not in ed
        else:
            old = ed.get(k)
            got = ed.setdefault(k, v)
            assert got == (v if old is None else old)
    assert ed.verify() == []


def test_replace_that_evicts_everything(ed: SharedDict) -> None:
    """replace() of a present key with a value that needs the whole heap:
    making room has to drop the old value (and everything else), and the
    replace must still count as done."""
    biggest = max_fit(ed)
    ed["a"] = 1
    ed["b"] = 2
    assert ed.replace("a", b"r" * biggest) is True
    assert ed.get("a") == b"r" * biggest
    assert len(ed) == 1
    assert ed.verify() == []


def test_cas_that_evicts_everything(ed: SharedDict) -> None:
    """The same for cas(): the comparison succeeded, so the new value must
    be stored even though room had to be made by evicting the old one."""
    biggest = max_fit(ed)
    ed["a"] = "old"
    ed["b"] = 2
    assert ed.cas("a", "old", b"c" * biggest) is True
    assert ed.get("a") == b"c" * biggest
    assert ed.verify() == []


def test_replace_in_full_dict_never_loses_the_key(ed: SharedDict) -> None:
    """Replacing present keys with bigger values in a full evicting dict:
    each replace is True and leaves the new value there."""
    churn(ed, 200)
    rng = random.Random(5)
    for i in range(1000):
        k = rng.choice(ed.get_keys())
        v = b"R" * rng.choice([500, 2000, 8000, 16000])
        assert ed.replace(k, v) is True, i
        assert ed.get(k) == v, i
    assert ed.verify() == []


def test_set_many_on_full_evicting_dict(ed: SharedDict) -> None:
    churn(ed, 100)
    batch = {f"b{i}": b"b" * 300 for i in range(20)}
    ed.set_many(batch)  # evicts instead of raising
    assert ed.get_many(list(batch)) == batch
    assert ed.verify() == []


def test_other_writes_on_full_evicting_dict(ed: SharedDict) -> None:
    churn(ed, 100)
    ev0 = ed.stats()["evictions"]
    assert ed.add("new-add", b"a" * 800) is True
    assert ed["new-add"] == b"a" * 800
    assert ed.incr("new-incr", 1, init=41) == 42
    assert ed.setdefault("new-sd", b"s" * 800) == b"s" * 800
    assert ed.rpush("new-list", b"l" * 800) == 1
    assert ed.rpush("new-list", b"l" * 800) == 2
    ed["c000099"] = b"bigger" * 400  # an overwrite that needs more room
    assert ed["c000099"] == b"bigger" * 400
    assert ed.stats()["evictions"] > ev0
    assert ed.verify() == []


def test_lists_do_not_cause_no_memory_error(ed: SharedDict) -> None:
    """A list that holds most of an evicting dict is evicted like any
    item, and the write that needed the room succeeds."""
    biggest = max_fit(ed)
    for _ in range(100):
        ed.rpush("L", b"x" * 200)
    big = b"y" * (biggest // 3)
    assert ed.set_forcible("big", big) >= 1
    assert ed["big"] == big
    assert ed.verify() == []


def test_push_evicts_others_never_its_own_list(ed: SharedDict) -> None:
    """Pushing 200-byte items onto one list in a full evicting dict evicts
    other keys to make room, never the list itself: once the list is all
    that is left, a push raises NoMemoryError and the list stays whole."""
    for i in range(300):
        ed[f"k{i}"] = b"v" * 200
    n = 0
    for _ in range(10_000):
        try:
            assert ed.rpush("L", b"%05d" % n + b"x" * 195) == n + 1
        except shmdict.NoMemoryError:
            break
        n += 1
    assert n > 50
    assert ed.stats()["evictions"] >= 1
    assert ed.llen("L") == n
    assert not [k for k in ed.get_keys() if k != "L"]  # the others made room
    assert ed.lpop("L") == b"00000" + b"x" * 195
    assert ed.verify() == []


# ---------------------------------------------------------------- counting


def test_set_forcible_reports_evictions(ed: SharedDict) -> None:
    assert ed.set_forcible("a", b"x" * 100) == 0  # room to spare
    ev0 = ed.stats()["evictions"]
    total = 0
    results: list[int] = []
    for i in range(300):
        r = ed.set_forcible(f"k{i:06d}", b"v" * 500)
        assert type(r) is int
        assert r >= 0
        results.append(r)
        total += r
    assert total > 0
    assert results[0] == 0  # the dict was not full yet
    assert ed.stats()["evictions"] - ev0 == total
    # Each eviction removed a live item: entries = stored - evicted.
    assert ed.stats()["entries"] == 301 - total
    assert len(ed) == 301 - total
    # Plain set and add evict too, and stats count it.
    ev1 = ed.stats()["evictions"]
    for i in range(50):
        ed.set(f"s{i}", b"v" * 500)
        ed.add(f"a{i}", b"v" * 500)
    assert ed.stats()["evictions"] > ev1
    assert ed.verify() == []


def test_evicted_items_are_gone(ed: SharedDict) -> None:
    keys = [f"k{i:06d}" for i in range(300)]
    for k in keys:
        ed.set(k, b"v" * 300)
    present = [k for k in keys if k in ed]
    gone = [k for k in keys if k not in ed]
    assert gone
    assert present
    assert len(gone) == ed.stats()["evictions"]
    for k in gone:
        assert ed.get(k) is None
        assert ed.get_stale(k) is None
        assert ed.ttl(k) is None
    assert sorted(ed.get_keys()) == present
    assert ed.get_many(keys) == dict.fromkeys(present, b"v" * 300)
    assert len(ed) == len(present) == ed.stats()["entries"]


def test_sets_counter_counts_each_store_once(ed: SharedDict) -> None:
    """stats()["sets"] counts stores; a store that had to evict to make
    room is still one store."""
    s0 = ed.stats()["sets"]
    for i in range(300):
        ed.set(f"k{i:06d}", b"v" * 500)
    assert ed.stats()["evictions"] > 0
    assert ed.stats()["sets"] - s0 == 300


# ---------------------------------------------------------------- safe_*


def test_safe_set_and_safe_add_never_evict(ed: SharedDict) -> None:
    churn(ed, 100)
    before = snapshot(ed)
    ev0 = ed.stats()["evictions"]
    with pytest.raises(shmdict.NoMemoryError):
        ed.safe_set("new", b"x" * 2000)
    with pytest.raises(shmdict.NoMemoryError):
        ed.safe_add("new", b"x" * 2000)
    with pytest.raises(shmdict.NoMemoryError):
        ed.safe_set("c000099", b"x" * 5000)  # a bigger overwrite
    assert ed.stats()["evictions"] == ev0
    assert snapshot(ed) == before
    # safe_add of a present key is False, not an error.
    assert ed.safe_add("c000099", b"x") is False
    # A safe_set that fits in place is fine.
    assert ed.safe_set("c000099", b"w" * 400) is True
    assert ed["c000099"] == b"w" * 400
    assert ed.stats()["evictions"] == ev0
    assert ed.verify() == []


def test_safe_set_reclaims_expired_but_not_live(ed: SharedDict) -> None:
    for i in range(10):
        ed.set(f"live{i}", b"l" * 400)
    i = 0
    while True:
        try:
            ed.safe_set(f"exp{i}", b"e" * 400, SHORT)
        except shmdict.NoMemoryError:
            break
        i += 1
    assert i > 5
    assert wait_until(lambda: all(ed.ttl(f"exp{j}") is None for j in range(i)))
    ev0 = ed.stats()["evictions"]
    assert ed.safe_set("new", b"n" * 400) is True
    assert ed.safe_add("new2", b"n" * 400) is True
    assert ed.stats()["evictions"] == ev0
    assert all(ed.get(f"live{j}") == b"l" * 400 for j in range(10))


# ---------------------------------------------------------------- what goes first


def test_fresh_dict_reclaims_expired_before_live(ed: SharedDict) -> None:
    live = [f"L{i:05d}" for i in range(15)]
    for k in live:
        ed.set(k, b"v" * 400)
    exp: list[str] = []
    while True:
        k = f"E{len(exp):05d}"
        if ed.set_forcible(k, b"v" * 400) != 0:
            pytest.fail("evicted while filling")
        exp.append(k)
        if ed.free_space() < 450:
            break
    assert len(exp) > 10
    for k in exp:
        assert ed.expire(k, SHORT) is True
    assert wait_until(lambda: all(ed.ttl(k) is None for k in exp))
    for i in range(len(exp)):
        assert ed.set_forcible(f"N{i:05d}", b"v" * 400) == 0, i
    assert all(ed.get(k) == b"v" * 400 for k in live)
    assert ed.stats()["evictions"] == 0
    assert ed.verify() == []


def test_expired_items_go_before_live_ones(ed: SharedDict) -> None:
    """After the CLOCK hand has been round (so the reference marks of the
    old items are clear), five items are expired and five new items of
    the same size are stored: each can take the place of an expired one,
    so no live item may be evicted."""
    churn(ed, 300)
    assert ed.stats()["evictions"] > 0
    live = sorted(ed.get_keys())
    assert len(live) > 20
    expiring = live[:: len(live) // 5][:5]
    for k in expiring:
        assert ed.expire(k, SHORT) is True  # expire() is not a read
    assert wait_until(lambda: all(ed.ttl(k) is None for k in expiring))
    evicted = sum(ed.set_forcible(f"n{i:06d}", b"v" * 400) for i in range(5))
    lost = [k for k in live if k not in expiring and k not in ed]
    assert (evicted, lost) == (0, [])


# ---------------------------------------------------------------- CLOCK


def test_hot_key_survives_heavy_insertion(ed: SharedDict) -> None:
    """A key read between inserts is never evicted, from the very first
    insert: new keys come unmarked, so the hand always finds one to take."""
    ed.set("hot", b"h" * 100)
    ev0 = ed.stats()["evictions"]
    n = 3000
    for i in range(n):
        ed.set(f"k{i:06d}", b"v" * 400)
        assert ed.get("hot") == b"h" * 100, f"hot key evicted after {i} inserts"
    # Every insert beyond what the dict holds evicted one key: exactly the
    # keys that are not there any more (nothing expires here). At most
    # capacity / (one entry's block, from the layout) of them stay.
    stayed = len(ed) - 1
    assert ed.stats()["evictions"] - ev0 == n - stayed
    assert stayed <= ed.capacity() // entry_block(len("k000000"), 400)
    assert ed.verify() == []


def test_read_keys_survive_one_pass(ed: SharedDict) -> None:
    """Three keys read after every insertion all survive; the keys that
    nobody reads are evicted in turn."""
    hot = ["h1", "h2", "h3"]
    for k in hot:
        ed.set(k, k)
    first = [f"k{i:06d}" for i in range(40)]
    for i in range(1500):
        ed.set(f"k{i:06d}", b"v" * 400)
        for k in hot:
            assert ed.get(k) == k, (k, i)
    # The early keys, never read, are gone; only one that shares a bucket
    # with a hot key (the marks are per bucket) could still be there.
    assert sum(k in ed for k in first) <= 3
    assert ed.verify() == []


# ---------------------------------------------------------------- churn


def test_verify_after_mixed_churn(ed: SharedDict) -> None:
    rng = random.Random(99)
    nomem = 0
    for i in range(3000):
        k = f"k{rng.randrange(120)}"
        op = rng.randrange(10)
        try:
            if op < 3:
                ed.set(
                    k,
                    b"x" * rng.choice([0, 8, 100, 700, 3000]),
                    rng.choice([0, 0, SHORT]),
                )
            elif op == 3:
                ed.get(k)
            elif op == 4:
                try:
                    ed.incr(k, 1, init=0)
                except TypeError:
                    # Only an incr of a value that is not a number (the k
                    # keys hold bytes or "added"; None if it expired since).
                    cur = ed.get(k)
                    assert cur is None or isinstance(cur, (bytes, str)), cur
            elif op == 5:
                ed.rpush(f"L{rng.randrange(5)}", b"i" * rng.choice([8, 300]))
            elif op == 6:
                ed.lpop(f"L{rng.randrange(5)}")
            elif op == 7:
                ed.delete(k)
            elif op == 8:
                ed.add(k, "added")
            else:
                ed.set_many({f"m{rng.randrange(50)}": rng.random() for _ in range(5)})
        except shmdict.NoMemoryError:
            # Not expected: an evicting dict makes room for every write that
            # fits (test_lists_do_not_cause_no_memory_error and
            # test_push_never_raises_on_evicting_dict pin the cases down).
            # Counted, not raised, so the dict is verified before the count.
            nomem += 1
        if i % 500 == 0:
            assert ed.verify() == []
    assert ed.verify() == []
    assert nomem == 0, f"{nomem} NoMemoryError(s) on an evicting dict"
    assert ed.stats()["evictions"] > 0
    assert len(ed) == len(ed.get_keys())
    ed.flush_expired()
    assert ed.verify() == []
    ed.flush_all()
    assert ed.free_space() == ed.capacity()
    assert ed.verify() == []

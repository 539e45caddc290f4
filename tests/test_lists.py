"""Lists: lpush/rpush/lpop/rpop/llen, their type rules, and how a list
key behaves under set, delete, expire, flush_all, batches and a full dict.

A list's items are freed lazily after the list is deleted, overwritten or
expired: ``stats()["pending_free"]`` counts them, and later writes drain
it. No timing is asserted; short exptimes are waited out by polling.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import shmdict

from .helpers import wait_until
from .redis_fixtures import is_shm
from .redis_fixtures import peer as open_peer
from .strategies import INT64_MAX, INT64_MIN, Value, same_value, values

SharedDict = shmdict.SharedDict

SHORT = 0.05
LONG = 1000.0
RESOLUTION = 0.0011

reuse_fixture = settings(
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)

EVERY_TYPE: list[Value] = [
    None,
    True,
    False,
    0,
    INT64_MIN,
    INT64_MAX,
    -0.0,
    math.inf,
    1.5,
    "",
    "\u20ac" * 3,
    "x" * 3000,  # larger than the binding's stack buffer
    b"",
    b"\x00\xff",
    b"\x01" * 5000,
]


def drain_pending(d: SharedDict, max_writes: int = 2000) -> int:
    """Do small writes until no list item waits to be freed; return how
    many writes that took. The writes go to many keys: a dict split into
    stripes (SHMDICT_STRIPES) drains each stripe's items on its own writes.
    Redis frees a list's items itself: nothing to drain there.
    """
    if not is_shm(d):
        return 0
    n = 0
    while d.stats()["pending_free"]:
        assert n < max_writes, "pending_free does not drain"
        d.set(f"_drain{n % 64}", n)
        n += 1
    d.delete_many([f"_drain{i}" for i in range(64)])
    return n


def pop_all(d: SharedDict, key: str, left: bool = True) -> list[Value]:
    out: list[Value] = []
    while d.llen(key):
        out.append(d.lpop(key) if left else d.rpop(key))
    return out


# ---------------------------------------------------------------- basics


def test_push_pop_order_and_lengths(d: SharedDict) -> None:
    assert d.rpush("q", 1) == 1
    assert d.rpush("q", 2) == 2
    assert d.lpush("q", 0) == 3
    assert d.lpush("q", -1) == 4
    assert d.llen("q") == 4
    assert "q" in d
    assert len(d) == 1
    assert d.get_keys() == ["q"]
    assert d.lpop("q") == -1
    assert d.rpop("q") == 2
    assert d.llen("q") == 2
    assert d.lpop("q") == 0
    assert d.lpop("q") == 1
    assert d.llen("q") == 0
    assert "q" not in d
    assert d.lpop("q") is None
    assert d.rpop("q") is None


def test_missing_list(d: SharedDict) -> None:
    assert d.llen("nope") == 0
    assert d.lpop("nope") is None
    assert d.rpop("nope") is None
    assert "nope" not in d
    assert len(d) == 0


def test_empty_list_is_removed(d: SharedDict) -> None:
    shm = is_shm(d)
    cap = d.capacity() if shm else 0
    d.rpush("q", b"x" * 100)
    d.rpush("q", None)
    if shm:
        assert d.free_space() < cap
    assert d.lpop("q") == b"x" * 100
    assert d.llen("q") == 1
    assert d.rpop("q") is None  # the item None
    assert "q" not in d
    assert d.get_keys() == []
    assert len(d) == 0
    assert d.stats()["entries"] == 0
    if shm:
        assert d.free_space() == cap
    assert d.verify() == []
    # The key can now hold a scalar.
    d["q"] = 1
    assert d["q"] == 1


@pytest.mark.parametrize("item", EVERY_TYPE, ids=repr)
def test_items_of_every_type(d: SharedDict, item: Value) -> None:
    assert d.rpush("q", item) == 1
    assert d.lpush("q", item) == 2
    assert same_value(d.lpop("q"), item)
    assert same_value(d.rpop("q"), item)
    assert "q" not in d


def test_mixed_items_keep_order(d: SharedDict) -> None:
    for v in EVERY_TYPE:
        d.rpush("q", v)
    assert d.llen("q") == len(EVERY_TYPE)
    got = pop_all(d, "q")
    assert [repr(type(v)) for v in got] == [repr(type(v)) for v in EVERY_TYPE]
    assert all(same_value(a, b) for a, b in zip(got, EVERY_TYPE, strict=True))
    for v in EVERY_TYPE:
        d.lpush("q", v)
    got = pop_all(d, "q")
    assert all(same_value(a, b) for a, b in zip(got, reversed(EVERY_TYPE), strict=True))
    assert d.verify() == []


def test_lists_are_shared_between_handles(d: SharedDict) -> None:
    peer = open_peer(d)
    try:
        d.rpush("q", "a")
        assert peer.rpush("q", "b") == 2
        assert peer.llen("q") == 2
        assert d.lpop("q") == "a"
        assert peer.lpop("q") == "b"
        assert "q" not in peer
        assert "q" not in d
    finally:
        peer.close()


@reuse_fixture
@given(
    ops=st.lists(
        st.one_of(
            st.tuples(st.sampled_from(["lpush", "rpush"]), values),
            st.tuples(st.sampled_from(["lpop", "rpop", "llen"]), st.none()),
        ),
        max_size=40,
    )
)
def test_list_matches_deque(d: SharedDict, ops: list[tuple[str, Value]]) -> None:
    d.flush_all()
    model: deque[Value] = deque()
    for op, v in ops:
        if op == "lpush":
            model.appendleft(v)
            assert d.lpush("q", v) == len(model)
        elif op == "rpush":
            model.append(v)
            assert d.rpush("q", v) == len(model)
        elif op == "lpop":
            want = model.popleft() if model else None
            assert same_value(d.lpop("q"), want)
        elif op == "rpop":
            want = model.pop() if model else None
            assert same_value(d.rpop("q"), want)
        else:
            assert d.llen("q") == len(model)
        assert ("q" in d) is bool(model)
    same = [same_value(a, b) for a, b in zip(pop_all(d, "q"), model, strict=True)]
    assert same == [True] * len(model)
    assert d.verify() == []


# ---------------------------------------------------------------- type rules


def test_list_key_rejects_scalar_calls(d: SharedDict) -> None:
    d.rpush("q", 1)
    d.rpush("q", 2)
    with pytest.raises(TypeError):
        d.get("q")
    with pytest.raises(TypeError):
        d.get("q", 5)
    with pytest.raises(TypeError):
        d["q"]
    with pytest.raises(TypeError):
        d.incr("q", 1)
    with pytest.raises(TypeError):
        d.incr("q", 1, init=0)
    with pytest.raises(TypeError):
        d.cas("q", 1, 2)
    with pytest.raises(TypeError):
        d.pop("q")
    with pytest.raises(TypeError):
        d.pop("q", None)
    with pytest.raises(TypeError):
        d.setdefault("q", 1)
    with pytest.raises(TypeError):
        d.get_stale("q")
    with pytest.raises(TypeError):
        d.get_many(["q"])
    # Nothing changed.
    assert d.llen("q") == 2
    assert pop_all(d, "q") == [1, 2]
    assert d.verify() == []


def test_scalar_key_rejects_list_calls(d: SharedDict) -> None:
    d["s"] = "scalar"
    calls: list[Callable[[], object]] = [
        lambda: d.lpush("s", 1),
        lambda: d.rpush("s", 1),
        lambda: d.lpop("s"),
        lambda: d.rpop("s"),
        lambda: d.llen("s"),
    ]
    for call in calls:
        with pytest.raises(TypeError):
            call()
    assert d["s"] == "scalar"
    assert len(d) == 1
    d["n"] = None  # a None scalar is not "no list"
    with pytest.raises(TypeError):
        d.lpop("n")
    with pytest.raises(TypeError):
        d.llen("n")
    assert d.verify() == []


def test_bad_push_arguments(d: SharedDict) -> None:
    d.rpush("q", "first")
    with pytest.raises(TypeError):
        d.rpush("q", [1])  # type: ignore[arg-type]
    with pytest.raises(OverflowError):
        d.lpush("q", 2**64)
    with pytest.raises(TypeError):
        d.rpush(1, 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="empty"):
        d.rpush("", 1)
    with pytest.raises(TypeError):
        d.rpush("q")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        d.rpush("new", object())  # type: ignore[arg-type]
    assert "new" not in d
    assert d.llen("q") == 1
    with pytest.raises(TypeError):
        d.lpop(1)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        d.llen(None)  # type: ignore[arg-type]
    assert d.lpop("q") == "first"


def test_add_replace_on_list_key(d: SharedDict) -> None:
    d.rpush("q", 1)
    assert d.add("q", "scalar") is False
    assert d.llen("q") == 1
    assert d.replace("q", "scalar") is True
    assert d["q"] == "scalar"
    with pytest.raises(TypeError):
        d.llen("q")
    drain_pending(d)
    assert d.verify() == []


# ---------------------------------------------------------------- replacing


@pytest.mark.shm_only("pending_free: a replaced list's items are freed a few at a time")
def test_set_over_list_replaces_it(d: SharedDict) -> None:
    cap = d.capacity()
    for _i in range(500):
        d.rpush("q", b"x" * 50)
    assert d.llen("q") == 500
    assert d.set("q", 5) is True
    assert d["q"] == 5
    assert len(d) == 1
    assert d.verify() == []
    pending = d.stats()["pending_free"]
    assert 0 < pending <= 500
    # Later writes free the items a few at a time.
    writes = drain_pending(d)
    assert writes >= 1
    assert d.stats()["pending_free"] == 0
    assert d.verify() == []
    del d["q"]
    assert d.free_space() == cap


@pytest.mark.shm_only("pending_free: a deleted list's items are freed step by step")
def test_pending_free_drains_step_by_step(d: SharedDict) -> None:
    for i in range(300):
        d.lpush("q", i)
    d.delete("q")
    seen = [d.stats()["pending_free"]]
    while seen[-1]:
        # A write to the same key: the same stripe of a striped dict.
        d.set("q", len(seen))
        assert d.verify() == []
        seen.append(d.stats()["pending_free"])
        assert len(seen) < 1000
    assert all(b < a for a, b in itertools.pairwise(seen)), seen
    assert len(d) == 1


def test_set_many_and_delete_many_with_lists(d: SharedDict) -> None:
    d.rpush("l1", 1)
    d.rpush("l2", 2)
    d.rpush("l3", 3)
    d.set_many({"l1": "now a scalar", "s": 1})
    assert d["l1"] == "now a scalar"
    assert d.delete_many(["l2", "s", "missing"]) == 2
    assert sorted(d.get_keys()) == ["l1", "l3"]
    assert d.llen("l3") == 1
    drain_pending(d)
    assert d.verify() == []


def test_delete_and_flush_lists(d: SharedDict) -> None:
    shm = is_shm(d)
    cap = d.capacity() if shm else 0
    d.rpush("a", 1)
    d.rpush("a", 2)
    assert d.delete("a") is True
    assert "a" not in d
    assert d.llen("a") == 0
    assert d.delete("a") is False
    d.rpush("b", 1)
    del d["b"]
    assert "b" not in d
    for k in "xyz":
        for _i in range(100):
            d.rpush(k, b"i" * 30)
    d["s"] = 1
    d.flush_all()
    assert len(d) == 0
    if shm:
        assert d.stats()["pending_free"] == 0
        assert d.free_space() == cap
    assert d.llen("x") == 0
    assert d.rpush("x", 1) == 1  # a fresh list
    assert d.verify() == []


# ---------------------------------------------------------------- expiry


def test_expire_a_list(d: SharedDict) -> None:
    for i in range(20):
        d.rpush("q", i)
    assert d.ttl("q") == 0
    assert d.expire("q", LONG) is True
    t = d.ttl("q")
    assert t is not None
    assert 0 < t <= LONG + RESOLUTION
    # Pushing and popping keep the expiry.
    d.rpush("q", 20)
    assert d.lpop("q") == 0
    t = d.ttl("q")
    assert t is not None
    assert t > 0
    assert d.stats()["expiring"] == 1
    assert d.expire("q", 0) is True
    assert d.ttl("q") == 0
    assert d.stats()["expiring"] == 0
    assert d.expire("q", SHORT) is True
    assert wait_until(lambda: d.ttl("q") is None)
    assert "q" not in d
    assert d.llen("q") == 0
    assert d.lpop("q") is None
    assert d.rpop("q") is None
    assert d.get_keys() == []
    # A push starts a new, empty list without the old items or expiry.
    assert d.rpush("q", "new") == 1
    assert d.ttl("q") == 0
    assert d.lpop("q") == "new"
    drain_pending(d)
    assert d.verify() == []


@pytest.mark.shm_only("expired items wait for flush_expired; Redis frees them itself")
def test_expired_list_reclaimed_by_flush_expired(d: SharedDict) -> None:
    cap = d.capacity()
    for _i in range(50):
        d.rpush("q", b"v" * 100)
    d.expire("q", SHORT)
    assert wait_until(lambda: d.ttl("q") is None)
    assert d.flush_expired() == 1
    drain_pending(d)
    assert d.free_space() == cap
    assert d.verify() == []


def test_expired_scalar_becomes_list(d: SharedDict) -> None:
    d.set("k", "scalar", SHORT)
    assert wait_until(lambda: d.ttl("k") is None)
    assert d.llen("k") == 0
    assert d.rpush("k", 1) == 1
    assert d.ttl("k") == 0
    assert d.rpop("k") == 1
    assert d.verify() == []


# ---------------------------------------------------------------- full dict


def test_push_on_full_dict_changes_nothing(small: SharedDict) -> None:
    i = 0
    while True:
        try:
            small.rpush("q", i)
        except shmdict.NoMemoryError:
            break
        i += 1
        assert i < 100_000
    assert small.llen("q") == i
    with pytest.raises(shmdict.NoMemoryError):
        small.lpush("q", b"x" * 1000)
    with pytest.raises(shmdict.NoMemoryError):
        small.rpush("other", b"x" * 1000)
    assert "other" not in small
    assert small.llen("q") == i
    assert small.verify() == []
    assert pop_all(small, "q", left=False) == list(reversed(range(i)))
    assert small.free_space() == small.capacity()
    assert small.stats()["evictions"] == 0


def test_deleted_list_room_is_usable_at_once(small: SharedDict) -> None:
    """A full dict whose only list was just deleted has room for a big
    value right away: making room frees the pending items first."""
    i = 0
    try:
        while True:
            small.rpush("q", b"x" * 200)
            i += 1
    except shmdict.NoMemoryError:
        pass
    assert i > 50
    small.delete("q")
    big = b"y" * (small.capacity() // 2)
    assert small.set("big", big) is True
    assert small["big"] == big
    drain_pending(small)
    assert small.verify() == []


def test_lrange_reads_the_whole_list_without_popping(d: SharedDict) -> None:
    assert d.lrange("missing") == []
    items: list[Value] = [1, -2.5, "s", b"b", None, True, False, "x" * 5000, b"", ""]
    for item in items:
        d.rpush("q", item)
    d.lpush("q", "head")
    got = d.lrange("q")
    assert got == ["head", *items]
    assert [type(x) for x in got] == [str] + [type(x) for x in items]
    assert d.llen("q") == len(items) + 1
    d["scalar"] = 1
    with pytest.raises(TypeError, match="does not hold a list"):
        d.lrange("scalar")
    assert d.verify() == []


def test_lrange_of_a_long_list(d: SharedDict) -> None:
    for i in range(3000):  # more than the first buffer holds
        d.rpush("long", f"item {i}")
    got = d.lrange("long")
    assert got == [f"item {i}" for i in range(3000)]

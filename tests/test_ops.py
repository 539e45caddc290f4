"""The ngx.shared.DICT / APCu operations on scalar keys: add, replace,
safe_set/safe_add/set_forcible on a plain dict, incr with init, cas, pop,
setdefault, the batches (get_many, set_many, delete_many) and
get_keys(max_count).

Lists live in test_lists.py, expiry (get_stale and flush_expired too) in
test_ttl.py, eviction in test_eviction.py, capacity and stats() in
test_stats.py, the model-based tests in test_stateful.py and the
cross-process races in test_multiprocess.py.

No timing is asserted: short exptimes are waited out by polling with a
generous deadline.
"""

from __future__ import annotations

import math
import types
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import shmdict

from .helpers import fill_shrinking, wait_expired
from .redis_fixtures import is_shm, peer
from .strategies import (
    INT64_MAX,
    INT64_MIN,
    Value,
    canon,
    canon_map,
    deltas,
    incr_model,
    same_value,
    small_keys,
    small_values,
)

SharedDict = shmdict.SharedDict

SHORT = 0.05  # an exptime that has surely passed once we have polled
LONG = 1000.0  # an exptime that never passes during a test
RESOLUTION = 0.0011  # ttl has ms resolution and may round up

reuse_fixture = settings(
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)

MISSING = object()


def snapshot(d: SharedDict) -> dict[str, tuple[str, str]]:
    return canon_map(dict(d.items()))


# ---------------------------------------------------------------- add


def test_add_stores_only_when_absent(d: SharedDict) -> None:
    assert d.add("a", 1) is True
    assert same_value(d["a"], 1)
    assert d.add("a", "other") is False
    assert same_value(d["a"], 1)
    assert d.ttl("a") == 0
    assert len(d) == 1


def test_add_false_keeps_value_and_ttl(d: SharedDict) -> None:
    d.set("a", b"old", LONG)
    assert d.add("a", b"new", 5) is False
    assert d["a"] == b"old"
    t = d.ttl("a")
    assert t is not None
    assert LONG - 60 < t <= LONG + RESOLUTION


def test_add_with_exptime(d: SharedDict) -> None:
    assert d.add("a", 1, LONG) is True
    t = d.ttl("a")
    assert t is not None
    assert 0 < t <= LONG + RESOLUTION
    assert d.add("b", 1, exptime=0) is True
    assert d.ttl("b") == 0


def test_add_over_expired_key(d: SharedDict) -> None:
    d.set("a", "old", SHORT)
    wait_expired(d, "a")
    assert d.add("a", "new") is True
    assert d["a"] == "new"
    assert d.ttl("a") == 0
    assert d.get_stale("a") == ("new", False)
    assert d.verify() == []


def test_add_after_delete(d: SharedDict) -> None:
    d["a"] = 1
    del d["a"]
    assert d.add("a", 2) is True
    assert d["a"] == 2


def test_add_bad_value_raises_and_stores_nothing(d: SharedDict) -> None:
    with pytest.raises(TypeError):
        d.add("a", [1])  # type: ignore[arg-type]
    with pytest.raises(OverflowError):
        d.add("a", 2**64)
    with pytest.raises(ValueError, match="finite"):
        d.add("a", 1, math.nan)
    assert "a" not in d


@reuse_fixture
@given(k=small_keys, first=small_values, second=small_values)
def test_add_property(d: SharedDict, k: str, first: Value, second: Value) -> None:
    d.flush_all()
    assert d.add(k, first) is True
    assert d.add(k, second) is False
    assert same_value(d[k], first)


# ---------------------------------------------------------------- replace


def test_replace_only_when_present(d: SharedDict) -> None:
    assert d.replace("a", 1) is False
    assert "a" not in d
    assert len(d) == 0
    d["a"] = 1
    assert d.replace("a", "two") is True
    assert d["a"] == "two"


def test_replace_sets_and_clears_ttl(d: SharedDict) -> None:
    d["a"] = 1
    assert d.replace("a", 2, LONG) is True
    t = d.ttl("a")
    assert t is not None
    assert 0 < t <= LONG + RESOLUTION
    assert d.replace("a", 3) is True
    assert d.ttl("a") == 0
    assert d["a"] == 3


def test_replace_expired_key_is_false(d: SharedDict) -> None:
    d.set("a", "old", SHORT)
    wait_expired(d, "a")
    assert d.replace("a", "new") is False
    assert "a" not in d
    assert d.get("a") is None
    stale = d.get_stale("a")
    # The expired value may or may not have been reclaimed, but "new" was
    # never stored.
    assert stale is None or stale == ("old", True)
    assert d.verify() == []


def test_replace_with_a_bigger_value(d: SharedDict) -> None:
    d["a"] = 1
    big = "\u20ac" * 5000
    assert d.replace("a", big) is True
    assert d["a"] == big
    assert d.replace("a", None) is True
    assert d["a"] is None
    assert d.verify() == []


# ---------------------------------------------------------------- safe_set & co


def test_safe_variants_on_plain_dict(d: SharedDict) -> None:
    assert d.safe_set("a", 1) is True
    assert d["a"] == 1
    assert d.safe_set("a", 2, LONG) is True
    assert d["a"] == 2
    t = d.ttl("a")
    assert t is not None
    assert t > 0
    assert d.safe_add("a", 3) is False
    assert d["a"] == 2
    assert d.safe_add("b", 3) is True
    assert d["b"] == 3


def test_set_forcible_without_eviction_returns_zero(d: SharedDict) -> None:
    r = d.set_forcible("a", b"x" * 100)
    assert type(r) is int
    assert r == 0
    assert d["a"] == b"x" * 100
    assert d.set_forcible("a", 5, LONG) == 0
    assert d.get("a") == 5
    t = d.ttl("a")
    assert t is not None
    assert t > 0


def test_full_plain_dict_every_store_raises(small: SharedDict) -> None:
    fill_shrinking(small)
    before = snapshot(small)
    big = b"z" * 2000
    calls: list[Callable[[], object]] = [
        lambda: small.set("new", big),
        lambda: small.safe_set("new", big),
        lambda: small.add("new", big),
        lambda: small.safe_add("new", big),
        lambda: small.set_forcible("new", big),
        lambda: small.setdefault("new", big),
        lambda: small.set_many({"new": big}),
    ]
    for call in calls:
        with pytest.raises(shmdict.NoMemoryError):
            call()
        assert snapshot(small) == before
    assert small.stats()["evictions"] == 0
    assert small.verify() == []


# ---------------------------------------------------------------- incr init


def test_incr_missing_without_init_is_key_error(d: SharedDict) -> None:
    with pytest.raises(KeyError):
        d.incr("n", 1)
    with pytest.raises(KeyError):
        d.incr("n", 1, init=None)
    assert "n" not in d


def test_incr_init_starts_from_init(d: SharedDict) -> None:
    r = d.incr("n", 5, init=10)
    assert same_value(r, 15)
    assert same_value(d["n"], 15)
    assert d.ttl("n") == 0
    # Present now: init is ignored.
    assert same_value(d.incr("n", 1, init=1000), 16)
    assert same_value(d.incr("n", -16, init=0), 0)


def test_incr_init_types(d: SharedDict) -> None:
    assert same_value(d.incr("a", 1, init=0), 1)
    assert same_value(d.incr("b", 1.5, init=1), 2.5)
    assert same_value(d.incr("c", 1, init=1.0), 2.0)
    assert same_value(d.incr("d", 0, init=-0.0), -0.0 + 0.0)
    assert same_value(d.incr("e", 0, init=INT64_MAX), INT64_MAX)
    assert same_value(d.incr("f", -1, init=INT64_MIN + 1), INT64_MIN)


def test_incr_init_overflow_stores_nothing(d: SharedDict) -> None:
    with pytest.raises(OverflowError):
        d.incr("a", 1, init=INT64_MAX)
    assert "a" not in d
    with pytest.raises(OverflowError):
        d.incr("a", INT64_MIN, init=-1)
    assert "a" not in d
    d["a"] = INT64_MAX
    with pytest.raises(OverflowError):
        d.incr("a", 1, init=0)
    assert same_value(d["a"], INT64_MAX)


def test_incr_init_bad_types(d: SharedDict) -> None:
    with pytest.raises(TypeError):
        d.incr("a", 1, init=True)
    with pytest.raises(TypeError):
        d.incr("a", True, init=0)
    with pytest.raises(TypeError):
        d.incr("a", 1, init="0")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="finite"):
        d.incr("a", 1, init=math.nan)
    with pytest.raises(ValueError, match="finite"):
        d.incr("a", 1, init=math.inf)
    with pytest.raises(OverflowError):
        d.incr("a", 1, init=2**64)
    assert "a" not in d
    d["s"] = "text"
    with pytest.raises(TypeError):
        d.incr("s", 1, init=0)
    assert d["s"] == "text"
    d["b"] = False
    with pytest.raises(TypeError):
        d.incr("b", 1, init=0)
    assert d["b"] is False


def test_incr_init_ttl(d: SharedDict) -> None:
    d.incr("a", 1, init=0, init_ttl=LONG)
    t = d.ttl("a")
    assert t is not None
    assert 0 < t <= LONG + RESOLUTION
    # exptime is the fallback for init_ttl.
    d.incr("b", 1, LONG, init=0)
    t = d.ttl("b")
    assert t is not None
    assert 0 < t <= LONG + RESOLUTION
    # init_ttl wins over exptime for a new key.
    d.incr("c", 1, LONG, init=0, init_ttl=LONG / 10)
    t = d.ttl("c")
    assert t is not None
    assert 0 < t <= LONG / 10 + RESOLUTION
    # Neither: no expiry.
    d.incr("e", 1, init=0)
    assert d.ttl("e") == 0


def test_incr_init_ttl_ignored_for_existing_key(d: SharedDict) -> None:
    d.set("a", 1, LONG)
    d.incr("a", 1, init=0, init_ttl=LONG / 10)
    t = d.ttl("a")
    assert t is not None
    assert LONG / 2 < t <= LONG + RESOLUTION
    # exptime applies to an existing key as in plain incr.
    d.incr("a", 1, LONG / 10, init=0, init_ttl=LONG)
    t = d.ttl("a")
    assert t is not None
    assert 0 < t <= LONG / 10 + RESOLUTION
    d.incr("a", 1, 0, init=0)
    assert d.ttl("a") == 0
    assert same_value(d["a"], 4)


def test_incr_init_short_ttl_expires(d: SharedDict) -> None:
    assert d.incr("a", 1, init=0, init_ttl=SHORT) == 1
    wait_expired(d, "a")
    assert "a" not in d
    # It starts over from init once expired.
    assert d.incr("a", 1, init=100) == 101
    assert d.ttl("a") == 0
    assert d.verify() == []


@reuse_fixture
@given(
    present=st.one_of(st.just(MISSING), small_values),
    delta=deltas,
    init=st.one_of(
        st.integers(INT64_MIN, INT64_MAX),
        st.floats(allow_nan=False, allow_infinity=False),
    ),
)
def test_incr_init_property(
    d: SharedDict, present: object, delta: int | float, init: int | float
) -> None:
    d.flush_all()
    if present is not MISSING:
        d["k"] = present  # type: ignore[assignment]
    start = init if present is MISSING else present
    if not (isinstance(start, (int, float)) and not isinstance(start, bool)):
        with pytest.raises(TypeError):
            d.incr("k", delta, init=init)
        assert same_value(d["k"], present)
        return
    want = incr_model(start, delta)
    if want is None:
        with pytest.raises(OverflowError):
            d.incr("k", delta, init=init)
        if present is MISSING:
            assert "k" not in d
        else:
            assert same_value(d["k"], present)
        return
    got = d.incr("k", delta, init=init)
    assert same_value(got, want), (start, delta, got, want)
    assert same_value(d["k"], want)
    assert d.ttl("k") == 0


# ---------------------------------------------------------------- cas


CAS_CASES: list[tuple[Value, Value, bool]] = [
    (1, 1, True),
    (1, 1.0, False),
    (1, True, False),
    (True, 1, False),
    (1.0, 1, False),
    (True, True, True),
    (False, False, True),
    (True, False, False),
    (False, None, False),
    (None, None, True),
    (None, False, False),
    (0, False, False),
    (0.0, -0.0, True),
    (-0.0, 0.0, True),
    (math.inf, math.inf, True),
    (1.5, 1.5, True),
    (1.5, 1.25, False),
    ("a", "a", True),
    ("a", b"a", False),
    (b"a", "a", False),
    (b"a", b"a", True),
    ("", "", True),
    (b"", b"", True),
    ("", b"", False),
    ("", None, False),
    ("abc", "abd", False),
    ("abc", "ab", False),
    ("x" * 5000, "x" * 5000, True),
    ("x" * 5000, "x" * 4999 + "y", False),
    (INT64_MAX, INT64_MAX, True),
    (INT64_MAX, float(INT64_MAX), False),
]


@pytest.mark.parametrize(("stored", "expected", "ok"), CAS_CASES)
def test_cas_type_and_value(
    d: SharedDict, stored: Value, expected: Value, ok: bool
) -> None:
    d["k"] = stored
    assert d.cas("k", expected, "new") is ok
    if ok:
        assert d["k"] == "new"
    else:
        assert same_value(d["k"], stored)


def test_cas_missing_is_false_and_creates_nothing(d: SharedDict) -> None:
    assert d.cas("k", None, 1) is False
    assert d.cas("k", 0, 1) is False
    assert "k" not in d
    d.set("e", 1, SHORT)
    wait_expired(d, "e")
    assert d.cas("e", 1, 2) is False
    assert "e" not in d


def test_cas_exptime(d: SharedDict) -> None:
    d.set("k", 1, LONG)
    assert d.cas("k", 1, 2) is True  # None: keep the expiry
    t = d.ttl("k")
    assert t is not None
    assert LONG / 2 < t <= LONG + RESOLUTION
    assert d.cas("k", 2, "a bigger value than an int" * 20) is True
    t = d.ttl("k")
    assert t is not None
    assert LONG / 2 < t <= LONG + RESOLUTION
    assert d.cas("k", "a bigger value than an int" * 20, 3, LONG / 10) is True
    t = d.ttl("k")
    assert t is not None
    assert 0 < t <= LONG / 10 + RESOLUTION
    assert d.cas("k", 3, 4, 0) is True
    assert d.ttl("k") == 0
    assert d.cas("k", 4, 5, exptime=None) is True
    assert d.ttl("k") == 0
    # A failed cas leaves the expiry alone.
    d.set("k", 1, LONG)
    assert d.cas("k", 2, 3, 0) is False
    t = d.ttl("k")
    assert t is not None
    assert t > 0
    assert d.stats()["expiring"] == 1
    assert d.verify() == []


def test_cas_bad_arguments(d: SharedDict) -> None:
    d["k"] = 1
    with pytest.raises(TypeError):
        d.cas("k", 1, [2])  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        d.cas("k", [1], 2)  # type: ignore[arg-type]
    with pytest.raises(OverflowError):
        d.cas("k", 1, 2**64)
    with pytest.raises(ValueError, match="finite"):
        d.cas("k", 1, 2, math.nan)
    with pytest.raises(TypeError):
        d.cas(1, 1, 2)  # type: ignore[arg-type]
    assert same_value(d["k"], 1)


def test_cas_increment_loop(d: SharedDict) -> None:
    d["n"] = 0
    for _ in range(100):
        while True:
            v = d["n"]
            assert isinstance(v, int)
            if d.cas("n", v, v + 1):
                break
    assert same_value(d["n"], 100)


@reuse_fixture
@given(stored=small_values, expected=small_values, new=small_values)
def test_cas_property(
    d: SharedDict, stored: Value, expected: Value, new: Value
) -> None:
    d.flush_all()
    d["k"] = stored
    ok = type(stored) is type(expected) and stored == expected
    assert d.cas("k", expected, new) is ok
    assert same_value(d["k"], new if ok else stored)


# ---------------------------------------------------------------- pop


def test_pop(d: SharedDict) -> None:
    d["a"] = 1
    assert same_value(d.pop("a"), 1)
    assert "a" not in d
    with pytest.raises(KeyError):
        d.pop("a")
    assert d.pop("a", "dflt") == "dflt"
    assert d.pop("a", None) is None
    o = object()
    assert d.pop("a", o) is o
    assert d.pop(key="a", default=7) == 7
    assert len(d) == 0


def test_pop_returns_every_type(d: SharedDict) -> None:
    items: dict[str, Value] = {
        "n": None,
        "t": True,
        "f": False,
        "i": INT64_MIN,
        "x": -0.0,
        "s": "\u20ac" * 3000,  # larger than the binding's stack buffer
        "b": b"\x00" * 3000,
        "e": "",
    }
    d.update(items)
    for k, v in items.items():
        assert same_value(d.pop(k), v)
    assert len(d) == 0
    if is_shm(d):
        assert d.free_space() == d.capacity()
    assert d.verify() == []


def test_pop_expired_is_missing(d: SharedDict) -> None:
    d.set("a", 1, SHORT)
    wait_expired(d, "a")
    with pytest.raises(KeyError):
        d.pop("a")
    assert d.pop("a", 5) == 5


@pytest.mark.shm_only("free_space: the server accounts for its own memory")
def test_pop_frees_memory(d: SharedDict) -> None:
    free = d.free_space()
    d["a"] = b"x" * 10000
    assert d.free_space() < free
    d.pop("a")
    assert d.free_space() == free


# ---------------------------------------------------------------- setdefault


def test_setdefault(d: SharedDict) -> None:
    assert d.setdefault("a") is None
    assert "a" in d
    assert d["a"] is None
    assert d.setdefault("a", 5) is None
    assert d.setdefault("b", 5) == 5
    assert d.setdefault("b", 6) == 5
    assert d["b"] == 5
    assert d.ttl("b") == 0
    big = b"y" * 4000
    assert d.setdefault("c", big) == big
    assert d.setdefault("c", b"") == big
    assert same_value(d.setdefault(key="d", default=-0.0), -0.0)


def test_setdefault_over_expired(d: SharedDict) -> None:
    d.set("a", "old", SHORT)
    wait_expired(d, "a")
    assert d.setdefault("a", "new") == "new"
    assert d["a"] == "new"
    assert d.ttl("a") == 0


def test_setdefault_bad_default(d: SharedDict) -> None:
    with pytest.raises(TypeError):
        d.setdefault("a", [1])  # type: ignore[arg-type]
    with pytest.raises(OverflowError):
        d.setdefault("a", -(2**64))
    assert "a" not in d


@reuse_fixture
@given(present=st.one_of(st.just(MISSING), small_values), dflt=small_values)
def test_setdefault_property(d: SharedDict, present: object, dflt: Value) -> None:
    d.flush_all()
    if present is not MISSING:
        d["k"] = present  # type: ignore[assignment]
    want = dflt if present is MISSING else present
    assert same_value(d.setdefault("k", dflt), want)
    assert same_value(d["k"], want)


# ---------------------------------------------------------------- get_many


def test_get_many(d: SharedDict) -> None:
    d.update({"a": 1, "b": "two", "c": None, "big": b"\xff" * 5000})
    got = d.get_many(["a", "missing", "c", "big", "a"])
    assert canon_map(got) == canon_map({"a": 1, "c": None, "big": b"\xff" * 5000})
    assert d.get_many([]) == {}
    assert d.get_many(k for k in ("b",)) == {"b": "two"}
    assert d.get_many(("missing",)) == {}


def test_get_many_skips_expired(d: SharedDict) -> None:
    d.set("a", 1, SHORT)
    d["b"] = 2
    wait_expired(d, "a")
    assert d.get_many(["a", "b"]) == {"b": 2}


def test_get_many_bad_input(d: SharedDict) -> None:
    d["a"] = 1
    with pytest.raises(TypeError):
        d.get_many("a")
    with pytest.raises(TypeError):
        d.get_many(["a", 1])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="empty"):
        d.get_many(["a", ""])
    with pytest.raises(TypeError):
        d.get_many(5)  # type: ignore[arg-type]


@reuse_fixture
@given(
    stored=st.dictionaries(small_keys, small_values, max_size=10),
    asked=st.lists(small_keys, max_size=12),
)
def test_get_many_property(
    d: SharedDict, stored: dict[str, Value], asked: list[str]
) -> None:
    d.flush_all()
    d.set_many(stored)
    want = {k: stored[k] for k in asked if k in stored}
    assert canon_map(d.get_many(asked)) == canon_map(want)


# ---------------------------------------------------------------- set_many


def test_set_many(d: SharedDict) -> None:
    items: dict[str, Value] = {
        "a": 1,
        "b": 1.0,
        "c": True,
        "d": None,
        "e": "\u20ac",
        "f": b"\x00",
        "g": "x" * 10000,
    }
    assert d.set_many(items) is None  # type: ignore[func-returns-value]
    assert snapshot(d) == canon_map(items)
    assert all(d.ttl(k) == 0 for k in items)
    d.set_many({"a": 2, "h": 3}, LONG)
    assert d["a"] == 2
    assert d["h"] == 3
    for k in ("a", "h"):
        t = d.ttl(k)
        assert t is not None
        assert 0 < t <= LONG + RESOLUTION
    assert d.ttl("b") == 0
    d.set_many({}, 5)
    assert len(d) == len(items) + 1
    assert d.verify() == []


def test_set_many_accepts_any_mapping(d: SharedDict) -> None:
    d.set_many(types.MappingProxyType({"a": 1}))
    d.set_many(mapping={"b": 2}, exptime=0)
    d2 = peer(d)
    try:
        d2.set_many(d)  # a SharedDict is a Mapping too
    finally:
        d2.close()
    assert snapshot(d) == canon_map({"a": 1, "b": 2})


def test_set_many_exptime_short(d: SharedDict) -> None:
    d.set_many({"a": 1, "b": 2}, SHORT)
    d["c"] = 3
    wait_expired(d, "a", "b")
    assert d.get_keys() == ["c"]


@pytest.mark.parametrize(
    ("bad", "exc"),
    [
        ({"ok": 1, 5: 2}, TypeError),  # non-str key
        ({"ok": 1, "": 2}, ValueError),  # empty key
        ({"ok": 1, "bad": [1]}, TypeError),  # bad value type
        ({"ok": 1, "bad": 2**64}, OverflowError),  # int too big
        ({"ok": 1, "bad": object()}, TypeError),
    ],
)
def test_set_many_bad_input_stores_nothing(
    d: SharedDict, bad: dict[object, object], exc: type[Exception]
) -> None:
    d["ok"] = "before"
    with pytest.raises(exc):
        d.set_many(bad)  # type: ignore[arg-type]
    assert snapshot(d) == canon_map({"ok": "before"})
    with pytest.raises(TypeError):
        d.set_many("ok")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        d.set_many(5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="finite"):
        d.set_many({"ok": 1}, math.nan)
    assert snapshot(d) == canon_map({"ok": "before"})


def test_set_many_rejects_a_sequence_with_type_error(d: SharedDict) -> None:
    """A list of pairs is not a mapping: the binding means to raise
    TypeError("set_many expects a mapping"), as for other non-mappings."""
    with pytest.raises(TypeError, match="mapping"):
        d.set_many([("ok", 1)])  # type: ignore[arg-type]
    assert "ok" not in d


def test_set_many_on_full_dict_first_item_does_not_fit(small: SharedDict) -> None:
    fill_shrinking(small)
    before = snapshot(small)
    with pytest.raises(shmdict.NoMemoryError) as info:
        small.set_many({"new1": b"z" * 3000, "new2": 1})
    assert info.value.stored == 0  # type: ignore[attr-defined]
    assert snapshot(small) == before
    assert small.verify() == []


def test_set_many_small_batch_that_does_not_fit_changes_nothing(
    small: SharedDict,
) -> None:
    """A batch of three small-to-medium items, of which the first two fit
    and the third doesn't: the docstring promises that a batch this small
    (one transaction) is left entirely unchanged."""
    keys = fill_shrinking(small)
    small.delete(keys[0])
    small.delete(keys[1])
    free = small.free_space()
    assert free >= 1000
    before = snapshot(small)
    batch: dict[str, Value] = {
        "a1": b"y" * 300,
        "a2": b"y" * 100,
        "a3": b"z" * (free + 1000),  # can never fit
    }
    with pytest.raises(shmdict.NoMemoryError) as info:
        small.set_many(batch)
    after = snapshot(small)
    assert sorted(set(after) - set(before)) == [], "part of the batch was stored"
    assert after == before
    assert info.value.stored == 0  # type: ignore[attr-defined]
    assert small.free_space() == free
    assert small.verify() == []


def test_set_many_large_batch_keeps_a_prefix(small: SharedDict) -> None:
    """A batch larger than one transaction that runs out of room keeps
    exactly its first e.stored items."""
    small["old"] = "kept"
    items = {f"k{i:04d}": b"v" * 400 for i in range(200)}
    with pytest.raises(shmdict.NoMemoryError) as info:
        small.set_many(items)
    stored = info.value.stored  # type: ignore[attr-defined]
    assert isinstance(stored, int)
    assert 0 <= stored < len(items)
    names = list(items)
    assert all(small.get(k) == b"v" * 400 for k in names[:stored])
    assert not any(k in small for k in names[stored:])
    assert small["old"] == "kept"
    assert len(small) == stored + 1
    assert small.verify() == []


# ---------------------------------------------------------------- delete_many


def test_delete_many(d: SharedDict) -> None:
    d.update({"a": 1, "b": 2, "c": 3})
    assert d.delete_many(["a", "b", "a", "zz"]) == 2
    assert d.get_keys() == ["c"]
    assert d.delete_many([]) == 0
    assert d.delete_many(iter(["c"])) == 1
    assert len(d) == 0
    if is_shm(d):
        assert d.free_space() == d.capacity()


def test_delete_many_expired_not_counted(d: SharedDict) -> None:
    d.set("a", 1, SHORT)
    d["b"] = 2
    wait_expired(d, "a")
    assert d.delete_many(["a", "b"]) == 1
    assert len(d) == 0
    assert d.get_stale("a") is None  # reclaimed by the write
    assert d.verify() == []


def test_delete_many_bad_input_deletes_nothing(d: SharedDict) -> None:
    d.update({"a": 1, "b": 2})
    with pytest.raises(TypeError):
        d.delete_many(["a", 5])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="empty"):
        d.delete_many(["a", ""])
    with pytest.raises(TypeError):
        d.delete_many("a")
    assert snapshot(d) == canon_map({"a": 1, "b": 2})


# ---------------------------------------------------------------- get_keys


def test_get_keys_max_count(d: SharedDict) -> None:
    ks = {f"k{i}" for i in range(30)}
    d.set_many(dict.fromkeys(ks, 1))
    assert sorted(d.get_keys()) == sorted(ks)
    assert sorted(d.get_keys(0)) == sorted(ks)
    some = d.get_keys(7)
    assert len(some) == 7
    assert set(some) <= ks
    assert len(set(some)) == 7
    assert len(d.get_keys(max_count=1)) == 1
    assert sorted(d.get_keys(1000)) == sorted(ks)
    with pytest.raises(ValueError, match=">= 0"):
        d.get_keys(-1)


# ---------------------------------------------------------------- types


def test_feature_writes_keep_types(d: SharedDict) -> None:
    # A value stored via every feature path reads back with its own type.
    d.add("a", 1)
    d.replace("a", 1.0)
    d.setdefault("b", True)
    d.incr("c", 1, init=0)
    d.set_many({"e": b""})
    d.cas("b", True, None)
    assert [canon(d[k]) for k in "abce"] == [
        canon(1.0),
        canon(None),
        canon(1),
        canon(b""),
    ]

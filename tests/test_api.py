"""The public API: every method, every value type, the mapping protocol,
attributes, close / with / GC behaviour and pickling."""

from __future__ import annotations

import gc
import math
import os
import pickle
import stat
from collections.abc import Callable, MutableMapping

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import shmdict

from .helpers import MiB, fill_until_full
from .redis_fixtures import is_shm, peer
from .strategies import (
    FLOAT_EDGES,
    INT64_MAX,
    INT64_MIN,
    INT_EDGES,
    Value,
    canon,
    canon_map,
    keys,
    same_value,
    values,
)

SharedDict = shmdict.SharedDict

# Reusing the function-scoped dict across examples is intended here: each
# example sets the key it then reads.
reuse_fixture = settings(
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)


# ---------------------------------------------------------------- module


def test_module_constants() -> None:
    assert shmdict.MAX_KEY_BYTES == 1 << 20
    assert shmdict.MIN_SIZE == 64 << 10
    assert shmdict.MAX_SIZE == 64 << 30


def test_error_hierarchy() -> None:
    assert issubclass(shmdict.Error, Exception)
    assert issubclass(shmdict.NoMemoryError, shmdict.Error)
    assert issubclass(shmdict.CorruptError, shmdict.Error)
    assert issubclass(shmdict.LockTimeout, shmdict.Error)
    assert issubclass(shmdict.LockTimeout, TimeoutError)
    # NoMemoryError must not be confused with the builtin MemoryError.
    assert not issubclass(shmdict.NoMemoryError, MemoryError)


def test_new_returns_owner_shared_dict(name: str) -> None:
    d = shmdict.new(name, MiB)
    try:
        assert isinstance(d, SharedDict)
        assert isinstance(d, MutableMapping)
        assert d.owner is True
        assert d.closed is False
        assert d.name == name
        assert d.path == "/dev/shm/" + name
        assert d.size == MiB
        st_ = os.stat(d.path)
        assert stat.S_ISREG(st_.st_mode)
        assert st_.st_size == MiB
        assert len(d) == 0
        assert d.verify() == []
    finally:
        d.close()


def test_size_is_exactly_what_was_asked(name: str) -> None:
    size = shmdict.MIN_SIZE + 12345  # not a multiple of the page size
    with shmdict.new(name, size) as d:
        assert d.size == size
        assert os.stat(d.path).st_size == size
        d.set("k", b"v" * 100)
        assert d.get("k") == b"v" * 100
        with shmdict.get(name) as p:
            assert p.size == size
        assert d.verify() == []


def test_min_and_max_size_accepted(
    name_factory: Callable[[], str], big_dir: str
) -> None:
    with shmdict.new(name_factory(), shmdict.MIN_SIZE) as d:
        assert d.set("k", 1) is True
        assert d["k"] == 1
    with shmdict.new(name_factory(), shmdict.MAX_SIZE, dir=big_dir) as d:
        assert d.size == shmdict.MAX_SIZE
        assert d.set("k", 1) is True
        assert d["k"] == 1


@pytest.mark.shm_only("a peer of shmdict.get: its file, path and size")
def test_get_returns_peer(d: SharedDict) -> None:
    d["a"] = 1
    with shmdict.get(d.name) as p:
        assert isinstance(p, SharedDict)
        assert p.owner is False
        assert p.closed is False
        assert p.name == d.name
        assert p.path == d.path
        assert p.size == d.size
        assert p["a"] == 1
        p["b"] = 2
        assert d["b"] == 2
    assert p.closed is True
    assert os.path.exists(d.path)
    assert d["b"] == 2


def test_exists_and_remove(name: str) -> None:
    assert shmdict.exists(name) is False
    d = shmdict.new(name, MiB)
    assert shmdict.exists(name) is True
    d["k"] = "v"
    assert shmdict.remove(name) is None  # type: ignore[func-returns-value]
    assert shmdict.exists(name) is False
    assert not os.path.exists(d.path)
    # The handle keeps working on the unlinked file.
    assert d["k"] == "v"
    d["k2"] = "v2"
    assert d["k2"] == "v2"
    with pytest.raises(FileNotFoundError):
        shmdict.get(name)
    with pytest.raises(FileNotFoundError):
        shmdict.remove(name)
    d.close()
    assert shmdict.exists(name) is False


# ---------------------------------------------------------------- values

EXPLICIT_VALUES: list[Value] = [
    None,
    True,
    False,
    *INT_EDGES,
    *FLOAT_EDGES,
    "",
    "x",
    "\x00",
    "a\x00b",
    "\u00e9\u20ac\U0001f600",
    "z" * 100_000,
    b"",
    b"\x00",
    b"\x00\xff" * 50_000,
    bytes(range(256)),
]


@pytest.mark.parametrize(
    "value", EXPLICIT_VALUES, ids=lambda v: canon(v)[0] + ":" + canon(v)[1][:20]
)
def test_round_trip_explicit(d: SharedDict, value: Value) -> None:
    assert d.set("k", value) is True
    got = d.get("k", "<missing>")
    assert same_value(got, value), (got, value)
    assert same_value(d["k"], value)
    assert "k" in d
    # A peer sees exactly the same thing.
    with peer(d) as p:
        assert same_value(p["k"], value)


def test_type_identity(d: SharedDict) -> None:
    d["t"] = True
    d["one"] = 1
    d["onef"] = 1.0
    d["zero"] = 0
    d["f"] = False
    assert d["t"] is True
    assert d["f"] is False
    assert type(d["one"]) is int
    assert type(d["onef"]) is float
    assert type(d["zero"]) is int


def test_negative_zero_keeps_sign(d: SharedDict) -> None:
    d["z"] = -0.0
    v = d["z"]
    assert isinstance(v, float)
    assert math.copysign(1.0, v) == -1.0


def test_nan_value_round_trips(d: SharedDict) -> None:
    d["n"] = math.nan
    v = d["n"]
    assert isinstance(v, float)
    assert math.isnan(v)


def test_int64_bounds_exact(d: SharedDict) -> None:
    d["max"] = INT64_MAX
    d["min"] = INT64_MIN
    assert d["max"] == 9223372036854775807
    assert d["min"] == -9223372036854775808
    assert type(d["max"]) is int


@reuse_fixture
@given(key=keys, value=values)
def test_round_trip_any(d: SharedDict, key: str, value: Value) -> None:
    assert d.set(key, value) is True
    assert same_value(d.get(key, "<missing>"), value)
    assert key in d
    assert key in d.get_keys()
    assert d.delete(key) is True
    assert key not in d


@reuse_fixture
@given(st.dictionaries(keys, values, max_size=30))
def test_many_items_round_trip(d: SharedDict, items: dict[str, Value]) -> None:
    d.flush_all()
    for k, v in items.items():
        d[k] = v
    assert len(d) == len(items)
    assert sorted(d.get_keys()) == sorted(items)
    assert canon_map(dict(d.items())) == canon_map(items)
    assert d.verify() == []


def test_overwrite_changes_type(d: SharedDict) -> None:
    seq: list[Value] = [1, "one", b"one", 1.0, True, None, 2**40, "x" * 5000, b""]
    for v in seq:
        d["k"] = v
        assert same_value(d["k"], v)
    assert len(d) == 1
    assert d.verify() == []


# ---------------------------------------------------------------- keys


@pytest.mark.parametrize(
    "key",
    [
        "a",
        " ",
        "\x00",
        "a\x00b",
        "\x00\x00\x00",
        "\u00e9",
        "e\u0301",  # not NFC-normalised: a different key from "\u00e9"
        "\U0001f600",
        "\u4e2d\u6587",
        "\ufeff",
        "\uffff",
        "\U0010ffff",
        "k" * 1000,
    ],
)
def test_key_round_trip(d: SharedDict, key: str) -> None:
    d[key] = key
    assert d[key] == key
    assert d.get_keys() == [key]
    assert list(d) == [key]


def test_keys_differ_by_bytes_after_nul(d: SharedDict) -> None:
    d["a"] = 1
    d["a\x00"] = 2
    d["a\x00b"] = 3
    d["a\x00c"] = 4
    assert (d["a"], d["a\x00"], d["a\x00b"], d["a\x00c"]) == (1, 2, 3, 4)
    assert len(d) == 4


def test_unnormalised_keys_are_distinct(d: SharedDict) -> None:
    d["\u00e9"] = 1
    d["e\u0301"] = 2
    assert d["\u00e9"] == 1
    assert d["e\u0301"] == 2
    assert len(d) == 2


@pytest.mark.parametrize("nbytes", [64 * 1024, 64 * 1024 + 1, 200_000])
def test_long_keys_work(d: SharedDict, nbytes: int) -> None:
    ascii_key = "k" * nbytes
    # 4-byte UTF-8 characters: same byte length, a quarter of the characters.
    wide_key = "\U0001f600" * (nbytes // 4)
    d[ascii_key] = 1
    d[wide_key] = 2
    assert d[ascii_key] == 1
    assert d[wide_key] == 2
    assert d.ttl(ascii_key) == 0
    assert sorted(d.get_keys()) == sorted([ascii_key, wide_key])
    assert d.delete(ascii_key) is True
    assert ascii_key not in d
    assert d.verify() == []


def test_key_of_max_key_bytes(name: str) -> None:
    """A key of exactly MAX_KEY_BYTES UTF-8 bytes is within the limit."""
    with shmdict.new(name, 16 * MiB) as d:
        key = "\u00e9" * (shmdict.MAX_KEY_BYTES // 2)
        assert len(key.encode()) == shmdict.MAX_KEY_BYTES
        d[key] = b"v"
        assert d[key] == b"v"
        assert d.get_keys() == [key]
        assert d.verify() == []


def test_many_keys(d: SharedDict) -> None:
    n = 3000
    for i in range(n):
        d[f"key-{i}"] = i
    assert len(d) == n
    for i in range(n):
        assert d[f"key-{i}"] == i
    assert sorted(d.get_keys()) == sorted(f"key-{i}" for i in range(n))
    assert d.verify() == []
    for i in range(0, n, 2):
        del d[f"key-{i}"]
    assert len(d) == n // 2
    assert all(f"key-{i}" in d for i in range(1, n, 2))
    assert not any(f"key-{i}" in d for i in range(0, n, 2))
    assert d.verify() == []


# ---------------------------------------------------------------- methods


def test_set_returns_true(d: SharedDict) -> None:
    assert d.set("a", 1) is True
    assert d.set("a", 2) is True
    assert d.set("a", 3, 0) is True
    assert d.set("a", 4, exptime=100) is True
    assert d.set("b", 5, exptime=-1) is True


def test_get_default(d: SharedDict) -> None:
    assert d.get("missing") is None
    assert d.get("missing", 42) == 42
    sentinel = object()
    assert d.get("missing", sentinel) is sentinel
    d["none"] = None
    assert d.get("none", sentinel) is None
    d["zero"] = 0
    assert d.get("zero", 5) == 0


def test_delete(d: SharedDict) -> None:
    assert d.delete("a") is False
    d["a"] = 1
    assert d.delete("a") is True
    assert d.delete("a") is False
    assert "a" not in d
    assert d.get("a") is None
    assert len(d) == 0


def test_incr_int(d: SharedDict) -> None:
    d["n"] = 10
    assert d.incr("n", 5) == 15
    r = d.incr("n", -20)
    assert r == -5
    assert type(r) is int
    assert d["n"] == -5
    assert type(d["n"]) is int
    assert d.incr("n", 0) == -5


def test_incr_float(d: SharedDict) -> None:
    d["i"] = 1
    r = d.incr("i", 0.5)
    assert r == 1.5
    assert type(r) is float
    assert same_value(d["i"], 1.5)
    d["f"] = 1.5
    r = d.incr("f", 2)
    assert r == 3.5
    assert type(r) is float
    assert same_value(d["f"], 3.5)
    d["g"] = 2.0
    r = d.incr("g", -2)
    assert type(r) is float
    assert r == 0.0
    assert same_value(d["g"], r)


def test_incr_to_int64_bounds(d: SharedDict) -> None:
    d["n"] = INT64_MAX - 1
    assert d.incr("n", 1) == INT64_MAX
    d["m"] = INT64_MIN + 1
    assert d.incr("m", -1) == INT64_MIN
    d["x"] = INT64_MIN
    assert d.incr("x", INT64_MAX) == -1
    d["y"] = 0
    assert d.incr("y", INT64_MIN) == INT64_MIN


def test_incr_big_int_plus_float_like_python(d: SharedDict) -> None:
    d["n"] = 2**53 + 1
    r = d.incr("n", 0.0)
    assert same_value(r, float(2**53 + 1) + 0.0)


def test_ttl_and_expire_basics(d: SharedDict) -> None:
    assert d.ttl("missing") is None
    d["k"] = 1
    assert d.ttl("k") == 0
    assert d.expire("k", 100) is True
    t = d.ttl("k")
    assert t is not None
    assert 0 < t <= 100
    assert d.expire("k", 0) is True
    assert d.ttl("k") == 0
    assert d.expire("missing", 100) is False
    assert "missing" not in d


def test_flush_all(d: SharedDict) -> None:
    for i in range(100):
        d.set(f"k{i}", i, exptime=100 if i % 2 else 0)
    assert d.flush_all() is None  # type: ignore[func-returns-value]
    assert len(d) == 0
    assert d.get_keys() == []
    assert d.get("k1") is None
    assert d.ttl("k1") is None
    d["k1"] = "again"
    assert d["k1"] == "again"
    assert d.ttl("k1") == 0
    assert d.verify() == []


def test_flush_all_leaves_no_old_bytes(name: str) -> None:
    """flush_all zeroes the whole heap: no byte of a flushed key or value
    stays in the file, the heap's first and last pages included."""
    d = shmdict.new(name, shmdict.MIN_SIZE)
    try:
        i = fill_until_full(d, "secret-key-", b"SECRET-VALUE" * 8)
        assert i > 10
        with open(shmdict.path_for(name), "rb") as f:
            assert f.read().count(b"SECRET-VALUE") >= 8 * i
        d.flush_all()
        with open(shmdict.path_for(name), "rb") as f:
            raw = f.read()
        assert b"SECRET" not in raw
        assert b"secret-key-" not in raw
        d["again"] = 1
        assert d.verify() == []
    finally:
        d.close()


def test_flush_all_seen_by_peer(d: SharedDict) -> None:
    with peer(d) as p:
        d["a"] = 1
        p.flush_all()
        assert len(d) == 0
        assert "a" not in d


def test_get_keys(d: SharedDict) -> None:
    assert d.get_keys() == []
    d["a"] = 1
    d["b"] = None
    d["c"] = 2
    ks = d.get_keys()
    assert isinstance(ks, list)
    assert all(type(k) is str for k in ks)
    assert sorted(ks) == ["a", "b", "c"]


# ---------------------------------------------------------------- mapping


def test_mapping_protocol(d: SharedDict) -> None:
    d["a"] = 1
    assert d["a"] == 1
    with pytest.raises(KeyError):
        d["missing"]
    with pytest.raises(KeyError):
        del d["missing"]
    del d["a"]
    assert "a" not in d
    with pytest.raises(KeyError):
        d["a"]
    d["n"] = None
    assert "n" in d
    assert d["n"] is None
    assert len(d) == 1
    assert list(iter(d)) == ["n"]


def test_mapping_mixins(d: SharedDict) -> None:
    d.update({"a": 1, "b": "two"}, c=3.0)
    assert d == {"a": 1, "b": "two", "c": 3.0}
    assert d != {"a": 1}
    assert sorted(d.keys()) == ["a", "b", "c"]
    assert sorted(d.items(), key=lambda kv: kv[0]) == [
        ("a", 1),
        ("b", "two"),
        ("c", 3.0),
    ]
    assert sorted(map(repr, d.values())) == sorted(map(repr, [1, "two", 3.0]))
    assert d.pop("a") == 1
    assert "a" not in d
    assert d.pop("a", "dflt") == "dflt"
    with pytest.raises(KeyError):
        d.pop("a")
    assert d.setdefault("b", "other") == "two"
    assert d.setdefault("z", 9) == 9
    assert d["z"] == 9
    assert d.setdefault("none") is None
    assert "none" in d
    assert d["none"] is None
    k, _v = d.popitem()
    assert k not in d
    before = len(d)
    d.clear()
    assert len(d) == 0
    assert before > 0
    with pytest.raises(KeyError):
        d.popitem()


def test_equality_between_handles(d: SharedDict) -> None:
    d.update(a=1, b=b"x")
    with peer(d) as p:
        assert p == d
        assert d == p
        d["c"] = 3
        assert p == d
    assert d != {"a": 1, "b": b"x"}


def test_iteration_lists_live_keys(d: SharedDict) -> None:
    for i in range(50):
        d[str(i)] = i
    assert sorted(d, key=int) == [str(i) for i in range(50)]
    assert sorted(v for v in d.values() if isinstance(v, int)) == list(range(50))


# ---------------------------------------------------------------- close


def test_close_owner_removes_file(name: str) -> None:
    d = shmdict.new(name, MiB)
    path = d.path
    assert os.path.exists(path)
    assert d.close() is None  # type: ignore[func-returns-value]
    assert d.closed is True
    assert not os.path.exists(path)
    assert shmdict.exists(name) is False
    d.close()  # idempotent
    d.close()
    assert d.closed is True


@pytest.mark.shm_only("the file under /dev/shm")
def test_close_peer_keeps_file(d: SharedDict) -> None:
    p = shmdict.get(d.name)
    p.close()
    p.close()
    assert p.closed is True
    assert os.path.exists(d.path)
    d["a"] = 1
    assert d["a"] == 1


def test_with_statement(name: str) -> None:
    d = shmdict.new(name, MiB)
    with d as entered:
        assert entered is d
        d["a"] = 1
        with shmdict.get(name) as p:
            assert p["a"] == 1
        assert p.closed
        assert os.path.exists(d.path)
    assert d.closed
    assert not shmdict.exists(name)


def test_with_closes_on_exception(name: str) -> None:
    with pytest.raises(RuntimeError), shmdict.new(name, MiB) as d:
        raise RuntimeError("boom")
    assert d.closed
    assert not shmdict.exists(name)


def test_gc_of_owner_removes_file(name: str) -> None:
    d = shmdict.new(name, MiB)
    path = d.path
    del d
    gc.collect()
    assert not os.path.exists(path)


@pytest.mark.shm_only("the file under /dev/shm")
def test_gc_of_peer_keeps_file(d: SharedDict) -> None:
    p = shmdict.get(d.name)
    p["a"] = 1
    del p
    gc.collect()
    assert os.path.exists(d.path)
    assert d["a"] == 1


def test_gc_of_owner_in_cycle_removes_file(name: str) -> None:
    d = shmdict.new(name, MiB)
    path = d.path
    holder: list[object] = [d]
    holder.append(holder)
    del d, holder
    gc.collect()
    assert not os.path.exists(path)


def test_owner_close_leaves_open_peers_working(name: str) -> None:
    d = shmdict.new(name, MiB)
    d["a"] = 1
    p = shmdict.get(name)
    d.close()
    assert not shmdict.exists(name)
    with pytest.raises(FileNotFoundError):
        shmdict.get(name)
    assert p["a"] == 1
    p["b"] = 2
    assert p.incr("a", 1) == 2
    assert sorted(p.get_keys()) == ["a", "b"]
    assert p.verify() == []
    p.close()


# ---------------------------------------------------------------- pickle


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
@pytest.mark.shm_only("a SharedDict peer: its path, size and file")
def test_pickle_gives_peer(d: SharedDict, protocol: int) -> None:
    d["a"] = 1
    p = pickle.loads(pickle.dumps(d, protocol=protocol))
    try:
        assert isinstance(p, SharedDict)
        assert p is not d
        assert p.owner is False
        assert p.name == d.name
        assert p.path == d.path
        assert p.size == d.size
        assert p["a"] == 1
        p["b"] = 2
        assert d["b"] == 2
    finally:
        p.close()
    assert os.path.exists(d.path)
    assert d["a"] == 1


def test_pickle_of_peer(d: SharedDict) -> None:
    with peer(d) as p:
        q = pickle.loads(pickle.dumps(p))
        with q:
            assert q.owner is False
            q["x"] = "y"
            assert d["x"] == "y"
    if is_shm(d):
        assert os.path.exists(d.path)
    assert d["x"] == "y"


def test_unpickle_after_removal_fails(name: str) -> None:
    d = shmdict.new(name, MiB)
    blob = pickle.dumps(d)
    d.close()
    with pytest.raises(FileNotFoundError):
        pickle.loads(blob)


# ---------------------------------------------------------------- verify


def test_verify_healthy_after_mixed_work(d: SharedDict) -> None:
    for i in range(500):
        d.set(f"k{i}", "v" * (i % 97), exptime=1000 if i % 3 == 0 else 0)
    for i in range(0, 500, 3):
        d.delete(f"k{i}")
    for i in range(1, 500, 5):
        d.set(f"k{i}", b"w" * (i % 211))
    problems = d.verify()
    assert isinstance(problems, list)
    assert problems == []


# ---------------------------------------------------------------- extras


def test_repr(d: SharedDict) -> None:
    r = repr(d)
    assert isinstance(r, str)
    assert d.name in r
    p = peer(d)
    p.close()
    # repr of a closed handle must not raise.
    assert d.name in repr(p)


def test_path_for(name: str) -> None:
    assert shmdict.path_for(name) == "/dev/shm/" + name
    assert not shmdict.exists(name)  # path_for creates nothing
    with pytest.raises(ValueError, match="/"):
        shmdict.path_for("a/b")


def test_format_version() -> None:
    assert isinstance(shmdict.FORMAT_VERSION, int)
    assert shmdict.FORMAT_VERSION >= 1


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _maps() -> int:
    with open("/proc/self/maps") as f:
        return sum(1 for _ in f)


@pytest.mark.shm_only("the mappings of the file")
def test_handles_do_not_leak_fds_or_mappings(d: SharedDict) -> None:
    for _ in range(5):  # warm up caches of the interpreter
        shmdict.get(d.name).close()
    fds, maps = _open_fds(), _maps()
    for i in range(500):
        p = shmdict.get(d.name)
        p[f"k{i % 10}"] = i
        if i % 2:
            p.close()
        else:
            del p  # dropped without close
    gc.collect()
    assert _open_fds() <= fds
    assert _maps() <= maps + 2

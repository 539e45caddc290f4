"""Bad inputs raise the documented exception and change nothing.

Every case runs against a dict holding one key of each value type (one of
them with a TTL); after the expected exception the contents, types and TTLs
must be exactly what they were.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

import shmdict

from .helpers import MiB, shm_files
from .redis_fixtures import peer
from .strategies import INT64_MAX, INT64_MIN, canon_map

SharedDict = shmdict.SharedDict

TOO_LONG_ASCII = "k" * ((1 << 20) + 1)
# 2 bytes per character: few enough characters, too many bytes.
TOO_LONG_WIDE = "\u00e9" * ((1 << 20) // 2 + 1)

CONTENTS: dict[str, Any] = {
    "int": 5,
    "float": 1.5,
    "str": "s",
    "bytes": b"b",
    "none": None,
    "bool": True,
    "max": INT64_MAX,
    "min": INT64_MIN,
    "negzero": -0.0,
}
TTL_KEY = "ttl"  # holds 7, expires in 1000 s


Exc = type[BaseException] | tuple[type[BaseException], ...]


@dataclass(frozen=True)
class Case:
    id: str
    call: Callable[[Any], object]
    exc: Exc


def call(method: str, *args: Any, **kw: Any) -> Callable[[Any], object]:
    """``lambda d: d.method(*args, **kw)``, typed loosely on purpose: these
    calls pass wrong types."""
    return lambda d: getattr(d, method)(*args, **kw)


def setitem(k: Any, v: Any) -> Callable[[Any], object]:
    return call("__setitem__", k, v)


KEY_METHOD_CALLS: list[tuple[str, Callable[[Any], Callable[[Any], object]]]] = [
    ("set", lambda k: call("set", k, 1)),
    ("set-ttl", lambda k: call("set", k, 1, 100)),
    ("get", lambda k: call("get", k)),
    ("get-default", lambda k: call("get", k, 0)),
    ("delete", lambda k: call("delete", k)),
    ("incr", lambda k: call("incr", k, 1)),
    ("ttl", lambda k: call("ttl", k)),
    ("expire", lambda k: call("expire", k, 5)),
    ("setitem", lambda k: setitem(k, 1)),
    ("getitem", lambda k: call("__getitem__", k)),
    ("delitem", lambda k: call("__delitem__", k)),
]

BAD_KEYS: list[tuple[str, Any, Exc]] = [
    ("int", 1, TypeError),
    ("bytes", b"int", TypeError),
    ("none", None, TypeError),
    ("float", 1.5, TypeError),
    ("tuple", ("int",), TypeError),
    ("empty", "", ValueError),
    ("too-long-ascii", TOO_LONG_ASCII, ValueError),
    ("too-long-wide", TOO_LONG_WIDE, ValueError),
    ("lone-high-surrogate", "\ud800", UnicodeEncodeError),
    ("lone-low-surrogate", "a\udfffb", UnicodeEncodeError),
]

KEY_CASES = [
    Case(f"{mid}-key-{kid}", make(key), exc)
    for kid, key, exc in BAD_KEYS
    for mid, make in KEY_METHOD_CALLS
]

BAD_VALUES: list[Any] = [
    [1],
    {"a": 1},
    bytearray(b"x"),
    memoryview(b"x"),
    object(),
    (1,),
    {1},
    1j,
    type,
]

VALUE_CASES: list[Case] = []
for bad_value in BAD_VALUES:
    tag = type(bad_value).__name__
    VALUE_CASES += [
        Case(f"set-new-{tag}", call("set", "new", bad_value), TypeError),
        Case(f"overwrite-{tag}", call("set", "int", bad_value), TypeError),
        Case(f"overwrite-ttl-{tag}", call("set", "ttl", bad_value, 5), TypeError),
        Case(f"setitem-{tag}", setitem("str", bad_value), TypeError),
    ]
for big in [2**63, -(2**63) - 1, 2**64, 2**100, -(2**100)]:
    VALUE_CASES += [
        Case(f"set-new-int-{big:x}", call("set", "new", big), OverflowError),
        Case(f"overwrite-int-{big:x}", call("set", "int", big), OverflowError),
        Case(f"overwrite-ttl-int-{big:x}", call("set", "ttl", big), OverflowError),
        Case(f"setitem-int-{big:x}", setitem("float", big), OverflowError),
    ]
VALUE_CASES += [
    Case(
        "overwrite-too-big-for-dict",
        call("set", "str", b"x" * (2 * MiB)),
        shmdict.NoMemoryError,
    ),
    Case(
        "overwrite-ttl-too-big-for-dict",
        call("set", "ttl", "y" * (2 * MiB), 5),
        shmdict.NoMemoryError,
    ),
    Case(
        "set-new-too-big-for-dict",
        call("set", "new", b"x" * (2 * MiB)),
        shmdict.NoMemoryError,
    ),
]

EXPTIME_CASES: list[Case] = []
for bad_exp, exc in [
    (math.nan, ValueError),
    (math.inf, ValueError),
    (-math.inf, ValueError),
    ("5", TypeError),
    (b"5", TypeError),
    ([5], TypeError),
]:
    tag = repr(bad_exp)
    EXPTIME_CASES += [
        Case(f"set-new-exptime-{tag}", call("set", "new", 1, bad_exp), exc),
        Case(f"set-exptime-{tag}", call("set", "int", 6, bad_exp), exc),
        Case(f"set-ttl-exptime-{tag}", call("set", "ttl", 8, bad_exp), exc),
        Case(f"set-kw-exptime-{tag}", call("set", "int", 6, exptime=bad_exp), exc),
        Case(f"expire-{tag}", call("expire", "int", bad_exp), exc),
        Case(f"expire-ttl-{tag}", call("expire", "ttl", bad_exp), exc),
        Case(f"incr-exptime-{tag}", call("incr", "int", 1, bad_exp), exc),
        Case(f"incr-ttl-exptime-{tag}", call("incr", "ttl", 1, bad_exp), exc),
    ]
EXPTIME_CASES += [
    Case("set-exptime-None", call("set", "int", 6, None), TypeError),
    Case("set-ttl-exptime-None", call("set", "ttl", 6, None), TypeError),
    Case("set-new-exptime-None", call("set", "new", 6, None), TypeError),
]

INCR_CASES: list[Case] = [
    Case("incr-missing", call("incr", "missing", 1), KeyError),
    Case("incr-missing-exptime", call("incr", "missing", 1, 100), KeyError),
    Case("incr-str", call("incr", "str", 1), TypeError),
    Case("incr-bytes", call("incr", "bytes", 1), TypeError),
    Case("incr-none", call("incr", "none", 1), TypeError),
    Case("incr-bool", call("incr", "bool", 1), TypeError),
    Case("incr-bool-exptime", call("incr", "bool", 1, 100), TypeError),
    Case("incr-delta-true", call("incr", "int", True), TypeError),
    Case("incr-delta-false", call("incr", "float", False), TypeError),
    Case("incr-delta-str", call("incr", "int", "1"), TypeError),
    Case("incr-delta-none", call("incr", "int", None), TypeError),
    Case("incr-delta-bytes", call("incr", "int", b"1"), TypeError),
    Case("incr-delta-nan", call("incr", "int", math.nan), ValueError),
    Case("incr-delta-inf", call("incr", "float", math.inf), ValueError),
    Case("incr-delta-minus-inf", call("incr", "int", -math.inf), ValueError),
    Case("incr-ttl-delta-nan", call("incr", "ttl", math.nan, 5), ValueError),
    Case("incr-overflow-up", call("incr", "max", 1), OverflowError),
    Case("incr-overflow-down", call("incr", "min", -1), OverflowError),
    Case("incr-overflow-big-delta", call("incr", "int", INT64_MAX), OverflowError),
    Case("incr-overflow-with-exptime", call("incr", "max", 1, 5), OverflowError),
    Case("incr-overflow-ttl-key", call("incr", "ttl", INT64_MAX), OverflowError),
    Case("incr-delta-out-of-int64", call("incr", "int", 2**63), OverflowError),
    Case("incr-delta-far-out-of-int64", call("incr", "int", -(2**80)), OverflowError),
]

MAPPING_CASES: list[Case] = [
    Case("getitem-missing", call("__getitem__", "missing"), KeyError),
    Case("delitem-missing", call("__delitem__", "missing"), KeyError),
    Case("pop-missing", call("pop", "missing"), KeyError),
]

SIGNATURE_CASES: list[Case] = [
    Case("set-no-value", call("set", "int"), TypeError),
    Case("set-too-many-args", call("set", "int", 1, 2, 3), TypeError),
    Case("set-unknown-kw", call("set", "int", 1, ttl=5), TypeError),
    Case("get-no-args", call("get"), TypeError),
    Case("incr-no-delta", call("incr", "int"), TypeError),
    Case("expire-no-exptime", call("expire", "int"), TypeError),
    Case("flush-all-arg", call("flush_all", 1), TypeError),
    Case("ttl-two-args", call("ttl", "int", 1), TypeError),
]

ALL_CASES = (
    KEY_CASES
    + VALUE_CASES
    + EXPTIME_CASES
    + INCR_CASES
    + MAPPING_CASES
    + SIGNATURE_CASES
)


def _fill(d: SharedDict) -> None:
    for k, v in CONTENTS.items():
        d[k] = v
    d.set(TTL_KEY, 7, 1000)


def _ttls(d: SharedDict) -> dict[str, float | None]:
    return {k: d.ttl(k) for k in d.get_keys()}


def _assert_unchanged(
    d: SharedDict,
    before: dict[str, tuple[str, str]],
    ttls_before: dict[str, float | None],
) -> None:
    assert canon_map(dict(d.items())) == before
    ttls = _ttls(d)
    assert set(ttls) == set(ttls_before)
    for k, t in ttls.items():
        t0 = ttls_before[k]
        if t0 == 0:
            assert t == 0, k
        else:
            # Still expiring, never pushed later, and not cut short.
            assert t is not None
            assert t0 is not None
            assert 0 < t <= t0 + 0.002, (k, t0, t)
            assert t > t0 - 60, (k, t0, t)
    assert d.verify() == []


@pytest.fixture
def filled(d: SharedDict) -> SharedDict:
    _fill(d)
    return d


def _params(cases: list[Case]) -> list[Any]:
    """The cases; a value bigger than the whole dict is a NoMemoryError of
    shm's fixed size alone (Redis has room for it)."""
    return [
        pytest.param(c, marks=pytest.mark.shm_only("a value bigger than the dict"))
        if c.id.endswith("too-big-for-dict")
        else c
        for c in cases
    ]


@pytest.mark.parametrize("case", _params(ALL_CASES), ids=lambda c: c.id)
def test_bad_input_changes_nothing(filled: SharedDict, case: Case) -> None:
    d = filled
    before = canon_map(dict(d.items()))
    ttls_before = _ttls(d)
    assert len(before) == len(CONTENTS) + 1
    with pytest.raises(case.exc):
        case.call(d)
    _assert_unchanged(d, before, ttls_before)
    # A second handle sees the same untouched contents.
    with peer(d) as p:
        assert canon_map(dict(p.items())) == before


def test_unicode_error_is_value_error() -> None:
    assert issubclass(UnicodeEncodeError, ValueError)


def test_surrogate_in_str_value(filled: SharedDict) -> None:
    """A str value that is not valid Unicode either raises UnicodeEncodeError
    and changes nothing, or round-trips exactly; never anything else."""
    d = filled
    before = canon_map(dict(d.items()))
    ttls_before = _ttls(d)
    bad = "a\ud800b"
    try:
        d.set("str", bad)
    except UnicodeEncodeError:
        _assert_unchanged(d, before, ttls_before)
    else:
        assert d["str"] == bad
        assert d.verify() == []


# ---------------------------------------------------------------- closed


CLOSED_CALLS: list[tuple[str, Callable[[Any], object]]] = [
    ("set", lambda h: h.set("int", 99)),
    ("set-new", lambda h: h.set("new", 99)),
    ("get", lambda h: h.get("int")),
    ("get-missing", lambda h: h.get("missing")),
    ("delete", lambda h: h.delete("int")),
    ("incr", lambda h: h.incr("int", 1)),
    ("ttl", lambda h: h.ttl("ttl")),
    ("expire", lambda h: h.expire("ttl", 0)),
    ("flush_all", lambda h: h.flush_all()),
    ("get_keys", lambda h: h.get_keys()),
    ("verify", lambda h: h.verify()),
    ("getitem", lambda h: h["int"]),
    ("setitem", setitem("int", 99)),
    ("delitem", call("__delitem__", "int")),
    ("contains", lambda h: "int" in h),
    ("len", lambda h: len(h)),
    ("iter", lambda h: list(h)),
    ("keys", lambda h: list(h.keys())),
    ("items", lambda h: list(h.items())),
    ("clear", lambda h: h.clear()),
    ("update", lambda h: h.update(int=99)),
    ("pop", lambda h: h.pop("int")),
]


@pytest.mark.parametrize(
    "call", [c for _, c in CLOSED_CALLS], ids=[i for i, _ in CLOSED_CALLS]
)
@pytest.mark.parametrize("which", ["peer", "owner"])
def test_closed_handle_raises_value_error(
    name: str, which: str, call: Callable[[SharedDict], object]
) -> None:
    owner = shmdict.new(name, MiB)
    _fill(owner)
    witness = shmdict.get(name)
    try:
        before = canon_map(dict(witness.items()))
        ttls_before = _ttls(witness)
        closed = shmdict.get(name) if which == "peer" else owner
        closed.close()
        assert closed.closed is True
        with pytest.raises(ValueError, match="closed"):
            call(closed)
        closed.close()  # still idempotent after a failed call
        _assert_unchanged(witness, before, ttls_before)
    finally:
        witness.close()
        owner.close()


# ---------------------------------------------------------------- module


def _no_new_files(name: str) -> None:
    assert shm_files(name) == []


BAD_NAMES: list[
    tuple[str, Any, type[BaseException] | tuple[type[BaseException], ...]]
] = [
    ("empty", "", ValueError),
    ("dot", ".", ValueError),
    ("dotdot", "..", ValueError),
    ("slash", "a/b", ValueError),
    ("leading-slash", "/x", ValueError),
    ("trailing-slash", "x/", ValueError),
    ("dotdot-path", "../etc", ValueError),
    ("nul", "a\x00b", ValueError),
    ("lone-surrogate", "a\ud800", ValueError),
    ("bytes", b"name", TypeError),
    ("none", None, TypeError),
    ("int", 1, TypeError),
    ("too-long", "n" * 300, (ValueError, OSError)),
]


def _exists(n: Any) -> object:
    return shmdict.exists(n)


MODULE_FUNCS: list[tuple[str, Callable[[Any], object]]] = [
    ("new", lambda n: shmdict.new(n, MiB)),
    ("get", lambda n: shmdict.get(n)),
    ("remove", lambda n: shmdict.remove(n)),
    ("exists", _exists),
]


# Paths a careless join of "/dev/shm/" and a bad name could create.
STRAY_CANDIDATES = [
    "/dev/shm/a",
    "/dev/shm/x",
    "/dev/shm/etc",
    "/dev/shm/name",
    "/dev/shm/None",
    "/dev/shm/1",
    "/dev/etc",
    "/x",
    "/dev/shm/" + "n" * 255,
]


@pytest.mark.parametrize(
    "func", [f for _, f in MODULE_FUNCS], ids=[i for i, _ in MODULE_FUNCS]
)
@pytest.mark.parametrize(
    ("bad_name", "exc"),
    [(n, e) for _, n, e in BAD_NAMES],
    ids=[i for i, _, _ in BAD_NAMES],
)
def test_bad_names(
    func: Callable[[Any], object],
    bad_name: Any,
    exc: type[BaseException] | tuple[type[BaseException], ...],
) -> None:
    before = {p for p in STRAY_CANDIDATES if os.path.lexists(p)}
    if func is _exists and bad_name == "a\ud800":
        # Not a listed name rule: exists() may answer False (no such file
        # can exist) instead of raising.
        with contextlib.suppress(ValueError):
            assert shmdict.exists(bad_name) is False
        return
    with pytest.raises(exc):
        func(bad_name)
    after = {p for p in STRAY_CANDIDATES if os.path.lexists(p)}
    assert after == before


def test_too_long_name_does_not_leave_files(name: str) -> None:
    long_name = name + "n" * 300
    with pytest.raises((ValueError, OSError)):
        shmdict.new(long_name, MiB)
    _no_new_files(name)


@pytest.mark.parametrize(
    ("size", "exc"),
    [
        (0, ValueError),
        (-1, ValueError),
        (1, ValueError),
        (64 * 1024 - 1, ValueError),
        ((64 << 30) + 1, ValueError),
        (1 << 40, ValueError),
        (2**64, ValueError),
        (-(2**64), ValueError),
        (float(MiB), TypeError),
        ("1M", TypeError),
        (None, TypeError),
        (b"1", TypeError),
    ],
    ids=repr,
)
def test_bad_sizes(name: str, size: Any, exc: type[BaseException]) -> None:
    with pytest.raises(exc):
        shmdict.new(name, size)
    assert not shmdict.exists(name)
    _no_new_files(name)


@pytest.mark.shm_only("the file shmdict.new makes")
def test_new_over_existing_name_changes_nothing(d: SharedDict) -> None:
    _fill(d)
    before = canon_map(dict(d.items()))
    ttls_before = _ttls(d)
    ino = os.stat(d.path).st_ino
    with pytest.raises(FileExistsError):
        shmdict.new(d.name, MiB)
    with pytest.raises(FileExistsError):
        shmdict.new(d.name, 2 * MiB)
    assert os.stat(d.path).st_ino == ino
    assert os.stat(d.path).st_size == MiB
    _assert_unchanged(d, before, ttls_before)


def test_get_missing(name: str) -> None:
    with pytest.raises(FileNotFoundError):
        shmdict.get(name)
    _no_new_files(name)


def test_remove_missing(name: str) -> None:
    with pytest.raises(FileNotFoundError):
        shmdict.remove(name)


def test_exists_missing(name: str) -> None:
    assert shmdict.exists(name) is False
    _no_new_files(name)


def test_unknown_keyword_to_new(name: str) -> None:
    with pytest.raises(TypeError):
        shmdict.new(name, MiB, bogus=1)  # type: ignore[call-arg]
    assert not shmdict.exists(name)
    with pytest.raises(TypeError):
        shmdict.new(name, MiB, 0o600)  # type: ignore[call-arg]  # mode is keyword-only
    assert not shmdict.exists(name)


# ---------------------------------------------------------------- exptime edges


@pytest.mark.parametrize("exptime", [-1, -0.5, -1e300, 0, 0.0, -0.0, -(2**62)])
def test_non_positive_exptime_means_no_expiry(d: SharedDict, exptime: float) -> None:
    assert d.set("k", 1, exptime) is True
    assert d.ttl("k") == 0
    d.set("e", 1, 100)
    assert d.expire("e", exptime) is True
    assert d.ttl("e") == 0
    d.set("i", 1, 100)
    assert d.incr("i", 1, exptime) == 2
    assert d.ttl("i") == 0


@pytest.mark.parametrize(
    "exptime", [1e9, 1e12, 1e15, 1e18, 1e300, 2**62, 2**64, 2**100]
)
def test_huge_exptime(filled: SharedDict, exptime: float) -> None:
    """A huge exptime either raises ValueError/OverflowError and changes
    nothing, or stores a key that expires far in the future (ttl > 0)."""
    d = filled
    ops: list[tuple[str, Callable[[], object]]] = [
        ("set", lambda: d.set("int", 6, exptime)),
        ("expire", lambda: d.expire("int", exptime)),
        ("incr", lambda: d.incr("int", 1, exptime)),
    ]
    for label, op in ops:
        before = canon_map(dict(d.items()))
        ttls_before = _ttls(d)
        try:
            op()
        except (ValueError, OverflowError):
            _assert_unchanged(d, before, ttls_before)
        else:
            t = d.ttl("int")
            assert t is not None
            assert t > 1e6, (label, t)
            assert "int" in d
            d.set("int", 5)
    assert d.verify() == []


@pytest.mark.parametrize("mode", [-1, 0o1000, 0o4755, 2**40])
def test_bad_mode(name: str, mode: int) -> None:
    with pytest.raises(ValueError, match="mode"):
        shmdict.new(name, MiB, mode=mode)
    assert not shmdict.exists(name)


@pytest.mark.parametrize("timeout", [math.nan, -1, -0.001, -math.inf])
def test_bad_lock_timeout(name: str, timeout: float) -> None:
    """Negative and NaN lock timeouts are refused by new() and get()."""
    with pytest.raises(ValueError, match="lock_timeout"):
        shmdict.new(name, MiB, lock_timeout=timeout)
    assert not shmdict.exists(name)
    with shmdict.new(name, MiB), pytest.raises(ValueError, match="lock_timeout"):
        shmdict.get(name, lock_timeout=timeout)


@pytest.mark.parametrize("timeout", [0, 0.0, 0.0001, 2.5, 1e300, math.inf])
def test_good_lock_timeout(name: str, timeout: float) -> None:
    """0 (try once), any positive time and math.inf (no limit) are taken
    and kept as given."""
    with shmdict.new(name, MiB, lock_timeout=timeout) as d:
        assert d.lock_timeout == timeout
        d["k"] = 1
        with shmdict.get(name, lock_timeout=timeout) as p:
            assert p.lock_timeout == timeout
            assert p["k"] == 1

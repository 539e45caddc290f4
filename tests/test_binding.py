"""The CPython binding itself (src/shmdict/_core/): where it is imported
from, the constants it exports, the one place Dict()'s arguments are
checked, the enter bracket on every method, and the status table's
messages, which name the call that failed."""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
from collections.abc import Callable
from typing import Any

import pytest

import shmdict
from shmdict import __main__ as cli
from shmdict import _core

MiB = 1 << 20


# ---- the module --------------------------------------------------------------


def test_core_is_the_extension_not_its_source_directory() -> None:
    """src/shmdict/_core/ (the C sources, no __init__.py) sits next to the
    extension module: the import must find the extension."""
    spec = importlib.util.find_spec("shmdict._core")
    assert spec is not None
    assert spec.origin is not None
    assert spec.origin.endswith(".so"), spec.origin
    assert _core.__file__ == spec.origin
    assert isinstance(_core.Dict, type)


def test_magic_is_the_first_bytes_of_a_dict_file(name: str) -> None:
    with shmdict.new(name, MiB) as d, open(d.path, "rb") as f:
        head = f.read(8)
    assert head == _core.MAGIC.to_bytes(8, sys.byteorder)
    assert head == b"SHMDICT1"  # every little-endian host
    assert head == cli._MAGIC


def test_default_lock_timeout_is_the_one_constant(name: str) -> None:
    with shmdict.new(name, MiB) as d, shmdict.get(name) as peer:
        assert d.lock_timeout == peer.lock_timeout == _core.DEFAULT_LOCK_TIMEOUT
        raw = _core.Dict(d.path, name)
        try:
            assert raw.lock_timeout == _core.DEFAULT_LOCK_TIMEOUT
        finally:
            raw.close()


# ---- Dict()'s arguments, checked once ----------------------------------------

BAD_ARGS: list[tuple[dict[str, Any], type[Exception], str]] = [
    ({"size": 1}, ValueError, "size must be between"),
    ({"size": 1 << 70}, ValueError, "size must be between"),
    ({"size": -1}, ValueError, "size must be between"),
    ({"size": "1M"}, TypeError, "size must be int, not str"),
    ({"size": True}, TypeError, "size must be int, not bool"),
    ({"size": 1.0 * MiB}, TypeError, "size must be int, not float"),
    ({"mode": -1}, ValueError, "mode must be permission bits"),
    ({"mode": 0o1000}, ValueError, "mode must be permission bits"),
    ({"mode": "600"}, ValueError, "mode must be permission bits"),
    ({"mode": True}, ValueError, "mode must be permission bits"),
    ({"lock_timeout": -1}, ValueError, "lock_timeout must be >= 0"),
    ({"stripes": 3}, ValueError, "stripes must be 0"),
    ({"stripes": 64}, ValueError, "can't have 64 stripes"),
]


@pytest.mark.parametrize(("args", "exc", "match"), BAD_ARGS)
@pytest.mark.parametrize("how", ["new", "open", "SharedDict", "_core.Dict"])
def test_every_way_in_checks_the_arguments_alike(
    name: str, how: str, args: dict[str, Any], exc: type[Exception], match: str
) -> None:
    """new(), open(), and the classes made directly: one set of checks
    (the binding's), so one error for each bad argument."""
    kw: dict[str, Any] = {"size": MiB, **args}
    size = kw.pop("size")
    make: Callable[[], object]
    if how in ("new", "open"):
        make = functools.partial(getattr(shmdict, how), name, size, **kw)
    else:
        cls = shmdict.SharedDict if how == "SharedDict" else _core.Dict
        make = functools.partial(
            cls, shmdict.path_for(name), name, size, create=1, **kw
        )
    with pytest.raises(exc, match=match):
        make()
    assert not shmdict.exists(name)


def test_a_size_no_filesystem_holds_is_refused_before_the_file_is_made(
    name: str,
) -> None:
    vfs = os.statvfs(shmdict.default_dir())
    total = vfs.f_blocks * vfs.f_frsize
    if total == 0 or total >= shmdict.MAX_SIZE:
        pytest.skip("the filesystem holds any size a dict may have")
    path = shmdict.path_for(name)
    makers: list[Callable[[], object]] = [
        lambda: shmdict.new(name, shmdict.MAX_SIZE),
        lambda: _core.Dict(path, name, shmdict.MAX_SIZE, create=2),
    ]
    for make in makers:
        with pytest.raises(shmdict.NoMemoryError, match="can never fit"):
            make()
        assert not shmdict.exists(name)


# ---- the enter bracket: every method of a closed handle ----------------------

METHODS: list[tuple[str, Callable[[Any], object]]] = [
    ("get", lambda h: h.get("k")),
    ("set", lambda h: h.set("k", 1)),
    ("add", lambda h: h.add("n", 1)),
    ("replace", lambda h: h.replace("k", 1)),
    ("safe_set", lambda h: h.safe_set("k", 1)),
    ("safe_add", lambda h: h.safe_add("n", 1)),
    ("set_forcible", lambda h: h.set_forcible("k", 1)),
    ("get_stale", lambda h: h.get_stale("k")),
    ("pop", lambda h: h.pop("k", None)),
    ("setdefault", lambda h: h.setdefault("k", 1)),
    ("cas", lambda h: h.cas("k", 1, 2)),
    ("lpush", lambda h: h.lpush("l", 1)),
    ("rpush", lambda h: h.rpush("l", 1)),
    ("lpop", lambda h: h.lpop("l")),
    ("rpop", lambda h: h.rpop("l")),
    ("llen", lambda h: h.llen("l")),
    ("lrange", lambda h: h.lrange("l")),
    ("get_many", lambda h: h.get_many(["k", "n"])),
    ("set_many", lambda h: h.set_many({"k": 1})),
    ("delete_many", lambda h: h.delete_many(["k"])),
    ("flush_expired", lambda h: h.flush_expired()),
    ("capacity", lambda h: h.capacity()),
    ("free_space", lambda h: h.free_space()),
    ("delete", lambda h: h.delete("k")),
    ("incr", lambda h: h.incr("k", 1)),
    ("ttl", lambda h: h.ttl("k")),
    ("expire", lambda h: h.expire("k", 5)),
    ("flush_all", lambda h: h.flush_all()),
    ("get_keys", lambda h: h.get_keys()),
    ("verify", lambda h: h.verify()),
    ("stats", lambda h: h.stats()),
    ("getitem", lambda h: h["k"]),
    ("setitem", lambda h: h.__setitem__("k", 1)),
    ("delitem", lambda h: h.__delitem__("k")),
    ("contains", lambda h: "k" in h),
    ("len", lambda h: len(h)),
    ("iter", lambda h: list(iter(h))),
]


@pytest.mark.parametrize("call", [c for _, c in METHODS], ids=[i for i, _ in METHODS])
def test_every_method_of_a_closed_handle_raises_and_changes_nothing(
    name: str, call: Callable[[Any], object]
) -> None:
    with shmdict.new(name, MiB) as d:
        d["k"] = 1
        d.rpush("l", 1)
        d.get("k")  # in the near cache
        peer = shmdict.get(name)
        peer.get("k")
        peer.close()
        with pytest.raises(ValueError, match="closed"):
            call(peer)
        assert d["k"] == 1
        assert d.lrange("l") == [1]
        assert sorted(d) == ["k", "l"]
        call(d)  # the open handle answers the same call


# ---- the status table: each message names the call ---------------------------


def test_type_errors_say_what_the_key_holds(name: str) -> None:
    with shmdict.new(name, MiB) as d:
        d["s"] = 1
        d.rpush("l", 1)
        for op in ("lpush", "rpush"):
            with pytest.raises(TypeError, match=r"^'s' does not hold a list$"):
                getattr(d, op)("s", 2)
        for op in ("lpop", "rpop", "llen", "lrange"):
            with pytest.raises(TypeError, match=r"^'s' does not hold a list$"):
                getattr(d, op)("s")
        reads: list[Callable[[], object]] = [
            lambda: d.get("l"),
            lambda: d["l"],
            lambda: d.get_stale("l"),
            lambda: d.pop("l"),
            lambda: d.setdefault("l", 1),
            lambda: d.cas("l", 1, 2),
        ]
        for read in reads:
            with pytest.raises(
                TypeError, match=r"^'l' holds a list: use the list methods$"
            ):
                read()
        with pytest.raises(
            TypeError, match=r"^incr: the value of 'l' is not an int or float$"
        ):
            d.incr("l", 1)
        d["t"] = "text"
        with pytest.raises(
            TypeError, match=r"^incr: the value of 't' is not an int or float$"
        ):
            d.incr("t", 1)
        with pytest.raises(
            TypeError, match=r"^get_many: one of the keys holds a list$"
        ):
            d.get_many(["s", "l"])
        assert d.verify() == []


def test_number_and_room_errors_name_the_item(name: str) -> None:
    with shmdict.new(name, MiB) as d:
        d["big"] = 2**62
        with pytest.raises(
            OverflowError, match=r"^incr: the result for 'big' does not fit in 64 bits$"
        ):
            d.incr("big", 2**62)
        assert d["big"] == 2**62
        with pytest.raises(shmdict.NoMemoryError, match=r"an item of [0-9]+ bytes can"):
            d.set("huge", b"x" * (2 * MiB))
        with pytest.raises(KeyError) as info:
            d.incr("missing", 1)
        assert info.value.args == ("missing",)
        with pytest.raises(KeyError) as info:
            del d["missing"]
        assert info.value.args == ("missing",)
        half = b"x" * (600 << 10)
        with pytest.raises(shmdict.NoMemoryError, match="the dict is full") as full:
            d.set_many({"a": half, "b": half})
        assert full.value.stored in (0, 1)  # type: ignore[attr-defined]


def test_an_attach_that_fails_says_which_file(name: str) -> None:
    path = shmdict.path_for(name)
    with pytest.raises(FileNotFoundError) as info:
        _core.Dict(path, name)
    assert info.value.filename == path

"""What the framework integrations share (shmdict.contrib._common), and the
promise that the core package imports no framework."""

from __future__ import annotations

import enum
import os
import pickle
import subprocess
import sys
from decimal import Decimal
from typing import Any

import pytest

import shmdict
from shmdict.contrib import _common
from shmdict.contrib._common import MISSING, decode, encode, incr_by_cas, is_native
from shmdict.redis import RedisDict

MiB = 1 << 20


class Color(enum.IntEnum):
    RED = 1


class Text(str):
    pass


def test_core_imports_no_framework() -> None:
    code = (
        "import sys, shmdict, shmdict.contrib\n"
        "bad = [m for m in ('django', 'cachelib', 'flask', 'flask_caching')"
        " if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    # The child imports the package this session imports, wherever it is.
    src = os.path.dirname(os.path.dirname(os.path.abspath(shmdict.__file__)))
    env = {**os.environ, "PYTHONPATH": src}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


@pytest.mark.parametrize(
    "value",
    [None, True, False, 0, -(1 << 63), (1 << 63) - 1, 1.5, "", "s", b"", b"b"],
)
def test_native_values_are_stored_as_themselves(value: object) -> None:
    assert is_native(value)
    assert encode(value, pickle.dumps) is value
    assert decode(value, pickle.loads) is value


@pytest.mark.parametrize(
    "value",
    [
        1 << 63,
        -(1 << 63) - 1,
        Color.RED,  # an int subclass must come back as its member
        Text("x"),  # a str subclass (Django's SafeString) keeps its type
        shmdict.Pickled(b"p"),
        [1, 2],
        {"a": 1},
        Decimal("1.5"),
        bytearray(b"x"),
    ],
)
def test_everything_else_is_pickled(value: object) -> None:
    assert not is_native(value)
    stored = encode(value, pickle.dumps)
    assert type(stored) is shmdict.Pickled
    back = decode(stored, pickle.loads)
    assert back == value
    assert type(back) is type(value)


def test_a_serializer_that_gives_up() -> None:
    assert encode([1], lambda v: None) is MISSING


def test_incr_by_cas_grows_past_64_bits_and_keeps_expiry(
    d: shmdict.SharedDict,
) -> None:
    d.set("n", (1 << 63) - 1, 100)
    assert incr_by_cas(d, "n", 1, pickle.loads, pickle.dumps) == 1 << 63
    assert type(d.get("n")) is shmdict.Pickled
    assert incr_by_cas(d, "n", -1, pickle.loads, pickle.dumps) == (1 << 63) - 1
    back: object = d.get("n")
    assert back == (1 << 63) - 1  # back in range: native again
    assert type(back) is int
    ttl = d.ttl("n")
    assert ttl is not None
    assert 0 < ttl <= 100
    d["dec"] = shmdict.Pickled(pickle.dumps(Decimal("1.5")))
    assert incr_by_cas(d, "dec", 1, pickle.loads, pickle.dumps) == Decimal("2.5")
    with pytest.raises(KeyError):
        incr_by_cas(d, "missing", 1, pickle.loads, pickle.dumps)
    d["s"] = "text"
    with pytest.raises(TypeError):
        incr_by_cas(d, "s", 1, pickle.loads, pickle.dumps)


def test_one_handle_per_dict_and_process(name: str) -> None:
    def handle(size: int = MiB) -> shmdict.SharedDict:
        return _common.shared_handle(
            name,
            size,
            evict=True,
            dir=None,
            stripes=None,
            reserve=False,
            lock_timeout=10.0,
        )

    a = handle()
    assert handle() is a
    assert not a.owner  # opened with shmdict.open: nobody removes it on close
    a.close()
    b = handle()  # a closed handle is replaced
    assert b is not a
    assert not b.closed
    with pytest.raises(ValueError, match="size"):
        handle(2 * MiB)
    b.close()


def test_both_backends_are_dict_like(d: shmdict.SharedDict, redis_server: Any) -> None:
    """The Protocol the integrations and recipes take: mypy checks both
    classes against it here, and isinstance does at run time."""
    r = RedisDict(redis_server.url, namespace="dict-like")
    c = shmdict.connect(f"shm://{d.name}?size={d.size}")
    try:
        both: list[shmdict.DictLike] = [d, r, c]
        assert all(isinstance(x, shmdict.DictLike) for x in both)
    finally:
        r.close()
        c.close()

"""shmdict.Pickled: bytes stored with a tag that no plain value carries."""

from __future__ import annotations

import multiprocessing as mp
import pickle

import pytest

import shmdict
from shmdict import Pickled, SharedDict

from .redis_fixtures import peer


def test_round_trip_keeps_the_type(d: SharedDict) -> None:
    d["p"] = Pickled(b"\x80\x05abc")
    d["b"] = b"\x80\x05abc"
    for _ in range(2):  # the second read may come from the handle's cache
        assert type(d["p"]) is Pickled
        assert type(d["b"]) is bytes
    assert d["p"] == b"\x80\x05abc"
    assert d.get_many(["p", "b"]) == {"p": Pickled(b"\x80\x05abc"), "b": b"\x80\x05abc"}
    assert type(d.get_many(["p"])["p"]) is Pickled
    stale = d.get_stale("p")
    assert stale is not None
    assert type(stale[0]) is Pickled
    assert type(d.pop("p")) is Pickled
    assert d.verify() == []


def test_overwrite_changes_the_tag_both_ways(d: SharedDict) -> None:
    d["k"] = Pickled(b"12345678")
    d["k"] = b"12345678"  # same bytes, same length: stored in place
    assert type(d["k"]) is bytes
    d["k"] = Pickled(b"12345678")
    assert type(d["k"]) is Pickled
    d.set_many({"k": b"x", "j": Pickled(b"y")})
    assert type(d["k"]) is bytes
    assert type(d["j"]) is Pickled


def test_cas_tells_tagged_from_plain(d: SharedDict) -> None:
    d["k"] = Pickled(b"v")
    assert d.cas("k", b"v", 1) is False
    assert type(d["k"]) is Pickled
    assert d.cas("k", Pickled(b"v"), 2) is True
    assert d.get("k") == 2


def test_lists_and_setdefault(d: SharedDict) -> None:
    d.rpush("q", Pickled(b"a"))
    d.rpush("q", b"a")
    assert type(d.lpop("q")) is Pickled
    assert type(d.lpop("q")) is bytes
    assert type(d.setdefault("s", Pickled(b"z"))) is Pickled
    assert type(d["s"]) is Pickled


def _read(d: SharedDict, q: mp.Queue) -> None:  # type: ignore[type-arg]
    with peer(d) as p:  # a handle of the child's own
        v = p["k"]
        assert isinstance(v, bytes)
        q.put((type(v).__name__, bytes(v)))


def test_another_process_sees_the_tag(d: SharedDict) -> None:
    d["k"] = Pickled(pickle.dumps({"a": 1}))
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    proc = ctx.Process(target=_read, args=(d, q))
    proc.start()
    assert q.get(timeout=30) == ("Pickled", pickle.dumps({"a": 1}))
    proc.join(30)
    assert proc.exitcode == 0


def test_pickled_is_public_and_pickles() -> None:
    assert shmdict.Pickled is Pickled
    assert repr(Pickled(b"a")) == "Pickled(b'a')"
    assert type(pickle.loads(pickle.dumps(Pickled(b"a")))) is Pickled
    with pytest.raises(TypeError):
        Pickled("not bytes")  # type: ignore[arg-type]

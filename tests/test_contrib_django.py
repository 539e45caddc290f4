"""shmdict.contrib.django across real processes, and where it departs from
Django's own backends. Django's own cache tests run against the backend in
scripts/judge_django.sh; these check what they can't: other processes,
plain shmdict readers, and our choices.

The tests that take ``where`` run on a shared dict and on a RedisDict
(``LOCATION`` a Redis URL; tests/backends.py), the cheap ones on the
Cluster too; those that take ``name`` are about the shared dict alone
(its size, its file) or about no dict at all, and say so."""

from __future__ import annotations

import asyncio
import dataclasses
import multiprocessing
import os
import subprocess
import sys
import textwrap
import warnings
from typing import Any

import pytest

import shmdict

pytest.importorskip("django", reason="Django is not installed (shmdict[django])")

from django.core.cache.backends.base import BaseCache
from django.core.exceptions import ImproperlyConfigured
from django.utils.safestring import SafeString, mark_safe

from shmdict.contrib.django import SharedMemoryCache
from shmdict.redis import RedisDict

from .backends import ALL, Backend, attach

MiB = 1 << 20
TIMEOUT = 60.0


@dataclasses.dataclass
class Point:
    x: int
    y: list[int]


def _location(where: str) -> tuple[str, dict[str, Any]]:
    """LOCATION and OPTIONS for the dict *where* names (a spec of
    tests/backends.py): a shared dict's name and its size, or a Redis URL
    and the namespace."""
    if "://" in where:
        url, _, namespace = where.rpartition("#")
        return url, {"namespace": namespace}
    return where, {"size": MiB}


def make(where: str, **params: Any) -> SharedMemoryCache:
    """The cache on *where*; OPTIONS given are added to the backend's."""
    location, options = _location(where)
    options.update(params.pop("OPTIONS", {}))
    return SharedMemoryCache(location, {**params, "OPTIONS": options})


@pytest.fixture
def where(backend: Backend) -> str:
    """The test's dict, as the spec string children open it by."""
    return backend.spec


def _pool_map(fn: Any, args: list[Any]) -> list[Any]:
    """Run fn over args in fresh (spawned) processes; their results."""
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(len(args)) as pool:
        return pool.starmap_async(fn, args).get(TIMEOUT)


# ---- children (module level, so spawn can import them)


def _child_get(name: str, key: str) -> Any:
    return make(name).get(key, "missing")


def _child_plain_get(where: str, key: str) -> tuple[str, Any]:
    with attach(where) as d:
        v = d[key]
        return type(v).__name__, v


def _child_set(name: str, key: str, value: Any) -> None:
    make(name).set(key, value, None)


def _child_incr(name: str, n: int) -> int:
    cache = make(name)
    last = 0
    for _ in range(n):
        last = cache.incr("hits")
    return last


# ---- across processes


def test_another_process_reads_what_one_set(where: str) -> None:
    cache = make(where)
    cache.set("greeting", "hello")
    cache.set("point", Point(1, [2, 3]))
    assert _pool_map(_child_get, [(where, "greeting"), (where, "point")]) == [
        "hello",
        Point(1, [2, 3]),
    ]
    _pool_map(_child_set, [(where, "from-child", {"a": (1, 2)})])
    assert cache.get("from-child") == {"a": (1, 2)}


def test_native_values_are_visible_to_plain_shmdict(where: str) -> None:
    cache = make(where)
    values = {
        "none": None,
        "bool": True,
        "int": -(1 << 63),
        "float": 2.5,
        "str": "héllo",
        "bytes": b"\x00\xff",
    }
    cache.set_many(values)
    got = _pool_map(_child_plain_get, [(where, f":1:{k}") for k in values])
    assert got == [(type(v).__name__, v) for v in values.values()]
    # What isn't native is stored tagged, and a plain reader can tell.
    cache.set("obj", Point(0, []))
    cache.set("big", 1 << 64)
    cache.set("safe", mark_safe("<b>"))
    [(t1, _), (t2, _), (t3, _)] = _pool_map(
        _child_plain_get, [(where, ":1:obj"), (where, ":1:big"), (where, ":1:safe")]
    )
    assert t1 == t2 == t3 == "Pickled"
    safe = cache.get("safe")
    assert type(safe) is SafeString  # templates must not escape it again


def test_incr_from_four_processes_is_exact(where: str) -> None:
    cache = make(where)
    cache.set("hits", 0, 300)
    n = 3000
    results = _pool_map(_child_incr, [(where, n)] * 4)
    assert cache.get("hits") == 4 * n
    assert max(results) == 4 * n
    ttl = cache._dict.ttl(cache.make_key("hits"))
    assert ttl is not None
    assert 0 < ttl <= 300  # incr kept the expiry


def test_settings_in_a_real_django_process(where: str) -> None:
    location, options = _location(where)
    code = textwrap.dedent(
        f"""
        import django
        from django.conf import settings
        settings.configure(CACHES={{"default": {{
            "BACKEND": "shmdict.contrib.django.SharedMemoryCache",
            "LOCATION": {location!r},
            "KEY_PREFIX": "site",
            "OPTIONS": {options!r},
        }}}})
        django.setup()
        from django.core.cache import cache
        cache.set("k", [1, 2])
        cache.set("n", 7)
        cache.close()  # Django does this after every request
        assert cache.get("k") == [1, 2]
        """
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=TIMEOUT)
    cache = make(where, KEY_PREFIX="site")
    assert cache.get("k") == [1, 2]
    with attach(where) as d:
        assert d["site:1:n"] == 7


# ---- our choices


@pytest.mark.parametrize("backend", ALL, indirect=True)
def test_timeouts(where: str) -> None:
    cache = make(where, TIMEOUT=None)
    cache.set("forever", 1)
    assert cache._dict.ttl(":1:forever") == 0
    cache.set("gone", 1, 0)
    assert not cache.has_key("gone")
    cache.set("gone", 1)
    cache.set("gone", 2, -5)  # a negative timeout is "don't cache" too
    assert cache.get("gone") is None
    cache.set("huge", 1, 10**15)  # past the dict's limit: forever
    assert cache._dict.ttl(":1:huge") == 0
    cache.set("t", 1, 100)
    assert cache.touch("t", None)
    assert cache._dict.ttl(":1:t") == 0
    assert cache.touch("t", 0)
    assert not cache.has_key("t")


@pytest.mark.parametrize("backend", ALL, indirect=True)
def test_incr_past_64_bits_and_of_pickled_numbers(where: str) -> None:
    cache = make(where)
    cache.set("n", (1 << 63) - 1)
    assert cache.incr("n") == 1 << 63
    assert cache.decr("n", 2) == (1 << 63) - 2
    cache.set("b", True)
    assert cache.incr("b") == 2
    with pytest.raises(ValueError, match="not found"):
        cache.incr("missing")
    cache.set("s", "x")
    with pytest.raises(TypeError):
        cache.incr("s")


def test_max_entries_only_when_given(where: str) -> None:
    cache = make(where)
    assert cache._max_entries is None
    cache.set_many({f"k{i}": i for i in range(400)})  # Django's default is 300
    assert len(cache._dict) == 400
    limited = make(where, OPTIONS={"MAX_ENTRIES": 100})
    limited.set("one-more", 1)  # at the limit: expired entries, then a third go
    assert len(cache._dict) == 400 - 400 // 3 + 1


def test_close_keeps_the_dict_and_the_handle(where: str) -> None:
    cache = make(where)
    cache.set("k", 1)
    cache.close()
    assert cache.get("k") == 1
    with attach(where) as d:  # the dict stays
        assert d[":1:k"] == 1
    assert make(where)._dict is cache._dict  # one handle per process


def test_full_dict_without_eviction_drops_what_it_cannot_store(name: str) -> None:
    # shm only: a dict's size bounds it; a Redis server's maxmemory does
    # (NoMemoryError on Redis is tested with the backend itself).
    cache = make(name, OPTIONS={"size": 64 << 10, "evict": False})
    cache.set("k", "old")
    big = b"x" * (128 << 10)  # can never fit
    cache.set("k", big)
    assert cache.get("k") is None  # not a stale "old"
    assert cache.add("k2", big) is False
    assert cache.set_many({"a": 1, "huge": big}) == ["huge"]
    assert cache.get("a") == 1


def test_bad_configuration(name: str) -> None:
    # shm only: OPTIONS of a dict name (a URL's are below).
    with pytest.raises(ImproperlyConfigured, match="LOCATION"):
        SharedMemoryCache("", {})
    with pytest.raises(ImproperlyConfigured, match="sise"):
        make(name, OPTIONS={"sise": MiB})
    make(name)
    with pytest.raises(ValueError, match="size"):
        make(name, OPTIONS={"size": 2 * MiB})


def test_a_url_location(redis_server: Any, name: str) -> None:
    """A LOCATION with :// goes to shmdict.connect, OPTIONS with it."""
    shm = SharedMemoryCache(f"shm://{name}?size=1M", {"OPTIONS": {"evict": True}})
    assert isinstance(shm._dict, shmdict.SharedDict)
    assert shm._dict.size == MiB
    assert shm._dict.stats()["evict"] is True
    cache = SharedMemoryCache(redis_server.url + "?namespace=dj-url", {})
    try:
        assert isinstance(cache._dict, RedisDict)
        assert cache._dict.namespace == "dj-url"
        with pytest.raises(ImproperlyConfigured, match="namespace"):
            SharedMemoryCache(redis_server.url, {"OPTIONS": {"namespace": 5}})
        # An option redis-py doesn't take fails when the cache is made
        # (RedisDict checks them up front; redis-py would wait for its
        # first connection).
        with pytest.raises(ValueError, match="colour"):
            SharedMemoryCache(redis_server.url, {"OPTIONS": {"colour": "red"}})
        with pytest.raises(ValueError, match="size"):
            SharedMemoryCache("shm://no-size-given", {})
    finally:
        cache.clear()


@pytest.mark.parametrize("backend", ALL, indirect=True)
def test_async_methods(where: str) -> None:
    cache = make(where)

    async def main() -> None:
        assert await cache.aadd("a", 1)
        assert not await cache.aadd("a", 2)
        await cache.aset("p", Point(1, []))
        assert await cache.aget("p") == Point(1, [])
        assert await cache.aget("nope", "d") == "d"
        assert await cache.aincr("a", 5) == 6
        assert await cache.adecr("a") == 5
        assert await cache.ahas_key("a")
        assert await cache.atouch("a", 10)
        assert await cache.aset_many({"x": 1, "y": None}) == []
        assert await cache.aget_many(["x", "y", "z"]) == {"x": 1, "y": None}
        assert await cache.aget_or_set("g", 3) == 3
        await cache.adelete_many(["x", "y"])
        assert await cache.adelete("a")
        assert await cache.aincr_version("g") == 2
        await cache.aclear()
        assert not await cache.ahas_key("g", version=2)
        await cache.aclose()

    asyncio.run(main())


@pytest.mark.parametrize(
    "key",
    [
        "plain:key",
        "with space",
        "nul\x00",
        "tab\t",
        "del\x7f",
        "清",
        "nbsp\xa0",
        "line\u2028sep",
        "a" * 250,
        "a" * 251,
        "b" * 300 + " ",
    ],
)
def test_key_warnings_are_djangos(name: str, key: str) -> None:
    # The backend's own check, before any dict is touched: shm only.
    cache = make(name)
    with warnings.catch_warnings(record=True) as ours:
        warnings.simplefilter("always")
        cache.validate_key(key)
    with warnings.catch_warnings(record=True) as theirs:
        warnings.simplefilter("always")
        BaseCache.validate_key(cache, key)
    assert [str(w.message) for w in ours] == [str(w.message) for w in theirs]

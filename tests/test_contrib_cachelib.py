"""shmdict.contrib.cachelib across real processes, its cachelib semantics,
and Flask-Caching taking it through CACHE_TYPE. cachelib's own test mixins
run against the backend in scripts/judge_cachelib.sh.

The tests that take ``where`` run on a shared dict and on a RedisDict
(``url=``; tests/backends.py), the cheap ones on the Cluster too; those
that take ``name`` are about the shared dict alone, and say why."""

from __future__ import annotations

import dataclasses
import datetime as dt
import multiprocessing
from typing import Any

import pytest

import shmdict

pytest.importorskip("cachelib", reason="cachelib is not installed (shmdict[cachelib])")

from cachelib.serializers import JSONSerializer

from shmdict.contrib.cachelib import SharedMemoryCache
from shmdict.redis import RedisDict

from .backends import ALL, Backend, attach

MiB = 1 << 20
TIMEOUT = 60.0


@dataclasses.dataclass
class Point:
    x: int
    y: list[int]


def _source(where: str) -> dict[str, Any]:
    """The cache's arguments for the dict *where* names (a spec of
    tests/backends.py): a shared dict's name and size, or a Redis URL and
    the namespace."""
    if "://" in where:
        url, _, namespace = where.rpartition("#")
        return {"url": url, "namespace": namespace}
    return {"name": where, "size": MiB}


def make(where: str, **kw: Any) -> SharedMemoryCache:
    return SharedMemoryCache(**{**_source(where), **kw})


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
    return make(name, key_prefix="app:").get(key)


def _child_plain_get(where: str, key: str) -> tuple[str, Any]:
    with attach(where) as d:
        v = d[key]
        return type(v).__name__, v


def _child_inc(name: str, n: int) -> int:
    cache = make(name)
    last = 0
    for _ in range(n):
        last = cache.inc("hits")
    return last


# ---- across processes


def test_another_process_reads_what_one_set(where: str) -> None:
    cache = make(where, key_prefix="app:")
    assert cache.set("greeting", "hello")
    assert cache.set("point", Point(1, [2, 3]))
    assert _pool_map(_child_get, [(where, "greeting"), (where, "point")]) == [
        "hello",
        Point(1, [2, 3]),
    ]


def test_native_values_are_visible_to_plain_shmdict(where: str) -> None:
    cache = make(where)
    values = {
        "none": None,
        "bool": False,
        "int": (1 << 63) - 1,
        "float": -0.5,
        "str": "s",
        "bytes": b"b",
    }
    assert cache.set_many(values) == list(values)
    got = _pool_map(_child_plain_get, [(where, k) for k in values])
    assert got == [(type(v).__name__, v) for v in values.values()]
    cache.set("obj", [1, 2])
    [(kind, _)] = _pool_map(_child_plain_get, [(where, "obj")])
    assert kind == "Pickled"


def test_inc_from_four_processes_is_exact(where: str) -> None:
    cache = make(where, default_timeout=300)
    n = 3000
    results = _pool_map(_child_inc, [(where, n)] * 4)  # "hits" starts missing
    assert cache.get("hits") == 4 * n
    assert max(results) == 4 * n
    ttl = cache._dict.ttl("hits")
    assert ttl is not None
    assert 0 < ttl <= 300  # a new counter gets the default timeout


# ---- cachelib's semantics, and ours


@pytest.mark.parametrize("backend", ALL, indirect=True)
def test_timeouts(where: str) -> None:
    cache = make(where, default_timeout=dt.timedelta(minutes=1))
    cache.set("default", 1)
    ttl = cache._dict.ttl("default")
    assert ttl is not None
    assert 50 < ttl <= 60
    cache.set("forever", 1, timeout=0)  # 0 is "never expires" in cachelib
    assert cache._dict.ttl("forever") == 0
    cache.set("gone", 1)
    assert cache.set("gone", 1, timeout=-1)  # already expired: not stored
    assert not cache.has("gone")
    assert cache.add("new", 1, timeout=-1)
    assert not cache.has("new")


@pytest.mark.parametrize("backend", ALL, indirect=True)
def test_inc_dec_and_big_numbers(where: str) -> None:
    cache = make(where)
    assert cache.dec("c", 2) == -2
    assert cache.inc("c", 5) == 3
    cache.set("n", (1 << 63) - 1)
    assert cache.inc("n") == 1 << 63
    assert cache.get("n") == 1 << 63
    cache.set("s", "text")
    with pytest.raises(TypeError):
        cache.inc("s")


@pytest.mark.parametrize("backend", ALL, indirect=True)
def test_clear_with_a_prefix_leaves_other_keys(where: str) -> None:
    a = make(where, key_prefix="a:")
    b = make(where, key_prefix=lambda: "b:")
    a.set("k", 1)
    b.set("k", 2)
    assert a.clear()
    assert a.get("k") is None
    assert b.get("k") == 2
    assert b._dict.get("b:k") == 2


def test_serializer_that_fails_stores_nothing(where: str) -> None:
    cache = make(where)
    cache.serializer = JSONSerializer()
    assert cache.set("k", {1, 2}) is False  # a set is no JSON
    assert not cache.has("k")
    assert cache.set_many({"a": [1], "b": {3}}) == ["a"]
    assert cache.add("c", {4}) is False


def test_full_dict_without_eviction(name: str) -> None:
    # shm only: a dict's size bounds it; a Redis server's maxmemory does
    # (NoMemoryError on Redis is tested with the backend itself).
    cache = make(name, size=64 << 10, evict=False)
    cache.set("k", "old")
    big = b"x" * (128 << 10)
    assert cache.set("k", big) is False
    assert cache.get("k") is None
    assert cache.add("k2", big) is False
    assert cache.set_many({"a": 1, "huge": big}) == ["a"]


def test_sources(redis_server: Any, name: str) -> None:
    """A name, a URL (url=, or a name holding ://) or a dict object."""
    by_url = SharedMemoryCache(url=redis_server.url, namespace=name)
    by_name = SharedMemoryCache(f"{redis_server.url}?namespace={name}")
    theirs = shmdict.connect(redis_server.url, namespace=name)
    by_object = SharedMemoryCache(shared_dict=theirs)
    try:
        assert isinstance(by_name._dict, RedisDict)
        assert by_name._dict.namespace == name
        by_url.set("k", [1])
        assert by_object.get("k") == [1]
        assert by_object._dict is theirs
        assert SharedMemoryCache(url=redis_server.url, namespace=name)._dict is (
            by_url._dict  # one per process and URL
        )
        with pytest.raises(TypeError, match="exactly one"):
            SharedMemoryCache()
        with pytest.raises(TypeError, match="exactly one"):
            SharedMemoryCache(name, url=redis_server.url)
        with pytest.raises(TypeError, match="size"):
            SharedMemoryCache(url=redis_server.url, size=MiB)
        with pytest.raises(TypeError, match="namespace"):
            SharedMemoryCache(name, namespace="x")
        shm = SharedMemoryCache(url=f"shm://{name}?size=1M")
        assert isinstance(shm._dict, shmdict.SharedDict)
    finally:
        by_url.clear()
        theirs.close()


# ---- Flask-Caching


def _flask_app(where: str) -> tuple[Any, Any, list[int]]:
    flask = pytest.importorskip("flask")
    flask_caching = pytest.importorskip("flask_caching")
    app = flask.Flask(__name__)
    app.config.update(
        CACHE_TYPE="shmdict.contrib.cachelib.SharedMemoryCache",
        CACHE_DEFAULT_TIMEOUT=120,
        CACHE_OPTIONS={**_source(where), "key_prefix": "site:"},
    )
    cache = flask_caching.Cache(app)
    calls: list[int] = []

    def index() -> str:
        calls.append(1)
        return f"rendered {len(calls)}"

    # Flask and Flask-Caching are Any here (imported by importorskip), so
    # their decorators are applied as calls, which mypy --strict accepts.
    app.add_url_rule("/", "index", cache.cached()(index))
    return app, cache, calls


def _child_flask_get(where: str) -> tuple[str, int]:
    app, _, calls = _flask_app(where)
    body = app.test_client().get("/").get_data(as_text=True)
    return body, len(calls)


def test_flask_caching_takes_it_by_import_path(where: str) -> None:
    app, cache, calls = _flask_app(where)
    backend = app.extensions["cache"][cache]
    assert type(backend) is SharedMemoryCache
    assert backend.default_timeout == 120
    client = app.test_client()
    assert client.get("/").get_data(as_text=True) == "rendered 1"
    assert client.get("/").get_data(as_text=True) == "rendered 1"
    assert len(calls) == 1
    # Another worker process serves the page from the shared cache.
    assert _pool_map(_child_flask_get, [(where,)]) == [("rendered 1", 0)]

    def square_once(x: int) -> int:
        calls.append(x)
        return x * x

    square = cache.memoize()(square_once)

    with app.app_context():
        assert square(4) == 16
        assert square(4) == 16
        assert calls.count(4) == 1
        assert cache.cache.inc("visits") == 1
    keys = backend._dict.get_keys()
    assert keys
    assert all(k.startswith("site:") for k in keys)

"""Redis for the tests: session servers, and the conformance backends.

Servers: ``redis_server`` is one standalone server on a unix socket and
``redis_cluster`` a Cluster of 3 primaries with one replica each; each
starts the first time a test needs it and is stopped by pid at the end of
the session, also when tests fail. Without ``redis-server`` on PATH the
tests that need them are skipped.

Conformance: the modules in :data:`CONFORMANCE` check the dict API, and
their tests run on every backend of ``SHMDICT_BACKENDS`` (default
``shm,redis,cluster``): ``shm`` a fresh 1 MiB SharedDict, ``redis`` a
RedisDict on the session's standalone server, ``cluster`` one on its
Cluster, each Redis one in a namespace of its own, flushed at teardown.
A test runs on every backend when it uses the ``d`` fixture (or one built
on it) or ``dict_backend`` (for tests that make their dicts themselves,
as the hypothesis machines do). A test that checks what only shared
memory has (its file, capacity, the stale values it keeps, ...) is marked
``@pytest.mark.shm_only("why")`` and runs on shm alone; a case of a
parametrized test may carry the mark too (``pytest.param(...,
marks=...)``). Tests outside these modules get shm, as before.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import shmdict

from .helpers import MiB, new_name, remove_all
from .redis_servers import Cluster, Server, have_redis, start_cluster, start_standalone


def need_redis() -> None:
    """Skip the test unless redis-server and redis-py are there."""
    if not have_redis():
        pytest.skip("redis-server is not installed (scripts/_venv.sh installs it)")
    try:
        import redis  # noqa: F401
    except ImportError:
        pytest.skip("redis-py is not installed (pip install shmdict[redis])")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[Server]:
    """One standalone redis-server for the session (unix socket)."""
    need_redis()
    with tempfile.TemporaryDirectory(prefix="shmdict-redis-") as where:
        server = start_standalone(where)
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[Cluster]:
    """One Redis Cluster (3 primaries, 1 replica each) for the session."""
    need_redis()
    with tempfile.TemporaryDirectory(prefix="shmdict-cluster-") as where:
        cluster = start_cluster(where)
        try:
            yield cluster
        finally:
            cluster.stop()


def unique_namespace(tag: str = "t") -> str:
    """A namespace no other test uses."""
    return f"shmdict-test-{tag}-{uuid.uuid4().hex[:12]}"


# ---------------------------------------------------------------- conformance

#: The test modules that run over every backend: the dict API, values,
#: expiry, errors, lists, pickled values and the model-based tests.
#: test_stats (capacity and counters) is shm's own: the fields differ.
CONFORMANCE = frozenset(
    {
        "test_api",
        "test_ops",
        "test_ttl",
        "test_errors",
        "test_lists",
        "test_pickled",
        "test_stateful",
    }
)
ALL_BACKENDS = ("shm", "redis", "cluster")


def backends() -> list[str]:
    """The backends ``SHMDICT_BACKENDS`` asks for (comma-separated; default
    all). scripts/test.sh's striped and ASan passes ask for shm alone: they
    test the C engine."""
    raw = os.environ.get("SHMDICT_BACKENDS", "") or ",".join(ALL_BACKENDS)
    out = [b.strip() for b in raw.split(",") if b.strip()]
    bad = [b for b in out if b not in ALL_BACKENDS]
    if bad or not out:
        raise pytest.UsageError(
            f"SHMDICT_BACKENDS={raw!r}: expected a comma-separated list of "
            f"{', '.join(ALL_BACKENDS)}"
        )
    return out


def redis_wanted() -> bool:
    """Whether SHMDICT_BACKENDS names a Redis backend: the Redis modules
    (test_redis*.py) skip when it asks for shm alone."""
    return any(b != "shm" for b in backends())


def _shm_only_reason(node: Any) -> str | None:
    mark = node.get_closest_marker("shm_only")
    if mark is None:
        return None
    if not mark.args or not isinstance(mark.args[0], str) or not mark.args[0]:
        raise pytest.UsageError(f"{node.nodeid}: shm_only needs its reason")
    return str(mark.args[0])


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize the conformance tests over the backends."""
    if "conformance_backend" not in metafunc.fixturenames:
        return
    module = metafunc.module.__name__.rpartition(".")[2]
    if module not in CONFORMANCE or _shm_only_reason(metafunc.definition):
        return
    metafunc.parametrize("conformance_backend", backends(), indirect=True)


def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> None:
    """Deselect the cases marked shm_only (on a pytest.param) for the
    other backends."""
    keep, drop = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        kind = callspec.params.get("conformance_backend") if callspec else None
        if kind not in (None, "shm") and _shm_only_reason(item):
            drop.append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture
def conformance_backend(request: pytest.FixtureRequest) -> str:
    """The backend the test runs on: shm, redis or cluster (shm outside
    the conformance modules)."""
    return str(getattr(request, "param", "shm"))


def open_redis(request: pytest.FixtureRequest, kind: str, namespace: str) -> Any:
    """A RedisDict on the session's server (*kind* redis) or Cluster."""
    from shmdict.redis import RedisDict

    if kind == "cluster":
        cluster: Cluster = request.getfixturevalue("redis_cluster")
        return RedisDict(cluster.url, cluster=True, namespace=namespace)
    server: Server = request.getfixturevalue("redis_server")
    return RedisDict(server.url, namespace=namespace)


def redis_d(request: pytest.FixtureRequest, kind: str) -> Iterator[Any]:
    """The ``d`` fixture's work on Redis: a fresh namespace, flushed and
    closed at teardown."""
    d = open_redis(request, kind, unique_namespace(kind))
    try:
        yield d
    finally:
        try:
            if not d.closed:
                d.flush_all()
        finally:
            d.close()


def peer(d: Any) -> Any:
    """Another handle on the same dict, as another process would open it:
    ``shmdict.get(name)`` for a SharedDict, a new connection to the same
    namespace for a RedisDict."""
    if isinstance(d, shmdict.SharedDict):
        return shmdict.get(d.name)
    return pickle.loads(pickle.dumps(d))


def is_shm(d: object) -> bool:
    """Whether *d* is a SharedDict (so its memory accounting applies)."""
    return isinstance(d, shmdict.SharedDict)


class DictBackend:
    """Makes dicts on one backend, for the tests that make their own (the
    hypothesis machines): ``new(size)`` a fresh dict, ``peer(d)`` another
    handle, ``gone(d)`` whether it left nothing behind once closed."""

    def __init__(self, kind: str, request: pytest.FixtureRequest) -> None:
        self.kind = kind
        self._request = request
        self._base = new_name("m")
        self._count = 0
        self._made: list[bytes] = []

    @property
    def shm(self) -> bool:
        return self.kind == "shm"

    def new(self, size: int = MiB) -> Any:
        """A fresh, empty dict: an owner SharedDict of *size* bytes, or a
        RedisDict in a new namespace (*size* is the server's business)."""
        self._count += 1
        if self.shm:
            return shmdict.new(f"{self._base}-{self._count}", size)
        d = open_redis(self._request, self.kind, unique_namespace(self.kind))
        self._made.append(pickle.dumps(d))  # to flush it at the end
        return d

    def peer(self, d: Any) -> Any:
        return peer(d)

    def gone(self, d: Any) -> bool:
        """After the owner's close: no file left (shm), or, on Redis, the
        namespace emptied (a namespace outlives its handles: flush it)."""
        if self.shm:
            return not shmdict.exists(d.name)
        p = peer(d)
        try:
            p.flush_all()
            return len(p) == 0
        finally:
            p.close()

    def cleanup(self) -> None:
        """Flush every namespace made (shm: remove every file)."""
        made, self._made = self._made, []
        for spec in made:
            with pickle.loads(spec) as d:
                d.flush_all()
        remove_all(self._base)


@pytest.fixture
def dict_backend(
    conformance_backend: str, request: pytest.FixtureRequest
) -> Iterator[DictBackend]:
    """A :class:`DictBackend` for the test's backend."""
    b = DictBackend(conformance_backend, request)
    try:
        yield b
    finally:
        b.cleanup()

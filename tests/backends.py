"""The backends the integration and recipe tests run over.

``shm``: a shared dict in /dev/shm, named by the test's ``name``.
``redis``: a :class:`shmdict.redis.RedisDict` on the session's standalone
server (unix socket), in the namespace ``name``. ``cluster``: the same on
the session's Cluster, for the tests cheap enough to run there. The names
and the choice are the conformance modules' (tests/redis_fixtures.py):
``SHMDICT_BACKENDS`` (default all) says which run.

A dict is named across processes by a *spec* string, which spawned
children get as an argument: the dict's name, or ``URL#NAMESPACE``.
:func:`attach` opens another handle from it, as another process would.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest

import shmdict
from shmdict import DictLike

from .helpers import MiB
from .redis_fixtures import backends

#: The backends a test runs on: every one asked for (ALL), or those but the
#: Cluster (MAIN) for a test that spawns processes or sleeps.
ALL = backends()
MAIN = [b for b in ALL if b != "cluster"]

_specs: dict[int, str] = {}


@dataclasses.dataclass(frozen=True)
class Backend:
    """Where a test's dict lives: *kind* (shm, redis, cluster), the
    dict's *name* (a shared dict's name, a Redis namespace) and, for Redis,
    the server's *url*."""

    kind: str
    name: str
    url: str = ""

    @property
    def remote(self) -> bool:
        return self.kind != "shm"

    @property
    def spec(self) -> str:
        """The string :func:`attach` opens the dict by."""
        return f"{self.url}#{self.name}" if self.url else self.name

    def attach(self) -> Any:
        """Another handle on the dict (a shared dict must exist)."""
        return attach(self.spec)


def attach(spec: str) -> Any:
    """A new handle on the dict *spec* names: ``shmdict.get(NAME)``, or
    ``shmdict.connect(URL, namespace=NAMESPACE)`` for ``URL#NAMESPACE``.
    Any: the tests call the API of either backend, and close it."""
    if "://" in spec:
        url, _, namespace = spec.rpartition("#")
        d: DictLike = shmdict.connect(url, namespace=namespace)
    else:
        d = shmdict.get(spec)
    _specs[id(d)] = spec
    return d


def spec_of(d: DictLike) -> str:
    """The spec of a dict this module made (or any shared dict)."""
    if isinstance(d, shmdict.SharedDict):
        return d.name
    return _specs[id(d)]


def make_backend(request: pytest.FixtureRequest, kind: str, name: str) -> Backend:
    """The backend *kind* for the dict *name*; starts the session's server
    (or Cluster) on first use."""
    if kind == "shm":
        return Backend(kind, name)
    if kind == "cluster":
        url = request.getfixturevalue("redis_cluster").shmdict_url
    else:
        url = request.getfixturevalue("redis_server").url
    return Backend(kind, name, url)


def open_store(backend: Backend) -> Any:
    """A fresh, empty dict on *backend*: an owner handle of a new 1 MiB
    shared dict, or a RedisDict on the namespace (emptied first)."""
    if backend.kind == "shm":
        return shmdict.new(backend.name, MiB)
    d = attach(backend.spec)
    d.flush_all()
    return d


def close_store(backend: Backend, d: Any) -> None:
    """Close *d*; on Redis, remove the namespace's keys first."""
    try:
        if backend.remote and not d.closed:
            d.flush_all()
    finally:
        d.close()
        _specs.pop(id(d), None)


@pytest.fixture(params=MAIN)
def backend(request: pytest.FixtureRequest, name: str) -> Iterator[Backend]:
    """The test's backend, shm or redis; on Redis, the namespace is emptied
    at teardown."""
    b = make_backend(request, request.param, name)
    yield b
    if b.remote:
        with attach(b.spec) as d:
            d.flush_all()


@pytest.fixture
def store(backend: Backend) -> Iterator[Any]:
    """A fresh, empty dict on the test's backend."""
    d = open_store(backend)
    try:
        yield d
    finally:
        close_store(backend, d)

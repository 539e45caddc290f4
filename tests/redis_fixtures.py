"""Session-wide Redis servers for the tests, started only when a test asks.

``redis_server`` is one standalone server on a unix socket and
``redis_cluster`` a Cluster of 3 primaries with one replica each; each
starts the first time a test needs it and is stopped by pid at the end of
the session, also when tests fail. Without ``redis-server`` on PATH the
tests that need them are skipped. ``redis_dict_factory`` makes RedisDicts
with a namespace unique to the test, flushed and closed at teardown.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator

import pytest

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

"""RedisDict when the server fails: a server killed and restarted, a Cluster
primary killed (failover), a server at maxmemory. Each test starts its own
servers, so the session's shared ones stay healthy."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import shmdict

from .redis_fixtures import need_redis, redis_wanted, unique_namespace
from .redis_servers import Cluster, Server, start_cluster, start_standalone
from .strategies import canon_map

pytestmark = pytest.mark.no_asan

if not redis_wanted():
    pytest.skip("SHMDICT_BACKENDS asks for shm alone", allow_module_level=True)
redis = pytest.importorskip("redis")
from redis.backoff import ExponentialBackoff  # noqa: E402
from redis.retry import Retry  # noqa: E402

from shmdict.redis import RedisDict  # noqa: E402


@pytest.fixture
def own_server(tmp_path: Any) -> Iterator[Server]:
    need_redis()
    server = start_standalone(str(tmp_path / "standalone"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def own_cluster(tmp_path: Any) -> Iterator[Cluster]:
    need_redis()
    cluster = start_cluster(str(tmp_path / "cluster"))
    try:
        yield cluster
    finally:
        cluster.stop()


def test_server_killed_and_restarted_mid_run(own_server: Server) -> None:
    """A loop of incr calls runs while the server is SIGKILLed and, a moment
    later, started again (empty: no persistence). Calls during the outage
    raise BackendUnavailable naming the server, each within the retry
    policy's time; calls after the restart succeed."""
    retry = Retry(ExponentialBackoff(cap=0.2, base=0.05), 3)
    d = RedisDict(
        own_server.url,
        namespace=unique_namespace("kill"),
        retry=retry,
        socket_timeout=2,
    )
    outage = threading.Event()
    back = threading.Event()
    results: dict[str, int] = {"ok_before": 0, "failed": 0, "ok_after": 0}
    errors: list[BaseException] = []
    slowest_failure = 0.0

    def run() -> None:
        nonlocal slowest_failure
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            t0 = time.monotonic()
            try:
                d.incr("n", 1, init=0)
            except shmdict.BackendUnavailable as e:
                slowest_failure = max(slowest_failure, time.monotonic() - t0)
                results["failed"] += 1
                if own_server.socket not in str(e):
                    errors.append(AssertionError(f"message names no server: {e}"))
                time.sleep(0.01)
                continue
            except BaseException as e:
                errors.append(e)
                return
            if back.is_set():
                results["ok_after"] += 1
                if results["ok_after"] >= 50:
                    return
            elif not outage.is_set():
                results["ok_before"] += 1
            time.sleep(0.001)

    t = threading.Thread(target=run)
    t.start()
    try:
        deadline = time.monotonic() + 30
        while results["ok_before"] < 50 and time.monotonic() < deadline:
            time.sleep(0.01)
        outage.set()
        own_server.kill()
        deadline = time.monotonic() + 30
        while results["failed"] < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        own_server.restart()
        back.set()
    finally:
        t.join(90)
    try:
        assert not t.is_alive(), "the run hung"
        assert errors == []
        assert results["ok_before"] >= 50
        assert results["failed"] >= 5
        assert results["ok_after"] >= 50
        # No hang beyond the retry policy: 3 retries of <= 0.2 s, plus
        # connect attempts that fail at once on a missing socket.
        assert slowest_failure < 5.0, slowest_failure
        # The restarted server is empty: the counter started again at 0.
        assert 50 <= d["n"] <= results["ok_after"] + 1  # type: ignore[operator]
    finally:
        d.flush_all()
        d.close()


def _wait_replicated(cluster: Cluster, port: int, deadline: float = 30.0) -> None:
    """Wait until the primary at *port* has every write on its replica."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        info = cluster.info(port, "replication")
        offset = info.get("master_repl_offset")
        replica = info.get("slave0", "")
        fields = dict(f.split("=", 1) for f in replica.split(",") if "=" in f)
        if offset is not None and fields.get("offset") == offset:
            return
        time.sleep(0.05)
    raise AssertionError(f"the replica of {port} did not catch up")


def test_cluster_failover_recovers_within_retry_policy(own_cluster: Cluster) -> None:
    """Kill a primary that has a replica: its replica is promoted
    (cluster-node-timeout is 2 s in the harness), redis-py refreshes its
    slot map, and calls go through again within the retry policy, with
    the data the replica had."""
    from redis.crc import key_slot

    retry = Retry(ExponentialBackoff(cap=1.0, base=0.1), 40)
    d = RedisDict(
        own_cluster.url,
        cluster=True,
        namespace=unique_namespace("failover"),
        retry=retry,
        socket_timeout=2,
    )
    try:
        items = {f"k{i}": i for i in range(300)}
        d.set_many(items)
        victim = own_cluster.master_with_replica()
        _wait_replicated(own_cluster, victim)
        # The keys that live on the victim.
        on_victim = [
            k
            for k in items
            if d.client.nodes_manager.get_node_from_slot(
                key_slot(f"{d.namespace}:{k}".encode())
            ).port
            == victim
        ]
        assert on_victim, "no key on the killed primary"
        own_cluster.kill_node(victim)
        t0 = time.monotonic()
        # One call, no retry of ours: the policy rides out the failover.
        assert d.incr(on_victim[0], 1000) == items[on_victim[0]] + 1000
        took = time.monotonic() - t0
        # Every other key of the dead primary is served by its replica.
        got = d.get_many(list(items))
        expect = dict(items, **{on_victim[0]: items[on_victim[0]] + 1000})
        assert got == expect
        d.set("after", "failover")
        assert d["after"] == "failover"
        own_cluster.wait_ok(deadline=60)
        assert took < 60, took
    finally:
        try:
            d.flush_all()
        finally:
            d.close()


def test_maxmemory_raises_no_memory_and_keeps_everything(tmp_path: Any) -> None:
    """At maxmemory with noeviction every write raises NoMemoryError, and
    nothing already stored is lost or changed (values, lists, TTLs)."""
    need_redis()
    server = start_standalone(
        str(tmp_path / "small"), maxmemory="2mb", maxmemory_policy="noeviction"
    )
    d = RedisDict(server.url, namespace=unique_namespace("oom"))
    try:
        d.set("counter", 7)
        d.set("f", 1.5, 1000)
        d.rpush("q", "a")
        stored = 0
        full: shmdict.NoMemoryError | None = None
        while full is None and stored < 100_000:
            try:
                d.set(f"fill{stored:06d}", b"x" * 1000)
                stored += 1
            except shmdict.NoMemoryError as e:
                full = e
        assert full is not None
        assert "maxmemory" in str(full)
        assert stored > 100
        scalars = [k for k in d.get_keys() if k != "q"]
        before = canon_map(d.get_many(scalars))
        lists = d.lrange("q")
        ttl = d.ttl("f")
        writes: list[Callable[[], object]] = [
            lambda: d.set("new", 1),
            lambda: d.set("counter", b"y" * 10_000),
            lambda: d.incr("counter", 1),
            lambda: d.incr("newc", 1, init=0),
            lambda: d.add("new", 1),
            lambda: d.replace("counter", 8),
            lambda: d.setdefault("new", 1),
            lambda: d.cas("counter", 7, 8),
            lambda: d.rpush("q", "b"),
        ]
        for write in writes:
            with pytest.raises(shmdict.NoMemoryError):
                write()
        with pytest.raises(shmdict.NoMemoryError) as ei:
            d.set_many({"m1": 1, "m2": 2})
        assert ei.value.stored == 0  # type: ignore[attr-defined]
        assert canon_map(d.get_many(scalars)) == before
        assert sorted(d.get_keys()) == sorted([*scalars, "q"])
        assert d.lrange("q") == lists
        t = d.ttl("f")
        assert t is not None
        assert ttl is not None
        assert ttl - 60 < t <= ttl
        assert d["counter"] == 7
        # What frees or only relabels memory still works, as in SharedDict.
        assert d.expire("f", 5000) is True
        assert d.pop("counter") == 7
        # Deleting frees room: writes work again.
        assert d.delete_many([f"fill{i:06d}" for i in range(stored)]) == stored
        d.set("new", 1)
        assert d.incr("counter", 1, init=7) == 8
    finally:
        d.close()
        server.stop()

"""RedisDict itself: the encoding, namespaces, SCAN-based flush, hash tags,
error mapping and shmdict.connect. The shared API semantics are the
conformance suite's (the modules that run over every backend)."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from typing import Any

import pytest

import shmdict
from shmdict import Pickled

from .helpers import MiB
from .redis_fixtures import redis_wanted, unique_namespace
from .redis_servers import Cluster, Server

if not redis_wanted():
    pytest.skip("SHMDICT_BACKENDS asks for shm alone", allow_module_level=True)
redis = pytest.importorskip("redis")
from shmdict.redis import RedisDict, default_retry  # noqa: E402


@pytest.fixture
def rd(redis_server: Server) -> Iterator[RedisDict]:
    d = RedisDict(redis_server.url, namespace=unique_namespace("unit"))
    try:
        yield d
    finally:
        if not d.closed:
            d.flush_all()
        d.close()


@pytest.fixture
def raw(redis_server: Server) -> Iterator[Any]:
    """A plain redis-py client on the same server, to look under the hood."""
    r = redis.Redis.from_url(redis_server.url)
    try:
        yield r
    finally:
        r.close()


@pytest.fixture
def rc(redis_cluster: Cluster) -> Iterator[RedisDict]:
    d = RedisDict(redis_cluster.url, cluster=True, namespace=unique_namespace("c"))
    try:
        yield d
    finally:
        d.flush_all()
        d.close()


# ---------------------------------------------------------------- encoding

ROUND_TRIP = [
    None,
    True,
    False,
    0,
    -1,
    2**63 - 1,
    -(2**63),
    0.0,
    -0.0,
    1.5,
    0.1,
    1e308,
    5e-324,
    math.inf,
    -math.inf,
    "",
    "héllo ☃",
    "1",
    "-5",
    b"",
    b"\x00\xff",
    b"123",
]


@pytest.mark.parametrize("value", ROUND_TRIP, ids=repr)
def test_types_round_trip(rd: RedisDict, value: shmdict.Value) -> None:
    rd["k"] = value
    got = rd["k"]
    assert type(got) is type(value)
    if isinstance(value, float):
        assert math.copysign(1, got) == math.copysign(1, value)  # type: ignore[arg-type]
    assert got == value


def test_nan_round_trips(rd: RedisDict) -> None:
    rd["k"] = math.nan
    got = rd["k"]
    assert isinstance(got, float)
    assert math.isnan(got)


def test_pickled_stays_pickled(rd: RedisDict) -> None:
    rd["p"] = Pickled(b"\x80\x04N.")
    rd["b"] = b"\x80\x04N."
    assert type(rd["p"]) is Pickled
    assert type(rd["b"]) is bytes
    # Tagged bytes equal no plain bytes for cas, as in SharedDict.
    assert rd.cas("p", b"\x80\x04N.", 1) is False
    assert rd.cas("p", Pickled(b"\x80\x04N."), 1) is True


def test_ints_are_plain_decimals(rd: RedisDict, raw: Any) -> None:
    """An int is stored so that Redis's own INCRBY works on it, and every
    other type carries a tag no decimal starts with."""
    rd["n"] = -42
    rd["s"] = "-42"
    rd["f"] = 2.0
    ns = rd.namespace
    assert raw.get(f"{ns}:n") == b"-42"
    assert raw.incrby(f"{ns}:n", 2) == -40
    assert rd["n"] == -40
    assert raw.get(f"{ns}:s") == b"s-42"
    assert raw.get(f"{ns}:f") == b"f2.0"


def test_foreign_value_is_corrupt_not_a_crash(rd: RedisDict, raw: Any) -> None:
    raw.set(f"{rd.namespace}:x", b"written by someone else")
    raw.set(f"{rd.namespace}:e", b"")
    with pytest.raises(shmdict.CorruptError, match="not in shmdict's encoding"):
        rd.get("x")
    with pytest.raises(shmdict.CorruptError, match="empty"):
        rd.get("e")
    problems = rd.verify()
    assert len(problems) == 2
    raw.hset(f"{rd.namespace}:h", "f", "v")
    assert any("hash" in p for p in rd.verify())


def test_int_overflow_keeps_value(rd: RedisDict) -> None:
    rd["n"] = 2**63 - 2
    assert rd.incr("n", 1) == 2**63 - 1
    with pytest.raises(OverflowError, match="does not fit in 64 bits"):
        rd.incr("n", 1)
    assert rd["n"] == 2**63 - 1
    rd["m"] = -(2**63)
    with pytest.raises(OverflowError):
        rd.incr("m", -1)
    assert rd["m"] == -(2**63)
    with pytest.raises(OverflowError):
        rd.incr("new", 1, init=2**63 - 1)
    assert "new" not in rd
    with pytest.raises(OverflowError):
        rd["big"] = 2**63
    assert "big" not in rd


def test_float_incr_is_ieee_double(rd: RedisDict) -> None:
    rd["f"] = 0.1
    assert rd.incr("f", 0.2) == 0.1 + 0.2
    rd["i"] = 2**53 + 1
    assert rd.incr("i", 0.0) == float(2**53 + 1)
    assert rd.incr("x", 1, init=0.5) == 1.5
    assert type(rd.incr("y", 2, init=1)) is int


def test_incr_keeps_or_sets_expiry(rd: RedisDict) -> None:
    rd.set("n", 1, 100)
    rd.incr("n", 1)
    assert 99 < rd.ttl("n") <= 100  # type: ignore[operator]
    rd.incr("n", 1, 0)
    assert rd.ttl("n") == 0
    rd.incr("n", 1.5, 50)
    assert 49 < rd.ttl("n") <= 50  # type: ignore[operator]
    assert rd.incr("m", 1, 30, init=0, init_ttl=200) == 1
    assert 199 < rd.ttl("m") <= 200  # type: ignore[operator]


# ---------------------------------------------------------------- namespaces


def test_namespace_isolation(redis_server: Server) -> None:
    a = RedisDict(redis_server.url, namespace=unique_namespace("a"))
    b = RedisDict(redis_server.url, namespace=unique_namespace("b"))
    try:
        a["k"] = 1
        b["k"] = 2
        assert a["k"] == 1
        assert b["k"] == 2
        assert a.get_keys() == ["k"]
        a.flush_all()
        assert "k" not in a
        assert b["k"] == 2
    finally:
        for x in (a, b):
            x.flush_all()
            x.close()


def test_flush_all_touches_only_its_namespace(redis_server: Server, raw: Any) -> None:
    """SCAN MATCH with the namespace escaped: a namespace full of glob
    characters matches only itself, not its neighbours."""
    base = unique_namespace("g")
    ns = base + "*?[ab]\\"
    d = RedisDict(redis_server.url, namespace=ns)
    neighbours = [f"{base}x:k", f"{base}*?ax:k", f"{base}:k", f"{ns}x:k", "other"]
    try:
        for k in neighbours:
            raw.set(k, b"1")
        d.set_many({f"k{i}": i for i in range(1200)})
        assert len(d) == 1200
        assert len(d.get_keys(max_count=10)) == 10
        d.flush_all()
        assert len(d) == 0
        assert all(raw.get(k) == b"1" for k in neighbours)
    finally:
        raw.delete(*neighbours)
        d.flush_all()
        d.close()


def test_keys_with_separators_and_unicode(rd: RedisDict) -> None:
    keys = ["a:b", ":", "*", "[x]", "ключ", "k\x00z", "x" * 1000]
    for i, k in enumerate(keys):
        rd[k] = i
    assert sorted(rd.get_keys()) == sorted(keys)
    assert rd.get_many(keys) == {k: i for i, k in enumerate(keys)}


def test_hash_tag_namespace_is_one_slot(redis_cluster: Cluster) -> None:
    from redis.crc import key_slot

    ns = "{" + unique_namespace("tag") + "}"
    d = RedisDict(redis_cluster.url, cluster=True, namespace=ns)
    try:
        d.set_many({f"k{i}": i for i in range(100)})
        slots = {key_slot(f"{ns}:k{i}".encode()) for i in range(100)}
        assert len(slots) == 1
        assert d._slot_groups([f"{ns}:k{i}".encode() for i in range(100)]) == [
            list(range(100))
        ]
        assert d.get_many([f"k{i}" for i in range(100)]) == {
            f"k{i}": i for i in range(100)
        }
        assert len(d) == 100
    finally:
        d.flush_all()
        d.close()


def test_cluster_multi_key_calls_span_slots(rc: RedisDict) -> None:
    items = {f"k{i}": i for i in range(200)}
    rc.set_many(items, 60)
    assert len(rc._slot_groups([f"{rc.namespace}:{k}".encode() for k in items])) > 50
    assert rc.get_many([*items, "nope"]) == items
    assert sorted(rc.get_keys()) == sorted(items)
    assert rc.stats()["entries"] == 200
    assert rc.stats()["expiring"] == 200
    assert rc.delete_many([f"k{i}" for i in range(100)]) == 100
    assert len(rc) == 100
    rc.flush_all()
    assert len(rc) == 0


# ---------------------------------------------------------------- errors


def test_key_rules_as_shared_dict(rd: RedisDict) -> None:
    with pytest.raises(TypeError, match="keys must be str, not int"):
        rd.get(1)  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="keys must not be empty"):
        rd.set("", 1)
    with pytest.raises(ValueError, match="the limit is"):
        rd.set("x" * (shmdict.MAX_KEY_BYTES + 1), 1)
    with pytest.raises(UnicodeEncodeError):
        rd.set("\udcff", 1)
    assert 1 not in rd  # type: ignore[comparison-overlap]
    assert "" not in rd


def test_value_and_argument_errors(rd: RedisDict) -> None:
    with pytest.raises(TypeError, match="values must be"):
        rd.set("k", [1])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="exptime must be an int or float"):
        rd.set("k", 1, None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="finite"):
        rd.set("k", 1, math.nan)
    with pytest.raises(TypeError, match="delta must be an int or float, not bool"):
        rd.incr("k", True)
    with pytest.raises(TypeError, match="max_count must be an int"):
        rd.get_keys(1.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="one str"):
        rd.get_many("abc")
    assert len(rd) == 0


def test_closed_dict_raises_value_error(redis_server: Server) -> None:
    d = RedisDict(redis_server.url, namespace=unique_namespace())
    with d:
        d["k"] = 1
        d.delete("k")
    assert d.closed
    with pytest.raises(ValueError, match="closed"):
        d.get("k")
    with pytest.raises(ValueError, match="closed"):
        len(d)
    d.close()  # idempotent


def test_lost_server_raises_backend_unavailable(tmp_path: str) -> None:
    url = f"unix://{tmp_path}/no-such.sock"
    d = RedisDict(url, namespace="x")
    with pytest.raises(shmdict.BackendUnavailable, match=r"no-such\.sock") as ei:
        d.get("k")
    assert isinstance(ei.value, shmdict.Error)
    assert isinstance(ei.value, ConnectionError)
    d.close()


def test_client_given_is_used_and_not_closed(redis_server: Server) -> None:
    client = redis.Redis.from_url(redis_server.url)
    d = RedisDict(client, namespace=unique_namespace())
    d["k"] = 1
    d.flush_all()
    d.close()
    assert client.ping()
    client.close()
    with pytest.raises(ValueError, match="decode"):
        RedisDict(redis.Redis.from_url(redis_server.url, decode_responses=True))
    with pytest.raises(ValueError, match="client's own"):
        RedisDict(client, retry=default_retry())
    with pytest.raises(TypeError, match="Redis URL or a redis-py client"):
        RedisDict(42)
    with pytest.raises(ValueError, match="namespace"):
        RedisDict(redis_server.url, namespace="")
    # "a:b:k" would be key "b:k" of "a" and key "k" of "a:b".
    with pytest.raises(ValueError, match="without ':'"):
        RedisDict(redis_server.url, namespace="app:cache")
    with pytest.raises(ValueError, match=r"bad option.*colour"):
        RedisDict(redis_server.url + "?colour=red")
    with pytest.raises(ValueError, match=r"bad option.*colour"):
        shmdict.connect(redis_server.url, colour="red")


def test_pickle_reconnects(rd: RedisDict, redis_server: Server) -> None:
    """A RedisDict made from a URL pickles as "connect again" (as a
    SharedDict pickles as "reopen"); one made from a client can't."""
    import pickle

    rd["k"] = 1
    p = pickle.loads(pickle.dumps(rd))
    try:
        assert p is not rd
        assert p.namespace == rd.namespace
        assert p["k"] == 1
        p["k"] = 2
        assert rd["k"] == 2
    finally:
        p.close()
    client = redis.Redis.from_url(redis_server.url)
    try:
        with pytest.raises(TypeError, match="from a client"):
            pickle.dumps(RedisDict(client, namespace="x"))
    finally:
        client.close()


# ---------------------------------------------------------------- connect


def test_connect_redis_url(redis_server: Server) -> None:
    ns = unique_namespace("url")
    d = shmdict.connect(f"{redis_server.url}?namespace={ns}")
    try:
        assert isinstance(d, RedisDict)
        assert d.namespace == ns
        d["k"] = 1
        with shmdict.connect(redis_server.url, namespace=ns) as d2:
            assert d2["k"] == 1
    finally:
        d.flush_all()
        d.close()


def test_connect_cluster_url(redis_cluster: Cluster) -> None:
    d = shmdict.connect(redis_cluster.shmdict_url, namespace=unique_namespace())
    try:
        assert isinstance(d, RedisDict)
        assert d.cluster
        d.set_many({f"k{i}": i for i in range(20)})
        assert len(d) == 20
    finally:
        d.flush_all()
        d.close()


def test_connect_shm_url(name: str) -> None:
    d = shmdict.connect(f"shm://{name}?size=1M&evict=1&lock_timeout=2.5")
    try:
        assert isinstance(d, shmdict.SharedDict)
        assert d.size == MiB
        assert d.stats()["evict"] is True
        assert d.lock_timeout == 2.5
        d["k"] = 1
        # The same URL attaches to the same dict (open-or-create).
        with shmdict.connect(f"shm://{name}?size=1024K&evict=true") as d2:
            assert d2["k"] == 1
    finally:
        d.close()
        shmdict.remove(name)


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("shm://x", "no size"),
        ("shm://?size=1M", "names no dict"),
        ("shm://x?size=1M&colour=red", "unknown option 'colour'"),
        ("shm://x?size=lots", "invalid size"),
        ("shm://x?size=1M&evict=maybe", "expected 1/0"),
        ("shm://x?size=1M&size=2M", "twice"),
        ("memcached://x", "unknown URL"),
        ("x", "unknown URL"),
    ],
)
def test_connect_bad_urls(url: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        shmdict.connect(url)


def test_parse_size() -> None:
    from shmdict._connect import parse_size

    assert parse_size("65536") == 65536
    assert parse_size("64M") == 64 * MiB
    assert parse_size("64MiB") == 64 * MiB
    assert parse_size("1g") == 1 << 30
    assert parse_size("512KB") == 512 << 10
    with pytest.raises(ValueError, match="invalid size"):
        parse_size("1.5M")


def test_harness_cli_starts_and_stops(tmp_path: str) -> None:
    """tests/redis_servers.py start/stop, as the shell scripts use it."""
    import subprocess
    import sys

    from .redis_servers import _alive, have_redis

    if not have_redis():
        pytest.skip("redis-server is not installed")
    here = os.path.dirname(__file__)
    script = os.path.join(here, "redis_servers.py")
    work = str(tmp_path)
    out = subprocess.run(
        [sys.executable, script, "start", work],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    with open(os.path.join(work, "pids")) as f:
        pids = [int(p) for p in f.read().split()]
    try:
        assert out.returncode == 0, out.stderr
        env = dict(line.split("=", 1) for line in out.stdout.split())
        assert env["SHMDICT_REDIS_URL"].startswith("unix://")
        assert env["SHMDICT_REDIS_CLUSTER_URL"].startswith("redis+cluster://")
        assert len(pids) == 7
        for url in env.values():
            with shmdict.connect(url, namespace=unique_namespace()) as d:
                d["k"] = 1
                assert d["k"] == 1
                d.flush_all()
    finally:
        subprocess.run([sys.executable, script, "stop", work], timeout=120, check=False)
    assert not any(_alive(p) for p in pids)


# ---------------------------------------------------------------- Redis's own


def test_expired_key_is_gone_at_once(rd: RedisDict, raw: Any) -> None:
    """Where SharedDict keeps a stale value: Redis drops the key when it
    expires, so get_stale has nothing stale and flush_expired nothing to
    free (the shm_only tests of test_ttl.py check SharedDict's side)."""
    import time

    rd.set("a", "v", 0.05)
    assert rd.get_stale("a") == ("v", False)
    deadline = time.monotonic() + 10
    while raw.exists(f"{rd.namespace}:a") and time.monotonic() < deadline:
        time.sleep(0.01)
    assert rd.get_stale("a") is None
    assert rd.flush_expired() == 0
    assert rd.flush_expired(5) == 0
    with pytest.raises(ValueError, match=">= 0"):
        rd.flush_expired(-1)


def test_scripts_reload_after_script_flush(rd: RedisDict, raw: Any) -> None:
    """The scripts go by EVALSHA; a server that lost them (a restart, SCRIPT
    FLUSH) gets them again on NOSCRIPT, within the same call."""
    rd["n"] = 1
    raw.script_flush()
    assert rd.incr("n", 1) == 2
    raw.script_flush()
    assert rd.cas("n", 2, 3) is True
    raw.script_flush()
    assert rd.get_many(["n"]) == {"n": 3}


def test_cluster_node_without_cluster_flag_says_so(redis_cluster: Cluster) -> None:
    """A plain redis:// URL to a Cluster node: keys of other nodes answer
    MOVED, which the error turns into advice."""
    d = RedisDict(redis_cluster.url, namespace=unique_namespace("moved"))
    try:
        errors = []
        for i in range(50):  # some keys live on other nodes
            try:
                d.set(f"k{i}", i)
            except shmdict.Error as e:
                errors.append(str(e))
        assert errors
        assert all("redis+cluster://" in e for e in errors), errors[0]
    finally:
        d.close()
    # What did land on the node itself is cleaned up through the Cluster.
    with RedisDict(redis_cluster.url, cluster=True, namespace=d.namespace) as c:
        c.flush_all()


def test_batches_past_one_chunk(rd: RedisDict, raw: Any) -> None:
    """get_many and set_many work in chunks of a thousand keys inside
    their scripts (MGET, MSET): a batch over several chunks round-trips,
    a list found in a later chunk is still a TypeError, and set_many with
    an expiry gives every key one."""
    items: dict[str, shmdict.Value] = {
        f"k{i}": i if i % 2 else f"s{i}" for i in range(2500)
    }
    rd.set_many(items)
    assert rd.get_many(items) == items
    assert rd.get_many([*items, "absent"]) == items
    rd.delete("k1500")
    rd.lpush("k1500", 1)
    with pytest.raises(TypeError):
        rd.get_many(list(items))
    rd.delete("k1500")
    assert rd.get_many(["k1499", "k1500"]) == {"k1499": 1499}
    rd.set_many({f"t{i}": b"x" for i in range(1200)}, exptime=60)
    ttls = [rd.ttl(f"t{i}") for i in (0, 999, 1000, 1199)]
    assert all(t is not None and 50 < t <= 60 for t in ttls), ttls
    assert raw.get(rd._k("k3")) == b"3"

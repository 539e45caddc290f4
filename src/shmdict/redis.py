"""RedisDict: the SharedDict API on Redis, standalone or Cluster.

When one host is not enough, the same calls, values and errors work on a
Redis server that every host reaches::

    import shmdict
    d = shmdict.connect("redis://cache.internal:6379/0?namespace=myapp")
    d.incr("hits", 1, init=0)

:class:`RedisDict` needs redis-py (``pip install shmdict[redis]``), which
this module imports when a dict is made, not when it is imported; the rest
of shmdict needs no dependency. The server must be Redis 7.0 or later
(the scripts declare their flags with ``#!lua``).

**Keys.** Every key ``k`` lives in Redis as ``NAMESPACE:k`` (UTF-8), so
any number of dicts share a server without seeing each other's keys (a
namespace holds no ``:``, so none reaches into another). The
key rules are SharedDict's: str only (TypeError), not empty and at most
:data:`shmdict.MAX_KEY_BYTES` bytes of UTF-8 (ValueError). A namespace
wrapped in braces, ``namespace="{app}"``, is a Redis Cluster hash tag: all
of the dict's keys then live in one slot of one node, which makes the
multi-key calls atomic on a Cluster too, at the price of putting the whole
dict on that node.

**Values.** None, bool, int, float, str, bytes and :class:`shmdict.Pickled`
come back with the type they went in with. An int is stored as its plain
decimal string (what Redis's INCRBY works on); every other value is one
tag byte followed by its body, and no decimal int starts with a tag byte:
``N`` None, ``T`` True, ``F`` False, ``f`` + ``repr(float)``, ``s`` + UTF-8
str, ``b`` + bytes, ``p`` + pickled bytes. A list is a Redis list whose
items are encoded the same way. A value in the namespace that does not
follow this encoding (written by another client) raises
:class:`shmdict.CorruptError` when read.

**Atomicity.** Every single-key call is one Redis command or one Lua
script, so it is atomic on the server, as the SharedDict call is across
processes. The multi-key calls (get_many, set_many, delete_many) are one
script or command, atomic on a standalone server; on a Cluster they are
split by slot and sent in one pipeline (one round trip per node), each
slot's part atomic, the whole not (unless a hash-tag namespace puts every
key in one slot). flush_all, get_keys, len() and
iteration walk the namespace with SCAN (every primary of a Cluster) and are
never atomic; they never use KEYS or FLUSHDB, and touch no key outside the
namespace.

**Where it differs from SharedDict** (see the README's table): Redis drops
an expired key at once, so :meth:`RedisDict.get_stale` never returns a
stale value and :meth:`RedisDict.flush_expired` has nothing to free;
eviction is the server's ``maxmemory-policy`` (``evict=`` and
``set_forcible``'s count don't apply; under ``noeviction`` every write that
may grow memory raises NoMemoryError, incr and cas on existing keys too,
while delete, pop and expire still work); :meth:`RedisDict.verify` checks the
encoding of the namespace's values, not the server's memory; what survives
a crash is what Redis persistence (RDB, AOF) and replication keep; the
fields of :meth:`RedisDict.stats` are the server's.

**Errors.** As SharedDict: TypeError, KeyError, OverflowError and
ValueError for the same causes with the same messages, and
:class:`shmdict.NoMemoryError` when the server refuses a write under its
``maxmemory`` (``OOM command not allowed``). A lost connection, a timeout,
or a Cluster without a primary for a slot, after the retry policy is spent,
raises :class:`shmdict.BackendUnavailable`, which names the server and the
redis-py error. After a timeout a write may or may not have been applied.
"""

from __future__ import annotations

import copy
import math
import urllib.parse
from collections.abc import (
    Callable,
    ItemsView,
    Iterable,
    Iterator,
    Mapping,
    MutableMapping,
    ValuesView,
)
from typing import TYPE_CHECKING, Any, TypeVar, overload

from ._core import MAX_KEY_BYTES
from ._dict import Value
from ._pickled import Pickled
from .errors import BackendUnavailable, CorruptError, Error, NoMemoryError

if TYPE_CHECKING:  # pragma: no cover
    from redis.retry import Retry

__all__ = ["DEFAULT_SOCKET_TIMEOUT", "RedisDict", "default_retry"]

_T = TypeVar("_T")
_MISSING: Any = object()

#: Seconds a command may wait for the server's answer before it counts as
#: a failure (and is retried by the retry policy).
DEFAULT_SOCKET_TIMEOUT = 5.0

_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1
_MAX_TTL_MS = 9007199254740992.0  # 2**53 ms, as SharedDict

_NONE, _TRUE, _FALSE = b"N", b"T", b"F"
_FLOAT, _STR, _BYTES, _PICKLED = ord("f"), ord("s"), ord("b"), ord("p")
_INT_FIRST = frozenset(b"-0123456789")

_WRONG_SCALAR = "{!r} holds a list: use the list methods"
_WRONG_LIST = "{!r} does not hold a list"


def default_retry() -> Retry:
    """The retry policy a :class:`RedisDict` gets when none is given.

    Three retries with exponential backoff and jitter (about 0.05, 0.1 and
    0.2 s, capped at 1 s) on a lost connection or a timeout. A Cluster
    client also retries these after refreshing its slot map. Pass your own
    ``redis.retry.Retry`` as ``retry=`` to wait longer (a Cluster failover
    takes about ``cluster-node-timeout`` plus an election).
    """
    from redis.backoff import ExponentialWithJitterBackoff
    from redis.retry import Retry

    return Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), 3)


# ---------------------------------------------------------------- encoding


def _encode(value: object) -> bytes:
    """A value as stored in Redis. TypeError/OverflowError as SharedDict."""
    if value is None:
        return _NONE
    if value is True:
        return _TRUE
    if value is False:
        return _FALSE
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise OverflowError(
                "int does not fit in 64 bits (shmdict stores signed 64-bit ints)"
            )
        return b"%d" % int(value)
    if isinstance(value, float):
        return b"f" + repr(float(value)).encode()
    if isinstance(value, str):
        return b"s" + value.encode("utf-8")
    if isinstance(value, bytes):
        if len(value) > 0xFFFFFFFF:
            raise ValueError("value is larger than 4 GiB")
        return (b"p" if isinstance(value, Pickled) else b"b") + bytes(value)
    raise TypeError(
        "values must be None, bool, int, float, str or bytes, "
        f"not {type(value).__name__}"
    )


def _decode(raw: bytes, key: object = None) -> Value:
    """A stored value back as the type it went in with."""
    if not raw:
        raise CorruptError(f"the value of {key!r} in Redis is empty")
    c = raw[0]
    try:
        if c in _INT_FIRST:
            return int(raw)
        if c == _STR:
            return raw[1:].decode("utf-8")
        if c == _BYTES:
            return raw[1:]
        if c == _FLOAT:
            return float(raw[1:])
        if c == _PICKLED:
            return Pickled(raw[1:])
        if raw == _NONE:
            return None
        if raw == _TRUE:
            return True
        if raw == _FALSE:
            return False
    except ValueError:
        pass
    raise CorruptError(
        f"the value of {key!r} in Redis is not in shmdict's encoding: {raw[:40]!r}"
    )


def _check_key(key: object) -> str:
    """SharedDict's key rules: str, not empty, <= MAX_KEY_BYTES of UTF-8."""
    if not isinstance(key, str):
        raise TypeError(f"keys must be str, not {type(key).__name__}")
    n = len(key.encode("utf-8")) if not key.isascii() else len(key)
    if n == 0:
        raise ValueError("keys must not be empty")
    if n > MAX_KEY_BYTES:
        raise ValueError(f"key is {n} bytes of UTF-8; the limit is {MAX_KEY_BYTES}")
    return key


def _finite(o: object, what: str) -> float:
    """A number argument that must be finite (delta, exptime)."""
    if isinstance(o, bool) or not isinstance(o, (int, float)):
        raise TypeError(f"{what} must be an int or float, not {type(o).__name__}")
    try:
        d = float(o)
    except OverflowError:
        raise ValueError(f"{what} is too large") from None
    if not math.isfinite(d):
        raise ValueError(f"{what} must be finite, not {o!r}")
    return d


def _ttl_ms(exptime: object) -> int:
    """exptime in seconds as whole ms, as SharedDict: <= 0 is none (0),
    any positive time lasts at least 1 ms."""
    d = _finite(exptime, "exptime")
    if d <= 0:
        return 0
    m = math.ceil(d * 1000.0)
    if m > _MAX_TTL_MS:
        raise ValueError("exptime is too large (the limit is 2**53 ms)")
    return max(m, 1)


def _number_arg(o: object, what: str) -> bytes:
    """delta or init for the incr script: ``i<decimal>`` or ``f<repr>``."""
    if isinstance(o, int) and not isinstance(o, bool):
        if not _INT64_MIN <= o <= _INT64_MAX:
            raise OverflowError(
                "int does not fit in 64 bits (shmdict stores signed 64-bit ints)"
            )
        return b"i%d" % int(o)
    return b"f" + repr(_finite(o, what)).encode()


def _max_count(max_count: object) -> int:
    if not isinstance(max_count, int) or isinstance(max_count, bool):
        raise TypeError("max_count must be an int")
    if max_count < 0:
        raise ValueError("max_count must be >= 0")
    return int(max_count)


def _glob_escape(s: str) -> str:
    """*s* matched literally by Redis's glob (SCAN MATCH)."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in s)


# ---------------------------------------------------------------- scripts

# Scripts that write start with a "#!lua" line (Redis 7): the server then
# refuses the whole script up front when it is over maxmemory, rather than
# failing half-way through it. Numbers: Lua's are doubles, which is exactly
# SharedDict's float arithmetic; int + int goes through INCRBY (exact, and
# an error on overflow). Lua numbers are never returned (Redis would cut
# them to integers): values go back as their encoded strings.

_LUA_NUM = """
local function fmt(x)
  if x ~= x then return 'fnan' end
  if x == math.huge then return 'finf' end
  if x == -math.huge then return 'f-inf' end
  return 'f' .. string.format('%.17g', x)
end
local function num(raw)
  local c = string.byte(raw, 1)
  if c == 45 or (c and c >= 48 and c <= 57) then return 'i', tonumber(raw) end
  if c == 102 then
    local s = string.sub(raw, 2)
    if s == 'nan' or s == '-nan' then return 'f', 0/0 end
    if s == 'inf' then return 'f', math.huge end
    if s == '-inf' then return 'f', -math.huge end
    return 'f', tonumber(s)
  end
  return nil, nil
end
"""

# KEYS[1]; ARGV: delta ('i..'/'f..'), ttl mode ('k' keep / 'n' new),
# ttl ms, init ('' none / 'i..' / 'f..'), init ttl ms.
# Returns {'ok', encoded} or {'missing'} / {'type'} / {'overflow'}.
_INCR = (
    "#!lua\n"
    + _LUA_NUM
    + """
local k = KEYS[1]
local dk, ds = string.sub(ARGV[1], 1, 1), string.sub(ARGV[1], 2)
local mode, ttl = ARGV[2], tonumber(ARGV[3])
local raw = redis.pcall('GET', k)
if type(raw) == 'table' then return {'type'} end
if not raw then
  if ARGV[4] == '' then return {'missing'} end
  local ik, is = string.sub(ARGV[4], 1, 1), string.sub(ARGV[4], 2)
  local ittl = tonumber(ARGV[5])
  if ittl <= 0 then if mode == 'k' then ittl = 0 else ittl = ttl end end
  if ik == 'i' and dk == 'i' then
    redis.call('SET', k, is)
    local r = redis.pcall('INCRBY', k, ds)
    if type(r) == 'table' and r.err then
      redis.call('DEL', k)
      return {'overflow'}
    end
  else
    redis.call('SET', k, fmt(tonumber(is) + tonumber(ds)))
  end
  if ittl > 0 then redis.call('PEXPIRE', k, ittl) end
  return {'ok', redis.call('GET', k)}
end
local vk, v = num(raw)
if vk == nil or v == nil then return {'type'} end
if vk == 'i' and dk == 'i' then
  local r = redis.pcall('INCRBY', k, ds)
  if type(r) == 'table' and r.err then
    if string.find(r.err, 'overflow') then return {'overflow'} end
    return {'type'}
  end
  if mode == 'n' then
    if ttl > 0 then redis.call('PEXPIRE', k, ttl) else redis.call('PERSIST', k) end
  end
  -- r is a Lua number (a double): exact below 2**53, else read it back.
  if r > -9007199254740992 and r < 9007199254740992 then
    return {'ok', string.format('%d', r)}
  end
  return {'ok', redis.call('GET', k)}
end
local out = fmt(v + tonumber(ds))
if mode == 'k' then redis.call('SET', k, out, 'KEEPTTL')
elseif ttl > 0 then redis.call('SET', k, out, 'PX', ttl)
else redis.call('SET', k, out) end
return {'ok', out}
"""
)

# KEYS[1]; ARGV: expected, new, ttl mode ('k'/'n'), ttl ms. 1 stored,
# 0 not, -1 a list. Floats compare as numbers (0.0 == -0.0, nan != nan).
_CAS = (
    "#!lua\n"
    + _LUA_NUM
    + """
local k = KEYS[1]
local raw = redis.pcall('GET', k)
if type(raw) == 'table' then return -1 end
if not raw then return 0 end
local e = ARGV[1]
local same
if string.byte(raw, 1) == 102 and string.byte(e, 1) == 102 then
  local _, a = num(raw)
  local _, b = num(e)
  same = a == b
else
  same = raw == e
end
if not same then return 0 end
local ttl = tonumber(ARGV[4])
if ARGV[3] == 'k' then redis.call('SET', k, ARGV[2], 'KEEPTTL')
elseif ttl > 0 then redis.call('SET', k, ARGV[2], 'PX', ttl)
else redis.call('SET', k, ARGV[2]) end
return 1
"""
)

# expire: KEYS[1]; ARGV[1] ttl ms (0 clears). 1 if the key exists.
# allow-oom: it allocates nothing, and works at maxmemory as PEXPIRE does.
_EXPIRE = """#!lua flags=allow-oom
local k = KEYS[1]
if redis.call('EXISTS', k) == 0 then return 0 end
local ttl = tonumber(ARGV[1])
if ttl > 0 then redis.call('PEXPIRE', k, ttl) else redis.call('PERSIST', k) end
return 1
"""

# get_many: KEYS; a list of values (false: missing), or {'type', i}.
# MGET in chunks (Lua's unpack has a stack limit); MGET answers nil for a
# list, so only the keys that came back empty are asked their TYPE.
_GET_MANY = """#!lua flags=no-writes
local out, n = {}, #KEYS
for lo = 1, n, 1000 do
  local hi = math.min(lo + 999, n)
  local vals = redis.call('MGET', unpack(KEYS, lo, hi))
  for j = 1, hi - lo + 1 do
    local v = vals[j]
    if not v and redis.call('TYPE', KEYS[lo + j - 1]).ok == 'list' then
      return {'type', lo + j - 1}
    end
    out[lo + j - 1] = v
  end
end
return {'ok', out}
"""

# set_many: KEYS; ARGV[1] ttl ms, ARGV[i + 1] the value of KEYS[i]. With
# no expiry, MSET in chunks (one command per thousand keys).
_SET_MANY = """#!lua
local ttl, n = tonumber(ARGV[1]), #KEYS
if ttl > 0 then
  for i = 1, n do redis.call('SET', KEYS[i], ARGV[i + 1], 'PX', ttl) end
  return n
end
for lo = 1, n, 1000 do
  local args = {}
  for i = lo, math.min(lo + 999, n) do
    args[#args + 1] = KEYS[i]
    args[#args + 1] = ARGV[i + 1]
  end
  redis.call('MSET', unpack(args))
end
return n
"""

# setdefault: KEYS[1]; ARGV[1] the default. The old value, or false when
# the default was stored; {'type'} for a list.
_SETDEFAULT = """#!lua
local k = KEYS[1]
local old = redis.pcall('GET', k)
if type(old) == 'table' then return {'type'} end
if old then return {'old', old} end
redis.call('SET', k, ARGV[1])
return {'set'}
"""


# ---------------------------------------------------------------- the class


def _is_cluster_url(url: str) -> bool:
    scheme = url.split("://", 1)[0].lower()
    return scheme in ("redis+cluster", "rediss+cluster")


class RedisDict(MutableMapping[str, Value]):
    """A dict on a Redis server or Cluster, with SharedDict's API.

    ``RedisDict(url_or_client, *, namespace="shmdict", retry=None,
    socket_timeout=5.0, cluster=None, **client_kw)``

    *url_or_client* is a URL or a redis-py client. URLs: ``redis://HOST:PORT/DB``,
    ``rediss://`` (TLS), ``unix:///path/redis.sock?db=0`` for one server;
    ``redis+cluster://HOST:PORT`` (or ``rediss+cluster://``) for a Cluster,
    reached through any of its nodes; ``cluster=True`` does the same for a
    ``redis://`` URL. Other query options go to redis-py's ``from_url``.
    A ``redis.Redis`` or ``redis.cluster.RedisCluster`` client is used as
    it is (it must not decode responses) and is not closed by
    :meth:`close`; then *retry*, *socket_timeout* and *client_kw* must not
    be given.

    *namespace* (a non-empty str without ``:`` or NUL) prefixes every
    key: ``NAMESPACE:key``. Without a colon of its own, no namespace's
    keys ever match another's, so flush_all and get_keys stay inside it.
    ``"{name}"`` makes it a Cluster hash tag (one slot).
    *retry* is a ``redis.retry.Retry`` (default: :func:`default_retry`);
    *socket_timeout* the seconds a command may wait for its answer (also
    the connect timeout). *client_kw* go to the redis-py client.

    Cost: every call is one round trip to the server (or one per node /
    slot for the multi-key calls on a Cluster) plus the server's O(1) or
    O(n) work, named in each docstring. Raises ValueError for a bad URL or
    namespace, :class:`shmdict.BackendUnavailable` if a call cannot reach
    the server. Making a dict on one server does not connect; on a Cluster
    it reads the slot map from a node (BackendUnavailable if none answers).

    Retries: on one server, redis-py's client retries a command as the
    policy says. On a Cluster, redis-py's client counts retries but does
    not wait between them, which a failover outlasts; so the dict retries
    each call itself with the policy's backoff (the client refreshes its
    slot map after each failure), also on CLUSTERDOWN and TRYAGAIN. As
    with any retry, a write whose reply was lost may be applied twice.
    """

    def __init__(
        self,
        url_or_client: Any,
        *,
        namespace: str = "shmdict",
        retry: Retry | None = None,
        socket_timeout: float | None = DEFAULT_SOCKET_TIMEOUT,
        cluster: bool | None = None,
        **client_kw: Any,
    ) -> None:
        import redis
        from redis.cluster import RedisCluster

        if not isinstance(namespace, str):
            raise TypeError(f"namespace must be str, not {type(namespace).__name__}")
        if not namespace or "\0" in namespace or ":" in namespace:
            # A colon would let one namespace's keys match another's SCAN
            # pattern: "a:b:k" is key "b:k" of "a" and key "k" of "a:b".
            raise ValueError(
                f"invalid namespace {namespace!r}: it must be a non-empty str "
                "without ':' or NUL (use '.', '-' or '/' to build names)"
            )
        self._owns_client = isinstance(url_or_client, str)
        # How to make another handle like this one (pickling): None when
        # a client was given, which can't be sent to another process.
        self._spec: tuple[str, dict[str, Any]] | None = None
        policy: Retry | None = None
        if isinstance(url_or_client, str):
            self._spec = (
                url_or_client,
                dict(
                    client_kw,
                    namespace=namespace,
                    retry=retry,
                    socket_timeout=socket_timeout,
                    cluster=cluster,
                ),
            )
            url = url_or_client
            if _is_cluster_url(url):
                if cluster is False:
                    raise ValueError(f"{url!r} is a Cluster URL but cluster=False")
                cluster = True
                url = url.replace("+cluster", "", 1)
            kw: dict[str, Any] = dict(client_kw)
            policy = retry if retry is not None else default_retry()
            if cluster:
                # redis-py's Cluster client retries at once, with no backoff
                # (it only counts the policy's retries), which a failover
                # outlasts: it tries once here, refreshing its slot map on
                # a failure, and _Retrying below waits as the policy says.
                from redis.backoff import NoBackoff
                from redis.retry import Retry as _Retry

                kw["retry"] = _Retry(NoBackoff(), 0)
            else:
                kw["retry"] = policy
            kw.setdefault("socket_timeout", socket_timeout)
            kw.setdefault("socket_connect_timeout", socket_timeout)
            try:
                if cluster:
                    client: Any = RedisCluster.from_url(url, **kw)
                else:
                    client = redis.Redis.from_url(url, **kw)
            except redis.exceptions.RedisClusterException as e:
                raise BackendUnavailable(
                    f"Redis Cluster at {url!r} is unavailable: {e}"
                ) from e
            except redis.exceptions.RedisError as e:
                raise BackendUnavailable(f"Redis at {url!r} is unavailable: {e}") from e
            if not cluster:
                # redis-py keeps unknown URL options and client keywords
                # until its first connection, where they fail as a
                # TypeError deep inside a call: make one (it does not
                # connect) to say so now.
                pool = client.connection_pool
                try:
                    pool.connection_class(**pool.connection_kwargs)
                except TypeError as e:
                    client.close()
                    raise ValueError(f"a bad option for {url!r}: {e}") from None
            self._where = url
        elif isinstance(url_or_client, (redis.Redis, RedisCluster)):
            if retry is not None or client_kw or cluster is not None:
                raise ValueError(
                    "retry, cluster and client options are the client's own "
                    "when a client is given"
                )
            client = url_or_client
            policy = copy.copy(client.retry) if hasattr(client, "retry") else None
            self._where = _address_of(client)
        else:
            raise TypeError(
                "expected a Redis URL or a redis-py client, "
                f"not {type(url_or_client).__name__}"
            )
        if client.get_encoder().decode_responses:
            if self._owns_client:
                client.close()
            raise ValueError("the client must not decode responses (decode_responses)")
        self._client: Any = client
        self._cluster = isinstance(client, RedisCluster)
        self._r: Any = client
        if self._cluster:
            outer = copy.copy(policy) if policy is not None else default_retry()
            ex = redis.exceptions
            outer.update_supported_errors(
                [
                    ex.ConnectionError,
                    ex.TimeoutError,
                    ex.ClusterDownError,
                    ex.TryAgainError,
                    ex.SlotNotCoveredError,
                    ex.RedisClusterException,
                ]
            )
            self._r = _Retrying(client, outer)
        self._redis = redis
        self.namespace = namespace
        self._prefix = namespace.encode("utf-8") + b":"
        self._plen = len(self._prefix)
        self._match = _glob_escape(namespace) + ":*"
        self._closed = False
        self._incr = client.register_script(_INCR)
        self._cas = client.register_script(_CAS)
        self._expire = client.register_script(_EXPIRE)
        self._get_many = client.register_script(_GET_MANY)
        self._set_many = client.register_script(_SET_MANY)
        self._setdefault = client.register_script(_SETDEFAULT)

    # ------------------------------------------------------------ helpers

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return self._closed

    @property
    def owner(self) -> bool:
        """False: no handle owns a Redis namespace (its keys outlive every
        handle, as those of a dict made by :func:`shmdict.open` do)."""
        return False

    @property
    def name(self) -> str:
        """The namespace: what names this dict, as SharedDict's ``name``."""
        return self.namespace

    @property
    def cluster(self) -> bool:
        """True if the dict is on a Redis Cluster."""
        return self._cluster

    @property
    def client(self) -> Any:
        """The redis-py client (``Redis`` or ``RedisCluster``) in use."""
        return self._client

    def __repr__(self) -> str:
        state = "closed" if self._closed else self._where
        kind = "cluster " if self._cluster else ""
        return f"<shmdict.RedisDict {self.namespace!r} {kind}{state}>"

    def _k(self, key: object) -> bytes:
        """The Redis key of *key*, after SharedDict's checks."""
        k = _check_key(key)
        if self._closed:
            raise ValueError("operation on a closed shmdict")
        return self._prefix + k.encode("utf-8")

    def _live(self) -> None:
        if self._closed:
            raise ValueError("operation on a closed shmdict")

    def _error(
        self, e: BaseException, key: object = None, list_call: bool = False
    ) -> BaseException:
        """The shmdict exception for the redis-py exception *e*."""
        ex = self._redis.exceptions
        text = str(e)
        if isinstance(e, ex.ResponseError) and text.startswith("WRONGTYPE"):
            return TypeError((_WRONG_LIST if list_call else _WRONG_SCALAR).format(key))
        if isinstance(e, ex.OutOfMemoryError) or text.startswith("OOM"):
            return NoMemoryError(
                f"no memory: Redis at {self._where} refused the write "
                f"(maxmemory reached): {text}"
            )
        if isinstance(
            e,
            (
                ex.ConnectionError,
                ex.TimeoutError,
                ex.ClusterDownError,
                ex.TryAgainError,
                ex.ReadOnlyError,
                ex.RedisClusterException,
            ),
        ):
            return BackendUnavailable(
                f"Redis at {self._where} is unavailable: {type(e).__name__}: {text}"
            )
        if isinstance(e, (ex.AskError, ex.ClusterCrossSlotError)):  # MOVED too
            return Error(
                f"Redis at {self._where} is a Cluster node ({type(e).__name__}: "
                f"{text}): connect with a redis+cluster:// URL or cluster=True"
            )
        return Error(f"Redis at {self._where} answered an error: {text}")

    def _eval(self, script: Any, keys: list[bytes], args: list[Any]) -> Any:
        """Run a registered script by EVALSHA; on NOSCRIPT (a restarted or
        flushed server) load it and run it again. redis-py's Script call
        does the same, with more work per call."""
        try:
            return self._r.evalsha(script.sha, len(keys), *keys, *args)
        except self._redis.exceptions.NoScriptError:
            self._r.script_load(script.script)
            return self._r.evalsha(script.sha, len(keys), *keys, *args)

    def _slot_groups(self, keys: list[bytes]) -> list[list[int]]:
        """Indexes of *keys* grouped by Cluster slot (one group standalone)."""
        if not self._cluster:
            return [list(range(len(keys)))] if keys else []
        from redis.crc import key_slot

        groups: dict[int, list[int]] = {}
        for i, k in enumerate(keys):
            groups.setdefault(key_slot(k), []).append(i)
        return list(groups.values())

    def _batch_keys(self, keys: Iterable[str]) -> tuple[list[str], list[bytes]]:
        if isinstance(keys, str):
            raise TypeError("expected an iterable of keys, not one str")
        try:
            names = list(keys)
        except TypeError:
            raise TypeError("expected an iterable of keys") from None
        rkeys = [self._prefix + _check_key(k).encode("utf-8") for k in names]
        self._live()
        return names, rkeys

    def _scan(self) -> list[bytes]:
        """Every Redis key of the namespace (SCAN MATCH; every primary of a
        Cluster), each once. On a Cluster a failure starts the scan again,
        as the retry policy allows."""

        def scan() -> list[bytes]:
            return list(
                dict.fromkeys(self._client.scan_iter(match=self._match, count=1000))
            )

        if self._cluster:
            return self._r.call(scan)  # type: ignore[no-any-return]
        return scan()

    # ------------------------------------------------------------ reads

    @overload
    def get(self, key: str) -> Value: ...
    @overload
    def get(self, key: str, default: Value | _T) -> Value | _T: ...
    def get(self, key: str, default: Any = None) -> Any:
        """The value of *key*, or *default* when it is missing or expired.
        One GET. TypeError if it holds a list."""
        k = self._k(key)
        try:
            raw = self._r.get(k)
        except self._redis.exceptions.RedisError as e:
            raise self._error(e, key) from e
        return default if raw is None else _decode(raw, key)

    def __getitem__(self, key: str) -> Value:
        v = self.get(key, _MISSING)
        if v is _MISSING:
            raise KeyError(key)
        return v

    def get_stale(self, key: str, /) -> tuple[Value, bool] | None:
        """``(value, False)`` for a live key, None for a missing one.

        Redis removes a key when it expires, so there is never a stale
        value to return (SharedDict keeps one until its room is needed).
        One GET."""
        v = self.get(key, _MISSING)
        return None if v is _MISSING else (v, False)

    def __contains__(self, key: object) -> bool:
        """Whether *key* is live. One EXISTS; False for a non-str, empty or
        too long key, as SharedDict."""
        if not isinstance(key, str):
            return False
        n = len(key.encode("utf-8"))
        if n == 0 or n > MAX_KEY_BYTES:
            return False
        self._live()
        try:
            return bool(self._r.exists(self._prefix + key.encode("utf-8")))
        except self._redis.exceptions.RedisError as e:
            raise self._error(e, key) from e

    def ttl(self, key: str, /) -> float | None:
        """Seconds until *key* expires (> 0), 0 if it never does, None if it
        is missing. One PTTL (ms resolution)."""
        k = self._k(key)
        try:
            ms = self._r.pttl(k)
        except self._redis.exceptions.RedisError as e:
            raise self._error(e, key) from e
        if ms == -2:
            return None
        if ms == -1:
            return 0.0
        return max(int(ms), 1) / 1000.0

    def get_many(self, keys: Iterable[str], /) -> dict[str, Value]:
        """A dict of the keys that exist. Every key is checked first.

        One script on a standalone server (all values read at one moment);
        on a Cluster one script per slot (each slot's values at one moment),
        unless a hash-tag namespace keeps them in one. TypeError if one of
        the keys holds a list. O(len(keys))."""
        names, rkeys = self._batch_keys(keys)
        groups = self._slot_groups(rkeys)
        results = self._calls([([rkeys[i] for i in g], []) for g in groups], "get")
        out: dict[str, Value] = {}
        for group, res in zip(groups, results, strict=False):
            if isinstance(res, Exception):
                raise self._error(res) from res
            if res[0] == b"type":
                raise TypeError("get_many: one of the keys holds a list")
            for i, raw in zip(group, res[1], strict=True):
                if raw is not None:
                    out[names[i]] = _decode(raw, names[i])
        return out

    def get_keys(self, max_count: int = 0) -> list[str]:
        """A list of the live keys, at most *max_count* (0: all). SCAN over
        the namespace (every primary of a Cluster): O(keys of the
        database), not atomic; keys set or deleted meanwhile may or may not
        be listed. TypeError/ValueError for a bad *max_count*."""
        m = _max_count(max_count)
        self._live()
        out: list[str] = []
        try:
            for k in self._scan():
                try:
                    out.append(k[self._plen :].decode("utf-8"))
                except UnicodeDecodeError:
                    raise CorruptError(
                        f"a key in namespace {self.namespace!r} is not UTF-8: {k!r}"
                    ) from None
                if m and len(out) >= m:
                    break
        except self._redis.exceptions.RedisError as e:
            raise self._error(e) from e
        return out

    def __iter__(self) -> Iterator[str]:
        """The live keys, as :meth:`get_keys` lists them (listed first)."""
        return iter(self.get_keys())

    def __len__(self) -> int:
        """How many keys the namespace holds. SCAN: O(keys of the database)."""
        self._live()
        try:
            return sum(1 for _ in self._scan())
        except self._redis.exceptions.RedisError as e:
            raise self._error(e) from e

    # ------------------------------------------------------------ writes

    def _store(self, key: str, value: object, exptime: object, **how: bool) -> bool:
        k = self._k(key)
        v = _encode(value)
        ms = _ttl_ms(exptime)
        try:
            r = self._r.set(k, v, px=ms or None, **how)
        except self._redis.exceptions.RedisError as e:
            raise self._error(e, key) from e
        return bool(r)

    def set(self, key: str, value: Value, exptime: float = 0) -> bool:
        """Store *value* under *key*; it expires after *exptime* seconds if
        > 0 (ms resolution, at least 1 ms). Returns True. One SET.
        NoMemoryError if the server is at maxmemory with noeviction."""
        return self._store(key, value, exptime)

    def __setitem__(self, key: str, value: Value) -> None:
        self._store(key, value, 0)

    def add(self, key: str, value: Value, exptime: float = 0) -> bool:
        """Store only if *key* is missing; True if stored. One SET NX."""
        return self._store(key, value, exptime, nx=True)

    def replace(self, key: str, value: Value, exptime: float = 0) -> bool:
        """Store only if *key* exists (a list too); True if stored. SET XX."""
        return self._store(key, value, exptime, xx=True)

    def safe_set(self, key: str, value: Value, exptime: float = 0) -> bool:
        """:meth:`set`. SharedDict's safe_set never evicts; here whether a
        write may evict is the server's maxmemory-policy, not the call's."""
        return self._store(key, value, exptime)

    def safe_add(self, key: str, value: Value, exptime: float = 0) -> bool:
        """:meth:`add`, for the same reason as :meth:`safe_set`."""
        return self._store(key, value, exptime, nx=True)

    def set_forcible(self, key: str, value: Value, exptime: float = 0) -> int:
        """:meth:`set`, returning 0: Redis does not say what a write
        evicted (see the server's ``evicted_keys`` in :meth:`stats`)."""
        self._store(key, value, exptime)
        return 0

    def delete(self, key: str, /) -> bool:
        """Remove *key* (a list too); True if it existed. One DEL."""
        k = self._k(key)
        try:
            return bool(self._r.delete(k))
        except self._redis.exceptions.RedisError as e:
            raise self._error(e, key) from e

    def __delitem__(self, key: str) -> None:
        if not self.delete(key):
            raise KeyError(key)

    def expire(self, key: str, exptime: float) -> bool:
        """Make *key* expire after *exptime* seconds; <= 0 clears its
        expiry. True if the key exists. One script."""
        k = self._k(key)
        ms = _ttl_ms(exptime)
        try:
            return bool(self._eval(self._expire, [k], [ms]))
        except self._redis.exceptions.RedisError as e:
            raise self._error(e, key) from e

    @overload
    def pop(self, key: str) -> Value: ...
    @overload
    def pop(self, key: str, default: Value | _T) -> Value | _T: ...
    def pop(self, key: str, default: Any = _MISSING) -> Any:
        """Remove *key* and return its value, atomically (one GETDEL);
        *default*, or KeyError, if missing. TypeError if it holds a list."""
        k = self._k(key)
        try:
            raw = self._r.getdel(k)
        except self._redis.exceptions.RedisError as e:
            raise self._error(e, key) from e
        if raw is None:
            if default is _MISSING:
                raise KeyError(key)
            return default
        return _decode(raw, key)

    def setdefault(self, key: str, default: Value = None) -> Value:  # type: ignore[override]
        """The value of *key*; if missing, store *default* (no expiry) and
        return it, atomically (one script)."""
        k = self._k(key)
        v = _encode(default)
        try:
            res = self._eval(self._setdefault, [k], [v])
        except self._redis.exceptions.RedisError as e:
            raise self._error(e, key) from e
        if res[0] == b"type":
            raise TypeError(_WRONG_SCALAR.format(key))
        if res[0] == b"set":
            return default
        return _decode(res[1], key)

    def cas(
        self, key: str, expected: Value, new: Value, exptime: float | None = None
    ) -> bool:
        """Compare-and-set: if *key* holds a value of the same type equal to
        *expected* (floats as numbers), store *new* and return True;
        otherwise False. *exptime* None keeps the key's expiry, otherwise
        replaces it (<= 0 clears it). One script."""
        k = self._k(key)
        e, n = _encode(expected), _encode(new)
        if exptime is None:
            mode, ms = b"k", 0
        else:
            mode, ms = b"n", _ttl_ms(exptime)
        try:
            r = self._eval(self._cas, [k], [e, n, mode, ms])
        except self._redis.exceptions.RedisError as ex:
            raise self._error(ex, key) from ex
        if r == -1:
            raise TypeError(_WRONG_SCALAR.format(key))
        return bool(r)

    def incr(
        self,
        key: str,
        delta: int | float,
        exptime: float | None = None,
        *,
        init: int | float | None = None,
        init_ttl: float | None = None,
    ) -> int | float:
        """Add *delta* to the number at *key* and return the new value,
        atomically (one script; INCRBY for int + int).

        int + int stays int; a float on either side gives a float, added as
        SharedDict adds it (IEEE double). *exptime* None keeps the key's
        expiry, otherwise replaces it (<= 0 clears it). KeyError if
        missing, TypeError if not a number, OverflowError past 64 bits (the
        value is unchanged). With *init*, a missing key starts at
        *init* + *delta* with expiry *init_ttl* (or *exptime*)."""
        k = self._k(key)
        d = _number_arg(delta, "delta")
        if exptime is not None:
            mode, ms = b"n", _ttl_ms(exptime)
        else:
            mode, ms = b"k", 0
        i = b"" if init is None else _number_arg(init, "init")
        ims = 0 if init_ttl is None else _ttl_ms(init_ttl)
        try:
            res = self._eval(self._incr, [k], [d, mode, ms, i, ims])
        except self._redis.exceptions.RedisError as e:
            raise self._error(e, key) from e
        status = res[0]
        if status == b"ok":
            v = _decode(res[1], key)
            assert isinstance(v, (int, float))
            return v
        if status == b"missing":
            raise KeyError(key)
        if status == b"overflow":
            raise OverflowError(f"incr: the result for {key!r} does not fit in 64 bits")
        raise TypeError(f"incr: the value of {key!r} is not an int or float")

    def set_many(self, mapping: Mapping[str, Value], exptime: float = 0) -> None:
        """Store every item, each with expiry *exptime*. Every input is
        checked first. One script on a standalone server (atomic: all or
        none); on a Cluster one script per slot, each slot's part atomic.
        NoMemoryError (with ``stored``: how many items were kept, those of
        the slots done before) if the server is at maxmemory."""
        ms = _ttl_ms(exptime)
        if not isinstance(mapping, dict) and not hasattr(mapping, "items"):
            raise TypeError("set_many expects a mapping")
        items = list(mapping.items())
        for kv in items:
            if not isinstance(kv, tuple) or len(kv) != 2:
                raise TypeError("mapping items must be pairs")
        vals = [_encode(v) for _, v in items]
        _, rkeys = self._batch_keys([k for k, _ in items])
        groups = self._slot_groups(rkeys)
        calls = [([rkeys[i] for i in g], [ms] + [vals[i] for i in g]) for g in groups]
        results = self._calls(calls, "set")
        stored = sum(
            len(g)
            for g, r in zip(groups, results, strict=False)
            if not isinstance(r, Exception)
        )
        for r in results:
            if isinstance(r, Exception):
                err = self._error(r)
                if isinstance(err, NoMemoryError):
                    err.stored = stored  # type: ignore[attr-defined]
                raise err from r

    def delete_many(self, keys: Iterable[str], /) -> int:
        """Delete the keys; return how many existed. One DEL on a standalone
        server (atomic), one per slot on a Cluster."""
        _, rkeys = self._batch_keys(keys)
        groups = self._slot_groups(rkeys)
        results = self._calls([([rkeys[i] for i in g], []) for g in groups], "del")
        n = 0
        for r in results:
            if isinstance(r, Exception):
                raise self._error(r) from r
            n += int(r)
        return n

    def _calls(
        self, calls: list[tuple[list[bytes], list[Any]]], what: str
    ) -> list[Any]:
        """Run one get_many/set_many script or DEL (*what*: get, set, del)
        per (keys, args) of *calls*; each result, or the redis-py exception
        it raised. On one server, or for one call, one after another: an
        error ends the list (the rest are not run). On a
        Cluster, all in one pipeline: one round trip per node, not per
        slot (the script goes as EVAL: redis-py pipelines no EVALSHA on a
        Cluster)."""
        ex = self._redis.exceptions
        script = {"get": self._get_many, "set": self._set_many}.get(what)
        if not self._cluster or len(calls) == 1:
            out: list[Any] = []
            for keys, args in calls:
                try:
                    if script is None:
                        out.append(self._r.delete(*keys))
                    else:
                        out.append(self._eval(script, keys, args))
                except ex.RedisError as e:
                    out.append(e)
                    break
            return out

        def run() -> list[Any]:
            pipe = self._client.pipeline(transaction=False)
            for keys, args in calls:
                if script is None:
                    pipe.execute_command("DEL", *keys)
                else:
                    pipe.execute_command("EVAL", script.script, len(keys), *keys, *args)
            res: list[Any] = pipe.execute(raise_on_error=False)
            for r in res:  # lost nodes: the whole batch again, as the policy says
                if isinstance(
                    r, (ex.ConnectionError, ex.TimeoutError, ex.ClusterDownError)
                ):
                    raise r
            return res

        try:
            return self._r.call(run)  # type: ignore[no-any-return]
        except ex.RedisError as e:
            raise self._error(e) from e

    def flush_all(self) -> None:
        """Delete every key of the namespace, and no other. SCAN MATCH over
        the namespace (every primary of a Cluster), DEL in batches: O(keys
        of the database), not atomic (a key set meanwhile may survive).
        Never FLUSHDB."""
        self._live()
        try:
            batch: list[bytes] = []
            for k in self._scan():
                batch.append(k)
                if len(batch) >= 500:
                    self._del_batch(batch)
                    batch = []
            self._del_batch(batch)
        except self._redis.exceptions.RedisError as e:
            raise self._error(e) from e

    def _del_batch(self, rkeys: list[bytes]) -> None:
        """DEL the keys: one call, or one pipeline per batch on a Cluster."""
        groups = self._slot_groups(rkeys)
        for r in self._calls([([rkeys[i] for i in g], []) for g in groups], "del"):
            if isinstance(r, Exception):
                raise r

    def items(self) -> ItemsView[str, Value]:
        """A view of (key, value) pairs: the keys listed by SCAN, then read
        500 at a time with :meth:`get_many`; a key deleted meanwhile is
        skipped. O(n)."""
        return _RedisItems(self)

    def values(self) -> ValuesView[Value]:
        """A view of the values, read as :meth:`items` reads them. O(n)."""
        return _RedisValues(self)

    def clear(self) -> None:
        """Remove every item: the same as :meth:`flush_all`."""
        self.flush_all()

    def flush_expired(self, max_count: int = 0) -> int:
        """Returns 0: Redis frees expired keys itself (on access and in its
        background cycle), so there is nothing to flush."""
        _max_count(max_count)
        self._live()
        return 0

    # ------------------------------------------------------------ lists

    def _push(self, key: str, value: Value, left: bool) -> int:
        k = self._k(key)
        v = _encode(value)
        try:
            return int((self._r.lpush if left else self._r.rpush)(k, v))
        except self._redis.exceptions.RedisError as e:
            raise self._error(e, key, list_call=True) from e

    def lpush(self, key: str, value: Value, /) -> int:
        """Put *value* at the head of the list at *key* (made if missing);
        return its length. One LPUSH. TypeError if *key* holds a scalar."""
        return self._push(key, value, True)

    def rpush(self, key: str, value: Value, /) -> int:
        """Put *value* at the tail of the list; as :meth:`lpush`. RPUSH."""
        return self._push(key, value, False)

    def _pop(self, key: str, left: bool) -> Value:
        k = self._k(key)
        try:
            raw = (self._r.lpop if left else self._r.rpop)(k)
        except self._redis.exceptions.RedisError as e:
            raise self._error(e, key, list_call=True) from e
        return None if raw is None else _decode(raw, key)

    def lpop(self, key: str, /) -> Value:
        """Remove and return the head of the list at *key*, or None. A list
        that becomes empty is removed (by Redis). One LPOP."""
        return self._pop(key, True)

    def rpop(self, key: str, /) -> Value:
        """Remove and return the tail of the list, or None. One RPOP."""
        return self._pop(key, False)

    def llen(self, key: str, /) -> int:
        """The length of the list at *key* (0 if missing). One LLEN."""
        k = self._k(key)
        try:
            return int(self._r.llen(k))
        except self._redis.exceptions.RedisError as e:
            raise self._error(e, key, list_call=True) from e

    def lrange(self, key: str, /) -> list[Value]:
        """Every item of the list at *key*, head first, at one moment ([]
        if missing); the list is left as it is. One LRANGE: O(n)."""
        k = self._k(key)
        try:
            raws = self._r.lrange(k, 0, -1)
        except self._redis.exceptions.RedisError as e:
            raise self._error(e, key, list_call=True) from e
        return [_decode(r, key) for r in raws]

    # ------------------------------------------------------------ the rest

    def stats(self) -> dict[str, int | bool]:
        """Counters. ``entries`` and ``expiring``: the namespace's keys, and
        those with an expiry (SCAN plus a pipelined PTTL each: O(keys)). The rest
        are the server's (summed over a Cluster's primaries), for every
        namespace: ``hits``, ``misses`` (keyspace_hits/misses),
        ``evictions`` (evicted_keys), ``expirations`` (expired_keys),
        ``bytes_used`` (used_memory), ``capacity`` (maxmemory, 0: no
        limit), ``cluster``."""
        self._live()
        try:
            keys = list(self._scan())
            expiring = 0
            for i in range(0, len(keys), 500):
                ttls = self._pipeline([("PTTL", k) for k in keys[i : i + 500]])
                expiring += sum(1 for t in ttls if isinstance(t, int) and t >= 0)
            infos = self._infos()
        except self._redis.exceptions.RedisError as e:
            raise self._error(e) from e

        def total(field: str) -> int:
            return sum(int(info.get(field, 0)) for info in infos)

        return {
            "entries": len(keys),
            "expiring": expiring,
            "hits": total("keyspace_hits"),
            "misses": total("keyspace_misses"),
            "evictions": total("evicted_keys"),
            "expirations": total("expired_keys"),
            "bytes_used": total("used_memory"),
            "capacity": total("maxmemory"),
            "cluster": self._cluster,
        }

    def _infos(self) -> list[dict[str, Any]]:
        if self._cluster:
            res = self._r.info(target_nodes=self._r.PRIMARIES)
            if isinstance(res, dict) and all(isinstance(v, dict) for v in res.values()):
                return list(res.values())
            return [res]
        return [self._r.info()]

    def verify(self) -> list[str]:
        """Check the namespace: every key is UTF-8 and holds a string or a
        list in shmdict's encoding. Returns the problems found ([] if
        none). Redis's own memory is the server's to check. O(n): SCAN and
        a pipelined read of every value."""
        self._live()
        problems: list[str] = []
        try:
            keys = self._scan()
            for i in range(0, len(keys), 500):
                chunk = keys[i : i + 500]
                types = self._pipeline([("TYPE", k) for k in chunk])
                reads: list[tuple[str, tuple[Any, ...]]] = []
                for k, t in zip(chunk, types, strict=True):
                    t = t.encode() if isinstance(t, str) else t
                    try:
                        name = k[self._plen :].decode("utf-8")
                    except UnicodeDecodeError:
                        problems.append(f"key {k!r} is not UTF-8")
                        continue
                    if t == b"string":
                        reads.append((name, ("GET", k)))
                    elif t == b"list":
                        reads.append((name, ("LRANGE", k, 0, -1)))
                    elif t != b"none":
                        problems.append(f"{name!r} is a Redis {t.decode()}")
                values = self._pipeline([cmd for _, cmd in reads])
                for (name, _), got in zip(reads, values, strict=True):
                    raws = got if isinstance(got, list) else [got]
                    for raw in raws:
                        if raw is None:
                            continue
                        try:
                            _decode(raw, name)
                        except CorruptError as e:
                            problems.append(str(e))
        except self._redis.exceptions.RedisError as e:
            raise self._error(e) from e
        return problems

    def _pipeline(self, cmds: list[tuple[Any, ...]]) -> list[Any]:
        """Run single-key commands in one non-transactional pipeline (one
        round trip; on a Cluster one per node, retried as a whole); their
        replies in order. The first error raises."""
        if not cmds:
            return []

        def run() -> list[Any]:
            pipe = self._client.pipeline(transaction=False)
            for cmd in cmds:
                pipe.execute_command(*cmd)
            return pipe.execute()  # type: ignore[no-any-return]

        if self._cluster:
            return self._r.call(run)  # type: ignore[no-any-return]
        return run()

    def ping(self) -> None:
        """Check that the server answers; BackendUnavailable if not."""
        self._live()
        try:
            self._r.ping()
        except self._redis.exceptions.RedisError as e:
            raise self._error(e) from e

    def close(self) -> None:
        """Close the connections (of a client this dict made; a client
        given to it stays open). Idempotent. Keys stay on the server."""
        if self._closed:
            return
        self._closed = True
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> RedisDict:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __reduce__(self) -> tuple[Callable[..., RedisDict], tuple[Any, ...]]:
        """A pickled RedisDict made from a URL reconnects in the process
        that unpickles it (same URL, namespace and options), as a pickled
        SharedDict reopens its dict. One made from a client can't be
        pickled (TypeError): the client's connections stay in its process."""
        if self._spec is None:
            raise TypeError(
                "a RedisDict made from a client can't be pickled: make it "
                "from a URL (shmdict.connect(url)) to send it to other processes"
            )
        return (_reopen, self._spec)


class _RedisItems(ItemsView[str, Value]):
    _mapping: RedisDict  # set by MappingView.__init__

    def __iter__(self) -> Iterator[tuple[str, Value]]:
        m = self._mapping
        keys = m.get_keys()
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            got = m.get_many(chunk)
            for k in chunk:
                if k in got:
                    yield k, got[k]


class _RedisValues(ValuesView[Value]):
    _mapping: RedisDict  # set by MappingView.__init__

    def __iter__(self) -> Iterator[Value]:
        for _, v in _RedisItems(self._mapping):
            yield v


class _Retrying:
    """A Cluster client whose every call is retried with the policy's
    backoff (redis-py's Cluster client counts retries but does not wait
    between them)."""

    def __init__(self, client: Any, retry: Retry) -> None:
        self._client = client
        self._retry = retry

    def call(self, fn: Callable[[], _T]) -> _T:
        return self._retry.call_with_retry(fn, lambda _e: None)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def call(*a: Any, **kw: Any) -> Any:
            return self.call(lambda: attr(*a, **kw))

        return call


def _reopen(url: str, kw: dict[str, Any]) -> RedisDict:
    return RedisDict(url, **kw)


def _address_of(client: Any) -> str:
    """Where a redis-py client connects, for error messages."""
    try:
        nodes = getattr(client, "get_nodes", None)
        if nodes is not None:
            return "cluster " + ",".join(n.name for n in nodes()[:6])
        kw = client.connection_pool.connection_kwargs
        if "path" in kw:
            return f"unix://{kw['path']}"
        return f"{kw.get('host', '?')}:{kw.get('port', '?')}"
    except Exception:  # pragma: no cover - only for a message
        return repr(client)


def from_url(url: str, **kw: Any) -> RedisDict:
    """A :class:`RedisDict` for a Redis URL; ``namespace=`` may be given in
    the URL's query (``?namespace=app``) or as a keyword."""
    base, _, qs = url.partition("?")
    query = urllib.parse.parse_qsl(qs, keep_blank_values=True)
    rest = []
    for name, value in query:
        if name == "namespace":
            if "namespace" in kw:
                raise ValueError("namespace given in the URL and as a keyword")
            kw["namespace"] = value
        else:
            rest.append((name, value))
    if rest:
        base += "?" + urllib.parse.urlencode(rest)
    return RedisDict(base, **kw)

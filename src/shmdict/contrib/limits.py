"""A storage for the `limits` library (and so flask-limiter and slowapi).

Importing this module registers two storage schemes with ``limits``::

    import shmdict.contrib.limits  # noqa: F401  (registers the schemes)
    from limits.storage import storage_from_string

    storage = storage_from_string("shmdict://myapp-limits?size=16777216")
    astorage = storage_from_string("async+shmdict://myapp-limits")

``NAME`` in ``shmdict://NAME`` is the name of a dict that
:func:`shmdict.open` attaches to, or creates if it is missing, so every
worker process of the host that uses the same URI shares the same counters.
The query string (or keyword arguments, which win) sets:

``size``
    the dict's budget in bytes (a ``K``, ``M`` or ``G`` suffix multiplies
    by 1024, 1024**2 or 1024**3); default 64 MiB, committed only as used.
``evict``
    whether a full dict makes room by dropping expired and then least
    recently used items (default ``true``, as memcached does: a full store
    then forgets some limits early instead of failing every request).
``reserve``
    reserve the whole file up front (default ``false``).
``dir``
    the directory of the dict file (default ``$SHMDICT_DIR`` or ``/dev/shm``).
``lock_timeout``
    seconds to wait for a stripe's lock before ``shmdict.LockTimeout``.
``key_prefix``
    the prefix of every key this storage makes (default ``LIMITS``), so a
    dict can hold other data too and :meth:`reset` removes only limits.

Workers must agree on ``size``, ``evict`` and ``reserve``: a dict that exists
with other values is refused (:class:`limits.errors.ConfigurationError`).

When the workers of several hosts must share one limit, the same storage
runs on Redis: put ``shmdict+`` before a Redis URL that
:func:`shmdict.connect` takes::

    storage_from_string("shmdict+redis://limits.internal:6379/0")
    storage_from_string("shmdict+unix:///run/redis.sock?namespace=myapp")
    storage_from_string("async+shmdict+rediss://limits.internal:6380")

The schemes are ``shmdict+redis``, ``shmdict+rediss``, ``shmdict+unix``,
``shmdict+redis+cluster`` and ``shmdict+rediss+cluster`` (each also with
``async+`` before it).
``key_prefix`` is read from the query (or keyword arguments) as above;
everything else in the query, and every other keyword argument, goes to
:func:`shmdict.connect` (``namespace``, redis-py's options). The keys,
values and atomic steps are the same as on a shared dict, each one
command or script on the server; the async storage runs each call in a
worker thread there, so no round trip blocks the event loop. Times are
read from each host's wall clock (``time.time()``), as limits' own Redis
storage does: keep the hosts' clocks in step.

All three strategies are supported, and every operation is atomic across
processes and threads:

- fixed window: one counter per limit, made by ``incr(init=0, init_ttl=)``
  with the window's expiry, so the window starts at its first hit;
- moving window: the times of the hits still in the window, packed in one
  bytes value as (time, count) runs, newest first, checked and extended in
  one compare-and-set loop. Hits made at the same moment (one hit of cost
  N) share a 16-byte run, and runs that left the window are dropped, so a
  value holds at most one run per hit in the window, never more than the
  limit's amount; each hit reads and rewrites the whole value, so a limit
  of thousands of separate hits per window is better served by the
  sliding window counter, whose value is 24 bytes whatever the limit;
- sliding window counter: windows aligned on multiples of the expiry (as
  limits' memory and memcached storages do), the previous and current
  counts packed in one value updated by compare-and-set, so the weighted
  check and the increment are one atomic step.

The async storage on a shared dict runs the same operations in the calling
thread: they take microseconds and never do I/O, and the only wait is for
a stripe's lock held by another process (bounded by ``lock_timeout``).
"""

from __future__ import annotations

import asyncio
import math
import struct
import time
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeVar

try:
    from limits.aio.storage import base as _aio
    from limits.errors import ConfigurationError
    from limits.storage import base as _sync
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "shmdict.contrib.limits needs the 'limits' package (5.0 or later): "
        "pip install limits, or install shmdict with its 'limits' extra"
    ) from exc

import shmdict
from shmdict import _core
from shmdict._api import DictLike

__all__ = ["AsyncShmdictStorage", "ShmdictStorage"]

#: The dict size used when the URI gives none: 64 MiB, committed as used.
DEFAULT_SIZE: Final = 64 << 20
#: The prefix of every key the storage makes, unless ``key_prefix`` is given.
DEFAULT_PREFIX: Final = "LIMITS"

_UNITS: Final = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})
_OPTIONS: Final = frozenset(
    {"size", "evict", "reserve", "dir", "lock_timeout", "key_prefix"}
)

#: The URL schemes :func:`shmdict.connect` takes that the storage serves as
#: ``shmdict+SCHEME://``: Redis over TCP, TLS, a unix socket, and a Cluster.
REMOTE_SCHEMES: Final = ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster")

_T = TypeVar("_T")

# A moving window: runs of (hit time in seconds since the epoch, hits),
# newest first. A sliding window: (index of the current window, hits in
# the previous one, hits in the current one).
_RUN: Final = struct.Struct("<dq")
_SLIDING: Final = struct.Struct("<qqq")


def _size(value: float | str | bool) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip().upper().removesuffix("IB").removesuffix("B")
        unit = text[-1:] if text[-1:] in _UNITS else ""
        digits = text[: len(text) - len(unit)]
        if digits.isdigit():
            return int(digits) * _UNITS[unit]
    raise ConfigurationError(f"shmdict storage: bad size {value!r}")


def _flag(option: str, value: float | str | bool) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigurationError(f"shmdict storage: {option} must be true or false")


def _number(option: str, value: float | str | bool) -> float:
    try:
        return float(value)
    except ValueError:
        raise ConfigurationError(
            f"shmdict storage: {option} must be a number"
        ) from None


def _parse_remote(
    uri: str, options: Mapping[str, float | str | bool]
) -> tuple[str, str, dict[str, Any]] | None:
    """For a ``[async+]shmdict+SCHEME://...`` URI: the URL to connect to
    (the URI less ``[async+]shmdict+`` and less our own ``key_prefix``),
    the key prefix, and the keyword arguments for :func:`shmdict.connect`
    (*options* less ``key_prefix``). None for a ``shmdict://NAME`` URI.
    ConfigurationError for another scheme or a repeated key_prefix."""
    scheme, sep, rest = uri.partition("://")
    bare = scheme.removeprefix("async+")
    if not sep or bare == "shmdict":
        return None
    remote = bare.removeprefix("shmdict+")
    if remote == bare or remote not in REMOTE_SCHEMES:
        raise ConfigurationError(f"not a shmdict storage URI: {uri!r}")
    base, _, query = rest.partition("?")
    pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
    prefixes = [v for k, v in pairs if k == "key_prefix"]
    if len(prefixes) > 1:
        raise ConfigurationError("shmdict storage: key_prefix is given twice")
    kept = urllib.parse.urlencode([(k, v) for k, v in pairs if k != "key_prefix"])
    url = f"{remote}://{base}" + (f"?{kept}" if kept else "")
    kw: dict[str, Any] = dict(options)
    prefix = str(kw.pop("key_prefix", prefixes[0] if prefixes else DEFAULT_PREFIX))
    return url, prefix, kw


def _parse_uri(
    uri: str, options: Mapping[str, float | str | bool]
) -> tuple[str, dict[str, float | str | bool]]:
    """Split a ``shmdict://NAME?opt=value`` URI into the dict name and its
    options, keyword *options* overriding the query. ConfigurationError if
    the name is missing or an option is unknown or repeated."""
    parts = urllib.parse.urlsplit(uri)
    if parts.scheme not in ("shmdict", "async+shmdict"):
        raise ConfigurationError(f"not a shmdict storage URI: {uri!r}")
    path = parts.path.lstrip("/")
    if parts.netloc and path:
        raise ConfigurationError(
            f"shmdict storage: give the dict name once, as in shmdict://NAME "
            f"(got {uri!r})"
        )
    name = urllib.parse.unquote(parts.netloc or path)
    if not name:
        raise ConfigurationError(
            "shmdict storage: the URI needs a dict name, as in shmdict://NAME"
        )
    merged: dict[str, float | str | bool] = {}
    for key, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True):
        if key in merged:
            raise ConfigurationError(f"shmdict storage: {key} is given twice")
        merged[key] = value
    merged.update(options)
    unknown = sorted(set(merged) - _OPTIONS)
    if unknown:
        raise ConfigurationError(
            f"shmdict storage: unknown option(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(_OPTIONS))}"
        )
    return name, merged


def _as_count(value: shmdict.Value, key: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise TypeError(f"shmdict storage: {key!r} holds {value!r}, not a counter")


def _runs(value: shmdict.Value, key: str) -> list[tuple[float, int]]:
    if value is None:
        return []
    if not isinstance(value, bytes) or len(value) % _RUN.size:
        raise TypeError(f"shmdict storage: {key!r} does not hold a moving window")
    return list(_RUN.iter_unpack(value))


class _Limits:
    """The operations both storages share, on one dict: a shared dict, or
    the Redis dict of a ``shmdict+redis://`` URI.

    Keys: ``PREFIX:c:KEY`` for fixed-window counters, ``PREFIX:m:KEY`` for
    moving windows, ``PREFIX:s:KEY`` for sliding windows.
    """

    dict: DictLike

    def __init__(self, uri: str, options: Mapping[str, float | str | bool]) -> None:
        remote = _parse_remote(uri, options)
        if remote is not None:
            url, prefix, kw = remote
            self.prefix = f"{prefix}:"
            try:
                self.dict = shmdict.connect(url, **kw)
            except (TypeError, ValueError) as exc:
                raise ConfigurationError(f"shmdict storage {uri!r}: {exc}") from exc
            self.local = False
            return
        self.local = True
        name, opts = _parse_uri(uri, options)
        prefix = str(opts.get("key_prefix", DEFAULT_PREFIX))
        self.prefix = f"{prefix}:"
        directory = opts.get("dir")
        try:
            self.dict = shmdict.open(
                name,
                _size(opts.get("size", DEFAULT_SIZE)),
                evict=_flag("evict", opts.get("evict", True)),
                reserve=_flag("reserve", opts.get("reserve", False)),
                lock_timeout=_number(
                    "lock_timeout", opts.get("lock_timeout", _core.DEFAULT_LOCK_TIMEOUT)
                ),
                dir=None if directory is None else str(directory),
            )
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"shmdict storage {uri!r}: {exc}") from exc

    def close(self) -> None:
        self.dict.close()

    def counter(self, key: str) -> str:
        return f"{self.prefix}c:{key}"

    def moving(self, key: str) -> str:
        return f"{self.prefix}m:{key}"

    def sliding(self, key: str) -> str:
        return f"{self.prefix}s:{key}"

    # -- fixed window ----------------------------------------------------

    def incr(self, key: str, expiry: float, amount: int) -> int:
        k = self.counter(key)
        return _as_count(self.dict.incr(k, amount, init=0, init_ttl=expiry), k)

    def get(self, key: str) -> int:
        k = self.counter(key)
        return _as_count(self.dict.get(k, 0), k)

    def get_expiry(self, key: str) -> float:
        ttl = self.dict.ttl(self.counter(key))
        return time.time() + (ttl or 0.0)

    def check(self) -> bool:
        try:
            # One read: a closed handle raises ValueError, a store that
            # can't be reached a shmdict.Error.
            self.dict.get(f"{self.prefix}check")
        except (shmdict.Error, ValueError):
            return False
        return True

    def reset(self) -> int:
        mine = [k for k in self.dict.get_keys() if k.startswith(self.prefix)]
        return self.dict.delete_many(mine)

    def clear(self, key: str) -> None:
        self.dict.delete_many([self.counter(key), self.moving(key), self.sliding(key)])

    # -- moving window ---------------------------------------------------

    def acquire_entry(self, key: str, limit: int, expiry: float, amount: int) -> bool:
        if amount > limit:
            return False
        if amount <= 0:
            if amount < 0:
                raise ValueError("shmdict storage: a cost can't be negative")
            return True  # nothing to record, as in limits' own storages
        k = self.moving(key)
        while True:
            old = self.dict.get(k)
            # Read the clock after the value: a peer's hit that is in it was
            # stamped before now, so runs stay in order.
            now = time.time()
            cutoff = now - expiry
            live: list[tuple[float, int]] = []
            held = 0
            for stamp, hits in _runs(old, k):
                if stamp < cutoff:
                    break  # this run and every older one are out of the window
                live.append((stamp, hits))
                held += hits
            if held + amount > limit:
                return False
            if live and live[0][0] >= now:
                # A clock stepped back (or a tie): join the newest run, so
                # the runs stay sorted.
                live[0] = (live[0][0], live[0][1] + amount)
            else:
                live.insert(0, (now, amount))
            new = b"".join(_RUN.pack(stamp, hits) for stamp, hits in live)
            if old is None:
                if self.dict.add(k, new, expiry):
                    return True
            elif self.dict.cas(k, old, new, expiry):
                return True

    def get_moving_window(
        self, key: str, limit: int, expiry: float
    ) -> tuple[float, int]:
        k = self.moving(key)
        runs = _runs(self.dict.get(k), k)
        now = time.time()
        cutoff = now - expiry
        oldest, held = now, 0
        for stamp, hits in runs:
            if stamp < cutoff or held >= limit:
                break
            oldest, held = stamp, held + min(hits, limit - held)
        return oldest, held

    # -- sliding window counter ------------------------------------------

    def _sliding_state(
        self, value: shmdict.Value, key: str, expiry: float, now: float
    ) -> tuple[int, int, int]:
        """(current window index, previous count, current count) at *now*."""
        window = int(now / expiry)
        if value is None:
            return window, 0, 0
        if not isinstance(value, bytes) or len(value) != _SLIDING.size:
            raise TypeError(f"shmdict storage: {key!r} does not hold a sliding window")
        stored, previous, current = _SLIDING.unpack(value)
        if stored >= window:  # stored > window only if the clock stepped back
            return stored, previous, current
        if stored == window - 1:
            return window, current, 0
        return window, 0, 0

    @staticmethod
    def _previous_ttl(previous: int, expiry: float, now: float) -> float:
        # How much of the previous window still weighs: it falls from
        # expiry to 0 across the current window, as in limits' own storages.
        return (1 - ((now - expiry) / expiry) % 1) * expiry if previous else 0.0

    def acquire_sliding_window_entry(
        self, key: str, limit: int, expiry: float, amount: int
    ) -> bool:
        if amount > limit:
            return False
        k = self.sliding(key)
        while True:
            old = self.dict.get(k)
            now = time.time()
            window, previous, current = self._sliding_state(old, k, expiry, now)
            weight = self._previous_ttl(previous, expiry, now) / expiry
            if math.floor(previous * weight + current) + amount > limit:
                return False
            new = _SLIDING.pack(window, previous, current + amount)
            # Useless once both windows are over.
            ttl = (window + 2) * expiry - now
            if old is None:
                if self.dict.add(k, new, ttl):
                    return True
            elif self.dict.cas(k, old, new, ttl):
                return True

    def get_sliding_window(
        self, key: str, expiry: float
    ) -> tuple[int, float, int, float]:
        k = self.sliding(key)
        value = self.dict.get(k)
        now = time.time()
        _, previous, current = self._sliding_state(value, k, expiry, now)
        current_ttl = (1 - (now / expiry) % 1) * expiry + expiry
        return previous, self._previous_ttl(previous, expiry, now), current, current_ttl

    def clear_sliding_window(self, key: str) -> None:
        self.dict.delete(self.sliding(key))


class ShmdictStorage(
    _sync.Storage,
    _sync.MovingWindowSupport,
    _sync.SlidingWindowCounterSupport,
    _sync.TimestampedSlidingWindow,
):
    """Rate limit storage in a shmdict shared by the processes of one host,
    or in a Redis dict shared by every host.

    Made by ``limits.storage.storage_from_string("shmdict://NAME?...")``
    (see the module's docstring for the options), or
    ``"shmdict+redis://HOST..."``, or directly with the same URI. Every
    method is atomic across processes (and hosts); each takes
    microseconds, plus the wait for a stripe's lock held by another
    process, on a shared dict, and a round trip or two on Redis.

    Raises :class:`limits.errors.ConfigurationError` for a bad URI or option,
    or a dict that exists with another size, evict or reserve; the errors
    of :func:`shmdict.open` otherwise (NoMemoryError, PermissionError, ...).
    Operations raise :class:`shmdict.Error` (``LockTimeout``,
    ``NoMemoryError`` when the dict is full and does not evict,
    ``CorruptError``), wrapped in :class:`limits.errors.StorageError` when
    ``wrap_exceptions`` is true; TypeError if another program stored a value
    of the wrong type under one of this storage's keys.
    """

    # limits declares a list; the registry reads it once, at class creation.
    STORAGE_SCHEME = [  # noqa: RUF012
        "shmdict",
        *(f"shmdict+{s}" for s in REMOTE_SCHEMES),
    ]

    def __init__(
        self, uri: str, wrap_exceptions: bool = False, **options: float | str | bool
    ) -> None:
        self._limits = _Limits(uri, options)
        super().__init__(uri, wrap_exceptions=wrap_exceptions)

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return shmdict.Error

    @property
    def shared_dict(self) -> DictLike:
        """The dict this storage keeps its keys in: a ``SharedDict``, or a
        ``RedisDict`` for a ``shmdict+redis://`` URI."""
        return self._limits.dict

    def close(self) -> None:
        """Close this process's handle on the dict; the dict itself stays."""
        self._limits.close()

    def incr(self, key: str, expiry: float, amount: int = 1) -> int:
        """Add *amount* to the counter of *key* and return its new value; a
        missing (or expired) counter starts at 0 and expires *expiry*
        seconds later. O(1)."""
        return self._limits.incr(key, expiry, amount)

    def get(self, key: str) -> int:
        """The counter of *key*, 0 if missing or expired. O(1), no lock."""
        return self._limits.get(key)

    def get_expiry(self, key: str) -> float:
        """When the counter of *key* expires, in seconds since the epoch;
        now if it is missing. O(1), no lock."""
        return self._limits.get_expiry(key)

    def check(self) -> bool:
        """Whether the dict answers: False once the handle is closed. O(1)."""
        return self._limits.check()

    def reset(self) -> int | None:
        """Remove every key of this storage's prefix; return how many. O(n)
        in the keys of the whole dict."""
        return self._limits.reset()

    def clear(self, key: str) -> None:
        """Forget every window kept for *key* (all three strategies). O(1)."""
        self._limits.clear(key)

    def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        """Record *amount* hits now in the moving window of *key* if that
        keeps at most *limit* hits in the last *expiry* seconds. One
        compare-and-set, retried if another process got in first; O(runs
        in the window), at most *limit* runs of 16 bytes. ValueError for a
        negative *amount*."""
        return self._limits.acquire_entry(key, limit, expiry, amount)

    def get_moving_window(self, key: str, limit: int, expiry: int) -> tuple[float, int]:
        """(time of the oldest counted hit, hits in the window, at most
        *limit*); (now, 0) for an empty window. O(runs), no lock."""
        return self._limits.get_moving_window(key, limit, expiry)

    def acquire_sliding_window_entry(
        self, key: str, limit: int, expiry: int, amount: int = 1
    ) -> bool:
        """Count *amount* hits in the current window of *key* if the
        weighted count stays within *limit*. One compare-and-set, retried
        if another process got in first; O(1)."""
        return self._limits.acquire_sliding_window_entry(key, limit, expiry, amount)

    def get_sliding_window(
        self, key: str, expiry: int
    ) -> tuple[int, float, int, float]:
        """(previous count, seconds the previous window still weighs,
        current count, seconds until the current count is forgotten). O(1),
        no lock."""
        return self._limits.get_sliding_window(key, expiry)

    def clear_sliding_window(self, key: str, expiry: int) -> None:
        """Forget the sliding window of *key*. O(1)."""
        self._limits.clear_sliding_window(key)


class AsyncShmdictStorage(
    _aio.Storage,
    _aio.MovingWindowSupport,
    _aio.SlidingWindowCounterSupport,
    _sync.TimestampedSlidingWindow,
):
    """The ``async+shmdict://NAME`` storage: :class:`ShmdictStorage` for
    ``limits.aio``.

    On a shared dict, each coroutine runs the operation in the calling
    thread and returns without awaiting anything: operations take
    microseconds and never do I/O; the one wait is for a stripe's lock held
    by another process, which lasts as long as that process's own operation
    (``lock_timeout`` bounds it). On Redis (``async+shmdict+redis://``),
    each runs in a worker thread (:func:`asyncio.to_thread`), so the event
    loop goes on during the round trip. Options, costs and errors are those
    of :class:`ShmdictStorage`.
    """

    # limits declares a list; the registry reads it once, at class creation.
    STORAGE_SCHEME = [  # noqa: RUF012
        "async+shmdict",
        *(f"async+shmdict+{s}" for s in REMOTE_SCHEMES),
    ]

    def __init__(
        self, uri: str, wrap_exceptions: bool = False, **options: float | str | bool
    ) -> None:
        self._limits = _Limits(uri, options)
        super().__init__(uri, wrap_exceptions=wrap_exceptions)

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return shmdict.Error

    @property
    def shared_dict(self) -> DictLike:
        """The dict this storage keeps its keys in: a ``SharedDict``, or a
        ``RedisDict`` for a ``shmdict+redis://`` URI."""
        return self._limits.dict

    def close(self) -> None:
        """Close this process's handle on the dict; the dict itself stays."""
        self._limits.close()

    async def _run(self, call: Callable[..., _T], *args: Any) -> _T:
        """``call(*args)``: at once on a shared dict, in a worker thread on
        Redis (a network round trip must not block the event loop)."""
        if self._limits.local:
            return call(*args)
        return await asyncio.to_thread(call, *args)

    async def incr(self, key: str, expiry: float, amount: int = 1) -> int:
        """See :meth:`ShmdictStorage.incr`."""
        return await self._run(self._limits.incr, key, expiry, amount)

    async def get(self, key: str) -> int:
        """See :meth:`ShmdictStorage.get`."""
        return await self._run(self._limits.get, key)

    async def get_expiry(self, key: str) -> float:
        """See :meth:`ShmdictStorage.get_expiry`."""
        return await self._run(self._limits.get_expiry, key)

    async def check(self) -> bool:
        """See :meth:`ShmdictStorage.check`."""
        return await self._run(self._limits.check)

    async def reset(self) -> int | None:
        """See :meth:`ShmdictStorage.reset`."""
        return await self._run(self._limits.reset)

    async def clear(self, key: str) -> None:
        """See :meth:`ShmdictStorage.clear`."""
        await self._run(self._limits.clear, key)

    async def acquire_entry(
        self, key: str, limit: int, expiry: int, amount: int = 1
    ) -> bool:
        """See :meth:`ShmdictStorage.acquire_entry`."""
        return await self._run(self._limits.acquire_entry, key, limit, expiry, amount)

    async def get_moving_window(
        self, key: str, limit: int, expiry: int
    ) -> tuple[float, int]:
        """See :meth:`ShmdictStorage.get_moving_window`."""
        return await self._run(self._limits.get_moving_window, key, limit, expiry)

    async def acquire_sliding_window_entry(
        self, key: str, limit: int, expiry: int, amount: int = 1
    ) -> bool:
        """See :meth:`ShmdictStorage.acquire_sliding_window_entry`."""
        return await self._run(
            self._limits.acquire_sliding_window_entry, key, limit, expiry, amount
        )

    async def get_sliding_window(
        self, key: str, expiry: int
    ) -> tuple[int, float, int, float]:
        """See :meth:`ShmdictStorage.get_sliding_window`."""
        return await self._run(self._limits.get_sliding_window, key, expiry)

    async def clear_sliding_window(self, key: str, expiry: int) -> None:
        """See :meth:`ShmdictStorage.clear_sliding_window`."""
        await self._run(self._limits.clear_sliding_window, key)

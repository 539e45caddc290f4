"""A Django cache backend on a shared-memory dict, or on Redis.

Every worker process of a host (gunicorn, uvicorn, Celery) shares one cache
at memory speed, with no server to run::

    CACHES = {
        "default": {
            "BACKEND": "shmdict.contrib.django.SharedMemoryCache",
            "LOCATION": "myapp-cache",  # the dict's name
            "OPTIONS": {"size": 256 << 20},
        }
    }

When one host is not enough, a ``LOCATION`` that is a URL (it holds
``://``) is handed to :func:`shmdict.connect`, with ``OPTIONS`` as its
keyword arguments: ``redis://``, ``rediss://`` or ``unix://`` make the
same cache on a :class:`shmdict.redis.RedisDict`, shared by every host,
with the same stored values and the same behaviour::

    "LOCATION": "redis://cache.internal:6379/0",
    "OPTIONS": {"namespace": "myapp-cache"},

``LOCATION`` names the dict, which every process opens (or creates) with
:func:`shmdict.open`; ``OPTIONS`` may give ``size`` (default 64 MiB),
``evict`` (default True: a full dict drops expired, then least recently
used entries), ``dir``, ``stripes``, ``reserve`` and ``lock_timeout``, as
:func:`shmdict.open` takes them, and Django's ``MAX_ENTRIES`` and
``CULL_FREQUENCY``. ``TIMEOUT``, ``KEY_PREFIX``, ``VERSION`` and
``KEY_FUNCTION`` work as Django documents them.

With a URL, ``OPTIONS`` holds :func:`shmdict.connect`'s keyword arguments
(``namespace``, ...) besides ``MAX_ENTRIES`` and ``CULL_FREQUENCY``.

Values of the six native types (None, bool, int within 64 bits, float,
str, bytes: exactly those types, not subclasses) are stored as themselves,
so another process reading the dict with plain shmdict (or a
``RedisDict`` of the same namespace) sees them under the made key
(``":1:name"`` by default); anything else is stored as
:class:`shmdict.Pickled` holding ``pickle.dumps(value, pickle_protocol)``.
"""

from __future__ import annotations

import asyncio
import pickle
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from django.core.cache.backends.base import (
    DEFAULT_TIMEOUT,
    MEMCACHE_MAX_KEY_LENGTH,
    BaseCache,
)
from django.core.exceptions import ImproperlyConfigured

from .. import _core
from .._api import DictLike
from .._dict import SharedDict
from .._pickled import Pickled
from ..errors import NoMemoryError
from ._common import (
    MISSING,
    decode,
    encode,
    exptime_limit,
    incr_by_cas,
    is_url,
    shared_connection,
    shared_handle,
)

__all__ = ["SharedMemoryCache"]

_T = TypeVar("_T")

#: The OPTIONS this backend reads itself, with their defaults; BaseCache
#: reads MAX_ENTRIES and CULL_FREQUENCY.
_OPEN_OPTIONS: dict[str, Any] = {
    "size": 64 << 20,
    "evict": True,
    "dir": None,
    "stripes": None,
    "reserve": False,
    "lock_timeout": _core.DEFAULT_LOCK_TIMEOUT,
}
_CULL_OPTIONS = ("MAX_ENTRIES", "CULL_FREQUENCY")


# BaseCache is Any to mypy: Django ships no type information.
class SharedMemoryCache(BaseCache):
    """Django's cache API on the shared dict named by ``LOCATION``, or on
    the dict :func:`shmdict.connect` makes of a ``LOCATION`` URL.

        Each call is one or two operations on the dict, atomic across processes
        and threads: ``add`` is the dict's add, ``incr``/``decr`` its incr
        (the key keeps its expiry), ``touch`` its expire, ``get_many`` reads
        every key at one moment. Costs are those of the dict's calls, O(1) per
        key, plus pickling for values that aren't native; ``clear`` and a cull
        are O(entries).

        Differences from Django's own backends, each on purpose:

        - ``MAX_ENTRIES`` applies only when given: the dict's ``size`` already
          bounds the cache, and with ``evict`` (the default) a full dict makes
          room by itself, as memcached does. When given, it counts every entry
          of the dict, and culling removes ``1/CULL_FREQUENCY`` of them
          (``CULL_FREQUENCY`` 0: all), as Django's locmem backend does.
        - ``clear()`` empties the whole dict, whatever the key prefix or
          version, as the Redis backend's flush does.
        - ``close()``, which Django calls after every request, keeps the
          mapping: the process maps the dict once, and shares that handle
          among its threads and cache aliases.
        - A value that can never fit (larger than a stripe), or a write into a
          full dict made with ``evict=False``, is not cached, as memcached
          does with values past its item size: ``set`` drops the old value
          too, ``add`` returns False, ``set_many`` returns the keys it
          couldn't store.
        - The ``a*`` coroutines run the same code directly rather than in a
          worker thread: each is a memory operation of a microsecond or less.
          On any other dict than a ``SharedDict`` (Redis), they run it in a
          worker thread, as Django's own backends do, so that no network round
          trip blocks the event loop.
        - On Redis, ``MAX_ENTRIES`` counts the namespace's keys with SCAN on
          every write, which costs O(entries): leave it out, and bound the
          cache with the server's ``maxmemory`` and ``maxmemory-policy``
          (``allkeys-lru``) instead.
    """

    #: The pickle protocol for values that aren't native.
    pickle_protocol = pickle.HIGHEST_PROTOCOL

    #: The entry count that starts a cull; None: no count, only ``size``.
    _max_entries: int | None
    _cull_frequency: int

    def __init__(self, location: str, params: dict[str, Any]) -> None:
        """Open (or create) the dict *location*, or connect to the URL
        *location*. O(stripes) the first time in a process, O(1) after
        that: the process keeps one handle (one connection pool) per
        dict and shares it between threads and aliases.

        Raises ImproperlyConfigured for a missing LOCATION or an OPTIONS
        key this backend (with a URL: :func:`shmdict.connect`) doesn't
        know, and whatever :func:`shmdict.open` raises (ValueError if the
        dict exists with another size, evict, reserve or stripes) or
        :func:`shmdict.connect` does.
        """
        super().__init__(params)
        if not location or not isinstance(location, str):
            raise ImproperlyConfigured(
                "SharedMemoryCache needs LOCATION: the name of the shared dict, "
                "or a URL for shmdict.connect (redis://, unix://, shm://NAME)"
            )
        options = dict(params.get("OPTIONS") or {})
        if "MAX_ENTRIES" not in options and "max_entries" not in params:
            self._max_entries = None
        self._dict: DictLike
        if is_url(location):
            kw = {k: v for k, v in options.items() if k not in _CULL_OPTIONS}
            try:
                self._dict = shared_connection(location, kw)
            except TypeError as exc:
                raise ImproperlyConfigured(
                    f"SharedMemoryCache: bad OPTIONS for {location!r}: {exc}"
                ) from exc
            return
        unknown = set(options) - set(_OPEN_OPTIONS) - set(_CULL_OPTIONS)
        if unknown:
            raise ImproperlyConfigured(
                f"unknown OPTIONS for SharedMemoryCache: {sorted(unknown)}; "
                f"it takes {sorted(_OPEN_OPTIONS)} and {list(_CULL_OPTIONS)}"
            )
        kw = {k: options.get(k, v) for k, v in _OPEN_OPTIONS.items()}
        self._dict = shared_handle(location, **kw)

    # ---- helpers -----------------------------------------------------------

    def validate_key(self, key: str) -> None:
        """Warn (CacheKeyWarning) about a key memcached would refuse, as
        Django's backends do. Django's check runs only for a key that could
        draw a warning: one too long, or with a character that is not
        printable, or a space. Cost: about 0.05 us for a plain key;
        Django's check alone costs about 1.5 us on every call (its regex
        is compiled lazily, behind a proxy), most of a cache hit."""
        if len(key) > MEMCACHE_MAX_KEY_LENGTH or not key.isprintable() or " " in key:
            super().validate_key(key)

    def _dumps(self, value: Any) -> bytes:
        return pickle.dumps(value, self.pickle_protocol)

    def _encode(self, value: Any) -> Any:
        return encode(value, self._dumps)

    def _decode(self, stored: Any) -> Any:
        return decode(stored, pickle.loads)

    def _exptime(self, timeout: Any) -> float | None:
        """The dict's exptime for a Django timeout: 0 for never (None, or
        past the dict's limit), seconds for a positive timeout, and None for
        "don't cache" (0 or negative)."""
        if timeout is DEFAULT_TIMEOUT:
            timeout = self.default_timeout
        if timeout is None:
            return 0.0
        if timeout <= 0:
            return None
        t = float(timeout)
        return 0.0 if t >= exptime_limit else t

    def _cull(self) -> None:
        """Make room under MAX_ENTRIES, as Django's own backends do when the
        entry count has reached it: drop expired entries, then, if still
        at the limit, 1/CULL_FREQUENCY of the entries (CULL_FREQUENCY 0:
        all). O(1) under the limit (one read of the counters), O(entries)
        when it culls; on Redis, O(entries) every time (a SCAN), and the
        server has already dropped the expired keys."""
        limit = self._max_entries
        if limit is None:
            return
        d = self._dict
        if isinstance(d, SharedDict):
            # The engine's counters, without the statvfs of SharedDict.stats;
            # they count expired entries not yet reclaimed too.
            if _core.Dict.stats(d)["entries"] < limit:
                return
            d.flush_expired()
        count = len(d)
        if count < limit:
            return
        if self._cull_frequency == 0:
            d.flush_all()
            return
        doomed = count // self._cull_frequency
        if doomed:
            d.delete_many(d.get_keys(doomed))

    def _store(self, key: str, stored: Any, exptime: float) -> bool:
        """set, or drop the key when the value can't be stored."""
        try:
            self._dict.set(key, stored, exptime)
        except NoMemoryError:
            self._dict.delete(key)
            return False
        return True

    # ---- the cache API -----------------------------------------------------

    def add(
        self,
        key: str,
        value: Any,
        timeout: Any = DEFAULT_TIMEOUT,
        version: int | None = None,
    ) -> bool:
        """Store *value* only if *key* is missing (or expired); True if it
        was (with a timeout of 0: True if it would have been, and nothing is
        stored). Atomic. O(1) plus pickling. Raises what pickling raises."""
        key = self.make_and_validate_key(key, version=version)
        stored = self._encode(value)
        exptime = self._exptime(timeout)
        if exptime is None:
            return key not in self._dict
        self._cull()
        try:
            return self._dict.add(key, stored, exptime)
        except NoMemoryError:
            return False

    def get(self, key: str, default: Any = None, version: int | None = None) -> Any:
        """The value of *key*, or *default* if it is missing or expired (a
        stored None is returned as None). O(1), no lock, plus unpickling."""
        key = self.make_and_validate_key(key, version=version)
        stored = self._dict.get(key, MISSING)
        if stored is MISSING:
            return default
        if type(stored) is Pickled:  # _decode, inlined: this is the hot path
            return pickle.loads(stored)
        return stored

    def set(
        self,
        key: str,
        value: Any,
        timeout: Any = DEFAULT_TIMEOUT,
        version: int | None = None,
    ) -> None:
        """Store *value* under *key* for *timeout* seconds (None: forever;
        0 or less: not at all, and the old value goes). O(1) plus pickling.
        Raises what pickling raises (pickle.PicklingError, TypeError)."""
        key = self.make_and_validate_key(key, version=version)
        stored = self._encode(value)
        exptime = self._exptime(timeout)
        if exptime is None:
            self._dict.delete(key)
            return
        self._cull()
        self._store(key, stored, exptime)

    def touch(
        self, key: str, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        """Give *key* a new timeout (None: never expire; 0: expire now);
        True if the key exists. Atomic. O(1)."""
        key = self.make_and_validate_key(key, version=version)
        exptime = self._exptime(timeout)
        if exptime is None:
            return self._dict.delete(key)
        return self._dict.expire(key, exptime)

    def delete(self, key: str, version: int | None = None) -> bool:
        """Remove *key*; True if it existed. O(1)."""
        key = self.make_and_validate_key(key, version=version)
        return self._dict.delete(key)

    def get_many(
        self, keys: Iterable[str], version: int | None = None
    ) -> dict[str, Any]:
        """A dict of the given keys that exist, all read at one moment.
        O(len(keys)) plus unpickling."""
        made = {self.make_and_validate_key(k, version=version): k for k in keys}
        found = self._dict.get_many(made)
        return {made[k]: self._decode(v) for k, v in found.items()}

    def has_key(self, key: str, version: int | None = None) -> bool:
        """Whether *key* exists and has not expired. O(1), no lock."""
        key = self.make_and_validate_key(key, version=version)
        return key in self._dict

    def incr(self, key: str, delta: Any = 1, version: int | None = None) -> Any:
        """Add *delta* to the number at *key*, atomically, and return the
        new value; the key keeps its expiry. O(1) (a compare-and-set loop
        for a pickled number or a sum past 64 bits).

        Raises ValueError if *key* is missing, TypeError if its value is
        not a number.
        """
        made = self.make_and_validate_key(key, version=version)
        try:
            try:
                return self._dict.incr(made, delta)
            except (TypeError, OverflowError):
                return incr_by_cas(self._dict, made, delta, pickle.loads, self._dumps)
        except KeyError:
            raise ValueError(f"Key '{key}' not found") from None

    def decr(self, key: str, delta: Any = 1, version: int | None = None) -> Any:
        """``incr(key, -delta)``."""
        return self.incr(key, -delta, version=version)

    def set_many(
        self,
        data: Mapping[str, Any],
        timeout: Any = DEFAULT_TIMEOUT,
        version: int | None = None,
    ) -> list[str]:
        """Store every item of *data*, all under one hold of the lock (each
        item atomic, the batch not). Returns the keys that could not be
        stored (see the class notes): none, normally. O(len(data)) plus
        pickling, which happens before anything is stored."""
        made = {self.make_and_validate_key(k, version=version): k for k in data}
        mapping = {m: self._encode(data[k]) for m, k in made.items()}
        exptime = self._exptime(timeout)
        if exptime is None:
            self._dict.delete_many(mapping)
            return []
        if not mapping:
            return []
        self._cull()
        try:
            self._dict.set_many(mapping, exptime)
        except NoMemoryError:
            return [
                made[m] for m, v in mapping.items() if not self._store(m, v, exptime)
            ]
        return []

    def delete_many(self, keys: Iterable[str], version: int | None = None) -> None:
        """Remove the given keys under one hold of the lock. O(len(keys))."""
        self._dict.delete_many(
            [self.make_and_validate_key(k, version=version) for k in keys]
        )

    def clear(self) -> None:
        """Remove every entry of the dict (every prefix and version, and
        keys set without Django). O(size of the index)."""
        self._dict.flush_all()

    def close(self, **kwargs: Any) -> None:
        """Nothing: the process keeps its mapping of the dict for the next
        request, and the dict stays (remove it with
        :func:`shmdict.remove`)."""

    # ---- coroutines: the same calls, run directly (Redis: in a thread) -----

    async def _run(self, call: Callable[..., _T], *args: Any) -> _T:
        """``call(*args)``: at once on a ``SharedDict``, whose calls take a
        microsecond; in a worker thread on any other dict, whose calls
        wait for the network."""
        if isinstance(self._dict, SharedDict):
            return call(*args)
        return await asyncio.to_thread(call, *args)

    async def aadd(
        self,
        key: str,
        value: Any,
        timeout: Any = DEFAULT_TIMEOUT,
        version: int | None = None,
    ) -> bool:
        """:meth:`add`."""
        return await self._run(self.add, key, value, timeout, version)

    async def aget(
        self, key: str, default: Any = None, version: int | None = None
    ) -> Any:
        """:meth:`get`."""
        return await self._run(self.get, key, default, version)

    async def aset(
        self,
        key: str,
        value: Any,
        timeout: Any = DEFAULT_TIMEOUT,
        version: int | None = None,
    ) -> None:
        """:meth:`set`."""
        await self._run(self.set, key, value, timeout, version)

    async def atouch(
        self, key: str, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        """:meth:`touch`."""
        return await self._run(self.touch, key, timeout, version)

    async def adelete(self, key: str, version: int | None = None) -> bool:
        """:meth:`delete`."""
        return await self._run(self.delete, key, version)

    async def aget_many(
        self, keys: Iterable[str], version: int | None = None
    ) -> dict[str, Any]:
        """:meth:`get_many`."""
        return await self._run(self.get_many, keys, version)

    async def ahas_key(self, key: str, version: int | None = None) -> bool:
        """:meth:`has_key`."""
        return await self._run(self.has_key, key, version)

    async def aincr(self, key: str, delta: Any = 1, version: int | None = None) -> Any:
        """:meth:`incr`: atomic, unlike BaseCache's get-then-set."""
        return await self._run(self.incr, key, delta, version)

    async def adecr(self, key: str, delta: Any = 1, version: int | None = None) -> Any:
        """:meth:`decr`."""
        return await self._run(self.incr, key, -delta, version)

    async def aset_many(
        self,
        data: Mapping[str, Any],
        timeout: Any = DEFAULT_TIMEOUT,
        version: int | None = None,
    ) -> list[str]:
        """:meth:`set_many`."""
        return await self._run(self.set_many, data, timeout, version)

    async def adelete_many(
        self, keys: Iterable[str], version: int | None = None
    ) -> None:
        """:meth:`delete_many`."""
        await self._run(self.delete_many, keys, version)

    async def aclear(self) -> None:
        """:meth:`clear`."""
        await self._run(self.clear)

    async def aclose(self, **kwargs: Any) -> None:
        """:meth:`close`: nothing."""

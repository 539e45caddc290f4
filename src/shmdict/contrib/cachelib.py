"""A cachelib cache on a shared-memory dict (or on Redis), for
Flask-Caching and any other user of cachelib's API.

::

    from shmdict.contrib.cachelib import SharedMemoryCache

    cache = SharedMemoryCache("myapp-cache", default_timeout=300)
    cache.set("greeting", "hello")

Flask-Caching takes it by import path; it calls a class whose path holds
"cachelib" with ``CACHE_ARGS`` and ``CACHE_OPTIONS`` as arguments::

    app.config["CACHE_TYPE"] = "shmdict.contrib.cachelib.SharedMemoryCache"
    app.config["CACHE_OPTIONS"] = {"name": "myapp-cache", "size": 256 << 20}

On several hosts, give a URL for :func:`shmdict.connect` instead of a name
(``url="redis://cache.internal:6379/0"``, with its keyword arguments such
as ``namespace="myapp-cache"``), or any dict object you already have
(``shared_dict=shmdict.connect(...)``): the cache is the same, on a
:class:`shmdict.redis.RedisDict`.

Values of the six native types (None, bool, int within 64 bits, float,
str, bytes: exactly those types, not subclasses) are stored as themselves,
so another process reading the dict with plain shmdict sees them;
anything else goes through the cache's ``serializer`` and is stored as
:class:`shmdict.Pickled`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from cachelib import BaseCache
from cachelib.serializers import BaseSerializer

from .. import _core
from .._api import DictLike
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

__all__ = ["SharedMemoryCache", "SharedMemorySerializer"]

Timeout = int | dt.timedelta | None


class SharedMemorySerializer(BaseSerializer):
    """The default serializer of :class:`SharedMemoryCache`: pickle at the
    highest protocol, as cachelib's own backends use. Like cachelib's
    BaseSerializer, it logs a pickling error and returns None (the cache
    then stores nothing and returns False), and reads an unreadable pickle
    as None."""


class SharedMemoryCache(BaseCache):
    """cachelib's cache API on the shared dict *name*, which every process
    opens (or creates) with :func:`shmdict.open` and shares; or on the dict
    ``shmdict.connect(url, **connect_options)`` makes (one per process and
    URL, shared as the mapping is), or on *shared_dict*, any object with
    the dict API (:class:`shmdict.DictLike`). Give exactly one of *name*,
    *url* and *shared_dict*; a *name* that holds ``://`` is a *url*.

    *default_timeout* is in seconds (or a timedelta); as everywhere in
    cachelib, a timeout of 0 means "never expires", and None means the
    default. *key_prefix* (a str, or a function returning one) is put before
    every key. *size* (default 64 MiB), *evict* (default True: a full dict
    drops expired, then least recently used entries), *dir*, *stripes*,
    *reserve* and *lock_timeout* are :func:`shmdict.open`'s, for a *name*
    only.
    *ignore_delete_many_errors* is accepted for cachelib's sake:
    ``delete_many`` can't fail here.

    Every call is one operation on the dict, atomic across processes and
    threads: ``add`` is the dict's add, ``inc``/``dec`` its incr (a missing
    key starts at 0 and gets the default timeout; an existing one keeps its
    expiry), ``get_many`` reads all keys at one moment. Costs are O(1) per
    key plus the serializer's; ``clear`` is O(entries). A value the dict
    can't hold (larger than a stripe, or a full dict made with
    ``evict=False``) is not stored: ``set`` and ``add`` return False.

    Raises TypeError for a missing or doubled source, or options that
    don't go with it, and as :func:`shmdict.open` does (ValueError if the
    dict exists with another size, evict, reserve or stripes) or
    :func:`shmdict.connect` does.
    """

    serializer: Any = SharedMemorySerializer()

    def __init__(
        self,
        name: str | None = None,
        *,
        url: str | None = None,
        shared_dict: DictLike | None = None,
        default_timeout: int | dt.timedelta = 300,
        key_prefix: str | Callable[[], str] | None = None,
        size: int | None = None,
        evict: bool | None = None,
        dir: str | None = None,
        stripes: int | None = None,
        reserve: bool | None = None,
        lock_timeout: float | None = None,
        ignore_delete_many_errors: bool = True,
        **connect_options: Any,
    ) -> None:
        super().__init__(
            default_timeout=default_timeout,
            ignore_delete_many_errors=ignore_delete_many_errors,
        )
        self.key_prefix = key_prefix or ""
        if name is not None and url is None and is_url(name):
            name, url = None, name
        if (name is not None) + (url is not None) + (shared_dict is not None) != 1:
            raise TypeError(
                "SharedMemoryCache takes exactly one of name, url and shared_dict"
            )
        open_options = {
            "size": size,
            "evict": evict,
            "dir": dir,
            "stripes": stripes,
            "reserve": reserve,
            "lock_timeout": lock_timeout,
        }
        if name is None:
            given = sorted(k for k, v in open_options.items() if v is not None)
            if given:
                raise TypeError(
                    f"{', '.join(given)}: options of a dict given by name; "
                    "a URL carries its own (shm://NAME?size=...)"
                )
        if url is None and connect_options:
            raise TypeError(
                f"unexpected keyword arguments {sorted(connect_options)}: "
                "only a url takes shmdict.connect's options"
            )
        self._dict: DictLike
        if shared_dict is not None:
            self._dict = shared_dict
        elif url is not None:
            self._dict = shared_connection(url, connect_options)
        else:
            assert name is not None
            self._dict = shared_handle(
                name,
                64 << 20 if size is None else size,
                evict=True if evict is None else evict,
                dir=dir,
                stripes=stripes,
                reserve=bool(reserve),
                lock_timeout=(
                    _core.DEFAULT_LOCK_TIMEOUT if lock_timeout is None else lock_timeout
                ),
            )

    # ---- helpers -----------------------------------------------------------

    def _key(self, key: str) -> str:
        prefix = self.key_prefix
        return f"{prefix if isinstance(prefix, str) else prefix()}{key}"

    def _encode(self, value: Any) -> Any:
        return encode(value, self.serializer.dumps)

    def _decode(self, stored: Any) -> Any:
        return decode(stored, self.serializer.loads)

    def _exptime(self, timeout: Timeout) -> float | None:
        """The dict's exptime for a cachelib timeout: 0 for never (0, or
        past the dict's limit), seconds when positive, None for "already
        expired" (negative)."""
        seconds = self._normalize_timeout(timeout)
        if seconds < 0:
            return None
        return 0.0 if seconds >= exptime_limit else float(seconds)

    # ---- the cache API -----------------------------------------------------

    def get(self, key: str) -> Any:
        """The value of *key*, or None if it is missing, expired or
        unreadable. O(1), no lock, plus the serializer's loads."""
        prefix = self.key_prefix  # _key, inlined: this is the hot path
        k = f"{prefix}{key}" if type(prefix) is str else self._key(key)
        stored = self._dict.get(k, MISSING)
        if stored is MISSING:
            return None
        if type(stored) is Pickled:
            return self.serializer.loads(stored)
        return stored

    def get_many(self, *keys: str) -> list[Any]:
        """The values of *keys*, in order, None for each one missing; all
        read at one moment. O(len(keys))."""
        made = [self._key(k) for k in keys]
        found = self._dict.get_many(made)
        return [self._decode(found[m]) if m in found else None for m in made]

    def set(self, key: str, value: Any, timeout: Timeout = None) -> bool:
        """Store *value* under *key*; True if stored, False if the
        serializer or the dict couldn't (the old value is then gone too).
        A negative timeout stores nothing and removes the key. O(1) plus
        the serializer's dumps."""
        k = self._key(key)
        stored = self._encode(value)
        exptime = self._exptime(timeout)
        if exptime is None:
            self._dict.delete(k)
            return stored is not MISSING
        if stored is MISSING:
            return False
        return self._store(k, stored, exptime)

    def _store(self, k: str, stored: Any, exptime: float) -> bool:
        """set, or drop the key when the dict can't hold the value."""
        try:
            return self._dict.set(k, stored, exptime)
        except NoMemoryError:
            self._dict.delete(k)
            return False

    def add(self, key: str, value: Any, timeout: Timeout = None) -> bool:
        """Store *value* only if *key* is missing (or expired); True if it
        was stored. Atomic. O(1) plus the serializer's dumps."""
        k = self._key(key)
        stored = self._encode(value)
        exptime = self._exptime(timeout)
        if stored is MISSING:
            return False
        if exptime is None:
            return k not in self._dict
        try:
            return self._dict.add(k, stored, exptime)
        except NoMemoryError:
            return False

    def set_many(self, mapping: dict[str, Any], timeout: Timeout = None) -> list[Any]:
        """Store every item of *mapping* under one hold of the lock (each
        item atomic, the batch not); return the keys stored, which leaves
        out those the serializer or the dict couldn't take. O(len(mapping))
        plus serializing, done before anything is stored."""
        encoded = {key: self._encode(value) for key, value in mapping.items()}
        good = {key: v for key, v in encoded.items() if v is not MISSING}
        exptime = self._exptime(timeout)
        d = self._dict
        if exptime is None:
            d.delete_many([self._key(k) for k in encoded])
            return list(good)
        made = {self._key(k): v for k, v in good.items()}
        try:
            d.set_many(made, exptime)
        except NoMemoryError:
            return [
                k
                for k, m in zip(good, made, strict=True)
                if self._store(m, made[m], exptime)
            ]
        return list(good)

    def delete(self, key: str) -> bool:
        """Remove *key*; True if it existed. O(1)."""
        return self._dict.delete(self._key(key))

    def delete_many(self, *keys: str) -> list[Any]:
        """Remove *keys* under one hold of the lock and return them all:
        each was deleted, or was not there. O(len(keys))."""
        self._dict.delete_many([self._key(k) for k in keys])
        return list(keys)

    def has(self, key: str) -> bool:
        """Whether *key* exists and has not expired. O(1), no lock."""
        return self._key(key) in self._dict

    def clear(self) -> bool:
        """Remove this cache's entries: those under its key prefix, or,
        with no prefix, every entry of the dict. True. O(entries)."""
        prefix = self._key("")
        d = self._dict
        if not prefix:
            d.flush_all()
        else:
            d.delete_many([k for k in d.get_keys() if k.startswith(prefix)])
        return True

    def inc(self, key: str, delta: int = 1) -> Any:
        """Add *delta* to the number at *key*, atomically, and return the
        new value; a missing key starts at 0 with the default timeout, an
        existing one keeps its expiry. O(1) (a compare-and-set loop for a
        serialized number or a sum past 64 bits).

        Raises TypeError if the value is not a number.
        """
        k = self._key(key)
        d = self._dict
        ttl = self._exptime(None) or 0.0
        while True:
            try:
                return d.incr(k, delta, init=0, init_ttl=ttl)
            except (TypeError, OverflowError):
                pass
            try:
                return incr_by_cas(
                    d, k, delta, self.serializer.loads, self.serializer.dumps
                )
            except KeyError:
                pass  # deleted meanwhile; or delta is no int: start it here
            start = self._encode(0 + delta)
            if start is MISSING:
                raise TypeError(f"can't store {type(delta).__name__}")
            if d.add(k, start, ttl):
                return 0 + delta

    def dec(self, key: str, delta: int = 1) -> Any:
        """``inc(key, -delta)``."""
        return self.inc(key, -delta)

"""What the framework integrations share: one handle per dict (or Redis
URL) and process, the split between values stored as themselves and
values stored serialized, and the increment of a serialized number."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from .._api import DictLike
from .._dict import SharedDict, default_dir
from .._dict import open as open_dict
from .._pickled import Pickled

__all__ = [
    "MISSING",
    "decode",
    "encode",
    "exptime_limit",
    "incr_by_cas",
    "is_native",
    "is_url",
    "shared_connection",
    "shared_handle",
]

#: A default no stored value can be: tells "missing" from a stored None.
MISSING: Any = object()

_INT_MIN = -(1 << 63)
_INT_MAX = (1 << 63) - 1

#: The longest expiry the engine takes, in seconds (2**53 ms); a timeout
#: beyond it is as good as forever.
exptime_limit = float(1 << 53) / 1000.0

_handles: dict[tuple[object, ...], SharedDict] = {}
_connections: dict[tuple[object, ...], DictLike] = {}
_handles_lock = threading.Lock()


def shared_handle(
    name: str,
    size: int,
    *,
    evict: bool,
    dir: str | None,
    stripes: int | None,
    reserve: bool,
    lock_timeout: float,
) -> SharedDict:
    """The process's handle on the dict *name*, opened (or created) with
    :func:`shmdict.open` on first use and shared by every cache object and
    thread of the process after that.

    A web framework makes one cache object per thread (Django) or per app,
    and closes it after every request; one mapping per process serves them
    all, and survives ``fork``. O(1) once open, O(stripes) the first time.
    Raises as :func:`shmdict.open` does: ValueError if the dict exists with
    another *size*, *evict*, *reserve* or *stripes*, NoMemoryError if the
    filesystem can't hold it.
    """
    where = dir if dir is not None else default_dir()
    key = (name, where, size, bool(evict), stripes, bool(reserve), lock_timeout)
    with _handles_lock:
        d = _handles.get(key)
        if d is None or d.closed:
            d = open_dict(
                name,
                size,
                evict=evict,
                dir=dir,
                stripes=stripes,
                reserve=reserve,
                lock_timeout=lock_timeout,
            )
            _handles[key] = d
        return d


def is_url(location: str) -> bool:
    """Whether an integration's *location* is a URL for
    :func:`shmdict.connect` (``redis://...``, ``unix://...``,
    ``shm://NAME?size=...``) rather than the name of a shared dict: whether
    it holds ``://``. No dict name can, as a name holds no ``/``."""
    return "://" in location


def shared_connection(url: str, options: dict[str, Any]) -> DictLike:
    """The process's dict for *url*, made by ``shmdict.connect(url,
    **options)`` on first use and shared by every cache object and thread
    of the process after that, as :func:`shared_handle` shares a mapping.

    A ``RedisDict`` is safe to share between threads (redis-py's
    connection pool) and after ``fork`` (the pool opens new connections in
    the child). Options that can't be hashed make a new dict each time.
    Raises what :func:`shmdict.connect` raises.
    """
    from .. import connect  # the Redis backend, and redis-py, only if used

    try:
        key: tuple[object, ...] | None = (url, *sorted(options.items()))
        hash(key)
    except TypeError:
        key = None
    with _handles_lock:
        d = _connections.get(key) if key is not None else None
        if d is None or getattr(d, "closed", False):
            d = connect(url, **options)
            if key is not None:
                _connections[key] = d
        return d


def is_native(value: object) -> bool:
    """Whether the dict stores *value* as itself: None, and objects of
    exactly bool, float, str, bytes or int within signed 64 bits.

    Subclasses are not native (a Django ``SafeString`` must come back as
    one, an ``IntEnum`` as its member), nor is :class:`shmdict.Pickled`.
    O(1).
    """
    if type(value) is int:
        return _INT_MIN <= value <= _INT_MAX
    t = type(value)
    return value is None or t is str or t is bytes or t is float or t is bool


def encode(value: Any, dumps: Callable[[Any], bytes | None]) -> Any:
    """What to store for *value*: the value itself if it is native, else
    ``Pickled(dumps(value))``; :data:`MISSING` if *dumps* returned None (a
    cachelib serializer's way to say it couldn't). Errors from *dumps*
    propagate. Costs what *dumps* costs."""
    if is_native(value):
        return value
    data = dumps(value)
    if data is None:
        return MISSING
    return Pickled(data)


def decode(stored: Any, loads: Callable[[bytes], Any]) -> Any:
    """The value for what the dict holds: ``loads(stored)`` for a
    :class:`shmdict.Pickled`, the stored value itself otherwise. Errors
    from *loads* propagate. O(1) plus what *loads* costs."""
    if type(stored) is Pickled:
        return loads(stored)
    return stored


def incr_by_cas(
    d: DictLike,
    key: str,
    delta: Any,
    loads: Callable[[bytes], Any],
    dumps: Callable[[Any], bytes | None],
) -> Any:
    """Add *delta* to the value at *key* when the engine's own incr can't:
    a serialized number (a Decimal, an int past 64 bits), a bool, or a sum
    that leaves 64 bits. Reads, adds, and stores with compare-and-set,
    again if another writer came in between, so no increment is lost; the
    key keeps its expiry.

    Returns the new value. Raises KeyError if the key is missing, TypeError
    if the value and *delta* don't add (or the serializer can't store the
    sum). O(1) per try, plus the serializer's cost.
    """
    while True:
        old = d.get(key, MISSING)
        if old is MISSING:
            raise KeyError(key)
        new = decode(old, loads) + delta
        stored = encode(new, dumps)
        if stored is MISSING:
            raise TypeError(f"the serializer can't store {type(new).__name__}")
        if d.cas(key, old, stored):
            return new

"""shmdict.connect: one URL picks the backend."""

from __future__ import annotations

import math
import re
import urllib.parse
from typing import TYPE_CHECKING, Any

from . import _dict

if TYPE_CHECKING:  # pragma: no cover
    from .redis import RedisDict

__all__ = ["connect", "parse_size"]

_REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster")
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SIZE = re.compile(r"\s*(\d+)\s*([kmgt]?)(?:i?b)?\s*", re.IGNORECASE)
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def parse_size(text: str) -> int:
    """Bytes from ``65536``, ``512K``, ``64M``, ``64MiB``, ``1G``, ``1GB``
    (K, M, G, T are powers of 1024; case doesn't matter). ValueError for
    anything else."""
    m = _SIZE.fullmatch(text)
    if not m:
        raise ValueError(f"invalid size {text!r}: give bytes, or a number with K/M/G")
    return int(m.group(1)) * _UNITS[m.group(2).lower()]


def _flag(name: str, text: str) -> bool:
    t = text.strip().lower()
    if t in _TRUE:
        return True
    if t in _FALSE:
        return False
    raise ValueError(f"{name}={text!r}: expected 1/0, true/false, yes/no or on/off")


def _shm_options(query: str) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    for name, value in urllib.parse.parse_qsl(
        query, keep_blank_values=True, strict_parsing=False
    ):
        if name in opts:
            raise ValueError(f"option {name!r} given twice")
        if name == "size":
            opts[name] = parse_size(value)
        elif name == "dir":
            opts[name] = value
        elif name in ("evict", "reserve"):
            opts[name] = _flag(name, value)
        elif name == "stripes":
            try:
                opts[name] = int(value)
            except ValueError:
                raise ValueError(f"stripes={value!r} is not an int") from None
        elif name == "lock_timeout":
            try:
                t = float(value)
            except ValueError:
                raise ValueError(f"lock_timeout={value!r} is not a number") from None
            opts[name] = math.inf if t == math.inf else t
        else:
            raise ValueError(
                f"unknown option {name!r} in a shm:// URL; known: size, dir, "
                "evict, reserve, stripes, lock_timeout"
            )
    return opts


def connect(url: str, **kw: Any) -> _dict.SharedDict | RedisDict:
    """The dict a URL names: shared memory on this host, or Redis.

    ``shm://NAME?size=64M&evict=1`` returns a :class:`shmdict.SharedDict`
    through :func:`shmdict.open` (attach, or create if missing: the way of
    a pool of equal workers). Options: ``size`` (required; bytes, or with a
    K/M/G/T suffix), ``dir``, ``evict``, ``reserve`` (1/0, true/false),
    ``stripes``, ``lock_timeout`` (seconds, ``inf``); anything else is a
    ValueError. Keywords override the URL's options.

    ``redis://HOST:PORT/DB``, ``rediss://...``, ``unix:///path/redis.sock``
    return a :class:`shmdict.redis.RedisDict` on one server;
    ``redis+cluster://HOST:PORT`` (or ``rediss+cluster://``) one on a Redis
    Cluster. ``?namespace=NAME`` in the query (or ``namespace=``) sets the
    namespace; the other query options and keywords go to
    :class:`~shmdict.redis.RedisDict` and redis-py. Needs redis-py
    (``pip install shmdict[redis]``).

    So configuration alone picks the backend::

        d = shmdict.connect(os.environ.get("CACHE_URL", "shm://app?size=64M"))

    Cost: as :func:`shmdict.open` for shm (O(stripes)); no network round
    trip for Redis (the first call connects). Raises ValueError for a URL
    of another scheme, a missing name or size, or a bad option, and what
    :func:`shmdict.open` or :class:`~shmdict.redis.RedisDict` raise.
    """
    if not isinstance(url, str):
        raise TypeError(f"url must be str, not {type(url).__name__}")
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme == "shm":
        parts = urllib.parse.urlsplit(url)
        name = urllib.parse.unquote(parts.netloc or parts.path.lstrip("/"))
        if not name:
            raise ValueError(f"{url!r} names no dict: shm://NAME?size=64M")
        opts = _shm_options(parts.query)
        opts.update(kw)
        if "size" not in opts:
            raise ValueError(f"{url!r} gives no size: shm://{name}?size=64M")
        size = opts.pop("size")
        return _dict.open(name, size, **opts)
    if scheme in _REDIS_SCHEMES:
        from .redis import from_url

        return from_url(url, **kw)
    raise ValueError(
        f"unknown URL {url!r}: expected shm://NAME?size=..., redis://, "
        "rediss://, unix:// or redis+cluster://"
    )

"""Exception classes raised by shmdict.

Every error that is specific to a shared dict derives from :class:`Error`.
Errors that have a natural builtin meaning (a missing key, a wrong type, a
closed handle) use the builtin exception instead, as a ``dict`` would.
"""

from __future__ import annotations

__all__ = [
    "BackendUnavailable",
    "CorruptError",
    "Error",
    "LockTimeout",
    "NoMemoryError",
]


class Error(Exception):
    """Base class of every shmdict-specific error."""


class NoMemoryError(Error):
    """The dict has no room for the item; nothing was stored or changed."""


class CorruptError(Error):
    """The file is not a shmdict dict, has another format, or is damaged."""


class LockTimeout(Error, TimeoutError):
    """The dict's lock could not be taken within the handle's lock timeout.

    Another process may be stuck while holding it, or the lock word may be
    damaged. Nothing was changed.
    """


class BackendUnavailable(Error, ConnectionError):
    """A server-backed dict (:class:`shmdict.redis.RedisDict`) could not
    reach its server: the connection was lost or refused, a command timed
    out, or a Redis Cluster had no primary for the key's slot, after the
    retry policy was spent. The message names the server and the redis-py
    error. After a timeout, a write may or may not have been applied.
    """

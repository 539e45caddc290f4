"""Exception classes raised by shmdict.

Every error that is specific to a shared dict derives from :class:`Error`.
Errors that have a natural builtin meaning (a missing key, a wrong type, a
closed handle) use the builtin exception instead, as a ``dict`` would.
"""

from __future__ import annotations

__all__ = ["CorruptError", "Error", "LockTimeout", "NoMemoryError"]


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

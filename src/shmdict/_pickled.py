"""The bytes type that marks a value as pickled."""

from __future__ import annotations

__all__ = ["Pickled"]


class Pickled(bytes):
    """Bytes that hold a pickle, stored with a tag of their own.

    A dict stores a ``Pickled`` as bytes with a flag that no plain value
    carries, and gives it back as a ``Pickled``, so a reader tells a pickled
    object from a ``bytes`` value that merely looks like one. The framework
    integrations (``shmdict.contrib``) store what isn't a native value this
    way; shmdict itself never unpickles anything. A ``Pickled`` equals the
    plain bytes with the same content in Python, but not in the dict:
    ``cas`` sees them as different values. Added in 0.2.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Pickled({bytes(self)!r})"


Pickled.__module__ = "shmdict"  # its public home

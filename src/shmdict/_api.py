"""The API both backends share, as a typing Protocol.

:class:`shmdict.SharedDict` (shared memory, one host) and
:class:`shmdict.redis.RedisDict` (a Redis server or Cluster, any number of
hosts) have the same methods, values and errors. Code that only needs
those calls (the integrations in :mod:`shmdict.contrib`, the recipes in
:mod:`shmdict.recipes`, an application's own helpers) takes a
:class:`DictLike` and runs on either, which ``shmdict.connect(url)``
picks from configuration.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol, TypeVar, overload, runtime_checkable

__all__ = ["DictLike"]

_T = TypeVar("_T")
_Value = None | bool | int | float | str | bytes


@runtime_checkable
class DictLike(Protocol):
    """The calls :mod:`shmdict.contrib` and :mod:`shmdict.recipes` make.

    Each is atomic on its backend, and takes and returns what
    :class:`shmdict.SharedDict`'s method of the same name does (see its
    docstrings for the contract): the six native types as values, plus
    :class:`shmdict.Pickled`; KeyError, TypeError, OverflowError and
    ValueError where a dict raises them; :class:`shmdict.NoMemoryError`
    when the store is full; another :class:`shmdict.Error` when the store
    can't be reached. Parameters are positional-only here, so that either
    backend's spelling of their names satisfies it. Added in 0.2.
    """

    @overload
    def get(self, key: str, /) -> _Value: ...
    @overload
    def get(self, key: str, default: _T, /) -> _Value | _T: ...
    def set(self, key: str, value: _Value, exptime: float = 0, /) -> bool: ...
    def add(self, key: str, value: _Value, exptime: float = 0, /) -> bool: ...
    def cas(
        self,
        key: str,
        expected: _Value,
        new: _Value,
        exptime: float | None = None,
        /,
    ) -> bool: ...
    def delete(self, key: str, /) -> bool: ...
    def incr(
        self,
        key: str,
        delta: int | float,
        /,
        *,
        init: int | float | None = None,
        init_ttl: float | None = None,
    ) -> int | float: ...
    def ttl(self, key: str, /) -> float | None: ...
    def expire(self, key: str, exptime: float, /) -> bool: ...
    def get_many(self, keys: Iterable[str], /) -> dict[str, _Value]: ...
    def set_many(
        self, mapping: Mapping[str, _Value], exptime: float = 0, /
    ) -> None: ...
    def delete_many(self, keys: Iterable[str], /) -> int: ...
    def flush_all(self) -> None: ...
    def get_keys(self, max_count: int = 0, /) -> list[str]: ...
    def close(self) -> None: ...
    def __contains__(self, key: object, /) -> bool: ...
    def __len__(self) -> int: ...

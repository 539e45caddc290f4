"""The public SharedDict class and the functions that open one."""

from __future__ import annotations

import os
from collections.abc import (
    Callable,
    ItemsView,
    Iterator,
    Mapping,
    MutableMapping,
    ValuesView,
)
from typing import Any

from . import _core

__all__ = [
    "SharedDict",
    "Value",
    "default_dir",
    "exists",
    "get",
    "new",
    "open",
    "path_for",
    "remove",
]

#: The types a shared dict stores; each comes back as the same type.
Value = None | bool | int | float | str | bytes

_MISSING: Any = object()


def default_dir() -> str:
    """The directory dicts live in when no ``dir=`` is given.

    ``$SHMDICT_DIR`` if set and not empty, else ``/dev/shm``. Point it at
    another memory-backed filesystem (a Kubernetes ``emptyDir`` with
    ``medium: Memory``, ``/run/user/UID``) to keep dicts there.
    """
    return os.environ.get("SHMDICT_DIR") or _core.SHM_DIR


def path_for(name: str, dir: str | None = None) -> str:
    """Return the file path of the dict called *name* in *dir*.

    *dir* defaults to :func:`default_dir`. Raises TypeError if *name* is
    not a str, and ValueError if it is empty, ``.`` or ``..``, longer than
    255 bytes, or holds ``/`` or NUL, so that no name can reach outside the
    directory.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be str, not {type(name).__name__}")
    if name in ("", ".", ".."):
        raise ValueError(f"invalid dict name {name!r}")
    if "/" in name or "\0" in name:
        raise ValueError(f"dict name {name!r} must not hold '/' or NUL")
    if len(name.encode("utf-8", "surrogatepass")) > 255:
        raise ValueError("dict name is longer than 255 bytes")
    if dir is None:
        dir = default_dir()
    elif not isinstance(dir, str):
        raise TypeError(f"dir must be str, not {type(dir).__name__}")
    if not dir or "\0" in dir:
        raise ValueError(f"invalid directory {dir!r}")
    return f"{dir.rstrip('/') or '/'}/{name}" if dir != "/" else f"/{name}"


class _ItemsView(ItemsView[str, Value]):
    # Mapping's view would raise KeyError for a key that another process
    # deletes between listing and reading; skip such keys instead.
    _mapping: Mapping[str, Value]  # set by MappingView.__init__

    def __iter__(self) -> Iterator[tuple[str, Value]]:
        m = self._mapping
        for key in m:
            value = m.get(key, _MISSING)
            if value is not _MISSING:
                yield key, value


class _ValuesView(ValuesView[Value]):
    # Same reason as _ItemsView.
    _mapping: Mapping[str, Value]  # set by MappingView.__init__

    def __iter__(self) -> Iterator[Value]:
        for _, value in _ItemsView(self._mapping):
            yield value


# The engine's setdefault takes any storable default, which typeshed's
# overloads of MutableMapping.setdefault can't express: hence the ignore.
class SharedDict(_core.Dict, MutableMapping[str, Value]):  # type: ignore[misc]
    """A dict kept in a file under /dev/shm and shared by every process
    that opens it by name.

    Create one with :func:`new` and attach to it with :func:`get`. All the
    methods of a ``MutableMapping`` work; the engine's own methods (get,
    set, delete, incr, ttl, expire, flush_all, get_keys) are atomic across
    processes and threads. Each method's docstring gives its cost.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"size={self.size}"
        role = " owner" if not self.closed and self.owner else ""
        return f"<shmdict.SharedDict {self.name!r} {state}{role}>"

    def __reduce__(self) -> tuple[Callable[..., SharedDict], tuple[str, str]]:
        # A pickled handle reopens the dict by name, as a peer.
        return (_reopen, (self.name, os.path.dirname(self.path)))

    def stats(self) -> dict[str, int | bool]:
        """Counters (see the extension's ``stats``), plus ``fs_size`` and
        ``fs_free``: the bytes of the filesystem the dict lives on, in all
        and free to unprivileged users. O(stripes) plus one statvfs call."""
        st = super().stats()
        vfs = os.statvfs(os.path.dirname(self.path))
        st["fs_size"] = vfs.f_blocks * vfs.f_frsize
        st["fs_free"] = vfs.f_bavail * vfs.f_frsize
        return st

    def __enter__(self) -> SharedDict:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def items(self) -> ItemsView[str, Value]:
        """A view of (key, value) pairs, read one key at a time. O(n)."""
        return _ItemsView(self)

    def values(self) -> ValuesView[Value]:
        """A view of the values, read one key at a time. O(n)."""
        return _ValuesView(self)

    def clear(self) -> None:
        """Remove every item: the same as :meth:`flush_all`."""
        self.flush_all()


def _create(
    how: int,
    name: str,
    size: int,
    mode: int,
    lock_timeout: float,
    evict: bool,
    stripes: int | None,
    reserve: bool,
    dir: str | None,
    near_cache: int,
) -> SharedDict:
    """What new() (how=1) and open() (how=2) share: make or attach the
    handle. The arguments are checked once, by the extension's Dict()
    (size, mode, stripes, lock_timeout, and whether the filesystem could
    ever hold *size* bytes)."""
    path = path_for(name, dir)
    if stripes is None:
        stripes = _stripes_from_env(size)
    return SharedDict(
        path,
        name,
        size,
        create=how,
        mode=mode,
        lock_timeout=lock_timeout,
        evict=bool(evict),
        stripes=stripes,
        reserve=bool(reserve),
        near_cache=near_cache,
    )


def new(
    name: str,
    size: int,
    *,
    mode: int = 0o600,
    lock_timeout: float = _core.DEFAULT_LOCK_TIMEOUT,
    evict: bool = False,
    stripes: int | None = None,
    reserve: bool = False,
    dir: str | None = None,
    near_cache: int = _core.DEFAULT_NEAR_CACHE,
) -> SharedDict:
    """Create the dict *name* of *size* bytes and return its owner handle.

    The owner's :meth:`~SharedDict.close` (or garbage collection) removes the
    file. *size* is the budget of the whole file, from ``MIN_SIZE`` (64 KiB)
    to ``MAX_SIZE`` (64 GiB). Memory is committed only as items are stored,
    each page reserved in the filesystem before its first use, so a full
    filesystem makes a write raise :class:`shmdict.NoMemoryError` rather
    than kill the process. With *reserve*, the whole file is reserved now:
    ``new()`` fails at once if the filesystem can't hold it, and the dict
    can then never run out of pages. *mode* sets the file's permission
    bits. With *evict*, a full dict makes room by dropping expired items
    and then the least recently used ones (CLOCK), as ngx.shared.DICT does;
    without it, a write that does not fit raises NoMemoryError.

    *stripes* splits the dict into that many independent parts (a power of
    two, each with its own lock and heap), so writers of different keys
    don't wait for each other. 0 chooses one stripe per 4 MiB, up to 16
    (so one below 8 MiB, 16 for 64 MiB);
    None (the default) does the same unless the environment variable
    ``SHMDICT_STRIPES`` asks for a count, which is lowered as far as the
    size needs. A single item must fit in one stripe: ``size // stripes``
    less the index. *dir* is the directory of the file (default:
    :func:`default_dir`). Cost: O(stripes), or O(size) with *reserve*.

    *lock_timeout* is how many seconds one call of this handle may wait for
    locks in all, after which it raises :class:`shmdict.LockTimeout` having
    changed nothing. 0 tries once without waiting; ``math.inf`` waits with
    no limit. Ctrl-C (any signal handler that raises) ends a wait.

    *near_cache* is the number of slots (rounded up to a power of two, at
    most 4M; 0 turns it off) of this handle's near cache: the values
    :meth:`get` returned, kept as their objects, so that a repeated get of
    a value nobody changed returns the same object without a lookup: one
    shared load if nothing in its stripe was written since, two if only
    keys of other write groups (64 buckets each) were. A write of a key of
    its group, or of the key with the same value, costs the next get one
    lock-free read and compare, and no new object. A set of a key the
    cache holds keeps the object stored. Values with an expiry are kept
    too, and never returned once expired. str and bytes values of up to
    ``NEAR_SMALL_VALUE`` (256) bytes are always kept, bigger ones of up to
    ``NEAR_MAX_VALUE`` (16 KiB) while the objects held stay within
    ``NEAR_SLOT_BUDGET`` (512) bytes per slot. Memory, per handle, once
    the first value is kept: ``NEAR_SLOT_BYTES`` (64) bytes per slot,
    2 MiB at the default ``DEFAULT_NEAR_CACHE`` (32768), plus the kept
    objects (at most one key and one value per slot, 16 MiB at the
    default); ``stats()`` says how
    much (``near_bytes``) and how often it answered (``near_hits``,
    ``near_misses``). While a quarter of the gets find their slot taken by
    another key (a working set too big for it), only one get in 16 looks.
    A value with an expiry is taken from it only while a coarse clock puts
    the expiry more than 100 ms (plus the clock's tick) ahead; closer, it
    is read as without the cache.

    Raises FileExistsError if a dict whose creator still runs has the name
    (a name left by a killed creator is taken over), NoMemoryError if the
    filesystem can never hold *size* bytes or has no room for the first
    pages (or, with *reserve*, for all of them), ValueError for a bad name,
    size or lock_timeout (negative or NaN), TypeError for arguments of the
    wrong type.
    """
    return _create(
        1, name, size, mode, lock_timeout, evict, stripes, reserve, dir, near_cache
    )


def open(  # shadows the builtin here, as os.open does in os
    name: str,
    size: int,
    *,
    mode: int = 0o600,
    lock_timeout: float = _core.DEFAULT_LOCK_TIMEOUT,
    evict: bool = False,
    stripes: int | None = None,
    reserve: bool = False,
    dir: str | None = None,
    near_cache: int = _core.DEFAULT_NEAR_CACHE,
) -> SharedDict:
    """Attach to the dict *name*, creating it first if it is missing.

    For pools of equal workers (gunicorn without ``--preload``, ``uvicorn
    --workers``, Celery prefork), where no process is the natural owner.
    The handle owns nothing: its close keeps the file, and the dict lives
    until :func:`remove` or reboot. Any number of processes may call it at
    once: exactly one creates the dict, the others attach to it, and none
    sees a half-built file. The arguments are those of :func:`new`.

    An existing dict must have been made with the same *size*, *evict* and
    *reserve* (and *stripes*, when given or set by ``SHMDICT_STRIPES``);
    otherwise ValueError says what differs, rather than silently handing
    out another dict than the one asked for. Cost: O(stripes). Raises as
    :func:`new` and :func:`get` do.
    """
    d = _create(
        2, name, size, mode, lock_timeout, evict, stripes, reserve, dir, near_cache
    )
    if stripes is None:
        stripes = _stripes_from_env(size)
    st = d.stats()
    want = {"size": size, "evict": bool(evict), "reserve": bool(reserve)}
    have = {"size": d.size, "evict": st["evict"], "reserve": st["reserved"]}
    if stripes:
        want["stripes"] = stripes
        have["stripes"] = st["stripes"]
    if want != have:
        d.close()
        diff = ", ".join(f"{k}={have[k]!r}" for k in want if want[k] != have[k])
        asked = ", ".join(f"{k}={want[k]!r}" for k in want if want[k] != have[k])
        raise ValueError(
            f"dict {name!r} exists with {diff}, not {asked}: open it with "
            "those, or remove it first (shmdict.remove)"
        )
    return d


def _reopen(name: str, dir: str) -> SharedDict:
    return get(name, dir=dir)


_MIN_STRIPE = 512 << 10


def _stripes_from_env(size: int) -> int:
    """The stripe count SHMDICT_STRIPES asks for, lowered to fit *size*."""
    want = os.environ.get("SHMDICT_STRIPES", "")
    if not want or not isinstance(size, int):
        return 0  # (Dict() says what is wrong with a size that is no int)
    n = int(want)
    if n <= 0 or n & (n - 1):
        raise ValueError("SHMDICT_STRIPES must be a power of two")
    while n > 1 and size // n < _MIN_STRIPE:
        n //= 2
    return n


def get(
    name: str,
    *,
    allow_foreign_owner: bool = False,
    lock_timeout: float = _core.DEFAULT_LOCK_TIMEOUT,
    dir: str | None = None,
    near_cache: int = _core.DEFAULT_NEAR_CACHE,
) -> SharedDict:
    """Attach to the existing dict *name* as a peer (its close keeps the file).

    *lock_timeout* and *near_cache* are as for :func:`new` (ValueError if
    negative, or NaN).
    Cost: O(1). Raises FileNotFoundError if there is no such dict, OSError if
    the name is a symlink, PermissionError if another user owns the file and
    *allow_foreign_owner* is false, and :class:`shmdict.CorruptError` if the
    file is not a valid dict of this format. *dir* as in :func:`new`.
    """
    path = path_for(name, dir)
    return SharedDict(
        path,
        name,
        allow_foreign_owner=allow_foreign_owner,
        lock_timeout=lock_timeout,
        near_cache=near_cache,
    )


def remove(name: str, *, dir: str | None = None) -> None:
    """Remove the dict *name* from its directory, whoever created it.

    This is the way out when a creator was killed and left its file. Handles
    that are open keep working; later :func:`get` calls fail. Raises
    FileNotFoundError if there is no such file.
    """
    os.unlink(path_for(name, dir))


def exists(name: str, *, dir: str | None = None) -> bool:
    """Whether a file called *name* exists in the dict directory."""
    return os.path.lexists(path_for(name, dir))

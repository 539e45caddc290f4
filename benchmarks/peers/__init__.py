"""The Python peers that bench.py runs shmdict against.

Each peer is a :class:`Peer`: how to create, fill, share and destroy a store,
and one Python statement per operation (see :mod:`timing`). A peer that
cannot be imported or started says why through :meth:`Peer.check` and is
reported as skipped; nothing is ever substituted for it.

Statements see ``k`` (the key, ``str``), ``v`` (the value, ``bytes``), ``o``
(the store), ``L`` (the peer's cross-process lock, if it needs one) and the
names bound by :attr:`Peer.setup`. The feature ops (``features.py``) use
:attr:`Peer.feature_setup` and :attr:`Peer.feature_stmts` the same way; a
peer lists only the feature ops it has a native equivalent for.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Sequence
from typing import Any, ClassVar

from common import Dataset


class Peer:
    """Base class: a store that maps ``str`` keys to ``bytes`` or int values."""

    #: Stable identifier (used in result files and chart names).
    key: ClassVar[str] = ""
    #: Name shown in the report.
    label: ClassVar[str] = ""
    #: One line on how the operations map onto the peer's API.
    notes: ClassVar[str] = ""
    #: Python setup line(s) run once before a timed loop.
    setup: ClassVar[str] = ""
    #: get / set / incr / delete statements.
    stmts: ClassVar[dict[str, str]] = {}
    #: Setup line(s) and statements of the feature ops (keys of
    #: ``common.FEATURE_OPS``); empty: the peer is left out of that section.
    feature_setup: ClassVar[str] = ""
    feature_stmts: ClassVar[dict[str, str]] = {}
    #: One line on how the feature ops map onto the peer's API.
    feature_notes: ClassVar[str] = ""
    #: Why the peer is left out of the feature section (when it is).
    feature_reason: ClassVar[str] = (
        "not included: the feature section covers shmdict, the plain dict, "
        "the native peers and redis's one-command equivalents"
    )
    #: The set statement of the web-cache mix, where every value is given an
    #: expiry of ``common.MIX_TTL`` seconds; empty for a peer that has no
    #: expiry (the mix then uses its plain ``set``).
    set_ttl_stmt: ClassVar[str] = ""
    #: How the peer's mix sets its expiry (or why it has none).
    set_ttl_note: ClassVar[str] = "no expiry: values are stored without one"
    #: Shared between processes (False: each process has its own copy).
    shared: ClassVar[bool] = True
    #: True when incr is one atomic call; False when it is a read-modify-write
    #: that the statement protects with the lock ``L``.
    atomic_incr: ClassVar[bool] = True
    #: Largest key count / table bytes (nkeys * value size) run per-op.
    max_keys: ClassVar[int] = 10**9
    max_bytes: ClassVar[int] = 1 << 40
    #: Why larger data sets are not run (shown in the report).
    limit_reason: ClassVar[str] = ""

    def __init__(self) -> None:
        self.lock: Any = None

    # -- life cycle of the peer itself (servers, locks) -------------------
    def check(self) -> str | None:
        """None when usable, else the reason to skip (import error...)."""
        return None

    def start(self) -> None:
        """Start what the peer needs (a server); called once per run."""
        if not self.atomic_incr:
            self.lock = multiprocessing.get_context("fork").Lock()

    def stop(self) -> None:
        """Stop what :meth:`start` started."""

    def fits(self, ds: Dataset) -> str | None:
        """None when the data set is run for this peer, else why not."""
        if ds.nkeys > self.max_keys or ds.nkeys * ds.vsize > self.max_bytes:
            return "not run: " + (self.limit_reason or "data set too large")
        return None

    # -- one store ----------------------------------------------------------
    def create(self, ds: Dataset, extra_keys: int) -> Any:
        """A new empty store for ``ds`` with room for ``extra_keys`` more."""
        raise NotImplementedError

    def populate(self, store: Any, keys: Sequence[str], value: bytes | int) -> None:
        """Set every key to ``value`` (untimed; bulk APIs welcome)."""
        for k in keys:
            self.put(store, k, value)

    def put(self, store: Any, key: str, value: bytes | int) -> None:
        """Set one key (untimed helper)."""
        raise NotImplementedError

    def populate_values(
        self, store: Any, items: Sequence[tuple[str, bytes]], ttl: float = 0
    ) -> None:
        """Set each key to its own value (untimed), with an expiry of ``ttl``
        seconds where the peer has one (0: none). Peers without expiry
        ignore ``ttl``: see :attr:`set_ttl_note`."""
        for k, v in items:
            self.put(store, k, v)

    def remove(self, store: Any, keys: Sequence[str]) -> None:
        """Delete keys (untimed helper)."""
        raise NotImplementedError

    def read_int(self, store: Any, key: str) -> int:
        """Read back an integer value (the contended counter check)."""
        raise NotImplementedError

    def fill_list(self, store: Any, key: str, count: int, value: bytes) -> None:
        """Make ``key`` a list (queue) of ``count`` copies of ``value`` (untimed)."""
        raise NotImplementedError

    def destroy(self, store: Any) -> None:
        """Close and remove the store."""

    # -- sharing with forked child processes --------------------------------
    def before_fork(self, store: Any) -> None:
        """Called in the parent before it forks workers that will attach."""

    def after_fork(self, store: Any) -> None:
        """Called in the parent once the workers are forked."""

    def attach(self, store: Any) -> Any:
        """In a forked child: open the store anew, as another process would."""
        return store

    def detach(self, handle: Any) -> None:
        """In a forked child: close what :meth:`attach` opened."""

    def namespace(self, handle: Any, value: bytes | int) -> dict[str, Any]:
        """The names a timed loop sees."""
        return {"o": handle, "v": value, "L": self.lock}


def all_peers() -> list[Peer]:
    """Every Python peer, shmdict first, in report order."""
    from peers.diskcache_peer import DiskcachePeer
    from peers.lmdb_peer import LmdbPeer
    from peers.manager_peer import ManagerPeer
    from peers.plain import DictPeer
    from peers.redis_peer import RedisPeer
    from peers.shmdict_peer import ShmdictPeer
    from peers.smd_peer import SharedMemoryDictPeer
    from peers.ultradict_peer import UltraDictPeer

    return [
        ShmdictPeer(),
        DictPeer(),
        LmdbPeer(),
        DiskcachePeer(),
        RedisPeer(),
        ManagerPeer(),
        UltraDictPeer(),
        SharedMemoryDictPeer(),
    ]

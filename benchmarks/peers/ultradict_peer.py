"""UltraDict with shared_lock=True: a dict replicated through shared memory.

Every process keeps a full local copy; writes append pickled updates to a
shared stream (under the shared lock) and reads first apply what others
appended. When the stream is full the writer pickles the whole dict into a
"full dump" that every reader then loads.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from common import Dataset
from peers import Peer
from peers.shmdict_peer import unique_name


class UltraDictPeer(Peer):
    """UltraDict(shared_lock=True); incr is a read-modify-write under its lock."""

    key = "ultradict"
    label = "UltraDict (shared_lock)"
    notes = (
        "UltraDict(shared_lock=True, buffer_size=max(4 MiB, 128 values)): "
        "g = u.get; g(k); u[k] = v; incr = with u.lock: u[k] = u[k] + 1; del u[k]"
    )
    setup = "g = o.get; lk = o.lock"
    stmts: ClassVar[dict[str, str]] = {
        "get": "g(k)",
        "set": "o[k] = v",
        "incr": "with lk:\n    o[k] = o[k] + 1",
        "delete": "del o[k]",
    }
    atomic_incr = False  # uses its own lock (lk), not L
    max_keys = 100_000
    limit_reason = (
        "every process holds a full copy and full dumps pickle the whole "
        "dict: too slow to fill and too big at 1M keys"
    )

    def check(self) -> str | None:
        try:
            import atomics  # noqa: F401
            from UltraDict import UltraDict  # noqa: F401
        except ImportError as exc:
            return f"import UltraDict/atomics failed: {exc}"
        return None

    def create(self, ds: Dataset, extra_keys: int) -> Any:
        from UltraDict import UltraDict

        buffer_size = max(4 << 20, 128 * (ds.vsize + 64))
        return UltraDict(
            name=unique_name("bench_ud"),
            create=True,
            shared_lock=True,
            buffer_size=buffer_size,
            auto_unlink=True,
        )

    def populate(self, store: Any, keys: Sequence[str], value: bytes | int) -> None:
        for k in keys:
            store[k] = value

    def put(self, store: Any, key: str, value: bytes | int) -> None:
        store[key] = value

    def remove(self, store: Any, keys: Sequence[str]) -> None:
        for k in keys:
            del store[k]

    def read_int(self, store: Any, key: str) -> int:
        return int(store[key])

    def destroy(self, store: Any) -> None:
        store.close(unlink=True)

    def attach(self, store: Any) -> Any:
        from UltraDict import UltraDict

        return UltraDict(name=store.name, shared_lock=True)

    def detach(self, handle: Any) -> None:
        handle.close(unlink=False)

"""diskcache.Cache (SQLite + files) with its directory on /dev/shm."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from typing import Any, ClassVar

from common import MIX_TTL, Dataset, shm_dir
from peers import Peer

#: No size limit and no eviction, so that nothing is culled behind our back.
_OPTS: dict[str, Any] = {"size_limit": 1 << 40, "eviction_policy": "none"}


class DiskcachePeer(Peer):
    """diskcache.Cache, its own get/set/incr/delete."""

    key = "diskcache"
    label = "diskcache"
    notes = (
        "Cache(dir on /dev/shm, size_limit=1 TiB, eviction_policy='none'): "
        "c.get(k), c.set(k, v), c.incr(k, 1), c.delete(k); values >= 32 KiB go to files"
    )
    setup = "g = o.get; s = o.set; inc = o.incr; dl = o.delete"
    stmts: ClassVar[dict[str, str]] = {
        "get": "g(k)",
        "set": "s(k, v)",
        "incr": "inc(k, 1)",
        "delete": "dl(k)",
    }
    set_ttl_stmt = f"s(k, v, expire={MIX_TTL})"
    set_ttl_note = f"c.set(k, v, expire={MIX_TTL})"
    max_keys = 100_000
    limit_reason = "populating 1M keys takes over a minute at ~30 us per insert"

    def check(self) -> str | None:
        try:
            import diskcache  # noqa: F401
        except ImportError as exc:
            return f"import diskcache failed: {exc}"
        return None

    def create(self, ds: Dataset, extra_keys: int) -> Any:
        import diskcache

        path = tempfile.mkdtemp(prefix="bench-diskcache-", dir=shm_dir())
        return diskcache.Cache(path, **_OPTS)

    def populate(self, store: Any, keys: Sequence[str], value: bytes | int) -> None:
        for i in range(0, len(keys), 10_000):
            with store.transact():
                for k in keys[i : i + 10_000]:
                    store.set(k, value)

    def populate_values(
        self, store: Any, items: Sequence[tuple[str, bytes]], ttl: float = 0
    ) -> None:
        for i in range(0, len(items), 10_000):
            with store.transact():
                for k, v in items[i : i + 10_000]:
                    store.set(k, v, expire=ttl or None)

    def put(self, store: Any, key: str, value: bytes | int) -> None:
        store.set(key, value)

    def remove(self, store: Any, keys: Sequence[str]) -> None:
        with store.transact():
            for k in keys:
                store.delete(k)

    def read_int(self, store: Any, key: str) -> int:
        return int(store.get(key))

    def destroy(self, store: Any) -> None:
        path = store.directory
        store.close()
        shutil.rmtree(path, ignore_errors=True)

    def attach(self, store: Any) -> Any:
        import diskcache

        return diskcache.Cache(store.directory, **_OPTS)

    def detach(self, handle: Any) -> None:
        handle.close()

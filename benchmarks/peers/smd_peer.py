"""shared-memory-dict (PyPI ``shared-memory-dict``): a pickled dict in one
SharedMemory block. Every read unpickles the whole block; every write
unpickles, changes and re-pickles it. ``SHARED_MEMORY_USE_LOCK=1`` is set
before the import so that its writes take a multiprocessing.Lock.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Sequence
from typing import Any, ClassVar

from common import Dataset
from peers import Peer
from peers.shmdict_peer import unique_name


class SmdStore:
    """The dict object and the block size it was created with."""

    def __init__(self, name: str, size: int) -> None:
        from shared_memory_dict import SharedMemoryDict

        self.name = name
        self.size = size
        self.d = SharedMemoryDict(name=name, size=size)


class SharedMemoryDictPeer(Peer):
    """SharedMemoryDict; incr is a read-modify-write under a multiprocessing.Lock."""

    key = "smd"
    label = "shared-memory-dict"
    notes = (
        "SharedMemoryDict(name, size) with SHARED_MEMORY_USE_LOCK=1: g = d.get; "
        "g(k); d[k] = v; incr = with lock: d[k] = d[k] + 1; del d[k]; every op "
        "(un)pickles the whole dict"
    )
    setup = "g = o.get"
    stmts: ClassVar[dict[str, str]] = {
        "get": "g(k)",
        "set": "o[k] = v",
        "incr": "with L:\n    o[k] = o[k] + 1",
        "delete": "del o[k]",
    }
    atomic_incr = False
    max_keys = 1000
    max_bytes = 2 << 20
    limit_reason = (
        "every op copies and unpickles the whole dict, so it costs "
        "milliseconds per op at this size"
    )

    def check(self) -> str | None:
        os.environ["SHARED_MEMORY_USE_LOCK"] = "1"
        try:
            import shared_memory_dict  # noqa: F401
        except ImportError as exc:
            return f"import shared_memory_dict failed: {exc}"
        return None

    def create(self, ds: Dataset, extra_keys: int) -> Any:
        sample = {
            f"key:{i:012d}": b"x" * ds.vsize for i in range(ds.nkeys + extra_keys)
        }
        size = int(len(pickle.dumps(sample)) * 1.25) + 4096
        return SmdStore(unique_name("bench_smd"), size)

    def populate(self, store: Any, keys: Sequence[str], value: bytes | int) -> None:
        store.d.update(dict.fromkeys(keys, value))

    def populate_values(
        self, store: Any, items: Sequence[tuple[str, bytes]], ttl: float = 0
    ) -> None:
        store.d.update(dict(items))

    def put(self, store: Any, key: str, value: bytes | int) -> None:
        store.d[key] = value

    def remove(self, store: Any, keys: Sequence[str]) -> None:
        for k in keys:
            del store.d[k]

    def read_int(self, store: Any, key: str) -> int:
        return int(store.d[key])

    def destroy(self, store: Any) -> None:
        store.d.shm.unlink()
        store.d.cleanup()

    def attach(self, store: Any) -> Any:
        from shared_memory_dict import SharedMemoryDict

        return SharedMemoryDict(name=store.name, size=store.size)

    def detach(self, handle: Any) -> None:
        handle.cleanup()

    def namespace(self, handle: Any, value: bytes | int) -> dict[str, Any]:
        d = handle.d if isinstance(handle, SmdStore) else handle
        return {"o": d, "v": value, "L": self.lock}

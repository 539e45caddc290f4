"""LMDB (py-lmdb), its environment on /dev/shm, one transaction per op."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from typing import Any, ClassVar

from common import Dataset, shm_dir
from peers import Peer

#: sync/metasync off: the files are on tmpfs, and shmdict promises no
#: durability either; locking stays on, so processes share the env safely.
_OPTS: dict[str, Any] = {
    "subdir": True,
    "sync": False,
    "metasync": False,
    "max_readers": 256,
    "lock": True,
}


def _encode(value: bytes | int) -> bytes:
    return value if isinstance(value, bytes) else b"%d" % value


class LmdbStore:
    """An LMDB environment and the directory that holds it."""

    def __init__(self, path: str, map_size: int) -> None:
        import lmdb

        self.path = path
        self.map_size = map_size
        self.env = lmdb.open(path, map_size=map_size, **_OPTS)


class LmdbPeer(Peer):
    """py-lmdb with a read or write transaction around every operation."""

    key = "lmdb"
    label = "lmdb"
    notes = (
        "each op is its own transaction: with env.begin() as t: t.get(k.encode()); "
        "writes use begin(write=True); incr = read + put of a decimal in one write "
        "transaction; sync=False, metasync=False, env on /dev/shm"
    )
    setup = "b = o.begin"
    stmts: ClassVar[dict[str, str]] = {
        "get": "with b() as t: t.get(k.encode())",
        "set": "with b(write=True) as t: t.put(k.encode(), v)",
        "incr": (
            "with b(write=True) as t:\n"
            "    kb = k.encode()\n"
            "    t.put(kb, b'%d' % (int(t.get(kb)) + 1))"
        ),
        "delete": "with b(write=True) as t: t.delete(k.encode())",
    }

    set_ttl_note = "no expiry (LMDB has none): the plain put"

    def check(self) -> str | None:
        try:
            import lmdb  # noqa: F401
        except ImportError as exc:
            return f"import lmdb failed: {exc}"
        return None

    def create(self, ds: Dataset, extra_keys: int) -> Any:
        entries = ds.nkeys + extra_keys
        # LMDB pages are 4 KiB; big values take overflow pages. Be generous:
        # the map is sparse until used.
        per = max(64, ds.vsize + 4096 if ds.vsize > 2000 else ds.vsize + 64)
        map_size = max(1 << 30, 4 * entries * per)
        path = tempfile.mkdtemp(prefix="bench-lmdb-", dir=shm_dir())
        return LmdbStore(path, map_size)

    def populate(self, store: Any, keys: Sequence[str], value: bytes | int) -> None:
        v = _encode(value)
        for i in range(0, len(keys), 100_000):
            with store.env.begin(write=True) as t:
                t.cursor().putmulti((k.encode(), v) for k in keys[i : i + 100_000])

    def populate_values(
        self, store: Any, items: Sequence[tuple[str, bytes]], ttl: float = 0
    ) -> None:
        for i in range(0, len(items), 100_000):
            with store.env.begin(write=True) as t:
                t.cursor().putmulti((k.encode(), v) for k, v in items[i : i + 100_000])

    def put(self, store: Any, key: str, value: bytes | int) -> None:
        with store.env.begin(write=True) as t:
            t.put(key.encode(), _encode(value))

    def remove(self, store: Any, keys: Sequence[str]) -> None:
        with store.env.begin(write=True) as t:
            for k in keys:
                t.delete(k.encode())

    def read_int(self, store: Any, key: str) -> int:
        with store.env.begin() as t:
            return int(t.get(key.encode()))

    def destroy(self, store: Any) -> None:
        store.env.close()
        shutil.rmtree(store.path, ignore_errors=True)

    def before_fork(self, store: Any) -> None:
        # py-lmdb refuses to open an environment that is open "in this
        # process", and a forked child inherits the parent's registry; LMDB
        # also forbids using an environment across fork(). So the parent
        # closes its env while workers are forked, and reopens it after.
        store.env.close()

    def after_fork(self, store: Any) -> None:
        import lmdb

        store.env = lmdb.open(store.path, map_size=store.map_size, **_OPTS)

    def attach(self, store: Any) -> Any:
        import lmdb

        return lmdb.open(store.path, map_size=store.map_size, **_OPTS)

    def detach(self, handle: Any) -> None:
        handle.close()

    def namespace(self, handle: Any, value: bytes | int) -> dict[str, Any]:
        env = handle.env if isinstance(handle, LmdbStore) else handle
        return {"o": env, "v": _encode(value), "L": self.lock}

"""multiprocessing.Manager().dict(): a dict in a server process, via proxies."""

from __future__ import annotations

import multiprocessing
from collections.abc import Sequence
from typing import Any, ClassVar

from common import Dataset
from peers import Peer


class ManagerPeer(Peer):
    """A DictProxy; incr is a read-modify-write under a multiprocessing.Lock."""

    key = "manager"
    label = "Manager().dict()"
    notes = (
        "multiprocessing.Manager().dict() proxy: g = m.get; g(k); m[k] = v; "
        "incr = with lock: m[k] = g(k, 0) + 1 (a Manager dict has no atomic incr); "
        "del m[k]"
    )
    setup = "g = o.get"
    stmts: ClassVar[dict[str, str]] = {
        "get": "g(k)",
        "set": "o[k] = v",
        "incr": "with L:\n    o[k] = g(k, 0) + 1",
        "delete": "del o[k]",
    }
    atomic_incr = False
    set_ttl_note = "no expiry (a Manager dict has none): m[k] = v"

    def __init__(self) -> None:
        super().__init__()
        self.manager: Any = None

    def start(self) -> None:
        super().start()
        self.manager = multiprocessing.get_context("fork").Manager()

    def stop(self) -> None:
        if self.manager is not None:
            self.manager.shutdown()
            self.manager = None

    def create(self, ds: Dataset, extra_keys: int) -> Any:
        return self.manager.dict()

    def populate(self, store: Any, keys: Sequence[str], value: bytes | int) -> None:
        for i in range(0, len(keys), 100_000):
            store.update(dict.fromkeys(keys[i : i + 100_000], value))

    def populate_values(
        self, store: Any, items: Sequence[tuple[str, bytes]], ttl: float = 0
    ) -> None:
        for i in range(0, len(items), 100_000):
            store.update(dict(items[i : i + 100_000]))

    def put(self, store: Any, key: str, value: bytes | int) -> None:
        store[key] = value

    def remove(self, store: Any, keys: Sequence[str]) -> None:
        for k in keys:
            del store[k]

    def read_int(self, store: Any, key: str) -> int:
        return int(store[key])

    def destroy(self, store: Any) -> None:
        store.clear()

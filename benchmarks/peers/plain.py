"""The baseline: a plain Python dict in one process (not shared)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from common import Dataset
from peers import Peer


class DictPeer(Peer):
    """A plain ``dict``: the in-process floor that the goals are relative to."""

    key = "dict"
    label = "plain dict"
    notes = (
        "g = d.get; g(k); d[k] = v; read-modify-write d[k] = g(k, 0) + 1; del d[k]. "
        "Not shared: in multi-process runs each process has its own copy"
    )
    setup = "g = o.get"
    stmts: ClassVar[dict[str, str]] = {
        "get": "g(k)",
        "set": "o[k] = v",
        "incr": "o[k] = g(k, 0) + 1",
        "delete": "del o[k]",
    }
    shared = False

    def create(self, ds: Dataset, extra_keys: int) -> Any:
        return {}

    def populate(self, store: Any, keys: Sequence[str], value: bytes | int) -> None:
        store.update(dict.fromkeys(keys, value))

    def put(self, store: Any, key: str, value: bytes | int) -> None:
        store[key] = value

    def remove(self, store: Any, keys: Sequence[str]) -> None:
        for k in keys:
            del store[k]

    def read_int(self, store: Any, key: str) -> int:
        return int(store[key])

    def destroy(self, store: Any) -> None:
        store.clear()

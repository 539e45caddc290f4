"""The baseline: a plain Python dict in one process (not shared)."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any, ClassVar

from common import LIST_KEY, Dataset
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
    # The in-process ceiling of the feature ops: a dict's own spelling of
    # each, not atomic across processes and without expiry (so no get_stale).
    feature_setup = (
        "si = o.__setitem__; di = o.__delitem__; "
        f"g = o.get; pp = o.pop; sd = o.setdefault; up = o.update; Q = {LIST_KEY!r}"
    )
    feature_stmts: ClassVar[dict[str, str]] = {
        "set_call": "si(k, v)",
        "delete_call": "di(k)",
        "add_new": "if k not in o: o[k] = v",
        "add_exists": "if k not in o: o[k] = v",
        "replace": "if k in o: o[k] = v",
        "cas": "if g(k) == 0: o[k] = 0",
        "pop": "pp(k)",
        "setdefault": "sd(k, v)",
        "incr_init": "o[k] = g(k, 0) + 1",
        "queue": "o[Q].appendleft(v)\no[Q].pop()",
        "llen": "len(o[Q])",
        "get_many": "{x: g(x) for x in k}",
        "set_many": "up(k)",
    }
    feature_notes = (
        "si(k, v) and di(k), with si = d.__setitem__ and di = d.__delitem__ "
        "(set and delete as method calls); if k not in d: d[k] = v (add); "
        "if k in d: d[k] = v (replace); "
        "if g(k) == 0: d[k] = 0 (cas); d.pop(k); "
        "d.setdefault(k, v); d[k] = g(k, 0) + 1 (incr with init); a deque: "
        "d[Q].appendleft(v); d[Q].pop(), len(d[Q]); {x: g(x) for x in keys}; "
        "d.update(mapping). No get_stale: a dict has no expiry"
    )
    shared = False
    set_ttl_note = "no expiry (a plain dict has none): d[k] = v"

    def create(self, ds: Dataset, extra_keys: int) -> Any:
        return {}

    def populate(self, store: Any, keys: Sequence[str], value: bytes | int) -> None:
        store.update(dict.fromkeys(keys, value))

    def populate_values(
        self, store: Any, items: Sequence[tuple[str, bytes]], ttl: float = 0
    ) -> None:
        store.update(items)

    def put(self, store: Any, key: str, value: bytes | int) -> None:
        store[key] = value

    def remove(self, store: Any, keys: Sequence[str]) -> None:
        for k in keys:
            del store[k]

    def read_int(self, store: Any, key: str) -> int:
        return int(store[key])

    def fill_list(self, store: Any, key: str, count: int, value: bytes) -> None:
        store[key] = deque([value] * count)

    def destroy(self, store: Any) -> None:
        store.clear()

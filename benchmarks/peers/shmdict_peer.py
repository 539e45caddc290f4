"""shmdict itself: the dict in a file under /dev/shm, opened by name."""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from typing import Any, ClassVar

from common import LIST_KEY, MIX_TTL, Dataset
from peers import Peer

_seq = itertools.count()


def shmdict_size(entries: int, klen: int, vsize: int) -> int:
    """A generous file size for ``entries`` items (the file is sparse).

    One entry takes 8 + 24 + pad8(klen) + pad8(vsize) bytes of heap rounded
    to 16, plus a bucket (see csrc/layout.h); twice that plus 16 MiB leaves
    room for fragmentation and the index.
    """
    entry = (8 + 24 + -(-klen // 8) * 8 + -(-vsize // 8) * 8 + 15) // 16 * 16 + 8
    size = 2 * entries * entry + (16 << 20)
    return -(-size // (1 << 20)) * (1 << 20)


def unique_name(prefix: str) -> str:
    """A dict name no other run or process uses."""
    return f"{prefix}_{os.getpid()}_{next(_seq)}"


class ShmdictPeer(Peer):
    """shmdict, methods bound once (``g = d.get`` ...)."""

    key = "shmdict"
    label = "shmdict"
    notes = (
        "g = d.get; g(k); d[k] = v; d.incr(k, 1); del d[k] (methods bound "
        "once; set and delete spelled as the plain dict's are, the method "
        "calls d.set and d.delete are timed among the feature ops); other "
        "processes attach with shmdict.get(name)"
    )
    setup = "g = o.get; inc = o.incr; s = o.set"
    stmts: ClassVar[dict[str, str]] = {
        "get": "g(k)",
        "set": "o[k] = v",
        "incr": "inc(k, 1)",
        "delete": "del o[k]",
    }
    set_ttl_stmt = f"s(k, v, {MIX_TTL})"
    set_ttl_note = f"d.set(k, v, {MIX_TTL}) (exptime in seconds)"
    feature_setup = (
        "s = o.set; dl = o.delete; a = o.add; rp = o.replace; c = o.cas; "
        "pp = o.pop; sd = o.setdefault; "
        "gs = o.get_stale; inc = o.incr; lp = o.lpush; rpo = o.rpop; "
        f"ll = o.llen; gm = o.get_many; sm = o.set_many; Q = {LIST_KEY!r}"
    )
    feature_stmts: ClassVar[dict[str, str]] = {
        "set_call": "s(k, v)",
        "delete_call": "dl(k)",
        "add_new": "a(k, v)",
        "add_exists": "a(k, v)",
        "replace": "rp(k, v)",
        "cas": "c(k, 0, 0)",
        "pop": "pp(k)",
        "setdefault": "sd(k, v)",
        "get_stale": "gs(k)",
        "incr_init": "inc(k, 1, init=0)",
        "queue": "lp(Q, v)\nrpo(Q)",
        "llen": "ll(Q)",
        "get_many": "gm(k)",
        "set_many": "sm(k)",
    }
    feature_notes = (
        "d.set(k, v), d.delete(k), d.add(k, v), d.replace(k, v), "
        "d.cas(k, 0, 0), d.pop(k), "
        "d.setdefault(k, v), d.get_stale(k), d.incr(k, 1, init=0), "
        "d.lpush(Q, v); d.rpop(Q), d.llen(Q), d.get_many(keys), "
        "d.set_many(mapping) (methods bound once)"
    )

    def check(self) -> str | None:
        try:
            import shmdict
        except Exception as exc:
            return f"import shmdict failed: {exc!r}"
        if not hasattr(shmdict, "new"):
            return "shmdict has no new(): the C extension is not built"
        return None

    def create(self, ds: Dataset, extra_keys: int) -> Any:
        import shmdict

        size = shmdict_size(ds.nkeys + extra_keys, 16, ds.vsize)
        # At least 64 MiB, a typical production budget (the file is sparse,
        # so only what is stored costs memory). It also gives the dict its
        # default layout for that size: 4 stripes, one lock each.
        size = max(size, 64 << 20)
        return shmdict.new(unique_name("bench"), size)

    def put(self, store: Any, key: str, value: bytes | int) -> None:
        store.set(key, value)

    def populate(self, store: Any, keys: Sequence[str], value: bytes | int) -> None:
        s = store.set
        for k in keys:
            s(k, value)

    def populate_values(
        self, store: Any, items: Sequence[tuple[str, bytes]], ttl: float = 0
    ) -> None:
        s = store.set
        for k, v in items:
            s(k, v, ttl)

    def remove(self, store: Any, keys: Sequence[str]) -> None:
        dl = store.delete
        for k in keys:
            dl(k)

    def read_int(self, store: Any, key: str) -> int:
        return int(store.get(key))

    def fill_list(self, store: Any, key: str, count: int, value: bytes) -> None:
        store.delete(key)
        for _ in range(count):
            store.rpush(key, value)

    def destroy(self, store: Any) -> None:
        store.close()

    def attach(self, store: Any) -> Any:
        import shmdict

        return shmdict.get(store.name)

    def detach(self, handle: Any) -> None:
        handle.close()

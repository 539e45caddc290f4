"""Single-process cost of the feature ops: the calls beyond eco.shared's.

On one data set (:data:`common.FEATURE_DATASET`, 1k keys x 16 B) and with the same
timed loops, calibration and repetitions as the core per-op workloads
(:class:`timing.OpRunner`), :func:`measure_features` times, for one peer:

* set and delete as method calls (``d.set(k, v)``, ``d.delete(k)``; the
  dict's bound ``__setitem__`` and ``__delitem__``): the core per-op rows
  time both peers' subscript spelling, these time the call spelling, with
  the same pools as set (overwrite) and delete;
* every op that overwrites (set, replace, set_many) stores a value whose
  bytes differ from the stored one, in batches after which the stored
  value is put back (untimed): no timed write stores what is already there;
* add (new key): keys not in the table, in batches removed again (untimed);
* add (existing key): every key, shuffled: the add is refused;
* replace (existing key): every key, shuffled, a same-size value;
* cas (succeeds): ``cas(k, 0, 0)`` on integer counters that hold 0, so the
  comparison succeeds and 0 is stored again (shmdict finds the word
  unchanged and writes nothing; APCu and ngx run the same call);
* pop (existing key): existing keys in batches put back (untimed), as
  delete is;
* setdefault (existing key) and get_stale (hit): every key, shuffled;
* incr with init (new counter): ``incr(k, 1, init=0)`` on keys that are not
  in the table, in batches removed again (untimed);
* lpush + rpop (one list): one push and one pop per op on the list
  :data:`common.LIST_KEY`, which holds :data:`common.LIST_ITEMS` items so
  that it is never created or emptied;
* llen: the length of that list;
* get_many / set_many: :data:`common.BATCH_KEYS` existing keys per call
  (consecutive slices of the shuffled order; set_many gets a prepared
  mapping).

A peer runs only the ops it lists in :attr:`peers.Peer.feature_stmts`;
PHP APCu and ngx.shared.DICT run the same pools in their own languages
(``native/``). For shmdict every call is first checked once for the result
it must give, and the dict is checked again afterwards; a wrong result is
recorded as a note, shown in the report, and is never worked around.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from common import (
    BATCH_KEYS,
    FEATURE_OPS,
    LIST_ITEMS,
    LIST_KEY,
    Dataset,
    PeerRun,
    Settings,
    key_name,
    progress,
    short_error,
)
from peers import Peer
from perop import key_families, other_value
from timing import OpRunner


def build_feature_pools(
    ds: Dataset, settings: Settings
) -> tuple[list[str], dict[str, list[Any]]]:
    """All keys (insertion order) and the pool of every feature op.

    The same key names and pool sizes as ``native/apcu_bench.php`` and
    ``native/ngx_bench.lua`` build for their feature runs.
    """
    keys, shuffled, fam = key_families(ds, settings, ("new", "ctr", "ini"))
    m = len(fam["new"])
    value = b"x" * ds.vsize
    batches = [
        tuple(shuffled[i : i + BATCH_KEYS])
        for i in range(0, len(shuffled) - BATCH_KEYS + 1, BATCH_KEYS)
    ]
    pools: dict[str, list[Any]] = {
        "set_call": shuffled,
        "delete_call": shuffled[:m],
        "add_new": fam["new"],
        "add_exists": shuffled,
        "replace": shuffled,
        "cas": fam["ctr"],
        "pop": shuffled[:m],
        "setdefault": shuffled,
        "get_stale": shuffled,
        "incr_init": fam["ini"],
        "queue": shuffled,  # the key is not used: every op is on LIST_KEY
        "llen": shuffled,
        "get_many": batches,
        "set_many": [dict.fromkeys(b, other_value(value)) for b in batches],
    }
    assert set(pools) == set(FEATURE_OPS)
    return keys, pools


def _expect(problems: list[str], what: str, got: object, want: object) -> None:
    if got != want or type(got) is not type(want):
        problems.append(f"shmdict {what} returned {got!r}, expected {want!r}")


def check_shmdict_calls(d: Any, value: bytes) -> list[str]:
    """Call every feature op once on scratch keys; list wrong results.

    Runs before the timed loops, on keys of their own (``chk:...``) that
    it removes again, so that what is timed is known to do what it says.
    """
    p: list[str] = []
    a, b, c = key_name("chk", 0), key_name("chk", 1), key_name("chk", 2)
    _expect(p, "set(new key)", d.set(a, value), True)
    _expect(p, "delete(existing key)", d.delete(a), True)
    _expect(p, "delete(missing key)", d.delete(a), False)
    q = key_name("chq", 0)
    _expect(p, "add(new key)", d.add(a, value), True)
    _expect(p, "add(existing key)", d.add(a, b"other"), False)
    _expect(p, "get after a refused add", d.get(a), value)
    _expect(p, "replace(existing key)", d.replace(a, value), True)
    _expect(p, "replace(missing key)", d.replace(b, value), False)
    _expect(p, "get_stale(hit)", d.get_stale(a), (value, False))
    _expect(p, "setdefault(existing key)", d.setdefault(a, b"other"), value)
    _expect(p, "pop(existing key)", d.pop(a), value)
    _expect(p, "contains after pop", a in d, False)
    d.set(b, 0)
    _expect(p, "cas(k, 0, 0) on 0", d.cas(b, 0, 0), True)
    _expect(p, "cas(k, 1, 0) on 0", d.cas(b, 1, 0), False)
    _expect(p, "incr(missing, 1, init=0)", d.incr(c, 1, init=0), 1)
    _expect(p, "incr(existing, 1, init=0)", d.incr(c, 1, init=0), 2)
    for i in range(3):
        _expect(p, f"lpush #{i + 1}", d.lpush(q, value), i + 1)
    _expect(p, "rpop", d.rpop(q), value)
    _expect(p, "llen after 3 pushes and a pop", d.llen(q), 2)
    batch = {key_name("chm", i): value for i in range(BATCH_KEYS)}
    _expect(p, "set_many(10 keys)", d.set_many(batch), None)
    _expect(p, "get_many(10 keys)", d.get_many(list(batch)), batch)
    for k in (a, b, c, q, *batch):
        d.delete(k)
    return p


def check_shmdict_after(
    d: Any, keys: Sequence[str], counters: Sequence[str]
) -> list[str]:
    """After the timed loops: the table as it was, the list as long as it was."""
    p: list[str] = []
    want = len(keys) + len(counters) + 1
    _expect(p, "len(d) after the feature ops", len(d), want)
    _expect(p, "llen(list) after the feature ops", d.llen(LIST_KEY), LIST_ITEMS)
    _expect(p, "a cas counter after the feature ops", d.get(counters[0]), 0)
    _expect(p, "verify() after the feature ops", d.verify(), [])
    return p


def measure_features(peer: Peer, ds: Dataset, settings: Settings) -> PeerRun:
    """Time every feature op the peer has on a fresh store (in a child)."""
    run = PeerRun()
    keys, pools = build_feature_pools(ds, settings)
    m = len(pools["cas"])
    value = b"x" * ds.vsize
    store: Any = peer.create(ds, extra_keys=4 * m + 1)
    try:
        peer.populate(store, keys, value)
        peer.populate(store, pools["cas"], 0)
        ops = [op for op in FEATURE_OPS if op in peer.feature_stmts]
        if "queue" in ops or "llen" in ops:
            peer.fill_list(store, LIST_KEY, LIST_ITEMS, value)
        if peer.key == "shmdict":
            run.notes += check_shmdict_calls(store, value)

        def remove(ks: Sequence[str]) -> None:
            peer.remove(store, ks)

        def restore(ks: Sequence[str]) -> None:
            peer.populate(store, ks, value)

        def restore_batches(bs: Sequence[Any]) -> None:
            for b in bs:
                restore(list(b))

        undo: dict[str, Callable[[Sequence[Any]], None]] = {
            "set_call": restore,
            "replace": restore,
            "set_many": restore_batches,
            "delete_call": restore,
            "add_new": remove,
            "incr_init": remove,
            "pop": restore,
        }
        runner = OpRunner(
            peer.feature_setup,
            peer.feature_stmts,
            peer.namespace(store, other_value(value)),
            settings,
            remove_keys=remove,
            restore_keys=restore,
            ops={op: op for op in ops},
            undo={op: fn for op, fn in undo.items() if op in ops},
        )
        for op in ops:
            tag = f"{peer.label:28} {FEATURE_OPS[op]:28}"
            try:
                res = runner.measure(op, pools[op])
            except Exception as exc:
                run.skipped[op] = f"failed: {short_error(exc)}"
                progress(f"    {tag} FAILED {short_error(exc)}")
                continue
            run.results[op] = res
            progress(
                f"    {tag} {res.raw:10.1f} ns raw {res.net:10.1f} ns net  (n={res.n})"
            )
        if peer.key == "shmdict":
            run.notes += check_shmdict_after(store, keys, pools["cas"])
    finally:
        peer.destroy(store)
    for note in run.notes:
        progress(f"    {peer.label}: CHECK FAILED: {note}")
    return run

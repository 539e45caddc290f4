"""Single-process per-op workloads of the Python peers.

For one peer and one data set (``nkeys`` keys of 16 bytes, values of
``vsize`` bytes) :func:`measure_peer` fills a fresh store and times:

* get (hit): every key, in random order (cycled when more ops are needed);
* get (miss): keys that were never set;
* set (overwrite): every key, a same-size value with other bytes than the
  stored one, in batches after which the stored value is put back
  (untimed), so that every timed write changes what is stored;
* set (new key): min(nkeys, batch_cap) keys that are not in the table, in
  batches that are deleted again (untimed) so the table keeps its size;
* incr: +1 on min(nkeys, batch_cap) integer counters;
* delete (random order): min(nkeys, batch_cap) existing keys per batch,
  put back (untimed) after each batch.

The keys, the random order and the values are the same for every peer and
for the native harnesses in ``benchmarks/native/``. Every key holds its own
value object (``common.distinct_value``), for the plain dict and every other
Python peer alike: with one object shared by every key, the dict's get
would return an object that always stays in the CPU cache, which flatters
it at large key counts. (The native peers copy each value into their shared
memory anyway.)
"""

from __future__ import annotations

import random
from typing import Any

from common import (
    OPS,
    Dataset,
    LatencyResult,
    PeerRun,
    Settings,
    distinct_value,
    key_name,
    overwrite_value,
    progress,
    short_error,
)
from peers import Peer
from timing import OpRunner

#: The ops sampled one by one for the latency (p99) table.
LATENCY_OPS = ("get_hit", "set", "incr")


def key_families(
    ds: Dataset, settings: Settings, families: tuple[str, ...]
) -> tuple[list[str], list[str], dict[str, list[str]]]:
    """All keys (insertion order), the same keys shuffled, and for each
    prefix in ``families`` min(nkeys, batch_cap) fresh keys, shuffled: drawn
    in the order the native harnesses draw them, so the pools match."""
    rng = random.Random(settings.seed)
    keys = [key_name("key", i) for i in range(ds.nkeys)]
    m = min(ds.nkeys, settings.batch_cap)
    shuffled = keys[:]
    rng.shuffle(shuffled)
    fam = {p: [key_name(p, i) for i in range(m)] for p in families}
    for lst in fam.values():
        rng.shuffle(lst)
    return keys, shuffled, fam


def other_value(value: bytes) -> bytes:
    """A value of the same size as ``value`` that differs in every byte
    (the feature ops' overwrites store it over their one shared value)."""
    return bytes(b ^ 1 for b in value)


def build_pools(
    ds: Dataset, settings: Settings
) -> tuple[list[str], dict[str, list[str]]]:
    """All keys (insertion order) and the key pool of every op."""
    keys, shuffled, fam = key_families(ds, settings, ("mis", "new", "ctr"))
    m = len(fam["new"])
    pools = {
        "get_hit": shuffled,
        "get_miss": fam["mis"],
        "set": shuffled,
        "set_new": fam["new"],
        "incr": fam["ctr"],
        "delete": shuffled[:m],
    }
    return keys, pools


def measure_peer(
    peer: Peer, ds: Dataset, settings: Settings, latency: bool
) -> tuple[PeerRun, dict[str, LatencyResult]]:
    """Run every op on a fresh store (meant to run in a child process)."""
    run = PeerRun()
    lat: dict[str, LatencyResult] = {}
    keys, pools = build_pools(ds, settings)
    m = len(pools["incr"])
    values = {k: distinct_value(i, ds.vsize) for i, k in enumerate(keys)}
    store: Any = peer.create(ds, extra_keys=2 * m)
    try:
        peer.populate_values(store, list(values.items()))
        peer.populate(store, pools["incr"], 0)
        runner = OpRunner(
            peer.setup,
            peer.stmts,
            peer.namespace(store, overwrite_value(ds.vsize)),
            settings,
            remove_keys=lambda ks: peer.remove(store, ks),
            restore_keys=lambda ks: peer.populate_values(
                store, [(k, values[k]) for k in ks]
            ),
        )
        for op in OPS:
            try:
                res = runner.measure(op, pools[op])
            except Exception as exc:
                run.skipped[op] = f"failed: {short_error(exc)}"
                tag = f"{peer.label:28} {ds.label:13} {OPS[op]:22}"
                progress(f"    {tag} FAILED {short_error(exc)}")
                continue
            run.results[op] = res
            progress(
                f"    {peer.label:28} {ds.label:13} {OPS[op]:22} "
                f"{res.raw:10.1f} ns raw {res.net:10.1f} ns net  (n={res.n})"
            )
        if latency:
            for op in LATENCY_OPS:
                if op not in run.results:
                    continue
                count = max(200, min(settings.latency_samples, run.results[op].n * 3))
                lat[op] = runner.sample(op, pools[op], count)
        # incr must have counted: each counter was incremented at least once
        got = peer.read_int(store, pools["incr"][0])
        if got <= 0:
            run.notes.append(f"incr check failed: counter reads {got}")
    finally:
        peer.destroy(store)
    return run, lat

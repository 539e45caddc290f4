"""The web-cache mix: 2 processes, 95/5 get/set, 100k keys, Zipf 0.99, TTLs.

One store of ``MIX_KEYS`` keys is filled with values of 16 B or 1 KiB,
each key its own value object and every value given an expiry of
``common.MIX_TTL`` s where the peer has expiry (shmdict ``d.set(k, v,
3600)``, diskcache ``expire=``, redis ``SET ... EX``; the plain dict, lmdb
and Manager have none and store plain values). Then 2 forked processes
attach to it (the plain dict: each has its own private copy, "two private
plain dicts") and run the same number of operations from a barrier:

* keys drawn from a Zipf distribution with s = 0.99 over the keys (rank r
  has weight 1 / r^0.99; ranks are mapped to a shuffled key order), each
  process its own sequence, precomputed before the run with a fixed seed
  (numpy's generator and an inverse-CDF lookup when numpy is there, else
  ``random.choices`` over the cumulative weights: both inverse-CDF
  samplers, seeded);
* 95% gets and 5% sets, the choice drawn per op with the same seed; a set
  stores one of two values of the run's size that differ from the stored
  ones, alternating per key so that no write stores the bytes already there.

Throughput = all ops / (last process's end - first process's start), the
median of ``mp_reps`` runs, using the worker pool of ``multiproc.py``.
"""

from __future__ import annotations

import bisect
import random
from typing import Any

from common import (
    MIX_TTL,
    Dataset,
    MPResult,
    Settings,
    distinct_value,
    human_bytes,
    key_name,
    progress,
    short_error,
)
from multiproc import (
    MPContext,
    Ops,
    WorkerPool,
    Workload,
    _zipf_cum_weights,
    write_values,
)
from peers import Peer
from timing import compile_mix

MIX_KEYS = 100_000
MIX_PROCS = 2
MIX_VSIZES = (16, 1024)
READ_FRAC = 0.95
MIX = Workload(
    "webmix", "web-cache mix: 95/5 get/set, Zipf 0.99, TTLs", READ_FRAC, "zipf"
)

#: The peers a --quick run puts through the mix (those the goals name).
QUICK_PEERS = ("shmdict", "dict", "lmdb", "diskcache", "redis", "manager")

#: Why the native peers are not in the mix.
NATIVE_NA = {
    "apcu": (
        "n/a: the harness runs APCu in one PHP CLI process (APCu's shared "
        "memory belongs to one PHP process tree) and has no multi-process driver"
    ),
    "ngx": (
        "n/a: the harness runs one timed Lua loop in one nginx worker, with no "
        "way to run two in step"
    ),
}


def zipf_indices(n: int, count: int, seed: int) -> list[int]:
    """``count`` ranks in [0, n) drawn from Zipf(s=0.99), seeded."""
    try:
        import numpy as np
    except ImportError:
        cw = _zipf_cum_weights(n)
        rng = random.Random(seed)
        total = cw[-1]
        return [bisect.bisect_left(cw, rng.random() * total) for _ in range(count)]
    weights = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** 0.99
    cdf = np.cumsum(weights)
    u = np.random.default_rng(seed).random(count) * cdf[-1]
    idx = np.searchsorted(cdf, u, side="left")
    return list(np.minimum(idx, n - 1).tolist())


class MixContext(MPContext):
    """The mix's operations for one worker (multiproc.WorkerPool calls ops)."""

    def __init__(
        self, peer: Peer, store: Any, keys: list[str], vsize: int, seed: int
    ) -> None:
        super().__init__(peer, store, keys, b"\xfe" * vsize, seed)
        self.vsize = vsize
        self.set_stmt = peer.set_ttl_stmt or peer.stmts["set"]
        self.write_pair = (b"\xfe" * vsize, b"\xfd" * vsize)

    def ops(self, wl: Workload, rank: int, procs: int, n: int) -> Ops:
        seed = self.seed * 1000 + 17 * rank + 1
        idx = zipf_indices(len(self.zipf_keys), n, seed)
        zk = self.zipf_keys
        keys = [zk[i] for i in idx]
        rand = random.Random(seed).random
        flags = bytes([rand() >= wl.read_frac for _ in range(n)])
        even, odd = write_values(keys, flags, self.write_pair)
        return Ops(keys, flags, even, odd)


def _calibrate(ctx: MixContext, settings: Settings) -> int:
    """Ops per worker so that one worker's run lasts about mp_target_ns.

    A first probe of 200 ops warms up and gives a rough figure (cold caches,
    first calls); a second one, sized to last about a quarter of the target,
    gives the figure used."""
    peer = ctx.peer
    fn = compile_mix(peer.setup, peer.stmts["get"], ctx.set_stmt)
    ns = peer.namespace(ctx.store, ctx.value)
    probe = 200
    ops = ctx.ops(MIX, 0, 1, probe)
    per = fn(ops.keys, ops.flags, ops.vals_even, ns)[0] / probe
    probe = int(max(200, min(100_000, settings.mp_target_ns / 4 / max(per, 1.0))))
    ops = ctx.ops(MIX, 0, 1, probe)
    per = fn(ops.keys, ops.flags, ops.vals_even, ns)[0] / probe
    cap = 400_000 if settings.quick else 1_500_000
    return int(max(100, min(cap, settings.mp_target_ns / max(per, 1.0))))


def measure_mix(peer: Peer, settings: Settings, vsize: int) -> MPResult:
    """The mix on one peer at one value size (meant to run in a child)."""
    keys = [key_name("key", i) for i in range(MIX_KEYS)]
    store = peer.create(Dataset(MIX_KEYS, vsize), extra_keys=16)
    pool: WorkerPool | None = None
    try:
        peer.populate_values(
            store,
            [(k, distinct_value(i, vsize)) for i, k in enumerate(keys)],
            MIX_TTL,
        )
        ctx = MixContext(peer, store, keys, vsize, settings.seed)
        n = _calibrate(ctx, settings)
        pool = WorkerPool(ctx, MIX_PROCS)
        tps: list[float] = []
        nss: list[float] = []
        for _ in range(settings.mp_reps):
            tp, ns = pool.run(MIX, n)
            tps.append(tp)
            nss.append(ns)
        res = MPResult(MIX_PROCS, n, tps, nss)
        progress(
            f"    {peer.label:28} web-cache mix, {human_bytes(vsize):6} "
            f"{res.throughput / 1e6:8.3f} Mops/s ({n:,} ops per process per run)"
        )
        return res
    finally:
        if pool is not None:
            pool.close()
        peer.destroy(store)


def mix_error(peer: Peer, exc: BaseException) -> str:
    """A table cell for a peer whose run failed."""
    return f"failed: {short_error(exc)} ({peer.label})"

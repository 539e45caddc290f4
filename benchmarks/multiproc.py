"""Multi-process throughput and the contended counter.

One store of ``nkeys`` keys with 16-byte values is filled, then 1, 2 and
N (= ``os.cpu_count()``) forked processes each attach to it (``attach`` opens
it anew, e.g. ``shmdict.get(name)``), build their own list of operations,
wait on a barrier and run the same number of operations. Aggregate
throughput is ``total ops / (last process's end - first process's start)``,
all on the shared CLOCK_MONOTONIC (``time.perf_counter_ns``).

Workloads:

* reads over distinct keys (process r reads keys r, r+P, ...),
* writes (set overwrite) over distinct keys,
* reads of one hot key by every process,
* 95/5 and 50/50 read/write mixes over all keys, uniform or Zipf (s=0.99,
  ranks mapped to a random permutation of the keys),
* a contended counter: every process increments the same key; reported as
  wall time / total increments, and the final value is checked.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import multiprocessing
import os
import random
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from common import (
    Dataset,
    MPResult,
    Settings,
    distinct_value,
    key_name,
    progress,
    short_error,
)
from peers import Peer
from timing import compile_mix

_ctx = multiprocessing.get_context("fork")

ZIPF_S = 0.99


@dataclass(frozen=True)
class Workload:
    """A multi-process workload: read share and key choice."""

    key: str
    label: str
    read_frac: float
    dist: str  # partition | hot | uniform | zipf | counter


WORKLOADS: tuple[Workload, ...] = (
    Workload("read_distinct", "reads, distinct keys per process", 1.0, "partition"),
    Workload(
        "write_distinct", "writes (set), distinct keys per process", 0.0, "partition"
    ),
    Workload("read_hot", "reads of one hot key", 1.0, "hot"),
    Workload("mix95_uniform", "95/5 read/write, uniform keys", 0.95, "uniform"),
    Workload("mix95_zipf", "95/5 read/write, Zipf keys", 0.95, "zipf"),
    Workload("mix50_uniform", "50/50 read/write, uniform keys", 0.5, "uniform"),
    Workload("mix50_zipf", "50/50 read/write, Zipf keys", 0.5, "zipf"),
    Workload("counter", "one counter incremented by every process", 0.0, "counter"),
)

COUNTER_KEY = key_name("cnt", 0)


@dataclass
class MPPeerRun:
    """One peer's multi-process results: workload -> processes -> result."""

    results: dict[str, dict[int, MPResult]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


def proc_counts() -> list[int]:
    """1, 2 and N = os.cpu_count(), without duplicates."""
    return sorted({1, 2, os.cpu_count() or 1})


def _zipf_cum_weights(n: int) -> list[float]:
    return list(itertools.accumulate(1.0 / (i + 1) ** ZIPF_S for i in range(n)))


class MPContext:
    """What every worker of one peer's runs needs (inherited through fork)."""

    def __init__(
        self, peer: Peer, store: Any, keys: list[str], value: bytes, seed: int
    ) -> None:
        self.peer = peer
        self.store = store
        self.keys = keys
        self.value = value
        self.seed = seed
        zipf_order = keys[:]
        random.Random(seed).shuffle(zipf_order)
        self.zipf_keys = zipf_order
        self.zipf_cw = _zipf_cum_weights(len(keys))
        #: The write statement of the mixes (default: the peer's set).
        self.set_stmt = peer.stmts["set"]

    def ops(self, wl: Workload, rank: int, procs: int, n: int) -> Ops:
        """The keys, write flags and values of one worker."""
        rng = random.Random(self.seed * 1000 + rank)
        if wl.dist == "counter":
            keys = [COUNTER_KEY] * n
            return Ops(keys, b"\x01" * n, *write_values(keys, b"\x01" * n))
        if wl.dist == "hot":
            keys = [self.keys[0]] * n
        elif wl.dist == "partition":
            mine = self.keys[rank::procs]
            rng.shuffle(mine)
            keys = (mine * (n // len(mine) + 1))[:n]
        elif wl.dist == "uniform":
            keys = rng.choices(self.keys, k=n)
        else:
            keys = rng.choices(self.zipf_keys, cum_weights=self.zipf_cw, k=n)
        if wl.read_frac >= 1.0:
            flags = bytes(n)
        elif wl.read_frac <= 0.0:
            flags = b"\x01" * n
        else:
            rand = rng.random
            flags = bytes([rand() >= wl.read_frac for _ in range(n)])
        return Ops(keys, flags, *write_values(keys, flags))


#: The two values writes alternate between: both differ from every value
#: the store is filled with (common.distinct_value never holds 0xfd or
#: 0xfe), so no write stores the bytes already there (which a store may
#: skip, as shmdict does).
WRITE_VALUES = (b"\xfe" * 16, b"\xfd" * 16)


@dataclass
class Ops:
    """One worker's operations. Runs alternate between ``vals_even`` and
    ``vals_odd`` so that a worker never writes the value it wrote last to
    the same key, within a run or across runs."""

    keys: list[str]
    flags: bytes
    vals_even: list[bytes]
    vals_odd: list[bytes]


def write_values(
    keys: list[str], flags: bytes, pair: tuple[bytes, bytes] | None = None
) -> tuple[list[bytes], list[bytes]]:
    """For each op, the value a write there stores, in two versions.

    In the first, each key's writes alternate y, z, y, ... In the second,
    a key written an odd number of times starts with z instead; running
    the first, then the second, then the first again, ... keeps every
    key's writes alternating from one run to the next. *pair*: the two
    values (default WRITE_VALUES)."""
    a, b = pair or WRITE_VALUES
    parity: dict[str, int] = {}
    even: list[bytes] = []
    for k, w in zip(keys, flags, strict=True):
        p = parity.get(k, 0)
        even.append(a if p == 0 else b)
        if w:
            parity[k] = p ^ 1
    odd = [
        x if parity.get(k, 0) == 0 else (b if x is a else a)
        for k, x in zip(keys, even, strict=True)
    ]
    return even, odd


def _worker(ctx: MPContext, rank: int, procs: int, barrier: Any, conn: Any) -> None:
    """A worker process: attach once, then run what the parent asks for."""
    try:
        peer = ctx.peer
        handle = peer.attach(ctx.store)
        ns = peer.namespace(handle, ctx.value)
        loops = {
            "set": compile_mix(peer.setup, peer.stmts["get"], ctx.set_stmt),
            "incr": compile_mix(peer.setup, peer.stmts["get"], peer.stmts["incr"]),
        }
        conn.send(("ready",))
        cache: dict[tuple[str, int], Ops] = {}
        runs = 0
        while True:
            msg = conn.recv()
            if msg[0] == "stop":
                break
            wl, n = msg[1], msg[2]
            if (wl.key, n) not in cache:
                cache.clear()
                cache[wl.key, n] = ctx.ops(wl, rank, procs, n)
            ops = cache[wl.key, n]
            vals = ops.vals_odd if runs % 2 else ops.vals_even
            runs += 1
            fn = loops["incr" if wl.dist == "counter" else "set"]
            gc.collect()
            gc.disable()
            barrier.wait(120)
            elapsed, t0 = fn(ops.keys, ops.flags, vals, ns)
            gc.enable()
            conn.send(("ok", t0, t0 + elapsed))
        peer.detach(handle)
    except BaseException as exc:
        tb = traceback.format_exc(limit=4)
        conn.send(("err", f"{type(exc).__name__}: {exc}\n{tb}", 0))
    finally:
        conn.close()


class WorkerPool:
    """``procs`` forked workers attached to one store, reused across runs."""

    def __init__(self, ctx: MPContext, procs: int) -> None:
        self.procs = procs
        self.barrier = _ctx.Barrier(procs)
        self.conns: list[Any] = []
        self.workers: list[Any] = []
        for rank in range(procs):
            parent_end, child_end = _ctx.Pipe()
            w = _ctx.Process(
                target=_worker, args=(ctx, rank, procs, self.barrier, child_end)
            )
            ctx.peer.before_fork(ctx.store)
            try:
                w.start()
            finally:
                ctx.peer.after_fork(ctx.store)
            child_end.close()
            self.conns.append(parent_end)
            self.workers.append(w)
        self._collect("ready")

    def _collect(self, what: str, timeout: float = 300.0) -> list[tuple[Any, ...]]:
        replies: list[tuple[Any, ...]] = []
        errors: list[str] = []
        for conn, w in zip(self.conns, self.workers, strict=True):
            if not conn.poll(timeout):
                errors.append(f"worker timed out waiting for {what}")
                continue
            try:
                msg = conn.recv()
            except EOFError:
                w.join(5)
                errors.append(f"worker died (exit code {w.exitcode})")
                continue
            if msg[0] == "err":
                errors.append(str(msg[1]))
            else:
                replies.append(msg)
        if errors:
            self.barrier.abort()
            self.close()
            raise RuntimeError("; ".join(errors))
        return replies

    def run(self, wl: Workload, n: int) -> tuple[float, float]:
        """One run of ``n`` ops per worker: (aggregate ops/s, ns per op)."""
        for conn in self.conns:
            conn.send(("run", wl, n))
        spans = self._collect("results")
        wall = max(b for _, _, b in spans) - min(a for _, a, _ in spans)
        total = self.procs * n
        return total / (wall / 1e9), wall / total

    def close(self) -> None:
        """Stop the workers."""
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.send(("stop",))
        for w in self.workers:
            w.join(30)
            if w.is_alive():
                w.kill()
                w.join()
        for conn in self.conns:
            conn.close()
        self.conns = []
        self.workers = []


def calibrate(ctx: MPContext, wl: Workload, settings: Settings) -> int:
    """Ops per worker so that a one-process run lasts about mp_target_ns.

    Timed in this process, on the store handle it created.
    """
    peer = ctx.peer
    write = peer.stmts["incr" if wl.dist == "counter" else "set"]
    fn = compile_mix(peer.setup, peer.stmts["get"], write)
    ns = peer.namespace(ctx.store, ctx.value)
    probe = 200
    ops = ctx.ops(wl, 0, 1, probe)
    per = fn(ops.keys, ops.flags, ops.vals_even, ns)[0] / probe
    if per * 2000 < settings.mp_target_ns:
        probe = 2000
        ops = ctx.ops(wl, 0, 1, probe)
        per = fn(ops.keys, ops.flags, ops.vals_even, ns)[0] / probe
    return int(max(100, min(2_000_000, settings.mp_target_ns / max(per, 1.0))))


def measure_peer_mp(
    peer: Peer,
    settings: Settings,
    nkeys: int,
    workloads: Sequence[Workload] = WORKLOADS,
) -> MPPeerRun:
    """Every workload at 1, 2 and N processes on ``nkeys`` keys (in a child).

    The worker pools of every process count stay up side by side, and the
    repetitions alternate between them (1, 2, N, 1, 2, N, ...), so that a
    change in the machine's load hits every process count alike. A workload
    that fails (a worker raised or died) is reported as failed, and the
    store is rebuilt before the next one, since the failure may have left
    it damaged.
    """
    keys = [key_name("key", i) for i in range(nkeys)]
    value = b"x" * 16
    out = MPPeerRun()
    ctx = _new_context(peer, keys, value, settings)
    pools: dict[int, WorkerPool] = {}
    try:
        todo: list[tuple[Workload, int]] = []
        for wl in workloads:
            if wl.dist == "counter" and not peer.shared:
                out.errors[wl.key] = "not shared: each process counts on its own copy"
                continue
            todo.append((wl, calibrate(ctx, wl, settings)))
        pools = _open_pools(ctx)
        for wl, n in todo:
            try:
                out.results[wl.key] = _measure(ctx, pools, wl, n, settings)
            except Exception as exc:
                first = short_error(exc)
                progress(f"    {peer.label:28} {wl.label:42} FAILED {first}")
                out.errors[wl.key] = f"failed {first}"
                _close_pools(pools)
                peer.destroy(ctx.store)
                ctx = _new_context(peer, keys, value, settings)
                pools = _open_pools(ctx)
    finally:
        _close_pools(pools)
        peer.destroy(ctx.store)
    return out


def _open_pools(ctx: MPContext) -> dict[int, WorkerPool]:
    pools: dict[int, WorkerPool] = {}
    try:
        for procs in proc_counts():
            pools[procs] = WorkerPool(ctx, procs)
    except BaseException:
        _close_pools(pools)
        raise
    return pools


def _close_pools(pools: dict[int, WorkerPool]) -> None:
    for pool in pools.values():
        pool.close()
    pools.clear()


def _new_context(
    peer: Peer, keys: list[str], value: bytes, settings: Settings
) -> MPContext:
    store = peer.create(Dataset(len(keys), 16), extra_keys=16)
    try:
        # each key its own value object, as in perop.py
        peer.populate_values(
            store, [(k, distinct_value(i, len(value))) for i, k in enumerate(keys)]
        )
        peer.put(store, COUNTER_KEY, 0)
    except BaseException:
        peer.destroy(store)
        raise
    return MPContext(peer, store, keys, value, settings.seed)


def _measure(
    ctx: MPContext,
    pools: dict[int, WorkerPool],
    wl: Workload,
    n: int,
    settings: Settings,
) -> dict[int, MPResult]:
    peer, store = ctx.peer, ctx.store
    tps: dict[int, list[float]] = {p: [] for p in pools}
    nss: dict[int, list[float]] = {p: [] for p in pools}
    checks: dict[int, str] = dict.fromkeys(pools, "")
    for _ in range(settings.mp_reps):
        for procs, pool in pools.items():
            if wl.dist == "counter":
                peer.put(store, COUNTER_KEY, 0)
            try:
                tp, ns = pool.run(wl, n)
            except Exception as exc:
                raise RuntimeError(f"with {procs} processes: {exc}") from exc
            tps[procs].append(tp)
            nss[procs].append(ns)
            if wl.dist == "counter":
                got = peer.read_int(store, COUNTER_KEY)
                if got != procs * n:
                    checks[procs] = (
                        f"lost updates: counter reads {got}, expected {procs * n}"
                    )
    out: dict[int, MPResult] = {}
    for procs in pools:
        res = MPResult(procs, n, tps[procs], nss[procs], checks[procs])
        out[procs] = res
        progress(
            f"    {peer.label:28} {wl.label:42} P={procs} "
            f"{res.throughput / 1e6:8.3f} Mops/s {res.ns:9.1f} ns/op"
            + (f"  ({res.check})" if res.check else "")
        )
    return out

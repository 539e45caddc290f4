"""shmdict's memory figures: capacity, capacity under churn, creation cost.

* Capacity: a fresh 64 MiB dict is filled with 16-byte keys and 16-byte
  values (then, separately, 100-byte keys and 1 KiB values) until ``set``
  raises ``shmdict.NoMemoryError``; bytes per entry = file size / entries.
* Churn: a fresh 64 MiB dict is filled with values of random size (1 B to
  4 KiB, log-uniform), then takes random deletes, overwrites with a new
  size and inserts while near full (random live keys are deleted whenever a
  set finds it full); then it is emptied by ``flush_all()`` or by deleting
  every key, and refilled as above. The
  refill count over the fresh count says whether fragmentation or leaks
  cost capacity.
* ``shmdict.new(name, 16 GiB)``: wall time (median of several), and the
  growth of the process's RSS and of the file's allocated blocks.
"""

from __future__ import annotations

import math
import os
import random
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

from common import Settings, progress, short_error
from peers.shmdict_peer import unique_name

MIB = 1 << 20
CAP_SIZE = 64 * MIB
SHAPES: tuple[tuple[int, int], ...] = ((16, 16), (100, 1024))


@dataclass
class MemoryResults:
    """Everything :func:`measure_memory` found (ints, floats or errors)."""

    capacity: dict[str, int | str] = field(default_factory=dict)  # "16+16" -> n
    churn: dict[str, dict[str, int | str]] = field(default_factory=dict)
    churn_ops: int = 0
    new16: dict[str, Any] = field(default_factory=dict)


def _no_memory_error() -> type[BaseException]:
    import shmdict

    err = getattr(shmdict, "NoMemoryError", None)
    if err is None:
        from shmdict.errors import NoMemoryError as err
    return err  # type: ignore[no-any-return]


def fill(d: Any, klen: int, vlen: int, start: int = 0) -> int:
    """Set keys of ``klen`` bytes to ``vlen``-byte values until it is full."""
    nomem = _no_memory_error()
    value = b"v" * vlen
    s = d.set
    i = start
    fmt = f"{{:0{klen}d}}"
    try:
        while True:
            s(fmt.format(i), value)
            i += 1
    except nomem:
        pass
    return i - start


def churn(d: Any, ops: int, seed: int) -> int:
    """Fill with random-size values, then churn near full; return live count.

    Values are 1 B..4 KiB, log-uniform. After the fill, each op deletes a
    random live key (40%), overwrites one with a value of a new random size
    (30%) or inserts a new key (30%); whenever a set finds the dict full,
    16 random live keys are deleted.
    """
    nomem = _no_memory_error()
    rng = random.Random(seed)
    live: list[str] = []
    where: dict[str, int] = {}
    next_id = 0
    max_log = math.log(4096.0)

    def size() -> int:
        return int(math.exp(rng.uniform(0.0, max_log)))

    def forget(k: str) -> None:
        i = where.pop(k)
        last = live.pop()
        if last != k:
            live[i] = last
            where[last] = i

    def evict(n: int) -> None:
        for _ in range(min(n, len(live))):
            victim = live[rng.randrange(len(live))]
            d.delete(victim)
            forget(victim)

    while True:  # fill until full
        k = f"churn:{next_id}"
        try:
            d.set(k, b"c" * size())
        except nomem:
            break
        where[k] = len(live)
        live.append(k)
        next_id += 1
    for _ in range(ops):
        r = rng.random()
        if r < 0.4 and live:
            evict(1)
            continue
        if r < 0.7 and live:
            k = live[rng.randrange(len(live))]
        else:
            k = f"churn:{next_id}"
            next_id += 1
        try:
            d.set(k, b"c" * size())
        except nomem:
            evict(16)
            continue
        if k not in where:
            where[k] = len(live)
            live.append(k)
    return len(live)


def _rss_kib() -> dict[str, int]:
    out: dict[str, int] = {}
    with open("/proc/self/status") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "RssShmem", "RssAnon", "RssFile"):
                out[name] = int(rest.split()[0])
    return out


def measure_new16(reps: int) -> dict[str, Any]:
    """Time shmdict.new(name, 16 GiB) and what it costs in memory."""
    import shmdict

    size = 16 << 30
    times: list[int] = []
    res: dict[str, Any] = {"size": size}
    for i in range(reps):
        name = unique_name("bench_new16")
        before = _rss_kib()
        t0 = time.perf_counter_ns()
        d = shmdict.new(name, size)
        t1 = time.perf_counter_ns()
        try:
            after = _rss_kib()
            times.append(t1 - t0)
            if i == 0:
                st = os.stat(d.path)
                res["file_size"] = st.st_size
                res["file_alloc_kib"] = st.st_blocks * 512 // 1024
                res["rss_growth_kib"] = after["VmRSS"] - before["VmRSS"]
                res["rss_shmem_growth_kib"] = after.get("RssShmem", 0) - before.get(
                    "RssShmem", 0
                )
                d.set("key:000000000000", b"x" * 16)
                one = _rss_kib()
                res["rss_growth_after_set_kib"] = one["VmRSS"] - before["VmRSS"]
                res["file_alloc_after_set_kib"] = (
                    os.stat(d.path).st_blocks * 512 // 1024
                )
                t2 = time.perf_counter_ns()
                d.get("key:000000000000")
                res["first_get_ns"] = time.perf_counter_ns() - t2
        finally:
            t3 = time.perf_counter_ns()
            d.close()
            if i == 0:
                res["close_ns"] = time.perf_counter_ns() - t3
    res["times_ns"] = times
    res["median_ns"] = statistics.median(times)
    return res


def measure_memory(settings: Settings) -> MemoryResults:
    """All memory figures (meant to run in a child process)."""
    import shmdict

    out = MemoryResults()
    out.churn_ops = 50_000 if settings.quick else 400_000
    for klen, vlen in SHAPES:
        label = f"{klen}+{vlen}"
        try:
            d = shmdict.new(unique_name("bench_cap"), CAP_SIZE)
            try:
                out.capacity[label] = fill(d, klen, vlen)
            finally:
                d.close()
        except Exception as exc:
            out.capacity[label] = f"failed: {short_error(exc)}"
        progress(f"    capacity {label} B in 64 MiB: {out.capacity[label]}")

    for how in ("flush_all", "delete_all"):
        res: dict[str, int | str] = {}
        for klen, vlen in SHAPES:
            label = f"{klen}+{vlen}"
            try:
                d = shmdict.new(unique_name("bench_churn"), CAP_SIZE)
                try:
                    res[f"{label} live"] = churn(d, out.churn_ops, settings.seed)
                    if how == "flush_all":
                        d.flush_all()
                    else:
                        for k in d.get_keys():
                            d.delete(k)
                    left = len(d)
                    res[label] = fill(d, klen, vlen)
                    if left:
                        res[f"{label} left"] = left
                finally:
                    d.close()
            except Exception as exc:
                res[label] = f"failed: {short_error(exc)}"
            progress(f"    churn + {how}, refill {label}: {res[label]}")
        out.churn[how] = res

    try:
        out.new16 = measure_new16(3 if settings.quick else 7)
        progress(
            f"    new(16 GiB): median {out.new16['median_ns'] / 1e6:.3f} ms, "
            f"RSS +{out.new16['rss_growth_kib']} KiB"
        )
    except Exception as exc:
        out.new16 = {"error": f"failed: {short_error(exc)}"}
        progress(f"    new(16 GiB): {out.new16['error']}")
    return out

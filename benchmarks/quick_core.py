"""A few seconds' look at shmdict's core per-op cost beside a plain dict.

    python benchmarks/quick_core.py

1k keys of 16 bytes, 16-byte values. For each operation it times a loop of
``for k in keys: <op>`` with ``time.perf_counter_ns`` (methods bound once,
GC off), 7 times, and prints the median ns per op, raw and net of the same
loop with an empty body (its fastest run), next to the plain dict's
equivalent and the net ratio. Overwrites alternate between two values pass
by pass, so each one changes the stored bytes. set and delete are timed both as method
calls (d.set, d.delete) and in the dict's own subscript spelling. set (new
key) and delete run in batches of the 1k keys, each undone untimed (deleted
again, put back). "set (growing)" inserts GROW new keys into a fresh dict of
256 MiB, the path where the heap and index take pages they never had (each
reserved in the filesystem first), against a plain dict growing from empty.
For the full comparison with the other peers, run benchmarks/bench.py.
"""

from __future__ import annotations

import gc
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPS = 7
NKEYS = 1000
LOOPS = 100  # passes over the key list per repetition (100k ops)
GROW = 200_000  # new keys per repetition of the growing row


def _import_shmdict() -> object:
    try:
        import shmdict

        if hasattr(shmdict, "new"):
            return shmdict
    except ImportError:
        pass
    for name in [m for m in sys.modules if m.split(".")[0] == "shmdict"]:
        del sys.modules[name]
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
    import shmdict

    return shmdict


def _median_ns(
    body: Callable[[list[str]], None],
    keys: list[str],
    pick: Callable[..., float] = statistics.median,
) -> float:
    """Median (or ``pick``) over REPS of the ns per op of body(keys)."""
    ops = keys * LOOPS
    times = []
    for _ in range(REPS):
        gc.disable()
        t0 = time.perf_counter_ns()
        body(ops)
        t1 = time.perf_counter_ns()
        gc.enable()
        times.append(t1 - t0)
    return pick(times) / len(ops)


def _batched_ns(
    body: Callable[[list[str]], None],
    undo: Callable[[list[str]], None],
    keys: list[str],
) -> float:
    """Median over REPS of the ns per op of body(keys), run LOOPS times per
    repetition with undo(keys) untimed after each (set new key, delete)."""
    times = []
    for _ in range(REPS):
        gc.disable()
        total = 0
        for _ in range(LOOPS):
            t0 = time.perf_counter_ns()
            body(keys)
            total += time.perf_counter_ns() - t0
            undo(keys)
        gc.enable()
        times.append(total)
    return statistics.median(times) / (len(keys) * LOOPS)


def _growing_ns(shmdict: object, n: int) -> tuple[float, float]:
    """Median ns per insert of n new keys into a fresh shmdict and into a
    fresh plain dict, alternated repetition by repetition."""
    keys = [f"grow:{i:011d}" for i in range(n)]
    vals = [f"val:{i:012d}" for i in range(n)]
    pairs = list(zip(keys, vals, strict=True))
    s_times, p_times = [], []
    for r in range(REPS):
        gc.disable()
        d = shmdict.new(f"quick_grow_{os.getpid()}_{r}", 256 << 20)  # type: ignore[attr-defined]
        try:
            s = d.set
            t0 = time.perf_counter_ns()
            for k, v in pairs:
                s(k, v)
            s_times.append(time.perf_counter_ns() - t0)
        finally:
            d.close()
        p: dict[str, str] = {}
        t0 = time.perf_counter_ns()
        for k, v in pairs:
            p[k] = v
        p_times.append(time.perf_counter_ns() - t0)
        gc.enable()
    return statistics.median(s_times) / n, statistics.median(p_times) / n


def main() -> int:
    shmdict = _import_shmdict()
    rng = random.Random(1)
    keys = [f"key:{i:012d}" for i in range(NKEYS)]
    miss = [f"mis:{i:012d}" for i in range(NKEYS)]
    ctrs = [f"ctr:{i:012d}" for i in range(NKEYS)]
    fresh = [f"new:{i:012d}" for i in range(NKEYS)]
    for lst in (keys, miss, ctrs, fresh):
        rng.shuffle(lst)
    v = b"x" * 16
    v2 = b"y" * 16
    plain: dict[str, object] = dict.fromkeys(keys, v)
    plain.update(dict.fromkeys(ctrs, 0))
    d = shmdict.new(f"quick_core_{os.getpid()}", 16 << 20)  # type: ignore[attr-defined]
    try:
        for k in keys:
            d.set(k, v)
        for k in ctrs:
            d.set(k, 0)

        def empty(ks: list[str]) -> None:
            for _k in ks:
                pass

        def s_get(ks: list[str]) -> None:
            g = d.get
            for k in ks:
                g(k)

        def s_set(ks: list[str]) -> None:
            s = d.set
            for k in ks:
                s(k, v)

        # Overwrites alternate between two values pass by pass, so that no
        # write stores the bytes already there (shmdict skips such a write).
        assert LOOPS % 2 == 0
        passes = [(keys, v2), (keys, v)] * (LOOPS // 2)

        def s_over(ks: list[str]) -> None:
            s = d.set
            for pks, val in passes:
                for k in pks:
                    s(k, val)

        def s_over_item(ks: list[str]) -> None:
            o = d
            for pks, val in passes:
                for k in pks:
                    o[k] = val  # type: ignore[index]

        def s_delitem(ks: list[str]) -> None:
            o = d
            for k in ks:
                del o[k]  # type: ignore[attr-defined]

        def s_del(ks: list[str]) -> None:
            dl = d.delete
            for k in ks:
                dl(k)

        def s_incr(ks: list[str]) -> None:
            inc = d.incr
            for k in ks:
                inc(k, 1)

        def p_get(ks: list[str]) -> None:
            g = plain.get
            for k in ks:
                g(k)

        def p_set(ks: list[str]) -> None:
            p = plain
            for k in ks:
                p[k] = v

        def p_over(ks: list[str]) -> None:
            p = plain
            for pks, val in passes:
                for k in pks:
                    p[k] = val

        def p_del(ks: list[str]) -> None:
            p = plain
            for k in ks:
                del p[k]

        def p_rmw(ks: list[str]) -> None:
            p = plain
            g = p.get
            for k in ks:
                p[k] = g(k, 0) + 1  # type: ignore[operator]

        loop = _median_ns(empty, keys, min)  # fixed overhead: noise only adds
        # The dict's set and delete, each timed once for both spellings.
        p_set_ns = _median_ns(p_over, keys)
        p_del_ns = _batched_ns(p_del, p_set, keys)
        rows = [
            ("get (hit)", _median_ns(s_get, keys), "d.get(k)", _median_ns(p_get, keys)),
            (
                "get (miss)",
                _median_ns(s_get, miss),
                "d.get(k)",
                _median_ns(p_get, miss),
            ),
            ("set (overwrite)", _median_ns(s_over, keys), "d[k] = v", p_set_ns),
            ("d[k] = v (overwr)", _median_ns(s_over_item, keys), "d[k] = v", p_set_ns),
            (
                "set (new key)",
                _batched_ns(s_set, s_del, fresh),
                "d[k] = v",
                _batched_ns(p_set, p_del, fresh),
            ),
            ("delete", _batched_ns(s_del, s_set, keys), "del d[k]", p_del_ns),
            ("del d[k]", _batched_ns(s_delitem, s_set, keys), "del d[k]", p_del_ns),
            (
                "incr",
                _median_ns(s_incr, ctrs),
                "d[k] = d.get(k, 0) + 1",
                _median_ns(p_rmw, ctrs),
            ),
        ]
    finally:
        d.close()
    grow_s, grow_p = _growing_ns(shmdict, GROW)
    rows.append(("set (growing)", grow_s, "d[k] = v (from empty)", grow_p))
    print(
        f"shmdict core ops, {NKEYS} keys x 16 B values, median of {REPS} runs of "
        f"{NKEYS * LOOPS:,} ops; ns/op raw (net of the {loop:.1f} ns empty loop)"
    )
    print(f"{'op':16} {'shmdict':>17}   {'plain dict':>17} {'':24} {'ratio (net)':>11}")
    for name, s, pname, p in rows:
        sn, pn = s - loop, p - loop
        print(
            f"{name:16} {s:7.1f} ({sn:6.1f})   {p:7.1f} ({pn:6.1f}) {pname:24} "
            f"{sn / pn if pn > 0 else float('nan'):10.2f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

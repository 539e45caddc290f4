"""A few seconds' look at shmdict's core per-op cost beside a plain dict.

    python benchmarks/quick_core.py

1k keys of 16 bytes, 16-byte values (each key its own value object, in
the dict as in shmdict). For each operation it times a loop of
``for k in keys: <op>`` with ``time.perf_counter_ns`` (methods bound once,
GC off), 7 times, and prints the median ns per op, raw and net of the same
loop with an empty body (its fastest run), next to the plain dict's
equivalent. The two sides are paired: each repetition times shmdict and
the dict back to back (shmdict first in even repetitions, the dict first in
odd ones), and the ratio printed is the median of the per-pair net ratios,
so that a change in the machine's load between repetitions hits both sides
of a pair alike instead of skewing one side's median. Overwrites alternate
between two values pass by pass, so each one changes the stored bytes. set
and delete are timed both as method calls (d.set, d.delete) and in the
dict's own subscript spelling. set (new
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


Rep = Callable[[], float]  # one repetition: ns per op


def _loop(body: Callable[[list[str]], None], keys: list[str]) -> Rep:
    """One repetition of body(keys * LOOPS): ns per op."""
    ops = keys * LOOPS

    def rep() -> float:
        gc.disable()
        t0 = time.perf_counter_ns()
        body(ops)
        t1 = time.perf_counter_ns()
        gc.enable()
        return (t1 - t0) / len(ops)

    return rep


def _batched(
    body: Callable[[list[str]], None],
    undo: Callable[[list[str]], None],
    keys: list[str],
) -> Rep:
    """One repetition of body(keys), run LOOPS times with undo(keys)
    untimed after each (set new key, delete): ns per op."""

    def rep() -> float:
        gc.disable()
        total = 0
        for _ in range(LOOPS):
            t0 = time.perf_counter_ns()
            body(keys)
            total += time.perf_counter_ns() - t0
            undo(keys)
        gc.enable()
        return total / (len(keys) * LOOPS)

    return rep


def _paired(s_rep: Rep, p_rep: Rep, loop: float) -> tuple[float, float, float]:
    """REPS pairs, shmdict and dict back to back (the order alternating):
    the median raw ns/op of each side and the median of the per-pair net
    ratios (net: minus the empty loop's ``loop`` ns)."""
    s_ns, p_ns, ratios = [], [], []
    for r in range(REPS):
        if r % 2 == 0:
            s, p = s_rep(), p_rep()
        else:
            p, s = p_rep(), s_rep()
        s_ns.append(s)
        p_ns.append(p)
        if p - loop > 0:
            ratios.append((s - loop) / (p - loop))
    ratio = statistics.median(ratios) if ratios else float("nan")
    return statistics.median(s_ns), statistics.median(p_ns), ratio


def _growing(shmdict: object, n: int, loop: float) -> tuple[float, float, float]:
    """n new keys inserted into a fresh shmdict and into a fresh plain dict,
    paired as _paired does: medians and the median per-pair ratio."""
    keys = [f"grow:{i:011d}" for i in range(n)]
    vals = [f"val:{i:012d}" for i in range(n)]
    pairs = list(zip(keys, vals, strict=True))
    reps = iter(range(2 * REPS))

    def s_rep() -> float:
        gc.disable()
        d = shmdict.new(f"quick_grow_{os.getpid()}_{next(reps)}", 256 << 20)  # type: ignore[attr-defined]
        try:
            s = d.set
            t0 = time.perf_counter_ns()
            for k, v in pairs:
                s(k, v)
            return (time.perf_counter_ns() - t0) / n
        finally:
            d.close()
            gc.enable()

    def p_rep() -> float:
        gc.disable()
        p: dict[str, str] = {}
        t0 = time.perf_counter_ns()
        for k, v in pairs:
            p[k] = v
        t1 = time.perf_counter_ns()
        gc.enable()
        return (t1 - t0) / n

    return _paired(s_rep, p_rep, loop)


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
    # each key its own value object (bytes of i % 251: never x or y)
    vals = {k: bytes([i % 251]) * 16 for i, k in enumerate(keys)}
    plain: dict[str, object] = dict(vals)
    plain.update(dict.fromkeys(ctrs, 0))
    d = shmdict.new(f"quick_core_{os.getpid()}", 16 << 20)  # type: ignore[attr-defined]
    try:
        for k in keys:
            d.set(k, vals[k])
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

        # fixed overhead: noise only adds to it, so its fastest run
        loop = min(_loop(empty, keys)() for _ in range(REPS))
        p_over_rep = _loop(p_over, keys)
        p_del_rep = _batched(p_del, p_set, keys)
        rows = [
            (
                "get (hit)",
                _paired(_loop(s_get, keys), _loop(p_get, keys), loop),
                "d.get(k)",
            ),
            (
                "get (miss)",
                _paired(_loop(s_get, miss), _loop(p_get, miss), loop),
                "d.get(k)",
            ),
            (
                "set (overwrite)",
                _paired(_loop(s_over, keys), p_over_rep, loop),
                "d[k] = v",
            ),
            (
                "d[k] = v (overwr)",
                _paired(_loop(s_over_item, keys), p_over_rep, loop),
                "d[k] = v",
            ),
            (
                "set (new key)",
                _paired(
                    _batched(s_set, s_del, fresh), _batched(p_set, p_del, fresh), loop
                ),
                "d[k] = v",
            ),
            (
                "delete",
                _paired(_batched(s_del, s_set, keys), p_del_rep, loop),
                "del d[k]",
            ),
            (
                "del d[k]",
                _paired(_batched(s_delitem, s_set, keys), p_del_rep, loop),
                "del d[k]",
            ),
            (
                "incr",
                _paired(_loop(s_incr, ctrs), _loop(p_rmw, ctrs), loop),
                "d[k] = d.get(k, 0) + 1",
            ),
        ]
    finally:
        d.close()
    rows.append(
        ("set (growing)", _growing(shmdict, GROW, loop), "d[k] = v (from empty)")
    )
    print(
        f"shmdict core ops, {NKEYS} keys x 16 B values, {REPS} pairs of runs of "
        f"{NKEYS * LOOPS:,} ops each (shmdict and dict back to back, order "
        f"alternating); median ns/op raw (net of the {loop:.1f} ns empty loop); "
        "ratio: median of the per-pair net ratios"
    )
    print(f"{'op':16} {'shmdict':>17}   {'plain dict':>17} {'':24} {'ratio (net)':>11}")
    for name, (s, p, ratio), pname in rows:
        sn, pn = s - loop, p - loop
        print(
            f"{name:16} {s:7.1f} ({sn:6.1f})   {p:7.1f} ({pn:6.1f}) {pname:24} "
            f"{ratio:10.2f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What a cache hit costs through each framework integration, beside the bare
``d.get`` on the same dict.

    python benchmarks/integrations.py

One dict, one handle: Django's ``SharedMemoryCache`` and cachelib's
(``key_prefix=":1:"``, so both make the same stored keys) and the bare
handle all read the same 1k entries. Two rows: a native value (a 16-byte
str, returned as stored) and a pickled one (a small list, unpickled on every
hit). Each repetition times ``for k in keys: get(k)`` over 100 passes for
every contender in turn (alternated, so drift hits them all alike), with
GC off; the figure is the median ns per get over the repetitions, raw (the
loop included), and the overhead is the integration's median less the
bare one's. One run; needs Django and cachelib (skips what is missing).
"""

from __future__ import annotations

import gc
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import shmdict

REPS = 15
NKEYS = 1000
LOOPS = 100
SIZE = 16 << 20


def _time(get: Callable[[str], Any], ops: list[str]) -> float:
    gc.disable()
    t0 = time.perf_counter_ns()
    for k in ops:
        get(k)
    t1 = time.perf_counter_ns()
    gc.enable()
    return (t1 - t0) / len(ops)


def main() -> int:
    name = f"bench-integrations-{os.getpid()}"
    opts = {"size": SIZE, "evict": True}
    contenders: dict[str, Callable[[str], Any]] = {}
    handle: shmdict.SharedDict | None = None
    try:
        from shmdict.contrib.django import SharedMemoryCache as DjangoCache

        dj = DjangoCache(name, {"OPTIONS": opts, "TIMEOUT": None})
        handle = dj._dict
        contenders["django cache.get"] = dj.get
    except ImportError:
        print("Django is not installed: no Django row")
    try:
        from shmdict.contrib.cachelib import SharedMemoryCache as CachelibCache

        cl = CachelibCache(name, key_prefix=":1:", default_timeout=0, **opts)
        handle = cl._dict
        contenders["cachelib get"] = cl.get
    except ImportError:
        print("cachelib is not installed: no cachelib row")
    if handle is None:
        return 1
    d = handle
    try:
        keys = [f"key:{i:012d}" for i in range(NKEYS)]
        rows = {
            "native (16-byte str)": ("s", lambda i: f"value:{i:010d}"),
            "pickled (list of 3 ints)": ("p", lambda i: [i, i + 1, i + 2]),
        }
        print(
            f"{NKEYS} keys x {LOOPS} passes, median of {REPS} alternated "
            "repetitions, ns per get (loop included)"
        )
        for row, (tag, make_value) in rows.items():
            stored = [f":1:{tag}{k}" for k in keys]
            if "django cache.get" in contenders:
                for i, k in enumerate(keys):
                    dj.set(f"{tag}{k}", make_value(i))
            else:
                for i, k in enumerate(keys):
                    cl.set(f"{tag}{k}", make_value(i))
            plain = [f"{tag}{k}" for k in keys] * LOOPS
            bare_ops = stored * LOOPS
            times: dict[str, list[float]] = {"bare d.get": []}
            times.update({c: [] for c in contenders})
            for _ in range(REPS):
                times["bare d.get"].append(_time(d.get, bare_ops))
                for c, get in contenders.items():
                    times[c].append(_time(get, plain))
            med = {c: statistics.median(t) for c, t in times.items()}
            base = med["bare d.get"]
            print(f"\n{row}")
            print(f"  {'bare d.get':18} {base:8.0f} ns")
            for c in contenders:
                m = med[c]
                print(
                    f"  {c:18} {m:8.0f} ns   overhead {m - base:+7.0f} ns "
                    f"({m / base:.1f}x)"
                )
    finally:
        d.close()
        shmdict.remove(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())

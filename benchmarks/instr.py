"""Instructions per operation, counted by valgrind's callgrind.

    python benchmarks/instr.py [-n N] [--ops get_hit,set_new,...]

For each op this runs the same Python program twice under
``valgrind --tool=callgrind``, once doing N operations and once 2N, and
reports

    per op = (Ir(2N) - Ir(N)) / N

so interpreter start-up, imports and the fill of the dict cancel out.
Two figures per op:

* ``total``: every instruction of the process (Python's loop included);
* ``core``: only the instructions inside the public C entry point of that
  op (``--toggle-collect=<fn>``, callees included), i.e. the C core's
  own cost, the figure a re-partition of csrc/ must keep.

Instruction counts do not depend on the machine's load, so two runs of the
same build give the same figures to a few instructions.

The ops (1000 keys of 16 bytes, 32-byte values, one stripe, built as
the extension that ``setup.py build_ext --inplace`` leaves in src/, or
the package under ``--src DIR``). Figures in this repository are of the
release build (no SHMDICT_DEV: -O2 -DNDEBUG), the one users get:

    python setup.py -q build_ext --inplace --force
    python benchmarks/instr.py

* get_hit: ``d.get(k)`` of a present key. Every value is stored with a
  one-hour TTL. (Before the near cache kept values with an expiry, this
  defeated it, so each get reached ``sd_get``; now it is a near-cache hit:
  see get_uncached for the lookup.)
* get_uncached: ``get_hit`` through a handle with ``near_cache=0``: every
  get is a lookup in the core and a new object.
* get_miss: ``d.get(k)`` of a key never stored.
* set_over: ``d.set(k, v)`` of a present key, same size (overwrite); each
  pass over the 1000 keys stores the other of two values, so every counted
  overwrite changes the stored bytes (an overwrite with the bytes already
  there is a shortcut; before 2026-12-03 this row measured that one).
* set_new: ``d.set(k, v)`` of a key not present: the N (2N) new keys are
  distinct and the dict (64 MiB) holds them all without eviction.
* delete: ``d.delete(k)`` of a present key (the keys are stored first,
  in the fill; the fill is of 2N keys in both runs so it cancels).
* incr: ``d.incr(k, 1)`` of an integer counter.

Rows of the per-handle near cache (the binding's cache of values it
returned; ``core`` there counts the core calls a get makes, sd_get and
the near cache's checks):

* near_hit: ``d.get(k)`` over 1000 keys with no TTL, read before.
* near_ttl: the same with every value given a one-hour TTL.
* near_moved: ``d.incr("ctr", 1); d.get(k)``: every get follows a write
  to another key of the same stripe, so the stripe's sequence counter has
  always moved (subtract the incr row for the get's share).
* dict_get: ``pd.get(k)`` of a plain dict of the same 1000 keys, for
  scale (its ``core`` is 0).
* near_10k: ``d.get(k)`` over 10,000 keys (no TTL), each read twice in
  the fill, visited in a scattered order.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# op -> (public C functions it reaches, comma-separated; fill code; loop body)
NEAR_FNS = "sd_get,sd_still_current,sd_near_check"
OPS: dict[str, tuple[str, str, str]] = {
    "get_hit": (
        "sd_get",
        "for k in keys: d.set(k, val, 3600)",
        "d.get(keys[i % 1000])",
    ),
    "get_uncached": (
        "sd_get",
        "for k in keys: d.set(k, val, 3600)\ndn = shmdict.get(name, near_cache=0)",
        "dn.get(keys[i % 1000])",
    ),
    "get_miss": ("sd_get", "", "d.get(miss[i % 1000])"),
    "set_over": (
        "sd_set_ex",
        "for k in keys: d.set(k, val)",
        "d.set(keys[i % 1000], val2 if (i // 1000) & 1 else val)",
    ),
    "set_new": ("sd_set_ex", "", "d.set(fresh[i], val)"),
    "delete": (
        "sd_delete",
        "for k in fresh: d.set(k, val)",
        "d.delete(fresh[i])",
    ),
    "incr": ("sd_incr_init", "for k in keys: d.set(k, 0)", "d.incr(keys[i % 1000], 1)"),
    "near_hit": (
        NEAR_FNS,
        "for k in keys: d.set(k, val)\nfor k in keys * 2: d.get(k)",
        "d.get(keys[i % 1000])",
    ),
    "near_ttl": (
        NEAR_FNS,
        "for k in keys: d.set(k, val, 3600)\nfor k in keys * 2: d.get(k)",
        "d.get(keys[i % 1000])",
    ),
    "near_moved": (
        NEAR_FNS + ",sd_incr_init",
        "d['ctr'] = 0\nfor k in keys: d.set(k, val)\nfor k in keys * 2: d.get(k)",
        "d.incr('ctr', 1); d.get(keys[i % 1000])",
    ),
    "dict_get": (
        "sd_get",
        "pd = {k: bytes(val) for k in keys}",
        "pd.get(keys[i % 1000])",
    ),
    "near_10k": (
        NEAR_FNS,
        "for k in k10: d.set(k, val)\nfor k in k10 * 2: d.get(k)",
        "d.get(k10[(i * 7919) % 10000])",
    ),
}

PROGRAM = """
import sys, os
sys.path.insert(0, {src!r})
import shmdict
n, big = int(sys.argv[1]), int(sys.argv[2])
name = "instr-%d" % os.getpid()
d = shmdict.new(name, 64 << 20, stripes=1)
keys = ["key-%012d" % i for i in range(1000)]
miss = ["mis-%012d" % i for i in range(1000)]
fresh = ["new-%012d" % i for i in range(big)]
k10 = ["k10-%012d" % i for i in range(10000)]
val = b"v" * 32
val2 = b"w" * 32
{fill}
for i in range(n):
    {body}
d.close()  # the owner handle removes the file
"""


def count(op: str, n: int, big: int, core: bool, src: str) -> int:
    fn, fill, body = OPS[op]
    prog = PROGRAM.format(src=src, fill=fill, body=body)
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "cg.out")
        cmd = [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out}",
            "--dump-line=no",
        ]
        if core:
            cmd += [f"--toggle-collect={f}" for f in fn.split(",")]
        env = dict(os.environ, SHMDICT_STRIPES="", PYTHONHASHSEED="0")
        cmd += [sys.executable, "-c", prog, str(n), str(big)]
        subprocess.run(cmd, check=True, env=env, capture_output=True)
        with open(out) as f:
            text = f.read()
    m = re.search(r"^(?:totals|summary): (\d+)", text, re.M)
    assert m, "no totals in callgrind output"
    return int(m.group(1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=2000)
    ap.add_argument("--ops", default=",".join(OPS))
    ap.add_argument("--core-only", action="store_true")
    ap.add_argument(
        "--src",
        default=os.path.join(ROOT, "src"),
        help="directory holding the shmdict package with its built _core",
    )
    a = ap.parse_args()
    n = a.n
    print(f"{'op':10} {'core Ir/op':>11} {'total Ir/op':>12}   (N={n})")
    for op in a.ops.split(","):
        c = (
            count(op, 2 * n, 2 * n, True, a.src) - count(op, n, 2 * n, True, a.src)
        ) / n
        if a.core_only:
            t = float("nan")
        else:
            t = (
                count(op, 2 * n, 2 * n, False, a.src)
                - count(op, n, 2 * n, False, a.src)
            ) / n
        print(f"{op:10} {c:11.1f} {t:12.1f}", flush=True)


if __name__ == "__main__":
    main()

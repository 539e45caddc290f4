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
  one-hour TTL, which defeats the binding's per-handle near cache (it
  keeps only values with no expiry), so each get reaches ``sd_get``.
* get_miss: ``d.get(k)`` of a key never stored.
* set_over: ``d.set(k, v)`` of a present key, same size (overwrite).
* set_new: ``d.set(k, v)`` of a key not present: the N (2N) new keys are
  distinct and the dict (64 MiB) holds them all without eviction.
* delete: ``d.delete(k)`` of a present key (the keys are stored first,
  in the fill; the fill is of 2N keys in both runs so it cancels).
* incr: ``d.incr(k, 1)`` of an integer counter.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# op -> (public C function it reaches, fill code, loop body)
OPS: dict[str, tuple[str, str, str]] = {
    "get_hit": (
        "sd_get",
        "for k in keys: d.set(k, val, 3600)",
        "d.get(keys[i % 1000])",
    ),
    "get_miss": ("sd_get", "", "d.get(miss[i % 1000])"),
    "set_over": (
        "sd_set_ex",
        "for k in keys: d.set(k, val)",
        "d.set(keys[i % 1000], val2 if i & 1 else val)",
    ),
    "set_new": ("sd_set_ex", "", "d.set(fresh[i], val)"),
    "delete": (
        "sd_delete",
        "for k in fresh: d.set(k, val)",
        "d.delete(fresh[i])",
    ),
    "incr": ("sd_incr_init", "for k in keys: d.set(k, 0)", "d.incr(keys[i % 1000], 1)"),
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
            cmd.append(f"--toggle-collect={fn}")
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

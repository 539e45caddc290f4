"""A damaged file never crashes or hangs a process that uses it.

A corruptor writes to a live dict's file (bit flips, plausible integers in
the header, the lock stripe, the undo log, buckets, entries and free
blocks, zeroed pages, and bytes at random offsets). A fresh process (the
*victim*) then attaches with ``lock_timeout=0.5`` and runs every operation.
Each call must return a value or raise ``shmdict.Error`` or a documented
builtin (KeyError, TypeError, ValueError, OverflowError); the victim must
never die of a signal (SIGSEGV, SIGBUS, SIGABRT) and never hang. Victims run
in subprocesses with a timeout; each case's outcome is classified and any
crash or hang fails the test with the seed and a saved image of the file.

Offsets come from ``csrc/layout.h`` itself (``tests/fileformat.py``): a
tiny C program compiled at test time prints the offsets of every field, so
the targeting follows the layout when it changes.

Also here: bad files at the name (empty, short, random, another format).
The access rules (symlinks, foreign owners, mode, names) are in
``test_files.py``, the libFuzzer target of the C core in ``test_fuzz.py``.

Configuration (see ``RELIABILITY.md``)::

    SHMDICT_CORRUPTIONS       static corruption cases (default 400)
    SHMDICT_LIVE_CORRUPTIONS  cases corrupted while the victim works (default 40)
    SHMDICT_BAD_FILES         random bad files (default 40)
    SHMDICT_CORRUPT_SEED      first seed (default: 20261203)
    SHMDICT_RANDOM_SEEDS=1    draw a random first seed instead of the default
    SHMDICT_CORRUPT_ARTIFACTS where failing images are saved

The suite's second pass in scripts/test.sh (SHMDICT_STRIPES=4) runs the
same counts on striped dicts. Replay a saved image with
``python -m tests.test_corruption IMAGE`` (SHMDICT_REPLAY_GDB=1: under gdb).
"""

from __future__ import annotations

import json
import os
import random
import select
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

import shmdict

from .figures import env_int, env_seed, record_figures
from .fileformat import FileLayout, c_layout
from .helpers import PREFIX, new_name

MiB = 1 << 20
ARTIFACTS = os.environ.get(
    "SHMDICT_CORRUPT_ARTIFACTS",
    os.path.join(tempfile.gettempdir(), "shmdict-corrupt-artifacts"),
)
UNDER_ASAN = "asan" in os.environ.get("LD_PRELOAD", "")


def pkg_env() -> dict[str, str]:
    """The environment for a subprocess that imports this same shmdict."""
    return dict(
        os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(shmdict.__file__))
    )


# --------------------------------------------------------------------------
# building a dict to attack


def build_dict(
    name: str, rng: random.Random
) -> tuple[shmdict.SharedDict, dict[str, Any]]:
    """A dict with a random mix of contents; returns it and what the victim
    should know (some keys, by kind)."""
    size = rng.choice([shmdict.MIN_SIZE, 128 << 10, 256 << 10, MiB])
    kwargs: dict[str, Any] = {}
    if size >= 256 << 10 and rng.random() < 0.3:
        kwargs["stripes"] = rng.choice([2, 4])
    if rng.random() < 0.2:
        kwargs["evict"] = True
    try:
        d = shmdict.new(name, size, **kwargs)
    except (TypeError, ValueError):
        d = shmdict.new(name, size)
    keys: dict[str, list[str]] = {
        "int": [],
        "float": [],
        "str": [],
        "bytes": [],
        "other": [],
        "list": [],
        "ttl": [],
    }
    n = rng.randrange(5, 120)
    for i in range(n):
        k = f"k{i}" if rng.random() < 0.8 else "\u00e9" * rng.randrange(1, 40) + str(i)
        kind = rng.choice(["int", "float", "str", "bytes", "bytes", "other", "list"])
        try:
            if kind == "int":
                d.set(k, rng.randrange(-(2**63), 2**63))
            elif kind == "float":
                d.set(k, rng.uniform(-1e9, 1e9))
            elif kind == "str":
                d.set(k, "s\u20ac" * rng.randrange(0, 200))
            elif kind == "bytes":
                d.set(k, rng.randbytes(rng.choice([0, 5, 60, 300, 2000, 9000])))
            elif kind == "list":
                if not hasattr(d, "rpush"):
                    continue
                for j in range(rng.randrange(1, 6)):
                    items: list[shmdict.Value] = [j, b"x" * rng.randrange(100), "v"]
                    d.rpush(k, rng.choice(items))
            else:
                d.set(k, rng.choice([None, True, False]))
            keys[kind].append(k)
            if rng.random() < 0.2 and kind != "list":
                d.expire(k, rng.choice([0.001, 1000.0]))
                keys["ttl"].append(k)
        except shmdict.NoMemoryError:
            break
    stored = sorted({k for ks in keys.values() for k in ks})
    for k in rng.sample(stored, min(5, n // 4, len(stored))):
        d.delete(k)
    time.sleep(0.002)  # let the 1 ms expiries pass
    return d, keys


# --------------------------------------------------------------------------
# corruptions

MUTEX_KINDS = [
    0,
    1,
    2,
    3,
    16,
    17,
    18,
    19,
    32,
    64,
    128,
    129,
    130,
    144,
    145,
    146,
    147,
    160,
    176,
    256,
    0x7FFFFFFF,
    0xFFFFFFFF,
]


def dead_pid() -> int:
    for pid in range(os.getpid() + 40000, 0, -997):
        if pid < 2**22 and not os.path.exists(f"/proc/{pid}"):
            return pid
    return 4000000


def plausible_u32(
    rng: random.Random, fl: FileLayout, real: int, kind: str = "idx"
) -> int:
    max_idx = (fl.heap_size - 32) // 16
    entries = [e.idx for s in fl.stripes for e in s.entries]
    frees = [b[0] for s in fl.stripes for b in s.free_blocks]
    pool = [
        0,
        1,
        2,
        3,
        max_idx,
        max_idx + 1,
        fl.heap_size // 16,
        0xFFFFFFFF,
        0x80000000,
        0x7FFFFFFF,
        real + 1,
        real - 1 & 0xFFFFFFFF,
        real ^ (1 << rng.randrange(32)),
        rng.randrange(2**32),
        rng.randrange(1, max_idx + 1),
    ]
    if entries:
        pool += [rng.choice(entries)] * 3
    if frees:
        pool += [rng.choice(frees)] * 2
    if kind == "len":
        pool += [
            0,
            1,
            7,
            8,
            9,
            2**20,
            2**20 + 1,
            2**31,
            real * 2,
            real + 8,
            fl.heap_size,
        ]
    return rng.choice(pool) & 0xFFFFFFFF


def plausible_u64(
    rng: random.Random, fl: FileLayout, real: int, kind: str = "any"
) -> int:
    pool = [
        0,
        1,
        2,
        2**63,
        2**64 - 1,
        2**32,
        2**32 - 1,
        real + 1,
        real - 1,
        real * 2,
        real ^ (1 << rng.randrange(64)),
        rng.randrange(2**64),
        rng.randrange(2**16),
    ]
    if kind == "size":  # a block header: size | flags
        sz = real & ~15
        pool += [
            16,
            32,
            48,
            sz + 16,
            sz - 16,
            sz + 32,
            fl.heap_size,
            fl.heap_size - 16,
            fl.heap_size * 2,
            sz | rng.randrange(16),
            (sz + 16) | 1,
            sz | 2,
            sz | 1,
            2**40,
        ]
    if kind == "meta":
        exp = rng.choice([0, 1, 2**55, 2**56 - 1, real >> 8, (real >> 8) + 1])
        pool += [(exp << 8) | rng.randrange(256) for _ in range(6)]
    return rng.choice(pool) & (2**64 - 1)


def corruption(
    rng: random.Random, fl: FileLayout, live: bool = False
) -> list[tuple[int, bytes, str]]:
    """One corruption: a list of (offset, bytes, what) to write."""
    L = fl.L
    s = rng.choice(fl.stripes)

    def w32(v: int) -> bytes:
        return struct.pack("<I", v & 0xFFFFFFFF)

    def w64(v: int) -> bytes:
        return struct.pack("<Q", v & (2**64 - 1))

    kinds = [
        "bitflip",
        "random_bytes",
        "zero_page",
        "header",
        "pstate",
        "lock",
        "undo_log",
        "bucket",
        "entry",
        "free_block",
        "summary_refs",
        "slots",
        "value_bytes",
    ]
    weights = [14, 4, 4, 6, 12, 8, 8, 9, 18, 8, 3, 2, 4]
    kind = rng.choices(kinds, weights)[0]
    if kind == "bitflip":
        off = (
            rng.randrange(fl.size)
            if rng.random() < 0.5
            else rng.randrange(L["SD_PARTS_OFF"], s.heap + min(fl.heap_size, 8192))
        )
        if live:
            off = avoid_mutex(fl, off)
        return [
            (off, bytes([fl.data[off] ^ (1 << rng.randrange(8))]), f"bitflip at {off}")
        ]
    if kind == "random_bytes":
        n = rng.randrange(1, 17)
        off = rng.randrange(fl.size - n)
        if live:
            off = avoid_mutex(fl, off, n)
        return [(off, rng.randbytes(n), f"{n} random bytes at {off}")]
    if kind == "zero_page":
        page = rng.randrange(fl.size // 4096)
        if live and any(abs(page * 4096 - st.lock) < 4096 for st in fl.stripes):
            page = rng.randrange(s.index // 4096, fl.size // 4096)
        return [(page * 4096, bytes(4096), f"zeroed page {page}")]
    if kind == "header":
        f = rng.choice(
            [
                "version",
                "format",
                "file_size",
                "hash_seed",
                "nparts",
                "create_flags",
                "part_size",
                "lock_off",
                "nbuckets",
                "heap_off",
                "heap_size",
                "creator_pid",
                "state",
                "magic",
            ]
        )
        off = L[f"sd_header.{f}"]
        wide = f not in ("version", "format", "nparts", "create_flags", "state")
        real = fl.u64(off) if wide else fl.u32(off)
        v = plausible_u64(rng, fl, real) if wide else plausible_u32(rng, fl, real)
        return [(off, w64(v) if wide else w32(v), f"header.{f} = {v:#x}")]
    if kind == "pstate":
        f = rng.choice(
            [
                "count",
                "n_expiring",
                "used_bytes",
                "gc_head",
                "clock_hand",
                "fl_bitmap",
                "sl_bitmap",
                "heads",
                "heads",
                "quick",
                "quick_bytes",
            ]
        )
        off = fl.pstate(s, f)
        if f == "sl_bitmap":
            off += 4 * rng.randrange(L["SD_FL_COUNT"])
        elif f == "heads":
            off += 4 * rng.randrange(L["SD_FL_COUNT"] * L["SD_SL_COUNT"])
        elif f == "quick":
            off += 4 * rng.randrange(L["SD_QUICK_CLASSES"])
        if f in ("count", "n_expiring", "used_bytes", "clock_hand", "quick_bytes"):
            v = plausible_u64(rng, fl, fl.u64(off))
            return [(off, w64(v), f"stripe {fl.stripes.index(s)} {f} = {v:#x}")]
        v = (
            plausible_u32(rng, fl, fl.u32(off))
            if f in ("gc_head", "heads", "quick")
            else rng.choice(
                [
                    0,
                    0xFFFFFFFF,
                    fl.u32(off) ^ (1 << rng.randrange(32)),
                    rng.randrange(2**32),
                ]
            )
        )
        return [(off, w32(v), f"stripe {fl.stripes.index(s)} {f} at {off} = {v:#x}")]
    if kind in ("lock", "undo_log"):
        if live:  # a live peer writing the mutex itself defeats any pthread mutex
            kind = "undo_log" if kind == "lock" else kind
        out: list[tuple[int, bytes, str]] = []
        owner_died = rng.random() < 0.5
        if kind == "lock":
            f = rng.choice(
                [
                    "lock",
                    "lock",
                    "owner",
                    "kind",
                    "count",
                    "nusers",
                    "list",
                    "seq",
                    "flush_pending",
                    "recoveries",
                ]
            )
            if f == "lock":
                v = rng.choice(
                    [
                        0,
                        1,
                        0x40000000,
                        0x40000000 | dead_pid(),
                        os.getpid(),
                        0x80000000 | os.getpid(),
                        dead_pid(),
                        0x80000000 | dead_pid(),
                        0xFFFFFFFF,
                        0xC0000000,
                    ]
                )
                out.append(
                    (s.lock + L["mutex.lock"], w32(v), f"mutex lock word = {v:#x}")
                )
                owner_died = False
            elif f == "owner":
                v = rng.choice(
                    [0, 0x7FFFFFFF, 0x7FFFFFFE, os.getpid(), dead_pid(), 0xFFFFFFFF]
                )
                out.append((s.lock + L["mutex.owner"], w32(v), f"mutex owner = {v:#x}"))
            elif f == "kind":
                v = rng.choice(MUTEX_KINDS)
                out.append((s.lock + L["mutex.kind"], w32(v), f"mutex kind = {v:#x}"))
            elif f in ("count", "nusers"):
                v = rng.choice([0, 1, 2, 0xFFFFFFFF])
                out.append((s.lock + L[f"mutex.{f}"], w32(v), f"mutex {f} = {v:#x}"))
            elif f == "list":
                v = rng.choice([0, 1, 0x1000, rng.randrange(2**64), 0xDEADBEEF000])
                out.append(
                    (
                        s.lock + L["mutex.list"] + 8 * rng.randrange(2),
                        w64(v),
                        f"mutex list pointer = {v:#x}",
                    )
                )
            elif f == "seq":
                v = rng.choice([1, 3, 2**64 - 1, rng.randrange(2**64)])
                out.append((s.lock + L["sd_lock.seq"], w64(v), f"seq = {v:#x}"))
            elif f == "flush_pending":
                v = rng.choice([1, 2, 0xFFFFFFFF])
                out.append(
                    (
                        s.lock + L["sd_lock.flush_pending"],
                        w32(v),
                        f"flush_pending = {v:#x}",
                    )
                )
            else:
                out.append(
                    (
                        s.lock + L["sd_lock.recoveries"],
                        w64(2**64 - 1),
                        "recoveries = max",
                    )
                )
        else:
            cap = L["SD_LOG_CAP"]
            n = rng.choice([1, 1, 2, 3, 8, cap, cap + 1, 0xFFFFFFFF])
            out.append((s.lock + L["sd_lock.log_n"], w32(n), f"log_n = {n}"))
            for i in range(min(n, rng.choice([1, 2, 4, 16]))):
                targets = [
                    s.lock + L["mutex.lock"],
                    s.lock + L["mutex.owner"],
                    s.lock + L["mutex.kind"] - 4,
                    s.lock + L["mutex.list"],
                    s.lock + L["mutex.list"] + 8,
                    s.lock + L["sd_lock.seq"],
                    s.lock + L["sd_lock.log_n"],
                    s.lock + L["sd_lock.log"] + 16 * i,
                    fl.pstate(s, "count"),
                    fl.pstate(s, "used_bytes"),
                    fl.pstate(s, "heads"),
                    fl.pstate(s, "quick"),
                    fl.pstate(s, "fl_bitmap"),
                    L["sd_header.heap_size"],
                    L["sd_header.nparts"],
                    L["sd_header.magic"],
                    s.index + 4 * rng.randrange(fl.nbuckets),
                    s.heap + 16 * rng.randrange(1, fl.heap_size // 16),
                    fl.size - 8,
                    fl.size - 4,
                    fl.size,
                    fl.size + 4096,
                    2**63,
                    rng.randrange(2**64),
                ]
                if live:
                    targets = [t for t in targets if not near_mutex(fl, t)]
                where = rng.choice(targets) | rng.choice([0, 1, 1])
                old = rng.choice(
                    [
                        0,
                        1,
                        2**64 - 1,
                        0x40000000,
                        rng.randrange(2**64),
                        rng.randrange(2**32),
                    ]
                )
                rec = s.lock + L["sd_lock.log"] + 16 * i
                out.append(
                    (rec, w64(where) + w64(old), f"log[{i}] = ({where:#x}, {old:#x})")
                )
        if owner_died and not live:
            # Make the next locker see a dead owner, so it runs recovery.
            out.append(
                (
                    s.lock + L["mutex.lock"],
                    w32(0x40000000),
                    "mutex lock word = OWNER_DIED",
                )
            )
        return out
    if kind == "bucket":
        if s.used_buckets and rng.random() < 0.7:
            off = rng.choice(s.used_buckets)
        else:
            off = s.index + 4 * rng.randrange(fl.nbuckets)
        v = plausible_u32(rng, fl, fl.u32(off))
        out = [(off, w32(v), f"bucket at {off} = {v:#x}")]
        if rng.random() < 0.5:  # make sure the summary lets scans see it
            out.append(
                (
                    s.summary
                    + rng.randrange(
                        0, max(4, (fl.nbuckets * 4 // 4096 + 31) // 32 * 4), 4
                    ),
                    w32(0xFFFFFFFF),
                    "summary word = all set",
                )
            )
        return out
    if kind in ("entry", "value_bytes"):
        if not s.entries:
            return corruption(rng, fl, live)
        e = rng.choice(s.entries)
        ent = e.blk + 8
        if kind == "value_bytes":
            off = ent + 24 + rng.randrange(max(1, (e.klen + 7) // 8 * 8 + e.vlen))
            return [(off, bytes([rng.randrange(256)]), f"entry byte at {off}")]
        f = rng.choice(
            [
                "next",
                "next",
                "hash",
                "meta",
                "meta",
                "klen",
                "vlen",
                "vlen",
                "block",
                "block",
                "key",
            ]
        )
        if f == "next":
            v = plausible_u32(rng, fl, fl.u32(ent))
            if rng.random() < 0.3:
                v = e.idx  # a cycle of one
            return [(ent, w32(v), f"entry {e.idx} next = {v:#x}")]
        if f == "hash":
            return [(ent + 4, w32(rng.randrange(2**32)), f"entry {e.idx} hash")]
        if f == "meta":
            v = plausible_u64(rng, fl, fl.u64(ent + 8), "meta")
            return [(ent + 8, w64(v), f"entry {e.idx} meta = {v:#x}")]
        if f in ("klen", "vlen"):
            off = ent + (16 if f == "klen" else 20)
            v = plausible_u32(rng, fl, fl.u32(off), "len")
            return [(off, w32(v), f"entry {e.idx} {f} = {v:#x}")]
        if f == "block":
            v = plausible_u64(rng, fl, fl.u64(e.blk), "size")
            return [(e.blk, w64(v), f"block {e.idx} header = {v:#x}")]
        off = ent + 24 + rng.randrange(max(1, e.klen))
        return [
            (
                off,
                bytes([rng.choice([0, 0xFF, 0xC3, 0x80, rng.randrange(256)])]),
                f"entry {e.idx} key byte",
            )
        ]
    if kind == "free_block":
        if not s.free_blocks:
            return corruption(rng, fl, live)
        idx, blk, bsize = rng.choice(s.free_blocks)
        f = rng.choice(["hdr", "next", "prev", "footer"])
        if f == "hdr":
            v = plausible_u64(rng, fl, fl.u64(blk), "size")
            return [(blk, w64(v), f"free block {idx} header = {v:#x}")]
        if f in ("next", "prev"):
            off = blk + (8 if f == "next" else 12)
            v = plausible_u32(rng, fl, fl.u32(off))
            return [(off, w32(v), f"free block {idx} {f} = {v:#x}")]
        off = blk + bsize - 8
        if off + 8 > fl.size:
            return corruption(rng, fl, live)
        v = plausible_u64(rng, fl, fl.u64(off), "size")
        return [(off, w64(v), f"free block {idx} footer = {v:#x}")]
    if kind == "summary_refs":
        base = rng.choice([s.summary, s.refs])
        off = base + rng.randrange(64)
        return [(off, bytes([rng.randrange(256)]), f"summary/refs byte at {off}")]
    off = 4096 + rng.randrange(4096)
    return [(off, rng.randbytes(8)[: 4096 - (off - 4096)], f"slots bytes at {off}")]


def near_mutex(fl: FileLayout, off: int, n: int = 8) -> bool:
    m = fl.L["sizeof(pthread_mutex_t)"]
    return any(st.lock - 8 < off + n and off < st.lock + m for st in fl.stripes)


def avoid_mutex(fl: FileLayout, off: int, n: int = 1) -> int:
    while near_mutex(fl, off, n):
        off = (off + 4096) % (fl.size - n)
    return off


def apply(path: str, writes: list[tuple[int, bytes, str]]) -> None:
    fd = os.open(path, os.O_RDWR)
    try:
        size = os.fstat(fd).st_size
        for off, data, _ in writes:
            if 0 <= off < size:
                os.pwrite(fd, data[: size - off], off)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------
# the victim: a subprocess that attaches and runs every operation

VICTIM_SRC = r"""
import faulthandler, json, os, pickle, sys, time, traceback
faulthandler.enable()
import shmdict
from shmdict import _core

ALLOWED = (shmdict.Error, KeyError, TypeError, ValueError, OverflowError)


def run_case(case):
    name, keys = case["name"], case["keys"]
    results = {}  # "label outcome" -> count
    last = [None]
    bad = []
    timeouts = [0]
    state = {"d": None}

    def note(label, outcome):
        k = label + " " + outcome
        results[k] = results.get(k, 0) + 1
        last[0] = outcome

    def call(label, fn, allow=ALLOWED):
        try:
            fn()
            note(label, "ok")
        except allow as e:
            note(label, type(e).__name__)
            if isinstance(e, shmdict.LockTimeout):
                timeouts[0] += 1
                if timeouts[0] in (2, 10) and state["d"] is not None:
                    # Proven bounded twice: go on with a short timeout so
                    # the remaining calls don't each wait half a second
                    # (and, after ten, a shorter one still).
                    state["d"].close()
                    state["d"] = shmdict.get(
                        name, lock_timeout=0.05 if timeouts[0] == 2 else 0.01)
        except BaseException as e:
            note(label, "BAD-" + type(e).__name__)
            if len(bad) < 5:
                tb = traceback.format_exc(limit=3)
                bad.append(f"{label}: {type(e).__name__}: {e}\n{tb}")

    def attach():
        state["d"] = shmdict.get(name, lock_timeout=0.5)

    call("attach", attach, ALLOWED + (OSError,))
    attach_outcome = last[0]
    if state["d"] is None:
        return {"results": results, "bad": bad, "attached": False,
                "attach": attach_outcome}
    D = lambda: state["d"]
    some = [k for kind in ("int", "float", "str", "bytes", "other", "list", "ttl")
            for k in keys.get(kind, [])][:12] or ["k0"]
    ik = (keys.get("int") or ["k0"])[0]
    fk = (keys.get("float") or ["k1"])[0]
    sk = (keys.get("str") or ["k2"])[0]
    lk = (keys.get("list") or ["l0"])[0]
    tk = (keys.get("ttl") or ["k3"])[0]

    def rounds(live):
        call("len", lambda: len(D()))
        for k in some:
            call("get", lambda: D().get(k))
            call("contains", lambda: k in D())
            call("ttl", lambda: D().ttl(k))
            call("getitem", lambda: D()[k])
        call("get_missing", lambda: D().get("no-such-key"))
        call("get_keys", lambda: D().get_keys())
        call("iter", lambda: list(D()))
        call("items", lambda: list(D().items()))
        call("stats", lambda: D().stats())
        call("verify", lambda: D().verify())
        call("set_small", lambda: D().set(some[0], "small"))
        call("set_big", lambda: D().set(some[-1], b"y" * 3000))
        call("set_new", lambda: D().set("victim-new", b"x" * 100))
        call("set_ttl", lambda: D().set("victim-ttl", 1, 100))
        call("incr_int", lambda: D().incr(ik, 1))
        call("incr_float", lambda: D().incr(fk, 0.5))
        call("incr_str", lambda: D().incr(sk, 1))
        call("incr_missing", lambda: D().incr("no-such-key", 1))
        call("incr_exptime", lambda: D().incr("victim-ttl", 1, exptime=10))
        call("expire", lambda: D().expire(tk, 100))
        call("expire_clear", lambda: D().expire(some[1 % len(some)], 0))
        call("delete", lambda: D().delete(some[2 % len(some)]))
        call("delitem_missing", lambda: D().__delitem__("no-such-key"))
        # Every other public method, each where it finds something and
        # where it doesn't. A method that is missing fails the case.
        for k in some:
            call("get_stale", lambda: D().get_stale(k))
        for k in keys.get("list", [])[:4]:
            call("llen", lambda: D().llen(k))
            call("rpop", lambda: D().rpop(k))
        m2 = b"z" * 500
        for label, fn in [
            ("add", lambda: D().add("victim-add", 1)),
            ("add_present", lambda: D().add(some[0], 1)),
            ("add_ttl", lambda: D().add("victim-add-ttl", b"a" * 300, 50)),
            ("safe_add", lambda: D().safe_add("victim-sadd", "x" * 100)),
            ("safe_add_present", lambda: D().safe_add(ik, 1)),
            ("replace", lambda: D().replace(some[0], 2)),
            ("replace_big", lambda: D().replace(sk, "r" * 5000)),
            ("replace_missing", lambda: D().replace("no-such-key", 2)),
            ("safe_set", lambda: D().safe_set("victim-safe", 1)),
            ("safe_set_big", lambda: D().safe_set(some[-1], b"s" * 9000)),
            ("set_forcible", lambda: D().set_forcible("victim-forcible", b"f" * 700)),
            ("cas", lambda: D().cas(ik, 0, 1)),
            ("cas_current", lambda: D().cas(fk, D().get(fk), 2.5, 100)),
            ("cas_type_mismatch", lambda: D().cas(ik, 0.0, 1)),
            ("cas_missing", lambda: D().cas("no-such-key", 1, 2)),
            ("cas_list", lambda: D().cas(lk, 1, 2)),
            ("pop", lambda: D().pop(some[3 % len(some)], None)),
            ("pop_missing", lambda: D().pop("no-such-key")),
            ("pop_list", lambda: D().pop(lk)),
            ("setdefault", lambda: D().setdefault("victim-sd", 5)),
            ("setdefault_present", lambda: D().setdefault(sk, "d")),
            ("incr_init", lambda: D().incr("victim-init", 1, init=10, init_ttl=100)),
            ("incr_init_present", lambda: D().incr(ik, 1, 50, init=0)),
            ("get_stale_missing", lambda: D().get_stale("no-such-key")),
            ("lpush", lambda: D().lpush(lk, b"item")),
            ("rpush", lambda: D().rpush("victim-list", "i")),
            ("rpush_big", lambda: D().rpush("victim-list", b"b" * 3000)),
            ("rpush_scalar", lambda: D().rpush(ik, 1)),
            ("lpop", lambda: D().lpop(lk)),
            ("rpop", lambda: D().rpop("victim-list")),
            ("lpop_missing", lambda: D().lpop("no-such-key")),
            ("llen", lambda: D().llen(lk)),
            ("llen_scalar", lambda: D().llen(ik)),
            ("get_many", lambda: D().get_many(some)),
            ("get_many_missing", lambda: D().get_many(["no-such-key", lk])),
            ("set_many", lambda: D().set_many({"victim-m1": 1, "victim-m2": m2})),
            ("set_many_ttl", lambda: D().set_many({sk: "m", "victim-m3": 2.5}, 100)),
            ("delete_many", lambda: D().delete_many(["victim-m1", "no-such-key"])),
            ("delete_many_some", lambda: D().delete_many(some[4:6])),
            ("flush_expired", lambda: D().flush_expired()),
            ("flush_expired_max", lambda: D().flush_expired(2)),
            ("capacity", lambda: D().capacity()),
            ("free_space", lambda: D().free_space()),
            ("get_keys_max", lambda: D().get_keys(3)),
            ("keys", lambda: list(D().keys())),
            ("values", lambda: list(D().values())),
            ("eq", lambda: D() == {}),
            ("update", lambda: D().update({"victim-u": 1})),
            ("setitem", lambda: D().__setitem__("victim-si", b"v")),
            ("delitem", lambda: D().__delitem__("victim-si")),
            ("popitem", lambda: D().popitem()),
            ("handle", lambda: (repr(D()), D().name, D().size, D().owner)),
        ]:
            call(label, fn)
        # Functions of the file rather than the handle: like attaching,
        # they may also raise OSError (EINVAL for a header that is not a
        # dict's).
        call("creator_alive", lambda: _core.creator_alive(D().path),
             ALLOWED + (OSError,))
        call("pickle", lambda: pickle.loads(pickle.dumps(D())).close(),
             ALLOWED + (OSError,))
        if not live:
            for i in range(40):
                call("fill", lambda i=i: D().set(f"victim-fill{i}", b"f" * 1500))
            for i in range(40):
                call("unfill", lambda i=i: D().delete(f"victim-fill{i}"))
        call("verify", lambda: D().verify())

    if case.get("live"):
        sys.stdout.write(json.dumps({"ready": True}) + "\n")
        sys.stdout.flush()
        t_end = time.monotonic() + case.get("live_seconds", 0.3)
        while time.monotonic() < t_end:
            rounds(True)
        sys.stdin.readline()  # the corruptor is done
    rounds(False)
    healed = None
    problems = []

    def flush():
        D().flush_all()

    call("flush_all", flush)
    if last[0] == "ok":
        try:
            problems = D().verify()
            D().set("after-flush", b"v" * 100)
            healed = (problems == [] and D().get("after-flush") == b"v" * 100
                      and len(D()) == 1)
        except ALLOWED as e:
            healed = False
            problems = [type(e).__name__]
    call("close", lambda: D().close())
    return {"results": results, "bad": bad, "attached": True,
            "attach": attach_outcome, "healed": healed,
            "after_flush": problems[:3]}


for line in sys.stdin:
    case = json.loads(line)
    faulthandler.dump_traceback_later(case.get("hang_seconds", 45), exit=True)
    out = run_case(case)
    faulthandler.cancel_dump_traceback_later()
    out["seed"] = case["seed"]
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()
"""


class Victim:
    """A victim server: a subprocess running VICTIM_SRC."""

    def __init__(self) -> None:
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()
        self.p = subprocess.Popen(
            [sys.executable, "-c", VICTIM_SRC],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            env=pkg_env(),
            text=True,
            bufsize=1,
        )
        assert self.p.stdin is not None
        assert self.p.stdout is not None
        self.case: Case | None = None

    def send(self, case: Case) -> None:
        self.case = case
        assert self.p.stdin is not None
        self.p.stdin.write(json.dumps(case.msg) + "\n")
        self.p.stdin.flush()

    def err_tail(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")[-3000:]

    def close(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait()
        self.stderr.close()


@dataclass
class Case:
    seed: int
    name: str
    d: shmdict.SharedDict | None
    msg: dict[str, Any]
    writes: list[tuple[int, bytes, str]]
    image: str | None = None  # a saved copy of the corrupted file
    started: float = 0.0
    result: dict[str, Any] | None = None
    failure: str | None = None


def save_image(case: Case, path: str) -> str:
    os.makedirs(ARTIFACTS, exist_ok=True)
    dst = os.path.join(ARTIFACTS, f"case-{case.seed}-{case.name[-12:]}.bin")
    shutil.copyfile(path, dst)
    with open(dst + ".json", "w") as f:
        json.dump(
            {
                "seed": case.seed,
                "msg": case.msg,
                "writes": [(o, b.hex(), w) for o, b, w in case.writes],
            },
            f,
            indent=1,
        )
    return dst


HANG_SECONDS = 60.0


def run_cases(
    cases: Iterator[Case], parallel: int, live_corruptor: Any | None = None
) -> list[Case]:
    """Run every case in a pool of victim servers; classify each outcome."""
    done: list[Case] = []
    victims = [Victim() for _ in range(parallel)]
    idle = list(victims)
    busy: dict[int, Victim] = {}
    it = iter(cases)
    exhausted = False
    try:
        while True:
            while idle and not exhausted:
                case = next(it, None)
                if case is None:
                    exhausted = True
                    break
                v = idle.pop()
                case.started = time.monotonic()
                v.send(case)
                if live_corruptor is not None:
                    live_corruptor(v, case)
                busy[v.p.stdout.fileno()] = v  # type: ignore[union-attr]
            if not busy:
                break
            ready, _, _ = select.select(list(busy), [], [], 1.0)
            now = time.monotonic()
            for fd in list(busy):
                v = busy[fd]
                case = v.case
                assert case is not None
                line = v.p.stdout.readline() if fd in ready else None  # type: ignore[union-attr]
                if fd in ready and line:
                    case.result = json.loads(line)
                    if case.result["bad"]:
                        case.failure = "unexpected exception: " + case.result["bad"][0]
                elif fd in ready or v.p.poll() is not None:
                    rc = v.p.wait()
                    how = (
                        f"killed by signal {signal.Signals(-rc).name}"
                        if rc < 0
                        else f"exited with {rc}"
                    )
                    case.failure = f"victim {how}; its stderr:\n{v.err_tail()}"
                elif now - case.started > HANG_SECONDS:
                    v.p.send_signal(signal.SIGABRT)
                    time.sleep(0.5)
                    v.p.kill()
                    v.p.wait()
                    case.failure = (
                        f"victim hung for {HANG_SECONDS} s; its stderr:\n{v.err_tail()}"
                    )
                else:
                    continue
                del busy[fd]
                done.append(case)
                if case.failure is None and case.image:
                    for p in (case.image, case.image + ".json"):
                        if os.path.exists(p):
                            os.unlink(p)
                    case.image = None
                if case.d is not None:
                    case.d.close()
                if case.failure is not None or v.p.poll() is not None:
                    v.close()
                    victims.remove(v)
                    v = Victim()
                    victims.append(v)
                idle.append(v)
    finally:
        for v in victims:
            v.close()
        for case in done:
            if case.d is not None and not case.d.closed:
                case.d.close()
    return done


def static_cases(first_seed: int, count: int) -> Iterator[Case]:
    for seed in range(first_seed, first_seed + count):
        rng = random.Random(seed)
        name = new_name("corrupt-")
        d, keys = build_dict(name, rng)
        fl = FileLayout(d.path)
        writes = []
        for _ in range(rng.choice([1, 1, 1, 2, 3, 5])):
            writes += corruption(rng, fl)
        apply(d.path, writes)
        case = Case(
            seed,
            name,
            d,
            {
                "name": name,
                "keys": keys,
                "seed": seed,
                "hang_seconds": HANG_SECONDS - 10,
            },
            writes,
        )
        case.image = save_image(case, d.path)  # deleted again if the case passes
        yield case


def report(cases: list[Case], what: str) -> list[str]:
    failures = []
    for c in cases:
        if c.failure is not None:
            img = c.image or ""
            failures.append(
                f"{what} seed {c.seed} (SHMDICT_CORRUPT_SEED={c.seed}; writes: "
                f"{[w for _, _, w in c.writes]}; image {img or 'n/a'}):\n{c.failure}"
            )
    return failures


def summarize(cases: list[Case]) -> dict[str, Any]:
    outcomes: dict[str, int] = {}
    calls = 0
    attached = healed = flushed = 0
    for c in cases:
        if c.result is None:
            continue
        attached += c.result["attached"]
        if c.result.get("healed") is not None:
            flushed += 1
            healed += bool(c.result["healed"])
        for k, n in c.result["results"].items():
            o = k.split(" ", 1)[1]
            outcomes[o] = outcomes.get(o, 0) + n
            calls += n
    return {
        "cases": len(cases),
        "attached": attached,
        "calls": calls,
        "outcomes": outcomes,
        "flush_all_ran": flushed,
        "healed_by_flush_all": healed,
    }


def test_layout_probe_matches_a_real_dict(name: str) -> None:
    """The offsets the corruptor uses describe real files."""
    d = shmdict.new(name, MiB)
    try:
        for i in range(50):
            d.set(f"k{i}", b"v" * i)
        d.delete("k7")
        fl = FileLayout(d.path)
        L = fl.L
        s = fl.stripes[0]
        assert fl.nparts >= 1
        assert sum(len(st.entries) for st in fl.stripes) == 49
        assert sum(fl.u64(fl.pstate(st, "count")) for st in fl.stripes) == 49
        # Blocks on quick lists count in used_bytes but are free to users.
        assert (
            sum(
                fl.u64(fl.pstate(st, "used_bytes"))
                - fl.u64(fl.pstate(st, "quick_bytes"))
                for st in fl.stripes
            )
            == d.stats()["bytes_used"]
        )
        assert sum(fl.u64(fl.pstate(st, "quick_bytes")) for st in fl.stripes) > 0
        assert fl.u32(s.lock + L["mutex.kind"]) & 16, "the mutex is robust"
        keys = set()
        for st in fl.stripes:
            for e in st.entries:
                keys.add(fl.data[e.blk + 8 + 24 : e.blk + 8 + 24 + e.klen].decode())
        assert keys == {f"k{i}" for i in range(50)} - {"k7"}
        assert all(b[2] >= 32 for st in fl.stripes for b in st.free_blocks)
    finally:
        d.close()


def test_verify_reads_pages_marked_empty(name: str) -> None:
    """A bucket holding a link in an index page whose summary bit says
    "empty" is damage (scans skip the page, lookups don't), so verify()
    names it. Found by libFuzzer: such a dict verified clean until a later
    insert set the page's bit."""
    d = shmdict.new(name, 16 * MiB, stripes=1)
    try:
        d["a"] = 1
        fl = FileLayout(d.path)
        s = fl.stripes[0]
        assert fl.nbuckets >= 4 * 1024
        used_pages = {(off - s.index) // 4096 for off in s.used_buckets}
        page = next(p for p in range(fl.nbuckets // 1024) if p not in used_pages)
        assert fl.u32(s.summary + 4 * (page // 32)) >> (page % 32) & 1 == 0
        with open(d.path, "r+b") as f:
            f.seek(s.index + 4096 * page + 4 * 17)
            f.write(struct.pack("<I", 12345))
        problems = d.verify()
        assert any("marked empty" in p for p in problems), problems
    finally:
        d.close()


@pytest.mark.no_asan
def test_corrupted_dicts_never_crash_or_hang() -> None:
    """Hundreds of corrupted dicts, each attacked by a fresh victim."""
    count = env_int("SHMDICT_CORRUPTIONS", 400 if not UNDER_ASAN else 40)
    first = env_seed("SHMDICT_CORRUPT_SEED")
    print(f"corruption seeds {first}..{first + count - 1}")
    t0 = time.monotonic()
    done = run_cases(static_cases(first, count), parallel=3)
    failures = report(done, "static corruption")
    summary = summarize(done)
    record_figures(
        "corruption",
        first_seed=first,
        seconds=round(time.monotonic() - t0, 1),
        **summary,
    )
    assert len(done) == count
    assert not failures, f"{len(failures)} of {count} cases failed:\n\n" + "\n\n".join(
        failures[:5]
    )
    assert summary["calls"] > count * 5


def live_cases(first_seed: int, count: int) -> Iterator[Case]:
    for seed in range(first_seed, first_seed + count):
        rng = random.Random(seed)
        name = new_name("live-")
        d, keys = build_dict(name, rng)
        msg = {
            "name": name,
            "keys": keys,
            "seed": seed,
            "live": True,
            "live_seconds": 0.3,
            "hang_seconds": HANG_SECONDS - 10,
        }
        yield Case(seed, name, d, msg, [])


def live_corruptor(v: Victim, case: Case) -> None:
    """Corrupt the file while the victim works on it (the mutex bytes
    excepted: a process that rewrites a held pthread mutex can crash its
    holder inside glibc, which no dict can prevent)."""
    assert v.p.stdout is not None
    assert v.p.stdin is not None
    r, _, _ = select.select([v.p.stdout], [], [], 30)
    if not r:
        return
    line = v.p.stdout.readline()
    if not line.startswith('{"ready"'):
        # The victim died before it got going; let run_cases see it.
        return
    rng = random.Random(case.seed ^ 0x5EED)
    assert case.d is not None
    fl = FileLayout(case.d.path)  # the clean layout; the file changes from here on
    # One case in four also has the file cut short at a random moment: to
    # half, one page, nothing, or anywhere (the pages past the new end are
    # gone from every mapping of it).
    size = os.stat(case.d.path).st_size
    cut_at = rng.uniform(0, 0.25) if rng.random() < 0.25 else None
    t0 = time.monotonic()
    t_end = t0 + 0.25
    while time.monotonic() < t_end:
        w = corruption(rng, fl, live=True)
        case.writes += w
        apply(case.d.path, w)
        if cut_at is not None and time.monotonic() - t0 >= cut_at:
            length = rng.choice([size // 2, 4096, 0, rng.randrange(size)])
            os.truncate(case.d.path, length)
            case.writes.append((-1, b"", f"truncate to {length}"))
            cut_at = None
        time.sleep(rng.uniform(0, 0.02))
    try:
        v.p.stdin.write("\n")
        v.p.stdin.flush()
    except BrokenPipeError:
        pass


@pytest.mark.no_asan
def test_live_corruption_never_crashes_or_hangs() -> None:
    """The file is corrupted while the victim's operations run."""
    count = env_int("SHMDICT_LIVE_CORRUPTIONS", 40 if not UNDER_ASAN else 5)
    first = env_seed("SHMDICT_CORRUPT_SEED")
    print(f"live corruption seeds {first}..{first + count - 1}")
    t0 = time.monotonic()
    done = run_cases(
        live_cases(first, count), parallel=1, live_corruptor=live_corruptor
    )
    failures = report(done, "live corruption")
    summary = summarize(done)
    writes = sum(len(c.writes) for c in done)
    record_figures(
        "live_corruption",
        first_seed=first,
        writes=writes,
        seconds=round(time.monotonic() - t0, 1),
        **summary,
    )
    assert len(done) == count
    assert not failures, f"{len(failures)} of {count} cases failed:\n\n" + "\n\n".join(
        failures[:5]
    )


def one_case(
    name: str,
    writes_for: Any,
    keys: dict[str, list[str]] | None = None,
    seed: int = 0,
) -> Case:
    """A dict with 30 keys, corrupted by writes_for(FileLayout)."""
    d = shmdict.new(name, MiB)
    for i in range(30):
        d.set(f"k{i}", i if i % 2 else b"v" * (i * 50))
    fl = FileLayout(d.path)
    writes = writes_for(fl)
    apply(d.path, writes)
    msg = {
        "name": name,
        "keys": keys or {"int": ["k1", "k3"], "bytes": ["k2", "k4"]},
        "seed": seed,
        "hang_seconds": HANG_SECONDS - 10,
    }
    case = Case(seed, name, d, msg, writes)
    case.image = save_image(case, d.path)
    return case


def undo_into_lock(field_: str, value: int, wide: bool) -> Any:
    def writes(fl: FileLayout) -> list[tuple[int, bytes, str]]:
        L, s = fl.L, fl.stripes[0]
        target = s.lock + (
            L[f"mutex.{field_}"] if f"mutex.{field_}" in L else L[f"sd_lock.{field_}"]
        )
        return [
            (s.lock + L["sd_lock.log_n"], struct.pack("<I", 1), "log_n = 1"),
            (
                s.lock + L["sd_lock.log"],
                struct.pack("<QQ", target | int(wide), value),
                f"log[0] -> {field_}",
            ),
            (
                s.lock + L["mutex.lock"],
                struct.pack("<I", 0x40000000),
                "lock word = OWNER_DIED",
            ),
        ]

    return writes


UNDO_INTO_LOCK = [
    ("list", 0xDEADBEEF000, True),  # the robust-list prev pointer
    ("list", 0, False),  # low half of it
    ("owner", 0x7FFFFFFE, False),  # PTHREAD_MUTEX_NOTRECOVERABLE
    ("kind", 3, False),
    ("lock", 0x40000000 | 12345, False),
    ("seq", 1, True),
    ("log_n", 0xFFFFFFFF, False),
    ("flush_pending", 1, False),
]


@pytest.mark.parametrize(
    ("field_", "value", "wide"),
    UNDO_INTO_LOCK,
    ids=[f"{f}-{v:#x}" for f, v, _ in UNDO_INTO_LOCK],
)
def test_undo_log_cannot_write_the_lock(
    name: str, field_: str, value: int, wide: bool
) -> None:
    """Regression: a damaged undo record that points into the stripe's own
    lock (the pthread mutex, its robust-list pointers, seq, log_n) was
    replayed by the recovering process while it held the mutex, so its
    pthread_mutex_unlock followed a garbage robust-list pointer: SIGSEGV in
    __pthread_mutex_unlock_full (found by the corruption test)."""
    case = one_case(name, undo_into_lock(field_, value, wide))
    done = run_cases(iter([case]), parallel=1)
    failures = report(done, f"undo record into {field_}")
    assert not failures, failures[0]
    assert done[0].result is not None
    assert done[0].result["attached"]


@pytest.mark.parametrize("count", [2**32 - 1, 2**63, 2**64 - 1])
def test_absurd_entry_count_is_not_trusted(name: str, count: int) -> None:
    """Regression: len() returned the stripe's entry counter as stored, so a
    damaged counter made len(d) about 4 billion and list(d), which uses
    len() as a length hint, raised MemoryError (found by the corruption
    test, seed 5546: "stripe 0 count = 0xffffffff"). No dict can hold more
    entries than its heap has minimum blocks."""

    def writes(fl: FileLayout) -> list[tuple[int, bytes, str]]:
        return [
            (
                fl.pstate(fl.stripes[0], "count"),
                struct.pack("<Q", count),
                f"count = {count:#x}",
            )
        ]

    case = one_case(name, writes)
    # In this process: len() is bounded or raises CorruptError.
    with shmdict.get(name) as d:
        try:
            n = len(d)
        except shmdict.CorruptError:
            pass
        else:
            assert n <= d.size // 32, f"len() = {n} for a {d.size}-byte dict"
            assert len(list(d)) <= n
    # And in a fresh process, every operation behaves.
    done = run_cases(iter([case]), parallel=1)
    failures = report(done, "absurd count")
    assert not failures, failures[0]


def test_block_size_that_wraps_the_bounds_check(name: str) -> None:
    """Regression: a block header's size was checked with
    `(idx << 4) + size > heap_size`, which wraps for a size near 2**64, so
    a huge size passed; with the entry's vlen set large, get() copied past
    the end of the mapping: SIGSEGV (sd_read_block in internal.h, and
    hdr_size in alloc.c; found by the fuzzer as UB at alloc.c:334)."""

    keys: dict[str, list[str]] = {"bytes": [], "int": ["k1", "k3"]}

    def writes(fl: FileLayout) -> list[tuple[int, bytes, str]]:
        out = []
        for e in fl.stripes[0].entries[:3]:
            keys["bytes"].append(fl.data[e.blk + 32 : e.blk + 32 + e.klen].decode())
            size = (2**64 - 16 * e.idx) & ~15
            out += [
                (e.blk, struct.pack("<Q", size), f"block {e.idx} size wraps"),
                (
                    e.blk + 8 + 20,
                    struct.pack("<I", 0x10000000),
                    f"entry {e.idx} vlen = 256 MiB",
                ),
            ]
        idx, blk, _ = fl.stripes[0].free_blocks[-1]
        out.append(
            (
                blk,
                struct.pack("<Q", ((2**64 - 16 * idx) & ~15) | 1),
                f"free block {idx} size wraps",
            )
        )
        return out

    case = one_case(name, writes, keys)
    done = run_cases(iter([case]), parallel=1)
    failures = report(done, "wrapped block size")
    assert not failures, failures[0]


def test_ttl_of_a_far_expiry(name: str) -> None:
    """Regression: ttl() computed the expiry in ns as `exp_ms * 1000000` in
    int64, which overflows for an expiry more than ~292 years away (exptime
    is accepted up to 2**53 ms): signed overflow (UB, found by the fuzzer at
    dict.c part_ttl), and in practice ttl() returned None and `in` said
    False for a key that get() returned."""
    d = shmdict.new(name, MiB)
    try:
        for exptime in (1e9, 9.3e9, 1e10, 1e12, 2**53 / 1000 - 1):
            d.set("k", 1, exptime)
            assert d.get("k") == 1
            assert "k" in d, exptime
            t = d.ttl("k")
            assert t is not None, exptime
            assert t > 0, (exptime, t)
        assert d.verify() == []
    finally:
        d.close()


@pytest.mark.parametrize("where", [2**64 - 8 + 1, 2**64 - 4, 2**64 - 16 + 1, 2**63 + 1])
def test_undo_record_near_the_top_of_the_address_space(name: str, where: int) -> None:
    """Regression: the undo-log replay checked a record's target with
    `end = off + width` and `end <= limit`, which wraps for an offset near
    2**64, so the record was replayed as a store just before the mapping:
    SIGSEGV in sd_tx_rollback_locked, or silent damage to whatever is
    mapped there (found by the fuzzer, csrc/fuzz/regress/undo-where-wraps-asan)."""

    def writes(fl: FileLayout) -> list[tuple[int, bytes, str]]:
        L, s = fl.L, fl.stripes[0]
        return [
            (s.lock + L["sd_lock.log_n"], struct.pack("<I", 1), "log_n = 1"),
            (
                s.lock + L["sd_lock.log"],
                struct.pack("<QQ", where, 0x4141414141414141),
                f"log[0] -> {where:#x}",
            ),
            (
                s.lock + L["mutex.lock"],
                struct.pack("<I", 0x40000000),
                "lock word = OWNER_DIED",
            ),
        ]

    case = one_case(name, writes)
    done = run_cases(iter([case]), parallel=1)
    failures = report(done, "undo record near 2**64")
    assert not failures, failures[0]


# --------------------------------------------------------------------------
# bad files at the name


def valid_image(size: int = MiB) -> bytes:
    name = new_name("img-")
    d = shmdict.new(name, size)
    try:
        for i in range(20):
            d.set(f"k{i}", i)
        with open(d.path, "rb") as f:
            return f.read()
    finally:
        d.close()


def patched(img: bytes, off: int, data: bytes) -> bytes:
    return img[:off] + data + img[off + len(data) :]


def bad_files(rng: random.Random, n_random: int) -> Iterator[tuple[str, bytes]]:
    L = c_layout()
    img = valid_image()
    small = valid_image(shmdict.MIN_SIZE)
    yield "empty", b""
    for n in (1, 8, 100, 4095, 4096, 4097, 8192, shmdict.MIN_SIZE - 1):
        yield f"zeros-{n}", bytes(n)
        yield f"valid-prefix-{n}", img[:n]
    yield "zeros-64k", bytes(shmdict.MIN_SIZE)
    yield "ones-64k", b"\xff" * shmdict.MIN_SIZE
    yield "valid-truncated", img[: len(img) - 4096]
    yield "valid-truncated-odd", img[: len(img) - 1]
    yield "valid-extended", img + bytes(4096)
    yield "valid-1m-cut-to-64k", img[: shmdict.MIN_SIZE]
    yield "small-extended-to-1m", small + bytes(MiB - len(small))
    yield (
        "other-version",
        patched(img, L["sd_header.version"], struct.pack("<I", L["SD_VERSION"] + 1)),
    )
    yield "version-0", patched(img, L["sd_header.version"], struct.pack("<I", 0))
    yield (
        "other-format",
        patched(
            img, L["sd_header.format"], struct.pack("<I", L["SD_FORMAT_WORD"] ^ 0x100)
        ),
    )
    yield "other-magic", patched(img, 0, b"SHMDICT2")
    yield "byte-swapped-magic", patched(img, 0, struct.pack(">Q", L["SD_MAGIC"]))
    yield (
        "file-size-field-lies",
        patched(img, L["sd_header.file_size"], struct.pack("<Q", 2 * MiB)),
    )
    yield "nparts-3", patched(img, L["sd_header.nparts"], struct.pack("<I", 3))
    yield "nparts-0", patched(img, L["sd_header.nparts"], struct.pack("<I", 0))
    yield "nparts-huge", patched(img, L["sd_header.nparts"], struct.pack("<I", 2**31))
    yield (
        "heap-off-lies",
        patched(img, L["sd_header.heap_off"], struct.pack("<Q", 4096)),
    )
    yield (
        "nbuckets-lies",
        patched(img, L["sd_header.nbuckets"], struct.pack("<Q", 2**40)),
    )
    yield "header-only", img[:4096] + bytes(len(img) - 4096)
    yield "header-then-random", img[:4096] + random.Random(7).randbytes(len(img) - 4096)
    for i in range(n_random):
        size = rng.choice([shmdict.MIN_SIZE, 128 << 10, MiB, rng.randrange(1, 200000)])
        yield f"random-{i}-{size}", rng.randbytes(size)
        hdr = bytearray(img[:4096])
        for _ in range(rng.randrange(1, 4)):
            hdr[rng.randrange(256)] = rng.randrange(256)
        yield f"header-bytes-{i}", bytes(hdr) + img[4096:]


def test_bad_files_raise_never_crash(name_factory: Callable[[], str]) -> None:
    """get() on a file that is not a valid dict raises CorruptError or
    OSError; a file whose header is intact but whose body is garbage may
    open, and every operation on it then behaves (checked by the victim)."""
    n_random = env_int("SHMDICT_BAD_FILES", 40)
    rng = random.Random(env_int("SHMDICT_CORRUPT_SEED", 1))
    files = list(bad_files(rng, n_random))
    cases = []
    for i, (what, data) in enumerate(files):
        nm = name_factory()
        path = shmdict.path_for(nm)
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        case = Case(
            i,
            nm,
            None,
            {
                "name": nm,
                "keys": {"int": ["k1"]},
                "seed": i,
                "what": what,
                "hang_seconds": HANG_SECONDS - 10,
            },
            [(0, b"", what)],
        )
        case.image = save_image(case, path)
        cases.append(case)
    done = run_cases(iter(cases), parallel=3)
    failures = report(done, "bad file")
    must_refuse = (
        "empty",
        "zeros-",
        "valid-prefix-",
        "ones-",
        "valid-truncated",
        "valid-extended",
        "valid-1m-cut",
        "small-extended",
        "other-",
        "version-0",
        "byte-swapped",
        "file-size-field",
        "nparts-",
        "heap-off",
        "nbuckets-lies",
        "random-",
    )
    for c in done:
        what = c.msg["what"]
        if c.result is None:
            continue
        attach = c.result["attach"]
        if what.startswith(must_refuse) and attach not in (
            "CorruptError",
            "OSError",
            "FileNotFoundError",
            "PermissionError",
        ):
            failures.append(f"bad file {what!r}: get() gave {attach}, not CorruptError")
    for nm in [c.name for c in cases]:
        if shmdict.exists(nm):
            os.unlink(shmdict.path_for(nm))
    record_figures("bad_files", files=len(files), **summarize(done))
    assert not failures, "\n\n".join(failures[:8])


# --------------------------------------------------------------------------
# replay: python -m tests.test_corruption IMAGE [IMAGE...]


def replay(images: list[str]) -> int:
    """Run the victim on saved images (from SHMDICT_CORRUPT_ARTIFACTS).
    With SHMDICT_REPLAY_GDB=1 it runs under gdb and prints a C backtrace."""
    rc = 0
    for img in images:
        meta: dict[str, Any] = {"msg": {"keys": {}}}
        if os.path.exists(img + ".json"):
            with open(img + ".json") as f:
                meta = json.load(f)
        name = f"{PREFIX}replay-{os.getpid()}"
        path = shmdict.path_for(name)
        shutil.copyfile(img, path)
        os.chmod(path, 0o600)
        tmp = tempfile.mkdtemp(prefix="shmdict-replay-")
        try:
            msg = dict(meta["msg"], name=name, seed=0, live=False)
            script, inp = os.path.join(tmp, "victim.py"), os.path.join(tmp, "case.json")
            with open(script, "w") as f:
                f.write(VICTIM_SRC)
            with open(inp, "w") as f:
                f.write(json.dumps(msg) + "\n")
            if os.environ.get("SHMDICT_REPLAY_GDB"):
                cmd = [
                    "gdb",
                    "-q",
                    "-batch",
                    "-ex",
                    f"run {shlex.quote(script)} < {shlex.quote(inp)}",
                    "-ex",
                    "bt",
                    "--args",
                    sys.executable,
                ]
                p = subprocess.run(
                    cmd,
                    capture_output=True,
                    text=True,
                    env=pkg_env(),
                    timeout=HANG_SECONDS * 2,
                )
            else:
                with open(inp) as stdin:
                    p = subprocess.run(
                        [sys.executable, script],
                        stdin=stdin,
                        capture_output=True,
                        text=True,
                        env=pkg_env(),
                        timeout=HANG_SECONDS * 2,
                    )
            print(f"{img}: exit {p.returncode}\n{p.stdout[-4000:]}\n{p.stderr[-3000:]}")
            rc |= p.returncode != 0
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            if os.path.exists(path):
                os.unlink(path)
    return rc


if __name__ == "__main__":
    sys.exit(replay(sys.argv[1:]))

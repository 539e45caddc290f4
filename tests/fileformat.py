"""The file format, read from ``csrc/layout.h`` itself: ``c_layout()``
compiles a tiny C program that prints the offset of every field and the
format's constants, so tests follow the layout when it changes; and
``FileLayout`` reads the regions, entries and free blocks of a dict file.
"""

from __future__ import annotations

import functools
import os
import shutil
import struct
import subprocess
import tempfile
from dataclasses import dataclass, field
from typing import cast

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CSRC = os.path.join(ROOT, "csrc")


LAYOUT_C = r"""
#define _GNU_SOURCE
#include <stdio.h>
#include <stddef.h>
#include <pthread.h>
#include "layout.h"
#define OFF(t, f) printf(#t "." #f " %zu\n", offsetof(t, f));
#define VAL(n) printf(#n " %llu\n", (unsigned long long)(n));
int main(void)
{
    OFF(sd_header, magic) OFF(sd_header, version) OFF(sd_header, format)
    OFF(sd_header, file_size) OFF(sd_header, hash_seed) OFF(sd_header, nparts)
    OFF(sd_header, create_flags) OFF(sd_header, part_size)
    OFF(sd_header, lock_off) OFF(sd_header, summary_off)
    OFF(sd_header, refs_off) OFF(sd_header, index_off)
    OFF(sd_header, nbuckets) OFF(sd_header, heap_off) OFF(sd_header, heap_size)
    OFF(sd_header, creator_pid) OFF(sd_header, creator_start)
    OFF(sd_header, creator_pidns) OFF(sd_header, nonce) OFF(sd_header, state)
    OFF(sd_pstate, count) OFF(sd_pstate, n_expiring) OFF(sd_pstate, used_bytes)
    OFF(sd_pstate, gc_head) OFF(sd_pstate, evictions) OFF(sd_pstate, expirations)
    OFF(sd_pstate, clock_hand) OFF(sd_pstate, fl_bitmap)
    OFF(sd_pstate, sl_bitmap) OFF(sd_pstate, heads) OFF(sd_pstate, quick)
    OFF(sd_pstate, quick_bytes)
    OFF(sd_lock, seq) OFF(sd_lock, log_n) OFF(sd_lock, flush_pending)
    OFF(sd_lock, recoveries) OFF(sd_lock, lock_waits) OFF(sd_lock, log)
    VAL(sizeof(sd_header)) VAL(sizeof(sd_pstate)) VAL(sizeof(sd_lock))
    VAL(sizeof(pthread_mutex_t)) VAL(SD_PARTS_OFF) VAL(SD_LOG_CAP)
    VAL(SD_MAGIC) VAL(SD_VERSION) VAL(SD_FORMAT_WORD) VAL(SD_UNIT)
    VAL(SD_ENTRY_HDR) VAL(SD_FL_COUNT) VAL(SD_SL_COUNT) VAL(SD_PAGE)
    VAL(SD_MIN_BLOCK) VAL(SD_MAX_KEY) VAL(SD_QUICK_CLASSES)
#ifdef __GLIBC__
    OFF(pthread_mutex_t, __data.__lock) OFF(pthread_mutex_t, __data.__count)
    OFF(pthread_mutex_t, __data.__owner) OFF(pthread_mutex_t, __data.__nusers)
    OFF(pthread_mutex_t, __data.__kind) OFF(pthread_mutex_t, __data.__list)
#endif
    return 0;
}
"""


@functools.lru_cache(maxsize=1)
def c_layout() -> dict[str, int]:
    """Offsets and constants of the file format, printed by a C program
    compiled against csrc/layout.h."""
    out_dir = tempfile.mkdtemp(prefix="shmdict-layout-")
    try:
        src = os.path.join(out_dir, "layout.c")
        exe = os.path.join(out_dir, "layout")
        with open(src, "w") as f:
            f.write(LAYOUT_C)
        env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
        cc = os.environ.get("CC", "gcc")
        r = subprocess.run(
            [cc, "-std=c11", "-I", CSRC, "-o", exe, src],
            capture_output=True,
            text=True,
            env=env,
        )
        assert r.returncode == 0, f"cannot compile the layout probe:\n{r.stderr}"
        r = subprocess.run([exe], capture_output=True, text=True, check=True, env=env)
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
    vals = {}
    for line in r.stdout.splitlines():
        k, v = line.rsplit(" ", 1)
        vals[k.replace("pthread_mutex_t.__data.__", "mutex.")] = int(v)
    return vals


@dataclass
class Entry:
    stripe: int
    idx: int  # block index in the stripe's heap
    blk: int  # file offset of the block header
    klen: int
    vlen: int
    size: int  # block size


@dataclass
class Stripe:
    base: int
    lock: int  # file offset of the sd_lock
    summary: int
    refs: int
    index: int
    heap: int
    entries: list[Entry] = field(default_factory=list)
    free_blocks: list[tuple[int, int, int]] = field(
        default_factory=list
    )  # idx, blk, size
    used_buckets: list[int] = field(default_factory=list)  # file offsets


class FileLayout:
    """The regions, entries and free blocks of a dict file, read from it."""

    def __init__(self, path: str) -> None:
        L = c_layout()
        self.L = L
        with open(path, "rb") as f:
            self.data = f.read()
        size = len(self.data)

        def u32(off: int) -> int:
            return cast(int, struct.unpack_from("<I", self.data, off)[0])

        def u64(off: int) -> int:
            return cast(int, struct.unpack_from("<Q", self.data, off)[0])

        self.u32, self.u64 = u32, u64

        def h(f: str) -> int:
            return L[f"sd_header.{f}"]

        assert u64(h("magic")) == L["SD_MAGIC"], "not a dict file"
        assert u64(h("file_size")) == size, "not a dict file"
        self.size = size
        self.nparts = u32(h("nparts"))
        self.part_size = u64(h("part_size"))
        self.nbuckets = u64(h("nbuckets"))
        self.heap_size = u64(h("heap_size"))
        lock_off, summary_off = u64(h("lock_off")), u64(h("summary_off"))
        refs_off, index_off, heap_off = (
            u64(h("refs_off")),
            u64(h("index_off")),
            u64(h("heap_off")),
        )
        self.stripes: list[Stripe] = []
        for i in range(self.nparts):
            base = L["SD_PARTS_OFF"] + i * self.part_size
            s = Stripe(
                base,
                base + lock_off,
                base + summary_off,
                base + refs_off,
                base + index_off,
                base + heap_off,
            )
            self.stripes.append(s)
            for b in range(self.nbuckets):
                off = s.index + 4 * b
                idx = u32(off)
                if idx:
                    s.used_buckets.append(off)
                steps = 0
                while idx and steps < 10000 and self.idx_ok(idx):
                    blk = s.heap + 16 * idx
                    bsize = u64(blk) & ~15
                    e = blk + 8
                    s.entries.append(
                        Entry(i, idx, blk, u32(e + 16), u32(e + 20), bsize)
                    )
                    idx = u32(e)
                    steps += 1
            idx = 1
            while 16 * idx < self.heap_size:
                blk = s.heap + 16 * idx
                hdr = u64(blk)
                bsize = hdr & ~15
                if bsize < 32 or 16 * idx + bsize > self.heap_size:
                    break
                if hdr & 1:
                    s.free_blocks.append((idx, blk, bsize))
                idx += bsize // 16

    def idx_ok(self, idx: int) -> bool:
        return 0 < idx <= (self.heap_size - 32) // 16

    def pstate(self, s: Stripe, f: str) -> int:
        return s.base + self.L[f"sd_pstate.{f}"]


def lock_words(path: str) -> str:
    """The mutex lock word of every stripe (0 = free), for a hang report."""
    try:
        fl = FileLayout(path)
        words = [fl.u32(st.lock + fl.L["mutex.lock"]) for st in fl.stripes]
        return ", ".join(f"{w:#x}" for w in words)
    except Exception as e:  # a diagnostic must not hide the failure
        return f"(unreadable: {e})"


def block_size_for(payload: int) -> int:
    """The heap block (its 8-byte header word included) that *payload*
    bytes take: rounded up to SD_UNIT, at least SD_MIN_BLOCK (as the C
    core's sd_block_size_for)."""
    L = c_layout()
    unit = L["SD_UNIT"]
    size = (payload + 8 + unit - 1) // unit * unit
    return max(size, L["SD_MIN_BLOCK"])


def entry_block(klen: int, vlen: int) -> int:
    """The heap block an entry takes: SD_ENTRY_HDR, the key padded to 8
    bytes, and the value (*vlen*: a bytes value's length; 8 for a number)."""
    return block_size_for(c_layout()["SD_ENTRY_HDR"] + (klen + 7) // 8 * 8 + vlen)

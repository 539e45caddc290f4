"""Shared vocabulary of the benchmark suite: settings, key names, results.

Every module of ``benchmarks/`` speaks in these types, so that the Python
peers, the native peers (PHP APCu, ngx.shared.DICT) and the report agree on
what a data set, an operation and a measurement are.

A *measurement* is always a set of repetitions, each timing ``n`` operations
with ``time.perf_counter_ns`` (or the native language's monotonic clock)
around a loop; the same loop with an empty body is timed alongside, so every
per-op figure exists both *raw* (median over the repetitions, loop
included) and *net* (raw minus the fastest empty loop).
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from dataclasses import dataclass, field

#: The per-op workloads, in report order, with their display names.
OPS: dict[str, str] = {
    "get_hit": "get (hit)",
    "get_miss": "get (miss)",
    "set": "set (overwrite)",
    "set_new": "set (new key)",
    "incr": "incr",
    "delete": "delete (random order)",
}

#: The feature-op workloads (the calls beyond eco.shared's), in report
#: order, with their display names. See ``features.py``.
FEATURE_OPS: dict[str, str] = {
    "set_call": "set, as a method call (overwrite)",
    "delete_call": "delete, as a method call",
    "add_new": "add (new key)",
    "add_exists": "add (existing key)",
    "replace": "replace (existing key)",
    "cas": "cas (succeeds)",
    "pop": "pop (existing key)",
    "setdefault": "setdefault (existing key)",
    "get_stale": "get_stale (hit)",
    "incr_init": "incr with init (new counter)",
    "queue": "lpush + rpop (one list)",
    "llen": "llen",
    "get_many": "get_many (10 keys)",
    "set_many": "set_many (10 keys)",
}

#: Keys per call of the batch feature ops (get_many / set_many).
BATCH_KEYS = 10

#: The Redis backend's section (benchmarks/redis_backend.py --write writes it,
#: report.py includes it), and the markers around it in BENCHMARKS.md.
REDIS_SECTION = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "results", "redis.md"
)
REDIS_BEGIN = (
    "<!-- redis-backend:begin (python benchmarks/redis_backend.py --write) -->"
)
REDIS_END = "<!-- redis-backend:end -->"

#: The list key of the queue and llen feature ops, and how many items it
#: holds while they run (so a push and a pop never create or remove it).
LIST_KEY = "lst:000000000000"
LIST_ITEMS = 100

#: The expiry (seconds) of the values of the rows "with an expiry" and of
#: the web-cache mix: long enough that nothing expires during a run.
MIX_TTL = 3600


def distinct_value(i: int, vsize: int) -> bytes:
    """The value of key number ``i``: its own object, ``vsize`` bytes of
    ``i % 251``. Every key gets a distinct object (as values read from a
    network or a database are), so a dict's get does not keep returning one
    object that stays hot in the CPU cache. No stored value contains the
    byte 0xff, so :func:`overwrite_value` differs from each in every byte."""
    return bytes([i % 251]) * vsize


def overwrite_value(vsize: int) -> bytes:
    """What the timed overwrites store: ``vsize`` bytes of 0xff, which
    differ in every byte from every :func:`distinct_value`."""
    return b"\xff" * vsize


#: Key length used by every workload: ``f"{prefix}:{i:012d}"`` is 16 bytes.
KEY_LEN = 16


def key_name(prefix: str, i: int) -> str:
    """Return the 16-byte key number ``i`` of a key family (key/mis/new/ctr)."""
    return f"{prefix}:{i:012d}"


@dataclass(frozen=True)
class Dataset:
    """A table of ``nkeys`` entries whose values are ``vsize`` bytes."""

    nkeys: int
    vsize: int

    @property
    def label(self) -> str:
        """Short label such as ``1k x 16 B``."""
        return f"{human_count(self.nkeys)} x {human_bytes(self.vsize)}"


#: The data set the feature ops run on (in quick and full runs alike).
FEATURE_DATASET = Dataset(1000, 16)


@dataclass(frozen=True)
class Settings:
    """Knobs of one benchmark run (full or ``--quick``)."""

    quick: bool
    reps: int  # repetitions of every measurement (medians are reported)
    target_ns: int  # wanted duration of one timed repetition
    min_ops: int  # fewest ops in one repetition (slow peers)
    max_ops: int  # most ops in one repetition (fast peers)
    batch_cap: int  # size of the miss / new-key / counter / delete pools
    datasets: tuple[Dataset, ...]
    mp_key_counts: tuple[int, ...]  # key counts of the multi-process workloads
    mp_target_ns: int  # wanted duration of a one-process multi-process run
    mp_reps: int
    latency_samples: int  # per-op samples for the p99 table
    seed: int = 20240601

    @classmethod
    def make(cls, quick: bool) -> Settings:
        """The settings of a quick or a full run."""
        if quick:
            return cls(
                quick=True,
                reps=5,
                target_ns=2_000_000,
                min_ops=10,
                max_ops=200_000,
                batch_cap=100_000,
                datasets=(Dataset(1000, 16), Dataset(1000, 1024), Dataset(1000, 65536)),
                mp_key_counts=(1000,),
                mp_target_ns=25_000_000,
                mp_reps=3,
                latency_samples=20_000,
            )
        return cls(
            quick=False,
            reps=7,
            target_ns=25_000_000,
            min_ops=20,
            max_ops=1_000_000,
            batch_cap=100_000,
            datasets=(
                Dataset(1000, 16),
                Dataset(1000, 1024),
                Dataset(1000, 65536),
                Dataset(100_000, 16),
                Dataset(100_000, 1024),
                Dataset(1_000_000, 16),
            ),
            mp_key_counts=(1000, 100_000),
            mp_target_ns=150_000_000,
            mp_reps=5,
            latency_samples=200_000,
        )


@dataclass
class OpResult:
    """One per-op measurement: ``reps`` timings of ``n`` ops, plus empty loops."""

    n: int
    raw_ns: list[int]  # total ns of each repetition
    empty_ns: list[int]  # total ns of the same loop with an empty body

    @property
    def raw(self) -> float:
        """Median ns per op, loop overhead included."""
        return statistics.median(self.raw_ns) / self.n

    @property
    def empty(self) -> float:
        """Ns per iteration of the empty loop: the fastest repetition.

        The loop's overhead is a fixed cost that noise (interrupts, other
        processes) can only add to, so its minimum is the best estimate.
        """
        return min(self.empty_ns) / self.n

    @property
    def net(self) -> float:
        """Median ns per op with the empty loop's cost subtracted."""
        return max(self.raw - self.empty, 0.0)


@dataclass
class PeerRun:
    """What one peer produced on one data set: per-op results or a reason."""

    results: dict[str, OpResult] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # op -> reason
    error: str | None = None  # the whole data set failed or was not run
    notes: list[str] = field(default_factory=list)


@dataclass
class LatencyResult:
    """Per-op sampled latencies (ns, timer pair included)."""

    samples: int
    p50: float
    p99: float
    p999: float
    timer_p50: float  # the same two timer calls around an empty statement


@dataclass
class MPResult:
    """One multi-process run configuration, repeated."""

    procs: int
    ops_per_proc: int
    throughputs: list[float]  # aggregate ops/s of each repetition
    ns_per_op: list[float]  # wall ns / total ops of each repetition
    check: str = ""  # e.g. a lost-update note for the counter

    @property
    def throughput(self) -> float:
        """Median aggregate ops/s."""
        return statistics.median(self.throughputs)

    @property
    def ns(self) -> float:
        """Median wall-clock ns per op (all processes together)."""
        return statistics.median(self.ns_per_op)


def human_count(n: int) -> str:
    """1000 -> '1k', 1000000 -> '1M'."""
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1000 and n % 1000 == 0:
        return f"{n // 1000}k"
    return str(n)


def human_bytes(n: float) -> str:
    """16 -> '16 B', 1024 -> '1 KiB', 65536 -> '64 KiB'."""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            v = n / size
            return f"{v:.0f} {unit}" if v == int(v) else f"{v:.1f} {unit}"
    return f"{n:.0f} B"


def fmt_ns(ns: float | None) -> str:
    """Format a duration in ns for a table: 61.2 ns, 12.3 us, 4.56 ms."""
    if ns is None:
        return "-"
    if ns < 100:
        return f"{ns:.1f} ns"
    if ns < 10_000:
        return f"{ns:.0f} ns"
    if ns < 10_000_000:
        return f"{ns / 1000:.1f} us"
    return f"{ns / 1e6:.1f} ms"


def fmt_ratio(r: float | None) -> str:
    """Format a ratio to shmdict: x0.52, x3.1, x140."""
    if r is None:
        return "-"
    if r < 0.1:
        return f"x{r:.3f}"
    if r < 10:
        return f"x{r:.2f}"
    if r < 100:
        return f"x{r:.1f}"
    return f"x{r:.0f}"


_T0 = time.monotonic()


def progress(msg: str) -> None:
    """Print one progress line with the elapsed time, flushed at once."""
    print(f"[{time.monotonic() - _T0:7.1f}s] {msg}", file=sys.stdout, flush=True)


def shm_dir() -> str:
    """The tmpfs directory that file-backed peers are put on."""
    return "/dev/shm" if os.path.isdir("/dev/shm") else os.environ.get("TMPDIR", "/tmp")


def short_error(exc: BaseException | str, limit: int = 160) -> str:
    """First line of an error, cut to ``limit`` characters, for a table cell."""
    text = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
    first = (text.strip().splitlines() or [""])[0]
    return first if len(first) <= limit else first[: limit - 3] + "..."

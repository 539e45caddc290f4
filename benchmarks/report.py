"""Turn one run's results into BENCHMARKS.md and PNG charts.

Every ratio here is computed from figures of the same run: a peer's median
over shmdict's median for the same workload, data set and kind of figure
(net by default). Nothing is carried over from earlier runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import (
    BATCH_KEYS,
    FEATURE_DATASET,
    FEATURE_OPS,
    LIST_ITEMS,
    OPS,
    REDIS_BEGIN,
    REDIS_END,
    REDIS_SECTION,
    Dataset,
    LatencyResult,
    MPResult,
    OpResult,
    PeerRun,
    Settings,
    fmt_ns,
    fmt_ratio,
    human_bytes,
    human_count,
)
from memory import CAP_SIZE, MemoryResults
from multiproc import WORKLOADS, MPPeerRun
from realistic import RealResults
from report_real import (
    headline_section,
    real_goals,
    real_section,
    realistic_chart,
)

BASE = Dataset(1000, 16)  # the data set the per-op goals are judged on
BIG = Dataset(1_000_000, 16)


@dataclass
class PeerInfo:
    """A peer as the report shows it."""

    key: str
    label: str
    notes: str
    kind: str  # "python" or "native"
    version: str = ""
    skipped: str | None = None
    feature_notes: str = ""  # how it spells the feature ops


@dataclass
class BenchResults:
    """Everything one run of bench.py measured."""

    settings: Settings
    machine: dict[str, str]
    peers: list[PeerInfo]
    perop: dict[str, dict[Dataset, PeerRun]] = field(default_factory=dict)
    not_run: dict[str, dict[Dataset, str]] = field(default_factory=dict)
    latency: dict[str, dict[str, LatencyResult]] = field(default_factory=dict)
    mp: dict[int, dict[str, MPPeerRun]] = field(default_factory=dict)  # nkeys ->
    mp_skipped: dict[int, dict[str, str]] = field(default_factory=dict)
    memory: MemoryResults | None = None
    memory_error: str | None = None
    native_capacity: dict[str, dict[str, int | str]] = field(default_factory=dict)
    # the feature ops (on FEATURE_DATASET): peer -> run, and peers left out
    features: dict[str, PeerRun] = field(default_factory=dict)
    features_skipped: dict[str, str] = field(default_factory=dict)
    # the rows of issue 14 (realistic.py, webmix.py)
    real: RealResults | None = None
    real_error: str = ""
    mix: dict[int, dict[str, MPResult]] = field(default_factory=dict)  # vsize ->
    mix_skipped: dict[str, str] = field(default_factory=dict)
    elapsed_s: float = 0.0
    load_end: str = ""
    load_samples: list[str] = field(default_factory=list)  # at each section


@dataclass
class Goal:
    """One goal of the issue, judged on this run."""

    text: str
    measured: str
    status: str  # met | missed | n/a
    detail: str = ""


# ------------------------------------------------------------------ lookups
def op_result(res: BenchResults, peer: str, ds: Dataset, op: str) -> OpResult | None:
    """The per-op result of a peer, or None if it did not run."""
    run = res.perop.get(peer, {}).get(ds)
    if run is None or run.error:
        return None
    return run.results.get(op)


def ratio(
    res: BenchResults, peer: str, ds: Dataset, op: str, kind: str = "net"
) -> float | None:
    """peer / shmdict for one op and data set (net or raw ns per op)."""
    a = op_result(res, peer, ds, op)
    b = op_result(res, "shmdict", ds, op)
    if a is None or b is None:
        return None
    num, den = getattr(a, kind), getattr(b, kind)
    return num / den if den > 0 else None


def feature_result(res: BenchResults, peer: str, op: str) -> OpResult | None:
    """A feature-op result of a peer, or None (no such op, failed, not run)."""
    runs: dict[str, PeerRun] = getattr(res, "features", {})  # older saves lack it
    run = runs.get(peer)
    if run is None or run.error:
        return None
    return run.results.get(op)


def feature_ratio(res: BenchResults, peer: str, op: str) -> float | None:
    """peer / shmdict, net ns per op, for one feature op."""
    a = feature_result(res, peer, op)
    b = feature_result(res, "shmdict", op)
    if a is None or b is None or b.net <= 0:
        return None
    return a.net / b.net


def mp_result(
    res: BenchResults, peer: str, wl: str, procs: int, nkeys: int | None = None
) -> MPResult | None:
    """A multi-process result (default: the smallest key count), or None."""
    if nkeys is None:
        nkeys = min(res.mp, default=0)
    run = res.mp.get(nkeys, {}).get(peer)
    if run is None:
        return None
    return run.results.get(wl, {}).get(procs)


def _label(res: BenchResults, key: str) -> str:
    for p in res.peers:
        if p.key == key:
            return p.label
    return key


# -------------------------------------------------------------------- goals
def _met(ok: bool) -> str:
    return "met" if ok else "missed"


def _vs_dict(res: BenchResults, op: str, limit: float, what: str) -> Goal:
    text = f"{OPS[op]} <= {limit:g}x plain dict {what} (1k keys, 16 B)"
    s = op_result(res, "shmdict", BASE, op)
    d = op_result(res, "dict", BASE, op)
    if s is None or d is None:
        return Goal(text, "-", "n/a", "not measured")
    if d.net <= 0 or d.raw <= 0:
        return Goal(text, "-", "n/a", "plain dict's figure is 0 (noise): rerun")
    net, raw = s.net / d.net, s.raw / d.raw
    return Goal(
        text,
        f"x{net:.2f} net ({s.net:.1f} vs {d.net:.1f} ns); x{raw:.2f} raw",
        _met(net <= limit),
    )


def evaluate_goals(res: BenchResults) -> list[Goal]:
    """The issue's goals, each with this run's figure and met/missed."""
    goals = [
        _vs_dict(res, "get_hit", 2, "d.get"),
        _vs_dict(res, "set", 3, "d[k] = v"),
        _vs_dict(res, "incr", 3, "read-modify-write"),
        _vs_dict(res, "set_new", 3, "insert"),
        _vs_dict(res, "delete", 3, "del"),
    ]
    for native in ("apcu", "ngx"):
        for op in ("get_hit", "set", "incr"):
            text = f"{OPS[op]} within 1.5x of {_label(res, native)}"
            s = op_result(res, "shmdict", BASE, op)
            n = op_result(res, native, BASE, op)
            if s is None or n is None:
                why = next((p.skipped for p in res.peers if p.key == native), None)
                goals.append(Goal(text, "-", "n/a", why or "not measured"))
                continue
            if n.net <= 0:
                goals.append(Goal(text, "-", "n/a", "peer's figure is 0 (noise)"))
                continue
            r = s.net / n.net
            goals.append(
                Goal(
                    text,
                    f"x{r:.2f} ({s.net:.1f} vs {n.net:.1f} ns net, own loops)",
                    _met(r <= 1.5),
                )
            )
    for peer, factor in (
        ("lmdb", 5),
        ("diskcache", 50),
        ("redis", 50),
        ("manager", 50),
    ):
        text = f"every op >= {factor}x faster than {_label(res, peer)} (1k keys, 16 B)"
        ratios = {op: ratio(res, peer, BASE, op) for op in OPS}
        have = {op: r for op, r in ratios.items() if r is not None}
        if not have:
            why = next((p.skipped for p in res.peers if p.key == peer), None)
            goals.append(Goal(text, "-", "n/a", why or "not measured"))
            continue
        worst = min(have, key=lambda op: have[op])
        # the worst case over every data set both ran, for the record
        all_r = [
            (r, op, ds)
            for ds in res.settings.datasets
            for op in OPS
            if (r := ratio(res, peer, ds, op)) is not None
        ]
        worst_all = min(all_r)
        detail = (
            f"worst over all data sets: x{worst_all[0]:.1f} "
            f"({OPS[worst_all[1]]}, {worst_all[2].label})"
        )
        goals.append(
            Goal(
                text,
                f"slowest margin x{have[worst]:.1f} ({OPS[worst]})",
                _met(have[worst] >= factor and len(have) == len(OPS)),
                detail,
            )
        )
    text = "get at 1M keys <= 2x plain dict get at 1M keys"
    s = op_result(res, "shmdict", BIG, "get_hit")
    d = op_result(res, "dict", BIG, "get_hit")
    if s is None or d is None:
        why = (
            "not run in quick mode (1k keys only)" if res.settings.quick else "not run"
        )
        goals.append(Goal(text, "-", "n/a", why))
    else:
        r = s.net / d.net
        goals.append(
            Goal(text, f"x{r:.2f} ({s.net:.1f} vs {d.net:.1f} ns net)", _met(r <= 2))
        )
    small = min(res.mp, default=0)
    for wl, limit, text in (
        ("read_distinct", 1.8, "2 procs distinct-key reads >= 1.8x one proc"),
        ("write_distinct", 1.6, "2 procs distinct-key writes >= 1.6x one proc"),
        ("read_hot", 1.0, "hot-key reads from 2 procs not below one proc"),
    ):
        text += f" ({human_count(small)} keys)"
        one = mp_result(res, "shmdict", wl, 1)
        two = mp_result(res, "shmdict", wl, 2)
        if one is None or two is None:
            goals.append(Goal(text, "-", "n/a", "not measured"))
            continue
        r = two.throughput / one.throughput
        ctrl = "; ".join(
            x for x in (_control_scaling(res, wl), _other_counts(res, wl)) if x
        )
        goals.append(
            Goal(
                text,
                f"x{r:.2f} ({one.throughput / 1e6:.2f} -> "
                f"{two.throughput / 1e6:.2f} Mops/s)",
                _met(r >= limit),
                ctrl,
            )
        )
    text = "contended counter <= 0.2 us per increment"
    procs = max(
        (p for p in (2, *_procs(res)) if mp_result(res, "shmdict", "counter", p)),
        default=0,
    )
    c = mp_result(res, "shmdict", "counter", procs) if procs else None
    if c is None:
        goals.append(Goal(text, "-", "n/a", "not measured"))
    else:
        goals.append(
            Goal(
                text,
                f"{c.ns:.0f} ns per increment ({procs} processes)",
                _met(c.ns <= 200 and not c.check),
                c.check,
            )
        )
    mem = res.memory
    text = ">= 900k entries of 16 B key + 16 B value in 64 MiB"
    cap = mem.capacity.get("16+16") if mem else None
    if isinstance(cap, int):
        goals.append(
            Goal(
                text,
                f"{cap:,} entries ({CAP_SIZE / cap:.1f} B each)",
                _met(cap >= 900_000),
            )
        )
    else:
        goals.append(
            Goal(text, "-", "n/a", str(cap or res.memory_error or "not measured"))
        )
    text = "capacity within 10% under churn"
    ratios_c = _churn_ratios(res)
    if not ratios_c:
        goals.append(Goal(text, "-", "n/a", res.memory_error or "not measured"))
    else:
        worst_c = min(ratios_c, key=lambda t: t[0])
        goals.append(
            Goal(
                text,
                f"worst refill/fresh = {worst_c[0]:.3f} ({worst_c[1]})",
                _met(worst_c[0] >= 0.9),
            )
        )
    text = "shmdict.new(name, 16 GiB) < 10 ms"
    n16 = mem.new16 if mem else {}
    if "median_ns" in n16:
        goals.append(
            Goal(
                text,
                f"{n16['median_ns'] / 1e6:.3f} ms (median), "
                f"RSS +{n16['rss_growth_kib']} KiB",
                _met(n16["median_ns"] < 10e6),
            )
        )
    else:
        goals.append(Goal(text, "-", "n/a", str(n16.get("error", res.memory_error))))
    goals += [Goal(*g) for g in real_goals(res)]
    return goals


def _procs(res: BenchResults) -> list[int]:
    out: set[int] = set()
    for runs in res.mp.values():
        for run in runs.values():
            for by in run.results.values():
                out.update(by)
    return sorted(out)


def _other_counts(res: BenchResults, wl: str) -> str:
    parts = []
    for nkeys in sorted(res.mp)[1:]:
        one = mp_result(res, "shmdict", wl, 1, nkeys)
        two = mp_result(res, "shmdict", wl, 2, nkeys)
        if one and two:
            parts.append(
                f"at {human_count(nkeys)} keys: x{two.throughput / one.throughput:.2f}"
            )
    return ", ".join(parts)


def _control_scaling(res: BenchResults, wl: str) -> str:
    """How private plain dicts scaled (what the machine gave at the time)."""
    one = mp_result(res, "dict", wl, 1)
    two = mp_result(res, "dict", wl, 2)
    if one is None or two is None:
        return ""
    return (
        f"control: private plain dicts scaled x{two.throughput / one.throughput:.2f} "
        "at the same time"
    )


def _churn_ratios(res: BenchResults) -> list[tuple[float, str]]:
    mem = res.memory
    if mem is None:
        return []
    out: list[tuple[float, str]] = []
    for how, counts in mem.churn.items():
        for shape, n in counts.items():
            fresh = mem.capacity.get(shape)
            if (
                isinstance(n, int)
                and isinstance(fresh, int)
                and fresh
                and " " not in shape
            ):
                out.append((n / fresh, f"{how}, {shape} B"))
    return out


# ----------------------------------------------------------------- markdown
def _num(x: object) -> str:
    """1234567 -> '1,234,567'; anything else as text ('-' for None)."""
    if isinstance(x, int):
        return f"{x:,}"
    return "-" if x is None else str(x)


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _perop_cell(res: BenchResults, peer: str, ds: Dataset, op: str) -> str:
    r = op_result(res, peer, ds, op)
    if r is None:
        run = res.perop.get(peer, {}).get(ds)
        if run is not None and op in run.skipped:
            return run.skipped[op].replace("|", "/")
        if run is not None and run.error:
            return "failed"
        return "-"
    cell = f"**{fmt_ns(r.net)}** ({fmt_ns(r.raw)})"
    if peer != "shmdict":
        q = ratio(res, peer, ds, op)
        if q is not None:
            cell += f" {fmt_ratio(q)}"
    return cell


def _peer_order(res: BenchResults) -> list[PeerInfo]:
    return [p for p in res.peers if p.skipped is None]


def perop_section(res: BenchResults) -> str:
    """One table per operation: peers x data sets."""
    out = []
    dss = list(res.settings.datasets)
    for op, name in OPS.items():
        rows = []
        for p in _peer_order(res):
            if p.key not in res.perop:
                continue
            rows.append([p.label, *(_perop_cell(res, p.key, ds, op) for ds in dss)])
        out.append(
            f"### {name}\n\n" + _table(["peer", *(ds.label for ds in dss)], rows)
        )
    return "\n\n".join(out)


#: Column order of the feature table: shmdict, the ceiling, the natives.
_FEATURE_ORDER = ("shmdict", "dict", "apcu", "ngx")
_BATCH_OPS = ("get_many", "set_many")


def _feature_peers(res: BenchResults) -> list[PeerInfo]:
    """Peers with feature results, shmdict / dict / APCu / ngx first."""
    runs = getattr(res, "features", {})
    have = [p for p in res.peers if p.key in runs]
    rank = {k: i for i, k in enumerate(_FEATURE_ORDER)}
    return sorted(have, key=lambda p: rank.get(p.key, len(rank)))


def _feature_cell(res: BenchResults, peer: str, op: str) -> str:
    run = res.features[peer]
    r = feature_result(res, peer, op)
    if r is None:
        if op in run.skipped:
            return run.skipped[op].replace("|", "/")
        return "failed" if run.error else "n/a"
    cell = f"**{fmt_ns(r.net)}** ({fmt_ns(r.raw)})"
    if op in _BATCH_OPS:
        cell += f", {fmt_ns(r.net / BATCH_KEYS)}/key"
    if peer != "shmdict":
        q = feature_ratio(res, peer, op)
        if q is not None:
            cell += f" {fmt_ratio(q)}"
    return cell


def features_section(res: BenchResults) -> str:
    """The feature ops: one row per op, one column per peer that ran them."""
    runs = getattr(res, "features", {})
    if not runs:
        return ""
    peers = _feature_peers(res)
    rows = [
        [name, *(_feature_cell(res, p.key, op) for p in peers)]
        for op, name in FEATURE_OPS.items()
    ]
    labels = [
        p.label + (" (in-process ceiling)" if p.key == "dict" else "") for p in peers
    ]
    parts = [_table(["operation", *labels], rows)]
    how = [f"- {p.label}: {getattr(p, 'feature_notes', '')}" for p in peers]
    parts.append("How each peer spells them:\n\n" + "\n".join(how))
    notes: list[str] = []
    for p in peers:
        run = runs[p.key]
        if run.error:
            notes.append(f"- {p.label}: failed: {run.error}")
        notes += [f"- {p.label}: **{n}**" for n in run.notes]
    by_reason: dict[str, list[str]] = {}
    for key, why in getattr(res, "features_skipped", {}).items():
        by_reason.setdefault(why, []).append(_label(res, key))
    for why, labels in by_reason.items():
        notes.append(f"- {', '.join(labels)}: {why}")
    for p in res.peers:
        if p.skipped and p.key not in runs and p.key not in res.features_skipped:
            notes.append(f"- {p.label}: skipped ({p.skipped})")
    if notes:
        parts.append("\n".join(notes))
    return "\n\n".join(parts)


def latency_section(res: BenchResults) -> str:
    """Per-op sampled latencies on the base data set."""
    rows = []
    for p in _peer_order(res):
        lat = res.latency.get(p.key)
        if not lat:
            continue
        cells = [p.label]
        for op in ("get_hit", "set", "incr"):
            r = lat.get(op)
            cells.append(f"{fmt_ns(r.p50)} / {fmt_ns(r.p99)}" if r else "-")
        timer = next(iter(lat.values())).timer_p50
        cells.append(fmt_ns(timer))
        cells.append(str(next(iter(lat.values())).samples))
        rows.append(cells)
    return _table(
        [
            "peer",
            "get (hit) p50 / p99",
            "set p50 / p99",
            "incr p50 / p99",
            "timer pair p50 (included)",
            "samples",
        ],
        rows,
    )


def mp_section(res: BenchResults, nkeys: int) -> str:
    """One table per multi-process workload, for one key count."""
    procs = _procs(res)
    runs = res.mp.get(nkeys, {})
    out = []
    for wl in WORKLOADS:
        rows = []
        for p in _peer_order(res):
            run = runs.get(p.key)
            if run is None:
                continue
            if wl.key in run.errors:
                rows.append([p.label, run.errors[wl.key], *([""] * len(procs))])
                continue
            by = run.results.get(wl.key, {})
            if not by:
                continue
            cells = [p.label]
            base = by.get(1)
            for n in procs:
                r = by.get(n)
                if r is None:
                    cells.append("-")
                    continue
                if wl.key == "counter":
                    txt = f"{fmt_ns(r.ns)}/incr ({r.throughput / 1e6:.3f} M/s)"
                else:
                    txt = f"{r.throughput / 1e6:.3f} Mops/s"
                if base is not None and n != 1:
                    txt += f" x{r.throughput / base.throughput:.2f}"
                if r.check:
                    txt += f" **{r.check}**"
                cells.append(txt)
            s = mp_result(res, "shmdict", wl.key, procs[-1], nkeys)
            top = by.get(procs[-1])
            if s is not None and top is not None and p.key != "shmdict":
                cells.append(fmt_ratio(s.throughput / top.throughput))
            else:
                cells.append("")
            rows.append(cells)
        header = [
            "peer",
            *(f"{n} proc" + ("s" if n > 1 else "") for n in procs),
            f"shmdict / peer throughput, {procs[-1] if procs else '-'} procs",
        ]
        title = f"### {human_count(nkeys)} keys: {wl.label}"
        out.append(f"{title}\n\n" + _table(header, rows))
    skips = res.mp_skipped.get(nkeys, {})
    if skips:
        out.append("\n".join(f"- {_label(res, k)}: {why}" for k, why in skips.items()))
    return "\n\n".join(out)


def memory_section(res: BenchResults) -> str:
    """Capacity, churn and creation cost."""
    mem = res.memory
    if mem is None:
        return f"Not measured: {res.memory_error}"
    parts = []
    rows = []
    for shape, n in mem.capacity.items():
        k, v = shape.split("+")
        per = f"{CAP_SIZE / n:.1f} B" if isinstance(n, int) and n else "-"
        cells = [
            f"{k} B key + {human_bytes(int(v))} value",
            f"{n:,}" if isinstance(n, int) else str(n),
            per,
        ]
        for native in ("apcu", "ngx"):
            c = res.native_capacity.get(native, {}).get(shape)
            cells.append(f"{c:,}" if isinstance(c, int) else (str(c) if c else "-"))
        rows.append(cells)
    parts.append(
        "Entries that fit in 64 MiB (shmdict: a 64 MiB file filled until "
        "`NoMemoryError`; APCu: `apc.shm_size=64M`, default `entries_hint`, "
        "until a store fails or APCu expunges; ngx: `lua_shared_dict cap 64m`, "
        "`safe_set` until no memory):\n\n"
        + _table(
            [
                "entry",
                "shmdict entries",
                "shmdict bytes/entry",
                "APCu 64 MiB",
                "ngx.shared.DICT 64 MiB",
            ],
            rows,
        )
    )
    rows = []
    for how, counts in mem.churn.items():
        for shape, n in counts.items():
            if " " in shape:
                continue
            fresh = mem.capacity.get(shape)
            r = (
                f"{n / fresh:.3f}"
                if isinstance(n, int) and isinstance(fresh, int)
                else "-"
            )
            left = counts.get(f"{shape} left")
            rows.append(
                [
                    how,
                    f"{shape} B",
                    f"{fresh:,}" if isinstance(fresh, int) else "-",
                    f"{n:,}" if isinstance(n, int) else str(n),
                    r,
                    f"{left} keys left after emptying!" if left else "",
                    _num(counts.get(f"{shape} live")),
                ]
            )
    parts.append(
        "Capacity under churn: a fresh 64 MiB dict is filled with values of 1 B to "
        f"4 KiB (log-uniform), then takes {mem.churn_ops:,} random deletes (40%), "
        "overwrites with a new size (30%) and inserts (30%) while near full "
        "(16 random live keys are deleted whenever a set finds it full); then it "
        "is emptied and refilled with one entry shape until NoMemoryError:\n\n"
        + _table(
            [
                "emptied by",
                "refill entry",
                "fresh count",
                "refill count",
                "refill / fresh",
                "note",
                "live keys before emptying",
            ],
            rows,
        )
    )
    n16 = mem.new16
    if "median_ns" in n16:
        times = ", ".join(f"{t / 1e6:.3f}" for t in n16["times_ns"])
        parts.append(
            _table(
                ["shmdict.new(name, 16 GiB)", "value"],
                [
                    ["wall time, median", f"{n16['median_ns'] / 1e6:.3f} ms"],
                    ["all runs (ms)", times],
                    ["file size", human_bytes(n16["file_size"])],
                    ["file blocks allocated after new", f"{n16['file_alloc_kib']} KiB"],
                    ["RSS growth after new", f"{n16['rss_growth_kib']} KiB"],
                    ["RssShmem growth after new", f"{n16['rss_shmem_growth_kib']} KiB"],
                    [
                        "RSS growth after one set",
                        f"{n16['rss_growth_after_set_kib']} KiB",
                    ],
                    [
                        "file blocks after one set",
                        f"{n16['file_alloc_after_set_kib']} KiB",
                    ],
                    ["first get after new", fmt_ns(n16["first_get_ns"])],
                    ["close (owner, removes the file)", fmt_ns(n16["close_ns"])],
                ],
            )
        )
    else:
        parts.append(f"shmdict.new(name, 16 GiB): {n16.get('error')}")
    return "\n\n".join(parts)


def _mp_runs_note(res: BenchResults) -> str:
    ns = sorted(
        {
            r.ops_per_proc
            for runs in res.mp.values()
            for run in runs.values()
            for by in run.results.values()
            for r in by.values()
        }
    )
    if not ns:
        return ""
    return f"{ns[0]:,} to {ns[-1]:,} ops per process per run"


def render_markdown(res: BenchResults, img_rel: str, charts: list[str]) -> str:
    """The whole BENCHMARKS.md."""
    s = res.settings
    m = res.machine
    goals = evaluate_goals(res)
    met = sum(g.status == "met" for g in goals)
    missed = sum(g.status == "missed" for g in goals)
    mode = "quick (`--quick`)" if s.quick else "full"
    doc = [
        "# shmdict benchmarks",
        "",
        f"Generated by `python benchmarks/bench.py{' --quick' if s.quick else ''}` "
        f"({mode} run, {res.elapsed_s:.0f} s) on {m.get('date', '?')}. Every figure "
        "and every ratio below comes from this one run; rerun the command to "
        "refresh them. `benchmarks/quick_core.py` prints the core per-op figures "
        "in a few seconds.",
        "",
        *_headline_block(res),
        "## Machine",
        "",
        _table(
            ["", ""],
            [[k, v] for k, v in m.items() if k != "date"]
            + [
                ["load average after each section", " / ".join(res.load_samples)],
                ["load average at end", res.load_end],
            ],
        ),
        "",
        "The machine is shared with other work (builds, tests), so figures move "
        "from run to run, the multi-process ones most; the private plain-dict rows "
        "of the multi-process tables are a control for how much parallelism the "
        "machine gave at that moment.",
        "",
        _load_warning(res),
        "",
        f"## Goals ({met} met, {missed} missed, {len(goals) - met - missed} n/a)",
        "",
        _table(
            ["goal", "measured (this run)", "status", "notes"],
            [[g.text, g.measured, f"**{g.status}**", g.detail] for g in goals],
        ),
        "",
        "Per-op goals are judged on net figures (empty loop subtracted, see "
        "below) on the 1k keys x 16 B data set; the raw ratio is given beside. "
        "The goals of the realistic rows are judged on the median of per-pair "
        "ratios (see *Realistic workloads*).",
        "",
        *_real_block(res),
        "## Method",
        "",
        "- **What a per-op figure is.** `time.perf_counter_ns()` is read before "
        "and after a Python `for k in keys: <one call>` loop over a prepared list "
        "of keys; the same loop with an empty body (`pass`) is timed alongside. "
        "Each table cell shows **net** ns/op = median(loop) / n - fastest empty "
        "loop / n (the loop's overhead is a fixed cost that noise only adds to), "
        "then (raw ns/op = median(loop) / n, loop overhead included), then the net "
        "ratio to shmdict in the same run (x2.00 = twice shmdict's time; below 1 "
        "= faster than shmdict). Methods are bound once before "
        "the loop (`g = d.get`) for every peer; the plain dict uses its natural "
        "statements (`d[k] = v`, `del d[k]`, `d[k] = g(k, 0) + 1`), and shmdict "
        "the same subscripts for set and delete (its `d.set` and `d.delete` "
        "method calls are timed among the feature ops).",
        f"- **Repetitions.** Each figure is the median of {s.reps} repetitions; n "
        f"is calibrated per peer and op so one repetition takes about "
        f"{s.target_ns / 1e6:g} ms (at least {s.min_ops} and at most "
        f"{s.max_ops:,} ops). The cyclic GC is off during timed loops. Each peer "
        "and data set runs in a fresh forked process.",
        "- **Workloads.** Keys are 16 bytes (`key:000000000042`), values are "
        "`bytes` of the given size, each key its own object (the plain dict "
        "too: one shared object would stay in the CPU cache and flatter it at "
        "large key counts). get (hit) and set (overwrite) walk every key in "
        "a shuffled order; an overwrite stores a value of the same size whose "
        "bytes differ from the stored one (which is put back, untimed, after "
        "each batch), so no write stores what is already there, a store that "
        "shmdict would skip; get (miss) uses keys never stored; set (new key) inserts "
        f"min(nkeys, {s.batch_cap:,}) new keys per batch and deletes them again "
        "(untimed); delete removes that many existing keys in random order per "
        "batch and puts them back (untimed); incr adds 1 to that many integer "
        "counters.",
        "- **Native peers.** PHP APCu and ngx.shared.DICT run the same workloads "
        "(same keys, pools, calibration and repetitions) in their own languages; "
        "their loops are timed inside PHP (`hrtime(true)`) and LuaJIT "
        "(`clock_gettime(CLOCK_MONOTONIC)` via the FFI), with their own empty "
        "loops, so those rows are each language's own per-op cost, with no "
        "process start and no HTTP round trip inside the timings. Their "
        "overwrites store the value the key holds: neither compares it with "
        "what is stored (APCu builds a new entry, ngx copies the bytes in "
        "place), so that saves them nothing.",
        "- **Sampled latencies** time each op alone with two `perf_counter_ns()` "
        "calls; the median cost of the timer pair around an empty statement is "
        "shown and is included in the percentiles.",
        f"- **Multi-process.** "
        f"{' and '.join(f'{k:,}' for k in s.mp_key_counts)} keys x 16 B (the "
        "goals use the smallest, where the table stays in cache and what is "
        "measured is the synchronization; the larger is bound by memory "
        "latency). Workers are forked once "
        "per process count and attach the way another program would "
        "(`shmdict.get(name)`, a new LMDB env, a new redis connection, ...); each "
        "run they build their op list, meet at a barrier and run the same number "
        "of ops; a worker's writes to a key alternate between two values that "
        "differ from the one stored, so none stores the bytes already there; "
        "throughput = all ops / (last end - first start) on the shared "
        f"monotonic clock; median of {s.mp_reps} runs ({_mp_runs_note(res)}). "
        "Zipf keys use s=0.99 over a shuffled key order.",
        "",
        "## Peers",
        "",
        _table(
            ["peer", "status", "version", "how the operations are called"],
            [
                [
                    p.label,
                    f"skipped ({p.skipped})" if p.skipped else "measured",
                    p.version,
                    p.notes,
                ]
                for p in res.peers
            ],
        ),
        "",
        "## Single-process cost per operation",
        "",
        "Cells: **net ns/op** (raw ns/op) and the peer's net time over shmdict's "
        "in this run. `-`: not run at that size (see the notes below the tables).",
        "",
        perop_section(res),
        "",
        _not_run_notes(res),
        "",
        f"## Sampled per-op latency ({BASE.label})",
        "",
        latency_section(res),
        "",
        *_features_block(res),
        *_redis_block(),
        "## Multi-process throughput",
        "",
        f"Aggregate throughput (all processes) and, after `x`, the speed-up over "
        f"one process; N = os.cpu_count() = {m.get('cores (os.cpu_count)', '?')}. "
        "The counter rows show wall time per increment (all processes "
        "incrementing one key) and check the final count.",
        "",
        *(mp_section(res, nkeys) + "\n" for nkeys in sorted(res.mp)),
        "## Memory",
        "",
        memory_section(res),
        "",
    ]
    if charts:
        doc += ["## Charts", ""]
        for c in charts:
            doc += [f"![{c}]({img_rel}/{c})", ""]
    return "\n".join(line for line in doc if line is not None) + "\n"


def _headline_block(res: BenchResults) -> list[str]:
    """The realistic rows first, with the best case beside them."""
    body = headline_section(res)
    if not body:
        return []
    return ["## In realistic settings, and the best case", "", body, ""]


def _real_block(res: BenchResults) -> list[str]:
    """Every row of the realistic workloads (nothing if none ran)."""
    body = real_section(res)
    if not body:
        return []
    return ["## Realistic workloads", "", body, ""]


def _features_block(res: BenchResults) -> list[str]:
    """The feature-op heading, explanation and table (nothing if not run)."""
    body = features_section(res)
    if not body:
        return []
    s = res.settings
    return [
        f"## Feature operations ({FEATURE_DATASET.label})",
        "",
        "The calls beyond eco.shared's, timed exactly as the core per-op figures "
        f"(same loops, calibration and {s.reps} repetitions; median; net of the "
        "empty loop) on 1k keys of 16 B, beside each peer's own spelling of the "
        "same operation where it has one (`n/a`: it has none). Cells: **net "
        "ns/op** (raw ns/op) and the peer's net time over shmdict's in this run "
        "(x2.00 = twice shmdict's time, below 1 = faster). add (new key), incr "
        "with init and pop run in batches that are undone untimed, as set (new "
        "key) and delete are; cas is `cas(k, 0, 0)` on a counter holding 0, so "
        "it succeeds and stores; lpush + rpop is one push and one pop (a queue "
        f"round trip) on a list of {LIST_ITEMS} items; get_many / set_many "
        f"take {BATCH_KEYS} existing keys per call, and the cell adds the "
        "cost per key. The plain dict is the in-process ceiling: one process, "
        "not atomic across processes, no expiry. Of the Python peers only "
        "redis is included, for its one-command equivalents.",
        "",
        body,
        "",
    ]


def _redis_block() -> list[str]:
    """The Redis backend's section, as benchmarks/redis_backend.py --write
    last wrote it (a run of its own, dated in it); nothing if it never
    ran."""
    try:
        with open(REDIS_SECTION) as f:
            body = f.read().rstrip("\n")
    except FileNotFoundError:
        return []
    return [REDIS_BEGIN, body, REDIS_END, ""]


def _is_load(text: str) -> bool:
    try:
        float(text.split()[0])
    except (ValueError, IndexError):
        return False
    return True


def _load_warning(res: BenchResults) -> str:
    """A warning when other work loaded the machine during the run."""
    texts = [res.machine.get("load average at start", ""), *res.load_samples]
    loads = [float(t.split()[0]) for t in [*texts, res.load_end] if _is_load(t)]
    try:
        cores = int(res.machine.get("cores (os.cpu_count)", "0"))
    except ValueError:
        cores = 0
    if not loads or not cores or max(loads) <= cores:
        return ""
    return (
        f"**Warning:** the 1-minute load average reached {max(loads):.1f} on "
        f"{cores} cores during this run: other work competed for the CPUs, so "
        "some figures (the multi-process ones and the server-based peers most) "
        "are disturbed. Rerun on a quiet machine for cleaner numbers."
    )


def _not_run_notes(res: BenchResults) -> str:
    lines = []
    for p in res.peers:
        for ds, why in res.not_run.get(p.key, {}).items():
            lines.append(f"- {p.label}, {ds.label}: {why}")
        for ds, run in res.perop.get(p.key, {}).items():
            if run.error:
                lines.append(f"- {p.label}, {ds.label}: failed: {run.error}")
            for note in run.notes:
                lines.append(f"- {p.label}, {ds.label}: {note}")
    skipped = [f"- {p.label}: skipped ({p.skipped})" for p in res.peers if p.skipped]
    return "\n".join(skipped + lines) if skipped or lines else ""


# ------------------------------------------------------------------- charts
def render_charts(res: BenchResults, img_dir: Path) -> list[str]:
    """Write the PNG charts; return their file names (empty without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    img_dir.mkdir(parents=True, exist_ok=True)
    names: list[str] = []
    real_chart = realistic_chart(res, plt, img_dir)
    if real_chart:
        names.append(real_chart)
    if getattr(res, "features", {}):
        names.append(_features_chart(res, plt, img_dir))
    peers = [p for p in _peer_order(res) if p.key in res.perop]

    if not peers:
        return names
    # 1. per-op cost on the base data set, every peer
    fig, ax = plt.subplots(figsize=(12, 6.5))
    ops = list(OPS)
    width = 0.8 / max(1, len(peers))
    for i, p in enumerate(peers):
        vals = [op_result(res, p.key, BASE, op) for op in ops]
        ys = [v.net if v else 0 for v in vals]
        ax.bar([j + i * width for j in range(len(ops))], ys, width, label=p.label)
    ax.set_yscale("log")
    ax.set_xticks([j + width * (len(peers) - 1) / 2 for j in range(len(ops))])
    ax.set_xticklabels([OPS[o] for o in ops])
    ax.set_ylabel("ns per op (net, median; log scale)")
    ax.set_title(f"Single-process cost per operation, {BASE.label}")
    ax.legend(fontsize=8, ncol=5, loc="upper center", bbox_to_anchor=(0.5, -0.07))
    ax.grid(axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(img_dir / "bench-perop.png", dpi=110)
    plt.close(fig)
    names.append("bench-perop.png")

    # 2. get (hit) / set by key count and value size
    fig, axes = plt.subplots(1, 2, figsize=(14, 4.8))
    sizes = [ds for ds in res.settings.datasets if ds.vsize == 16]
    vals_ds = [ds for ds in res.settings.datasets if ds.nkeys == 1000]
    for p in peers:
        xs, ys = [], []
        for ds in sizes:
            r = op_result(res, p.key, ds, "get_hit")
            if r:
                xs.append(ds.nkeys)
                ys.append(r.net)
        if xs:
            axes[0].plot(xs, ys, marker="o", label=p.label)
        xs, ys = [], []
        for ds in vals_ds:
            r = op_result(res, p.key, ds, "set")
            if r:
                xs.append(ds.vsize)
                ys.append(r.net)
        if xs:
            axes[1].plot(xs, ys, marker="o", label=p.label)
    axes[0].set(
        xscale="log",
        yscale="log",
        xlabel="keys",
        ylabel="ns per get (hit), net",
        title="get (hit) by table size, 16 B values",
    )
    axes[1].set(
        xscale="log",
        yscale="log",
        xlabel="value bytes",
        ylabel="ns per set (overwrite), net",
        title="set (overwrite) by value size, 1k keys",
    )
    for ax in axes:
        ax.grid(which="both", alpha=0.3)
    axes[1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1))
    fig.tight_layout()
    fig.savefig(img_dir / "bench-sizes.png", dpi=110)
    plt.close(fig)
    names.append("bench-sizes.png")

    # 3. multi-process scaling, one chart per key count
    for nkeys in sorted(res.mp):
        name = _mp_chart(res, plt, img_dir, nkeys, peers)
        if name:
            names.append(name)
    return names


def _features_chart(res: BenchResults, plt: Any, img_dir: Path) -> str:
    """Feature ops: ns per op of every peer that has the op (log scale)."""
    peers = _feature_peers(res)
    ops = list(FEATURE_OPS)
    fig, ax = plt.subplots(figsize=(13, 6.5))
    width = 0.8 / max(1, len(peers))
    top = 1.0
    for i, p in enumerate(peers):
        xs, ys = [], []
        for j, op in enumerate(ops):
            r = feature_result(res, p.key, op)
            if r is not None and r.net > 0:
                xs.append(j + i * width)
                ys.append(r.net)
        ax.bar(xs, ys, width, label=p.label)
        top = max([top, *ys])
    ax.set_yscale("log")
    ax.set_ylim(top=top * 8)  # room for the legend above the bars
    ax.set_xticks([j + width * (len(peers) - 1) / 2 for j in range(len(ops))])
    ax.set_xticklabels(
        [FEATURE_OPS[o] for o in ops], rotation=30, ha="right", fontsize=8
    )
    ax.set_ylabel("ns per op (net, median; log scale)")
    ax.set_title(
        f"Feature operations, {FEATURE_DATASET.label} (get_many / set_many: "
        f"per call of {BATCH_KEYS} keys; no bar: the peer has no such op)"
    )
    ax.legend(fontsize=8, ncol=5, loc="upper left")
    ax.grid(axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    name = "bench-features.png"
    fig.savefig(img_dir / name, dpi=110)
    plt.close(fig)
    return name


def _mp_chart(
    res: BenchResults, plt: Any, img_dir: Path, nkeys: int, peers: list[PeerInfo]
) -> str | None:
    """shmdict by process count, and every peer at N processes."""
    procs = _procs(res)
    runs = res.mp.get(nkeys, {})
    if not procs or not runs:
        return None
    wls = list(WORKLOADS)
    fig, axes = plt.subplots(1, 2, figsize=(15, 5))
    width = 0.8 / len(procs)
    if "shmdict" in runs:
        for i, n in enumerate(procs):
            got = [mp_result(res, "shmdict", w.key, n, nkeys) for w in wls]
            ys = [r.throughput / 1e6 if r else 0 for r in got]
            axes[0].bar(
                [j + i * width for j in range(len(wls))],
                ys,
                width,
                label=f"{n} process{'es' if n > 1 else ''}",
            )
        axes[0].set_xticks([j + width * (len(procs) - 1) / 2 for j in range(len(wls))])
        axes[0].set_xticklabels(
            [w.key for w in wls], rotation=30, ha="right", fontsize=8
        )
        axes[0].set_ylabel("aggregate Mops/s")
        axes[0].set_title(
            f"shmdict: throughput by number of processes, {human_count(nkeys)} keys"
        )
        axes[0].legend(fontsize=8)
        axes[0].grid(axis="y", alpha=0.3)
    top = procs[-1]
    mp_peers = [p for p in peers if p.key in runs]
    width = 0.8 / max(1, len(mp_peers))
    for i, p in enumerate(mp_peers):
        ys = []
        for w in wls:
            r = mp_result(res, p.key, w.key, top, nkeys)
            ys.append(r.throughput / 1e6 if r else 0)
        axes[1].bar([j + i * width for j in range(len(wls))], ys, width, label=p.label)
    axes[1].set_yscale("log")
    axes[1].set_xticks([j + width * (len(mp_peers) - 1) / 2 for j in range(len(wls))])
    axes[1].set_xticklabels([w.key for w in wls], rotation=30, ha="right", fontsize=8)
    axes[1].set_ylabel("aggregate Mops/s (log scale)")
    axes[1].set_title(f"All peers at {top} processes, {human_count(nkeys)} keys")
    axes[1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1))
    axes[1].grid(axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    name = f"bench-multiproc-{human_count(nkeys)}.png"
    fig.savefig(img_dir / name, dpi=110)
    plt.close(fig)
    return name


def write_report(res: BenchResults, out: Path, img_dir: Path) -> list[str]:
    """Write the charts and the Markdown file; return the chart names."""
    charts = render_charts(res, img_dir)
    try:
        img_rel = str(img_dir.resolve().relative_to(out.resolve().parent))
    except ValueError:
        img_rel = str(img_dir.resolve())
    out.write_text(render_markdown(res, img_rel, charts))
    return charts


def summary_lines(res: BenchResults) -> list[str]:
    """A short plain-text summary for the terminal."""
    lines = []
    for g in evaluate_goals(res):
        lines.append(f"  [{g.status:6}] {g.text}: {g.measured}")
    return lines

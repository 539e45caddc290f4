"""The report's part for the rows of issue 14: goals, headline, details.

``report.py`` calls :func:`real_goals` (tuples for its Goal table),
:func:`headline_section` (the realistic rows first, the best case beside
them, labelled as such) and :func:`real_section` (every row).
"""

from __future__ import annotations

from typing import Any

from common import MIX_TTL, MPResult, fmt_ns, human_bytes, human_count
from realistic import (
    NEAR_COUNTS,
    SCALE_KEYS,
    SCALE_OPS,
    WRITE_COUNTS,
    WRITER_COUNTS,
    WRITER_RATES,
    Pair,
    RealResults,
)
from webmix import MIX_KEYS, MIX_PROCS, MIX_VSIZES

GoalRow = tuple[str, str, str, str]  # text, measured, status, detail

#: "Never slower with the cache on": judged with this margin for noise.
NEAR_MARGIN = 1.05
WRITE_NAMES = {"set": "set (overwrite)", "set_new": "set (new key)", "delete": "delete"}
SCALE_NAMES = {**WRITE_NAMES, "incr": "incr"}
#: The mix's goals: peer -> (shmdict / peer throughput at least, wording).
MIX_GOALS = {
    "dict": (0.9, "two private plain dicts"),
    "lmdb": (5, "lmdb"),
    "diskcache": (50, "diskcache"),
    "redis": (50, "redis"),
    "manager": (50, "Manager().dict()"),
}


def _real(res: Any) -> RealResults | None:
    return getattr(res, "real", None)


def _row(res: Any, kind: str, nkeys: int, variant: str) -> Pair | None:
    real = _real(res)
    return real.rows.get((kind, nkeys, variant)) if real else None


def _why(res: Any, kind: str, nkeys: int, variant: str) -> str:
    real = _real(res)
    if real is None:
        return getattr(res, "real_error", "") or "not run (see --only)"
    return real.missing.get((kind, nkeys, variant), "not run")


def _x(r: float | None) -> str:
    return "-" if r is None else f"x{r:.2f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _counts(res: Any, kind: str, variant: str) -> list[int]:
    real = _real(res)
    if real is None:
        return []
    return sorted(k[1] for k in real.rows if k[0] == kind and k[2] == variant)


def _mix(res: Any, vsize: int, peer: str) -> MPResult | None:
    return getattr(res, "mix", {}).get(vsize, {}).get(peer)


def _mix_ratio(res: Any, vsize: int, peer: str) -> float | None:
    s, p = _mix(res, vsize, "shmdict"), _mix(res, vsize, peer)
    if s is None or p is None or p.throughput <= 0:
        return None
    return s.throughput / p.throughput


def _worst(
    cells: list[tuple[str, float | None]], high_is_bad: bool = True
) -> tuple[str, float] | None:
    have = [(w, r) for w, r in cells if r is not None]
    if not have:
        return None
    return (
        max(have, key=lambda t: t[1]) if high_is_bad else min(have, key=lambda t: t[1])
    )


# -------------------------------------------------------------------- goals
def real_goals(res: Any) -> list[GoalRow]:
    """The goals of issue 14, judged on this run (median per-pair ratios)."""
    goals: list[GoalRow] = []
    quick = res.settings.quick
    for variant, what in (
        ("plain", "no expiry"),
        ("ttl", f"values with a {MIX_TTL} s expiry"),
    ):
        text = f"get (hit) <= 2x plain dict d.get at every key count 1k..1M, {what}"
        counts = _counts(res, "get", variant)
        cells = [(human_count(n), _row(res, "get", n, variant).ratio) for n in counts]  # type: ignore[union-attr]
        goals.append(
            _judge(text, cells, lambda r: r <= 2, "at", _why(res, "get", 1000, variant))
        )
        if quick and goals[-1][2] != "n/a":
            goals[-1] = (*goals[-1][:3], "quick run: 1M keys not run")
    for rate in WRITER_RATES[-1:]:
        text = (
            f"get (hit) <= 2.5x plain dict d.get while another process writes "
            f"{rate // 1000}k/s to other keys"
        )
        cells = []
        notes = []
        for n in WRITER_COUNTS:
            p = _row(res, "writer", n, str(rate))
            cells.append((f"{human_count(n)} keys", p.ratio if p else None))
            if p:
                notes.append(f"{human_count(n)}: {p.note}")
        g = _judge(
            text, cells, lambda r: r <= 2.5, "at", _why(res, "writer", 1000, str(rate))
        )
        goals.append((*g[:3], "; ".join(notes) or g[3]))
    text = (
        "per-handle cache never slower on than off (get hit, "
        f"{'/'.join(human_count(n) for n in NEAR_COUNTS)} keys, "
        "with and without expiry)"
    )
    cells = [
        (
            f"{human_count(n)} keys, {'expiry' if v == 'ttl' else 'no expiry'}",
            p.ratio if (p := _row(res, "near", n, v)) else None,
        )
        for n in NEAR_COUNTS
        for v in ("plain", "ttl")
    ]
    g = _judge(
        text, cells, lambda r: r <= NEAR_MARGIN, "at", _why(res, "near", 1000, "plain")
    )
    goals.append(
        (
            *g[:3],
            f"on / off time, median of pairs; met if <= {NEAR_MARGIN} (noise)"
            if g[2] != "n/a"
            else g[3],
        )
    )
    for op, name in WRITE_NAMES.items():
        text = (
            f"{name} <= 3x plain dict at "
            f"{' and '.join(human_count(n) for n in WRITE_COUNTS)} keys (paired)"
        )
        cells = [
            (f"{human_count(n)} keys", p.ratio if (p := _row(res, op, n, "")) else None)
            for n in WRITE_COUNTS
        ]
        goals.append(
            _judge(text, cells, lambda r: r <= 3, "at", _why(res, op, 1000, ""))
        )
    real = _real(res)
    for op, name in SCALE_NAMES.items():
        text = (
            f"2 processes writing distinct keys, {name}: shmdict's scaling >= 80% "
            "of private plain dicts'"
        )
        sc = real.scaling.get(op) if real else None
        if sc is None or sc.shm is None or sc.dict is None:
            why = (real.scaling_error if real else "") or "not run (see --only)"
            goals.append((text, "-", "n/a", why))
            continue
        rel = sc.shm / sc.dict
        goals.append(
            (
                text,
                f"x{sc.shm:.2f} vs x{sc.dict:.2f} ({rel:.0%} of the dicts')",
                "met" if rel >= 0.8 else "missed",
                "",
            )
        )
    for peer, (limit, name) in MIX_GOALS.items():
        text = (
            f"web-cache mix throughput >= {limit:g}x {name} "
            f"({', '.join(human_bytes(v) for v in MIX_VSIZES)} values)"
        )
        cells = [(human_bytes(v), _mix_ratio(res, v, peer)) for v in MIX_VSIZES]
        why = getattr(res, "mix_skipped", {}).get(peer) or (
            "not run (see --only)" if not getattr(res, "mix", {}) else "not measured"
        )
        goals.append(
            _judge(text, cells, lambda r, x=limit: r >= x, "at", why, high_is_bad=False)
        )
    return goals


def _judge(
    text: str,
    cells: list[tuple[str, float | None]],
    ok: Any,
    at: str,
    why: str,
    high_is_bad: bool = True,
) -> GoalRow:
    worst = _worst(cells, high_is_bad)
    if worst is None:
        return (text, "-", "n/a", why)
    have = [(w, r) for w, r in cells if r is not None]
    every = all(ok(r) for _, r in have) and len(have) == len(cells)
    measured = f"worst x{worst[1]:.2f} {at} {worst[0]}" + (
        f" ({', '.join(f'{w} x{r:.2f}' for w, r in have)})" if len(have) > 1 else ""
    )
    status = "met" if every else "missed"
    detail = "" if len(have) == len(cells) else "some rows not measured"
    return (text, measured, status, detail)


# ----------------------------------------------------------------- headline
def headline_section(res: Any) -> str:
    """The realistic rows first, the best case beside them, labelled."""
    rows: list[list[str]] = []
    for v in MIX_VSIZES:
        s, d = _mix(res, v, "shmdict"), _mix(res, v, "dict")
        if s is None:
            continue
        r = s.throughput / d.throughput if d else None
        rows.append(
            [
                f"web-cache mix: {MIX_PROCS} processes, 95/5 get/set, "
                f"{human_count(MIX_KEYS)} keys drawn Zipf 0.99, every value with an "
                f"expiry, {human_bytes(v)} values",
                f"{s.throughput / 1e6:.2f} Mops/s",
                f"{d.throughput / 1e6:.2f} Mops/s (two private dicts)" if d else "-",
                f"{_x(r)} the throughput" if r else "-",
                ">= x0.9",
            ]
        )
    for n in _counts(res, "get", "ttl"):
        p = _row(res, "get", n, "ttl")
        assert p is not None
        rows.append(
            _ns_row(
                f"get (hit), values with an expiry, {human_count(n)} keys", p, "<= x2"
            )
        )
    slots = _near_slots(res)
    for n in _counts(res, "get", "plain"):
        if n <= slots:
            continue
        p = _row(res, "get", n, "plain")
        assert p is not None
        rows.append(
            _ns_row(
                f"get (hit), no expiry, {human_count(n)} keys (beyond the per-handle "
                f"cache's {slots:,} slots)",
                p,
                "<= x2",
            )
        )
    for n in WRITER_COUNTS:
        rate = WRITER_RATES[-1]
        p = _row(res, "writer", n, str(rate))
        if p is None:
            continue
        rows.append(
            _ns_row(
                f"get (hit), {human_count(n)} keys, another process writing "
                f"{rate // 1000}k/s to other keys ({p.note})",
                p,
                "<= x2.5",
            )
        )
    best = _row(res, "get", 1000, "plain")
    if best is not None:
        rows.append(
            _ns_row(
                "**best case** (no expiry, keys fit the per-handle cache, no "
                "writers): get (hit), 1k keys",
                best,
                "<= x2",
            )
        )
    if not rows:
        return ""
    return (
        "What a web cache sees first: a mix over many keys, every value with an "
        "expiry, other processes writing; the best case last, labelled as such. "
        "Ratios: shmdict's time over the plain dict's (lower is better), or its "
        "throughput over two private dicts' (higher is better), each the median of "
        "per-pair ratios in this run (see *Realistic workloads* below).\n\n"
        + _table(["workload", "shmdict", "plain dict", "shmdict / dict", "goal"], rows)
    )


def _near_slots(res: Any) -> int:
    """The per-handle cache's default size: what shmdict says, else 4,096
    (NEAR_SLOTS in src/shmdict/_core/binding.h before the switch came)."""
    real = _real(res)
    return getattr(real, "near_default", None) or 4096


def _ns_row(what: str, p: Pair, goal: str) -> list[str]:
    return [what, fmt_ns(p.a_net), fmt_ns(p.b_net), f"{_x(p.ratio)} the time", goal]


# ------------------------------------------------------------------ details
def real_section(res: Any) -> str:
    """Every row of issue 14, with how it was measured."""
    real = _real(res)
    parts: list[str] = []
    if real is None and not getattr(res, "mix", {}):
        return ""
    parts.append(
        "Each row is a pair of sides timed back to back in every repetition, the "
        "order alternating; cells: median **net** ns/op of each side (the empty "
        "loop's cost subtracted), and the median of the per-pair net ratios. The "
        "plain dict holds the same 16 B values, each key its own object; shmdict's "
        f"values *with an expiry* were stored with `d.set(k, v, {MIX_TTL})`."
    )
    if real is not None:
        rows = []
        for n in sorted({k[1] for k in real.rows if k[0] == "get"}):
            cells = [human_count(n)]
            for v in ("plain", "ttl"):
                p = real.rows.get(("get", n, v))
                cells += (
                    [fmt_ns(p.a_net), fmt_ns(p.b_net), _x(p.ratio)]
                    if p
                    else ["-", "-", "-"]
                )
            rows.append(cells)
        if rows:
            parts.append(
                "### get (hit) by key count\n\n"
                + _table(
                    [
                        "keys",
                        "no expiry: shmdict",
                        "plain dict",
                        "ratio",
                        "with expiry: shmdict",
                        "plain dict",
                        "ratio",
                    ],
                    rows,
                )
            )
        rows = []
        for n in NEAR_COUNTS:
            for v in ("plain", "ttl"):
                p = real.rows.get(("near", n, v))
                what = "with expiry" if v == "ttl" else "no expiry"
                if p:
                    rows.append(
                        [
                            human_count(n),
                            what,
                            fmt_ns(p.a_net),
                            fmt_ns(p.b_net),
                            _x(p.ratio),
                        ]
                    )
                elif ("near", n, v) in real.missing:
                    rows.append(
                        [human_count(n), what, real.missing["near", n, v], "", ""]
                    )
        if rows:
            parts.append(
                "### get (hit), per-handle cache on and off\n\n"
                "On: the default; off: `near_cache=0`. Ratio: on / off (above 1: "
                "slower with the cache on).\n\n"
                + _table(["keys", "values", "cache on", "cache off", "on / off"], rows)
            )
        rows = []
        for op, name in WRITE_NAMES.items():
            for n in WRITE_COUNTS:
                p = real.rows.get((op, n, ""))
                if p:
                    rows.append(
                        [
                            name,
                            human_count(n),
                            fmt_ns(p.a_net),
                            fmt_ns(p.b_net),
                            _x(p.ratio),
                        ]
                    )
        if rows:
            parts.append(
                "### Writes\n\n"
                "shmdict `d[k] = v` / `del d[k]` against the dict's. Overwrites walk "
                "every key in shuffled order, two values per key alternating pass by "
                "pass (each its own object, never the bytes stored); new keys are "
                "inserted in batches of up to 10k and deleted again untimed; deletes "
                "take up to 10k existing keys per batch, put back untimed.\n\n"
                + _table(["op", "keys", "shmdict", "plain dict", "ratio"], rows)
            )
        rows = []
        for n in WRITER_COUNTS:
            for rate in WRITER_RATES:
                p = real.rows.get(("writer", n, str(rate)))
                if p:
                    rows.append(
                        [
                            human_count(n),
                            f"{rate:,}/s",
                            p.note.replace(" achieved", ""),
                            fmt_ns(p.a_net),
                            fmt_ns(p.b_net),
                            _x(p.ratio),
                        ]
                    )
                elif ("writer", n, str(rate)) in real.missing:
                    rows.append(
                        [
                            human_count(n),
                            f"{rate:,}/s",
                            real.missing["writer", n, str(rate)],
                            "",
                            "",
                            "",
                        ]
                    )
        if rows:
            parts.append(
                "### get (hit) while another process writes\n\n"
                "A child process opens the same dict and overwrites 1,000 other "
                "keys (16 B values, alternating) at the target rate, paced by "
                "sleeping: every 1 ms it makes the writes due by then (rate x "
                "elapsed time, minus those done) and sleeps again, dropping any "
                "backlog of more than 50 ms rather than bursting. It runs "
                "throughout the row's pairs, the dict's side too (the dict is "
                "private and has no writer; the writer's CPU time is there for "
                "both). *Achieved* is its writes over its lifetime.\n\n"
                + _table(
                    [
                        "keys",
                        "target",
                        "achieved writes/s",
                        "shmdict get",
                        "plain dict get",
                        "ratio",
                    ],
                    rows,
                )
            )
        if real.scaling or real.scaling_error:
            rows = []
            for op in SCALE_OPS:
                sc = real.scaling.get(op)
                if sc is None:
                    continue
                import statistics as st

                rows.append(
                    [
                        SCALE_NAMES[op],
                        f"{st.median(sc.shm_one) / 1e6:.2f}",
                        f"{st.median(sc.shm_two) / 1e6:.2f}",
                        _x(sc.shm),
                        f"{st.median(sc.dict_one) / 1e6:.2f}",
                        f"{st.median(sc.dict_two) / 1e6:.2f}",
                        _x(sc.dict),
                        f"{sc.shm / sc.dict:.0%}" if sc.shm and sc.dict else "-",
                    ]
                )
            body = (
                _table(
                    [
                        "op",
                        "shmdict 1 proc (Mops/s)",
                        "2 procs",
                        "scaling",
                        "private dicts 1 proc",
                        "2 procs",
                        "scaling",
                        "shmdict's scaling / dicts'",
                    ],
                    rows,
                )
                if rows
                else real.scaling_error
            )
            parts.append(
                "### 1 and 2 processes writing distinct keys\n\n"
                f"Each process writes its own {SCALE_KEYS:,} keys of one shared "
                "shmdict (the dicts: each process its own private dict, the same "
                "keys), repeating its batch for the same wall time from a barrier: "
                "the timed op over its keys, then the untimed undo (a new key is "
                "deleted again, a deleted key put back; overwrites alternate two "
                "values; incr needs none). Throughput: each process's ops over its "
                "timed ns, summed. The four configurations (shmdict and dicts, 1 "
                "and 2 processes) run in turn within each repetition, the order "
                "rotating; scaling: median over repetitions of 2-process / "
                "1-process throughput of the same repetition."
                + (f"\n\n{real.scaling_error}" if real.scaling_error and rows else "")
                + "\n\n"
                + body
            )
        if real.errors:
            parts.append("\n".join(f"- {e}" for e in real.errors))
    mix = getattr(res, "mix", {})
    if mix:
        parts.append(_mix_section(res))
    return "\n\n".join(parts)


def _mix_section(res: Any) -> str:
    from peers import all_peers

    how = {p.key: p.set_ttl_note for p in all_peers()}
    labels = {p.key: p.label for p in res.peers}
    keys = [p.key for p in res.peers if any(p.key in r for r in res.mix.values())]
    rows = []
    for key in keys:
        cells = [labels.get(key, key), how.get(key, "")]
        for v in MIX_VSIZES:
            r = _mix(res, v, key)
            q = _mix_ratio(res, v, key)
            cells.append(f"{r.throughput / 1e6:.3f} Mops/s" if r else "-")
            cells.append("" if key == "shmdict" else _x(q))
        rows.append(cells)
    header = ["peer", "expiry"]
    for v in MIX_VSIZES:
        header += [f"{human_bytes(v)} values", "shmdict / peer"]
    skipped = getattr(res, "mix_skipped", {})
    notes = "\n".join(f"- {labels.get(k, k)}: {why}" for k, why in skipped.items())
    return (
        "### The web-cache mix\n\n"
        f"{MIX_PROCS} processes, each its own sequence of ops: 95% get, 5% set; "
        f"keys drawn from Zipf(s=0.99) over {MIX_KEYS:,} keys (ranks mapped to a "
        "shuffled key order), precomputed with a fixed seed (numpy's generator "
        "and an inverse-CDF lookup, or `random.choices` without numpy); the store "
        "is filled first, each key its own value, every value with an expiry where "
        "the peer has one (column *expiry*). A set stores one of two values of the "
        "row's size that differ from the stored ones. Throughput: all ops / (last "
        "end - first start), median of the runs; shmdict / peer: throughput ratio "
        "(higher: shmdict faster).\n\n"
        + _table(header, rows)
        + (f"\n\n{notes}" if notes else "")
    )


# -------------------------------------------------------------------- chart
def realistic_chart(res: Any, plt: Any, img_dir: Any) -> str | None:
    """get (hit) by key count, with and without expiry, beside the dict;
    and the web-cache mix's throughput of every peer."""
    real = _real(res)
    mix = getattr(res, "mix", {})
    if (real is None or not real.rows) and not mix:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(14, 4.8))
    ax = axes[0]
    for variant, label, side in (
        ("plain", "shmdict, no expiry", "a"),
        ("ttl", "shmdict, values with an expiry", "a"),
        ("plain", "plain dict", "b"),
    ):
        xs = _counts(res, "get", variant)
        ys = [getattr(_row(res, "get", n, variant), f"{side}_net") for n in xs]
        if xs:
            ax.plot(xs, ys, marker="o", label=label)
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="keys",
        ylabel="ns per get (hit), net, median",
        title="get (hit) by key count, 16 B values (paired with the dict)",
    )
    ax.grid(which="both", alpha=0.3)
    ax.legend(fontsize=8)
    ax = axes[1]
    labels = {p.key: p.label for p in res.peers}
    peers = [p.key for p in res.peers if any(p.key in r for r in mix.values())]
    width = 0.8 / max(1, len(MIX_VSIZES))
    for i, v in enumerate(MIX_VSIZES):
        ys = [
            (_mix(res, v, k).throughput / 1e6 if _mix(res, v, k) else 0) for k in peers
        ]
        ax.bar(
            [j + i * width for j in range(len(peers))], ys, width, label=human_bytes(v)
        )
    ax.set_yscale("log")
    ax.set_xticks([j + width * (len(MIX_VSIZES) - 1) / 2 for j in range(len(peers))])
    ax.set_xticklabels(
        [labels.get(k, k) for k in peers], rotation=30, ha="right", fontsize=8
    )
    ax.set_ylabel("Mops/s, both processes (log scale)")
    ax.set_title(
        f"Web-cache mix: {MIX_PROCS} processes, 95/5, {human_count(MIX_KEYS)} keys "
        "Zipf 0.99, expiry"
    )
    ax.grid(axis="y", which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    name = "bench-realistic.png"
    fig.savefig(img_dir / name, dpi=110)
    plt.close(fig)
    return name

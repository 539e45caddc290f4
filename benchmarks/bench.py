"""The benchmark suite: shmdict against its peers, in one run.

    python benchmarks/bench.py [--quick] [--out BENCHMARKS.md]

Measures, in this order, printing progress as it goes:

1. single-process cost per operation (get hit/miss, set overwrite/new key,
   incr, delete) of shmdict and every Python peer that imports and starts
   (plain dict, lmdb, diskcache, redis-py + hiredis against a private
   redis-server, Manager().dict(), UltraDict, shared-memory-dict), on data
   sets of 1k/100k/1M keys and 16 B/1 KiB/64 KiB values, plus sampled
   per-op latencies (p50/p99);
2. the same workloads in PHP on APCu and in Lua on ngx.shared.DICT, timed
   inside those languages;
3. multi-process throughput at 1, 2 and N = os.cpu_count() processes
   (distinct-key reads and writes, one hot key, 95/5 and 50/50 mixes over
   uniform and Zipf keys) and a counter incremented by every process;
4. the feature ops (add, replace, cas, pop, setdefault, get_stale, incr
   with init, lpush + rpop, llen, get_many / set_many) on 1k keys x 16 B,
   for shmdict, the plain dict (the in-process ceiling), APCu and
   ngx.shared.DICT where they have the op, and redis's one-command
   equivalents;
5. the realistic rows (``realistic.py``; sections real, writer, scaling),
   each shmdict beside a plain dict, paired repetition by repetition: get
   (hit) at 1k to 1M keys with values stored without and with an expiry,
   the per-handle cache on and off, set / set of a new key / delete at 1k
   and 100k keys, get while another process writes other keys at 1k, 10k
   and 100k writes/s, and 1 and 2 processes writing distinct keys;
6. the web-cache mix (``webmix.py``; section mix): 2 processes, 95/5
   get/set over 100k keys drawn Zipf(0.99), every value with an expiry, at
   16 B and 1 KiB values, on every Python peer that holds 100k keys;
7. shmdict's memory figures (capacity of 64 MiB, capacity after churn,
   cost of new(16 GiB));

(in the order of ``SECTIONS``), then writes the Markdown report (the
realistic rows first with the best case beside them, machine, goals
met/missed, one table per workload with ratios to shmdict from this run,
skipped peers and why) and PNG charts under docs/img/. ``--quick`` runs only
1k-key per-op data sets, fewer key counts and shorter repetitions.

A peer that cannot be imported, installed or started is reported as
"skipped (reason)"; ``benchmarks/setup.sh`` installs them all.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import os
import pickle
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def _ensure_shmdict_importable() -> None:
    """Use an installed shmdict if it has its extension, else the repo's src/."""
    try:
        import shmdict

        if hasattr(shmdict, "new"):
            return
    except ImportError:
        pass
    for name in [m for m in sys.modules if m == "shmdict" or m.startswith("shmdict.")]:
        del sys.modules[name]
    sys.path.insert(0, str(REPO / "src"))


_ensure_shmdict_importable()

import realistic  # noqa: E402
import webmix  # noqa: E402
from common import (  # noqa: E402
    FEATURE_DATASET,
    FEATURE_OPS,
    Dataset,
    PeerRun,
    Settings,
    progress,
    short_error,
)
from features import measure_features  # noqa: E402
from isolate import ChildFailed, run_in_child  # noqa: E402
from memory import measure_memory  # noqa: E402
from multiproc import measure_peer_mp  # noqa: E402
from native_peers import Apcu, NgxSharedDict, ngx_dict_size_mb  # noqa: E402
from peers import Peer, all_peers  # noqa: E402
from perop import measure_peer  # noqa: E402
from realistic import RealResults  # noqa: E402
from report import BASE, BenchResults, PeerInfo, summary_lines, write_report  # noqa: E402


def machine_info() -> dict[str, str]:
    """CPU, cores, kernel, Python, date: the report's first table."""
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = "?"
    try:
        with open("/proc/meminfo") as f:
            kib = int(f.readline().split()[1])
            mem = f"{kib / (1 << 20):.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    shm = shutil.disk_usage("/dev/shm") if os.path.isdir("/dev/shm") else None
    try:
        import shmdict

        shm_version = getattr(shmdict, "__version__", "?")
    except ImportError:
        shm_version = "not importable"
    return {
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "CPU": cpu,
        "cores (os.cpu_count)": str(os.cpu_count()),
        "memory": mem,
        "kernel": f"{platform.system()} {platform.release()}",
        "OS": _os_name(),
        "Python": f"{platform.python_implementation()} {platform.python_version()}",
        "shmdict": shm_version,
        "/dev/shm": f"tmpfs, {shm.total / (1 << 30):.0f} GiB" if shm else "absent",
        "load average at start": _loadavg(),
    }


def _os_name() -> str:
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.platform()


def _loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def _dist_version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return ""


def _version(peer: Peer) -> str:
    """The version string the report shows for a Python peer."""
    if peer.key in ("dict", "manager"):
        return f"Python {platform.python_version()}"
    if peer.key == "shmdict":
        import shmdict

        return str(getattr(shmdict, "__version__", ""))
    dist = {
        "lmdb": "lmdb",
        "diskcache": "diskcache",
        "redis": "redis",
        "ultradict": "UltraDict",
        "smd": "shared-memory-dict",
    }.get(peer.key)
    v = _dist_version(dist) if dist else ""
    if peer.key == "redis":
        v += f", hiredis {_dist_version('hiredis')}"
        server = getattr(peer, "version", "")
        if server:
            v += f", redis-server {server}"
    return v


#: The sections of a run, in the order they run. real, writer, scaling and
#: mix are the rows of issue 14 (realistic.py, webmix.py).
SECTIONS = (
    "perop",
    "native",
    "features",
    "real",
    "writer",
    "scaling",
    "mp",
    "mix",
    "memory",
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--quick", action="store_true", help="1k keys only, fewer repetitions"
    )
    ap.add_argument(
        "--out", default=str(REPO / "BENCHMARKS.md"), help="Markdown report to write"
    )
    ap.add_argument(
        "--img-dir", default=str(REPO / "docs" / "img"), help="where the PNG charts go"
    )
    ap.add_argument(
        "--only",
        default=",".join(SECTIONS),
        help=f"comma-separated sections to run ({', '.join(SECTIONS)})",
    )
    ap.add_argument("--peers", default="", help="comma-separated peer keys to run")
    ap.add_argument(
        "--save",
        default="",
        help="where to pickle the raw results (default: a file in the temp dir)",
    )
    ap.add_argument(
        "--report-from", default="", help="only re-render a report from --save output"
    )
    args = ap.parse_args(argv)
    unknown = set(filter(None, args.only.split(","))) - set(SECTIONS)
    if unknown:
        ap.error(
            f"--only: unknown section(s) {', '.join(sorted(unknown))}; "
            f"choose from {', '.join(SECTIONS)}"
        )
    return args


def run(args: argparse.Namespace) -> BenchResults:
    """Check and start the peers, run the chosen sections, stop the peers."""
    settings = Settings.make(args.quick)
    sections = set(args.only.split(","))
    wanted = set(filter(None, args.peers.split(",")))
    t_start = time.monotonic()
    res = BenchResults(settings=settings, machine=machine_info(), peers=[])
    progress(
        f"shmdict benchmarks ({'quick' if settings.quick else 'full'}): "
        f"{res.machine['CPU']}, {res.machine['cores (os.cpu_count)']} cores, "
        f"load {res.machine['load average at start']}"
    )

    # ---- Python peers: check and start
    peers: list[Peer] = []
    for peer in all_peers():
        if wanted and peer.key not in wanted:
            continue
        info = PeerInfo(peer.key, peer.label, peer.notes, "python")
        info.feature_notes = peer.feature_notes
        reason = peer.check()
        if reason is None:
            try:
                peer.start()
                peers.append(peer)
            except Exception as exc:
                reason = f"could not start: {short_error(exc)}"
        info.skipped = reason
        info.version = _version(peer) if reason is None else ""
        res.peers.append(info)
        state = f"ok {info.version}" if reason is None else f"SKIPPED: {reason}"
        progress(f"peer {peer.label}: {state}")

    apcu, ngx = Apcu(), NgxSharedDict()
    natives: list[Apcu | NgxSharedDict] = [
        n for n in (apcu, ngx) if not wanted or n.key in wanted
    ]
    try:
        if "perop" in sections:
            _run_perop(res, peers, settings)
            res.load_samples.append(_loadavg())
        if "native" in sections:
            _run_natives(res, natives, settings, with_capacity="memory" in sections)
            res.load_samples.append(_loadavg())
        if "features" in sections:
            _run_features(res, peers, natives, settings)
            res.load_samples.append(_loadavg())
        if {"real", "writer", "scaling"} & sections:
            if any(p.key == "shmdict" for p in peers):
                _run_real(res, settings, sections)
            else:
                res.real_error = "shmdict not available"
            res.load_samples.append(_loadavg())
        if "mp" in sections:
            _run_mp(res, peers, settings)
            res.load_samples.append(_loadavg())
        if "mix" in sections:
            _run_mix(res, peers, natives, settings)
            res.load_samples.append(_loadavg())
        if "memory" in sections:
            _run_memory(res, peers, settings)
    finally:
        for peer in peers:
            try:
                peer.stop()
            except Exception as exc:
                progress(f"stopping {peer.label}: {short_error(exc)}")
    res.elapsed_s = time.monotonic() - t_start
    res.load_end = _loadavg()
    return res


def _run_perop(res: BenchResults, peers: list[Peer], settings: Settings) -> None:
    """Single-process per-op workloads, one child process per peer/data set."""
    for ds in settings.datasets:
        progress(f"single-process per-op, {ds.label}")
        for peer in peers:
            why = peer.fits(ds)
            if why:
                res.not_run.setdefault(peer.key, {})[ds] = why
                continue
            try:
                run_, lat = run_in_child(
                    lambda p=peer, d=ds: measure_peer(p, d, settings, d == BASE),
                    timeout=1800,
                )
            except ChildFailed as exc:
                run_, lat = PeerRun(error=short_error(str(exc))), {}
                progress(f"    {peer.label} {ds.label}: FAILED {run_.error}")
            res.perop.setdefault(peer.key, {})[ds] = run_
            if lat:
                res.latency[peer.key] = lat


def _run_mp(res: BenchResults, peers: list[Peer], settings: Settings) -> None:
    """Multi-process throughput and the contended counter, per peer."""
    for nkeys in settings.mp_key_counts:
        n = os.cpu_count()
        progress(f"multi-process: {nkeys:,} keys, 1, 2, N={n} processes")
        runs = res.mp.setdefault(nkeys, {})
        skipped = res.mp_skipped.setdefault(nkeys, {})
        for peer in peers:
            why = peer.fits(Dataset(nkeys, 16))
            if why:
                skipped[peer.key] = f"{nkeys:,} keys {why}"
                continue
            try:
                runs[peer.key] = run_in_child(
                    lambda p=peer, k=nkeys: measure_peer_mp(p, settings, k),
                    timeout=3600,
                )
            except ChildFailed as exc:
                skipped[peer.key] = f"failed: {short_error(str(exc))}"
                progress(f"    {peer.label}: FAILED {skipped[peer.key]}")


def _run_real(res: BenchResults, settings: Settings, sections: set[str]) -> None:
    """The paired shmdict-vs-dict rows of realistic.py, a child per key count."""
    real = res.real = RealResults()
    jobs: list[tuple[str, Any]] = []
    if "real" in sections:
        for nkeys in realistic.get_counts(settings):
            jobs.append(
                (
                    f"get (hit) with and without expiry, writes: {nkeys:,} keys",
                    functools.partial(realistic.measure_get, nkeys, settings),
                )
            )
    if "writer" in sections:
        for nkeys in realistic.WRITER_COUNTS:
            jobs.append(
                (
                    f"get (hit) under a writer: {nkeys:,} keys",
                    functools.partial(realistic.measure_writer, nkeys, settings),
                )
            )
    if "scaling" in sections:
        jobs.append(
            (
                "1 and 2 processes writing distinct keys",
                functools.partial(realistic.measure_scaling, settings),
            )
        )
    for what, fn in jobs:
        progress(f"realistic rows: {what}")
        try:
            realistic.merge(real, run_in_child(fn, timeout=1800))
        except ChildFailed as exc:
            real.errors.append(f"{what}: failed: {short_error(str(exc))}")
            progress(f"    FAILED {short_error(str(exc))}")


def _run_mix(
    res: BenchResults,
    peers: list[Peer],
    natives: list[Apcu | NgxSharedDict],
    settings: Settings,
) -> None:
    """The web-cache mix on every Python peer that holds 100k keys."""
    progress(
        f"web-cache mix: {webmix.MIX_PROCS} processes, 95/5 get/set, "
        f"{webmix.MIX_KEYS:,} keys, Zipf 0.99, values with expiry"
    )
    for vsize in webmix.MIX_VSIZES:
        runs = res.mix.setdefault(vsize, {})
        for peer in peers:
            why = peer.fits(Dataset(webmix.MIX_KEYS, vsize))
            if why:
                why = f"{webmix.MIX_KEYS:,} keys {why}"
            elif settings.quick and peer.key not in webmix.QUICK_PEERS:
                why = "not run with --quick (full run only)"
            if why:
                res.mix_skipped[peer.key] = why
                continue
            try:
                runs[peer.key] = run_in_child(
                    functools.partial(webmix.measure_mix, peer, settings, vsize),
                    timeout=1800,
                )
            except ChildFailed as exc:
                res.mix_skipped[peer.key] = f"failed: {short_error(str(exc))}"
                progress(f"    {peer.label}: FAILED {res.mix_skipped[peer.key]}")
    for native in natives:
        res.mix_skipped[native.key] = webmix.NATIVE_NA[native.key]


def _run_memory(res: BenchResults, peers: list[Peer], settings: Settings) -> None:
    """shmdict's capacity, churn and new(16 GiB) figures."""
    if not any(p.key == "shmdict" for p in peers):
        res.memory_error = "shmdict not available"
        return
    progress("memory: capacity, churn, new(16 GiB)")
    try:
        res.memory = run_in_child(lambda: measure_memory(settings), 1800)
    except ChildFailed as exc:
        res.memory_error = f"failed: {short_error(str(exc))}"


def _run_natives(
    res: BenchResults,
    natives: list[Apcu | NgxSharedDict],
    settings: Settings,
    with_capacity: bool,
) -> None:
    """Run APCu and ngx.shared.DICT (their own loops) on every data set."""
    datasets = list(settings.datasets)
    for native in natives:
        info = _native_info(res, native)
        reason = native.check()
        if reason is not None:
            info.skipped = reason
            progress(f"peer {native.label}: SKIPPED: {reason}")
            continue
        info.version = native.version
        progress(f"peer {native.label}: {native.version}, per-op workloads")
        if isinstance(native, NgxSharedDict):
            try:
                native.start(ngx_dict_size_mb(datasets, settings))
            except Exception as exc:
                info.skipped = f"could not start nginx: {short_error(exc)}"
                progress(f"    SKIPPED: {info.skipped}")
                continue
        try:
            runs = native.run(datasets, settings)
            res.perop[native.key] = runs
            for ds, r in runs.items():
                for op, o in r.results.items():
                    progress(
                        f"    {native.label:28} {ds.label:13} {op:10} "
                        f"{o.raw:10.1f} ns raw {o.net:10.1f} ns net  (n={o.n})"
                    )
                if r.error:
                    progress(f"    {native.label} {ds.label}: FAILED {r.error}")
            if with_capacity:
                res.native_capacity[native.key] = {
                    "16+16": native.capacity(16, 16),
                    "100+1024": native.capacity(100, 1024),
                }
        finally:
            if isinstance(native, NgxSharedDict):
                native.stop()


def _native_info(res: BenchResults, native: Apcu | NgxSharedDict) -> PeerInfo:
    """The report's entry for a native peer, added on first use."""
    for p in res.peers:
        if p.key == native.key:
            return p
    info = PeerInfo(native.key, native.label, native.notes, "native")
    info.feature_notes = native.feature_notes
    res.peers.append(info)
    return info


def _run_features(
    res: BenchResults,
    peers: list[Peer],
    natives: list[Apcu | NgxSharedDict],
    settings: Settings,
) -> None:
    """The feature ops: Python peers in a child each, then APCu and ngx."""
    ds = FEATURE_DATASET
    progress(f"feature ops, {ds.label}")
    for peer in peers:
        if not peer.feature_stmts:
            res.features_skipped[peer.key] = peer.feature_reason
            continue
        try:
            res.features[peer.key] = run_in_child(
                functools.partial(measure_features, peer, ds, settings), timeout=600
            )
        except ChildFailed as exc:
            res.features[peer.key] = PeerRun(error=short_error(str(exc)))
            progress(f"    {peer.label}: FAILED {res.features[peer.key].error}")
    for native in natives:
        info = _native_info(res, native)
        reason = native.check()
        if reason is not None:
            info.skipped = reason
            res.features_skipped[native.key] = reason
            progress(f"peer {native.label}: SKIPPED: {reason}")
            continue
        info.version = native.version
        progress(f"peer {native.label}: {native.version}, feature ops")
        if isinstance(native, NgxSharedDict):
            try:
                native.start(ngx_dict_size_mb([ds], settings))
            except Exception as exc:
                reason = f"could not start nginx: {short_error(exc)}"
                info.skipped = reason
                res.features_skipped[native.key] = reason
                progress(f"    SKIPPED: {reason}")
                continue
        try:
            run = native.run_features(ds, settings)
        finally:
            if isinstance(native, NgxSharedDict):
                native.stop()
        res.features[native.key] = run
        for op, o in run.results.items():
            progress(
                f"    {native.label:28} {FEATURE_OPS.get(op, op):28} "
                f"{o.raw:10.1f} ns raw {o.net:10.1f} ns net  (n={o.n})"
            )
        for note in run.notes:
            progress(f"    {native.label}: {note}")
        if run.error:
            progress(f"    {native.label}: FAILED {run.error}")


def main(argv: list[str] | None = None) -> int:
    """Run (or re-render), write the report, print the goals."""
    args = parse_args(argv)
    out = Path(args.out)
    img_dir = Path(args.img_dir)
    if args.report_from:
        with open(args.report_from, "rb") as f:
            res = pickle.load(f)
    else:
        res = run(args)
        save = args.save or os.path.join(
            tempfile.gettempdir(), "shmdict-bench-last.pkl"
        )
        Path(save).parent.mkdir(parents=True, exist_ok=True)
        with open(save, "wb") as f:
            pickle.dump(res, f)
        progress(f"raw results saved to {save} (re-render with --report-from)")
    out.parent.mkdir(parents=True, exist_ok=True)
    charts = write_report(res, out, img_dir)
    progress(
        f"wrote {out}" + (f" and {', '.join(charts)} in {img_dir}" if charts else "")
    )
    print("\nGoals:")
    print("\n".join(summary_lines(res)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""shmdict beside a plain dict in the settings of real workloads (issue 14).

Every row here is a *pair*: the same operations on the same keys, timed on
two sides (shmdict and a plain dict, or shmdict with its per-handle cache on
and off) back to back in each repetition, the order alternating from one
repetition to the next; a row's ratio is the median of the per-pair ratios
of net times (each side minus the empty loop), so that a change in the
machine's load between repetitions hits both sides of a pair alike.

Rows, each in a forked child of its own (see ``bench.py``):

* ``get``: get (hit) at 1k, 4k, 10k, 100k and 1M keys, values without an
  expiry and values stored with one (``common.MIX_TTL`` s); the plain dict
  holds the same values, each key its own object;
* ``near``: get (hit) at 1k and 100k keys with the per-handle cache on (the
  default) and off (``near_cache=0``), if shmdict has that switch;
* ``set`` / ``set_new`` / ``delete`` at 1k and 100k keys against the dict's
  ``d[k] = v`` and ``del d[k]``;
* ``writer``: get (hit) at 1k, 10k and 100k keys while another process
  writes other keys of the same dict at 1k, 10k and 100k writes/s (the
  dict has no writer: it is private);
* ``scaling``: set, set of a new key, delete and incr by 1 and by 2
  processes on distinct keys, shmdict (one shared dict) and plain dicts (one
  private dict per process) in the same run.
"""

from __future__ import annotations

import contextlib
import gc
import inspect
import multiprocessing
import random
import statistics
import textwrap
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from common import (
    MIX_TTL,
    Settings,
    distinct_value,
    human_count,
    key_name,
    progress,
    short_error,
)
from peers.shmdict_peer import shmdict_size, unique_name

_ctx = multiprocessing.get_context("fork")

#: Key counts of the get rows, of the rows with the cache on/off, of the
#: write rows and of the rows under a writer (full run; --quick: fewer).
GET_COUNTS = (1000, 4000, 10_000, 100_000, 1_000_000)
GET_COUNTS_QUICK = (1000, 4000, 10_000, 100_000)
NEAR_COUNTS = (1000, 100_000)
WRITE_COUNTS = (1000, 100_000)
WRITER_COUNTS = (1000, 10_000, 100_000)
WRITER_RATES = (1000, 10_000, 100_000)
#: Keys the writer process cycles over (other keys of the same dict).
WRITER_KEYS = 1000
#: Keys each process of the scaling rows writes (its own).
SCALE_KEYS = 1000
SCALE_OPS = ("set", "set_new", "delete", "incr")
VSIZE = 16


@dataclass
class Pair:
    """One paired row: raw ns/op of each side per repetition."""

    n: int  # ops per repetition
    a_ns: list[float]  # side A (shmdict), raw ns/op
    b_ns: list[float]  # side B (the dict, or shmdict with the cache off)
    empty: float  # ns/op of the empty loop (its fastest repetition)
    note: str = ""  # e.g. the writer's achieved rate

    def _net(self, xs: list[float]) -> float:
        return max(statistics.median(xs) - self.empty, 0.0)

    @property
    def a_net(self) -> float:
        """Median net ns/op of side A."""
        return self._net(self.a_ns)

    @property
    def b_net(self) -> float:
        """Median net ns/op of side B."""
        return self._net(self.b_ns)

    @property
    def ratios(self) -> list[float]:
        """Per-pair net ratios A / B."""
        return [
            (a - self.empty) / (b - self.empty)
            for a, b in zip(self.a_ns, self.b_ns, strict=True)
            if b - self.empty > 0
        ]

    @property
    def ratio(self) -> float | None:
        """Median of the per-pair net ratios A / B."""
        r = self.ratios
        return statistics.median(r) if r else None


@dataclass
class Scaling:
    """2-process over 1-process throughput, per repetition, for one op."""

    shm_one: list[float] = field(default_factory=list)  # ops/s
    shm_two: list[float] = field(default_factory=list)
    dict_one: list[float] = field(default_factory=list)
    dict_two: list[float] = field(default_factory=list)

    @staticmethod
    def _scale(one: list[float], two: list[float]) -> float | None:
        r = [b / a for a, b in zip(one, two, strict=True) if a > 0]
        return statistics.median(r) if r else None

    @property
    def shm(self) -> float | None:
        """Median over repetitions of shmdict's 2-process / 1-process."""
        return self._scale(self.shm_one, self.shm_two)

    @property
    def dict(self) -> float | None:
        """The same for private plain dicts."""
        return self._scale(self.dict_one, self.dict_two)


#: A row's key: (kind, key count, variant), e.g. ("get", 1000, "ttl"),
#: ("near", 100000, "plain"), ("set_new", 1000, ""), ("writer", 1000, "10000").
RowKey = tuple[str, int, str]


@dataclass
class RealResults:
    """Everything this module measured, and what it could not."""

    rows: dict[RowKey, Pair] = field(default_factory=dict)
    missing: dict[RowKey, str] = field(default_factory=dict)  # row -> why
    scaling: dict[str, Scaling] = field(default_factory=dict)  # op ->
    scaling_error: str = ""
    near_switch: bool = False  # shmdict has near_cache=
    near_default: int | None = None  # its default slot count, if it says
    errors: list[str] = field(default_factory=list)  # children that failed


# ------------------------------------------------------------------ loops
_TEMPLATE = """
def _make(_timer):
    def _loop(_items, o):
{setup}
        _t0 = _timer()
        for {target} in _items:
{stmt}
        return _timer() - _t0
    return _loop
"""
_loops: dict[tuple[str, str, str], Any] = {}


def loop(setup: str, target: str, stmt: str) -> Callable[[Sequence[Any], Any], int]:
    """``fn(items, o) -> ns``: ``for <target> in items: <stmt>``, timed."""
    key = (setup, target, stmt)
    if key not in _loops:
        src = _TEMPLATE.format(
            setup=textwrap.indent(setup or "pass", " " * 8),
            target=target,
            stmt=textwrap.indent(stmt, " " * 12),
        )
        ns: dict[str, Any] = {}
        exec(compile(src, f"<realistic {stmt!r}>", "exec"), ns)
        _loops[key] = ns["_make"](time.perf_counter_ns)
    return _loops[key]  # type: ignore[no-any-return]


def _timed(
    fn: Callable[[Sequence[Any], Any], int], items: Sequence[Any], o: Any
) -> int:
    gc.disable()
    try:
        return fn(items, o)
    finally:
        gc.enable()


GET = loop("g = o.get", "k", "g(k)")
EMPTY_K = loop("", "k", "pass")
EMPTY_KV = loop("", "k, v", "pass")
SET = loop("", "k, v", "o[k] = v")
DEL = loop("", "k", "del o[k]")
SHM_INCR = loop("inc = o.incr", "k", "inc(k, 1)")
DICT_INCR = loop("g = o.get", "k", "o[k] = g(k, 0) + 1")


def pair(
    a: Callable[[int], int],
    b: Callable[[int], int],
    empty: Callable[[int], int],
    settings: Settings,
    note: str = "",
    n: int | None = None,
) -> Pair:
    """Calibrate n on side A, then ``reps`` pairs, the order alternating."""
    if n is None:
        a(100)  # warm-up
        probe = 2000
        per = a(probe) / probe
        n = int(
            max(1000, min(settings.max_ops, real_target_ns(settings) / max(per, 1)))
        )
    for side in (a, b, empty):  # both sides start their walks together
        reset = getattr(side, "reset", None)
        if reset is not None:
            reset()
    reps = real_reps(settings)
    a_ns: list[float] = []
    b_ns: list[float] = []
    empties: list[float] = []
    for r in range(reps):
        if r % 2 == 0:
            ta, tb = a(n), b(n)
        else:
            tb, ta = b(n), a(n)
        a_ns.append(ta / n)
        b_ns.append(tb / n)
        empties.append(empty(n) / n)
    return Pair(n, a_ns, b_ns, min(empties), note)


def real_reps(settings: Settings) -> int:
    """Pairs per row."""
    return 5 if settings.quick else 9


def real_target_ns(settings: Settings) -> int:
    """Wanted duration of one side of one repetition."""
    return 3_000_000 if settings.quick else 12_000_000


def cycled(pool: Sequence[Any], n: int) -> list[Any]:
    """``pool`` repeated and cut to ``n`` entries."""
    return (list(pool) * (n // len(pool) + 1))[:n]


class Walk:
    """Takes from ``seq`` in order, cycling, each take where the last ended.

    A repetition of n ops on a table of more than n keys thus reads the
    next n keys of the shuffled order, not the same first n every time
    (which would let the per-handle cache, and the CPU cache, hold them)."""

    def __init__(self, seq: Sequence[Any]) -> None:
        self.seq = list(seq)
        self.pos = 0

    def take(self, n: int) -> list[Any]:
        """The next ``n`` items, wrapping around."""
        out: list[Any] = []
        while len(out) < n:
            chunk = self.seq[self.pos : self.pos + (n - len(out))]
            out += chunk
            self.pos = (self.pos + len(chunk)) % len(self.seq)
        return out

    def reset(self) -> None:
        """Back to the start."""
        self.pos = 0


def get_rep(store: Any, keys: Sequence[str]) -> Callable[[int], int]:
    """n gets over ``keys``, each repetition the next n (a :class:`Walk`)."""
    walk = Walk(keys)

    def rep(n: int) -> int:
        return _timed(GET, walk.take(n), store)

    rep.reset = walk.reset  # type: ignore[attr-defined]
    return rep


def empty_rep(keys: Sequence[str]) -> Callable[[int], int]:
    """The empty loop over n keys."""

    def rep(n: int) -> int:
        return _timed(EMPTY_K, cycled(keys, n), None)

    return rep


# --------------------------------------------------------------- stores
def near_default() -> int | None:
    """The per-handle cache's default slot count, if shmdict says it."""
    import shmdict

    for mod in (shmdict, getattr(shmdict, "_core", None)):
        v = getattr(mod, "DEFAULT_NEAR_CACHE", None)
        if isinstance(v, int):
            return v
    return None


def shmdict_has_near_switch() -> bool:
    """True when shmdict.new takes ``near_cache=`` (slots; 0 = off)."""
    import shmdict

    try:
        return "near_cache" in inspect.signature(shmdict.new).parameters
    except (TypeError, ValueError):
        return False


def new_shmdict(nkeys: int, vsize: int = VSIZE, **kw: Any) -> Any:
    """A fresh shmdict for ``nkeys`` entries (at least 64 MiB, as perop's)."""
    import shmdict

    size = max(shmdict_size(nkeys, 16, vsize), 64 << 20)
    return shmdict.new(unique_name("real"), size, **kw)


def fill(store: Any, items: Sequence[tuple[str, bytes]], ttl: float = 0) -> None:
    """Set every (key, value), with an expiry of ``ttl`` s (0: none)."""
    if isinstance(store, dict):
        store.update(items)
        return
    s = store.set
    for k, v in items:
        s(k, v, ttl)


def dataset(nkeys: int, seed: int) -> tuple[list[tuple[str, bytes]], list[str]]:
    """(key, value) of every key, values distinct objects; the keys shuffled."""
    items = [(key_name("key", i), distinct_value(i, VSIZE)) for i in range(nkeys)]
    order = [k for k, _ in items]
    random.Random(seed).shuffle(order)
    return items, order


# ------------------------------------------------------------ get rows
def measure_get(nkeys: int, settings: Settings) -> RealResults:
    """get (hit) without and with expiry at ``nkeys`` keys, against the
    dict; with the per-handle cache on and off where asked (in a child)."""
    out = RealResults(
        near_switch=shmdict_has_near_switch(), near_default=near_default()
    )
    items, order = dataset(nkeys, settings.seed)
    plain = dict(items)
    near = nkeys in NEAR_COUNTS
    stores: dict[str, Any] = {}
    try:
        stores["plain"] = new_shmdict(nkeys)
        fill(stores["plain"], items)
        stores["ttl"] = new_shmdict(nkeys)
        fill(stores["ttl"], items, MIX_TTL)
        if near and out.near_switch:
            stores["plain_off"] = new_shmdict(nkeys, near_cache=0)
            fill(stores["plain_off"], items)
            stores["ttl_off"] = new_shmdict(nkeys, near_cache=0)
            fill(stores["ttl_off"], items, MIX_TTL)
        empty = empty_rep(order)
        d_rep = get_rep(plain, order)
        for variant in ("plain", "ttl"):
            p = pair(get_rep(stores[variant], order), d_rep, empty, settings)
            out.rows["get", nkeys, variant] = p
            _log(f"get (hit), {_variant(variant)}", nkeys, p, "dict")
            if not near:
                continue
            if not out.near_switch:
                out.missing["near", nkeys, variant] = (
                    "n/a: this shmdict has no near_cache= switch"
                )
                continue
            off = stores[f"{variant}_off"]
            q = pair(
                get_rep(stores[variant], order), get_rep(off, order), empty, settings
            )
            out.rows["near", nkeys, variant] = q
            _log(f"get (hit), {_variant(variant)}, cache on/off", nkeys, q, "off")
        if nkeys in WRITE_COUNTS:
            _measure_writes(out, nkeys, stores["plain"], plain, items, order, settings)
    finally:
        for s in stores.values():
            s.close()
    return out


def _variant(v: str) -> str:
    return "values with expiry" if v == "ttl" else "no expiry"


def _log(what: str, nkeys: int, p: Pair, other: str) -> None:
    r = p.ratio
    progress(
        f"    {what:44} {human_count(nkeys):>5} keys  shmdict {p.a_net:8.1f} ns  "
        f"{other} {p.b_net:8.1f} ns  x{r if r is not None else float('nan'):.2f}"
        + (f"  ({p.note})" if p.note else "")
    )


def _measure_writes(
    out: RealResults,
    nkeys: int,
    shm: Any,
    plain: dict[str, bytes],
    items: list[tuple[str, bytes]],
    order: list[str],
    settings: Settings,
) -> None:
    """set overwrite, set of a new key and delete, against the dict."""
    values = dict(items)
    batch = min(nkeys, 10_000)
    # overwrites: every key in shuffled order, two distinct values per key
    # (bytes 251..255, never stored by distinct_value), alternating pass by
    # pass so that each write changes the bytes stored
    alt = [
        [(k, bytes([251 + (i + j) % 5]) * VSIZE) for i, k in enumerate(order)]
        for j in (0, 1)
    ]
    fresh = [(key_name("new", i), distinct_value(i, VSIZE)) for i in range(batch)]
    random.Random(settings.seed + 1).shuffle(fresh)

    def over(store: Any) -> Callable[[int], int]:
        # one pass over every key with the first values, then one with the
        # second, ...: each write changes what the key holds
        walk = Walk(alt[0] + alt[1])

        def rep(n: int) -> int:
            total = 0
            left = n
            while left > 0:
                chunk = walk.take(min(left, len(order)))
                total += _timed(SET, chunk, store)
                left -= len(chunk)
            return total

        def reset() -> None:
            # back to the first values everywhere (calibration wrote some
            # keys), so the first timed pass changes every key it writes
            walk.reset()
            fill(store, items)

        rep.reset = reset  # type: ignore[attr-defined]
        return rep

    def new(store: Any) -> Callable[[int], int]:
        def rep(n: int) -> int:
            total = 0
            left = n
            while left > 0:
                chunk = fresh[: min(left, batch)]
                total += _timed(SET, chunk, store)
                _remove(store, [k for k, _ in chunk])
                left -= len(chunk)
            return total

        return rep

    def delete(store: Any) -> Callable[[int], int]:
        walk = Walk(order)

        def rep(n: int) -> int:
            total = 0
            left = n
            while left > 0:
                chunk = walk.take(min(left, batch))
                total += _timed(DEL, chunk, store)
                fill(store, [(k, values[k]) for k in chunk])
                left -= len(chunk)
            return total

        rep.reset = walk.reset  # type: ignore[attr-defined]
        return rep

    def empty_kv(n: int) -> int:
        return _timed(EMPTY_KV, cycled(alt[0], n), None)

    def empty_k(n: int) -> int:
        return _timed(EMPTY_K, cycled(order, n), None)

    for op, make, empty in (
        ("set", over, empty_kv),
        ("set_new", new, empty_kv),
        ("delete", delete, empty_k),
    ):
        p = pair(make(shm), make(plain), empty, settings)
        out.rows[op, nkeys, ""] = p
        _log(op, nkeys, p, "dict")
    # put overwritten values back (later rows read them)
    fill(shm, items)
    plain.update(items)


def _remove(store: Any, keys: Sequence[str]) -> None:
    if isinstance(store, dict):
        for k in keys:
            del store[k]
        return
    dl = store.delete
    for k in keys:
        dl(k)


# ------------------------------------------------------- under a writer
def _writer(name: str, rate: int, conn: Any, stop: Any, count: Any) -> None:
    """Write other keys of dict ``name`` at about ``rate`` writes/s.

    Sleep-paced: every tick (1 ms) it does the writes due by then
    (``rate`` x time since start, minus those done), then sleeps; if it falls
    more than 50 ms behind (the machine was busy) it drops the backlog
    instead of bursting. ``count.value`` is the writes done so far (the
    parent reads it around its timed pairs); reports (writes, seconds) when
    stopped."""
    try:
        import shmdict

        d = shmdict.get(name)
        s = d.set
        keys = [key_name("wrt", i) for i in range(WRITER_KEYS)]
        vals = (b"\xfe" * VSIZE, b"\xfd" * VSIZE)
        conn.send("ready")
        t0 = time.perf_counter()
        done = 0
        base = 0  # writes forgiven after a stall
        i = 0
        while not stop.is_set():
            due = int((time.perf_counter() - t0) * rate) - base
            if due - done > rate // 20 + 1:
                base += due - done
                due = done
            while done < due:
                s(keys[i % WRITER_KEYS], vals[(i // WRITER_KEYS) & 1])
                i += 1
                done += 1
            count.value = done
            time.sleep(0.001)
        conn.send((done, time.perf_counter() - t0))
        d.close()
    except BaseException as exc:
        conn.send(f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=4)}")
    finally:
        conn.close()


def measure_writer(nkeys: int, settings: Settings) -> RealResults:
    """get (hit) at ``nkeys`` keys while a child writes other keys at each
    rate of WRITER_RATES, against a private dict (in a child)."""
    out = RealResults(
        near_switch=shmdict_has_near_switch(), near_default=near_default()
    )
    items, order = dataset(nkeys, settings.seed)
    plain = dict(items)
    shm = new_shmdict(nkeys + WRITER_KEYS)
    try:
        fill(shm, items)
        fill(shm, [(key_name("wrt", i), b"\xfd" * VSIZE) for i in range(WRITER_KEYS)])
        empty = empty_rep(order)
        s_rep, d_rep = get_rep(shm, order), get_rep(plain, order)
        # n calibrated once without the writer, the same for every rate
        s_rep(100)
        n = int(
            max(
                1000,
                min(
                    settings.max_ops,
                    real_target_ns(settings) / max(s_rep(2000) / 2000, 1),
                ),
            )
        )
        for rate in WRITER_RATES:
            key: RowKey = ("writer", nkeys, str(rate))
            parent, child = _ctx.Pipe(duplex=False)
            stop = _ctx.Event()
            count = _ctx.RawValue("q", 0)
            proc = _ctx.Process(
                target=_writer, args=(shm.name, rate, child, stop, count)
            )
            proc.start()
            child.close()
            try:
                if not parent.poll(30) or parent.recv() != "ready":
                    raise RuntimeError("writer did not start")
                time.sleep(0.02)  # let it reach its pace
                c0, t0 = count.value, time.perf_counter()
                p = pair(s_rep, d_rep, empty, settings, n=n)
                c1, t1 = count.value, time.perf_counter()
                stop.set()
                if not parent.poll(30):
                    raise RuntimeError("writer did not report")
                got = parent.recv()
                if isinstance(got, str):
                    raise RuntimeError(got)
                p.note = f"{(c1 - c0) / (t1 - t0):,.0f} writes/s achieved"
                out.rows[key] = p
                _log(f"get (hit) under a writer, {rate:,}/s", nkeys, p, "dict")
            except Exception as exc:
                out.missing[key] = f"failed: {short_error(exc)}"
                progress(f"    writer {rate}/s {nkeys} keys: FAILED {short_error(exc)}")
            finally:
                stop.set()
                proc.join(10)
                if proc.is_alive():
                    proc.kill()
                    proc.join()
                parent.close()
    finally:
        shm.close()
    return out


# ------------------------------------------------------- write scaling
def _scale_keys(prefix: str, rank: int) -> list[str]:
    return [key_name(f"{prefix}{rank}", i) for i in range(SCALE_KEYS)]


def _scale_worker(store: Any, is_shm: bool, rank: int, barrier: Any, conn: Any) -> None:
    """Run the scaling ops the parent asks for, each for a fixed wall time.

    A run: meet at the barrier, then repeat (timed op over this process's
    SCALE_KEYS keys; untimed undo) until ``wall_ns`` have passed; report
    (ops, timed ns). Undos: set new key deletes the keys again, delete puts
    them back; overwrites alternate two values pass by pass."""
    try:
        if is_shm:
            import shmdict

            o = shmdict.get(store)
        else:
            o = store
        base = _scale_keys("sa", rank)
        ctrs = _scale_keys("sc", rank)
        new = [
            (k, distinct_value(i, VSIZE)) for i, k in enumerate(_scale_keys("sn", rank))
        ]
        alt = [[(k, bytes([251 + j]) * VSIZE) for k in base] for j in (0, 1)]
        orig = [(k, distinct_value(i, VSIZE)) for i, k in enumerate(base)]
        incr = SHM_INCR if is_shm else DICT_INCR
        conn.send("ready")
        passes = 0
        while True:
            msg = conn.recv()
            if msg[0] == "stop":
                break
            op, wall_ns = msg[1], msg[2]
            ops = timed_ns = 0
            gc.collect()
            gc.disable()
            barrier.wait(60)
            end = time.perf_counter_ns() + wall_ns
            while time.perf_counter_ns() < end:
                if op == "set":
                    timed_ns += SET(alt[passes % 2], o)
                    passes += 1
                elif op == "set_new":
                    timed_ns += SET(new, o)
                    _remove(o, [k for k, _ in new])
                elif op == "delete":
                    timed_ns += DEL(base, o)
                    fill(o, orig)
                else:
                    timed_ns += incr(ctrs, o)
                ops += SCALE_KEYS
            gc.enable()
            if op == "set":  # leave the stored values as they were
                fill(o, orig)
            conn.send(("ok", ops, timed_ns))
        if is_shm:
            o.close()
    except BaseException as exc:
        conn.send(
            ("err", f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=4)}")
        )
    finally:
        conn.close()


class _Pool:
    def __init__(self, store: Any, is_shm: bool, procs: int) -> None:
        self.barrier = _ctx.Barrier(procs)
        self.conns: list[Any] = []
        self.procs: list[Any] = []
        for rank in range(procs):
            a, b = _ctx.Pipe()
            p = _ctx.Process(
                target=_scale_worker, args=(store, is_shm, rank, self.barrier, b)
            )
            p.start()
            b.close()
            self.conns.append(a)
            self.procs.append(p)
        for c in self.conns:
            if not c.poll(60) or c.recv() != "ready":
                raise RuntimeError("scaling worker did not start")

    def run(self, op: str, wall_ns: int) -> float:
        """Aggregate ops/s: each process's ops over its timed ns, summed."""
        for c in self.conns:
            c.send(("run", op, wall_ns))
        total = 0.0
        for c in self.conns:
            if not c.poll(120):
                raise RuntimeError("scaling worker timed out")
            msg = c.recv()
            if msg[0] != "ok":
                raise RuntimeError(msg[1])
            total += msg[1] / (msg[2] / 1e9)
        return total

    def close(self) -> None:
        for c in self.conns:
            with contextlib.suppress(OSError):
                c.send(("stop",))
        for p in self.procs:
            p.join(10)
            if p.is_alive():
                p.kill()
                p.join()


def measure_scaling(settings: Settings) -> RealResults:
    """1 and 2 processes writing distinct keys, shmdict and private dicts,
    the four configurations alternating within each repetition (in a child)."""
    out = RealResults(
        near_switch=shmdict_has_near_switch(), near_default=near_default()
    )
    entries = 2 * 3 * SCALE_KEYS
    shm = new_shmdict(entries)
    plain: dict[str, Any] = {}
    for rank in (0, 1):
        base = [
            (k, distinct_value(i, VSIZE)) for i, k in enumerate(_scale_keys("sa", rank))
        ]
        ctrs = [(k, 0) for k in _scale_keys("sc", rank)]
        for store in (shm, plain):
            fill(store, base)
            fill(store, ctrs)  # type: ignore[arg-type]
    pools: dict[tuple[str, int], _Pool] = {}
    wall_ns = 20_000_000 if settings.quick else 60_000_000
    reps = 3 if settings.quick else 7
    try:
        for side, store, is_shm in (("shm", shm.name, True), ("dict", plain, False)):
            for procs in (1, 2):
                pools[side, procs] = _Pool(store, is_shm, procs)
        order = list(pools)
        for op in SCALE_OPS:
            sc = Scaling()
            for r in range(reps):
                rot = order[r % len(order) :] + order[: r % len(order)]
                got = {cfg: pools[cfg].run(op, wall_ns) for cfg in rot}
                sc.shm_one.append(got["shm", 1])
                sc.shm_two.append(got["shm", 2])
                sc.dict_one.append(got["dict", 1])
                sc.dict_two.append(got["dict", 2])
            out.scaling[op] = sc
            progress(
                f"    2-process scaling, {op:8} shmdict x{sc.shm or 0:.2f} "
                f"({statistics.median(sc.shm_one) / 1e6:.2f} -> "
                f"{statistics.median(sc.shm_two) / 1e6:.2f} Mops/s), "
                f"private dicts x{sc.dict or 0:.2f}"
            )
    except Exception as exc:
        out.scaling_error = f"failed: {short_error(exc)}"
        progress(f"    2-process scaling: FAILED {out.scaling_error}")
    finally:
        for p in pools.values():
            p.close()
        shm.close()
    return out


def merge(into: RealResults, part: RealResults) -> None:
    """Add one child's results to the run's."""
    into.rows.update(part.rows)
    into.missing.update(part.missing)
    into.scaling.update(part.scaling)
    into.scaling_error = into.scaling_error or part.scaling_error
    into.near_switch = into.near_switch or part.near_switch
    into.near_default = into.near_default or part.near_default


def get_counts(settings: Settings) -> tuple[int, ...]:
    """Key counts of the get rows in this run."""
    return GET_COUNTS_QUICK if settings.quick else GET_COUNTS

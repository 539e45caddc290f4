"""Timed loops for the Python peers, in the manner of :mod:`timeit`.

A peer describes each operation as one Python statement over the loop
variable ``k`` (the key, a ``str``; for the batch feature ops a tuple of
keys or a prepared mapping) and ``v`` (the value), plus a line of
setup that binds short local names (``g = o.get`` and so on, where ``o`` is
the peer's store). :func:`compile_loop` turns that into a function whose
body is exactly::

    t0 = perf_counter_ns()
    for k in keys:
        <statement>
    return perf_counter_ns() - t0

so that every peer pays the same loop overhead, and the same loop with
``pass`` as its body measures that overhead. The cyclic garbage collector
is disabled around every timed loop, as timeit does.
"""

from __future__ import annotations

import gc
import textwrap
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from common import LatencyResult, OpResult, Settings

T = TypeVar("T")
LoopFn = Callable[[Sequence[Any], dict[str, Any]], int]

_LOOP_TEMPLATE = """
def _make(_timer):
    def _loop(_keys, _ns):
        o = _ns["o"]
        v = _ns["v"]
        L = _ns.get("L")
{setup}
        _t0 = _timer()
        for k in _keys:
{stmt}
        return _timer() - _t0
    return _loop
"""

_SAMPLE_TEMPLATE = """
def _make(_timer):
    def _loop(_keys, _ns, _out):
        o = _ns["o"]
        v = _ns["v"]
        L = _ns.get("L")
{setup}
        _ap = _out.append
        for k in _keys:
            _t0 = _timer()
{stmt}
            _ap(_timer() - _t0)
    return _loop
"""

_MIX_TEMPLATE = """
def _make(_timer):
    def _loop(_keys, _flags, _vals, _ns):
        o = _ns["o"]
        v = _ns["v"]
        L = _ns.get("L")
{setup}
        _t0 = _timer()
        for k, _w, v in zip(_keys, _flags, _vals):
            if _w:
{write}
            else:
{read}
        return _timer() - _t0, _t0
    return _loop
"""

_INDENT = {"stmt": 12, "read": 16, "write": 16}
_cache: dict[tuple[str, ...], Any] = {}


def _build(template: str, setup: str, **stmts: str) -> Any:
    """Compile ``template`` with ``setup`` and the statements filled in."""
    key = (template, setup, *(f"{k}={v}" for k, v in sorted(stmts.items())))
    fn = _cache.get(key)
    if fn is None:
        subs = {"setup": textwrap.indent(setup.strip() or "pass", " " * 8)}
        for name, stmt in stmts.items():
            subs[name] = textwrap.indent(stmt.strip(), " " * _INDENT[name])
        namespace: dict[str, Any] = {}
        code = compile(template.format(**subs), f"<loop {stmts!r}>", "exec")
        exec(code, namespace)
        fn = namespace["_make"](time.perf_counter_ns)
        _cache[key] = fn
    return fn


def compile_loop(setup: str, stmt: str) -> LoopFn:
    """A function ``loop(keys, ns) -> ns elapsed`` running ``stmt`` per key."""
    return _build(_LOOP_TEMPLATE, setup, stmt=stmt)  # type: ignore[no-any-return]


def compile_mix(setup: str, read: str, write: str) -> Callable[..., tuple[int, int]]:
    """``loop(keys, flags, values, ns) -> (elapsed ns, start ns)``: write
    ``values[i]`` where ``flags[i]``, read elsewhere."""
    return _build(_MIX_TEMPLATE, setup, read=read, write=write)  # type: ignore[no-any-return]


def cycle(pool: Sequence[T], n: int) -> list[T]:
    """``pool`` repeated (and cut) to exactly ``n`` entries."""
    if n <= len(pool):
        return list(pool[:n])
    reps, rest = divmod(n, len(pool))
    return list(pool) * reps + list(pool[:rest])


def timed(fn: LoopFn, keys: Sequence[Any], ns: dict[str, Any]) -> int:
    """Run one timed loop with the garbage collector off."""
    was = gc.isenabled()
    gc.disable()
    try:
        return fn(keys, ns)
    finally:
        if was:
            gc.enable()


#: The core per-op workloads: which statement each one runs.
CORE_OP_STMTS: dict[str, str] = {
    "get_hit": "get",
    "get_miss": "get",
    "set": "set",
    "set_new": "set",
    "incr": "incr",
    "delete": "delete",
}


class OpRunner:
    """Measures the per-op workloads of one peer's store.

    By default these are the six core workloads (:data:`CORE_OP_STMTS`), and
    ``remove_keys`` / ``restore_keys`` are untimed callables (``keys ->
    None``) that remove the keys a ``set_new`` batch added and put back
    those a ``delete`` batch removed, so that the table keeps its size. A
    ``set`` (overwrite) batch is followed by ``restore_keys`` too: the
    namespace's value differs from the stored one, so every timed write
    changes the bytes stored (a store may skip a write of the bytes it
    already holds, as shmdict does).

    ``ops`` (op -> statement name in ``stmts``) and ``undo`` (op -> untimed
    callable run on each batch after it is timed) replace those defaults
    for other sets of workloads, such as the feature ops. An op with an
    undo runs in batches of at most ``len(pool)`` items; any other op
    cycles over its pool.
    """

    def __init__(
        self,
        setup: str,
        stmts: dict[str, str],
        ns: dict[str, Any],
        settings: Settings,
        remove_keys: Callable[[Sequence[Any]], None],
        restore_keys: Callable[[Sequence[Any]], None],
        *,
        ops: dict[str, str] | None = None,
        undo: dict[str, Callable[[Sequence[Any]], None]] | None = None,
    ) -> None:
        self.ns = ns
        self.settings = settings
        self.remove_keys = remove_keys
        self.restore_keys = restore_keys
        self.op_stmts = dict(CORE_OP_STMTS if ops is None else ops)
        self.undo = (
            {"set": restore_keys, "set_new": remove_keys, "delete": restore_keys}
            if undo is None
            else dict(undo)
        )
        self.loops: dict[str, LoopFn] = {
            name: compile_loop(setup, stmts[name])
            for name in dict.fromkeys(self.op_stmts.values())
        }
        self.empty = compile_loop("", "pass")
        self.setup = setup
        self.stmts = stmts

    def _loop_for(self, op: str) -> LoopFn:
        return self.loops[self.op_stmts[op]]

    def one_rep(self, op: str, n: int, pool: Sequence[Any]) -> tuple[int, int]:
        """Time ``n`` ops of ``op`` over ``pool``: (raw ns, empty-loop ns)."""
        fn = self._loop_for(op)
        undo = self.undo.get(op)
        if undo is not None:
            raw = empty = 0
            left = n
            while left > 0:
                batch = list(pool[: min(left, len(pool))])
                raw += timed(fn, batch, self.ns)
                undo(batch)
                empty += timed(self.empty, batch, self.ns)
                left -= len(batch)
            return raw, empty
        ops = cycle(pool, n)
        return timed(fn, ops, self.ns), timed(self.empty, ops, self.ns)

    def calibrate(self, op: str, pool: Sequence[Any]) -> int:
        """Pick n so that one repetition lasts about ``settings.target_ns``."""
        s = self.settings
        probe = min(len(pool), 10)
        raw, _ = self.one_rep(op, probe, pool)  # warm-up and first guess
        per = raw / probe
        if per * 1000 < s.target_ns:
            probe = min(len(pool), 1000)
            raw, _ = self.one_rep(op, probe, pool)
            per = raw / probe
        return int(max(s.min_ops, min(s.max_ops, s.target_ns / max(per, 1.0))))

    def measure(self, op: str, pool: Sequence[Any]) -> OpResult:
        """Calibrate, then time ``settings.reps`` repetitions."""
        n = self.calibrate(op, pool)
        raws: list[int] = []
        empties: list[int] = []
        for _ in range(self.settings.reps):
            raw, empty = self.one_rep(op, n, pool)
            raws.append(raw)
            empties.append(empty)
        return OpResult(n=n, raw_ns=raws, empty_ns=empties)

    def sample(self, op: str, pool: Sequence[str], count: int) -> LatencyResult:
        """Time each op on its own (two timer calls around it): p50/p99."""
        stmt = self.stmts[self.op_stmts[op]]
        fn = _build(_SAMPLE_TEMPLATE, self.setup, stmt=stmt)
        empty = _build(_SAMPLE_TEMPLATE, "", stmt="pass")
        undo = self.undo.get(op)
        out: list[int] = []
        base: list[int] = []
        left = count
        while left > 0:  # in batches, each undone, as one_rep does
            keys = cycle(pool, left if undo is None else min(left, len(pool)))
            was = gc.isenabled()
            gc.disable()
            try:
                fn(keys, self.ns, out)
                empty(keys, self.ns, base)
            finally:
                if was:
                    gc.enable()
            if undo is not None:
                undo(keys)
            left -= len(keys)
        out.sort()
        base.sort()
        return LatencyResult(
            samples=len(out),
            p50=float(out[len(out) // 2]),
            p99=float(out[min(len(out) - 1, int(len(out) * 0.99))]),
            p999=float(out[min(len(out) - 1, int(len(out) * 0.999))]),
            timer_p50=float(base[len(base) // 2]),
        )

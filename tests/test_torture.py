"""Torture: worker processes run random writes (set, add, replace, cas,
pop, setdefault, incr with and without init=, expire, delete, list pushes
and pops, flush_expired, flush_all and the safe_/forcible set variants)
with self-checking values and are SIGKILLed at random moments while the
others keep working. After every kill the survivors are paused between
operations and the dict is checked against a model built from the
workers' journals.

Counts are configurable (see ``RELIABILITY.md``)::

    SHMDICT_TORTURE_KILLS     kills in the torture test (default 1500)
    SHMDICT_TORTURE_WORKERS   worker processes (default 4)
    SHMDICT_TORTURE_SEED      seed of the torture run (default: 20261203)
    SHMDICT_RANDOM_SEEDS=1    draw a random torture seed instead of the default
    SHMDICT_FIGURES           append a JSON line of figures per test to this file

The suite's second pass in scripts/test.sh (SHMDICT_STRIPES=4) runs the
same counts on striped dicts.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import hashlib
import mmap
import os
import random
import select
import signal
import time
import zlib
from dataclasses import dataclass
from typing import Any

import pytest

import shmdict

from .figures import env_int, env_seed, record_figures
from .fileformat import lock_words
from .helpers import list_items, wait_child
from .strategies import canon

MiB = 1 << 20


# --------------------------------------------------------------------------
# torture: random kills of working processes
#
# Each worker owns its keys ("w<slot>:<k>"), so the only other things that
# change them are flush_all (any worker's), expiry and the worker's own
# operation in flight when it is killed. Every operation is journaled to
# the parent through a pipe: "B" (begin, with the CLOCK_MONOTONIC time
# before the call) and "E" (end, with the result and the time after).
# Writes of less than PIPE_BUF bytes to a pipe are atomic, so a SIGKILL
# leaves whole records.
#
# The model keeps, per key, the exact state seen at its last observation
# (an operation's result, or the parent's check) and when that was. After
# an observation, the key can only become absent (a flush that may have
# come later, or a short TTL) or take the effect of the op in flight when
# its worker was killed; nothing else may change it. A flush whose start is
# after an observation's end certainly came later.


def crc_bytes(prefix: bytes, body: bytes) -> bytes:
    return prefix + body + zlib.crc32(prefix + body).to_bytes(4, "little")


def make_value(slot: int, k: int, seq: int, kind: str, size: int) -> shmdict.Value:
    """A value that names its writer and carries its own checksum."""
    rng = random.Random(f"{slot}:{k}:{seq}")
    prefix = f"{slot}:{k}:{seq}:"
    if kind == "bytes":
        return crc_bytes(prefix.encode(), rng.randbytes(size))
    if kind == "str":
        body = (
            "\u00e9\u20ac\U0001f600" * (size // 64)
            + rng.randbytes(size // 2 + 1).hex()[:size]
        )
        return prefix + body + format(zlib.crc32((prefix + body).encode()), "08x")
    if kind == "int":
        return rng.randrange(-(2**40), 2**40)
    if kind == "float":
        return rng.uniform(-1e6, 1e6)
    if kind == "none":
        return None
    return bool(seq % 2)


def value_ok(slot: int, k: int, v: object) -> bool:
    """Does v look like a value that (slot, k) wrote, checksum intact?"""
    if isinstance(v, bytes):
        body, crc = v[:-4], v[-4:]
        return zlib.crc32(body).to_bytes(4, "little") == crc and body.startswith(
            f"{slot}:{k}:".encode()
        )
    if isinstance(v, str):
        sbody, scrc = v[:-8], v[-8:]
        return format(zlib.crc32(sbody.encode()), "08x") == scrc and sbody.startswith(
            f"{slot}:{k}:"
        )
    return v is None or isinstance(v, (bool, int, float))


State = tuple[str, str] | None  # None: absent, else a digest of the value
# An op in flight on one key: key, slot, seq, op, k, arg, b.
InFlight = tuple[str, int, int, str, int, str, int]


def digest(v: object) -> tuple[str, str]:
    if isinstance(v, (bytes, str)):
        data = v.encode() if isinstance(v, str) else v
        # Not crc32: a message with its own crc32 appended always has the
        # same crc32.
        return (
            type(v).__name__,
            f"{len(data)}:{hashlib.blake2b(data, digest_size=8).hexdigest()}",
        )
    return canon(v)


def number_of(state: State) -> int | float | None:
    if state is None or state[0] not in ("int", "float"):
        return None
    return int(state[1]) if state[0] == "int" else float.fromhex(state[1])


def parse_delta(arg: str) -> int | float:
    ds = arg.split(",")[0]
    return float(ds) if "." in ds else int(ds)


def incr_result(state: State, arg: str) -> State:
    """The state after incr on `state`, or `state` if incr fails on it."""
    x = number_of(state)
    if x is None:
        return state
    dv = parse_delta(arg)
    if isinstance(x, int) and isinstance(dv, int):
        r = x + dv
        return ("int", str(r)) if -(2**63) <= r < 2**63 else state
    return canon(float(x) + float(dv))


def incr_init_result(arg: str) -> State:
    """The state incr with init= stores on a missing key."""
    init = arg.split(",")[2]
    x = float(init) if "." in init else int(init)
    dv = parse_delta(arg)
    if isinstance(x, int) and isinstance(dv, int):
        return ("int", str(x + dv))
    return canon(float(x) + float(dv))


def item_state(v: object) -> str:
    return "=".join(digest(v))


def list_state(items: list[str]) -> State:
    """The state of a list: its items' digests in order (None: no list)."""
    return ("list", ";".join(items)) if items else None


def list_of(state: State) -> list[str] | None:
    """The item digests of a list state; None if state is not a list."""
    if state is None or state[0] != "list":
        return None
    return state[1].split(";")


def incr_args(arg: str) -> tuple[str, str, str]:
    """exptime, init and init_ttl of an incr's arg ("" when not given)."""
    f = [*arg.split(","), "", "", ""]
    return f[1], f[2], f[3]


TORTURE_SIZE = 8 * MiB
KEYS_PER_WORKER = 24
LIST_KEYS = 6  # list operations go to keys 0..5 (other operations too)
LIST_MAX = 12  # a worker pops rather than grow a list past this
SHORT_TTL = "0.05"
LONG_TTL = "1000000"
STOP = 255
# Operations that act on no key of their own.
GLOBAL_OPS = ("flush", "scan", "verify", "fexp")
SIZES = [0, 8, 40, 200, 900, 3000, 20000, 60000]
LOGGED_BLOCK_MAX = 4096  # dict.c: the biggest block the undo log can fill


def worker_main(
    name: str, slot: int, incarnation: int, wfd: int, ctl: mmap.mmap
) -> None:  # pragma: no cover
    """A torture worker: random operations on its own keys, journaled to
    the parent. Between operations it obeys ctl[0]: odd = pause (and say
    "P|gen" once), even = run, STOP = exit."""
    code = 0
    try:
        rng = random.Random(f"{ctl[8:16].hex()}:{slot}:{incarnation}")
        d = shmdict.get(name, lock_timeout=10)
        seq = incarnation * 10**8
        known: dict[int, Any] = {}  # the last value seen per key, for cas
        expected: Any = None

        def send(line: str) -> None:
            os.write(wfd, line.encode() + b"\n")

        acked = -1
        while True:
            gen = ctl[0]
            if gen == STOP:
                break
            if gen % 2 == 1:
                if gen != acked:
                    send(f"P|{gen}")
                    acked = gen
                time.sleep(0.0002)
                continue
            seq += 1
            k = rng.randrange(KEYS_PER_WORKER)
            key = f"w{slot}:{k}"
            r = rng.random()
            arg = ""

            def value_arg() -> str:
                kind = rng.choice(
                    ["bytes", "bytes", "str", "int", "float", "none", "bool"]
                )
                size = rng.choice(SIZES[: rng.randrange(1, 11)])
                ttl = rng.choice(["0", "0", "0", "0", "0", "0", SHORT_TTL, LONG_TTL])
                return f"{kind},{size},{ttl}"

            if r < 0.25:
                op = "set"
                arg = value_arg()
            elif r < 0.28:
                op = rng.choice(["sset", "fset"])  # safe_set, set_forcible
                arg = value_arg()
            elif r < 0.33:
                op = rng.choice(["add", "add", "sadd"])  # add, safe_add
                arg = value_arg()
            elif r < 0.37:
                op = "replace"
                arg = value_arg()
            elif r < 0.42:
                op = "cas"
                kind, size, ttl = value_arg().split(",")
                expected = known.get(k)
                if rng.random() < 0.15:
                    # the same number under another type, or another value
                    if type(expected) is int:
                        expected = float(expected)
                    elif isinstance(expected, (bytes, str)):
                        expected = expected[:-1]
                ttl = rng.choice(["", "", ttl])  # "": keep the expiry
                arg = f"{kind},{size},{ttl},{item_state(expected)}"
            elif r < 0.49:
                op = "delete"
            elif r < 0.52:
                op = "pop"
            elif r < 0.55:
                op = "setdefault"
                arg = f"{rng.choice(['bytes', 'str'])},{rng.choice(SIZES[:6])}"
            elif r < 0.67:
                op = "incr"
                delta = rng.choice(["1", "-7", "1000", "0.5"])
                arg = f"{delta},{rng.choice(['', '', '', LONG_TTL, '0', SHORT_TTL])}"
                if rng.random() < 0.4:
                    init = rng.choice(["0", "100", "-5", "2.5"])
                    its = rng.choice(["", "", LONG_TTL, SHORT_TTL])
                    arg += f",{init},{its}"
            elif r < 0.72:
                op = "expire"
                arg = rng.choice([SHORT_TTL, LONG_TTL, "0", LONG_TTL])
            elif r < 0.87:
                k = rng.randrange(LIST_KEYS)
                key = f"w{slot}:{k}"
                op = rng.choice(["lpush", "rpush", "rpush", "lpop", "rpop", "llen"])
                if op.endswith("push"):
                    try:
                        full = d.llen(key) >= LIST_MAX
                    except TypeError:  # a scalar: the push raises it too
                        full = False
                    if full:
                        op = op[0] + "pop"
                    else:
                        kind = rng.choice(["bytes", "bytes", "str", "int", "float"])
                        arg = f"{kind},{rng.choice(SIZES[:6])}"
            elif r < 0.965:
                op = "get"
            elif r < 0.97:
                op = "fexp"  # flush_expired: frees only what no one can see
                arg = rng.choice(["0", "1", "5"])
            elif r < 0.985:
                op = "scan"  # get_keys: holds the lock for slices of the table
            elif r < 0.9998:
                op = "verify"  # holds the lock for a walk of everything
            else:
                op = "flush"
            send(f"B|{seq}|{op}|{k}|{arg}|{time.monotonic_ns()}")
            res = ""
            status = "ok"
            bad = ""
            try:
                if op in ("set", "sset", "fset", "add", "sadd", "replace"):
                    kind, size_s, ttl_s = arg.split(",")
                    v = make_value(slot, k, seq, kind, int(size_s))
                    if op == "set":
                        d.set(key, v, float(ttl_s))
                        stored = True
                    elif op == "sset":
                        stored = d.safe_set(key, v, float(ttl_s))
                    elif op == "fset":
                        evicted = d.set_forcible(key, v, float(ttl_s))
                        if evicted != 0:
                            bad = f"set_forcible evicted {evicted} (no eviction)"
                        stored = True
                    elif op == "replace":
                        stored = d.replace(key, v, float(ttl_s))
                    else:
                        add = d.add if op == "add" else d.safe_add
                        stored = add(key, v, float(ttl_s))
                    if stored is True:
                        known[k] = v
                        res = "|".join(digest(v))
                        if op in ("add", "sadd", "replace"):
                            res = "True|" + res
                    else:
                        res = str(stored)
                elif op == "cas":
                    kind, size_s, ttl_s, _ = arg.split(",")
                    v = make_value(slot, k, seq, kind, int(size_s))
                    ok = d.cas(key, expected, v, None if ttl_s == "" else float(ttl_s))
                    if ok:
                        known[k] = v
                    res = f"{ok}|" + "|".join(digest(v))
                elif op == "delete":
                    res = str(d.delete(key))
                elif op == "pop":
                    popped = d.pop(key)
                    if not value_ok(slot, k, popped):
                        bad = f"torn or foreign value popped at {key}: {popped!r:.200}"
                    res = "|".join(digest(popped))
                elif op == "setdefault":
                    kind, size_s = arg.split(",")
                    v = make_value(slot, k, seq, kind, int(size_s))
                    popped = d.setdefault(key, v)
                    if not value_ok(slot, k, popped):
                        bad = f"torn or foreign value at {key}: {popped!r:.200}"
                    known[k] = popped
                    res = "|".join(digest(popped)) + "|" + "|".join(digest(v))
                elif op == "incr":
                    ts, init, its = incr_args(arg)
                    out = d.incr(
                        key,
                        parse_delta(arg),
                        None if ts == "" else float(ts),
                        init=None if init == "" else parse_delta(init),
                        init_ttl=None if its == "" else float(its),
                    )
                    known[k] = out
                    res = "|".join(canon(out))
                elif op in ("lpush", "rpush"):
                    kind, size_s = arg.split(",")
                    v = make_value(slot, k, seq, kind, int(size_s))
                    n = (d.lpush if op == "lpush" else d.rpush)(key, v)
                    res = f"{n}|" + "|".join(digest(v))
                elif op in ("lpop", "rpop"):
                    popped = (d.lpop if op == "lpop" else d.rpop)(key)
                    if popped is None:  # no item is None: the list is missing
                        res = "absent"
                    elif not value_ok(slot, k, popped):
                        bad = f"torn or foreign item popped at {key}: {popped!r:.200}"
                    else:
                        res = "|".join(digest(popped))
                elif op == "llen":
                    res = str(d.llen(key))
                elif op == "fexp":
                    res = str(d.flush_expired(int(arg)))
                elif op == "expire":
                    res = str(d.expire(key, float(arg)))
                elif op == "get":
                    got = d.get(key, KeyError)
                    if got is KeyError:
                        res = "absent"
                    elif not value_ok(slot, k, got):
                        send(f"F|torn or foreign value read at {key}: {got!r:.200}")
                        code = 6
                        break
                    else:
                        known[k] = got
                        res = "|".join(digest(got))
                elif op == "scan":
                    for other in d.get_keys():
                        if not other.startswith("w"):
                            send(f"F|get_keys lists a key nobody wrote: {other!r:.100}")
                            code = 6
                            break
                elif op == "verify":
                    problems = d.verify()
                    if problems:
                        send(f"F|verify() in a worker: {problems}")
                        code = 6
                        break
                else:
                    d.flush_all()
            except shmdict.NoMemoryError:
                status = "nomem"
            except KeyError:
                status = "keyerror"
            except TypeError:
                status = "typeerror"
            except OverflowError:
                status = "overflow"
            except shmdict.LockTimeout:
                send(f"F|LockTimeout (10 s) in {op} {key}")
                code = 7
                break
            if bad:
                send(f"F|{bad}")
                code = 6
                break
            send(f"E|{seq}|{status}|{res}|{time.monotonic_ns()}")
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.write(wfd, f"F|{type(exc).__name__}: {exc}\n".encode())
        code = 5
    finally:
        os._exit(code)


def effect(s: State, op: str, slot: int, k: int, seq: int, arg: str) -> State:
    """The state after the operation (op, arg) of worker slot, number seq,
    on key k in state s, when it completes."""
    f = arg.split(",")

    def value() -> object:
        return make_value(slot, k, seq, f[0], int(f[1]))

    items = list_of(s)
    if op in ("set", "sset", "fset"):
        return digest(value())
    if op in ("add", "sadd"):
        return digest(value()) if s is None else s
    if op == "replace":
        return None if s is None else digest(value())
    if op == "cas":
        return digest(value()) if s is not None and "=".join(s) == f[3] else s
    if op in ("delete", "pop"):
        return None
    if op == "setdefault":
        return digest(value()) if s is None else s
    if op == "incr":
        if s is None and incr_args(arg)[1] != "":
            return incr_init_result(arg)
        return incr_result(s, arg)
    if op in ("lpush", "rpush"):
        item = item_state(value())
        if s is None:
            return list_state([item])
        if items is None:
            return s  # a scalar: TypeError
        return list_state([item, *items] if op == "lpush" else [*items, item])
    if op in ("lpop", "rpop"):
        if items is None:
            return s
        return list_state(items[1:] if op == "lpop" else items[:-1])
    assert op in ("expire", "get", "llen"), op
    return s


@dataclass
class KeyModel:
    """The exact state of a key at its last observation, during [b, e]."""

    state: State = None
    b: int = 0
    e: int = 0
    short_ttl: bool = False


@dataclass
class Flush:
    b: int
    e: int
    definite: bool  # False: the victim died in it; it may not have happened


@dataclass
class Worker:
    slot: int
    incarnation: int
    pid: int
    rfd: int
    buf: bytes = b""
    pending: tuple[int, str, int, str, int] | None = (
        None  # op begun: seq, op, k, arg, b
    )
    acked: int = -1
    eof: bool = False


class Torture:
    def __init__(self, name: str, workers: int, seed: int) -> None:
        self.name = name
        self.nworkers = workers
        self.seed = seed
        self.rng = random.Random(seed)
        self.ctl = mmap.mmap(-1, 4096)
        self.ctl[8:16] = seed.to_bytes(8, "little")
        self.gen = -1  # the last pause generation (odd); -1: none yet
        self.d = shmdict.new(name, TORTURE_SIZE)
        self.checker = shmdict.get(name, lock_timeout=30)
        self.workers: dict[int, Worker] = {}
        self.model: dict[str, KeyModel] = {}
        self.flushes: list[Flush] = []
        # Absences seen by workers, checked once every journal is in:
        # (key, model before, b, e).
        self.absences: list[tuple[str, KeyModel, int, int, str]] = []
        # The last operations on each key, for failure messages.
        self.history: dict[str, collections.deque[str]] = {}
        self.fig: dict[str, Any] = {
            "kills": 0,
            "kills_in_lock": 0,
            "inflight_applied": 0,
            "inflight_lost": 0,
            "ops": 0,
            "flushes": 0,
            "capacity_checks": 0,
            "max_op_ms": 0.0,
            "list_checks": 0,
            "op_counts": collections.Counter(),
        }

    def where(self) -> str:
        return f"kill {self.fig['kills']}, SHMDICT_TORTURE_SEED={self.seed}"

    # -- processes and journals

    def spawn(self, slot: int, incarnation: int) -> None:
        r, w = os.pipe()
        fcntl.fcntl(r, fcntl.F_SETPIPE_SZ, 1 << 20)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            os.close(r)
            for other in self.workers.values():
                os.close(other.rfd)
            worker_main(self.name, slot, incarnation, w, self.ctl)
        os.close(w)
        os.set_blocking(r, False)
        self.workers[slot] = Worker(slot, incarnation, pid, r)

    def drain(self, wk: Worker, once: bool = False) -> None:
        """Read and apply a worker's journal: to the end (which only exists
        once it has paused or died), or one chunk."""
        while True:
            try:
                chunk = os.read(wk.rfd, 64 << 10)
            except BlockingIOError:
                return
            if not chunk:
                wk.eof = True
                return
            wk.buf += chunk
            *lines, wk.buf = wk.buf.split(b"\n")
            for line in lines:
                self.record(wk, line.decode())
            if once:
                return

    def record(self, wk: Worker, line: str) -> None:
        parts = line.split("|")
        tag = parts[0]
        if tag == "F":
            pytest.fail(
                f"worker {wk.slot} ({self.where()}): {line[2:]}; {self.lock_owner()}"
            )
        if tag == "P":
            wk.acked = int(parts[1])
            return
        if tag == "B":
            assert wk.pending is None, f"worker {wk.slot}: two B records: {line}"
            seq, op, k, arg, b = (
                int(parts[1]),
                parts[2],
                int(parts[3]),
                parts[4],
                int(parts[5]),
            )
            wk.pending = (seq, op, k, arg, b)
            if op not in GLOBAL_OPS:
                self.model.setdefault(f"w{wk.slot}:{k}", KeyModel())
            return
        assert tag == "E", line
        assert wk.pending is not None, line
        seq, op, k, arg, b = wk.pending
        wk.pending = None
        assert int(parts[1]) == seq, line
        status, res, e = parts[2], parts[3:-1], int(parts[-1])
        if op not in GLOBAL_OPS:
            hist = self.history.setdefault(
                f"w{wk.slot}:{k}", collections.deque(maxlen=24)
            )
            hist.append(f"{op}({arg}) -> {status} {'|'.join(res)[:40]} at {b}..{e}")
        self.fig["ops"] += 1
        self.fig["op_counts"][op] += 1
        self.fig["max_op_ms"] = max(self.fig["max_op_ms"], round((e - b) / 1e6, 2))
        if op == "flush":
            self.flushes.append(Flush(b, e, True))
            self.fig["flushes"] += 1
            return
        if op in GLOBAL_OPS:
            return
        key = f"w{wk.slot}:{k}"
        m = self.model[key]
        if status in ("nomem", "typeerror", "overflow"):
            return  # an error changes nothing
        how = f"{op} {arg} -> {status} {res}"
        if (
            status == "keyerror"
            or (op == "delete" and res[0] == "False")
            or (op == "expire" and res[0] == "False")
            or (op in ("get", "lpop", "rpop") and res[0] == "absent")
            or (op == "replace" and res[0] == "False")
            or (op == "llen" and res[0] == "0")
        ):
            self.absent_seen(key, m, b, e, how)
            return
        assert status == "ok", line
        # The key was present: a write that completed is never lost, so
        # it holds exactly what the model last saw.
        found = ("get", "incr", "expire", "delete", "pop", "replace", "lpop", "rpop")
        if op in found and (op != "incr" or incr_args(arg)[1] == ""):
            self.present_seen(key, m, op)  # (incr with init= may make it)
        if op in ("llen", "lpop", "rpop"):
            assert list_of(m.state) is not None, (
                f"{key}: {op} found a list, but it was last seen as {m.state} "
                f"({self.where()})"
            )
        if op == "get":
            assert (res[0], res[1]) == m.state, (
                f"{key} reads {res}, last written {m.state} ({self.where()})"
            )
            self.model[key] = KeyModel(m.state, b, e, m.short_ttl)
        elif op == "incr":
            got = (res[0], res[1])
            ts, init, its = incr_args(arg)
            kept = number_of(m.state) is not None and got == incr_result(m.state, arg)
            made = init != "" and got == incr_init_result(arg)
            assert kept or made, (
                f"{key}: incr {arg} on {m.state} gave {got} ({self.where()})"
            )
            short = m.short_ttl if ts == "" else ts == SHORT_TTL
            if made:
                made_short = its == SHORT_TTL or (its == "" and ts == SHORT_TTL)
                if not kept:  # it was missing: init made it
                    self.absent_seen(key, m, b, e, how)
                    short = made_short
                else:
                    short = short or made_short
            self.model[key] = KeyModel(got, b, e, short)
        elif op in ("set", "sset", "fset"):
            self.model[key] = KeyModel(
                (res[0], res[1]), b, e, arg.endswith("," + SHORT_TTL)
            )
        elif op in ("add", "sadd"):
            if res[0] == "True":  # it was missing (or expired)
                self.absent_seen(key, m, b, e, how)
                short = arg.endswith("," + SHORT_TTL)
                self.model[key] = KeyModel((res[1], res[2]), b, e, short)
            else:  # present, so unchanged since last seen
                self.present_seen(key, m, op)
                self.model[key] = KeyModel(m.state, b, e, m.short_ttl)
        elif op == "replace":
            short = arg.endswith("," + SHORT_TTL)
            self.model[key] = KeyModel((res[1], res[2]), b, e, short)
        elif op == "cas":
            _, _, ttl, expected = arg.split(",")
            if res[0] == "True":
                self.present_seen(key, m, op)
                assert m.state is not None
                assert "=".join(m.state) == expected, (
                    f"{key}: cas expecting {expected} succeeded on {m.state} "
                    f"({self.where()})"
                )
                short = m.short_ttl if ttl == "" else ttl == SHORT_TTL
                self.model[key] = KeyModel((res[1], res[2]), b, e, short)
            elif m.state is not None and "=".join(m.state) == expected:
                # It held the expected value when last seen: only its
                # vanishing makes cas fail.
                self.absent_seen(key, m, b, e, how)
            # else: a mismatch, or absent: nothing new is known
        elif op == "pop":
            assert (res[0], res[1]) == m.state, (
                f"{key} pops {res}, last written {m.state} ({self.where()})"
            )
            self.model[key] = KeyModel(None, b, e, False)
        elif op == "setdefault":
            got, dflt = (res[0], res[1]), (res[2], res[3])
            if got == dflt:  # it was missing: the default is stored
                self.absent_seen(key, m, b, e, how)
                self.model[key] = KeyModel(dflt, b, e, False)
            else:
                self.present_seen(key, m, op)
                assert got == m.state, (
                    f"{key}: setdefault returns {got}, last written {m.state} "
                    f"({self.where()})"
                )
                self.model[key] = KeyModel(m.state, b, e, m.short_ttl)
        elif op in ("lpush", "rpush"):
            n, item = int(res[0]), "=".join(res[1:3])
            items = list_of(m.state)
            if items is not None and n == len(items) + 1:
                items = [item, *items] if op == "lpush" else [*items, item]
                short = m.short_ttl
            else:
                assert n == 1, (
                    f"{key}: {op} made a list of {n} on {m.state} ({self.where()})"
                )
                self.absent_seen(key, m, b, e, how)  # it made the list
                items, short = [item], False
            self.model[key] = KeyModel(list_state(items), b, e, short)
        elif op in ("lpop", "rpop"):
            items = list_of(m.state)
            assert items is not None
            end = items[0] if op == "lpop" else items[-1]
            assert "=".join(res[:2]) == end, (
                f"{key}: {op} gave {res}, the list was {items} ({self.where()})"
            )
            rest = items[1:] if op == "lpop" else items[:-1]
            self.model[key] = KeyModel(list_state(rest), b, e, m.short_ttl)
        elif op == "llen":
            items = list_of(m.state)
            assert items is not None
            assert int(res[0]) == len(items), (
                f"{key}: llen {res[0]}, the list was {items} ({self.where()})"
            )
            self.model[key] = KeyModel(m.state, b, e, m.short_ttl)
        elif op == "delete":
            self.model[key] = KeyModel(None, b, e, False)
        elif op == "expire":
            self.model[key] = KeyModel(m.state, b, e, arg == SHORT_TTL)
        else:
            raise AssertionError(f"unknown op {op}")

    def absent_seen(self, key: str, m: KeyModel, b: int, e: int, how: str) -> None:
        """An operation during [b, e] found the key missing (checked once
        every journal is in: only a flush or a short TTL explains it)."""
        self.absences.append((key, m, b, e, how))
        self.model[key] = KeyModel(None, b, e, False)

    def present_seen(self, key: str, m: KeyModel, op: str) -> None:
        assert m.state is not None, (
            f"{key} reappeared: {op} found it, but it was last seen absent "
            f"({self.where()})"
        )

    def lock_owner(self) -> str:
        """The lock words (0 = free) and which of our processes they name,
        for a hang report."""
        who = {
            wk.pid: f"worker {wk.slot}/{wk.incarnation}" for wk in self.workers.values()
        }
        who[os.getpid()] = "the parent"
        words = lock_words(shmdict.path_for(self.name))
        named = [
            f"{t} = {who.get(int(t, 16) & 0x3FFFFFFF, 'unknown')}"
            for t in words.split(", ")
            if t.startswith("0x")
        ]
        return f"mutex lock words {words} ({'; '.join(named)})"

    def may_vanish(self, m: KeyModel, until: int = 2**63) -> bool:
        """Could the key have become absent after observation m, before
        `until`? (A flush that may come after m, or a short TTL.)"""
        return (
            m.state is None
            or m.short_ttl
            or any(f.e >= m.b and f.b <= until for f in self.flushes)
        )

    # -- pausing

    def pause(self) -> None:
        """Ask every worker to stop between operations; wait (bounded) until
        all have, reading their journals to the end meanwhile."""
        self.gen = self.gen + 2 if self.gen + 2 < STOP else 1
        self.ctl[0] = self.gen
        self.wait_acked(list(self.workers.values()))

    def wait_acked(self, workers: list[Worker]) -> None:
        deadline = time.monotonic() + 60
        slow = time.monotonic() + 3
        while True:
            if slow and time.monotonic() > slow:
                slow = 0
                info = []
                for wk in self.workers.values():
                    try:
                        with open(f"/proc/{wk.pid}/wchan") as f:
                            wchan = f.read()
                        with open(f"/proc/{wk.pid}/stat") as f:
                            st = f.read().rsplit(")", 1)[1].split()[0]
                    except OSError as e:
                        wchan, st = str(e), "?"
                    try:
                        with open(f"/proc/{wk.pid}/syscall") as f:
                            sc = f.read().split()[:4]
                    except OSError:
                        sc = []
                    info.append(
                        f"worker {wk.slot} pid {wk.pid} acked {wk.acked} state {st} "
                        f"wchan {wchan} syscall {sc} pending {wk.pending}"
                    )
                info.append(f"last victim {getattr(self, 'last_victim', None)}")
                print(
                    f"SLOW PAUSE gen {self.gen}: {self.lock_owner()}; "
                    + "; ".join(info),
                    flush=True,
                )
            for wk in workers:
                self.drain(wk)
                assert not wk.eof, f"worker {wk.slot} died unasked ({self.where()})"
            if all(wk.acked == self.gen for wk in workers):
                return
            assert time.monotonic() < deadline, (
                f"workers did not pause within 60 s: a hang ({self.where()})"
            )
            select.select([w.rfd for w in workers], [], [], 0.05)

    def resume(self) -> None:
        self.ctl[0] = self.gen + 1

    # -- checks (everyone paused)

    def check(self, victim: Worker | None, t_kill: int) -> None:
        c = self.checker
        problems = c.verify()
        assert problems == [], f"verify ({self.where()}): {problems}"
        inflight: InFlight | None = None
        if victim is not None and victim.pending is not None:
            seq, op, k, arg, b = victim.pending
            if op == "flush":
                self.flushes.append(Flush(b, t_kill, False))
            elif op not in GLOBAL_OPS:
                inflight = (f"w{victim.slot}:{k}", victim.slot, seq, op, k, arg, b)
        for key, m, b, e, how in self.absences:
            assert self.may_vanish(m, e), (
                f"{key} vanished: seen absent by {how!r} at {b}..{e} but last seen "
                f"{m}, and no flush could have come between ({self.where()}); "
                f"its last operations: {list(self.history.get(key, []))}; "
                f"flushes since the last check: {self.flushes}"
            )
        self.absences.clear()
        listed = set(c.get_keys())
        now = time.monotonic_ns()
        states = self.read_states(list(self.model))
        for key, m in self.model.items():
            state = states[key]
            fl = inflight if inflight is not None and inflight[0] == key else None
            before, after = self.acceptable(m, fl, t_kill)
            assert state in before | after, (
                f"{key} is {state} (get_keys lists it: {key in listed}); "
                f"it may only be one of {before | after} "
                f"(last seen {m}; op in flight {fl}; killed at {t_kill}; "
                f"its last operations: {list(self.history.get(key, []))}; "
                f"flushes {self.flushes[-3:]}) "
                f"({self.where()})"
            )
            if fl is not None and fl[3] != "get":
                if state in after and state not in before:
                    self.fig["inflight_applied"] += 1
                elif state in before and state not in after:
                    self.fig["inflight_lost"] += 1
            if (state is None) == (key in listed) and not (m.short_ttl or fl):
                pytest.fail(f"{key}: get says {state}, get_keys says {key in listed}")
            # The op in flight may have been applied; if it set a short TTL,
            # the key may still expire (keep that possible, conservatively).
            short = m.short_ttl or (fl is not None and SHORT_TTL in fl[5].split(","))
            short = short and state is not None
            self.model[key] = KeyModel(state, now, now, short)
            hist = self.history.setdefault(key, collections.deque(maxlen=24))
            if fl is not None:
                hist.append(
                    f"KILLED in {fl[3]}({fl[5]}) begun {fl[6]}, killed {t_kill}"
                )
            hist.append(f"check at {now}: {state} short={short}")
        unknown = {k for k in listed if k not in self.model}
        assert not unknown, f"keys nobody wrote: {sorted(unknown)[:5]} ({self.where()})"
        self.flushes.clear()

    def read_states(self, keys: list[str]) -> dict[str, State]:
        """The state of each key, every value and list item checked whole
        and its writer's (a list's items are read from a copy of the file,
        so the check changes nothing)."""
        c = self.checker
        states: dict[str, State] = {}
        lists = []
        for key in keys:
            try:
                got = c.get(key, KeyError)
            except TypeError:  # it holds a list
                lists.append(key)
                continue
            slot, k = (int(x) for x in key[1:].split(":"))
            if got is not KeyError:
                assert value_ok(slot, k, got), (
                    f"{key}: torn or foreign value {got!r:.200}"
                )
            states[key] = None if got is KeyError else digest(got)
        if lists:
            self.fig["list_checks"] += len(lists)
            for key, items in list_items(c, lists).items():
                slot, k = (int(x) for x in key[1:].split(":"))
                if items is None:
                    # It expired between the get and the copy: absent now,
                    # which the model has to allow (a short TTL).
                    states[key] = None
                    continue
                for x in items:
                    assert x is not None, f"{key}: a None item"
                    assert value_ok(slot, k, x), (
                        f"{key}: torn or foreign list item {x!r:.200}"
                    )
                assert items, f"{key}: an empty list is stored"
                states[key] = list_state([item_state(x) for x in items])
        return states

    def acceptable(
        self, m: KeyModel, fl: InFlight | None, t_kill: int
    ) -> tuple[set[State], set[State]]:
        """The states a key may be in now: without and with the effect of
        the op in flight on it (if any)."""
        if any(f.definite and f.b > (t_kill if fl else m.e) for f in self.flushes):
            return {None}, set()  # a flush surely came after everything
        before: set[State] = set()
        if not any(f.definite and f.b > m.e for f in self.flushes):
            before.add(m.state)
        if self.may_vanish(m):
            before.add(None)
        after: set[State] = set()
        if fl is not None:
            _, slot, seq, op, k, arg, b = fl
            for s in before:
                after.add(effect(s, op, slot, k, seq, arg))
            if SHORT_TTL in arg.split(",") or any(f.e >= b for f in self.flushes):
                after.add(None)
            if (
                op in ("set", "sset", "fset", "replace", "cas")
                and int(arg.split(",")[1]) > LOGGED_BLOCK_MAX
                and any(x is not None for x in before)
            ):
                # On a full dict, a value too big for the undo log that
                # fits only in the old one's place is written after the
                # old one's drop is committed: a kill in between leaves
                # the key absent.
                after.add(None)
        return before, after

    def capacity_check(self) -> None:
        """flush_all gives every byte back."""
        c = self.checker
        c.flush_all()
        s = c.stats()
        assert (s["entries"], s["expiring"], s["bytes_used"]) == (0, 0, 0), s
        assert s["bytes_free"] == s["capacity"], s
        assert c.verify() == []
        now = time.monotonic_ns()
        for key in self.model:
            self.model[key] = KeyModel(None, now, now, False)
        self.fig["capacity_checks"] += 1

    # -- the run

    def run(self, kills: int) -> None:
        self.pause()
        for slot in range(self.nworkers):
            self.spawn(slot, 0)
        self.wait_acked(list(self.workers.values()))
        recov0 = self.checker.stats()["recoveries"]
        self.resume()
        for i in range(kills):
            t_end = time.monotonic() + self.rng.uniform(0.0005, 0.012)
            while (left := t_end - time.monotonic()) > 0:
                ready, _, _ = select.select(
                    [w.rfd for w in self.workers.values()], [], [], left
                )
                for wk in self.workers.values():
                    if wk.rfd in ready:
                        self.drain(wk, once=True)
            victim = self.workers.pop(self.rng.randrange(self.nworkers))
            os.kill(victim.pid, signal.SIGKILL)
            self.last_victim = (victim.slot, victim.pid, victim.pending)
            t_kill = time.monotonic_ns()
            # The others keep working while the victim is reaped.
            status = wait_child(victim.pid, 30)
            assert os.WIFSIGNALED(status), (
                f"worker {victim.slot} exited with {os.waitstatus_to_exitcode(status)} "
                f"before it was killed ({self.where()})"
            )
            while not victim.eof:
                self.drain(victim)
            os.close(victim.rfd)
            self.fig["kills"] += 1
            self.pause()
            self.check(victim, t_kill)
            if i % 50 == 49:
                self.capacity_check()
            self.spawn(victim.slot, victim.incarnation + 1)
            self.wait_acked([self.workers[victim.slot]])
            self.resume()
        self.pause()
        self.check(None, time.monotonic_ns())
        self.fig["kills_in_lock"] = self.checker.stats()["recoveries"] - recov0
        self.capacity_check()

    def stop(self) -> None:
        self.ctl[0] = STOP
        for slot in list(self.workers):
            wk = self.workers.pop(slot)
            try:
                status = wait_child(wk.pid, 30)
                while not wk.eof:
                    self.drain(wk)
                assert os.waitstatus_to_exitcode(status) == 0, (
                    f"worker {wk.slot} failed"
                )
            finally:
                os.close(wk.rfd)

    def close(self) -> None:
        for wk in self.workers.values():
            os.kill(wk.pid, signal.SIGKILL)
            os.waitpid(wk.pid, 0)
            os.close(wk.rfd)
        self.workers.clear()
        self.checker.close()
        self.d.close()


@pytest.mark.no_asan
def test_torture(name: str) -> None:
    """Thousands of SIGKILLs of working processes; after each, the dict is
    whole, every completed write is there, at most the op in flight is
    lost, nobody waited unboundedly, and flush_all gives all space back."""
    kills = env_int("SHMDICT_TORTURE_KILLS", 1500)
    workers = env_int("SHMDICT_TORTURE_WORKERS", 4)
    seed = env_seed("SHMDICT_TORTURE_SEED", bits=32)
    print(f"torture: SHMDICT_TORTURE_SEED={seed}")
    t0 = time.monotonic()
    t = Torture(name, workers, seed)
    try:
        t.run(kills)
        t.stop()
        assert t.checker.verify() == []
    finally:
        t.close()
    record_figures(
        "torture",
        seed=seed,
        workers=workers,
        seconds=round(time.monotonic() - t0, 1),
        **t.fig,
    )
    assert t.fig["kills"] == kills
    assert t.fig["ops"] > kills
    assert t.fig["kills_in_lock"] > 0, "no kill ever landed inside the lock"

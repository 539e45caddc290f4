"""The Redis backend beside shared memory and the raw redis-py calls.

    python benchmarks/redis_backend.py            # print the table
    python benchmarks/redis_backend.py --write    # and write the section

Starts a private redis-server (no persistence) listening on a unix socket
and on a free loopback TCP port, stops it by pid at the end (also on an
error or Ctrl-C), and times the same operations on:

- ``shm``: a :class:`shmdict.SharedDict` (``shmdict.new``), the per-host
  ceiling;
- ``RedisDict``: ``shmdict.connect(URL)`` over the unix socket and over TCP;
- ``redis-py``: the raw client calls a hand-written program would make for
  the same op, on the same connections (with hiredis when installed):
  GET, SET, INCRBY, DEL, MGET, MSET, and for the loops the same single
  commands.

Ops, on 16-byte keys and 16-byte bytes values: get (hit), get (miss), set
(overwrite), incr (on an int), delete (of an existing key; the key is put
back untimed), and batches of 100 keys: get_many / set_many (one call:
a script or MGET/MSET, one round trip) against a loop of 100 single
get / set calls (100 round trips). Each repetition times a loop of n ops
for every contender in turn (alternated, so drift and load hit them all
alike), with the cyclic GC off; a figure is the median over the
repetitions of the time per op (per call, for a batch), loop included.
The overhead of RedisDict is its median less redis-py's on the same
transport.

``--write`` writes ``benchmarks/results/redis.md`` (report.py includes it
in BENCHMARKS.md) and puts the same section into an existing BENCHMARKS.md
in place, between its markers (or before "## Multi-process throughput"),
without rerunning the rest of the suite.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "src"))

import shmdict  # noqa: E402
from common import REDIS_BEGIN, REDIS_END, REDIS_SECTION  # noqa: E402

NKEYS = 1000
BATCH = 100
VALUE = b"v" * 16

#: op -> (label, ops per timed loop, whether it is a batch of BATCH keys)
OPS: dict[str, tuple[str, int, bool]] = {
    "get_hit": ("get (hit)", 300, False),
    "get_miss": ("get (miss)", 300, False),
    "set": ("set (overwrite)", 300, False),
    "incr": ("incr", 300, False),
    "delete": ("delete", 300, False),
    "get_many": (f"get_many, {BATCH} keys (one call)", 20, True),
    "get_loop": (f"{BATCH} x get (a loop)", 4, True),
    "set_many": (f"set_many, {BATCH} keys (one call)", 20, True),
    "set_loop": (f"{BATCH} x set (a loop)", 4, True),
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def redis_server() -> Iterator[tuple[str, str, str]]:
    """A private redis-server on a unix socket and a loopback port: yields
    (unix URL, TCP URL, version); stopped by pid on the way out."""
    if shutil.which("redis-server") is None:
        raise SystemExit("redis-server is not installed (apt-get install redis-server)")
    where = tempfile.mkdtemp(prefix="bench-redis-backend-")
    sock = os.path.join(where, "redis.sock")
    port = _free_port()
    proc = subprocess.Popen(
        [
            "redis-server",
            "--bind", "127.0.0.1",
            "--port", str(port),
            "--unixsocket", sock,
            "--unixsocketperm", "700",
            "--save", "",
            "--appendonly", "no",
            "--dir", where,
            "--logfile", os.path.join(where, "redis.log"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        import redis

        deadline = time.monotonic() + 30
        while True:
            try:
                r = redis.Redis(unix_socket_path=sock)
                version = str(r.info("server")["redis_version"])
                r.close()
                break
            except (redis.ConnectionError, FileNotFoundError):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.02)
        yield f"unix://{sock}", f"redis://127.0.0.1:{port}/0", version
    finally:
        with suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        shutil.rmtree(where, ignore_errors=True)


# ---------------------------------------------------------------- contenders


class Contender:
    """One store and its spelling of every op: ``prepare(op)`` returns a
    function that runs the op on the i-th key, untimed setup done."""

    def __init__(self, label: str, keys: list[str]) -> None:
        self.label = label
        self.keys = keys
        self.missing = [f"miss:{i:011d}" for i in range(len(keys))]

    def fns(self) -> dict[str, Callable[[int], object]]:
        raise NotImplementedError

    def reset(self, op: str, n: int) -> None:
        """Untimed: put back what the last loop of *op* took away."""

    def close(self) -> None:
        raise NotImplementedError


def _op_table(
    keys: Sequence[Any],
    missing: Sequence[Any],
    counters: Sequence[Any],
    get: Callable[[Any], object],
    set_: Callable[[Any, bytes], object],
    incr: Callable[[Any], object],
    delete: Callable[[Any], object],
    get_many: Callable[[], object],
    set_many: Callable[[], object],
) -> dict[str, Callable[[int], object]]:
    """The timed calls of one contender, each taking the repetition's
    index: the same ops whatever spells them (a dict's methods or
    redis-py's commands)."""
    batch = keys[:BATCH]

    def get_loop(i: int) -> None:
        for k in batch:
            get(k)

    def set_loop(i: int) -> None:
        for k in batch:
            set_(k, VALUE)

    return {
        "get_hit": lambda i: get(keys[i]),
        "get_miss": lambda i: get(missing[i]),
        "set": lambda i: set_(keys[i], VALUE),
        "incr": lambda i: incr(counters[i % BATCH]),
        "delete": lambda i: delete(keys[i]),
        "get_many": lambda i: get_many(),
        "get_loop": get_loop,
        "set_many": lambda i: set_many(),
        "set_loop": set_loop,
    }


class DictContender(Contender):
    """A SharedDict or a RedisDict: the shmdict API."""

    def __init__(self, label: str, d: Any, keys: list[str]) -> None:
        super().__init__(label, keys)
        self.d = d
        d.set_many(dict.fromkeys(keys, VALUE))
        for k in keys[:BATCH]:
            d.set("n" + k, 0)

    def fns(self) -> dict[str, Callable[[int], object]]:
        d, batch = self.d, self.keys[:BATCH]
        mapping = dict.fromkeys(batch, VALUE)
        return _op_table(
            self.keys,
            self.missing,
            ["n" + k for k in batch],
            d.get,
            d.set,
            lambda k: d.incr(k, 1),
            d.delete,
            lambda: d.get_many(batch),
            lambda: d.set_many(mapping),
        )

    def reset(self, op: str, n: int) -> None:
        if op == "delete":
            self.d.set_many(dict.fromkeys(self.keys[:n], VALUE))

    def close(self) -> None:
        if not isinstance(self.d, shmdict.SharedDict):
            self.d.flush_all()
        self.d.close()


class RawContender(Contender):
    """redis-py's own calls, on the keys RedisDict would use (its namespace
    prefix), as raw bytes."""

    def __init__(self, label: str, url: str, keys: list[str]) -> None:
        import redis

        super().__init__(label, keys)
        self.r = redis.Redis.from_url(url)
        self.rkeys = [b"raw:" + k.encode() for k in keys]
        self.rmissing = [b"raw:" + k.encode() for k in self.missing]
        self.r.mset(dict.fromkeys(self.rkeys, VALUE))
        self.r.mset(dict.fromkeys([b"n" + k for k in self.rkeys[:BATCH]], 0))

    def fns(self) -> dict[str, Callable[[int], object]]:
        r, batch = self.r, self.rkeys[:BATCH]
        mapping = dict.fromkeys(batch, VALUE)
        return _op_table(
            self.rkeys,
            self.rmissing,
            [b"n" + k for k in batch],
            r.get,
            r.set,
            lambda k: r.incrby(k, 1),
            r.delete,
            lambda: r.mget(batch),
            lambda: r.mset(mapping),
        )

    def reset(self, op: str, n: int) -> None:
        if op == "delete":
            self.r.mset(dict.fromkeys(self.rkeys[:n], VALUE))

    def close(self) -> None:
        self.r.delete(*self.rkeys, *[b"n" + k for k in self.rkeys[:BATCH]])
        self.r.close()


def _time_loop(fn: Callable[[int], object], n: int) -> tuple[float, float]:
    """(wall, this process's CPU) ns per call of ``fn(i)`` for i in
    range(n), loop included."""
    gc.disable()
    try:
        c0 = time.process_time_ns()
        t0 = time.perf_counter_ns()
        for i in range(n):
            fn(i)
        t1 = time.perf_counter_ns()
        c1 = time.process_time_ns()
    finally:
        gc.enable()
    return (t1 - t0) / n, (c1 - c0) / n


#: The server's commands of interest in INFO commandstats.
COMMANDS = ("get", "set", "incrby", "del", "mget", "mset", "evalsha")


class Results:
    """Medians per op and contender: wall and client CPU ns per call, and
    the server's own time per command (INFO commandstats, us per call)."""

    def __init__(self) -> None:
        self.wall: dict[str, dict[str, float]] = {}
        self.cpu: dict[str, dict[str, float]] = {}
        self.server: dict[str, dict[str, float]] = {}


def measure(
    contenders: list[Contender],
    reps: int,
    admin: Any,
    progress: Callable[[str], None],
) -> Results:
    """Time every op on every contender, alternated; *admin* (a redis-py
    client) resets and reads the server's command statistics per op."""
    fns = {c.label: c.fns() for c in contenders}
    res = Results()
    for op, (label, n, _) in OPS.items():
        wall: dict[str, list[float]] = {c.label: [] for c in contenders}
        cpu: dict[str, list[float]] = {c.label: [] for c in contenders}
        for c in contenders:  # warm up: connections, scripts loaded
            _time_loop(fns[c.label][op], min(n, 20))
            c.reset(op, min(n, 20))
        admin.config_resetstat()
        for rep in range(reps):
            order = contenders if rep % 2 == 0 else contenders[::-1]
            for c in order:
                w, u = _time_loop(fns[c.label][op], n)
                wall[c.label].append(w)
                cpu[c.label].append(u)
                c.reset(op, n)
        stats = admin.info("commandstats")
        res.server[op] = {
            cmd: float(stats[f"cmdstat_{cmd}"]["usec_per_call"])
            for cmd in COMMANDS
            if f"cmdstat_{cmd}" in stats
        }
        res.wall[op] = {k: statistics.median(v) for k, v in wall.items()}
        res.cpu[op] = {k: statistics.median(v) for k, v in cpu.items()}
        progress(
            f"  {label:32} "
            + "  ".join(f"{k} {v / 1000:8.1f} us" for k, v in res.wall[op].items())
        )
    return res


# ---------------------------------------------------------------- report


#: The server command each op is, for RedisDict and for raw redis-py.
OP_COMMANDS = {
    "get_hit": ("get", "get"),
    "get_miss": ("get", "get"),
    "set": ("set", "set"),
    "incr": ("evalsha", "incrby"),
    "delete": ("del", "del"),
    "get_many": ("evalsha", "mget"),
    "get_loop": ("get", "get"),
    "set_many": ("evalsha", "mset"),
    "set_loop": ("set", "set"),
}


def _us(ns: float) -> str:
    return f"{ns / 1000:.1f} us" if ns >= 1000 else f"{ns:.0f} ns"


def _overhead(mine: float, raw: float) -> str:
    return f"{(mine - raw) / 1000:+.1f} us ({mine / raw:.2f}x)"


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return out + ["| " + " | ".join(row) + " |" for row in rows]


def render(res: Results, info: dict[str, str], reps: int) -> str:
    """The Markdown section."""
    rows = []
    for op, (label, _, _) in OPS.items():
        w = res.wall[op]
        rows.append(
            [
                label,
                _us(w["shm"]),
                f"**{_us(w['RedisDict unix'])}**",
                _us(w["redis-py unix"]),
                _overhead(w["RedisDict unix"], w["redis-py unix"]),
                f"**{_us(w['RedisDict tcp'])}**",
                _us(w["redis-py tcp"]),
                _overhead(w["RedisDict tcp"], w["redis-py tcp"]),
            ]
        )
    where = []
    for op, (label, _, _) in OPS.items():
        c = res.cpu[op]
        mine, raw = OP_COMMANDS[op]
        srv = res.server.get(op, {})

        def server(cmd: str, srv: dict[str, float] = srv) -> str:
            return f"{cmd.upper()} {srv[cmd]:.1f} us" if cmd in srv else cmd.upper()

        where.append(
            [
                label,
                _us(c["RedisDict unix"]),
                _us(c["redis-py unix"]),
                f"{(c['RedisDict unix'] - c['redis-py unix']) / 1000:+.1f} us",
                server(mine),
                server(raw),
            ]
        )
    return "\n".join(
        [
            "## The Redis backend (RedisDict) beside shared memory and redis-py",
            "",
            f"Generated by `python benchmarks/redis_backend.py --write` on "
            f"{info['date']} ({info['machine']}; load {info['load']} at the "
            f"start, {info['load_end']} at the end), apart from the rest of "
            "this report: its figures are from that one run.",
            "",
            f"One private redis-server {info['server']} (no persistence) on a "
            "unix socket and on loopback TCP; redis-py "
            f"{info['redis_py']}{info['hiredis']}. Each cell is the median, over "
            f"{reps} alternated repetitions, of the time per call (loop "
            f"included, GC off) on {NKEYS} keys of 16 bytes with 16-byte "
            f"values; a batch row is per call of {BATCH} keys. The overhead is "
            "RedisDict's median less the raw redis-py call's on the same "
            "transport (and their ratio). Raw redis-py: GET, GET, SET, INCRBY, "
            "DEL, MGET, GET x 100, MSET, SET x 100. RedisDict: GET, GET, SET "
            "(the value tagged), a Lua script for incr (type check, INCRBY, "
            "overflow and float handling, one round trip), DEL, a script for "
            "get_many (MGET, then TYPE of each key that came back empty: a "
            "list is a TypeError, as in SharedDict) and for set_many (MSET "
            "without an expiry; all or none).",
            "",
            *_table(
                [
                    "op",
                    "shm (SharedDict)",
                    "RedisDict, unix",
                    "redis-py, unix",
                    "overhead, unix",
                    "RedisDict, TCP",
                    "redis-py, TCP",
                    "overhead, TCP",
                ],
                rows,
            ),
            "",
            "Where the overhead goes (unix socket): the client's CPU time per "
            "call (this process, median; what the Python code costs, with the "
            "socket calls) and the server's own time per command (`INFO "
            "commandstats` `usec_per_call` over that op's run, both transports; "
            "a script's includes the commands it calls). The rest of a call's "
            "time is the round trip: the wait for the server's turn on a "
            "shared machine, the same for both.",
            "",
            *_table(
                [
                    "op",
                    "client CPU, RedisDict",
                    "client CPU, redis-py",
                    "difference",
                    "server, RedisDict",
                    "server, redis-py",
                ],
                where,
            ),
            "",
            "A Redis call costs a round trip to the server whatever the "
            "client does, so the backend's own cost is the difference: the "
            "key and value checks, the tag byte, the decoding, and for incr "
            "and the batches a script where a plain command would not keep "
            "SharedDict's semantics (incr: KeyError for a missing key, "
            "floats, OverflowError with the value unchanged; get_many: "
            "TypeError for a list). A batch call is one round trip for "
            f"{BATCH} keys, against {BATCH} for the loop.",
            "",
        ]
    )


def write_section(text: str, results: Path, report: Path) -> list[Path]:
    """Write *results*; put the section into *report* in place if it
    exists. The paths written."""
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(text)
    written = [results]
    if report.exists():
        doc = report.read_text()
        block = f"{REDIS_BEGIN}\n{text}\n{REDIS_END}"
        if REDIS_BEGIN in doc and REDIS_END in doc:
            head, rest = doc.split(REDIS_BEGIN, 1)
            tail = rest.split(REDIS_END, 1)[1]
            doc = head + block + tail
        elif "\n## Multi-process throughput" in doc:
            head, tail = doc.split("\n## Multi-process throughput", 1)
            doc = f"{head}\n{block}\n\n## Multi-process throughput{tail}"
        else:
            doc = doc.rstrip("\n") + "\n\n" + block + "\n"
        report.write_text(doc)
        written.append(report)
    return written


def _loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--write", action="store_true", help="write the section files")
    ap.add_argument("--reps", type=int, default=15, help="repetitions (median)")
    ap.add_argument("--out", default=REDIS_SECTION, help="the section file")
    ap.add_argument(
        "--report", default=str(REPO / "BENCHMARKS.md"), help="the report to update"
    )
    args = ap.parse_args(argv)
    import redis
    import redis.utils

    def progress(msg: str) -> None:
        print(msg, flush=True)

    keys = [f"key:{i:012d}" for i in range(NKEYS)]
    info = {
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "machine": f"{os.cpu_count()} cores, Python {platform.python_version()}",
        "load": _loadavg(),
        "redis_py": redis.__version__,
        "hiredis": ", hiredis" if redis.utils.HIREDIS_AVAILABLE else ", no hiredis",
    }
    name = f"bench-redis-backend-{os.getpid()}"
    with redis_server() as (unix_url, tcp_url, version):
        info["server"] = version
        progress(f"redis-server {version}: {unix_url}, {tcp_url}")
        import redis as redis_py

        admin = redis_py.Redis.from_url(unix_url)
        contenders: list[Contender] = []
        try:
            contenders = [
                DictContender("shm", shmdict.new(name, 16 << 20), keys),
                DictContender(
                    "RedisDict unix", shmdict.connect(unix_url, namespace="u"), keys
                ),
                RawContender("redis-py unix", unix_url, keys),
                DictContender(
                    "RedisDict tcp", shmdict.connect(tcp_url, namespace="t"), keys
                ),
                RawContender("redis-py tcp", tcp_url, keys),
            ]
            res = measure(contenders, args.reps, admin, progress)
        finally:
            for c in contenders:
                c.close()
            admin.close()
    info["load_end"] = _loadavg()
    text = render(res, info, args.reps)
    print()
    print(text)
    if args.write:
        for p in write_section(text, Path(args.out), Path(args.report)):
            progress(f"wrote {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

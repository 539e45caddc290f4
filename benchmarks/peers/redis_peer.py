"""redis-py with hiredis, against a private redis-server on a unix socket.

The server is Debian's redis-server, started by :meth:`RedisPeer.start` in
a temporary directory with persistence off, and stopped by
:meth:`RedisPeer.stop`.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from common import LIST_KEY, MIX_TTL, Dataset
from peers import Peer


class RedisPeer(Peer):
    """GET / SET / INCRBY / DEL, one round trip each."""

    key = "redis"
    label = "redis (hiredis, unix socket)"
    notes = (
        "redis-py + hiredis to a private redis-server on a unix socket "
        "(no persistence): "
        "r.get(k), r.set(k, v), r.incrby(k, 1), r.delete(k); one round trip per op"
    )
    setup = "g = o.get; s = o.set; inc = o.incrby; dl = o.delete"
    stmts: ClassVar[dict[str, str]] = {
        "get": "g(k)",
        "set": "s(k, v)",
        "incr": "inc(k, 1)",
        "delete": "dl(k)",
    }
    # Only the feature ops that are one redis command each.
    feature_setup = (
        "nx = o.setnx; s = o.set; gd = o.getdel; inc = o.incrby; lp = o.lpush; "
        f"rpo = o.rpop; ll = o.llen; mg = o.mget; ms = o.mset; Q = {LIST_KEY!r}"
    )
    feature_stmts: ClassVar[dict[str, str]] = {
        "add_new": "nx(k, v)",
        "add_exists": "nx(k, v)",
        "replace": "s(k, v, xx=True)",
        "pop": "gd(k)",
        "incr_init": "inc(k, 1)",
        "queue": "lp(Q, v)\nrpo(Q)",
        "llen": "ll(Q)",
        "get_many": "mg(k)",
        "set_many": "ms(k)",
    }
    feature_notes = (
        "one command each: SETNX (add), SET XX (replace), GETDEL (pop), INCRBY "
        "(a missing key starts at 0: incr with init=0), LPUSH + RPOP, LLEN, "
        "MGET, MSET; one round trip per command"
    )
    set_ttl_stmt = f"s(k, v, ex={MIX_TTL})"
    set_ttl_note = f"r.set(k, v, ex={MIX_TTL}) (SET ... EX)"
    max_keys = 1_000_000

    def __init__(self) -> None:
        super().__init__()
        self.proc: subprocess.Popen[bytes] | None = None
        self.dir: str | None = None
        self.sock = ""
        self.version = ""

    def check(self) -> str | None:
        try:
            import redis
            import redis.utils
        except ImportError as exc:
            return f"import redis failed: {exc}"
        if not redis.utils.HIREDIS_AVAILABLE:
            return "hiredis is not installed (pip install hiredis)"
        if shutil.which("redis-server") is None:
            return "redis-server not found (apt-get install redis-server failed)"
        return None

    def start(self) -> None:
        import redis

        super().start()
        self.dir = tempfile.mkdtemp(prefix="bench-redis-")
        self.sock = str(Path(self.dir) / "redis.sock")
        log = Path(self.dir) / "redis.log"
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                "0",
                "--unixsocket",
                self.sock,
                "--unixsocketperm",
                "700",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.dir,
                "--logfile",
                str(log),
                "--daemonize",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                r = redis.Redis(unix_socket_path=self.sock)
                self.version = str(r.info("server").get("redis_version", ""))
                r.close()
                return
            except (redis.ConnectionError, FileNotFoundError):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def _client(self) -> Any:
        import redis

        return redis.Redis(unix_socket_path=self.sock)

    def create(self, ds: Dataset, extra_keys: int) -> Any:
        r = self._client()
        r.flushall()
        return r

    def populate(self, store: Any, keys: Sequence[str], value: bytes | int) -> None:
        for i in range(0, len(keys), 10_000):
            store.mset(dict.fromkeys(keys[i : i + 10_000], value))

    def populate_values(
        self, store: Any, items: Sequence[tuple[str, bytes]], ttl: float = 0
    ) -> None:
        for i in range(0, len(items), 10_000):
            chunk = items[i : i + 10_000]
            if not ttl:
                store.mset(dict(chunk))
                continue
            pipe = store.pipeline(transaction=False)
            for k, v in chunk:
                pipe.set(k, v, ex=int(ttl))
            pipe.execute()

    def put(self, store: Any, key: str, value: bytes | int) -> None:
        store.set(key, value)

    def remove(self, store: Any, keys: Sequence[str]) -> None:
        for i in range(0, len(keys), 10_000):
            store.delete(*keys[i : i + 10_000])

    def read_int(self, store: Any, key: str) -> int:
        return int(store.get(key))

    def fill_list(self, store: Any, key: str, count: int, value: bytes) -> None:
        store.delete(key)
        store.rpush(key, *([value] * count))

    def destroy(self, store: Any) -> None:
        store.flushall()
        store.close()

    def attach(self, store: Any) -> Any:
        return self._client()

    def detach(self, handle: Any) -> None:
        handle.close()

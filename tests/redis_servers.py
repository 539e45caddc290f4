"""Start and stop real Redis servers for the tests and the scripts.

    start_standalone(workdir, **config) -> Server   # one server, unix socket
    start_cluster(workdir, masters=3, replicas=1) -> Cluster

Every process is a ``redis-server`` child started with no persistence
(``--save "" --appendonly no``), and stopped by its pid: SIGTERM, then
SIGKILL after a deadline. Processes started for a test session die with
it (PR_SET_PDEATHSIG) even if it is killed; ``stop()`` is idempotent.

From a shell (the judges and CI scripts)::

    eval "$(python tests/redis_servers.py start DIR)"   # exports the URLs
    ...
    python tests/redis_servers.py stop DIR

``start`` starts one standalone server and one Cluster, writes their pids
to DIR/pids and prints ``SHMDICT_REDIS_URL=...`` and
``SHMDICT_REDIS_CLUSTER_URL=redis+cluster://127.0.0.1:PORT`` (both ready
for :func:`shmdict.connect`); ``stop`` kills the pids listed there
(only processes that are still redis-server).

Needs only the standard library and the ``redis-server`` and
``redis-cli`` programs.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

__all__ = ["Cluster", "Server", "have_redis", "start_cluster", "start_standalone"]

STOP_DEADLINE = 5.0  # seconds between SIGTERM and SIGKILL
READY_DEADLINE = 30.0  # seconds for a server or a cluster to be ready
_PR_SET_PDEATHSIG = 1


def have_redis() -> bool:
    """Whether redis-server and redis-cli are on PATH."""
    return bool(shutil.which("redis-server") and shutil.which("redis-cli"))


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _is_redis(pid: int) -> bool:
    """Whether *pid* is (still) a redis-server process: a pid read back from
    a file may have been reused."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"redis-server" in f.read()
    except OSError:
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - not ours
        return True
    # A zombie child counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def kill_pid(pid: int, proc: subprocess.Popen[bytes] | None = None) -> None:
    """SIGTERM *pid*, SIGKILL it after STOP_DEADLINE, and reap it if it is
    our child. Does nothing if it is gone or not a redis-server."""
    if proc is None and not _is_redis(pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_DEADLINE
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return
        if proc is None and not _alive(pid):
            return
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if proc is not None:
        proc.wait(STOP_DEADLINE)
    else:
        deadline = time.monotonic() + STOP_DEADLINE
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)


def _command(address: str | tuple[str, int], *args: str, timeout: float = 2.0) -> str:
    """Send one command (RESP) and return the reply as text; OSError if the
    server is not there. Enough for PING, INFO and CLUSTER INFO."""
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(address)
        req = f"*{len(args)}\r\n" + "".join(
            f"${len(a.encode())}\r\n{a}\r\n" for a in args
        )
        s.sendall(req.encode())
        buf = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            buf += chunk
            if buf[:1] in (b"+", b"-", b":") and buf.endswith(b"\r\n"):
                text = buf.decode(errors="replace").strip()
                return text[1:] if text[0] == "+" else text
            if buf[:1] == b"$":
                head, _, rest = buf.partition(b"\r\n")
                n = int(head[1:])
                if n < 0:
                    return ""
                if len(rest) >= n + 2:
                    return rest[:n].decode(errors="replace")


def _wait_until(
    what: str, check: Callable[[], bool], proc: subprocess.Popen[bytes], log: str
) -> None:
    deadline = time.monotonic() + READY_DEADLINE
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"redis-server exited ({proc.returncode}): {_tail(log)}")
        with contextlib.suppress(OSError, ValueError):
            if check():
                return
        time.sleep(0.05)
    raise RuntimeError(f"{what} was not ready within {READY_DEADLINE} s: {_tail(log)}")


def _tail(path: str) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read()[-1500:]
    except OSError:
        return "(no log)"


def _env() -> dict[str, str]:
    """This environment without LD_PRELOAD: the servers never run under the
    sanitizers a test pass may preload into Python."""
    return {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}


def _spawn(args: Sequence[str], log: str, session: bool) -> subprocess.Popen[bytes]:
    """Start redis-server; with *session*, it dies with this process."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            ["redis-server", *args],
            env=_env(),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=not session,
            preexec_fn=_die_with_parent if session else None,
        )


def _config_args(config: dict[str, object]) -> list[str]:
    out: list[str] = []
    for k, v in config.items():
        out += [f"--{k.replace('_', '-')}", str(v)]
    return out


class Server:
    """One standalone redis-server on a unix socket in *workdir*."""

    def __init__(self, workdir: str, config: dict[str, object], session: bool = True):
        self.workdir = os.path.abspath(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        self.socket = os.path.join(self.workdir, "redis.sock")
        self.log = os.path.join(self.workdir, "redis.log")
        self.config = dict(config)
        self._session = session
        self.proc: subprocess.Popen[bytes] | None = None
        self.pid = 0
        self._start()

    @property
    def url(self) -> str:
        """``unix:///path/redis.sock``."""
        return f"unix://{self.socket}"

    def _start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket)
        args = [
            "--port", "0",
            "--unixsocket", self.socket,
            "--unixsocketperm", "700",
            "--save", "",
            "--appendonly", "no",
            "--dir", self.workdir,
            "--daemonize", "no",
            *_config_args(self.config),
        ]  # fmt: skip
        self.proc = _spawn(args, self.log, self._session)
        self.pid = self.proc.pid
        try:
            _wait_until(
                f"redis-server {self.socket}",
                lambda: _command(self.socket, "PING") == "PONG",
                self.proc,
                self.log,
            )
        except BaseException:
            self.stop()
            raise

    def ping(self) -> bool:
        """Whether the server answers PING now."""
        try:
            return _command(self.socket, "PING") == "PONG"
        except OSError:
            return False

    def stop(self) -> None:
        """Stop the server by pid (SIGTERM, then SIGKILL). Idempotent."""
        if self.proc is not None:
            kill_pid(self.pid, self.proc)
            self.proc = None

    def kill(self) -> None:
        """SIGKILL the server at once (a crash), and reap it."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            self.proc.wait(STOP_DEADLINE)
            self.proc = None

    def restart(self) -> None:
        """Stop the server (if running) and start it again on the same
        socket, empty (no persistence)."""
        self.stop()
        self._start()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(n: int) -> list[int]:
    """*n* loopback ports that are free, each with port + 10000 (the
    Cluster bus) free too."""
    out: list[int] = []
    rng = random.Random()
    while len(out) < n:
        p = rng.randrange(20000, 30000)
        if p not in out and _port_free(p) and _port_free(p + 10000):
            out.append(p)
    return out


class Cluster:
    """A Redis Cluster of *masters* primaries with *replicas* replicas each,
    on loopback ports, every node a redis-server child of this process."""

    def __init__(
        self, workdir: str, masters: int = 3, replicas: int = 1, session: bool = True
    ):
        self.workdir = os.path.abspath(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        self._session = session
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.ports = free_ports(masters * (1 + replicas))
        try:
            for port in self.ports:
                self._start_node(port)
            self._create(replicas)
        except BaseException:
            self.stop()
            raise

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs.values()]

    @property
    def nodes(self) -> list[tuple[str, int]]:
        """(host, port) of every node that is running."""
        return [("127.0.0.1", p) for p in self.ports if p in self.procs]

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT`` of a running node."""
        host, port = self.nodes[0]
        return f"redis://{host}:{port}"

    @property
    def shmdict_url(self) -> str:
        """``redis+cluster://127.0.0.1:PORT``: what :func:`shmdict.connect`
        takes for a Cluster (``url`` with ``cluster=True`` is the same)."""
        return self.url.replace("redis://", "redis+cluster://", 1)

    def _start_node(self, port: int) -> None:
        d = os.path.join(self.workdir, str(port))
        os.makedirs(d, exist_ok=True)
        log = os.path.join(d, "redis.log")
        args = [
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--cluster-enabled", "yes",
            "--cluster-config-file", os.path.join(d, "nodes.conf"),
            "--cluster-node-timeout", "2000",
            "--cluster-replica-validity-factor", "0",
            "--save", "",
            "--appendonly", "no",
            "--dir", d,
            "--daemonize", "no",
        ]  # fmt: skip
        proc = _spawn(args, log, self._session)
        self.procs[port] = proc
        _wait_until(
            f"redis-server 127.0.0.1:{port}",
            lambda: _command(("127.0.0.1", port), "PING") == "PONG",
            proc,
            log,
        )

    def _create(self, replicas: int) -> None:
        r = subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *[f"127.0.0.1:{p}" for p in self.ports],
                "--cluster-replicas",
                str(replicas),
                "--cluster-yes",
            ],
            capture_output=True,
            text=True,
            env=_env(),
            timeout=60,
            check=False,
        )
        if r.returncode:
            raise RuntimeError(
                f"redis-cli --cluster create failed: {r.stdout}{r.stderr}"
            )
        self.wait_ok()

    def info(self, port: int, *section: str) -> dict[str, str]:
        """CLUSTER INFO (no section) or INFO SECTION of one node, parsed."""
        args = ("INFO", *section) if section else ("CLUSTER", "INFO")
        text = _command(("127.0.0.1", port), *args)
        out = {}
        for line in text.splitlines():
            k, sep, v = line.partition(":")
            if sep:
                out[k.strip()] = v.strip()
        return out

    def wait_ok(self, deadline: float = READY_DEADLINE) -> None:
        """Wait until every running node says cluster_state:ok with all
        16384 slots ok, and every replica's link to its primary is up."""
        end = time.monotonic() + deadline
        last = ""
        while time.monotonic() < end:
            try:
                ok = True
                for port in self.procs:
                    ci = self.info(port)
                    if (
                        ci.get("cluster_state") != "ok"
                        or ci.get("cluster_slots_ok") != "16384"
                    ):
                        ok, last = False, f"{port}: {ci}"
                        break
                    rep = self.info(port, "replication")
                    if (
                        rep.get("role") == "slave"
                        and rep.get("master_link_status") != "up"
                    ):
                        ok, last = (
                            False,
                            f"{port}: replica link {rep.get('master_link_status')}",
                        )
                        break
                if ok:
                    return
            except OSError as e:
                last = str(e)
            time.sleep(0.1)
        raise RuntimeError(f"the cluster was not ok within {deadline} s: {last}")

    def master_with_replica(self) -> int:
        """The port of a primary that has a connected replica."""
        for port in self.procs:
            rep = self.info(port, "replication")
            if rep.get("role") == "master" and int(rep.get("connected_slaves", 0)) > 0:
                return port
        raise RuntimeError("no primary has a replica")

    def kill_node(self, port: int) -> None:
        """SIGKILL one node (a crash) and reap it."""
        proc = self.procs.pop(port)
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(STOP_DEADLINE)

    def stop(self) -> None:
        """Stop every node by pid. Idempotent."""
        for port, proc in list(self.procs.items()):
            kill_pid(proc.pid, proc)
            del self.procs[port]

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_standalone(workdir: str, **config: object) -> Server:
    """Start one redis-server on ``workdir/redis.sock`` (``--port 0``, no
    persistence) with *config* as extra directives (``maxmemory="2mb"``;
    underscores become dashes) and wait until it answers PING."""
    return Server(workdir, config)


def start_cluster(workdir: str, masters: int = 3, replicas: int = 1) -> Cluster:
    """Start ``masters * (1 + replicas)`` cluster-enabled redis-servers on
    free loopback ports, join them with ``redis-cli --cluster create``, and
    wait for cluster_state:ok on every node with every slot covered."""
    return Cluster(workdir, masters, replicas)


def _main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("start", "stop"):
        print("usage: redis_servers.py start|stop DIR", file=sys.stderr)
        return 2
    cmd, workdir = argv
    pidfile = os.path.join(workdir, "pids")
    if cmd == "start":
        if not have_redis():
            print("redis-server/redis-cli not found", file=sys.stderr)
            return 1
        os.makedirs(workdir, exist_ok=True)
        server = Server(os.path.join(workdir, "standalone"), {}, session=False)
        try:
            cluster = Cluster(os.path.join(workdir, "cluster"), session=False)
        except BaseException:
            server.stop()
            raise
        with open(pidfile, "w") as f:
            f.write("\n".join(str(p) for p in [server.pid, *cluster.pids]) + "\n")
        print(f"SHMDICT_REDIS_URL={server.url}")
        print(f"SHMDICT_REDIS_CLUSTER_URL={cluster.shmdict_url}")
        return 0
    try:
        with open(pidfile) as f:
            pids = [int(line) for line in f if line.strip()]
    except FileNotFoundError:
        return 0
    for pid in pids:
        kill_pid(pid)
    os.unlink(pidfile)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))

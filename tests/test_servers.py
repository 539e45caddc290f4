"""The example apps under real servers, started as users deploy them:
``examples/flask_app.py`` under gunicorn with 4 sync workers (no
``--preload``), ``examples/fastapi_app.py`` under ``uvicorn --workers 4``.

Every worker opens the test's dict itself at import. A few thousand
requests from many connections then check what only sharing gives: the hit
counter is exact, the rate limit lets ``LIMIT`` requests through from all
the workers together (not ``LIMIT`` per worker), and a burst of misses on a
cold cache computes the slow value once. The apps put their pid in
``X-Worker-Pid``, so the test also sees that several workers served.
No timing is asserted.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("httpx", reason="httpx is not installed (requirements-dev.txt)")

import httpx

import shmdict

pytestmark = pytest.mark.no_asan  # a server's workers under ASan are too slow

#: The repository's root, where ``examples`` is imported from.
ROOT = Path(__file__).resolve().parent.parent
#: The apps' rate limit: RATE = "50 per hour" in both.
LIMIT = 50
HITS = 2000  # requests to the counter
HIT_CONNECTIONS = 16
BURST = 200  # concurrent requests to the slow endpoint, and to the limited one
UP_TIMEOUT = 30.0  # for the server to answer its first request
STOP_TIMEOUT = 15.0  # for the server to stop on SIGTERM before SIGKILL


def need(*modules: str) -> None:
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)} (requirements-dev.txt)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def tail(log: Path, lines: int = 30) -> str:
    text = log.read_text(errors="replace").splitlines()
    return "\n".join(text[-lines:])


def wait_until_up(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + UP_TIMEOUT
    while True:
        if proc.poll() is not None:
            pytest.fail(f"the server exited ({proc.returncode}):\n{tail(log)}")
        try:
            if httpx.get(url + "/hits", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"the server did not answer in {UP_TIMEOUT} s:\n{tail(log)}")
        time.sleep(0.1)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's main process, which stops its workers; then
    SIGKILL to its whole process group (a session of its own), after a
    bounded wait or to catch a worker left behind."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=STOP_TIMEOUT)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.fixture
def serve(name: str, tmp_path: Path) -> Iterator[Callable[[list[str], int], str]]:
    """Starts a server (``python -m`` *argv*, listening on 127.0.0.1:*port*)
    whose app uses the dict *name*, and returns its URL once it answers.
    Stops it, and removes the dict, when the test ends however it ends."""
    procs: list[subprocess.Popen[bytes]] = []
    # The servers import the package this session imports, and `examples`.
    src = os.path.dirname(os.path.dirname(os.path.abspath(shmdict.__file__)))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([src, str(ROOT)]),
        "SHMDICT_EXAMPLE_DICT": name,
    }

    def start(argv: list[str], port: int) -> str:
        log = tmp_path / f"server-{len(procs)}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", *argv],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        wait_until_up(proc, url, log)
        return url

    try:
        yield start
    finally:
        for proc in procs:
            stop(proc)
        with contextlib.suppress(FileNotFoundError):
            shmdict.remove(name)


async def get_many(
    url: str, path: str, count: int, connections: int
) -> list[httpx.Response]:
    """*count* GETs of *path*, at most *connections* at a time."""
    limits = httpx.Limits(
        max_connections=connections, max_keepalive_connections=connections
    )
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30.0) as client:
        gate = asyncio.Semaphore(connections)

        async def one() -> httpx.Response:
            async with gate:
                return await client.get(path)

        return list(await asyncio.gather(*(one() for _ in range(count))))


def pids(responses: list[httpx.Response]) -> Counter[int]:
    return Counter(int(r.headers["X-Worker-Pid"]) for r in responses)


def check_shared(url: str, name: str) -> Counter[int]:
    """The requests and assertions both apps pass; returns the requests
    each worker pid served."""
    served: Counter[int] = Counter()

    # A burst on a cold cache: one worker computes, every other request
    # (in that worker's threads or the others) waits for its value.
    assert httpx.get(url + "/computed").json() == {"computed": 0}
    reports = asyncio.run(get_many(url, "/report", BURST, BURST))
    served += pids(reports)
    assert [r.status_code for r in reports] == [200] * BURST
    assert len({r.content for r in reports}) == 1, "workers saw different values"
    computed = httpx.get(url + "/computed").json()["computed"]

    # The counter, from many connections: every increment is there once.
    hits = asyncio.run(get_many(url, "/hit", HITS, HIT_CONNECTIONS))
    served += pids(hits)
    ok = [r for r in hits if r.status_code == 200]
    assert len(ok) == HITS
    assert sorted(r.json()["hits"] for r in ok) == list(range(1, len(ok) + 1))
    assert httpx.get(url + "/hits").json() == {"hits": len(ok)}

    # A burst at the rate limit: one limit for all the workers.
    limited = asyncio.run(get_many(url, "/limited", BURST, BURST))
    served += pids(limited)
    statuses = Counter(r.status_code for r in limited)
    assert statuses == {200: LIMIT, 429: BURST - LIMIT}, statuses

    # The test process reads the same dict.
    with shmdict.get(name) as d:
        assert d["hits"] == HITS
        assert d["computed"] == 1
    assert computed == 1, f"the slow value was computed {computed} times"
    assert len(served) >= 2, f"one worker served everything: {served}"
    print(
        f"\n{url}: {sum(served.values())} requests, by worker pid {dict(served)}; "
        f"counter {HITS}/{HITS}, limited {dict(statuses)}, computed {computed}"
    )
    return served


def test_flask_app_under_gunicorn(
    serve: Callable[[list[str], int], str], name: str
) -> None:
    need("gunicorn", "flask", "flask_caching", "flask_limiter", "limits")
    port = free_port()
    url = serve(
        ["gunicorn", "-w", "4", "-b", f"127.0.0.1:{port}", "examples.flask_app:app"],
        port,
    )
    served = check_shared(url, name)

    # Flask-Caching's view cache on shmdict.contrib.cachelib: rendered by
    # the first request, then served to every worker from the dict.
    pages = [httpx.get(url + "/page") for _ in range(20)]
    first: dict[str, Any] = json.loads(pages[0].content)
    assert all(json.loads(p.content) == first for p in pages)
    served += pids(pages)
    assert len(served) >= 2


def test_fastapi_app_under_uvicorn(
    serve: Callable[[list[str], int], str], name: str
) -> None:
    need("uvicorn", "fastapi", "slowapi", "limits")
    port = free_port()
    url = serve(
        [
            "uvicorn",
            "examples.fastapi_app:app",
            "--workers",
            "4",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
        ],
        port,
    )
    check_shared(url, name)

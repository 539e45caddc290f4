"""Shared fixtures: a dict name unique to each test, and /dev/shm hygiene.

Every name a test uses starts with ``PREFIX`` (which holds the pid of the
pytest process), so teardown can remove whatever a test left behind, and the
session can fail if anything is still there at the end. Also shared helpers:
filling a dict, and a writer stopped while it holds a stripe's lock.
"""

from __future__ import annotations

import contextlib
import glob
import os
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from hypothesis import HealthCheck, settings

import shmdict
from shmdict import _core

# The backends the integration and recipe tests run over (shm, redis).
from .backends import backend, store  # noqa: F401  (fixtures)

SHM_DIR = "/dev/shm"
PREFIX = f"shmdict-test-{os.getpid()}-"
MiB = 1 << 20

# Modest defaults: the whole suite has to run in a few minutes on 2 cores.
# No example database, so running the suite writes nothing outside tests/.
settings.register_profile(
    "default",
    deadline=None,
    max_examples=60,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "thorough",
    parent=settings.get_profile("default"),
    max_examples=1000,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


def fill_until_full(
    d: shmdict.SharedDict, prefix: str, value: object, cap: int = 1_000_000
) -> int:
    """Set distinct keys of equal length until NoMemoryError; return the count."""
    for i in range(cap):
        try:
            d.set(f"{prefix}{i:07d}", value)  # type: ignore[arg-type]
        except shmdict.NoMemoryError:
            return i
    raise AssertionError(f"{cap} items fit in {d.size} bytes")


@contextlib.contextmanager
def tmpfs(size: str) -> Iterator[str]:
    """Mount a tmpfs of *size* (mount's syntax: ``4m``, ``72g``) on a fresh
    directory, and unmount it afterwards. Skips the test unless it can
    (root, or a mount namespace of its own, is needed)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    where = tempfile.mkdtemp(prefix="shmdict-fs-")
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=1777", "tmpfs", where],
        capture_output=True,
        text=True,
        check=False,
    )
    if r.returncode:
        os.rmdir(where)
        pytest.skip(f"can't mount a tmpfs: {r.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", where], check=False)
        os.rmdir(where)


@pytest.fixture(scope="session")
def big_dir() -> Iterator[str]:
    """A directory on a tmpfs big enough for a MAX_SIZE dict: a tmpfs size
    is a limit, not memory, and /dev/shm may be smaller than 64 GiB, which
    new() refuses outright."""
    with tmpfs(f"{(shmdict.MAX_SIZE >> 30) + 8}g") as where:
        yield where


def _wait_pid(pid: int, flags: int, timeout: float) -> int:
    """waitpid with a deadline: a child that never gets there is a hang."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG | flags)
        if done:
            return status
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail(f"child {pid} did not get there within {timeout} s")
        time.sleep(0.001)


@contextlib.contextmanager
def stopped_writer(name: str, key: str, value: shmdict.Value) -> Iterator[int]:
    """A forked child attaches to the dict *name*, starts ``d[key] = value``
    and stops itself (SIGSTOP, armed by ``_core._stop_after``) at the
    write's first step, holding the lock of *key*'s stripe: alive, so no
    repair takes the lock from it, and a reader of that stripe falls back
    to the lock. Yields its pid once it has stopped; on leaving, continues
    it and checks that it finished its write (or, on an error, kills it)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 1
        try:
            c = shmdict.get(name)
            _core._stop_after(1)
            c[key] = value
            code = 0
        finally:
            os._exit(code)
    try:
        status = _wait_pid(pid, os.WUNTRACED, 30.0)
        assert os.WIFSTOPPED(status), f"the writer did not stop: {status:#x}"
        yield pid
    except BaseException:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise
    os.kill(pid, signal.SIGCONT)
    status = _wait_pid(pid, 0, 30.0)
    assert os.waitstatus_to_exitcode(status) == 0, "the writer failed"


def new_name(tag: str = "") -> str:
    """A fresh dict name under this session's prefix."""
    return f"{PREFIX}{tag}{uuid.uuid4().hex[:12]}"


def shm_files(name_prefix: str) -> list[str]:
    """Paths in /dev/shm whose file name contains ``name_prefix``.

    ``contains`` rather than ``startswith`` so that temporary or hidden
    files the engine might make next to a dict are caught too.
    """
    return sorted(glob.glob(os.path.join(SHM_DIR, f"*{glob.escape(name_prefix)}*")))


def _remove_all(name_prefix: str) -> None:
    for path in shm_files(name_prefix):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


@pytest.fixture
def name_factory() -> Iterator[Callable[[], str]]:
    """Makes any number of fresh names; removes their files at teardown."""
    base = new_name()
    count = 0

    def make() -> str:
        nonlocal count
        count += 1
        return f"{base}-{count}"

    yield make
    _remove_all(base)


@pytest.fixture
def name() -> Iterator[str]:
    """A dict name unique to this test; its files are removed at teardown."""
    n = new_name()
    yield n
    _remove_all(n)


@pytest.fixture
def d(name: str) -> Iterator[shmdict.SharedDict]:
    """A fresh, empty 1 MiB dict owned by this process."""
    sd = shmdict.new(name, MiB)
    try:
        yield sd
    finally:
        sd.close()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if any test left a file in /dev/shm."""
    strays = shm_files(PREFIX)
    if not strays:
        return
    _remove_all(PREFIX)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    msg = f"shmdict tests left {len(strays)} file(s) in /dev/shm: {strays[:10]}"
    if reporter is not None:
        reporter.write_line("\n" + msg, red=True)
    else:  # pragma: no cover - only without the terminal plugin
        print(msg)
    if exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


# ---------------------------------------------------------------- Redis
# Session-wide Redis servers (started lazily, stopped by pid): see
# tests/redis_fixtures.py and tests/redis_servers.py.
from .redis_fixtures import redis_cluster, redis_server  # noqa: E402, F401

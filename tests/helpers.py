"""Helpers shared by the test modules (conftest.py keeps only fixtures and
hooks): dict names under this session's prefix, polling with a deadline,
filling a dict, a tmpfs of a given size, and a writer stopped while it holds
a stripe's lock.

Every name a test uses starts with ``PREFIX`` (which holds the pid of the
pytest process), so teardown can remove whatever a test left behind, and the
session can fail if anything is still there at the end.
"""

from __future__ import annotations

import contextlib
import glob
import multiprocessing
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import shmdict
from shmdict import _core

SHM_DIR = "/dev/shm"
PREFIX = f"shmdict-test-{os.getpid()}-"
MiB = 1 << 20
DEADLINE = 10.0  # how long to poll for something that surely happens soon


def new_name(tag: str = "") -> str:
    """A fresh dict name under this session's prefix."""
    return f"{PREFIX}{tag}{uuid.uuid4().hex[:12]}"


def shm_files(name_prefix: str) -> list[str]:
    """Paths in /dev/shm whose file name contains ``name_prefix``.

    ``contains`` rather than ``startswith`` so that temporary or hidden
    files the engine might make next to a dict are caught too.
    """
    return sorted(glob.glob(os.path.join(SHM_DIR, f"*{glob.escape(name_prefix)}*")))


def remove_all(name_prefix: str) -> None:
    """Remove every file in /dev/shm whose name contains ``name_prefix``."""
    for path in shm_files(name_prefix):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def wait_until(pred: Callable[[], bool], timeout: float = DEADLINE) -> bool:
    """Poll *pred* until it holds or *timeout* seconds pass; return whether
    it holds (the caller asserts, with its own message)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.002)
    return pred()


def wait_for(pred: Callable[[], bool], what: str = "", timeout: float = 30.0) -> None:
    """Poll *pred* until it holds; fail, naming *what*, after *timeout* s."""
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.002)


def mp_ctx(method: str) -> Any:
    """The multiprocessing context of a start method. Any: the stubs only
    give a BaseContext, which lacks Process & co."""
    return multiprocessing.get_context(method)


def wait_expired(d: shmdict.SharedDict, *keys: str) -> None:
    """Poll until every key has expired (ttl None) without reclaiming it."""
    assert wait_until(lambda: all(d.ttl(k) is None for k in keys)), keys


def fill_shrinking(
    d: shmdict.SharedDict, value_len: int = 1000, prefix: str = "fill"
) -> list[str]:
    """Store values until the dict is full, halving the value's length
    whenever one does not fit (down to 16 bytes); return the keys stored."""
    stored: list[str] = []
    i = 0
    while True:
        k = f"{prefix}{i}"
        try:
            d.set(k, b"f" * value_len)
        except shmdict.NoMemoryError:
            if value_len <= 16:
                return stored
            value_len //= 2
            continue
        stored.append(k)
        i += 1


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


def wait_pid(pid: int, flags: int, timeout: float) -> int:
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


def need_crash_points() -> None:
    """Skip the calling test on a build without the crash points (a
    release build: ``setup.py`` builds them only with SHMDICT_DEV=1); fail
    it instead under CI (SHMDICT_CI), whose build must have them."""
    if _core.CRASH_POINTS:
        return
    msg = "this build of shmdict._core has no crash points (SHMDICT_DEV=1)"
    if os.environ.get("SHMDICT_CI"):
        pytest.fail(msg)
    pytest.skip(msg)


@contextlib.contextmanager
def stopped_writer(name: str, key: str, value: shmdict.Value) -> Iterator[int]:
    """A forked child attaches to the dict *name*, starts ``d[key] = value``
    and stops itself (SIGSTOP, armed by ``_core._stop_after``) at the
    write's first step, holding the lock of *key*'s stripe: alive, so no
    repair takes the lock from it, and a reader of that stripe falls back
    to the lock. Yields its pid once it has stopped; on leaving, continues
    it and checks that it finished its write (or, on an error, kills it)."""
    need_crash_points()
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
        status = wait_pid(pid, os.WUNTRACED, 30.0)
        assert os.WIFSTOPPED(status), f"the writer did not stop: {status:#x}"
        yield pid
    except BaseException:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise
    os.kill(pid, signal.SIGCONT)
    status = wait_pid(pid, 0, 30.0)
    assert os.waitstatus_to_exitcode(status) == 0, "the writer failed"


def list_items(
    d: shmdict.SharedDict, keys: list[str]
) -> dict[str, list[object] | None]:
    """The items of the lists at keys, read without changing the dict: the
    file is copied (nobody may hold a lock meanwhile) and the copy popped.
    None for a key the copy doesn't hold (a list that expired since)."""
    copy = f"{d.name}~lists"
    shutil.copyfile(d.path, shmdict.path_for(copy))
    try:
        c = shmdict.get(copy)
        try:
            return {
                k: [c.lpop(k) for _ in range(c.llen(k))] if k in c else None
                for k in keys
            }
        finally:
            c.close()
    finally:
        os.unlink(shmdict.path_for(copy))


def wait_child(pid: int, timeout: float = 60.0) -> int:
    """waitpid with a bound: a child that neither exits nor dies is a hang."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail(f"child {pid} did not finish within {timeout} s (hang)")
        time.sleep(0.0005)

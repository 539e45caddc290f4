"""The file under /dev/shm: damaged and foreign files, symlinks, modes,
remove(), taking over a dead creator's name, and the owner's unlink rule.

Opening a damaged file must never crash the process, so those attempts run
first in a forked child; only when the child survives is the call repeated
in the test process for a readable assertion.
"""

from __future__ import annotations

import errno
import multiprocessing
import os
import random
import signal
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from multiprocessing.synchronize import Event
from typing import Any

import pytest

import shmdict

MiB = 1 << 20
SharedDict = shmdict.SharedDict


# ---------------------------------------------------------------- helpers


def path_of(name: str) -> str:
    return "/dev/shm/" + name


def write_file(name: str, data: bytes) -> str:
    p = path_of(name)
    with open(p, "wb") as f:
        f.write(data)
    os.chmod(p, 0o600)
    return p


def in_fork(fn: Callable[[], None], timeout: float = 10.0) -> str:
    """Run fn in a forked child; return "ok", "raised <Type>", or how it died.

    The child's outcome is passed back through its exit code: 0 = returned,
    1 = raised (the name of the exception goes through a pipe).
    """
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os.close(r)
        code = 0
        try:
            fn()
        except BaseException as e:
            os.write(w, type(e).__name__.encode())
            code = 1
        os._exit(code)
    os.close(w)
    end = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > end:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(r)
            return "hung"
        time.sleep(0.002)
    msg = os.read(r, 200).decode()
    os.close(r)
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return "ok" if os.WEXITSTATUS(status) == 0 else f"raised {msg}"


def open_and_close(name: str, **kw: object) -> Callable[[], None]:
    def fn() -> None:
        shmdict.get(name, **kw).close()  # type: ignore[arg-type]

    return fn


@pytest.fixture
def valid_image(d: SharedDict) -> Iterator[bytes]:
    """The bytes of a healthy dict holding a few items."""
    d["a"] = 1
    d["b"] = "two"
    d.set("c", b"three", 1000)
    with open(d.path, "rb") as f:
        yield f.read()


# ---------------------------------------------------------------- corrupt


GARBAGE: list[tuple[str, Callable[[], bytes]]] = [
    ("empty", lambda: b""),
    ("one-byte", lambda: b"\x00"),
    ("short", lambda: b"not a dict"),
    ("ff-100", lambda: b"\xff" * 100),
    ("zeros-4k", lambda: bytes(4096)),
    ("zeros-min-size", lambda: bytes(shmdict.MIN_SIZE)),
    ("random-min-size", lambda: random.Random(1).randbytes(shmdict.MIN_SIZE)),
    ("random-1mib", lambda: random.Random(2).randbytes(MiB)),
    ("text", lambda: b"hello world\n" * 10000),
]


@pytest.mark.parametrize("make", [m for _, m in GARBAGE], ids=[i for i, _ in GARBAGE])
def test_get_on_garbage_is_corrupt(name: str, make: Callable[[], bytes]) -> None:
    data = make()
    write_file(name, data)
    outcome = in_fork(open_and_close(name))
    assert outcome == "raised CorruptError", outcome
    with pytest.raises(shmdict.CorruptError):
        shmdict.get(name)
    # The foreign file is left alone.
    with open(path_of(name), "rb") as f:
        assert f.read() == data


def test_get_on_wrong_magic_is_corrupt(
    name_factory: Callable[[], str], valid_image: bytes
) -> None:
    good, bad = name_factory(), name_factory()
    write_file(good, valid_image)
    write_file(bad, bytes(b ^ 0xFF for b in valid_image[:8]) + valid_image[8:])
    # The untouched copy opens (a plain file format, nothing more)...
    assert in_fork(open_and_close(good)) == "ok"
    with shmdict.get(good) as p:
        assert p["a"] == 1
        assert p["b"] == "two"
        assert p.verify() == []
    # ...and the one with a wrong magic does not.
    assert in_fork(open_and_close(bad)) == "raised CorruptError"
    with pytest.raises(shmdict.CorruptError):
        shmdict.get(bad)


@pytest.mark.parametrize("keep", [1, 64, 4096, shmdict.MIN_SIZE, MiB // 2, MiB - 1])
def test_get_on_truncated_dict_is_corrupt(
    name: str, valid_image: bytes, keep: int
) -> None:
    """A file shorter than its header says must be refused, not mapped and
    then touched past its end (SIGBUS)."""
    write_file(name, valid_image[:keep])
    outcome = in_fork(open_and_close(name))
    assert outcome == "raised CorruptError", outcome
    with pytest.raises(shmdict.CorruptError):
        shmdict.get(name)


def test_damaged_header_never_crashes_open(
    name_factory: Callable[[], str], valid_image: bytes
) -> None:
    """Flipping any one byte of the first 256: get() either opens or raises
    a shmdict.Error / OSError; it never crashes or hangs."""
    bad: dict[int, str] = {}
    for off in range(256):
        n = name_factory()
        img = bytearray(valid_image)
        img[off] ^= 0xFF
        write_file(n, bytes(img))
        outcome = in_fork(open_and_close(n, lock_timeout=1.0), timeout=10)
        if outcome == "ok" or (
            outcome.startswith("raised ")
            and outcome[7:]
            in (
                "CorruptError",
                "LockTimeout",
                "OSError",
                "PermissionError",
            )
        ):
            pass
        else:
            bad[off] = outcome
        os.unlink(path_of(n))
    assert bad == {}, bad


def test_get_on_directory(name: str) -> None:
    os.mkdir(path_of(name))
    try:
        outcome = in_fork(open_and_close(name))
        assert outcome.startswith("raised "), outcome
        with pytest.raises((OSError, shmdict.CorruptError)):
            shmdict.get(name)
        with pytest.raises(FileExistsError):
            shmdict.new(name, MiB)
        assert os.path.isdir(path_of(name))
    finally:
        os.rmdir(path_of(name))


def test_get_on_fifo_does_not_block(name: str) -> None:
    os.mkfifo(path_of(name), 0o600)
    outcome = in_fork(open_and_close(name), timeout=10)
    assert outcome.startswith("raised "), outcome
    assert outcome[7:] in ("CorruptError", "OSError"), outcome
    with pytest.raises(FileExistsError):
        shmdict.new(name, MiB)
    assert stat.S_ISFIFO(os.lstat(path_of(name)).st_mode)


def test_new_over_garbage_file_leaves_it_alone(name: str) -> None:
    data = b"somebody else's file" * 100
    write_file(name, data)
    ino = os.stat(path_of(name)).st_ino
    with pytest.raises((FileExistsError, shmdict.CorruptError)):
        shmdict.new(name, MiB)
    st = os.stat(path_of(name))
    assert st.st_ino == ino
    with open(path_of(name), "rb") as f:
        assert f.read() == data


# ---------------------------------------------------------------- symlinks


def test_symlink_refused_by_get(name_factory: Callable[[], str]) -> None:
    target, link = name_factory(), name_factory()
    with shmdict.new(target, MiB) as d:
        d["a"] = 1
        os.symlink(path_of(target), path_of(link))
        assert in_fork(open_and_close(link)).startswith("raised ")
        with pytest.raises(OSError) as ei:  # noqa: PT011 - only OSError is promised
            shmdict.get(link)
        assert not isinstance(ei.value, FileNotFoundError)
        # Relative symlink too.
        os.unlink(path_of(link))
        os.symlink(target, path_of(link))
        with pytest.raises(OSError) as ei:  # noqa: PT011 - only OSError is promised
            shmdict.get(link)
        assert not isinstance(ei.value, FileNotFoundError)
        assert d["a"] == 1
    os.unlink(path_of(link))


def test_new_does_not_follow_dangling_symlink(name_factory: Callable[[], str]) -> None:
    target, link = name_factory(), name_factory()
    os.symlink(path_of(target), path_of(link))
    with pytest.raises(FileExistsError):
        shmdict.new(link, MiB)
    assert not os.path.lexists(path_of(target)), (
        "new() created a file through a symlink"
    )
    assert os.path.islink(path_of(link))


def test_new_does_not_follow_symlink_to_existing_file(
    name_factory: Callable[[], str],
) -> None:
    target, link = name_factory(), name_factory()
    data = b"precious" * 1000
    write_file(target, data)
    os.symlink(path_of(target), path_of(link))
    with pytest.raises(FileExistsError):
        shmdict.new(link, MiB)
    with open(path_of(target), "rb") as f:
        assert f.read() == data


# ---------------------------------------------------------------- mode


def test_default_mode_is_0600(d: SharedDict) -> None:
    st = os.stat(d.path)
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert st.st_uid == os.geteuid()


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o644, 0o604])
def test_mode_is_honoured(name: str, mode: int) -> None:
    old = os.umask(0o022)
    try:
        with shmdict.new(name, MiB, mode=mode) as d:
            assert stat.S_IMODE(os.stat(d.path).st_mode) == mode
            with shmdict.get(name) as p:
                p["x"] = 1
            assert d["x"] == 1
    finally:
        os.umask(old)


def test_mode_honoured_on_takeover(name: str) -> None:
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    p = ctx.Process(target=_create_and_hang, args=(name, MiB, ready))
    p.start()
    try:
        assert ready.wait(20)
    finally:
        p.kill()
        p.join(5)
    with shmdict.new(name, MiB, mode=0o640) as d:
        assert stat.S_IMODE(os.stat(d.path).st_mode) == 0o640


# ---------------------------------------------------------------- remove


def test_remove(name: str) -> None:
    d = shmdict.new(name, MiB)
    d["a"] = 1
    p = shmdict.get(name)
    shmdict.remove(name)
    assert not os.path.lexists(path_of(name))
    assert not shmdict.exists(name)
    with pytest.raises(FileNotFoundError):
        shmdict.get(name)
    with pytest.raises(FileNotFoundError):
        shmdict.remove(name)
    # Both handles still share the unlinked file.
    p["b"] = 2
    assert d["b"] == 2
    p.close()
    d.close()
    assert not os.path.lexists(path_of(name))


def test_remove_garbage_file(name: str) -> None:
    write_file(name, b"junk")
    shmdict.remove(name)
    assert not os.path.lexists(path_of(name))


# ---------------------------------------------------------------- creator


def _create_and_hang(name: str, size: int, ready: Event) -> None:
    d = shmdict.new(name, size)
    d["old"] = "from the dead"
    ready.set()
    time.sleep(60)
    d.close()


def _create_and_wait(name: str, ready: Event, finish: Event) -> None:
    with shmdict.new(name, MiB) as d:
        d["live"] = os.getpid()
        ready.set()
        finish.wait(20)


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_new_takes_over_from_dead_creator(name: str, method: str) -> None:
    ctx: Any = multiprocessing.get_context(method)
    ready = ctx.Event()
    p = ctx.Process(target=_create_and_hang, args=(name, MiB, ready))
    p.start()
    try:
        assert ready.wait(20), "creator did not start"
    finally:
        assert p.pid is not None
        os.kill(p.pid, signal.SIGKILL)
        p.join(5)
    assert p.exitcode == -signal.SIGKILL
    assert shmdict.exists(name), "a SIGKILLed owner cannot have removed its file"
    d = shmdict.new(name, 2 * MiB)
    try:
        assert d.owner is True
        assert d.size == 2 * MiB
        assert os.stat(d.path).st_size == 2 * MiB
        assert "old" not in d
        assert len(d) == 0
        d["new"] = 1
        with shmdict.get(name) as peer:
            assert peer["new"] == 1
        assert d.verify() == []
    finally:
        d.close()
    assert not shmdict.exists(name)


def test_remove_after_owner_killed(name: str) -> None:
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    p = ctx.Process(target=_create_and_hang, args=(name, MiB, ready))
    p.start()
    try:
        assert ready.wait(20)
    finally:
        p.kill()
        p.join(5)
    assert shmdict.exists(name)
    shmdict.remove(name)
    assert not shmdict.exists(name)
    with pytest.raises(FileNotFoundError):
        shmdict.get(name)


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_new_over_live_creator_in_other_process(name: str, method: str) -> None:
    ctx: Any = multiprocessing.get_context(method)
    ready, finish = ctx.Event(), ctx.Event()
    p = ctx.Process(target=_create_and_wait, args=(name, ready, finish))
    p.start()
    try:
        assert ready.wait(20), "creator did not start"
        ino = os.stat(path_of(name)).st_ino
        with pytest.raises(FileExistsError):
            shmdict.new(name, MiB)
        assert os.stat(path_of(name)).st_ino == ino
        with shmdict.get(name) as peer:
            assert peer["live"] == p.pid
    finally:
        finish.set()
        p.join(20)
        if p.is_alive():
            p.kill()
            p.join(5)
    assert p.exitcode == 0
    assert not shmdict.exists(name), "the creator's close should have removed the file"


def test_new_over_own_live_dict(d: SharedDict) -> None:
    with pytest.raises(FileExistsError):
        shmdict.new(d.name, MiB)
    assert d.owner
    d["still"] = "here"
    assert d["still"] == "here"


# ---------------------------------------------------------------- unlink rule


def test_owner_close_spares_recreated_dict(name: str) -> None:
    d1 = shmdict.new(name, MiB)
    d1["gen"] = 1
    shmdict.remove(name)
    d2 = shmdict.new(name, MiB)
    d2["gen"] = 2
    d1.close()
    assert shmdict.exists(name), "closing the old owner removed somebody else's file"
    assert d2["gen"] == 2
    with shmdict.get(name) as p:
        assert p["gen"] == 2
    d2.close()
    assert not shmdict.exists(name)


def test_owner_close_spares_foreign_file(name: str) -> None:
    d = shmdict.new(name, MiB)
    os.unlink(d.path)
    write_file(name, b"not yours")
    d.close()
    with open(path_of(name), "rb") as f:
        assert f.read() == b"not yours"


def test_owner_close_spares_file_renamed_over(name_factory: Callable[[], str]) -> None:
    name, other = name_factory(), name_factory()
    d = shmdict.new(name, MiB)
    write_file(other, b"replacement")
    os.rename(path_of(other), path_of(name))
    d.close()
    with open(path_of(name), "rb") as f:
        assert f.read() == b"replacement"


def test_owner_gc_spares_recreated_dict(name: str) -> None:
    import gc

    d1 = shmdict.new(name, MiB)
    shmdict.remove(name)
    d2 = shmdict.new(name, MiB)
    del d1
    gc.collect()
    assert shmdict.exists(name)
    d2.close()
    assert not shmdict.exists(name)


def test_owner_close_after_rename_away(name_factory: Callable[[], str]) -> None:
    """The owner removes only the path it created: after its file was
    renamed elsewhere, nothing at the old path is there to remove, and the
    renamed file is not chased."""
    name, moved = name_factory(), name_factory()
    d = shmdict.new(name, MiB)
    os.rename(path_of(name), path_of(moved))
    d.close()
    assert not os.path.lexists(path_of(name))
    assert os.path.exists(path_of(moved))


# ---------------------------------------------------------------- foreign owner


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to chown")
def test_foreign_owner_refused_unless_allowed(d: SharedDict) -> None:
    """A file of another user is refused unless allow_foreign_owner=True,
    and new() never takes it over. (Was in test_files.py and, as
    test_foreign_owner_is_refused_unless_allowed, in test_corruption.py:
    one test with the assertions of both.)"""
    d["a"] = 1
    os.chown(d.path, 65534, 65534)
    with pytest.raises(PermissionError):
        shmdict.get(d.name)
    with shmdict.get(d.name, allow_foreign_owner=True) as p:
        assert p["a"] == 1
        assert p.owner is False
    # A takeover never touches another user's file.
    with pytest.raises(FileExistsError):
        shmdict.new(d.name, MiB)
    assert d["a"] == 1
    os.chown(d.path, os.geteuid(), os.getegid())
    with shmdict.get(d.name) as p:
        assert p["a"] == 1


# ---------------------------------------------------------------- damage


def void(_: object) -> None:
    """Drop a result (in_fork wants a callable returning None)."""


def _patch(path: str, offset: int, data: bytes) -> bytes:
    """Overwrite bytes of a live dict's file; return what was there."""
    fd = os.open(path, os.O_RDWR)
    try:
        old = os.pread(fd, len(data), offset)
        os.pwrite(fd, data, offset)
        return old
    finally:
        os.close(fd)


def test_verify_reports_a_damaged_key(d: SharedDict) -> None:
    key = "UNIQUE-KEY-6f1d2c"
    d[key] = b"value"
    d["other"] = 5
    with open(d.path, "rb") as f:
        off = f.read().find(key.encode())
    assert off > 0
    old = _patch(d.path, off, b"X")
    try:
        assert d.verify() != []

        def read_all() -> None:
            d.get(key)
            d.get_keys()
            d.get("other")

        assert in_fork(read_all) in ("ok", "raised CorruptError")
        assert d["other"] == 5
    finally:
        _patch(d.path, off, old)
    assert d.verify() == []
    assert d[key] == b"value"


@pytest.mark.parametrize("back", [4, 8], ids=["value-length", "key-length"])
def test_damaged_lengths_raise_corrupt_not_crash(d: SharedDict, back: int) -> None:
    """The entry's length words sit just before its key bytes (layout.h).
    Huge lengths must be caught: CorruptError or a miss, never a read past
    the end of the mapping."""
    key = "UNIQUE-KEY-91ab07"
    d[key] = b"value" * 3
    d["other"] = 5
    with open(d.path, "rb") as f:
        off = f.read().find(key.encode())
    assert off > 8
    old = _patch(d.path, off - back, b"\xff\xff\xff\x7f")
    try:
        assert d.verify() != []
        ops: list[Callable[[], None]] = [
            lambda: void(d.get(key)),
            lambda: void(d.get_keys()),
            lambda: void(list(d.items())),
            lambda: void(d.delete(key)),
            lambda: void(d.set(key, 1)),
        ]
        for op in ops:
            outcome = in_fork(op)
            assert outcome in ("ok", "raised CorruptError"), outcome
    finally:
        _patch(d.path, off - back, old)
    assert d.verify() == []
    assert d[key] == b"value" * 3


# ---------------------------------------------------------------- access rules


def test_symlink_at_name_is_refused(name_factory: Callable[[], str]) -> None:
    """A symlink at the name, even to a valid dict, is not followed."""
    real, link = name_factory(), name_factory()
    d = shmdict.new(real, MiB)
    try:
        d["k"] = 1
        os.symlink(d.path, shmdict.path_for(link))
        with pytest.raises(OSError, match="symbolic link") as exc:
            shmdict.get(link)
        assert exc.value.errno == errno.ELOOP
        with pytest.raises(FileExistsError):
            shmdict.new(link, MiB)
        assert os.path.islink(shmdict.path_for(link))
        assert d["k"] == 1
        assert d.verify() == []
        # A symlink to somewhere outside /dev/shm is not followed either.
        os.unlink(shmdict.path_for(link))
        with tempfile.NamedTemporaryFile() as target:
            os.symlink(target.name, shmdict.path_for(link))
            with pytest.raises(OSError, match="symbolic link") as exc:
                shmdict.get(link)
            assert exc.value.errno == errno.ELOOP
            with pytest.raises(FileExistsError):
                shmdict.new(link, MiB)
            assert os.path.getsize(target.name) == 0
    finally:
        d.close()
        if os.path.lexists(shmdict.path_for(link)):
            os.unlink(shmdict.path_for(link))


def test_mode(name_factory: Callable[[], str]) -> None:
    old = os.umask(0)
    try:
        n1, n2 = name_factory(), name_factory()
        d1 = shmdict.new(n1, MiB)
        d2 = shmdict.new(n2, MiB, mode=0o640)
        try:
            assert stat.S_IMODE(os.stat(d1.path).st_mode) == 0o600
            assert stat.S_IMODE(os.stat(d2.path).st_mode) == 0o640
        finally:
            d1.close()
            d2.close()
    finally:
        os.umask(old)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        ".",
        "..",
        "a/b",
        "../escape",
        "..\x00",
        "x\x00y",
        "/etc/passwd",
        "a/../../etc/passwd",
        "x" * 256,
    ],
)
def test_names_cannot_escape_dev_shm(bad: str) -> None:
    for fn in (
        lambda: shmdict.new(bad, MiB),
        lambda: shmdict.get(bad),
        lambda: shmdict.remove(bad),
    ):
        with pytest.raises(ValueError, match=r"(?i)name"):
            fn()

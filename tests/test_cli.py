"""The command line: ``python -m shmdict ls`` lists the dicts in the
shared-memory directory and passes over anything else there. It must never
block on a FIFO or a device at a name (an open of a FIFO waits for a
writer) and never follow a symlink, even when a name is swapped for one
between the listing and the open.

``ls`` only knows ``_core.SHM_DIR`` (/dev/shm), so the odd names are made
there, under the test's unique name (conftest removes them afterwards).
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import shmdict
from shmdict import __main__ as cli
from shmdict import _core

HANG_S = 20.0  # far longer than ls takes; reaching it means it blocked


def pkg_env() -> dict[str, str]:
    """The environment for a subprocess that imports this same shmdict."""
    return dict(
        os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(shmdict.__file__))
    )


@pytest.fixture
def shm_zoo(name: str) -> Iterator[dict[str, str]]:
    """A live dict at `name` and, beside it, names that are not dicts: a
    FIFO, symlinks (to the dict, to the FIFO, to nothing), a regular file
    that is not a dict and, where mknod is allowed, a character device
    (like /dev/null). Maps each kind to its path."""
    d = shmdict.new(name, shmdict.MIN_SIZE)
    base = os.path.join(_core.SHM_DIR, name)
    zoo = {"dict": d.path}
    try:
        zoo["fifo"] = f"{base}-fifo"
        os.mkfifo(zoo["fifo"], 0o600)
        for kind, target in (
            ("link-to-dict", d.path),
            ("link-to-fifo", zoo["fifo"]),
            ("dangling-link", f"{base}-nothing"),
        ):
            zoo[kind] = f"{base}-{kind}"
            os.symlink(target, zoo[kind])
        zoo["plain"] = f"{base}-plain"
        with open(zoo["plain"], "wb") as f:
            f.write(b"not a dict" * 100)
        with contextlib.suppress(OSError):  # needs privilege
            os.mknod(f"{base}-device", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
            zoo["device"] = f"{base}-device"
        yield zoo
    finally:
        d.close()
        for kind, path in zoo.items():
            if kind != "dict":
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)


def run_ls_in_thread() -> tuple[int, str]:
    """main(["ls"]) in a thread, so that a hang fails the test instead of
    blocking it; its exit status and what it printed."""
    out = io.StringIO()
    result: list[Any] = []

    def target() -> None:
        try:
            with contextlib.redirect_stdout(out):
                result.append(cli.main(["ls"]))
        except BaseException as e:  # pragma: no cover - reported below
            result.append(e)

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(HANG_S)
    assert not t.is_alive(), f"ls blocked for {HANG_S} s"
    assert len(result) == 1
    assert isinstance(result[0], int), result[0]
    return result[0], out.getvalue()


def listed(output: str) -> dict[str, list[str]]:
    """The lines of ls output, by their first field (the name)."""
    return {line.split("\t")[0]: line.split("\t") for line in output.splitlines()}


def check_listing(zoo: dict[str, str], output: str) -> None:
    lines = listed(output)
    name = os.path.basename(zoo["dict"])
    assert name in lines, output
    assert lines[name][1] == f"{shmdict.MIN_SIZE} bytes"
    assert lines[name][3] == "live"
    for kind, path in zoo.items():
        if kind != "dict":
            assert os.path.basename(path) not in lines, (kind, output)


def test_ls_lists_dicts_and_skips_fifos_devices_symlinks(
    shm_zoo: dict[str, str],
) -> None:
    rc, output = run_ls_in_thread()
    assert rc == 0
    check_listing(shm_zoo, output)


def test_ls_as_a_subprocess(shm_zoo: dict[str, str]) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "shmdict", "ls"],
        env=pkg_env(),
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    check_listing(shm_zoo, r.stdout)


class _LyingEntry:
    """A directory entry that calls everything a regular file: the name was
    one when the directory was listed and has been swapped since."""

    def __init__(self, entry: os.DirEntry[str]) -> None:
        self.name = entry.name
        self.path = entry.path

    def is_file(self, *, follow_symlinks: bool = True) -> bool:
        return True

    def stat(self, *, follow_symlinks: bool = True) -> os.stat_result:
        return os.stat(self.path, follow_symlinks=follow_symlinks)


def test_ls_survives_names_swapped_after_listing(
    shm_zoo: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The listing's lstat can be stale: the open itself must neither block
    on a FIFO or device nor follow a symlink."""
    real_scandir = os.scandir

    def lying_scandir(path: str) -> list[_LyingEntry]:
        with real_scandir(path) as it:
            return [_LyingEntry(e) for e in it]

    monkeypatch.setattr(os, "scandir", lying_scandir)
    try:
        rc, output = run_ls_in_thread()
    finally:
        monkeypatch.undo()
    assert rc == 0
    check_listing(shm_zoo, output)


def test_open_dict_file_never_blocks_or_follows(shm_zoo: dict[str, str]) -> None:
    opened = cli._open_dict_file(shm_zoo["dict"])
    assert opened is not None
    fd, st = opened
    try:
        assert stat.S_ISREG(st.st_mode)
        assert cli._same_file(shm_zoo["dict"], st)
        assert not cli._same_file(shm_zoo["link-to-dict"], st)
    finally:
        os.close(fd)
    for kind, path in shm_zoo.items():
        if kind != "dict":
            assert cli._open_dict_file(path) is None, kind


def test_ls_and_stats_show_the_filesystem_and_take_dir(tmp_path: Any) -> None:
    where = str(tmp_path)
    with shmdict.new("in-dir", shmdict.MIN_SIZE, dir=where) as d:
        d["k"] = 1
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert cli.main(["ls", "--dir", where]) == 0
        head, *rows = out.getvalue().splitlines()
        vfs = os.statvfs(where)
        fields = head.split("\t")
        assert fields[0] == f"# {where}"
        assert fields[1] == f"{vfs.f_blocks * vfs.f_frsize} bytes"
        assert fields[2].endswith(" free")
        assert int(fields[2].split()[0]) > 0
        assert [r.split("\t")[0] for r in rows] == ["in-dir"]
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert cli.main(["stats", "in-dir", "--dir", where]) == 0
        stats = dict(line.split("\t") for line in out.getvalue().splitlines())
        assert stats["entries"] == "1"
        assert int(stats["fs_free"]) > 0
        assert int(stats["fs_size"]) == vfs.f_blocks * vfs.f_frsize
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            assert cli.main(["stats", "in-dir"]) == 2  # not in /dev/shm
        assert err.getvalue().startswith("shmdict: ")

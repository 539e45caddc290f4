"""Command line: look at, check and remove shared dicts.

python -m shmdict ls                  the dicts, and the filesystem's free space
python -m shmdict stats NAME          counters of one dict
python -m shmdict verify NAME         full structural check (exit 1 if bad)
python -m shmdict keys NAME [-n N]    its keys
python -m shmdict get NAME KEY        one value, as Python repr
python -m shmdict rm NAME             remove it (e.g. left by a killed owner)

Every command takes --dir DIR (default: $SHMDICT_DIR, else /dev/shm).
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
from collections.abc import Sequence

from . import _core
from ._dict import default_dir, get, remove
from .errors import Error

_MAGIC = (0x31544349444D4853).to_bytes(8, "little")


# Opening a name in a directory anyone can write to: never follow a
# symlink, never wait (a FIFO's open blocks until a writer comes; a device
# may block too), never make a terminal ours.
_OPEN_FLAGS = (
    os.O_RDONLY
    | os.O_NOFOLLOW
    | os.O_NONBLOCK
    | os.O_CLOEXEC
    | getattr(os, "O_NOCTTY", 0)
)


def _open_dict_file(path: str) -> tuple[int, os.stat_result] | None:
    """An open fd and the fstat of the file at path, if it is a regular
    file (not a symlink, FIFO, socket or device) that starts as a dict
    does; else None. Never blocks, and reads nothing before fstat says the
    file is regular, so a name swapped since the directory was listed
    can't make it hang. The caller closes the fd."""
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode) and os.pread(fd, 8, 0) == _MAGIC:
            return fd, st
    except OSError:
        pass
    os.close(fd)
    return None


def _same_file(path: str, st: os.stat_result) -> bool:
    """Does path still name the regular file st describes (not followed)?"""
    try:
        now = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISREG(now.st_mode) and (now.st_dev, now.st_ino) == (
        st.st_dev,
        st.st_ino,
    )


def _cmd_ls(a: argparse.Namespace) -> int:
    vfs = os.statvfs(a.dir)
    total, free = vfs.f_blocks * vfs.f_frsize, vfs.f_bavail * vfs.f_frsize
    print(f"# {a.dir}\t{total} bytes\t{free} free")
    for entry in sorted(os.scandir(a.dir), key=lambda e: e.name):
        if entry.name.startswith(".shmdict-new."):
            continue  # a dict being built, not yet published
        # The lstat (or d_type) first, so nothing that isn't a regular
        # file is even opened; the open checks again, for a name swapped
        # in between.
        if not entry.is_file(follow_symlinks=False):
            continue
        opened = _open_dict_file(entry.path)
        if opened is None:
            continue
        fd, st = opened
        try:
            # creator_alive opens the name again (blocking): only while it
            # still names the file we hold open, so that it can't be a FIFO
            # swapped in since (short of a swap in the microseconds between
            # this lstat and that open).
            if not _same_file(entry.path, st):
                continue
            try:
                alive = "live" if _core.creator_alive(entry.path) else "creator gone"
            except OSError:
                alive = "?"
        finally:
            os.close(fd)
        used = st.st_blocks * 512
        print(f"{entry.name}\t{st.st_size} bytes\t{used} resident\t{alive}")
    return 0


def _cmd_stats(a: argparse.Namespace) -> int:
    with get(a.name, allow_foreign_owner=True, dir=a.dir) as d:
        for k, v in d.stats().items():
            print(f"{k}\t{v}")
    return 0


def _cmd_verify(a: argparse.Namespace) -> int:
    with get(a.name, allow_foreign_owner=True, dir=a.dir) as d:
        problems = d.verify()
    for p in problems:
        print(p)
    print("ok" if not problems else f"{len(problems)} problem(s)")
    return 1 if problems else 0


def _cmd_keys(a: argparse.Namespace) -> int:
    with get(a.name, allow_foreign_owner=True, dir=a.dir) as d:
        for k in d.get_keys(a.n):
            print(k)
    return 0


def _cmd_get(a: argparse.Namespace) -> int:
    with get(a.name, allow_foreign_owner=True, dir=a.dir) as d:
        missing = object()
        v = d.get(a.key, missing)
    if v is missing:
        print(f"no key {a.key!r}", file=sys.stderr)
        return 1
    print(repr(v))
    return 0


def _cmd_rm(a: argparse.Namespace) -> int:
    remove(a.name, dir=a.dir)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    ap = argparse.ArgumentParser(
        prog="python -m shmdict",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    ls = sub.add_parser("ls", help="list the dicts")
    ls.set_defaults(fn=_cmd_ls)
    ls.add_argument("--dir", default=default_dir(), help="where the dicts are")
    for cmd, fn, text in (
        ("stats", _cmd_stats, "show counters"),
        ("verify", _cmd_verify, "check every structure"),
        ("keys", _cmd_keys, "list keys"),
        ("get", _cmd_get, "print one value"),
        ("rm", _cmd_rm, "remove a dict by name"),
    ):
        p = sub.add_parser(cmd, help=text)
        p.add_argument("name")
        p.add_argument("--dir", default=default_dir(), help="where the dict is")
        p.set_defaults(fn=fn)
        if cmd == "keys":
            p.add_argument("-n", type=int, default=0, help="at most N keys")
        if cmd == "get":
            p.add_argument("key")
    args = ap.parse_args(argv)
    try:
        status: int = args.fn(args)
    except (OSError, Error, ValueError) as e:
        print(f"shmdict: {e}", file=sys.stderr)
        return 2
    return status


if __name__ == "__main__":
    sys.exit(main())

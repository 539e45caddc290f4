"""Command line: look at, change, copy, watch, check and remove shared dicts.

  shmdict ls                          the dicts, and the filesystem's free space
  shmdict stats NAME [--json]         counters of one dict
  shmdict verify NAME                 full structural check
  shmdict keys NAME [-n N]            its keys
  shmdict get NAME KEY                one value, as Python repr
  shmdict rm NAME                     remove it (e.g. left by a killed owner)

`python -m shmdict` is the same command. Every command takes --dir DIR
(default: $SHMDICT_DIR, else /dev/shm).

Exit status:
  0    done
  1    done, and the answer is no: a key that isn't there, problems that
       verify found
  2    not done: a usage error, no such dict, a file that is not a dict, a
       value the dict can't take, a full dict, a lock timeout, an OS error
  130  interrupted (Ctrl-C)
Errors and warnings are single lines on stderr that start with "shmdict: ".
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import stat
import struct
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from . import _core
from ._dict import SharedDict, default_dir, get, path_for
from .errors import Error

OK, NO, FAIL, INTERRUPTED = 0, 1, 2, 130

_MAGIC = (0x31544349444D4853).to_bytes(8, "little")

# Fields of the file header (struct sd_header in csrc/layout.h), in the
# host's byte order: create_flags, and the creator's pid (0 for a dict
# made by open()). SD_CREATE_SHARED is the create_flags bit open() sets.
_HEADER_BYTES = 144
_CREATE_FLAGS = struct.Struct("=I"), 36
_CREATOR_PID = struct.Struct("=Q"), 104
_SD_CREATE_SHARED = 4


class _Failure(Exception):
    """A command could not be done: its message goes to stderr, one line,
    and the process exits with `status`."""

    def __init__(self, message: str, status: int = FAIL) -> None:
        super().__init__(message)
        self.status = status


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors raised as a one-line _Failure instead of
    printed usage and SystemExit."""

    def error(self, message: str) -> NoReturn:
        raise _Failure(f"{message} (see: {self.prog} --help)")


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


def _creator(path: str, fd: int, st: os.stat_result) -> tuple[str, int]:
    """Who made the dict open at fd (path names it): ("shared", 0) for a
    dict made by open(), which no process owns; else ("live" or "creator
    gone", its creator's pid), or ("?", pid) when that can't be told."""
    try:
        header = os.pread(fd, _HEADER_BYTES, 0)
    except OSError:
        return "?", 0
    if len(header) < _HEADER_BYTES:
        return "?", 0
    (flags,) = _CREATE_FLAGS[0].unpack_from(header, _CREATE_FLAGS[1])
    (pid,) = _CREATOR_PID[0].unpack_from(header, _CREATOR_PID[1])
    if flags & _SD_CREATE_SHARED:
        return "shared", 0
    if pid == 0:
        return "?", 0  # no creator recorded, yet not shared: not a sane header
    # creator_alive opens the name again (blocking): only while it still
    # names the file we hold open, so that it can't be a FIFO swapped in
    # since (short of a swap in the microseconds between this lstat and
    # that open).
    if not _same_file(path, st):
        return "?", pid
    try:
        alive = _core.creator_alive(path)
    except OSError:
        return "?", pid
    return ("live" if alive else "creator gone"), pid


def _attach(a: argparse.Namespace) -> SharedDict:
    """The dict a.name in a.dir, attached as a peer; _Failure if missing."""
    try:
        return get(a.name, allow_foreign_owner=True, dir=a.dir)
    except FileNotFoundError:
        where = a.dir if os.path.isdir(a.dir) else f"{a.dir} (no such directory)"
        raise _Failure(f"no dict {a.name!r} in {where}") from None


def _human(n: int) -> str:
    """A byte count in B, KiB, MiB, GiB or TiB, three significant digits."""
    if n < 1024:
        return f"{n} B"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            break
    return f"{value:.{2 if value < 10 else 1 if value < 100 else 0}f} {unit}"


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


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
            if not _same_file(entry.path, st):
                continue
            state, _ = _creator(entry.path, fd, st)
        finally:
            os.close(fd)
        used, entries = f"{st.st_blocks * 512} resident", "? entries"
        try:
            # The engine's own open is as careful (no symlink, no wait, a
            # regular file) and checks the whole header.
            with get(entry.name, allow_foreign_owner=True, dir=a.dir) as d:
                stats = d.stats()
            used = f"{stats['bytes_used']} used"
            entries = f"{stats['entries']} entries"
        except (OSError, Error, ValueError):
            pass  # another user's, another format, damaged: the file's view
        print(f"{entry.name}\t{st.st_size} bytes\t{used}\t{state}\t{entries}")
    return OK


def _stats(a: argparse.Namespace) -> dict[str, int | bool | str]:
    """Everything stats shows: the dict's counters, its name, path and
    size, and who made it."""
    with _attach(a) as d:
        out: dict[str, int | bool | str] = {
            "name": d.name,
            "path": d.path,
            "size": d.size,
        }
        out.update(d.stats())
    state, pid = "?", 0
    opened = _open_dict_file(d.path)
    if opened is not None:
        fd, st = opened
        try:
            state, pid = _creator(d.path, fd, st)
        finally:
            os.close(fd)
    out["creator"] = state
    out["creator_pid"] = pid
    return out


def _stats_lines(s: dict[str, int | bool | str]) -> list[tuple[str, str]]:
    """The human form of _stats' result, as (label, text) rows."""

    def n(k: str) -> int:
        v = s[k]
        assert isinstance(v, int)
        return v

    def size(k: str) -> str:
        return f"{_human(n(k))} ({n(k)} bytes)" if n(k) >= 1024 else _human(n(k))

    gets = n("hits") + n("misses")
    creator = str(s["creator"])
    if s["creator_pid"]:
        creator += f" (pid {s['creator_pid']})"
    elif creator == "shared":
        creator += " (made by open(): no process owns it)"
    return [
        ("name", str(s["name"])),
        ("path", str(s["path"])),
        ("creator", creator),
        ("size", size("size")),
        ("stripes", str(s["stripes"])),
        ("evict", "yes" if s["evict"] else "no"),
        ("reserved", "yes" if s["reserved"] else "no"),
        ("entries", f"{n('entries')} ({n('expiring')} expiring)"),
        ("capacity", size("capacity")),
        ("used", f"{size('bytes_used')}, {_percent(n('bytes_used'), n('capacity'))}"),
        ("free", size("bytes_free")),
        ("pages reserved", size("bytes_reserved")),
        ("hits", str(n("hits"))),
        ("misses", str(n("misses"))),
        ("hit rate", _percent(n("hits"), gets)),
        ("sets", str(n("sets"))),
        ("evictions", str(n("evictions"))),
        ("expirations", str(n("expirations"))),
        ("lock waits", str(n("lock_waits"))),
        ("recoveries", str(n("recoveries"))),
        ("pending free", str(n("pending_free"))),
        ("buckets", str(n("buckets"))),
        ("filesystem", f"{_human(n('fs_size'))}, {_human(n('fs_free'))} free"),
    ]


def _cmd_stats(a: argparse.Namespace) -> int:
    s = _stats(a)
    if a.json:
        print(json.dumps(s, indent=2))
        return OK
    rows = _stats_lines(s)
    width = max(len(label) for label, _ in rows)
    for label, text in rows:
        print(f"{label:<{width}}  {text}")
    return OK


def _cmd_verify(a: argparse.Namespace) -> int:
    with _attach(a) as d:
        problems = d.verify()
    for p in problems:
        print(p)
    print("ok" if not problems else f"{len(problems)} problem(s)")
    return NO if problems else OK


def _cmd_keys(a: argparse.Namespace) -> int:
    with _attach(a) as d:
        for k in d.get_keys(a.n):
            print(k)
    return OK


def _cmd_get(a: argparse.Namespace) -> int:
    with _attach(a) as d:
        missing = object()
        v = d.get(a.key, missing)
    if v is missing:
        raise _Failure(f"no key {a.key!r} in {a.name!r}", NO)
    print(repr(v))
    return OK


def _cmd_rm(a: argparse.Namespace) -> int:
    path = path_for(a.name, a.dir)
    opened = _open_dict_file(path)
    if opened is None:
        if not os.path.lexists(path):
            raise _Failure(f"no dict {a.name!r} in {a.dir}")
        raise _Failure(f"{path} is not a dict: left alone")
    fd, st = opened
    os.close(fd)
    if not _same_file(path, st):
        raise _Failure(f"{path} changed while being checked: left alone")
    os.unlink(path)
    return OK


def _describe(e: BaseException) -> str:
    """One line saying what went wrong."""
    if isinstance(e, OSError) and e.strerror:
        text = e.strerror + (f": {e.filename}" if e.filename else "")
    elif isinstance(e, KeyError):
        text = f"no key {e.args[0]!r}" if e.args else "no such key"
    else:
        text = str(e) or type(e).__name__
    return " ".join(text.split())


def _build_parser() -> _Parser:
    ap = _Parser(
        prog="shmdict",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common = _Parser(add_help=False)
    common.add_argument(
        "--dir",
        default=default_dir(),
        help="the directory of the dicts (default: %(default)s)",
    )
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    def command(
        name: str, fn: Callable[[argparse.Namespace], int], text: str
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=text, description=text)
        p.set_defaults(fn=fn)
        return p

    command("ls", _cmd_ls, "list the dicts, and the filesystem's size and free space")
    p = command("stats", _cmd_stats, "show a dict's counters")
    p.add_argument("name")
    p.add_argument("--json", action="store_true", help="as one JSON object")
    p = command("verify", _cmd_verify, "check every structure (exit 1 on problems)")
    p.add_argument("name")
    p = command("keys", _cmd_keys, "list a dict's keys")
    p.add_argument("name")
    p.add_argument("-n", type=int, default=0, help="at most N keys")
    p = command("get", _cmd_get, "print one value, as Python repr")
    p.add_argument("name")
    p.add_argument("key")
    p = command("rm", _cmd_rm, "remove a dict by name (whoever made it)")
    p.add_argument("name")
    return ap


def _fix_streams() -> None:
    """Let print write any str: a name that isn't UTF-8 in the directory
    comes back from the OS with surrogate escapes, and a locale's encoding
    may lack characters a key has."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            with contextlib.suppress(AttributeError, ValueError, OSError):
                stream.reconfigure(errors="backslashreplace")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with argv (default: sys.argv[1:]); return the
    exit status. Errors are reported on stderr, never raised."""
    _fix_streams()
    try:
        args = _build_parser().parse_args(argv)
        status: int = args.fn(args)
        sys.stdout.flush()
    except SystemExit as e:  # --help
        return e.code if isinstance(e.code, int) else OK
    except _Failure as e:
        print(f"shmdict: {_describe(e)}", file=sys.stderr)
        return e.status
    except BrokenPipeError:
        # The reader went away (| head): stop quietly, as SIGPIPE would.
        _silence_stdout()
        return 128 + 13
    except KeyboardInterrupt:
        print("shmdict: interrupted", file=sys.stderr)
        return INTERRUPTED
    except Exception as e:  # one line, never a traceback
        print(f"shmdict: {_describe(e)}", file=sys.stderr)
        return FAIL
    return status


def _silence_stdout() -> None:
    """Point fd 1 at /dev/null, so that the interpreter's last flush of a
    closed pipe doesn't print an error."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, ValueError, OSError):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())

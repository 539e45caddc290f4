"""Command line: look at, change, copy, watch, check and remove shared dicts.

  shmdict ls                          the dicts, and the filesystem's free space
  shmdict stats NAME [--json]         counters of one dict
  shmdict keys NAME [GLOB] [-n N]     its keys (those that match GLOB)
  shmdict get NAME KEY [--json]       one value, as Python repr or JSON
  shmdict set NAME KEY VALUE [--TYPE] [--ttl SECONDS]
                                      store one; TYPE is str (the default),
                                      int, float, bool, none (no VALUE),
                                      bytes-hex or json (a JSON scalar)
  shmdict delete NAME KEY             delete one
  shmdict incr NAME KEY DELTA [--float] [--init N] [--ttl S] [--init-ttl S]
                                      add to a number, print the result
  shmdict ttl NAME KEY                seconds it has left (0: never expires)
  shmdict expire NAME KEY SECONDS     set its TTL (0: never expires)
  shmdict dump NAME [--base64] > FILE every key: one JSON object a line,
                                      with its type and remaining TTL
  shmdict load NAME [--size SIZE] < FILE
                                      store them again (--size: create the
                                      dict, as shmdict.open does, if missing)
  shmdict top NAME [-n N | --once]    rates, hit rate and memory, each second
                                      (a curses view on a terminal, else a
                                      line per refresh; q or Ctrl-C quits)
  shmdict verify NAME                 full structural check
  shmdict rm NAME                     remove it (e.g. left by a killed owner)

`python -m shmdict` is the same command; `shmdict COMMAND --help` tells
more. Every command takes --dir DIR (default: $SHMDICT_DIR, else
/dev/shm). A VALUE or DELTA that starts with "-" (other than a negative
number) goes after "--".

Exit status:
  0    done
  1    done, and the answer is no: a key that isn't there (get, delete,
       incr without --init, ttl, expire), problems that verify found
  2    not done: a usage error, no such dict, a file that is not a dict, a
       value the dict can't take, a full dict, a lock timeout, an OS error
  130  interrupted by Ctrl-C (top: 0, as Ctrl-C is how it ends)
  141  stdout was closed early (| head): stopped quietly
Errors and warnings are single lines on stderr that start with "shmdict: ".
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import fnmatch
import io
import json
import math
import os
import re
import stat
import struct
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import NoReturn

from . import _core
from ._dict import SharedDict, Value, default_dir, get, path_for
from ._dict import open as open_dict
from ._pickled import Pickled
from .errors import Error

OK, NO, FAIL, INTERRUPTED = 0, 1, 2, 130

# The file's first 8 bytes: layout.h's SD_MAGIC, stored in the host's byte
# order as the header's other fields are.
_MAGIC = _core.MAGIC.to_bytes(8, sys.byteorder)

# Fields of the file header (struct sd_header in csrc/layout.h), in the
# host's byte order: the format version (where they are depends on it),
# create_flags, and the creator's pid (0 for a dict made by open()).
# SD_CREATE_SHARED is the create_flags bit open() sets.
_HEADER_BYTES = 144
_VERSION = struct.Struct("=I"), 8
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
    (version,) = _VERSION[0].unpack_from(header, _VERSION[1])
    if version != _core.FORMAT_VERSION:
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
        path = d.path
    state, pid = "?", 0
    opened = _open_dict_file(path)
    if opened is not None:
        fd, st = opened
        try:
            state, pid = _creator(path, fd, st)
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


# ---- values ---------------------------------------------------------------
#
# A value in JSON, for get --json and dump: {"type": T, ...} where T says
# the Python type and the rest holds it exactly:
#   none    {"value": null}          bool  {"value": true}
#   int     {"value": 9223372036854775807}   (JSON numbers are exact here)
#   float   {"value": 0.1}, or "nan", "inf", "-inf" (JSON has no such numbers)
#   str     {"value": "text"}
#   bytes   {"hex": "00ff"} or {"base64": "AP8="}
#   pickled as bytes, for a shmdict.Pickled value
#   list    {"items": [value, ...]}: a list's items, head first


_FLOAT_WORDS = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def _encode_value(v: object, base64_bytes: bool = False) -> dict[str, object]:
    """The JSON form of a value (see above)."""
    if isinstance(v, list):
        return {"type": "list", "items": [_encode_value(x, base64_bytes) for x in v]}
    if isinstance(v, bytes):
        tag = "pickled" if isinstance(v, Pickled) else "bytes"
        raw = bytes(v)
        if base64_bytes:
            return {"type": tag, "base64": base64.b64encode(raw).decode("ascii")}
        return {"type": tag, "hex": raw.hex()}
    if v is None:
        return {"type": "none", "value": None}
    if isinstance(v, bool):
        return {"type": "bool", "value": v}
    if isinstance(v, int):
        return {"type": "int", "value": v}
    if isinstance(v, float):
        if math.isfinite(v):
            return {"type": "float", "value": v}
        word = "nan" if math.isnan(v) else "inf" if v > 0 else "-inf"
        return {"type": "float", "value": word}
    if isinstance(v, str):
        return {"type": "str", "value": v}
    raise TypeError(f"a {type(v).__name__} is not a shmdict value")


def _decode_item(rec: object) -> Value | list[Value]:
    """A value's JSON form, or a list's with its items; ValueError if it
    is neither."""
    if not isinstance(rec, dict):
        raise ValueError("not a JSON object")
    if rec.get("type") != "list":
        return _decode_value(rec)
    items = rec.get("items")
    if not isinstance(items, list) or not items:
        raise ValueError('a list needs "items", a non-empty array')
    out = []
    for item in items:
        if not isinstance(item, dict) or item.get("type") == "list":
            raise ValueError("a list's items must be values, not lists")
        out.append(_decode_value(item))
    return out


def _decode_value(rec: dict[str, object]) -> Value:
    """The value a JSON form (see above) holds; ValueError if it is not
    one."""
    kind, v = rec.get("type"), rec.get("value")
    if kind == "none" and v is None:
        return None
    if kind == "bool" and isinstance(v, bool):
        return v
    if kind == "int" and isinstance(v, int) and not isinstance(v, bool):
        if not -(2**63) <= v < 2**63:
            raise ValueError(f"int {v} does not fit in 64 bits")
        return v
    if kind == "float":
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return float(v)
        if isinstance(v, str) and v in _FLOAT_WORDS:
            return _FLOAT_WORDS[v]
    if kind == "str" and isinstance(v, str):
        _check_utf8(v, "a str")
        return v
    if kind in ("bytes", "pickled"):
        raw = _decode_bytes(rec)
        return raw if kind == "bytes" else Pickled(raw)
    if kind not in ("none", "bool", "int", "float", "str"):
        raise ValueError(f"unknown type {kind!r}")
    raise ValueError(f"a value of type {kind} can't be {_clip(json.dumps(v))}")


def _check_utf8(s: str, what: str) -> None:
    """ValueError if s has a lone surrogate: shmdict stores UTF-8."""
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{what} with a lone surrogate (not UTF-8)") from None


def _clip(text: str, n: int = 60) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def _decode_bytes(rec: dict[str, object]) -> bytes:
    h, b = rec.get("hex"), rec.get("base64")
    try:
        if isinstance(h, str) and b is None:
            return bytes.fromhex(h)
        if isinstance(b, str) and h is None:
            return base64.b64decode(b, validate=True)
    except (ValueError, binascii.Error) as e:
        raise ValueError(f"bad {rec['type']} data: {e}") from None
    raise ValueError(f"a {rec['type']} needs one of 'hex' or 'base64', as a string")


def _parse_value(text: str | None, kind: str) -> Value:
    """The value set stores: text read as kind (the type flag given)."""
    if kind == "none":
        if text is not None:
            raise _Failure("--none takes no VALUE")
        return None
    if text is None:
        raise _Failure("VALUE is missing (only --none goes without one)")
    try:
        if kind == "str":
            return text
        if kind == "int":
            return int(text)
        if kind == "float":
            return float(text)
        if kind == "bool":
            if text.lower() in ("true", "1", "yes"):
                return True
            if text.lower() in ("false", "0", "no"):
                return False
            raise ValueError("not true/false, 1/0 or yes/no")
        if kind == "bytes-hex":
            return bytes.fromhex(text)
        v = json.loads(text)  # --json
    except ValueError as e:
        raise _Failure(f"--{kind} VALUE {text!r}: {_describe(e)}") from None
    if v is not None and not isinstance(v, (bool, int, float, str)):
        raise _Failure(f"--json VALUE must be a JSON scalar, not {text!r}")
    return v


def _no_key(a: argparse.Namespace) -> _Failure:
    return _Failure(f"no key {a.key!r} in {a.name!r}", NO)


def _seconds(t: float) -> str:
    """A TTL as printed: 0 (never expires), or seconds to the millisecond."""
    return "0" if t == 0 else f"{max(t, 0.001):.3f}"


def _cmd_keys(a: argparse.Namespace) -> int:
    with _attach(a) as d:
        keys = d.get_keys(0 if a.pattern else a.n)
    if a.pattern:
        keys = [k for k in keys if fnmatch.fnmatchcase(k, a.pattern)]
        if a.n:
            keys = keys[: a.n]
    for k in keys:
        print(k)
    return OK


def _cmd_get(a: argparse.Namespace) -> int:
    missing = object()
    with _attach(a) as d:
        try:
            v: object = d.get(a.key, missing)
        except TypeError:  # a list: its items, read at one moment
            v = d.lrange(a.key)
    if v is missing:
        raise _no_key(a)
    print(json.dumps(_encode_value(v)) if a.json else repr(v))
    return OK


def _cmd_set(a: argparse.Namespace) -> int:
    value = _parse_value(a.value, a.kind)
    with _attach(a) as d:
        d.set(a.key, value, exptime=a.ttl)
    return OK


def _cmd_delete(a: argparse.Namespace) -> int:
    with _attach(a) as d:
        if not d.delete(a.key):
            raise _no_key(a)
    return OK


def _cmd_incr(a: argparse.Namespace) -> int:
    number: Callable[[str], int | float] = float if a.float else int
    try:
        delta = number(a.delta)
        init = None if a.init is None else number(a.init)
    except ValueError:
        kind = "a number" if a.float else "an int (--float for a float)"
        raise _Failure(f"DELTA and --init must be {kind}") from None
    with _attach(a) as d:
        try:
            v = d.incr(a.key, delta, a.ttl, init=init, init_ttl=a.init_ttl)
        except KeyError:
            raise _Failure(
                f"no key {a.key!r} in {a.name!r} (--init N starts it at N)", NO
            ) from None
    print(repr(v))
    return OK


def _cmd_ttl(a: argparse.Namespace) -> int:
    with _attach(a) as d:
        t = d.ttl(a.key)
    if t is None:
        raise _no_key(a)
    print(_seconds(t))
    return OK


def _cmd_expire(a: argparse.Namespace) -> int:
    with _attach(a) as d:
        if not d.expire(a.key, a.seconds):
            raise _no_key(a)
    return OK


# ---- dump and load ---------------------------------------------------------


class _Progress:
    """A progress bar on stderr, drawn only when stderr is a terminal, at
    most ten times a second, and wiped when done."""

    WIDTH = 30

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total, self.n = label, total, 0
        self.stream = sys.stderr
        try:
            self.on = self.stream.isatty()
        except (AttributeError, ValueError):
            self.on = False
        self.drawn = 0.0
        self.width = 0

    def step(self) -> None:
        self.n += 1
        if not self.on:
            return
        now = time.monotonic()
        if now - self.drawn < 0.1 and self.n < self.total:
            return
        self.drawn = now
        part = self.n / self.total if self.total else 1.0
        full = round(part * self.WIDTH)
        line = (
            f"\r{self.label} [{'#' * full}{'.' * (self.WIDTH - full)}] "
            f"{100 * part:3.0f}% {self.n}/{self.total}"
        )
        self.width = max(self.width, len(line))
        self.stream.write(line)
        self.stream.flush()

    def done(self) -> None:
        if self.on and self.width:
            self.stream.write("\r" + " " * self.width + "\r")
            self.stream.flush()


def _cmd_dump(a: argparse.Namespace) -> int:
    missing = object()
    with _attach(a) as d:
        keys = sorted(d.get_keys())
        progress = _Progress("dump", len(keys))
        try:
            for key in keys:
                progress.step()
                try:
                    v: object = d.get(key, missing)
                except TypeError:  # a list: its items, read at one moment
                    v = d.lrange(key) or missing
                ttl = d.ttl(key)
                if v is missing or ttl is None:
                    continue  # deleted or expired since the listing
                rec: dict[str, object] = {"key": key}
                rec.update(_encode_value(v, a.base64))
                if ttl:
                    rec["ttl"] = max(round(ttl, 3), 0.001)
                sys.stdout.write(json.dumps(rec, allow_nan=False) + "\n")
        finally:
            progress.done()
    return OK


def _read_records(
    lines: Iterable[bytes | str],
) -> list[tuple[str, Value | list[Value], float]]:
    """(key, value, ttl) of every line of a dump (blank lines skipped).
    _Failure naming the line if one isn't a record of a value shmdict can
    store."""
    records = []
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            if not isinstance(rec, dict):
                raise ValueError("not a JSON object")
            key = rec.get("key")
            if not isinstance(key, str) or not key:
                raise ValueError('no "key" (a non-empty string)')
            _check_utf8(key, "a key")
            if len(key.encode()) > _core.MAX_KEY_BYTES:
                raise ValueError("a key longer than 1 MiB")
            value = _decode_item(rec)
            ttl = rec.get("ttl")
            if ttl is None:
                ttl = 0
            if (
                isinstance(ttl, bool)
                or not isinstance(ttl, (int, float))
                or not (math.isfinite(ttl) and ttl >= 0)
            ):
                raise ValueError(f'"ttl" must be seconds >= 0, not {ttl!r}')
        except ValueError as e:
            raise _Failure(f"line {lineno}: {_describe(e)}; nothing loaded") from None
        records.append((key, value, float(ttl)))
    return records


def _cmd_load(a: argparse.Namespace) -> int:
    source = getattr(sys.stdin, "buffer", sys.stdin)
    records = _read_records(source)
    try:
        d = get(a.name, allow_foreign_owner=True, dir=a.dir)
    except FileNotFoundError:
        if a.size is None:
            where = a.dir if os.path.isdir(a.dir) else f"{a.dir} (no such directory)"
            raise _Failure(
                f"no dict {a.name!r} in {where} (--size SIZE creates it)"
            ) from None
        d = open_dict(a.name, a.size, evict=a.evict, dir=a.dir)
    done = 0
    progress = _Progress("load", len(records))
    with d:
        try:
            for key, value, ttl in records:
                progress.step()
                if isinstance(value, list):  # a list replaces what is there
                    d.delete(key)
                    for item in value:
                        d.rpush(key, item)
                    if ttl:
                        d.expire(key, ttl)
                else:
                    d.set(key, value, exptime=ttl)
                done += 1
        except (Error, OSError, ValueError, TypeError) as e:
            raise _Failure(
                f"{_describe(e)} (key {_clip(repr(key))}); {done} of "
                f"{len(records)} keys loaded"
            ) from None
        finally:
            progress.done()
    return OK


def _size_arg(text: str) -> int:
    """A --size: bytes, or a number with K, M, G or T (binary: KiB ...)."""
    m = re.fullmatch(r"\s*(\d+)\s*(?:([KMGT])(?:I?B)?)?\s*", text.upper())
    if not m:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a size (bytes, or with K, M, G or T: 64M, 1GiB)"
        )
    shift = {"": 0, "K": 10, "M": 20, "G": 30, "T": 40}[m.group(2) or ""]
    return int(m.group(1)) << shift


# ---- top --------------------------------------------------------------------

# The counters top shows per second (from the deltas of two samples).
_RATES = (
    ("hits", "hits"),
    ("misses", "misses"),
    ("sets", "sets"),
    ("evictions", "evictions"),
    ("expirations", "expirations"),
    ("lock_waits", "lock waits"),
    ("recoveries", "recoveries"),
)


class _Sample:
    """The stats of a dict at one moment, and the rates since the sample
    before (None for the first)."""

    def __init__(self, d: SharedDict, before: _Sample | None) -> None:
        self.t = time.monotonic()
        self.clock = time.strftime("%H:%M:%S")
        self.stats = d.stats()
        self.rates: dict[str, float] | None = None
        if before is not None:
            dt = max(self.t - before.t, 1e-9)
            self.rates = {
                k: max(int(self.stats[k]) - int(before.stats[k]), 0) / dt
                for k, _ in _RATES
            }

    def n(self, key: str) -> int:
        return int(self.stats[key])

    def hit_rate(self) -> str:
        """The share of gets that hit, over the last interval."""
        if self.rates is None:
            return "-"
        hits, misses = self.rates["hits"], self.rates["misses"]
        return f"{100 * hits / (hits + misses):.1f}%" if hits + misses else "-"


def _rate(r: float | None) -> str:
    if r is None:
        return "-"
    return f"{r:.1f}" if r < 10 else f"{r:.0f}"


_LINE_HEAD = (
    f"{'time':<8} {'hits/s':>9} {'misses/s':>9} {'sets/s':>9} {'hit%':>6} "
    f"{'evict/s':>8} {'waits/s':>8} {'entries':>9} {'used':>10} {'free':>10}"
)


def _top_line(s: _Sample) -> str:
    """One line of top's output when stdout is not a terminal."""
    r = s.rates or {}
    return (
        f"{s.clock:<8} {_rate(r.get('hits')):>9} {_rate(r.get('misses')):>9} "
        f"{_rate(r.get('sets')):>9} {s.hit_rate():>6} "
        f"{_rate(r.get('evictions')):>8} {_rate(r.get('lock_waits')):>8} "
        f"{s.n('entries'):>9} {_human(s.n('bytes_used')):>10} "
        f"{_human(s.n('bytes_free')):>10}"
    )


def _top_lines(d: SharedDict, interval: float, count: int) -> None:
    """top without a terminal: a line per refresh, after a header."""
    print(_LINE_HEAD, flush=True)
    sample = _Sample(d, None)
    shown = 0
    while not count or shown < count:
        time.sleep(interval)
        sample = _Sample(d, sample)
        print(_top_line(sample), flush=True)
        shown += 1


def _top_screen_text(d: SharedDict, s: _Sample, interval: float) -> list[str]:
    """The lines of top's full-screen view."""
    cap, used = s.n("capacity"), s.n("bytes_used")
    gets = s.n("hits") + s.n("misses")
    bar = round(30 * used / cap) if cap else 0
    lines = [
        f"shmdict top {d.name}   {d.path}   {s.clock}",
        f"size {_human(d.size)}   stripes {s.n('stripes')}   evict "
        f"{'yes' if s.stats['evict'] else 'no'}   every {interval:g} s   q quits",
        "",
        f"{'':<14}{'per second':>14}{'total':>16}",
    ]
    for key, label in _RATES:
        rate = _rate(s.rates[key] if s.rates else None)
        lines.append(f"{label:<14}{rate:>14}{s.n(key):>16}")
    lines += [
        "",
        f"{'hit rate':<14}{s.hit_rate()} now, {_percent(s.n('hits'), gets)} since made",
        f"{'entries':<14}{s.n('entries')} ({s.n('expiring')} expiring)",
        f"{'memory':<14}{_human(used)} used of {_human(cap)} "
        f"({_percent(used, cap)}), {_human(s.n('bytes_free'))} free",
        f"{'':<14}[{'#' * bar}{'.' * (30 - bar)}]",
        f"{'filesystem':<14}{_human(s.n('fs_size'))}, {_human(s.n('fs_free'))} free",
    ]
    return lines


def _top_screen(d: SharedDict, interval: float, count: int) -> None:
    """top on a terminal: a curses view, redrawn every interval, until q,
    Ctrl-C or count refreshes."""
    import curses

    def run(scr: curses.window) -> None:
        with contextlib.suppress(curses.error):
            curses.curs_set(0)
        scr.timeout(50)
        sample = _Sample(d, None)
        shown = 0
        while True:
            scr.erase()
            height, width = scr.getmaxyx()
            for y, line in enumerate(_top_screen_text(d, sample, interval)):
                if y >= height:
                    break
                with contextlib.suppress(curses.error):  # the last cell
                    scr.addnstr(y, 0, line, width)
            scr.refresh()
            if count and shown >= count:
                return
            due = sample.t + interval
            while time.monotonic() < due:
                if scr.getch() in (ord("q"), ord("Q")):
                    return
            sample = _Sample(d, sample)
            shown += 1

    curses.wrapper(run)


def _can_use_curses() -> bool:
    """Are stdin and stdout a terminal that curses knows?"""
    try:
        if not (sys.stdout.isatty() and sys.stdin.isatty()):
            return False
        import curses
    except (AttributeError, ValueError, ImportError):
        return False
    try:
        curses.setupterm(fd=sys.stdout.fileno())
    except (curses.error, OSError, ValueError):
        return False  # no terminfo entry for $TERM, say
    return True


def _cmd_top(a: argparse.Namespace) -> int:
    count = 1 if a.once else a.n
    with _attach(a) as d:
        try:
            if not a.lines and _can_use_curses():
                _top_screen(d, a.interval, count)
            else:
                _top_lines(d, a.interval, count)
        except KeyboardInterrupt:
            pass  # Ctrl-C is the way out
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


def _seconds_arg(text: str) -> float:
    """A --ttl or SECONDS argument: a finite number >= 0."""
    try:
        t = float(text)
    except ValueError:
        t = math.nan
    if not (math.isfinite(t) and t >= 0):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds >= 0")
    return t


def _interval_arg(text: str) -> float:
    """An --interval: a finite number of seconds > 0."""
    t = _seconds_arg(text)
    if t == 0:
        raise argparse.ArgumentTypeError("the interval must be more than 0")
    return t


def _count_arg(text: str) -> int:
    """A -n argument: an int >= 0."""
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a count >= 0")
    return n


def _build_parser() -> tuple[_Parser, dict[str, argparse.ArgumentParser]]:
    """The parser of the whole command line, and that of each command."""
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
        commands[name] = p
        if name != "ls":
            p.add_argument("name", metavar="NAME", help="the dict's name")
        return p

    commands: dict[str, argparse.ArgumentParser] = {}

    command("ls", _cmd_ls, "list the dicts, and the filesystem's size and free space")
    p = command("stats", _cmd_stats, "show a dict's counters")
    p.add_argument("--json", action="store_true", help="as one JSON object")
    p = command("keys", _cmd_keys, "list a dict's keys, in the dict's order")
    p.add_argument(
        "pattern", metavar="GLOB", nargs="?", help="only keys that match (* ? [...])"
    )
    p.add_argument("-n", type=_count_arg, default=0, help="at most N keys")
    p = command("get", _cmd_get, "print one value, as Python repr or JSON")
    p.add_argument("key", metavar="KEY")
    p.add_argument(
        "--json", action="store_true", help='as JSON: {"type": ..., "value": ...}'
    )
    p = command("set", _cmd_set, "store one value (a str unless a flag says)")
    p.add_argument("key", metavar="KEY")
    p.add_argument(
        "value", metavar="VALUE", nargs="?", help="the value, read as its flag says"
    )
    kinds = p.add_mutually_exclusive_group()
    for kind, text in (
        ("str", "VALUE is a str (the default)"),
        ("int", "an int (signed 64-bit)"),
        ("float", "a float (nan, inf, -0.0 too)"),
        ("bool", "a bool: true/false, 1/0 or yes/no"),
        ("none", "None: no VALUE"),
        ("bytes-hex", "bytes, written in hex"),
        ("json", "a JSON scalar: null, true, 12, 1.5 or a string"),
    ):
        kinds.add_argument(
            f"--{kind}", dest="kind", action="store_const", const=kind, help=text
        )
    p.set_defaults(kind="str")
    p.add_argument(
        "--ttl",
        type=_seconds_arg,
        default=0,
        metavar="SECONDS",
        help="expire after this long (0: never, the default)",
    )
    p = command("delete", _cmd_delete, "delete one key (exit 1 if missing)")
    p.add_argument("key", metavar="KEY")
    p = command("incr", _cmd_incr, "add DELTA to a number; print the result")
    p.add_argument("key", metavar="KEY")
    p.add_argument("delta", metavar="DELTA", help="an int, or with --float a float")
    p.add_argument(
        "--float", action="store_true", help="DELTA and N are floats, not ints"
    )
    p.add_argument("--init", metavar="N", help="a missing key starts at N")
    p.add_argument(
        "--ttl",
        type=_seconds_arg,
        metavar="SECONDS",
        help="set the key's TTL (0: never expires; default: keep it)",
    )
    p.add_argument(
        "--init-ttl",
        type=_seconds_arg,
        metavar="SECONDS",
        help="the TTL of a key that --init starts (default: --ttl)",
    )
    p = command("ttl", _cmd_ttl, "print the seconds a key has left (0: never)")
    p.add_argument("key", metavar="KEY")
    p = command("expire", _cmd_expire, "set a key's TTL (0: never expires)")
    p.add_argument("key", metavar="KEY")
    p.add_argument(
        "seconds", metavar="SECONDS", type=_seconds_arg, help="from now; 0: never"
    )
    p = command("dump", _cmd_dump, "write every key as JSON lines to stdout")
    p.add_argument(
        "--base64", action="store_true", help="bytes in base64 (default: hex)"
    )
    p = command("load", _cmd_load, "store the keys of a dump read from stdin")
    p.add_argument(
        "--size",
        type=_size_arg,
        help="create the dict with this size if it is missing (64M, 1G, bytes)",
    )
    p.add_argument(
        "--evict", action="store_true", help="a dict it creates evicts when full"
    )
    p = command("top", _cmd_top, "watch a dict's rates live (q or Ctrl-C quits)")
    stop = p.add_mutually_exclusive_group()
    stop.add_argument(
        "-n", type=_count_arg, default=0, help="stop after N refreshes (0: never)"
    )
    stop.add_argument("--once", action="store_true", help="stop after one refresh")
    p.add_argument(
        "--interval",
        type=_interval_arg,
        default=1.0,
        metavar="SECONDS",
        help="between refreshes (default: 1)",
    )
    p.add_argument(
        "--lines",
        action="store_true",
        help="a line per refresh even on a terminal (without one, always)",
    )
    command("verify", _cmd_verify, "check every structure (exit 1 on problems)")
    command("rm", _cmd_rm, "remove a dict by name (whoever made it)")
    return ap, commands


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """The arguments of a command. Each command's parser reads options and
    operands in any order (parse_intermixed_args): with plain parse_args,
    `set NAME KEY --int 5` would give the optional VALUE nothing and leave
    5 over."""
    ap, commands = _build_parser()
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in commands:
        return commands[args[0]].parse_intermixed_args(args[1:])
    return ap.parse_args(args)  # --help, or a usage error


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
        args = _parse(argv)
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

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
import fcntl
import io
import json
import math
import os
import pty
import select
import signal
import stat
import struct
import subprocess
import sys
import termios
import threading
import time
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
            assert cli.main(["stats", "in-dir", "--dir", where, "--json"]) == 0
        stats = json.loads(out.getvalue())
        assert stats["entries"] == 1
        assert stats["fs_free"] > 0
        assert stats["fs_size"] == vfs.f_blocks * vfs.f_frsize
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            assert cli.main(["stats", "in-dir"]) == 2  # not in /dev/shm
        assert err.getvalue().startswith("shmdict: ")


# --------------------------------------------------------------------------
# Every command, through main() and as a process. Dicts live in the test's
# own directory (--dir), so nothing here meets /dev/shm.


def run(*args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    """main(args) in this process, with stdin holding `stdin`: the exit
    status, stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    saved = sys.stdin
    if stdin is not None:
        sys.stdin = io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8")
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = cli.main(list(args))
    finally:
        sys.stdin = saved
    return rc, out.getvalue(), err.getvalue()


def run_proc(
    *args: str, stdin: bytes | None = None, script: bool = False
) -> subprocess.CompletedProcess[str]:
    """The command as a process: `python -m shmdict ARGS`, or with script
    the way the installed `shmdict` script calls it (main() of
    shmdict.__main__, exit status from its return)."""
    if script:
        head = [
            sys.executable,
            "-c",
            "import sys; from shmdict.__main__ import main; sys.exit(main())",
        ]
    else:
        head = [sys.executable, "-m", "shmdict"]
    return subprocess.run(
        [*head, *args],
        env=pkg_env(),
        input=stdin.decode() if stdin is not None else None,
        stdin=subprocess.DEVNULL if stdin is None else None,
        capture_output=True,
        text=True,
        timeout=60,
    )


def one_error_line(err: str, *needles: str) -> None:
    """err is one line, "shmdict: ...", holding every needle."""
    assert err.endswith("\n"), err
    assert err.count("\n") == 1, err
    assert err.startswith("shmdict: "), err
    assert "Traceback" not in err
    for n in needles:
        assert n in err, (n, err)


@pytest.fixture
def where(tmp_path: Any) -> str:
    """A directory of the test's own for its dicts."""
    return str(tmp_path)


def test_ls_says_used_entries_and_who_made_each_dict(where: str) -> None:
    shared = shmdict.open("shared", shmdict.MIN_SIZE, dir=where)
    owned = shmdict.new("owned", shmdict.MIN_SIZE, dir=where)
    try:
        shared.set_many({"a": 1, "b": "two"})
        # A dict whose creator is gone: made by a process that exits
        # without closing it.
        r = subprocess.run(
            [
                sys.executable,
                "-c",
                "import os, shmdict; "
                f"d = shmdict.new('orphan', {shmdict.MIN_SIZE}, dir={where!r}); "
                "os._exit(0)",
            ],
            env=pkg_env(),
            check=True,
        )
        assert r.returncode == 0
        # A file with a dict's magic but no valid header: listed from what
        # the file says.
        with open(os.path.join(where, "damaged"), "wb") as f:
            f.write(cli._MAGIC + bytes(shmdict.MIN_SIZE - 8))
        # One of another format version: its creator can't be read either.
        with open(shared.path, "rb") as f:
            image = bytearray(f.read())
        image[8:12] = struct.pack("=I", shmdict.FORMAT_VERSION + 1)
        with open(os.path.join(where, "future"), "wb") as f:
            f.write(image)
        rc, out, err = run("ls", "--dir", where)
        assert (rc, err) == (0, "")
        rows = listed(out)
        used = shared.stats()["bytes_used"]
        assert rows["shared"][1:] == [
            f"{shmdict.MIN_SIZE} bytes",
            f"{used} used",
            "shared",
            "2 entries",
        ]
        assert rows["owned"][2:] == ["0 used", "live", "0 entries"]
        assert rows["orphan"][3] == "creator gone"
        assert rows["damaged"][2].endswith(" resident")
        assert rows["damaged"][3:] == ["?", "? entries"]
        assert rows["future"][2].endswith(" resident")
        assert rows["future"][3:] == ["?", "? entries"]
    finally:
        shared.close()
        owned.close()


def test_header_fields_read_from_the_file_match_layout_h() -> None:
    """ls and stats read create_flags and creator_pid from the header
    bytes: their offsets must be those of struct sd_header."""
    from .fileformat import c_layout

    L = c_layout()
    assert cli._VERSION[1] == L["sd_header.version"]
    assert L["SD_VERSION"] == shmdict.FORMAT_VERSION
    assert cli._CREATE_FLAGS[1] == L["sd_header.create_flags"]
    assert cli._CREATOR_PID[1] == L["sd_header.creator_pid"]
    assert L["sizeof(sd_header)"] >= cli._HEADER_BYTES


def test_stats_human_and_json(where: str) -> None:
    with shmdict.new("st", 4 << 20, dir=where) as d:
        d["k"] = "v"
        d.get("k")
        d.get("k")
        d.get("k")
        d.get("missing")
        rc, out, err = run("stats", "st", "--dir", where)
        assert (rc, err) == (0, "")
        # aligned: every value starts in the same column
        lines = out.splitlines()
        col = len(lines[0]) - len(lines[0].split("  ", 1)[1].lstrip())
        text = {line[:col].rstrip(): line[col:] for line in lines}
        assert all(line[col - 2 : col] == "  " for line in lines), out
        assert all(not line[col].isspace() for line in lines), out
        assert text["size"] == "4.00 MiB (4194304 bytes)"
        assert text["entries"] == "1 (0 expiring)"
        assert text["creator"] == f"live (pid {os.getpid()})"
        assert text["hit rate"] == "75.0%"
        assert text["capacity"].endswith(f" MiB ({d.capacity()} bytes)")
        assert text["lock waits"] == "0"

        rc, out, err = run("stats", "st", "--dir", where, "--json")
        assert (rc, err) == (0, "")
        s = json.loads(out)
        assert s["name"] == "st"
        assert s["path"] == d.path
        assert s["size"] == 4 << 20
        assert (s["hits"], s["misses"], s["entries"]) == (3, 1, 1)
        assert (s["creator"], s["creator_pid"]) == ("live", os.getpid())
        assert s["evict"] is False
    with shmdict.open("sh", shmdict.MIN_SIZE, dir=where) as d:
        rc, out, _ = run("stats", "sh", "--dir", where, "--json")
        assert (json.loads(out)["creator"], json.loads(out)["creator_pid"]) == (
            "shared",
            0,
        )
    assert run_proc("stats", "sh", "--dir", where, "--json").returncode == 0


def test_verify(where: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with shmdict.new("v", shmdict.MIN_SIZE, dir=where) as d:
        d["k"] = 1
        assert run("verify", "v", "--dir", where) == (0, "ok\n", "")
        r = run_proc("verify", "v", "--dir", where)
        assert (r.returncode, r.stdout, r.stderr) == (0, "ok\n", "")
        monkeypatch.setattr(
            shmdict.SharedDict, "verify", lambda self: ["bucket 3: loop"]
        )
        assert run("verify", "v", "--dir", where) == (
            1,
            "bucket 3: loop\n1 problem(s)\n",
            "",
        )


def test_rm_removes_dicts_and_nothing_else(where: str) -> None:
    d = shmdict.open("gone", shmdict.MIN_SIZE, dir=where)
    d.close()
    assert run("rm", "gone", "--dir", where) == (0, "", "")
    assert not os.path.exists(os.path.join(where, "gone"))
    rc, _, err = run("rm", "gone", "--dir", where)
    assert rc == 2
    one_error_line(err, "no dict 'gone'")
    # Anything that is not a dict stays: a plain file, a FIFO (no hang), a
    # symlink to a dict (neither the link nor its target goes).
    plain = os.path.join(where, "plain")
    with open(plain, "wb") as f:
        f.write(b"x" * 100)
    os.mkfifo(os.path.join(where, "fifo"))
    with shmdict.open("target", shmdict.MIN_SIZE, dir=where) as d:
        os.symlink(d.path, os.path.join(where, "link"))
    for name in ("plain", "fifo", "link"):
        rc, _, err = run("rm", name, "--dir", where)
        assert rc == 2, name
        one_error_line(err, "is not a dict")
        assert os.path.lexists(os.path.join(where, name))
    assert os.path.exists(os.path.join(where, "target"))
    r = run_proc("rm", "target", "--dir", where, script=True)
    assert (r.returncode, r.stderr) == (0, "")
    assert not os.path.exists(os.path.join(where, "target"))


@pytest.mark.parametrize(
    ("args", "status", "needles"),
    [
        (["bogus"], 2, ["invalid choice", "--help"]),
        ([], 2, ["required"]),
        (["stats"], 2, ["required: NAME"]),
        (["stats", "nothere"], 2, ["no dict 'nothere'"]),
        (["stats", "a/b"], 2, ["must not hold '/'"]),
        (["keys", "x", "-n", "many"], 2, ["argument -n", "not a count"]),
    ],
)
def test_errors_are_one_line_and_set_the_status(
    where: str, args: list[str], status: int, needles: list[str]
) -> None:
    full = [*args, "--dir", where] if args and args[0] != "bogus" else args
    rc, out, err = run(*full)
    assert (rc, out) == (status, "")
    one_error_line(err, *needles)
    r = run_proc(*full)
    assert (r.returncode, r.stdout) == (status, "")
    one_error_line(r.stderr, *needles)


COMMANDS = [
    *("ls", "stats", "keys", "get", "set", "delete", "incr", "ttl", "expire"),
    *("dump", "load", "top", "verify", "rm"),
]


def test_every_command_takes_dir() -> None:
    _, commands = cli._build_parser()
    assert sorted(commands) == sorted(COMMANDS)
    for name in COMMANDS:
        rc, out, err = run(name, "--help")
        assert (rc, err) == (0, "")
        assert "--dir DIR" in out, name


def test_dir_defaults_to_shmdict_dir(where: str) -> None:
    with shmdict.new("env", shmdict.MIN_SIZE, dir=where) as d:
        r = subprocess.run(
            [sys.executable, "-m", "shmdict", "set", "env", "k", "--int", "7"],
            env=dict(pkg_env(), SHMDICT_DIR=where),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert (r.returncode, r.stderr) == (0, "")
        assert d["k"] == 7
        r = subprocess.run(
            [sys.executable, "-m", "shmdict", "ls"],
            env=dict(pkg_env(), SHMDICT_DIR=where),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode == 0
        assert r.stdout.startswith(f"# {where}\t")
        assert list(listed(r.stdout))[1:] == ["env"]


def test_missing_directory_is_named(where: str) -> None:
    rc, _, err = run("stats", "x", "--dir", os.path.join(where, "nope"))
    assert rc == 2
    one_error_line(err, "no such directory")


def test_help_lists_commands_and_exit_codes() -> None:
    rc, out, err = run("--help")
    assert (rc, err) == (0, "")
    assert "Exit status" in out
    assert "130" in out
    for cmd in COMMANDS:
        assert f"\n    {cmd} " in out, cmd  # the list argparse makes
        assert f"\n  shmdict {cmd}" in out, cmd  # the docstring's list
    r = run_proc("--help", script=True)
    assert r.returncode == 0
    assert "Exit status" in r.stdout
    rc, out, _ = run("stats", "--help")
    assert rc == 0
    assert "--dir" in out
    assert "--json" in out


def test_a_closed_pipe_ends_quietly(where: str) -> None:
    with shmdict.new("many", 8 << 20, dir=where) as d:
        d.set_many({f"key-{i:06d}": i for i in range(40_000)})
        p = subprocess.Popen(
            [sys.executable, "-m", "shmdict", "keys", "many", "--dir", where],
            env=pkg_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )
        assert p.stdout is not None
        assert p.stderr is not None
        p.stdout.readline()
        p.stdout.close()
        err = p.stderr.read()
        assert p.wait(timeout=60) == 141
        assert err == b""


def same(a: object, b: object) -> bool:
    """Equal and of one type; NaN is NaN, -0.0 is not 0.0."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and isinstance(b, float):
        return struct.pack("<d", a) == struct.pack("<d", b) or (
            math.isnan(a) and math.isnan(b)
        )
    return a == b


TYPED = [
    # flags, VALUE, what is stored
    ([], "text", "text"),
    (["--str"], "42", "42"),
    ([], "", ""),
    (["--int"], "-9223372036854775808", -(2**63)),
    (["--int"], "9223372036854775807", 2**63 - 1),
    (["--float"], "0.1", 0.1),
    (["--float"], "nan", math.nan),
    (["--float"], "-inf", -math.inf),
    (["--float"], "-0.0", -0.0),
    (["--bool"], "true", True),
    (["--bool"], "0", False),
    (["--none"], None, None),
    (["--bytes-hex"], "00ff10", b"\x00\xff\x10"),
    (["--bytes-hex"], "", b""),
    (["--json"], "null", None),
    (["--json"], "false", False),
    (["--json"], "12", 12),
    (["--json"], "1e3", 1000.0),
    (["--json"], '"caf\\u00e9"', "café"),
]


@pytest.mark.parametrize(("flags", "text", "value"), TYPED)
def test_set_stores_the_type_its_flag_says(
    where: str, flags: list[str], text: str | None, value: object
) -> None:
    with shmdict.new("t", shmdict.MIN_SIZE, dir=where) as d:
        operand = [] if text is None else ["--", text]
        assert run("set", "t", "k", *flags, "--dir", where, *operand) == (0, "", "")
        assert same(d["k"], value), (d["k"], value)
        rc, out, err = run("get", "t", "k", "--dir", where)
        assert (rc, err) == (0, "")
        assert out == repr(value) + "\n"
        rc, out, err = run("get", "t", "k", "--dir", where, "--json")
        assert (rc, err) == (0, "")
        assert same(cli._decode_value(json.loads(out)), value)


def test_set_and_get_as_processes(where: str) -> None:
    with shmdict.new("p", shmdict.MIN_SIZE, dir=where) as d:
        for script in (False, True):
            r = run_proc("set", "p", "n", "--int", "-5", "--dir", where, script=script)
            assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
            assert same(d["n"], -5)
            r = run_proc("get", "p", "n", "--dir", where, script=script)
            assert (r.returncode, r.stdout, r.stderr) == (0, "-5\n", "")
            r = run_proc("get", "p", "nope", "--dir", where, script=script)
            assert (r.returncode, r.stdout) == (1, "")
            one_error_line(r.stderr, "no key 'nope'")
        r = run_proc("set", "p", "b", "--bytes-hex", "zz", "--dir", where)
        assert r.returncode == 2
        one_error_line(r.stderr, "--bytes-hex VALUE 'zz'")


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--int", "1.5"], ["--int VALUE '1.5'"]),
        (["--int", "9223372036854775808"], ["64 bits"]),
        (["--float", "x"], ["--float VALUE 'x'"]),
        (["--bool", "maybe"], ["--bool VALUE 'maybe'"]),
        (["--json", "[1, 2]"], ["JSON scalar"]),
        (["--json", "{"], ["--json VALUE"]),
        (["--none", "x"], ["--none takes no VALUE"]),
        ([], ["VALUE is missing"]),
        (["--int", "--float", "1"], ["not allowed with"]),
        (["v", "--ttl", "-1"], ["--ttl", "not a number of seconds"]),
        (["v", "--ttl", "nan"], ["--ttl"]),
        (["v", "w"], ["unrecognized arguments: w"]),
    ],
)
def test_set_refuses_what_it_cant_store(
    where: str, args: list[str], needles: list[str]
) -> None:
    with shmdict.new("r", shmdict.MIN_SIZE, dir=where) as d:
        rc, out, err = run("set", "r", "k", *args, "--dir", where)
        assert (rc, out) == (2, "")
        one_error_line(err, *needles)
        assert "k" not in d


def test_set_in_a_full_dict_says_so(where: str) -> None:
    with shmdict.new("full", shmdict.MIN_SIZE, dir=where) as d:
        rc, _, err = run("set", "full", "k", "x" * (1 << 20), "--dir", where)
        assert rc == 2
        one_error_line(err)
        assert "k" not in d


def test_get_of_a_list_or_missing_key(where: str) -> None:
    with shmdict.new("g", shmdict.MIN_SIZE, dir=where) as d:
        d.rpush("q", 1)
        d.rpush("q", b"two")
        assert run("get", "g", "q", "--dir", where) == (0, "[1, b'two']\n", "")
        rc, out, err = run("get", "g", "q", "--json", "--dir", where)
        assert (rc, err) == (0, "")
        assert json.loads(out) == {
            "type": "list",
            "items": [{"type": "int", "value": 1}, {"type": "bytes", "hex": "74776f"}],
        }
        assert d.llen("q") == 2  # read, not popped
        rc, out, err = run("get", "g", "nope", "--dir", where)
        assert (rc, out) == (1, "")
        one_error_line(err, "no key 'nope' in 'g'")


def test_delete(where: str) -> None:
    with shmdict.new("del", shmdict.MIN_SIZE, dir=where) as d:
        d["k"] = 1
        assert run("delete", "del", "k", "--dir", where) == (0, "", "")
        assert "k" not in d
        rc, out, err = run("delete", "del", "k", "--dir", where)
        assert (rc, out) == (1, "")
        one_error_line(err, "no key 'k'")
        d["k"] = 2
        r = run_proc("delete", "del", "k", "--dir", where)
        assert (r.returncode, r.stderr) == (0, "")
        assert "k" not in d


def test_ttl_and_expire(where: str) -> None:
    with shmdict.new("ttl", shmdict.MIN_SIZE, dir=where) as d:
        assert run("set", "ttl", "k", "v", "--ttl", "50", "--dir", where)[0] == 0
        rc, out, err = run("ttl", "ttl", "k", "--dir", where)
        assert (rc, err) == (0, "")
        assert 49 < float(out) <= 50
        assert out.strip() == f"{float(out):.3f}"
        assert run("expire", "ttl", "k", "0", "--dir", where) == (0, "", "")
        assert d.ttl("k") == 0
        assert run("ttl", "ttl", "k", "--dir", where) == (0, "0\n", "")
        assert run("expire", "ttl", "k", "2.5", "--dir", where) == (0, "", "")
        ttl = d.ttl("k")
        assert ttl is not None
        assert 2 < ttl <= 2.5
        r = run_proc("ttl", "ttl", "k", "--dir", where)
        assert r.returncode == 0
        assert 0 < float(r.stdout) <= 2.5
        r = run_proc("expire", "ttl", "k", "100", "--dir", where, script=True)
        assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
        ttl = d.ttl("k")
        assert ttl is not None
        assert 99 < ttl <= 100
        for cmd in (["ttl", "ttl", "nope"], ["expire", "ttl", "nope", "1"]):
            rc, out, err = run(*cmd, "--dir", where)
            assert (rc, out) == (1, "")
            one_error_line(err, "no key 'nope'")
        rc, _, err = run("expire", "ttl", "k", "-1", "--dir", where)
        assert rc == 2
        one_error_line(err, "not a number of seconds")


def test_incr(where: str) -> None:
    with shmdict.new("n", shmdict.MIN_SIZE, dir=where) as d:
        d["i"] = 40
        assert run("incr", "n", "i", "2", "--dir", where) == (0, "42\n", "")
        assert run("incr", "n", "i", "-50", "--dir", where) == (0, "-8\n", "")
        assert same(d["i"], -8)
        assert run("incr", "n", "i", "0.5", "--float", "--dir", where) == (
            0,
            "-7.5\n",
            "",
        )
        assert same(d["i"], -7.5)
        # missing: exit 1 with a hint, or started by --init
        rc, out, err = run("incr", "n", "c", "1", "--dir", where)
        assert (rc, out) == (1, "")
        one_error_line(err, "no key 'c'", "--init")
        assert run(
            "incr", "n", "c", "1", "--init", "10", "--init-ttl", "30", "--dir", where
        ) == (0, "11\n", "")
        ttl = d.ttl("c")
        assert ttl is not None
        assert 29 < ttl <= 30
        # --init-ttl only for a key it starts; --ttl replaces the TTL
        assert run(
            "incr", "n", "c", "1", "--init", "0", "--init-ttl", "5", "--dir", where
        ) == (0, "12\n", "")
        ttl = d.ttl("c")
        assert ttl is not None
        assert ttl > 5
        assert run("incr", "n", "c", "1", "--ttl", "0", "--dir", where) == (
            0,
            "13\n",
            "",
        )
        assert d.ttl("c") == 0
        d["big"] = 2**63 - 1
        d["s"] = "text"
        for args, needles in (
            (["i", "1.5"], ["must be an int", "--float"]),
            (["i", "x", "--float"], ["must be a number"]),
            (["i", "1", "--init", "y"], ["must be an int"]),
            (["big", "1"], ["64 bits"]),
            (["s", "1"], ["not an int or float"]),
        ):
            rc, out, err = run("incr", "n", *args, "--dir", where)
            assert (rc, out) == (2, ""), args
            one_error_line(err, *needles)
        assert same(d["big"], 2**63 - 1)
        r = run_proc("incr", "n", "i", "--float", "--dir", where, "--", "-0.5")
        assert (r.returncode, r.stdout, r.stderr) == (0, "-8.0\n", "")


def test_keys_with_a_glob_and_a_count(where: str) -> None:
    with shmdict.new("k", shmdict.MIN_SIZE, dir=where) as d:
        d.set_many({"user:1": 1, "user:2": 2, "User:3": 3, "job:1": 4})
        rc, out, err = run("keys", "k", "--dir", where)
        assert (rc, err) == (0, "")
        assert sorted(out.split()) == ["User:3", "job:1", "user:1", "user:2"]
        rc, out, _ = run("keys", "k", "user:*", "--dir", where)
        assert sorted(out.split()) == ["user:1", "user:2"]  # case counts
        rc, out, _ = run("keys", "k", "*:[13]", "-n", "2", "--dir", where)
        assert len(out.split()) == 2
        assert set(out.split()) <= {"User:3", "job:1", "user:1"}
        rc, out, _ = run("keys", "k", "-n", "1", "--dir", where)
        assert len(out.split()) == 1
        assert run("keys", "k", "none*", "--dir", where) == (0, "", "")
        r = run_proc("keys", "k", "job:?", "--dir", where)
        assert (r.returncode, r.stdout, r.stderr) == (0, "job:1\n", "")
        rc, _, err = run("keys", "k", "-n", "-1", "--dir", where)
        assert rc == 2
        one_error_line(err, "not a count")


EVERY_TYPE: dict[str, Any] = {
    "none": None,
    "true": True,
    "false": False,
    "zero": 0,
    "int-min": -(2**63),
    "int-max": 2**63 - 1,
    "float": 0.1,
    "float-big": 1.7976931348623157e308,
    "float-tiny": 5e-324,
    "nan": math.nan,
    "inf": math.inf,
    "-inf": -math.inf,
    "-0.0": -0.0,
    "str": "text",
    "empty-str": "",
    "unicode": "caf\u00e9 \u2603 \U0001f600 \x00 \n\"'\\",
    "bytes": bytes(range(256)),
    "empty-bytes": b"",
    "key with\nnewline and \u00e9": "k",
}


def fill_every_type(d: shmdict.SharedDict) -> None:
    d.set_many(EVERY_TYPE)
    d.set("short-lived", "soon", exptime=30)
    d.set("long-lived", 7, exptime=5000)


def check_every_type(d: shmdict.SharedDict, ttl_floor: float = 5.0) -> None:
    """d holds what fill_every_type stored, with the TTLs less at most
    ttl_floor seconds."""
    assert len(d) == len(EVERY_TYPE) + 2
    for k, v in EVERY_TYPE.items():
        assert same(d[k], v), (k, d[k], v)
        assert d.ttl(k) == 0, k
    for k, v, ttl in (("short-lived", "soon", 30), ("long-lived", 7, 5000)):
        assert same(d[k], v)
        left = d.ttl(k)
        assert left is not None
        assert ttl - ttl_floor < left <= ttl, (k, left)


@pytest.mark.parametrize("base64", [False, True])
def test_dump_and_load_keep_every_type_and_ttl(where: str, base64: bool) -> None:
    flags = ["--base64"] if base64 else []
    with shmdict.new("src", 1 << 20, dir=where) as d:
        fill_every_type(d)
        rc, dumped, err = run("dump", "src", *flags, "--dir", where)
    assert (rc, err) == (0, "")
    lines = dumped.splitlines()
    assert len(lines) == len(EVERY_TYPE) + 2
    assert [json.loads(line)["key"] for line in lines] == sorted(
        [*EVERY_TYPE, "short-lived", "long-lived"]
    )
    assert dumped.isascii()
    by_key = {json.loads(line)["key"]: json.loads(line) for line in lines}
    assert by_key["int-max"] == {"key": "int-max", "type": "int", "value": 2**63 - 1}
    assert by_key["nan"]["value"] == "nan"
    assert ("base64" if base64 else "hex") in by_key["bytes"]
    assert "ttl" not in by_key["str"]
    assert 25 < by_key["short-lived"]["ttl"] <= 30

    rc, out, err = run(
        "load", "copy", "--size", "1M", "--dir", where, stdin=dumped.encode()
    )
    assert (rc, out, err) == (0, "", "")
    with shmdict.get("copy", dir=where) as d:
        check_every_type(d)
        assert d.size == 1 << 20
        assert d.stats()["evict"] is False
    assert run("ls", "--dir", where)[1].count("\tshared\t") == 1  # made by open()


def test_dump_and_load_as_processes(where: str) -> None:
    with shmdict.new("src", 1 << 20, dir=where) as d:
        fill_every_type(d)
        r = run_proc("dump", "src", "--dir", where)
        assert (r.returncode, r.stderr) == (0, "")
        with shmdict.new("dst", 2 << 20, dir=where) as dst:
            dst["other"] = "stays"
            dst["str"] = "replaced"
            r2 = run_proc(
                "load", "dst", "--dir", where, stdin=r.stdout.encode(), script=True
            )
            assert (r2.returncode, r2.stdout, r2.stderr) == (0, "", "")
            assert dst.pop("other") == "stays"
            check_every_type(dst)


def test_load_refuses_a_bad_dump_and_loads_nothing(where: str) -> None:
    good = '{"key": "a", "type": "int", "value": 1}\n'
    with shmdict.new("l", shmdict.MIN_SIZE, dir=where) as d:
        for line, needles in (
            ("{", ["line 2", "Expecting"]),
            ("[1]", ["line 2", "not a JSON object"]),
            ('{"type": "int", "value": 1}', ['no "key"']),
            ('{"key": "", "type": "int", "value": 1}', ['no "key"']),
            ('{"key": "k", "type": "list", "items": []}', ['"items"']),
            (
                '{"key": "k", "type": "list", "items": [{"type": "list"}]}',
                ["not lists"],
            ),
            ('{"key": "k", "type": "int", "value": true}', ["type int can't be true"]),
            ('{"key": "k", "type": "int", "value": 1.5}', ["type int can't be 1.5"]),
            ('{"key": "k", "type": "int", "value": 9223372036854775808}', ["64 bits"]),
            ('{"key": "k", "type": "float", "value": "NaN!"}', ["type float can't"]),
            ('{"key": "k", "type": "bool", "value": 1}', ["type bool can't be 1"]),
            ('{"key": "k", "type": "none", "value": 0}', ["type none can't be 0"]),
            ('{"key": "k", "type": "bytes", "hex": "zz"}', ["bad bytes data"]),
            ('{"key": "k", "type": "bytes", "base64": "!"}', ["bad bytes data"]),
            ('{"key": "k", "type": "bytes"}', ["needs one of"]),
            ('{"key": "k", "type": "pickled", "hex": "zz"}', ["bad pickled data"]),
            ('{"key": "k", "type": "str", "value": "\\ud800"}', ["lone surrogate"]),
            ('{"key": "\\udfff", "type": "str", "value": ""}', ["a key with a lone"]),
            ('{"key": "k", "type": "str", "value": "", "ttl": -1}', ['"ttl"']),
            ('{"key": "k", "type": "str", "value": "", "ttl": "1"}', ['"ttl"']),
            ('{"key": "k", "type": "str", "value": "", "ttl": false}', ['"ttl"']),
        ):
            rc, out, err = run(
                "load", "l", "--dir", where, stdin=(good + line).encode()
            )
            assert (rc, out) == (2, ""), line
            one_error_line(err, "nothing loaded", *needles)
            assert len(d) == 0, line
        rc, _, err = run("load", "l", "--dir", where, stdin=b'"\xff"\n')
        assert rc == 2
        one_error_line(err, "line 1")
        # blank lines are nothing; an empty dump loads nothing
        assert run("load", "l", "--dir", where, stdin=b"\n \n") == (0, "", "")
        assert run("load", "l", "--dir", where, stdin=good.encode()) == (0, "", "")
        assert d["a"] == 1


def test_load_needs_a_dict_or_a_size(where: str) -> None:
    rc, _, err = run("load", "nope", "--dir", where, stdin=b"")
    assert rc == 2
    one_error_line(err, "no dict 'nope'", "--size")
    assert not os.path.exists(os.path.join(where, "nope"))
    for size in ("lots", "-1", "1.5M"):
        rc, _, err = run("load", "nope", "--size", size, "--dir", where, stdin=b"")
        assert rc == 2
        one_error_line(err, "is not a size")
    rc, _, err = run("load", "nope", "--size", "1k", "--dir", where, stdin=b"")
    assert rc == 2
    one_error_line(err, "size must be between")
    rc, _, _ = run(
        "load", "made", "--size", "128KiB", "--evict", "--dir", where, stdin=b""
    )
    assert rc == 0
    with shmdict.get("made", dir=where) as d:
        assert d.size == 128 << 10
        assert d.stats()["evict"] is True


def test_load_into_a_full_dict_says_how_far_it_got(where: str) -> None:
    lines = "".join(
        json.dumps({"key": f"k{i}", "type": "str", "value": "x" * 4000}) + "\n"
        for i in range(100)
    )
    with shmdict.new("small", shmdict.MIN_SIZE, dir=where) as d:
        rc, _, err = run("load", "small", "--dir", where, stdin=lines.encode())
        assert rc == 2
        one_error_line(err, f"{len(d)} of 100 keys loaded")
        assert 0 < len(d) < 100


def test_dump_and_load_keep_lists(where: str) -> None:
    with shmdict.new("q", shmdict.MIN_SIZE, dir=where) as d:
        d["a"] = 1
        items: list[shmdict.Value] = [
            0,
            -1.5,
            "x",
            b"\x00",
            None,
            True,
            shmdict.Pickled(b"p"),
        ]
        for item in items:
            d.rpush("queue", item)
        d.expire("queue", 100)
        rc, out, err = run("dump", "q", "--dir", where)
        assert (rc, err) == (0, "")
        recs = {json.loads(line)["key"]: json.loads(line) for line in out.splitlines()}
        assert recs["queue"]["type"] == "list"
        assert len(recs["queue"]["items"]) == len(items)
        assert 99 < recs["queue"]["ttl"] <= 100
        assert d.llen("queue") == len(items)  # dump pops nothing
        d.flush_all()
        d.rpush("queue", "old item, replaced by the load")
        assert run("load", "q", "--dir", where, stdin=out.encode()) == (0, "", "")
        got = d.lrange("queue")
        assert got == items
        assert [type(x) for x in got] == [type(x) for x in items]
        ttl = d.ttl("queue")
        assert ttl is not None
        assert 98 < ttl <= 100
        assert d["a"] == 1
        assert d.verify() == []


def test_pickled_values_keep_their_type(where: str) -> None:
    with shmdict.new("pk", shmdict.MIN_SIZE, dir=where) as d:
        d["pickle"] = shmdict.Pickled(b"\x80\x04K\x01.")
        d["raw"] = b"\x80"
        rc, out, err = run("dump", "pk", "--dir", where)
        assert (rc, err) == (0, "")
        recs = [json.loads(line) for line in out.splitlines()]
        assert recs == [
            {"key": "pickle", "type": "pickled", "hex": "80044b012e"},
            {"key": "raw", "type": "bytes", "hex": "80"},
        ]
        d.flush_all()
        assert run("load", "pk", "--dir", where, stdin=out.encode()) == (0, "", "")
        assert type(d["pickle"]) is shmdict.Pickled
        assert d["pickle"] == b"\x80\x04K\x01."
        assert type(d["raw"]) is bytes


class TtyStringIO(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_shows_only_on_a_terminal(where: str) -> None:
    with shmdict.new("pr", 1 << 20, dir=where) as d:
        d.set_many({f"k{i}": i for i in range(50)})
        rc, dumped, err = run("dump", "pr", "--dir", where)
        assert (rc, err) == (0, "")
        out, tty = io.StringIO(), TtyStringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(tty):
            assert cli.main(["dump", "pr", "--dir", where]) == 0
        assert out.getvalue() == dumped
        shown = tty.getvalue()
        assert "dump [" in shown
        assert "100% 50/50" in shown
        assert shown.endswith("\r")  # wiped at the end
        saved = sys.stdin
        sys.stdin = io.TextIOWrapper(io.BytesIO(dumped.encode()))
        tty = TtyStringIO()
        try:
            with contextlib.redirect_stderr(tty):
                assert cli.main(["load", "pr", "--dir", where]) == 0
        finally:
            sys.stdin = saved
        assert "load [" in tty.getvalue()
        assert "100% 50/50" in tty.getvalue()


def test_top_prints_a_line_per_refresh_without_a_terminal(where: str) -> None:
    with shmdict.new("top", 1 << 20, dir=where) as d:
        d["k"] = 1
        stop = threading.Event()

        def work() -> None:
            i = 0
            while not stop.is_set():
                d[f"k{i % 50}"] = i
                d.get("k")
                d.get("missing")
                i += 1
                time.sleep(0.0005)

        t = threading.Thread(target=work)
        t.start()
        try:
            rc, out, err = run(
                "top", "top", "-n", "2", "--interval", "0.2", "--dir", where
            )
        finally:
            stop.set()
            t.join()
        assert (rc, err) == (0, "")
        head, *rows = out.splitlines()
        assert head.split() == [
            "time",
            "hits/s",
            "misses/s",
            "sets/s",
            "hit%",
            "evict/s",
            "waits/s",
            "entries",
            "used",
            "free",
        ]
        assert len(rows) == 2
        for row in rows:
            f = row.split()
            assert len(f) == 12  # used and free are "N unit"
            hits, misses, sets = float(f[1]), float(f[2]), float(f[3])
            assert hits > 0
            assert misses > 0
            assert sets > 0
            assert f[4].endswith("%")
            assert 40 <= float(f[4][:-1]) <= 60  # one hit, one miss a round
            assert 1 <= int(f[7]) <= 51  # entries
        rc, out, _ = run("top", "top", "--once", "--interval", "0.05", "--dir", where)
        assert rc == 0
        assert len(out.splitlines()) == 2
        assert out.splitlines()[1].split()[1:4] == ["0.0", "0.0", "0.0"]


def test_top_as_a_process(where: str) -> None:
    with shmdict.new("top", 1 << 20, dir=where):
        r = run_proc("top", "top", "-n", "2", "--interval", "0.1", "--dir", where)
        assert (r.returncode, r.stderr) == (0, "")
        assert len(r.stdout.splitlines()) == 3
        # Ctrl-C is the way out: status 0, nothing on stderr
        p = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "shmdict",
                "top",
                "top",
                "--interval",
                "0.1",
                "--dir",
                where,
            ],
            env=pkg_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert p.stdout is not None
        assert p.stdout.readline().startswith("time")
        assert p.stdout.readline()  # a refresh: it is in its loop
        p.send_signal(signal.SIGINT)
        _out, err = p.communicate(timeout=30)
        assert (p.returncode, err) == (0, "")
    for bad in ("0", "-1", "x"):
        rc, _, err = run("top", "top", "--interval", bad, "--dir", where)
        assert rc == 2
        one_error_line(err, "--interval")


def run_on_a_terminal(
    args: list[str], keys: bytes = b"", after: bytes = b"", timeout: float = 30
) -> tuple[int, bytes]:
    """The command as a process whose stdin, stdout and stderr are a
    pseudo-terminal of 30x100 (TERM=xterm): its exit status and all it
    wrote. `keys` are typed once `after` has shown up."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    p = subprocess.Popen(
        [sys.executable, "-m", "shmdict", *args],
        env=dict(pkg_env(), TERM="xterm"),
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
    )
    os.close(slave)
    shown = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: every writer has gone
                    break
                if not chunk:
                    break
                shown += chunk
            if keys and after in shown:
                os.write(master, keys)
                keys = b""
        rc = p.wait(timeout=max(deadline - time.monotonic(), 1))
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        os.close(master)
    return rc, shown


def test_top_on_a_terminal(where: str) -> None:
    with shmdict.new("tty", 1 << 20, dir=where) as d:
        d["k"] = 1
        rc, shown = run_on_a_terminal(
            ["top", "tty", "-n", "2", "--interval", "0.1", "--dir", where]
        )
        assert rc == 0, shown
        assert b"Traceback" not in shown
        if b"q quits" not in shown:
            pytest.skip("no terminfo for TERM=xterm: top fell back to lines")
        for text in (b"shmdict top tty", b"per second", b"lock waits", b"memory"):
            assert text in shown, text
        # q quits a view that would otherwise run on
        start = time.monotonic()
        rc, shown = run_on_a_terminal(
            ["top", "tty", "--interval", "0.1", "--dir", where],
            keys=b"q",
            after=b"q quits",
        )
        assert rc == 0, shown
        assert time.monotonic() - start < 20
        # --lines: a line per refresh on a terminal too
        rc, shown = run_on_a_terminal(
            ["top", "tty", "--once", "--lines", "--interval", "0.1", "--dir", where]
        )
        assert rc == 0
        assert shown.replace(b"\r\n", b"\n").count(b"\n") == 2
        assert shown.startswith(b"time")

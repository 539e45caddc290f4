"""The libFuzzer target of the C core (``csrc/fuzz``), run from pytest:
build it, replay the regression inputs and the seed corpus, and fuzz for
SHMDICT_FUZZ_SECONDS (default 20; 0: replay only).
"""

from __future__ import annotations

import os
import subprocess

import pytest

from .figures import env_int
from .fileformat import CSRC

FUZZ_DIR = os.path.join(CSRC, "fuzz")


@pytest.mark.no_asan
def test_libfuzzer_target() -> None:
    """Build csrc/fuzz (clang, -fsanitize=fuzzer,address,undefined), replay
    the regression inputs and the seed corpus, and fuzz for
    SHMDICT_FUZZ_SECONDS. The script installs clang with apt-get when it is
    missing and it can; it exits 77 only if clang is missing and cannot be
    installed."""
    secs = env_int("SHMDICT_FUZZ_SECONDS", 20)
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS")
    }
    r = subprocess.run(
        [os.path.join(FUZZ_DIR, "run.sh"), str(secs)],
        capture_output=True,
        text=True,
        env=env,
        timeout=secs + 600,
    )
    out = r.stdout + r.stderr
    if r.returncode == 77:
        pytest.skip(
            "clang is not available and could not be installed: " + out.strip()[-300:]
        )
    assert r.returncode == 0, out[-6000:]
    for line in out.splitlines():
        if line.startswith("FIGURES "):
            print(line)
            if os.environ.get("SHMDICT_FIGURES"):
                with open(os.environ["SHMDICT_FIGURES"], "a") as f:
                    f.write(line[len("FIGURES ") :] + "\n")

"""Counts and figures shared by the reliability tests (RELIABILITY.md)."""

from __future__ import annotations

import json
import os
import random
from typing import Any


def env_int(name: str, default: int) -> int:
    """A count from the environment, else the CI default. The suite's
    second pass (SHMDICT_STRIPES set, dicts split into stripes) runs the
    same counts: it is a real second pass, not a sample."""
    v = os.environ.get(name)
    if v:
        return int(v)
    return default


FIXED_SEED = 20261203


def env_seed(name: str, bits: int = 31) -> int:
    """The first seed of a randomized test: $name if set; else a random one
    when SHMDICT_RANDOM_SEEDS=1; else FIXED_SEED, so that CI runs the same
    cases every time. The tests print the seed, and their failure
    messages name it, so a failing run can be repeated."""
    v = os.environ.get(name)
    if v:
        return int(v)
    if os.environ.get("SHMDICT_RANDOM_SEEDS") == "1":
        return random.randrange(2**bits)
    return FIXED_SEED


def record_figures(test: str, **figures: Any) -> None:
    """Print figures for RELIABILITY.md; append them to $SHMDICT_FIGURES."""
    line = json.dumps({"test": test, **figures}, sort_keys=True)
    print(f"\nFIGURES {line}")
    path = os.environ.get("SHMDICT_FIGURES")
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")

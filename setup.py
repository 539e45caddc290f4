"""Build the C extension shmdict._core from csrc/ and src/shmdict/_core/.

Environment switches (development and CI; the sdist default is plain):
  SHMDICT_DEV=1       -Wall -Wextra -Werror and friends, asserts on, and
                      the crash points the crash tests need.
  SHMDICT_SANITIZE=1  AddressSanitizer + UndefinedBehaviorSanitizer.
"""

from __future__ import annotations

import os
from glob import glob

from setuptools import Extension, setup


def core_sources() -> list[str]:
    """The C core's sources: the list in csrc/sources.mk, which the
    Makefiles include too."""
    with open("csrc/sources.mk") as f:
        text = f.read().replace("\\\n", " ")
    names = text.split("CORE_SRCS =", 1)[1].split("\n", 1)[0].split()
    return [f"csrc/{n}" for n in names]


CORE_SOURCES = core_sources()
# The binding: one file per job (src/shmdict/_core/binding.h says which).
BINDING_SOURCES = sorted(glob("src/shmdict/_core/*.c"))
cflags = ["-std=c11", "-O2", "-fno-strict-aliasing", "-fvisibility=hidden", "-DNDEBUG"]
ldflags: list[str] = []

if os.environ.get("SHMDICT_DEV") == "1":
    # Python's own CFLAGS carry -DNDEBUG; -UNDEBUG, which comes after
    # them, keeps assert() on in development and CI builds.
    cflags = [f for f in cflags if f != "-DNDEBUG"]
    cflags += [
        "-UNDEBUG",
        "-DSD_CRASH_POINTS",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-Wshadow",
        "-Wstrict-prototypes",
        "-Wmissing-prototypes",
    ]
if os.environ.get("SHMDICT_SANITIZE") == "1":
    san = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
    cflags = [f for f in cflags if f != "-O2"] + ["-O1", "-g", *san]
    ldflags += san

setup(
    ext_modules=[
        Extension(
            "shmdict._core",
            sources=[*BINDING_SOURCES, *CORE_SOURCES],
            include_dirs=["csrc"],
            extra_compile_args=cflags,
            extra_link_args=ldflags,
            depends=sorted(glob("csrc/*.h") + glob("src/shmdict/_core/*.h")),
        )
    ]
)

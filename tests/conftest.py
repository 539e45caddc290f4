"""Fixtures and hooks only (helpers live in ``helpers.py``): a dict name
unique to each test, a fresh dict ``d``, and /dev/shm hygiene.

Every name a test uses starts with ``helpers.PREFIX`` (which holds the pid
of the pytest process), so teardown can remove whatever a test left behind,
and the session fails if anything is still there at the end.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest
from hypothesis import HealthCheck, settings

import shmdict

# The backends the integration and recipe tests run over (shm, redis).
from .backends import backend, store  # noqa: F401  (fixtures)
from .helpers import (
    PREFIX,
    MiB,
    need_crash_points,
    new_name,
    remove_all,
    shm_files,
    tmpfs,
)

# Modest defaults: the whole suite has to run in a few minutes on 2 cores.
# No example database, so running the suite writes nothing outside tests/.
settings.register_profile(
    "default",
    deadline=None,
    max_examples=60,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "thorough",
    parent=settings.get_profile("default"),
    max_examples=1000,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(scope="session")
def big_dir() -> Iterator[str]:
    """A directory on a tmpfs big enough for a MAX_SIZE dict: a tmpfs size
    is a limit, not memory, and /dev/shm may be smaller than 64 GiB, which
    new() refuses outright."""
    with tmpfs(f"{(shmdict.MAX_SIZE >> 30) + 8}g") as where:
        yield where


@pytest.fixture
def name_factory() -> Iterator[Callable[[], str]]:
    """Makes any number of fresh names; removes their files at teardown."""
    base = new_name()
    count = 0

    def make() -> str:
        nonlocal count
        count += 1
        return f"{base}-{count}"

    yield make
    remove_all(base)


@pytest.fixture
def name() -> Iterator[str]:
    """A dict name unique to this test; its files are removed at teardown."""
    n = new_name()
    yield n
    remove_all(n)


@pytest.fixture
def d(
    name: str,
    conformance_backend: str,  # noqa: F811  (the fixture imported below)
    request: pytest.FixtureRequest,
) -> Iterator[shmdict.SharedDict]:
    """A fresh, empty 1 MiB dict owned by this process; in the conformance
    modules, a RedisDict too (redis_fixtures.py: the backends)."""
    if conformance_backend != "shm":
        yield from redis_d(request, conformance_backend)
        return
    sd = shmdict.new(name, MiB)
    try:
        yield sd
    finally:
        sd.close()


@pytest.fixture
def small(name: str) -> Iterator[shmdict.SharedDict]:
    """A fresh, empty 64 KiB (MIN_SIZE) dict that does not evict."""
    sd = shmdict.new(name, shmdict.MIN_SIZE)
    try:
        yield sd
    finally:
        sd.close()


@pytest.fixture(autouse=True)
def _crash_points(request: pytest.FixtureRequest) -> None:
    """A test marked crash_points needs the crash test hooks."""
    if request.node.get_closest_marker("crash_points") is not None:
        need_crash_points()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if any test left a file in /dev/shm."""
    strays = shm_files(PREFIX)
    if not strays:
        return
    remove_all(PREFIX)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    msg = f"shmdict tests left {len(strays)} file(s) in /dev/shm: {strays[:10]}"
    if reporter is not None:
        reporter.write_line("\n" + msg, red=True)
    else:  # pragma: no cover - only without the terminal plugin
        print(msg)
    if exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


# ---------------------------------------------------------------- Redis
# Session-wide Redis servers (started lazily, stopped by pid), and the
# backends the conformance modules run over: tests/redis_fixtures.py.
from .redis_fixtures import (  # noqa: E402, F401  (fixtures and hooks)
    conformance_backend,
    dict_backend,
    pytest_collection_modifyitems,
    pytest_generate_tests,
    redis_cluster,
    redis_d,
    redis_server,
)

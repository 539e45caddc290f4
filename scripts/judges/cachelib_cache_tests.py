"""cachelib's own generic cache tests, run against shmdict.contrib.cachelib.

scripts/judge_cachelib.sh copies this file into the tests/ directory of
cachelib's source distribution, as test_shmdict_cache.py, and runs it with
pytest under cachelib's own pytest configuration (warnings are errors).
It is wired up as cachelib's test_redis_cache.py wires RedisCache: a
cache_factory fixture over the backend and a subclass with a custom
serializer, each with and without a key prefix (conftest's key_prefix
fixture), and a fresh, empty dict for every test (Redis's tests flush the
database). Each runs on a shared dict (ids ``shm-...``) and, when
$SHMDICT_JUDGE_REDIS_URL names a server (the judge starts one for the
run), on Redis through ``url=`` (ids ``redis-...``). Every mixin that
applies to a shared store is included; nothing is skipped or overridden.
"""

import contextlib
import os

import pytest
from clear import ClearTests
from common import CommonTests
from delete_many_with_prefix import DeleteManyWithPrefixTests
from has import HasTests
from serializer import SerializerTests

import shmdict
from shmdict.contrib.cachelib import SharedMemoryCache, SharedMemorySerializer

NAME = f"shmdict-cachelib-judge-{os.getpid()}"
REDIS_URL = os.environ.get("SHMDICT_JUDGE_REDIS_URL", "")


class SillySerializer(SharedMemorySerializer):
    """A pointless serializer only for testing (as in cachelib's tests)"""

    def dumps(self, value):
        return repr(value).encode()

    def loads(self, bvalue):
        return eval(bvalue.decode())


class CustomCache(SharedMemoryCache):
    """The backend with a non-default serializer"""

    serializer = SillySerializer()


SOURCES = {"shm": {"name": NAME}}
if REDIS_URL:
    SOURCES["redis"] = {"url": REDIS_URL, "namespace": NAME}
FACTORIES = [
    pytest.param((cls, source), id=f"{backend}-{cls.__name__}")
    for backend, source in SOURCES.items()
    for cls in (SharedMemoryCache, CustomCache)
]


@pytest.fixture(autouse=True, params=FACTORIES)
def cache_factory(request, key_prefix):
    cls, source = request.param

    def _factory(self, *args, **kwargs):
        kwargs.setdefault("key_prefix", key_prefix)
        cache = cls(*args, **source, **kwargs)
        cache._dict.flush_all()
        return cache

    request.cls.cache_factory = _factory


@pytest.fixture(autouse=True, scope="module")
def _remove_dict():
    yield
    with contextlib.suppress(FileNotFoundError):
        shmdict.remove(NAME)
    if REDIS_URL:
        with shmdict.connect(REDIS_URL, namespace=NAME) as d:
            d.flush_all()


class TestSharedMemoryCache(
    CommonTests, ClearTests, HasTests, DeleteManyWithPrefixTests, SerializerTests
):
    pass

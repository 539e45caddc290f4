"""cachelib's own generic cache tests, run against shmdict.contrib.cachelib.

scripts/judge_cachelib.sh copies this file into the tests/ directory of
cachelib's source distribution, as test_shmdict_cache.py, and runs it with
pytest under cachelib's own pytest configuration (warnings are errors).
It is wired up as cachelib's test_redis_cache.py wires RedisCache: a
cache_factory fixture over the backend and a subclass with a custom
serializer, each with and without a key prefix (conftest's key_prefix
fixture), and a fresh, empty dict for every test (Redis's tests flush the
database). Every mixin that applies to a shared store is included;
nothing is skipped or overridden.
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


class SillySerializer(SharedMemorySerializer):
    """A pointless serializer only for testing (as in cachelib's tests)"""

    def dumps(self, value):
        return repr(value).encode()

    def loads(self, bvalue):
        return eval(bvalue.decode())


class CustomCache(SharedMemoryCache):
    """The backend with a non-default serializer"""

    serializer = SillySerializer()


@pytest.fixture(autouse=True, params=[SharedMemoryCache, CustomCache])
def cache_factory(request, key_prefix):
    def _factory(self, *args, **kwargs):
        kwargs.setdefault("key_prefix", key_prefix)
        cache = request.param(NAME, *args, **kwargs)
        cache._dict.flush_all()
        return cache

    request.cls.cache_factory = _factory


@pytest.fixture(autouse=True, scope="module")
def _remove_dict():
    yield
    with contextlib.suppress(FileNotFoundError):
        shmdict.remove(NAME)


class TestSharedMemoryCache(
    CommonTests, ClearTests, HasTests, DeleteManyWithPrefixTests, SerializerTests
):
    pass

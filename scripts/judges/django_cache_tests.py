"""Django's own cache tests, run against shmdict.contrib.django.

scripts/judge_django.sh copies this file into the tests/cache/ directory of
Django's source distribution, as tests_shmdict.py, and runs it with
Django's test runner, once per class. The classes are declared the way
Django declares the test classes of its own backends (LocMemCacheTests,
RedisCacheTests): BaseCacheTests plus TestCase, under override_settings
with the aliases that caches_setting_for_tests() makes (default, prefix,
v2, custom_key, custom_key2, cull, zero_cull). They all name one dict, as
Redis's tests share one server, so the prefix, version and key-function
tests see each other's keys. Nothing is skipped or overridden.

SharedMemoryCacheTests: LOCATION is a shared dict's name.
SharedMemoryCacheOnRedisTests: LOCATION is the Redis URL in
$SHMDICT_JUDGE_REDIS_URL (a server the judge started for the run), with a
namespace of its own; defined only when that variable is set.
"""

import contextlib
import os

from django.test import TestCase, override_settings

import shmdict
from cache.tests import BaseCacheTests, caches_setting_for_tests

NAME = f"shmdict-django-judge-{os.getpid()}"
REDIS_URL = os.environ.get("SHMDICT_JUDGE_REDIS_URL", "")


@override_settings(
    CACHES=caches_setting_for_tests(
        BACKEND="shmdict.contrib.django.SharedMemoryCache",
        LOCATION=NAME,
    )
)
class SharedMemoryCacheTests(BaseCacheTests, TestCase):
    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        with contextlib.suppress(FileNotFoundError):
            shmdict.remove(NAME)


if REDIS_URL:
    JOIN = "&" if "?" in REDIS_URL else "?"

    @override_settings(
        CACHES=caches_setting_for_tests(
            BACKEND="shmdict.contrib.django.SharedMemoryCache",
            LOCATION=f"{REDIS_URL}{JOIN}namespace={NAME}",
        )
    )
    class SharedMemoryCacheOnRedisTests(BaseCacheTests, TestCase):
        pass

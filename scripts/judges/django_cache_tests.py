"""Django's own cache tests, run against shmdict.contrib.django.

scripts/judge_django.sh copies this file into the tests/cache/ directory of
Django's source distribution, as tests_shmdict.py, and runs it with
Django's test runner. The class is declared the way Django declares the
test classes of its own backends (LocMemCacheTests, RedisCacheTests):
BaseCacheTests plus TestCase, under override_settings with the aliases
that caches_setting_for_tests() makes (default, prefix, v2, custom_key,
custom_key2, cull, zero_cull). They all name one dict, as Redis's tests
share one server, so the prefix, version and key-function tests see each
other's keys. Nothing is skipped or overridden.
"""

import contextlib
import os

from django.test import TestCase, override_settings

import shmdict
from cache.tests import BaseCacheTests, caches_setting_for_tests

NAME = f"shmdict-django-judge-{os.getpid()}"


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

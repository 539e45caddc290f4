"""Cache backends for web frameworks, built on shmdict.

- :mod:`shmdict.contrib.django`: ``SharedMemoryCache``, a Django cache
  backend (``pip install shmdict[django]``).
- :mod:`shmdict.contrib.cachelib`: ``SharedMemoryCache``, a cachelib cache,
  which Flask-Caching takes through ``CACHE_TYPE`` (``pip install
  shmdict[cachelib]``).

Each module imports its framework when it is imported; ``import shmdict``
imports neither. Both store the six native types (None, bool, int of 64
bits, float, str, bytes) as themselves, so any process reading the dict
with plain shmdict sees them, and everything else as
:class:`shmdict.Pickled`.
"""

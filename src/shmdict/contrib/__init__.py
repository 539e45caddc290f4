"""Integrations of shmdict with the libraries and frameworks users have.

- :mod:`shmdict.contrib.django`: ``SharedMemoryCache``, a Django cache
  backend (``pip install shmdict[django]``).
- :mod:`shmdict.contrib.cachelib`: ``SharedMemoryCache``, a cachelib cache,
  which Flask-Caching takes through ``CACHE_TYPE`` (``pip install
  shmdict[cachelib]``).
- :mod:`shmdict.contrib.limits`: a storage for the ``limits`` library
  (flask-limiter, slowapi), registered for ``shmdict://NAME`` when imported
  (``pip install shmdict[limits]``).

Each runs on a shared dict or, given a URL (``redis://``, ``unix://``, ...,
which :func:`shmdict.connect` takes), on a :class:`shmdict.redis.RedisDict`
shared by several hosts: Django's ``LOCATION``, cachelib's ``url=``, the
``shmdict+redis://`` schemes of the limits storage. What they need of a
dict is :class:`shmdict.DictLike`.

Each module imports its library when it is imported; ``import shmdict`` (or
this package) imports none of them. The caches store the six native types
(None, bool, int of 64 bits, float, str, bytes) as themselves, so any
process reading the dict with plain shmdict sees them, and everything else
as :class:`shmdict.Pickled`.
"""

"""The shmdict test suite (a package, so test modules import their helpers
relatively: ``from .helpers import ...``, ``from .strategies import ...``)."""

"""The shmdict test suite (a package, so test modules import their helpers
relatively: ``from .conftest import ...``, ``from .strategies import ...``)."""

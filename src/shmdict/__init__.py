"""shmdict: a dictionary in shared memory for the processes of one host.

>>> import shmdict
>>> d = shmdict.new("doctest-demo", 1 << 20)
>>> d.set("hits", 1)
True
>>> d.incr("hits", 41)
42
>>> d.close()
"""

from ._api import DictLike
from ._connect import connect
from ._core import FORMAT_VERSION, MAX_KEY_BYTES, MAX_SIZE, MIN_SIZE
from ._dict import (
    SharedDict,
    Value,
    default_dir,
    exists,
    get,
    new,
    open,
    path_for,
    remove,
)
from ._pickled import Pickled
from .errors import (
    BackendUnavailable,
    CorruptError,
    Error,
    LockTimeout,
    NoMemoryError,
)

__all__ = [
    "FORMAT_VERSION",
    "MAX_KEY_BYTES",
    "MAX_SIZE",
    "MIN_SIZE",
    "BackendUnavailable",
    "CorruptError",
    "DictLike",
    "Error",
    "LockTimeout",
    "NoMemoryError",
    "Pickled",
    "SharedDict",
    "Value",
    "connect",
    "default_dir",
    "exists",
    "get",
    "new",
    "open",
    "path_for",
    "remove",
]

__version__ = "0.1.0"

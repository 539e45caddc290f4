"""A Flask app whose gunicorn workers share one dict: a slow value computed
once for all of them, a rate limit that is one limit, and an exact counter.

From the repository's root, with shmdict and the frameworks installed::

    gunicorn -w 4 -b 127.0.0.1:8000 examples.flask_app:app

No ``--preload``: every worker imports this module and opens the dict
itself with :func:`shmdict.open`, which attaches to it or creates it; no
process owns it, so workers can come and go. ``SHMDICT_EXAMPLE_DICT``
names the dict (default ``shmdict-example-flask``); it outlives the
server until ``python -m shmdict rm NAME``.

Every response carries ``X-Worker-Pid``, the worker that served it.

``/report``
    a value that takes 0.2 s to compute, computed by one worker per 5
    minutes however many requests miss at once (:func:`shmdict.recipes.cached`:
    the others wait for it); ``/computed`` says how many times it was.
``/hit``, ``/hits``
    count a hit and return the new count (``d.incr``); read the count.
``/limited``
    at most ``RATE`` per client address for all the workers together:
    flask-limiter keeps its counters in the dict (``shmdict://``).
``/page``
    a view cached with Flask-Caching on :mod:`shmdict.contrib.cachelib`,
    shared by the workers (its decorator has no stampede protection: a
    burst of misses renders the page once per request that missed).
"""

from __future__ import annotations

import os
import time
from typing import Any

from flask import Flask, Response
from flask_caching import Cache
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

import shmdict
import shmdict.contrib.limits  # registers shmdict:// with limits
from shmdict.recipes import cached

NAME = os.environ.get("SHMDICT_EXAMPLE_DICT", "shmdict-example-flask")
SIZE = 16 << 20
RATE = "50 per hour"

# One dict for everything; every worker opens it at import. The limiter and
# the cache open it too, and must ask for the same size and evict.
d = shmdict.open(NAME, SIZE)

app = Flask(__name__)
app.config.update(
    CACHE_TYPE="shmdict.contrib.cachelib.SharedMemoryCache",
    CACHE_DEFAULT_TIMEOUT=60,
    CACHE_OPTIONS={"name": NAME, "size": SIZE, "evict": False, "key_prefix": "view:"},
)
cache = Cache(app)
limiter = Limiter(
    get_remote_address,
    app=app,
    storage_uri=f"shmdict://{NAME}?size={SIZE}&evict=false",
)


@cached(d, ttl=300)
def build_report() -> dict[str, Any]:
    d.incr("computed", 1, init=0)
    time.sleep(0.2)  # the slow part: a query, a render
    return {"computed_by": os.getpid(), "total": sum(range(1000))}


@app.after_request
def worker_pid(response: Response) -> Response:
    response.headers["X-Worker-Pid"] = str(os.getpid())
    return response


@app.get("/report")
def report() -> dict[str, Any]:
    return build_report()


@app.get("/computed")
def computed() -> dict[str, Any]:
    return {"computed": d.get("computed", 0)}


@app.get("/hit")
def hit() -> dict[str, Any]:
    return {"hits": d.incr("hits", 1, init=0)}


@app.get("/hits")
def hits() -> dict[str, Any]:
    return {"hits": d.get("hits", 0)}


@app.get("/limited")
@limiter.limit(RATE)
def limited() -> dict[str, Any]:
    return {"ok": True}


@app.get("/page")
@cache.cached()
def page() -> dict[str, Any]:
    return {"rendered_by": os.getpid(), "rendered_at": time.time()}

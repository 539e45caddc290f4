"""A FastAPI app whose uvicorn workers share one dict: a slow value computed
once for all of them, a rate limit that is one limit, and an exact counter.

From the repository's root, with shmdict and the frameworks installed::

    uvicorn examples.fastapi_app:app --workers 4 --host 127.0.0.1 --port 8000

Every worker process imports this module and opens the dict itself with
:func:`shmdict.open`, which attaches to it or creates it; no process owns
it. ``SHMDICT_EXAMPLE_DICT`` names the dict (default
``shmdict-example-fastapi``); it outlives the server until
``python -m shmdict rm NAME``.

Every response carries ``X-Worker-Pid``, the worker that served it.

``/report``
    a value that takes 0.2 s to compute, computed by one worker per 5
    minutes however many requests miss at once (:func:`shmdict.recipes.cached`:
    the others wait for it); ``/computed`` says how many times it was.
``/hit``, ``/hits``
    count a hit and return the new count (``d.incr``); read the count.
``/limited``
    at most ``RATE`` per client address for all the workers together:
    slowapi keeps its counters in the dict (``shmdict://``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from slowapi import Limiter, _rate_limit_exceeded_handler
from slowapi.errors import RateLimitExceeded
from slowapi.util import get_remote_address

import shmdict
import shmdict.contrib.limits  # registers shmdict:// with limits
from shmdict.recipes import cached

NAME = os.environ.get("SHMDICT_EXAMPLE_DICT", "shmdict-example-fastapi")
SIZE = 16 << 20
RATE = "50 per hour"

# One dict for everything; every worker opens it at import. The limiter
# opens it too, and must ask for the same size and evict.
d = shmdict.open(NAME, SIZE)

limiter = Limiter(
    key_func=get_remote_address,
    storage_uri=f"shmdict://{NAME}?size={SIZE}&evict=false",
)
app = FastAPI()
app.state.limiter = limiter


@app.exception_handler(RateLimitExceeded)
def too_many_requests(request: Request, exc: RateLimitExceeded) -> Response:
    return _rate_limit_exceeded_handler(request, exc)


@cached(d, ttl=300)
def build_report() -> dict[str, Any]:
    d.incr("computed", 1, init=0)
    time.sleep(0.2)  # the slow part: a query, a render
    return {"computed_by": os.getpid(), "total": sum(range(1000))}


@app.middleware("http")
async def worker_pid(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    response = await call_next(request)
    response.headers["X-Worker-Pid"] = str(os.getpid())
    return response


@app.get("/report")
async def report() -> dict[str, Any]:
    # A miss computes, or waits (sleeping) for the worker that computes:
    # in a thread, never on the event loop, which serves the other requests.
    return await run_in_threadpool(build_report)


@app.get("/computed")
async def computed() -> dict[str, Any]:
    return {"computed": d.get("computed", 0)}


@app.get("/hit")
async def hit() -> dict[str, Any]:
    return {"hits": d.incr("hits", 1, init=0)}


@app.get("/hits")
async def hits() -> dict[str, Any]:
    return {"hits": d.get("hits", 0)}


@app.get("/limited")
@limiter.limit(RATE)
async def limited(request: Request) -> dict[str, Any]:
    return {"ok": True}

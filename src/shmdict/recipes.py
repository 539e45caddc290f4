"""Recipes on a shared dict: a lock, a cached decorator, a rate limiter.

Each is a few atomic calls of a dict, so it works the same between the
threads of a process, between every process of the host that opens a
:class:`shmdict.SharedDict`, and between every host that connects to the
same :class:`shmdict.redis.RedisDict`: a recipe takes any object with
their API (:class:`shmdict.DictLike`), such as ``shmdict.connect(url)``
returns::

    import shmdict
    from shmdict.recipes import Lock, RateLimiter, cached

    d = shmdict.open("myapp", 64 << 20)

    with Lock(d, "nightly-report", ttl=60, timeout=5):
        ...  # one process at a time

    @cached(d, ttl=300, stale_ttl=60)
    def exchange_rates(day: str) -> dict[str, float]:
        ...  # computed by one process per miss, shared by all

    api = RateLimiter(d, "api:alice", limit=100, per=60)
    if not api.hit():
        ...  # refuse; api.retry_after() says for how long

A :class:`RateLimiter` reads the time from the clock every user of the dict
shares (:func:`clock_for`): ``time.monotonic()`` (``CLOCK_MONOTONIC``)
for a :class:`shmdict.SharedDict`, the clock its expiries run on, which
every process of the host shares; ``time.time()`` for any other dict,
whose users may be on several hosts (keep their clocks in step with NTP,
as for any distributed rate limit). Locks and :func:`cached` rely only on
the dict's own expiries.

Keys used in the dict: ``"lock:" + name`` for a :class:`Lock`;
``prefix + ...`` (``"cached:"`` by default) for :func:`cached`, and
``"lock:" + that key`` while it is computed; ``"ratelimit:ALGORITHM:KEY"``
and ``"ratelimit:ALGORITHM:KEY:WINDOW"`` for a :class:`RateLimiter`.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import inspect
import math
import pickle
import random
import secrets
import struct
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

from ._api import DictLike
from ._dict import SharedDict
from .contrib._common import MISSING, decode, encode, exptime_limit
from .errors import NoMemoryError

__all__ = ["Lock", "RateLimiter", "cached", "clock_for"]

_F = TypeVar("_F", bound=Callable[..., Any])

#: What a released lock holds until it expires (1 ms later): no token is
#: ever an empty string, so no holder's compare-and-set can match it.
_FREE = ""
#: The expiry of that value, in seconds (the engine's resolution).
_FREE_TTL = 0.001
#: Polling backoff while waiting: the first pause and the longest.
_POLL_FIRST = 0.001
_POLL_MAX = 0.05


def clock_for(d: DictLike) -> Callable[[], float]:
    """The clock every user of *d* shares, in seconds: ``time.monotonic``
    for a :class:`shmdict.SharedDict` (one host, and its expiries' own
    clock, which no wall-clock step moves), ``time.time`` for any other
    dict (a Redis server is shared by hosts whose monotonic clocks have
    nothing in common). Added in 0.2."""
    return time.monotonic if isinstance(d, SharedDict) else time.time


def _seconds(value: object, what: str, *, zero: bool = False) -> float:
    """*value* as a finite number of seconds, > 0 (or >= 0 with *zero*).

    TypeError if it is not an int or float, ValueError if it is out of
    range, NaN or infinite."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be an int or float, not {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v) or v < 0 or (v == 0 and not zero):
        bound = ">= 0" if zero else "> 0"
        raise ValueError(f"{what} must be a finite number {bound}, not {value!r}")
    if v > exptime_limit:
        raise ValueError(f"{what} is too large (the limit is {exptime_limit:.0f} s)")
    return v


def _timeout_arg(timeout: float | None) -> float | None:
    """None, or the timeout as seconds >= 0 (``math.inf`` is None: no
    limit). TypeError/ValueError as for :func:`_seconds`."""
    if timeout is None:
        return None
    if type(timeout) is float and timeout == math.inf:
        return None
    return _seconds(timeout, "timeout", zero=True)


def _pause(delay: float, deadline: float | None) -> float:
    """Sleep about *delay* seconds (jittered down to half of it, so that
    waiters don't poll in step), never past *deadline*; return the next
    delay: doubled, up to :data:`_POLL_MAX`."""
    pause = delay * (0.5 + 0.5 * random.random())
    if deadline is not None:
        pause = min(pause, deadline - time.monotonic())
    if pause > 0:
        time.sleep(pause)
    return min(delay * 2, _POLL_MAX)


# ---------------------------------------------------------------- Lock


class Lock:
    """A lock shared by every process (and thread) that opens the dict *d*.

    ``Lock(d, "reports", ttl=30)`` names the lock; any ``Lock`` of the same
    *name* on the same dict excludes it, in any process. *ttl* (seconds)
    bounds how long one acquisition holds it: a holder that dies, or
    forgets, frees it when the ttl runs out, and one that needs longer
    calls :meth:`extend` before then. *timeout* and *blocking* are the
    defaults of :meth:`acquire` and of ``with``.

    How it works: the key ``"lock:" + name`` holds the holder's token, a
    random 128-bit string made for each acquisition. :meth:`acquire` is
    ``d.add(key, token, ttl)``, which succeeds only when the key is missing
    or expired, or a compare-and-set from the free marker (an empty string)
    to the token. shmdict has no conditional delete, so :meth:`release` is
    ``d.cas(key, token, "", 0.001)``: it frees the lock only if the key
    still holds this acquisition's token, and the free marker expires a
    millisecond later. A holder whose ttl ran out can therefore never free,
    or extend, the lock that someone else took since: :meth:`release`
    raises, :meth:`extend` returns False.

    A ``Lock`` object is one holder: it is not reentrant, and threads that
    share one object share its token. Give each thread its own ``Lock`` (of
    the same name): they exclude each other as processes do. A ``Lock``
    held across ``fork()`` is held by both copies.

    Raises TypeError or ValueError for a bad *name*, *ttl* or *timeout*
    (*ttl* must be > 0, *timeout* >= 0, None or ``math.inf``), and
    ValueError for ``blocking=False`` with a *timeout*.
    """

    __slots__ = ("_d", "_key", "_token", "blocking", "name", "timeout", "ttl")

    def __init__(
        self,
        d: DictLike,
        name: str,
        *,
        ttl: float,
        timeout: float | None = None,
        blocking: bool = True,
    ) -> None:
        if not isinstance(name, str):
            raise TypeError(f"name must be str, not {type(name).__name__}")
        if not name:
            raise ValueError("the lock's name must not be empty")
        self._d = d
        self._key = "lock:" + name
        self._token: str | None = None
        self.name = name
        self.ttl = _seconds(ttl, "ttl")
        self.timeout = _timeout_arg(timeout)
        self.blocking = bool(blocking)
        if not self.blocking and self.timeout is not None:
            raise ValueError("a non-blocking lock can't have a timeout")

    def __repr__(self) -> str:
        state = "held" if self._token is not None else "not held"
        return f"<shmdict.recipes.Lock {self.name!r} ttl={self.ttl} {state}>"

    @property
    def key(self) -> str:
        """The dict key that holds the lock: ``"lock:" + name``."""
        return self._key

    def _try(self, token: str) -> bool:
        d = self._d
        return d.add(self._key, token, self.ttl) or d.cas(
            self._key, _FREE, token, self.ttl
        )

    def acquire(
        self, blocking: bool | None = None, timeout: float | None = None
    ) -> bool:
        """Take the lock for :attr:`ttl` seconds; True if taken.

        *blocking* and *timeout* default to the constructor's. Non-blocking,
        it tries once. Blocking, it polls until the lock is free, pausing
        1 ms at first and doubling up to 50 ms (never spinning), for at
        most *timeout* seconds (None: no limit), and returns False when the
        time is up. Cost: two dict calls per try.

        Raises RuntimeError if this object already holds the lock (it is
        not reentrant), ValueError for ``blocking=False`` with a *timeout*
        or a bad *timeout*, and what the dict raises (NoMemoryError when a
        full dict has no room for the key, :class:`shmdict.LockTimeout`).
        """
        if blocking is None:
            blocking = self.blocking
        if not blocking and timeout is not None:
            raise ValueError("can't specify a timeout for a non-blocking call")
        wait = self.timeout if timeout is None else _timeout_arg(timeout)
        if self._token is not None:
            if self.owned():
                raise RuntimeError(
                    f"lock {self.name!r} is already held by this Lock object "
                    "(it is not reentrant)"
                )
            self._token = None  # lost (expired): forget the old token
        token = secrets.token_hex(16)
        deadline = None if wait is None else time.monotonic() + wait
        delay = _POLL_FIRST
        while True:
            if self._try(token):
                self._token = token
                return True
            if not blocking or (deadline is not None and time.monotonic() >= deadline):
                return False
            delay = _pause(delay, deadline)

    def release(self) -> None:
        """Free the lock, if this object still holds it. O(1).

        Raises RuntimeError if this object doesn't hold it: never acquired,
        already released, or held past its ttl (then another holder may
        have taken it meanwhile, and what the lock guarded was not
        exclusive). The lock is left as it is in every such case.
        """
        token = self._token
        if token is None:
            raise RuntimeError(f"lock {self.name!r} is not held by this Lock object")
        self._token = None
        if not self._d.cas(self._key, token, _FREE, _FREE_TTL):
            raise RuntimeError(
                f"lock {self.name!r} was no longer held by this Lock object: "
                f"its ttl ({self.ttl} s) ran out before the release, and "
                "another holder may have taken it since"
            )

    def extend(self, ttl: float | None = None) -> bool:
        """Make the lock expire *ttl* seconds from now (default: the
        constructor's ttl), only if this object still holds it: one
        compare-and-set of the token with a new expiry, O(1).

        Returns False, changing nothing, if it doesn't hold the lock (its
        ttl ran out). Raises TypeError or ValueError for a bad *ttl*.
        """
        new_ttl = self.ttl if ttl is None else _seconds(ttl, "ttl")
        token = self._token
        if token is None:
            return False
        return self._d.cas(self._key, token, token, new_ttl)

    def locked(self) -> bool:
        """Whether any holder, in any process, holds the lock. O(1), no
        lock taken; the answer may be stale by the time it is used."""
        value = self._d.get(self._key, MISSING)
        return value is not MISSING and value != _FREE

    def owned(self) -> bool:
        """Whether this object holds the lock now (acquired, not released,
        ttl not run out). O(1), no lock taken."""
        token = self._token
        return token is not None and self._d.get(self._key, MISSING) == token

    def __enter__(self) -> Lock:
        """:meth:`acquire` with the constructor's *blocking* and *timeout*;
        raises TimeoutError if the lock wasn't taken."""
        if not self.acquire():
            if not self.blocking:
                raise TimeoutError(f"lock {self.name!r} is held by another holder")
            raise TimeoutError(
                f"could not acquire lock {self.name!r} within {self.timeout} s"
            )
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        """:meth:`release`. If the lock was lost meanwhile (its ttl ran
        out), the RuntimeError is raised when the block ended normally; an
        exception leaving the block propagates instead."""
        try:
            self.release()
        except RuntimeError:
            if exc_type is None:
                raise


# ---------------------------------------------------------------- cached


def _dumps(value: Any) -> bytes:
    return pickle.dumps(value, pickle.HIGHEST_PROTOCOL)


#: An argument repr longer than this is replaced by its SHA-256 in the key.
_MAX_ARGS_REPR = 200


def _args_key(sig: inspect.Signature | None, args: Any, kwargs: Any) -> str:
    """The arguments as text for a key: bound to the signature, defaults
    applied, so ``f(1)``, ``f(x=1)`` and ``f(1, y=2)`` (2 being y's
    default) make the same key. A long text becomes its SHA-256."""
    if sig is None:
        parts = [repr(a) for a in args]
        parts.extend(f"{k}={v!r}" for k, v in sorted(kwargs.items()))
    else:
        bound = sig.bind(*args, **kwargs)
        bound.apply_defaults()
        parts = []
        for name, value in bound.arguments.items():
            if sig.parameters[name].kind is inspect.Parameter.VAR_KEYWORD:
                parts.extend(f"{k}={v!r}" for k, v in sorted(value.items()))
            else:
                parts.append(f"{name}={value!r}")
    text = "(" + ", ".join(parts) + ")"
    if len(text) > _MAX_ARGS_REPR:
        return "#" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    return text


def cached(
    d: DictLike,
    ttl: float,
    *,
    key: Callable[..., str] | None = None,
    stale_ttl: float = 0,
    lock_timeout: float = 10.0,
    prefix: str | None = None,
) -> Callable[[_F], _F]:
    """Decorate a (sync) function so that its results are kept in *d* for
    *ttl* seconds, shared by every process, and computed once per miss.

    The key of a call is *prefix* (default ``"cached:"``) followed by
    ``key(*args, **kwargs)`` if *key* is given, else by the function's
    module and qualified name and the ``repr()`` of its arguments, bound
    to its signature with defaults applied (arguments whose repr is over
    200 characters in all are hashed with SHA-256). Such a key is only as
    good as the reprs: they must be the same in every process and differ
    for arguments that give different results. An object with the default
    ``<Foo object at 0x...>`` repr (a method's ``self``, say) differs in
    every process and every run: give such functions *key*.

    Results of the native types (None, bool, int of 64 bits, float, str,
    bytes) are stored as themselves, anything else pickled, as
    :class:`shmdict.Pickled` (as :mod:`shmdict.contrib` stores them); a
    hit unpickles a fresh copy. A None result is cached like any other.
    A result the dict has no room for (NoMemoryError) is returned but not
    cached; an exception from the function is raised and not cached.

    On a miss, one caller computes: it takes a :class:`Lock` on
    ``"lock:" + key`` whose ttl is *lock_timeout*, stores the result and
    frees the lock. Other callers, in any process, poll (1 ms doubling to
    50 ms) for the result, which they then read without computing. If the
    computing caller dies, or takes longer than *lock_timeout*, its lock
    runs out and one of the waiters takes it over and computes (so a
    function slower than *lock_timeout* is computed once per
    *lock_timeout*, not once per caller), while the others wait for that
    one in turn. A waiter that has seen the same holder for
    *lock_timeout* seconds (which takes a hold longer than the lock's
    ttl: a :class:`Lock` of that name taken by other code, or extended)
    gives up waiting, computes without the lock and stores its result.

    With *stale_ttl* > 0 an entry is kept for *ttl* + *stale_ttl*
    seconds; it is fresh for the first *ttl* of them (its fresh-until time
    is its expiry less *stale_ttl*, read with ``d.ttl``) and stale after.
    The first caller to find it stale recomputes it under the lock, while
    callers meanwhile get the stale value at once instead of waiting.

    The decorated function has two more attributes:
    ``f.key_for(*args, **kwargs)``, the dict key of a call, and
    ``f.invalidate(*args, **kwargs)``, which deletes that entry (True if
    there was one).

    Cost of a hit: one ``d.get`` (plus a ``d.ttl`` with *stale_ttl*), the
    key (binding the arguments, a few microseconds) and, for a pickled
    result, ``pickle.loads``. Raises TypeError or ValueError for bad
    *ttl*, *stale_ttl* (>= 0) or *lock_timeout* (> 0, finite); a call
    raises what the function raises, TypeError for arguments that don't
    fit its signature, and what pickling a result raises.
    """
    fresh_ttl = _seconds(ttl, "ttl")
    stale = _seconds(stale_ttl, "stale_ttl", zero=True)
    wait = _seconds(lock_timeout, "lock_timeout")
    keep = _seconds(fresh_ttl + stale, "ttl + stale_ttl")
    if prefix is None:
        prefix = "cached:"
    elif not isinstance(prefix, str):
        raise TypeError(f"prefix must be str, not {type(prefix).__name__}")
    key_fn = key

    def fresh(k: str) -> bool:
        if not stale:
            return True
        left = d.ttl(k)
        return left is not None and (left == 0 or left > stale)

    def decorate(fn: _F) -> _F:
        sig: inspect.Signature | None = None
        base = f"{prefix}{fn.__module__}.{fn.__qualname__}"
        if key_fn is None:
            try:
                sig = inspect.signature(fn)
            except (TypeError, ValueError):  # some builtins have none
                sig = None

        def key_for(*args: Any, **kwargs: Any) -> str:
            """The dict key of ``f(*args, **kwargs)``."""
            if key_fn is not None:
                made = key_fn(*args, **kwargs)
                if not isinstance(made, str):
                    raise TypeError(f"key() must return str, not {type(made).__name__}")
                return prefix + made
            return base + _args_key(sig, args, kwargs)

        def invalidate(*args: Any, **kwargs: Any) -> bool:
            """Delete the entry of ``f(*args, **kwargs)``; True if there
            was one. O(1)."""
            return d.delete(key_for(*args, **kwargs))

        def compute(k: str, args: Any, kwargs: Any) -> Any:
            value = fn(*args, **kwargs)
            with contextlib.suppress(NoMemoryError):  # then not cached
                d.set(k, encode(value, _dumps), keep)
            return value

        def under_lock(k: str, lock: Lock, args: Any, kwargs: Any) -> Any:
            # We hold the lock: another caller may have stored the value
            # between our miss and our acquire.
            try:
                stored = d.get(k, MISSING)
                if stored is not MISSING and fresh(k):
                    return decode(stored, pickle.loads)
                return compute(k, args, kwargs)
            finally:
                # held past lock_timeout? The value is stored all the same
                with contextlib.suppress(RuntimeError):
                    lock.release()

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            k = key_for(*args, **kwargs)
            stored = d.get(k, MISSING)
            if stored is not MISSING:
                if fresh(k):
                    return decode(stored, pickle.loads)
                lock = Lock(d, k, ttl=wait)
                if lock.acquire(blocking=False):
                    return under_lock(k, lock, args, kwargs)
                return decode(stored, pickle.loads)  # stale, being recomputed
            lock = Lock(d, k, ttl=wait)
            deadline = time.monotonic() + wait
            holder: Any = None
            delay = _POLL_FIRST
            while True:
                if lock.acquire(blocking=False):
                    return under_lock(k, lock, args, kwargs)
                stored = d.get(k, MISSING)
                if stored is not MISSING:
                    return decode(stored, pickle.loads)
                now = time.monotonic()
                current = d.get(lock.key, None)
                if current and current != holder:
                    holder = current  # a new computing caller: wait for it
                    deadline = now + wait
                if now >= deadline:
                    return compute(k, args, kwargs)
                delay = _pause(delay, deadline)

        w: Any = wrapper
        w.key_for = key_for
        w.invalidate = invalidate
        return cast(_F, wrapper)

    return decorate


# ---------------------------------------------------------------- RateLimiter


_ALGORITHMS = ("sliding", "fixed", "token")
_BUCKET = struct.Struct("<dd")  # tokens left, when (on the dict's clock)


class RateLimiter:
    """At most *limit* hits per *per* seconds for *key*, counted across
    every process (and host) that uses the dict *d*.

    For code that doesn't use the ``limits`` library (which has its own
    shmdict storage: :mod:`shmdict.contrib.limits`). *algorithm* is:

    ``"sliding"`` (the default)
        a sliding-window counter, as Cloudflare describes it: windows of
        *per* seconds aligned on multiples of *per*, one ``incr(init=0,
        init_ttl=2 * per)`` counter each, and a hit allowed while
        ``previous * (1 - elapsed / per) + current`` stays within *limit*,
        where *elapsed* is the time since the current window began. It
        smooths the burst a fixed window allows at its boundary.
    ``"fixed"``
        a fixed window: windows of *per* seconds aligned on multiples of
        *per*, one ``incr(init=0, init_ttl=per)`` counter each; at most
        *limit* hits per window, but up to twice that across a boundary.
    ``"token"``
        a token bucket of *limit* tokens refilled at *limit* / *per* tokens
        a second, its (tokens, time) state updated by compare-and-set; the
        state expires once the bucket would be full again.

    The window counters are incremented first and checked after, and a
    refused hit takes its increment back, so a window never lets more
    hits through than its check allows, whatever the processes do; a hit
    that comes while another's refused increment is not yet taken back
    may be refused too (only a hit of cost > 1 can be refused so while
    the window has room for it). Windows are aligned on the dict's
    shared clock, :attr:`clock` (see :func:`clock_for`): for a
    ``SharedDict``, ``time.monotonic()``, which counts from boot.

    Raises TypeError or ValueError for a bad *key*, *limit* (an int >= 1),
    *per* (> 0) or *algorithm*.
    """

    __slots__ = ("_base", "_d", "_rate", "algorithm", "clock", "key", "limit", "per")

    def __init__(
        self,
        d: DictLike,
        key: str,
        limit: int,
        per: float,
        *,
        algorithm: str = "sliding",
    ) -> None:
        if not isinstance(key, str):
            raise TypeError(f"key must be str, not {type(key).__name__}")
        if not key:
            raise ValueError("key must not be empty")
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise TypeError(f"limit must be an int, not {type(limit).__name__}")
        if not 1 <= limit < 1 << 62:
            raise ValueError(f"limit must be >= 1, not {limit!r}")
        if algorithm not in _ALGORITHMS:
            raise ValueError(
                f"algorithm must be one of {_ALGORITHMS}, not {algorithm!r}"
            )
        self._d = d
        #: The clock the windows and the bucket run on: :func:`clock_for`.
        self.clock = clock_for(d)
        self.key = key
        self.limit = limit
        self.per = _seconds(per, "per")
        if self.per * 2 > exptime_limit:
            raise ValueError("per is too large")
        self.algorithm = algorithm
        self._base = f"ratelimit:{algorithm}:{key}"
        self._rate = limit / self.per

    def __repr__(self) -> str:
        return (
            f"<shmdict.recipes.RateLimiter {self.key!r} {self.limit}/{self.per}s "
            f"{self.algorithm}>"
        )

    # -- windows (fixed and sliding)

    def _window(self, now: float) -> tuple[int, float]:
        """The index of the window *now* falls in, and the fraction of it
        that has passed."""
        pos = now / self.per
        idx = math.floor(pos)
        return idx, min(max(pos - idx, 0.0), 1.0)

    def _counts(self, idx: int) -> tuple[int, int]:
        """(previous, current) window counts, read at one moment."""
        prev_key, cur_key = f"{self._base}:{idx - 1}", f"{self._base}:{idx}"
        got = self._d.get_many([prev_key, cur_key])
        return _count(got.get(prev_key)), _count(got.get(cur_key))

    def _used(self, now: float) -> float:
        """Hits that count against the limit now (fixed, sliding)."""
        idx, frac = self._window(now)
        prev, cur = self._counts(idx)
        if self.algorithm == "fixed":
            return float(cur)
        return prev * (1.0 - frac) + cur

    # -- token bucket

    def _bucket(self, now: float) -> tuple[Any, float, float]:
        """(stored value or MISSING, tokens at *now*, when they were
        counted: *now*, or the stored time if another process stored a
        later one than *now*)."""
        stored = self._d.get(self._base, MISSING)
        if type(stored) is bytes and len(stored) == _BUCKET.size:
            tokens, when = _BUCKET.unpack(stored)
            if math.isfinite(tokens) and math.isfinite(when):
                tokens += max(now - when, 0.0) * self._rate
                return stored, min(float(self.limit), tokens), max(when, now)
        return stored, float(self.limit), now  # missing (full) or not ours

    # -- the API

    def hit(self, cost: int = 1) -> bool:
        """Count *cost* hits if the limit allows them all now; True if it
        did (and they are counted), False if not (and nothing is).

        Cost: fixed, one ``incr`` (two when refused); sliding, an ``incr``
        and a ``get`` (and an ``incr`` when refused); token, a ``get`` and
        a ``cas`` (or ``add``), again if another process changed the bucket
        in between. Raises TypeError or ValueError for a *cost* that is not
        an int >= 1, and what the dict raises (NoMemoryError for a full
        dict, :class:`shmdict.LockTimeout`).
        """
        if isinstance(cost, bool) or not isinstance(cost, int):
            raise TypeError(f"cost must be an int, not {type(cost).__name__}")
        if cost < 1:
            raise ValueError(f"cost must be >= 1, not {cost!r}")
        if cost > self.limit:
            return False
        d = self._d
        now = self.clock()
        if self.algorithm == "token":
            while True:
                stored, tokens, when = self._bucket(now)
                if tokens < cost:
                    return False
                left = tokens - cost
                new = _BUCKET.pack(left, when)
                # expire when full again, which a missing bucket is
                refill = (self.limit - left) / self._rate + (when - now)
                if stored is MISSING:
                    if d.add(self._base, new, refill):
                        return True
                elif d.cas(self._base, stored, new, refill):
                    return True
                now = self.clock()
        idx, frac = self._window(now)
        cur_key = f"{self._base}:{idx}"
        if self.algorithm == "fixed":
            n = d.incr(cur_key, cost, init=0, init_ttl=self.per)
            used = float(n)
        else:
            n = d.incr(cur_key, cost, init=0, init_ttl=2 * self.per)
            prev = _count(d.get(f"{self._base}:{idx - 1}"))
            used = prev * (1.0 - frac) + n
        if used <= self.limit:
            return True
        with contextlib.suppress(KeyError):  # expired: nothing to take back
            d.incr(cur_key, -cost)
        return False

    def remaining(self) -> int:
        """How many hits of cost 1 the limit allows now (0 if none). One
        or two dict reads; the answer may be stale by the time it is
        used."""
        now = self.clock()
        if self.algorithm == "token":
            return math.floor(self._bucket(now)[1])
        return max(0, math.floor(self.limit - self._used(now)))

    def retry_after(self) -> float:
        """Seconds until a hit of cost 1 would be allowed, if no other hit
        comes meanwhile: 0.0 if one is allowed now. Rounded up to the
        millisecond. One or two dict reads."""
        now = self.clock()
        limit = self.limit
        if self.algorithm == "token":
            tokens = self._bucket(now)[1]
            wait = 0.0 if tokens >= 1 else (1.0 - tokens) / self._rate
            return math.ceil(wait * 1000) / 1000
        idx, frac = self._window(now)
        prev, cur = self._counts(idx)
        if self.algorithm == "fixed":
            if cur + 1 <= limit:
                return 0.0
            at = (idx + 1) * self.per
        elif prev * (1.0 - frac) + cur + 1 <= limit:
            return 0.0
        elif cur + 1 <= limit:
            # this window, once the previous one weighs little enough
            at = (idx + 1.0 - (limit - cur - 1) / prev) * self.per
        else:
            # the next window, where this one becomes the previous
            at = (idx + 1.0 + max(0.0, 1.0 - (limit - 1) / cur)) * self.per
        return math.ceil(max(0.0, at - now) * 1000) / 1000

    def reset(self) -> None:
        """Forget every hit counted for this key (in all processes). One
        ``delete_many``."""
        now = self.clock()
        if self.algorithm == "token":
            self._d.delete(self._base)
            return
        idx, _ = self._window(now)
        self._d.delete_many([f"{self._base}:{idx - 1}", f"{self._base}:{idx}"])


def _count(value: object) -> int:
    """A window counter as read from the dict: 0 if missing (or not an
    int, which only another writer of the key could have put there)."""
    return value if type(value) is int else 0

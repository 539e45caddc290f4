"""Waiting for a stripe's lock: Ctrl-C ends the wait, lock_timeout=0 only
tries, and one call waits at most one lock_timeout in all.

The lock is held by a writer that stops itself (SIGSTOP) in the middle of a
write (``helpers.stopped_writer``): alive, so nothing repairs the lock
away from it, until the test continues it. Timing bounds are one-sided or
generous, for a loaded machine or a sanitizer build: an interrupt promised
within ~20 ms is checked as arriving long before a 30 s lock_timeout ends.
"""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

import pytest

import shmdict

from .figures import record_figures
from .helpers import stopped_writer

MiB = 1 << 20
LONG = 30.0  # a lock_timeout no test waits out
SIGNAL_AFTER = 0.3  # seconds into the wait

Handler = Callable[[int, FrameType | None], Any]

# Every operation here needs the lock of the stripe of "k" (a batch takes
# every stripe, len() counts under the lock while a writer is in).
OPS: dict[str, Callable[[shmdict.SharedDict], object]] = {
    "get": lambda d: d.get("k"),
    "getitem": lambda d: d["k"],
    "contains": lambda d: "k" in d,
    "set": lambda d: d.set("k", 3),
    "incr": lambda d: d.incr("k", 1),
    "pop": lambda d: d.pop("k"),
    "get_many": lambda d: d.get_many(["k", "other"]),
    "set_many": lambda d: d.set_many({"k": 3, "other": 4}),
    "len": len,
}


@contextlib.contextmanager
def sigint_after(
    delay: float, handler: Handler = signal.default_int_handler
) -> Iterator[list[float]]:
    """SIGINT the main thread `delay` s from now, with `handler` installed
    meanwhile. Yields a list that gets the time.monotonic() of the send.
    A SIGINT that arrives after the body (the call under test did not
    wait) is swallowed here, so it fails only that test, not the run."""
    sent: list[float] = []
    main = threading.main_thread().ident
    assert main is not None

    def fire() -> None:
        time.sleep(delay)
        sent.append(time.monotonic())
        signal.pthread_kill(main, signal.SIGINT)

    old = signal.signal(signal.SIGINT, handler)
    sender = threading.Thread(target=fire, daemon=True)
    sender.start()
    try:
        yield sent
    finally:
        while sender.is_alive():
            with contextlib.suppress(KeyboardInterrupt):
                sender.join()
        with contextlib.suppress(KeyboardInterrupt):
            time.sleep(0.05)  # a late SIGINT's handler runs here
        signal.signal(signal.SIGINT, old)


def keys_in_two_stripes(d: shmdict.SharedDict) -> tuple[str, str]:
    """A key of the first stripe and one of the last of a dict with at
    least two: keys() lists the stripes in order."""
    for i in range(64):
        d[f"s{i}"] = i
    keys = d.get_keys()
    return keys[0], keys[-1]


def test_ctrl_c_ends_lock_waits(name: str) -> None:
    """SIGINT during a wait for a lock held by a stopped writer raises
    KeyboardInterrupt within a slice of the wait, long before the 30 s
    lock_timeout, and the interrupted call changed nothing."""
    d = shmdict.new(name, MiB, lock_timeout=LONG)
    d["k"] = 1
    waits = d.stats()["lock_waits"]
    latencies = []
    with stopped_writer(name, "k", 2):
        for op_name, op in OPS.items():
            start = time.monotonic()
            with sigint_after(SIGNAL_AFTER) as sent:
                with pytest.raises(KeyboardInterrupt):
                    op(d)
                got = time.monotonic()
            took = got - start
            # It was waiting when the signal came, and the signal ended it.
            assert SIGNAL_AFTER <= took < 3.0, f"{op_name} took {took:.3f} s"
            latencies.append(got - sent[0])
    assert d["k"] == 2  # the writer's write went in; none of ours did
    assert "other" not in d
    assert d.stats()["lock_waits"] >= waits + len(OPS)
    assert d.verify() == []
    record_figures(
        "ctrl_c_latency",
        median_ms=round(statistics.median(latencies) * 1000, 1),
        max_ms=round(max(latencies) * 1000, 1),
        calls=len(latencies),
    )
    d.close()


def test_lock_timeout_zero_only_tries(name: str) -> None:
    """lock_timeout=0 raises LockTimeout at once when the lock is held
    (before, 0 meant waiting forever), and works when it is free."""
    d = shmdict.new(name, MiB, lock_timeout=LONG)
    d["k"] = 1
    waits0 = d.stats()["lock_waits"]
    with shmdict.get(name, lock_timeout=0) as q:
        assert q.lock_timeout == 0
        with stopped_writer(name, "k", 2):
            for op_name, op in OPS.items():
                start = time.monotonic()
                with pytest.raises(shmdict.LockTimeout):
                    op(q)
                took = time.monotonic() - start
                assert took < 1.0, f"{op_name} waited {took:.3f} s"
        # Each call found the stripe held once: one lock wait each, counted
        # even though lock_timeout=0 only tries.
        assert d.stats()["lock_waits"] - waits0 == len(OPS)
        assert q["k"] == 2
        q.set("k", 5)
        assert q.incr("k", 1) == 6
        q.set_many({"a": 1, "b": 2})
        assert q.get_many(["a", "b", "k"]) == {"a": 1, "b": 2, "k": 6}
        assert len(q) == 3
    assert d.verify() == []
    d.close()


@pytest.mark.parametrize("op_name", ["get", "getitem", "set", "set_many"])
def test_a_call_waits_one_timeout(name: str, op_name: str) -> None:
    """A call that can't get the lock raises LockTimeout after its
    lock_timeout, once: not after two (get() used to retry a timed-out
    lock-free read under the lock and wait again)."""
    timeout = 1.0
    d = shmdict.new(name, MiB, lock_timeout=LONG)
    d["k"] = 1
    with shmdict.get(name, lock_timeout=timeout) as q, stopped_writer(name, "k", 2):
        start = time.monotonic()
        with pytest.raises(shmdict.LockTimeout):
            OPS[op_name](q)
        took = time.monotonic() - start
    assert timeout - 0.01 <= took < 1.8 * timeout, f"waited {took:.3f} s"
    assert d["k"] == 2
    assert "other" not in d
    assert d.verify() == []
    d.close()


def test_a_batch_waits_one_timeout_for_all_stripes(name: str) -> None:
    """A batch that waits for one stripe, gets it, and then waits for
    another shares one lock_timeout among the waits, where each stripe
    used to get a whole one."""
    timeout = 2.0
    d = shmdict.new(name, 2 * MiB, stripes=2, lock_timeout=LONG)
    lo, hi = keys_in_two_stripes(d)
    with stopped_writer(name, lo, -1) as first:
        with shmdict.get(name, lock_timeout=0) as probe:
            assert probe[hi] is not None  # another stripe: not held
        with stopped_writer(name, hi, -2):
            goes_on = threading.Timer(1.2, os.kill, (first, signal.SIGCONT))
            goes_on.start()
            with shmdict.get(name, lock_timeout=timeout) as q:
                start = time.monotonic()
                with pytest.raises(shmdict.LockTimeout):
                    q.set_many({lo: 10, hi: 20})
                took = time.monotonic() - start
            goes_on.join()
    # One timeout in all; 1.2 s + a whole second timeout would be 3.2 s.
    assert timeout - 0.01 <= took < 2.9, f"waited {took:.3f} s"
    assert (d[lo], d[hi]) == (-1, -2)
    assert d.verify() == []
    d.close()


def test_no_signal_handler_runs_while_a_stripe_is_held(name: str) -> None:
    """A batch waiting for a stripe (held by a stopped writer) while it
    holds a lower one lets that go before it runs signal handlers: a
    handler that writes to the lower stripe finds it free, and the batch
    then raises what the handler raised, having changed nothing."""
    d = shmdict.new(name, 2 * MiB, stripes=2, lock_timeout=LONG)
    lo, hi = keys_in_two_stripes(d)
    seen = []
    with shmdict.get(name, lock_timeout=0) as probe:

        def handler(signum: int, frame: FrameType | None) -> None:
            try:
                probe[lo] = "from the handler"
                seen.append("free")
            except shmdict.Error as e:
                seen.append(f"held ({type(e).__name__})")
            raise KeyboardInterrupt

        with stopped_writer(name, hi, -2):
            assert probe[lo] is not None  # lo's stripe is not the held one
            with sigint_after(SIGNAL_AFTER, handler), pytest.raises(KeyboardInterrupt):
                d.set_many({lo: 1, hi: 2})
    assert seen == ["free"]
    assert (d[lo], d[hi]) == ("from the handler", -2)
    assert d.verify() == []
    d.close()

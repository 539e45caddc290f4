"""Run a function in a forked child process and bring its result back.

Each peer and data set is measured in its own child, so that one peer's
memory (a 1M-key dict, a leaked handle) or crash cannot disturb the next:
a child that dies is reported as such instead of ending the whole run.
"""

from __future__ import annotations

import multiprocessing
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_ctx = multiprocessing.get_context("fork")


class ChildFailed(Exception):
    """The child raised, crashed or timed out; the message says which."""


def _entry(fn: Callable[[], Any], conn: Any) -> None:
    try:
        result = fn()
        conn.send(("ok", result))
    except BaseException as exc:
        tb = traceback.format_exc(limit=6)
        conn.send(("err", f"{type(exc).__name__}: {exc}\n{tb}"))
    finally:
        conn.close()


def run_in_child(fn: Callable[[], T], timeout: float) -> T:
    """Call ``fn()`` in a forked child; its return value must pickle."""
    parent, child = _ctx.Pipe(duplex=False)
    proc = _ctx.Process(target=_entry, args=(fn, child), daemon=False)
    proc.start()
    child.close()
    try:
        if not parent.poll(timeout):
            proc.kill()
            proc.join()
            raise ChildFailed(f"timed out after {timeout:.0f} s")
        try:
            status, payload = parent.recv()
        except EOFError:
            proc.join()
            raise ChildFailed(f"child died (exit code {proc.exitcode})") from None
    finally:
        parent.close()
    proc.join(30)
    if proc.is_alive():
        proc.kill()
        proc.join()
    if status == "err":
        raise ChildFailed(payload)
    return payload  # type: ignore[no-any-return]

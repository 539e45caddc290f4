"""Crash safety: a process killed at any instruction loses at most its own
operation in flight; everything else survives and nothing waits forever.

Three kinds of test live here:

* **Injected crash points.** ``shmdict._core._crash_after(n)`` makes the
  calling process SIGKILL itself at the n-th crash point (a logged store, an
  undo record, a commit, a flush phase) of its next writes. For every kind of
  write, a forked child attaches, arms the hook with n = 1, 2, ... and runs
  the write until it exits normally. After every death the parent checks
  that the dict verifies, that the whole visible state equals either the
  state before the write or the state after it (so untouched keys are
  intact and the target is atomic), that the space accounting equals one of
  the two as well (no leak), and that exactly one recovery was counted.
  A second pass kills the *recoverer* too, at every step of its repair.

* **Owner killed.** The creating process is SIGKILLed while peers work.

* **Waiters are woken.** Processes contend for the lock; one is killed and
  the others must all get the lock (a robust futex can lose a wake-up).

The torture test (random kills of working processes, checked against a
model) is in ``test_torture.py``.

Counts are configurable (see ``RELIABILITY.md``)::

    SHMDICT_WAKEUP_KILLS      kills in the wake-up test (default 1000)
    SHMDICT_FIGURES           append a JSON line of figures per test to this file

The suite's second pass in scripts/test.sh (SHMDICT_STRIPES=4) runs the
same counts on striped dicts.
"""

from __future__ import annotations

import itertools
import mmap
import os
import random
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, cast

import pytest

import shmdict
from shmdict import _core

from .figures import env_int, record_figures
from .fileformat import entry_block, lock_words
from .helpers import list_items, wait_child
from .strategies import canon

#: The injected crash points are a test hook of development builds.
pytestmark = pytest.mark.crash_points

MiB = 1 << 20

# --------------------------------------------------------------------------
# helpers shared by the tests in this file


def ttl_class(t: float | None) -> str:
    if t is None:
        return "missing"
    if t == 0:
        return "none"
    return "long" if t > 5000 else "short"


def snapshot(d: shmdict.SharedDict) -> dict[str, tuple[str, str, str]]:
    """The whole visible state: every key with its value (a list's items)
    and expiry class."""
    snap = {}
    lists = []
    for k in d.get_keys():
        try:
            v = d.get(k, KeyError)
        except TypeError:  # it holds a list
            lists.append(k)
            continue
        assert v is not KeyError, f"listed key {k!r} is not readable"
        snap[k] = (*canon(v), ttl_class(d.ttl(k)))
    if lists:
        for k, items in list_items(d, lists).items():
            assert items, f"listed list {k!r} is empty or gone"
            snap[k] = ("list", repr([canon(x) for x in items]), ttl_class(d.ttl(k)))
    return snap


def space(d: shmdict.SharedDict) -> tuple[int, int, int]:
    s = d.stats()
    return (s["entries"], s["expiring"], s["bytes_used"])


# --------------------------------------------------------------------------
# injected crash points

LONG = 100000.0  # an expiry no test outlives
SHORT = 100.0  # an expiry the ops set (still far from expiring)
BIG_OLD = b"o" * 3000
INT_MAX = 2**63 - 1
LIST_ITEMS: list[shmdict.Value] = [b"h" * 300, "second", 3, None, b"t" * 2000]


def wait_expired(d: shmdict.SharedDict, keys: list[str]) -> None:
    """Wait until the keys have expired by the dict's own clock (a read
    finds them gone, which a writer then does too): no longer than that."""
    deadline = time.monotonic() + 10
    for k in keys:
        while d.ttl(k) is not None:
            assert time.monotonic() < deadline, f"{k} does not expire"
            time.sleep(0.0001)


def base_state(d: shmdict.SharedDict) -> None:
    """The state every crash run starts from: a mix of types, sizes and
    expiries, a big value, small values, numbers, an expired key, a list
    of several items (with an expiry) and a list of one."""
    d.flush_all()
    for i in range(40):
        v: object
        kind = i % 8
        if kind == 0:
            v = i
        elif kind == 1:
            v = i + 0.5
        elif kind == 2:
            v = "s" * i
        elif kind == 3:
            v = bytes([i]) * (i * 10)
        elif kind == 4:
            v = None
        elif kind == 5:
            v = bool(i % 3)
        elif kind == 6:
            v = b"L" * 2500
        else:
            v = "\u20ac" * i
        d.set(f"stay{i}", v, LONG if i % 3 == 0 else 0)
    d.set("target", BIG_OLD)
    d.set("small", "abcdefgh")
    d.set("num", 5)
    d.set("flt", 1.5)
    d.set("maxint", INT_MAX)
    d.set("text", "not a number")
    d.set("ttlkey", 7, LONG)
    d.set("gone", b"g" * 500, 0.001)  # expired by the time the op runs
    for item in LIST_ITEMS:  # a list of several items, with an expiry
        d.rpush("lst", item)
    d.expire("lst", LONG)
    d.rpush("one", "only")  # a list of one item
    wait_expired(d, ["gone"])


class _Any:
    def __repr__(self) -> str:
        return "_ANY"


_ANY: Any = _Any()


@dataclass
class CrashOp:
    name: str
    run: Callable[[shmdict.SharedDict], object]
    expect: type[BaseException] | None = None  # the exception the op raises
    changes: bool = True  # does the visible state change?
    full: bool = False  # runs on a full 64 KiB dict
    sweeps: bool = False  # reclaims expired entries (stats may differ)
    redo: bool = False  # a crash anywhere completes it (flush_all)
    stripes: int = 0  # runs on a 4 MiB dict split into this many stripes
    # A batch over several stripes commits stripe by stripe: a crash may
    # leave each key as before or as after, but nothing else.
    per_key: bool = False
    # What the op returns when it completes: a value (compared with its
    # type, so True is not 1) or a predicate; _ANY: not checked.
    returns: object = _ANY
    prep: Callable[[shmdict.SharedDict], None] | None = None  # after the reset
    evict: bool = False  # the full dict is made with evict=True
    # Other keys may be evicted, each committed on its own: a crash may
    # leave any of them absent. `key`, the one written, never is.
    evicts: bool = False
    key: str = ""
    # The op reclaims this expired key and commits that alone before it
    # goes on: a crash may leave the old state with that space freed.
    reclaims: str = ""
    # Expired entries are reclaimed one commit at a time (flush_expired):
    # the space lies between that before and that after.
    space_between: bool = False
    # A list is released: its items are freed a few per commit after the
    # op's commit, so bytes_used may exceed that of the new state while
    # pending_free says so.
    gc: bool = False
    # Too slow to repeat under AddressSanitizer, where a like op runs.
    slow: bool = False
    # The state the op starts from, instead of base_state or full_state.
    state: Callable[[shmdict.SharedDict], None] | None = None
    # A big overwrite that fits only in the old value's own place commits
    # the old value's drop before it writes the new one: a crash in between
    # may leave this key absent (all else as before, or for a batch, as
    # before or after).
    may_drop: str = ""


def result_ok(op: CrashOp, res: object) -> bool:
    if op.returns is _ANY:
        return True
    if callable(op.returns):
        return bool(op.returns(res))
    return canon(res) == canon(op.returns)


def _incr_with_exptime(d: shmdict.SharedDict) -> object:
    return d.incr("num", 2, exptime=SHORT)


#: Writes that change one word of an existing entry and so commit with that
#: one store, unlogged.
ONE_STORE_OPS = {
    "overwrite_int_in_place",
    "overwrite_float_in_place",
    "overwrite_bool_flip",
    "overwrite_new_expiry",
    "incr_int",
    "incr_float",
}

CRASH_OPS = [
    CrashOp("set_new_big", lambda d: d.set("fresh", b"n" * 5000)),
    CrashOp("set_new_small", lambda d: d.set("fresh", 1)),
    CrashOp("set_new_ttl", lambda d: d.set("fresh", "x" * 100, SHORT)),
    # A change of one word is stored alone, unlogged: its store is the
    # commit point (a number, a flag flipped, a new expiry).
    CrashOp("overwrite_int_in_place", lambda d: d.set("num", 9)),
    CrashOp("overwrite_float_in_place", lambda d: d.set("flt", 2.25)),
    CrashOp("overwrite_bool_flip", lambda d: d.set("stay5", False)),
    CrashOp("overwrite_new_expiry", lambda d: d.set("ttlkey", 7, SHORT)),
    CrashOp("overwrite_small_str_in_place", lambda d: d.set("small", "ABCDEFGHIJKL")),
    CrashOp("overwrite_type_change", lambda d: d.set("num", None)),
    CrashOp("overwrite_big_grow", lambda d: d.set("target", b"n" * 5000)),
    CrashOp("overwrite_big_shrink_realloc", lambda d: d.set("target", b"n" * 1000)),
    CrashOp("overwrite_big_shrink_in_place", lambda d: d.set("target", b"n" * 10)),
    CrashOp("overwrite_small_grow", lambda d: d.set("small", "n" * 5000)),
    CrashOp("overwrite_with_ttl", lambda d: d.set("target", b"n" * 10, SHORT)),
    CrashOp("overwrite_clear_ttl", lambda d: d.set("ttlkey", 8)),
    CrashOp("set_over_expired", lambda d: d.set("gone", b"n" * 700)),
    CrashOp("delete", lambda d: d.delete("target")),
    CrashOp("delete_ttl_key", lambda d: d.delete("ttlkey")),
    CrashOp("delete_expired", lambda d: d.delete("gone"), changes=False),
    CrashOp("incr_int", lambda d: d.incr("num", 2)),
    CrashOp("incr_float", lambda d: d.incr("flt", 0.25)),
    CrashOp("incr_int_by_float", lambda d: d.incr("num", 0.5)),
    CrashOp("incr_with_exptime", _incr_with_exptime),
    CrashOp("incr_ttl_key", lambda d: d.incr("ttlkey", -3)),
    CrashOp("incr_overflow", lambda d: d.incr("maxint", 1), OverflowError, False),
    CrashOp("incr_not_number", lambda d: d.incr("text", 1), TypeError, False),
    CrashOp("incr_expired", lambda d: d.incr("gone", 1), KeyError, False),
    CrashOp("expire_set", lambda d: d.expire("target", SHORT)),
    CrashOp("expire_clear", lambda d: d.expire("ttlkey", 0)),
    CrashOp("expire_expired", lambda d: d.expire("gone", SHORT), changes=False),
    CrashOp("flush_all", lambda d: d.flush_all(), redo=True),
    # Whole-dict and batch operations on a dict of 4 stripes: flush_all is
    # atomic; a batch is atomic per stripe, so per key.
    CrashOp("flush_all_4_stripes", lambda d: d.flush_all(), redo=True, stripes=4),
    CrashOp(
        "set_many_4_stripes",
        lambda d: d.set_many({f"stay{i}": i * 10 for i in range(0, 40, 3)}),
        stripes=4,
        per_key=True,
    ),
    CrashOp(
        "delete_many_4_stripes",
        lambda d: d.delete_many([f"stay{i}" for i in range(0, 40, 4)]),
        stripes=4,
        per_key=True,
    ),
    # On a full dict (see full_state):
    CrashOp(
        "full_set_fails",
        lambda d: d.set("target", b"n" * 20000),
        shmdict.NoMemoryError,
        False,
        full=True,
        sweeps=True,
    ),
    CrashOp(
        "full_new_fails",
        lambda d: d.set("fresh", b"n" * 20000),
        shmdict.NoMemoryError,
        False,
        full=True,
        sweeps=True,
    ),
    CrashOp(
        "full_overwrite_fits_after_free",
        lambda d: d.set("target", b"n" * 990),
        full=True,
    ),
    CrashOp(
        "full_set_after_sweep",
        lambda d: d.set("fresh", b"n" * 2000),
        full=True,
        sweeps=True,
    ),
]


def _expired_extra(d: shmdict.SharedDict) -> None:
    """Four more expired keys and an expired list, for flush_expired."""
    for i in range(4):
        d.set(f"exp{i}", i if i % 2 else b"e" * (100 * i), 0.001)
    d.rpush("explist", b"x" * 100)
    d.rpush("explist", 2)
    d.expire("explist", 0.001)
    wait_expired(d, [f"exp{i}" for i in range(4)] + ["explist"])


N_EXPIRED = 6  # gone, exp0..exp3 and explist

# The newer methods (issue 4), from the base state unless marked full.
# slow=True: not repeated under ASan, where an op of the same C path runs
# (add_expired, lpush_new, lpop_last, incr_init_missing, ...).
CRASH_OPS += [
    # add: only if missing or expired
    CrashOp(
        "add_absent", lambda d: d.add("fresh", b"n" * 700), returns=True, slow=True
    ),
    CrashOp(
        "add_present",
        lambda d: d.add("target", b"n" * 10),
        changes=False,
        returns=False,
    ),
    CrashOp("add_expired", lambda d: d.add("gone", b"n" * 700), returns=True),
    CrashOp(
        "safe_add_absent",
        lambda d: d.safe_add("fresh", "x" * 100, SHORT),
        returns=True,
        slow=True,
    ),
    CrashOp(
        "safe_add_present", lambda d: d.safe_add("num", 1), changes=False, returns=False
    ),
    # replace: only if present
    CrashOp(
        "replace_present",
        lambda d: d.replace("small", "n" * 5000),
        returns=True,
        slow=True,
    ),
    CrashOp(
        "replace_present_ttl",
        lambda d: d.replace("ttlkey", b"n" * 10, SHORT),
        returns=True,
    ),
    CrashOp(
        "replace_absent", lambda d: d.replace("fresh", 1), changes=False, returns=False
    ),
    CrashOp(
        "replace_expired", lambda d: d.replace("gone", 1), changes=False, returns=False
    ),
    # set variants (on a dict that doesn't evict, they are set)
    CrashOp(
        "safe_set", lambda d: d.safe_set("target", b"n" * 5000), returns=True, slow=True
    ),
    CrashOp(
        "set_forcible_new",
        lambda d: d.set_forcible("fresh", b"n" * 5000),
        returns=0,
        slow=True,
    ),
    CrashOp("set_forcible_overwrite", lambda d: d.set_forcible("small", 3), returns=0),
    CrashOp(  # delete_list runs under ASan
        "set_over_list", lambda d: d.set("lst", 1), returns=True, gc=True, slow=True
    ),
    # cas: same type and equal value
    CrashOp("cas_match", lambda d: d.cas("num", 5, 6), returns=True),
    CrashOp(
        "cas_match_big",
        lambda d: d.cas("target", BIG_OLD, b"n" * 5000, SHORT),
        returns=True,
    ),
    CrashOp("cas_keeps_ttl", lambda d: d.cas("ttlkey", 7, "seven"), returns=True),
    CrashOp("cas_mismatch", lambda d: d.cas("num", 6, 7), changes=False, returns=False),
    CrashOp(
        "cas_type_mismatch",
        lambda d: d.cas("num", 5.0, 7),
        changes=False,
        returns=False,
    ),
    CrashOp("cas_absent", lambda d: d.cas("fresh", 1, 2), changes=False, returns=False),
    CrashOp(
        "cas_expired",
        lambda d: d.cas("gone", b"g" * 500, 1),
        changes=False,
        returns=False,
    ),
    CrashOp("cas_list", lambda d: d.cas("lst", 1, 2), TypeError, False),
    # pop
    CrashOp("pop_present", lambda d: d.pop("target"), returns=BIG_OLD),
    CrashOp("pop_ttl_key", lambda d: d.pop("ttlkey", None), returns=7),
    CrashOp(
        "pop_absent", lambda d: d.pop("fresh", "dflt"), changes=False, returns="dflt"
    ),
    CrashOp("pop_absent_raises", lambda d: d.pop("fresh"), KeyError, False),
    CrashOp("pop_expired", lambda d: d.pop("gone", 1), changes=False, returns=1),
    CrashOp("pop_list", lambda d: d.pop("lst"), TypeError, False),
    # setdefault
    CrashOp(
        "setdefault_present", lambda d: d.setdefault("num", 9), changes=False, returns=5
    ),
    CrashOp(
        "setdefault_absent",
        lambda d: d.setdefault("fresh", b"n" * 700),
        returns=b"n" * 700,
    ),
    CrashOp(
        "setdefault_expired",
        lambda d: d.setdefault("gone", 3),
        returns=3,
        reclaims="gone",
        slow=True,
    ),
    # incr with init= / init_ttl=
    CrashOp("incr_init_missing", lambda d: d.incr("fresh", 2, init=10), returns=12),
    CrashOp(
        "incr_init_ttl_missing",
        lambda d: d.incr("fresh", 0.5, init=1, init_ttl=SHORT),
        returns=1.5,
        slow=True,
    ),
    CrashOp(
        "incr_init_exptime_missing",
        lambda d: d.incr("fresh", 1, SHORT, init=5),
        returns=6,
        slow=True,
    ),
    CrashOp(
        "incr_init_present",
        lambda d: d.incr("num", 1, init=100, init_ttl=SHORT),
        returns=6,
    ),
    CrashOp(
        "incr_init_expired",
        lambda d: d.incr("gone", 1, init=0),
        returns=1,
        reclaims="gone",
    ),
    CrashOp("incr_list", lambda d: d.incr("lst", 1, init=0), TypeError, False),
    # lists
    CrashOp("lpush_new", lambda d: d.lpush("fresh", b"n" * 700), returns=1),
    CrashOp("rpush_new", lambda d: d.rpush("fresh", "x"), returns=1, slow=True),
    CrashOp("lpush_existing", lambda d: d.lpush("lst", 9), returns=6, slow=True),
    CrashOp("rpush_existing_big", lambda d: d.rpush("lst", b"n" * 3000), returns=6),
    CrashOp("rpush_on_scalar", lambda d: d.rpush("num", 1), TypeError, False),
    CrashOp("lpop_last", lambda d: d.lpop("one"), returns="only"),
    CrashOp("rpop_last", lambda d: d.rpop("one"), returns="only", slow=True),
    CrashOp("lpop_middle", lambda d: d.lpop("lst"), returns=LIST_ITEMS[0]),
    CrashOp("rpop_middle", lambda d: d.rpop("lst"), returns=LIST_ITEMS[-1], slow=True),
    CrashOp("lpop_absent", lambda d: d.lpop("fresh"), changes=False, returns=None),
    CrashOp("lpop_scalar", lambda d: d.lpop("num"), TypeError, False),
    CrashOp("delete_list", lambda d: d.delete("lst"), returns=True, gc=True),
    CrashOp("expire_list", lambda d: d.expire("lst", SHORT), returns=True),
    # flush_expired: each expired entry is reclaimed by a commit of its own
    CrashOp(
        "flush_expired_max_count",
        lambda d: d.flush_expired(3),
        changes=False,
        returns=3,
        prep=_expired_extra,
        space_between=True,
    ),
    CrashOp(
        "flush_expired_all",
        lambda d: d.flush_expired(),
        changes=False,
        returns=N_EXPIRED,
        prep=_expired_extra,
        space_between=True,
        slow=True,  # flush_expired_max_count runs under ASan
    ),
    # On a full dict (see full_state): a list that grows into it
    CrashOp(
        "full_rpush_fails",
        lambda d: d.rpush("flist", b"n" * 20000),
        shmdict.NoMemoryError,
        False,
        full=True,
        sweeps=True,
    ),
    CrashOp(
        "full_lpush_new_fails",
        lambda d: d.lpush("fresh", b"n" * 20000),
        shmdict.NoMemoryError,
        False,
        full=True,
        sweeps=True,
    ),
    CrashOp(
        "full_rpush_after_sweep",
        lambda d: d.rpush("flist", b"n" * 2000),
        returns=3,
        full=True,
        sweeps=True,
    ),
    # On a full dict made with evict=True: other keys are evicted (each
    # eviction its own commit), never the key being written.
    CrashOp(
        "evict_set_new",
        lambda d: d.set("fresh", b"n" * 5000),
        returns=True,
        full=True,
        evict=True,
        evicts=True,
        key="fresh",
    ),
    CrashOp(
        "evict_overwrite_forcible",
        lambda d: d.set_forcible("target", b"n" * 3500),
        returns=lambda r: type(r) is int and r > 0,  # how many it evicted
        full=True,
        evict=True,
        evicts=True,
        key="target",
    ),
    CrashOp(
        "evict_safe_set_fails",
        lambda d: d.safe_set("fresh", b"n" * 20000),
        shmdict.NoMemoryError,
        False,
        full=True,
        evict=True,
        sweeps=True,
    ),
    CrashOp(
        "evict_rpush",
        lambda d: d.rpush("flist", b"n" * 3500),
        returns=3,
        full=True,
        evict=True,
        evicts=True,
        key="flist",
    ),
]


BIG_CRASH = 600_000  # two don't fit in a 1 MiB dict


def big_state(d: shmdict.SharedDict, target: int = BIG_CRASH, gone: int = 0) -> None:
    """A 1 MiB dict of one heap holding a 600 KB "target" (with an expiry)
    and a few small keys, with nothing to reclaim: a new 600 KB value
    fits only in the old one's place. With `gone`, an expired entry of
    that size too."""
    d.flush_all()
    d.set("target", b"o" * target, LONG)
    for i in range(12):
        v: shmdict.Value = (i, i + 0.5, "s" * i, bytes([i]) * i)[i % 4]
        d.set(f"stay{i}", v, LONG if i % 3 == 0 else 0)
    if gone:
        d.set("gone", b"g" * gone, 0.001)
        wait_expired(d, ["gone"])
    assert d.free_space() < target, "a second copy fits"


def big_expired_state(d: shmdict.SharedDict) -> None:
    """A 400 KB target and an expired 450 KB entry: once that is swept,
    a new 400 KB value fits beside the old one."""
    big_state(d, 400_000, 450_000)


# Overwrites of a value too big for the undo log (4 KiB) that fit only in
# the old value's place: they succeed, at the cost of a window in which a
# crash leaves the key absent (see set_in_old_place_locked in dict.c).
CRASH_OPS += [
    CrashOp(
        "big_overwrite_set",
        lambda d: d.set("target", b"n" * BIG_CRASH),
        returns=True,
        state=big_state,
        may_drop="target",
    ),
    CrashOp(
        "big_overwrite_str_ttl",
        lambda d: d.set("target", "n" * (BIG_CRASH - 100), SHORT),
        returns=True,
        state=big_state,
        may_drop="target",
        slow=True,
    ),
    CrashOp(
        "big_overwrite_replace",
        lambda d: d.replace("target", b"r" * BIG_CRASH, SHORT),
        returns=True,
        state=big_state,
        may_drop="target",
        slow=True,
    ),
    CrashOp(
        "big_overwrite_cas",
        lambda d: d.cas("target", b"o" * BIG_CRASH, "c" * BIG_CRASH),
        returns=True,
        state=big_state,
        may_drop="target",
        slow=True,
    ),
    CrashOp(  # the drop commits the items before it: per key
        "big_overwrite_set_many",
        lambda d: d.set_many({"stay0": 7, "target": b"m" * BIG_CRASH, "stay2": "x"}),
        state=big_state,
        may_drop="target",
        per_key=True,
        slow=True,
    ),
    CrashOp(  # dropping its own old value is not an eviction
        "big_overwrite_safe_set_evict",
        lambda d: d.safe_set("target", b"n" * BIG_CRASH),
        returns=True,
        state=big_state,
        evict=True,
        may_drop="target",
    ),
    CrashOp(
        "big_overwrite_evict",
        lambda d: d.set_forcible("target", b"n" * BIG_CRASH),
        returns=0,  # its own old value made the room: nothing evicted
        state=big_state,
        evict=True,
        may_drop="target",
        slow=True,
    ),
    # Sweeping the expired entry makes room beside the old value: the
    # overwrite is then one ordinary step, never leaving the key absent.
    CrashOp(
        "big_overwrite_after_sweep",
        lambda d: d.set("target", b"n" * 400_000),
        returns=True,
        state=big_expired_state,
        sweeps=True,
    ),
]


def full_state(d: shmdict.SharedDict) -> None:
    """Fill a 64 KiB dict to the last byte: an old 1000-byte target, then
    1000-byte values, then smaller ones until nothing fits. Then three runs
    of three adjacent 1000-byte values are made to expire, so a sweep can
    free about 3 KiB in one piece. Deterministic: nothing expires during
    the fill. A list of two items ("flist") comes after the target. A
    dict made with evict=True is filled with safe_set, which doesn't
    evict."""
    d.flush_all()
    d.set("target", b"o" * 1000)
    d.rpush("flist", b"a" * 100)
    d.rpush("flist", "b")
    put = d.safe_set if d.stats()["evict"] else d.set
    i = 0
    for size in (1000, 200, 40, 1):
        while True:
            try:
                put(f"fill{i}", b"f" * size)
            except shmdict.NoMemoryError:
                break
            i += 1
    expiring = [f"fill{j}" for j in range(min(i, 24)) if j % 8 in (3, 4, 5)]
    for k in expiring:
        d.expire(k, 0.001)
    wait_expired(d, expiring)
    # Full: no stripe has room left for even the smallest fill entry (a
    # 1-byte value), the last step of the fill; block sizes from layout.h.
    smallest = entry_block(len(f"fill{i}"), 1)
    stripes = d.stats()["stripes"]
    free = d.stats()["bytes_free"]
    assert free < stripes * smallest, f"the fill left too much room: {free} bytes"


def child_run(
    name: str, n: int, op: CrashOp, report: int | None = None
) -> None:  # pragma: no cover
    """In a forked child: attach, arm the crash hook, run the op, exit 0
    (3 if it raised something unexpected, 4 if it did not raise what it
    should, 6 if it returned the wrong value). If it lives, it writes to
    the fd `report` how many crash points the op passed."""
    code = 3
    try:
        c = shmdict.get(name)
        _core._crash_after(n)
        try:
            res = op.run(c)
            code = 4 if op.expect is not None else 0 if result_ok(op, res) else 6
            if code == 6:
                print(f"{op.name} returned {res!r:.200}", file=sys.stderr)
        except BaseException as e:
            code = 0 if op.expect is not None and isinstance(e, op.expect) else 5
            if code == 5:
                print(f"{op.name} raised {e!r:.200}", file=sys.stderr)
        if report is not None:
            os.write(report, str(n - _core._crash_after(0)).encode())
    finally:
        os._exit(code)


def fork_crash(name: str, n: int, op: CrashOp, report: int | None = None) -> bool:
    """Run op in a child that dies at crash point n. True if it died."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        child_run(name, n, op, report)
    status = wait_child(pid)
    if os.WIFSIGNALED(status):
        assert os.WTERMSIG(status) == signal.SIGKILL, f"child died of {status}"
        return True
    code = os.waitstatus_to_exitcode(status)
    assert code == 0, (
        f"{op.name}: child exited with {code} (3-5: wrong exception, "
        "6: wrong result; see its stderr)"
    )
    return False


@dataclass
class Reference:
    before: dict[str, tuple[str, str, str]]
    after: dict[str, tuple[str, str, str]]
    space_before: tuple[int, int, int]
    space_after: tuple[int, int, int]
    # The state before, once op.reclaims is reclaimed (else space_before).
    space_reclaimed: tuple[int, int, int]
    # The state before, without op.may_drop (else None).
    dropped: dict[str, tuple[str, str, str]] | None = None
    space_dropped: tuple[int, int, int] | None = None


def reference(
    d: shmdict.SharedDict, op: CrashOp, reset: Callable[[], None]
) -> Reference:
    """The states before and after op when nothing crashes."""
    sr = None
    dropped = sd = None
    if op.may_drop:
        reset()
        assert d.delete(op.may_drop) is True
        dropped, sd = snapshot(d), space(d)
    if op.reclaims:
        reset()
        before = snapshot(d)
        assert d.delete(op.reclaims) is False  # expired: reclaimed, not deleted
        assert snapshot(d) == before
        sr = space(d)
    reset()
    before, sb = snapshot(d), space(d)
    assert fork_crash(d.name, 0, op) is False
    after, sa = snapshot(d), space(d)
    assert d.verify() == []
    if op.changes:
        assert after != before, f"{op.name} changed nothing"
    else:
        assert after == before, f"{op.name} changed the visible state"
    if op.evicts:
        assert op.key in after, f"{op.name}: {op.key} was not written"
        assert set(after) - set(before) <= {op.key}
        assert set(before) - set(after), f"{op.name} evicted nothing"
    return Reference(before, after, sb, sa, sr or sb, dropped, sd)


def first_touch(d: shmdict.SharedDict, n: int) -> None:
    """The first call after a crash, varied: a lock-free read, a write to
    another key, a scan, or verify. Each must see a repaired dict."""
    kind = n % 4
    if kind == 0:
        assert d.get("stay1", 1.5) == 1.5  # absent after a flush
    elif kind == 1:
        assert d.delete("no-such-key") is False  # a write that changes nothing
    elif kind == 2:
        assert len(d.get_keys()) >= 0
    else:
        assert d.verify() == []


def check_after_crash(
    d: shmdict.SharedDict, op: CrashOp, ref: Reference, n: int, crashed: bool
) -> str:
    first_touch(d, n)
    problems = d.verify()
    assert problems == [], f"{op.name} crash point {n}: {problems}"
    now = snapshot(d)
    sp = space(d)
    keys = set(now) | set(ref.before) | set(ref.after)
    if now == ref.before:
        which = "old"
    elif now == ref.after:
        which = "new"
    elif now == ref.dropped:
        which = "dropped"
    elif op.per_key and all(
        now.get(k) in (ref.before.get(k), ref.after.get(k))
        or (k == op.may_drop and k not in now)
        for k in keys
    ):
        which = "dropped" if op.may_drop and op.may_drop not in now else "mix"
    elif (
        op.evicts
        and now.get(op.key) in (ref.before.get(op.key), ref.after.get(op.key))
        and all(
            now.get(k) in (ref.before.get(k), ref.after.get(k), None)
            for k in keys
            if k != op.key
        )
    ):
        # Evictions committed, each alone; the key written is as before
        # or as after (never absent if it was there).
        which = "new" if now.get(op.key) == ref.after.get(op.key) else "mix"
    else:

        def short(st: tuple[str, str, str] | None) -> str:
            return (
                "absent"
                if st is None
                else f"{st[0]} {st[1][:24]}...({len(st[1])}) ttl={st[2]}"
            )

        diff: dict[str, object] = {
            k: f"before {short(ref.before.get(k))} | after {short(ref.after.get(k))} | "
            f"now {short(now.get(k))}"
            for k in sorted(set(now) | set(ref.before) | set(ref.after))
            if now.get(k) not in (ref.before.get(k), ref.after.get(k))
        }
        if not diff:
            sorted_keys = sorted(set(now) | set(ref.before) | set(ref.after))
            old = [
                k
                for k in sorted_keys
                if now.get(k) == ref.before.get(k) != ref.after.get(k)
            ]
            new = [
                k
                for k in sorted_keys
                if now.get(k) == ref.after.get(k) != ref.before.get(k)
            ]
            diff = {
                "keys as before the write": old[:8] + (["..."] if len(old) > 8 else []),
                "keys as after it": new[:8] + (["..."] if len(new) > 8 else []),
            }
        pytest.fail(
            f"{op.name} crash point {n}: the state is neither the one before the "
            f"write nor the one after it (a mix): {diff}"
        )
    if not crashed:
        assert which == "new" or not op.changes
    if op.sweeps or op.evicts:
        # Expired entries may or may not have been reclaimed: they are not
        # visible, but they hold space; so do evicted ones. verify() above
        # checked the totals.
        pass
    elif which == "mix" or (which == "dropped" and op.per_key):
        pass  # part of the batch: verify() above checked the space totals
    elif which == "dropped":
        assert sp == ref.space_dropped, (
            f"{op.name} crash point {n}: space {sp} != {ref.space_dropped}"
        )
    elif op.space_between:
        lo = tuple(map(min, ref.space_before, ref.space_after))
        hi = tuple(map(max, ref.space_before, ref.space_after))
        assert all(a <= b <= c for a, b, c in zip(lo, sp, hi, strict=True)), (
            f"{op.name} crash point {n}: space {sp} is not between "
            f"{ref.space_before} and {ref.space_after}"
        )
    elif op.gc and which == "new":
        # The released list's items may still wait on the gc chain.
        pending = d.stats()["pending_free"]
        exp = ref.space_after
        assert sp[:2] == exp[:2], f"{op.name} crash point {n}: space {sp} != {exp}"
        assert sp[2] >= exp[2], f"{op.name} crash point {n}: space {sp} < {exp}"
        assert sp[2] == exp[2] or pending > 0, (
            f"{op.name} crash point {n}: {sp[2] - exp[2]} bytes used more than "
            f"after the op, and nothing pending: leaked"
        )
    elif op.changes:
        expected = ref.space_before if which == "old" else ref.space_after
        if which == "old" and sp == ref.space_reclaimed:
            expected = sp  # the reclaim of op.reclaims was committed alone
        assert sp == expected, f"{op.name} crash point {n}: space {sp} != {expected}"
    else:
        assert sp in (ref.space_before, ref.space_after), (
            f"{op.name} crash point {n}: space {sp} is neither "
            f"{ref.space_before} nor {ref.space_after}"
        )
    return which


def crash_sweep(
    d: shmdict.SharedDict, op: CrashOp, reset: Callable[[], None]
) -> tuple[int, dict[str, int]]:
    """Kill a child at crash point 1, 2, ... of op until it completes.
    Returns the number of points and how often the state was old/new."""
    ref = reference(d, op, reset)
    outcomes = {"old": 0, "new": 0, "mix": 0, "dropped": 0}
    for n in itertools.count(1):
        reset()
        rec = d.stats()["recoveries"]
        crashed = fork_crash(d.name, n, op)
        which = check_after_crash(d, op, ref, n, crashed)
        # One repair per lock the dead process held: one, or up to one per
        # stripe for a whole-dict or batch operation.
        got = d.stats()["recoveries"] - rec
        most = d.stats()["stripes"] if crashed else 0
        assert (1 if crashed else 0) <= got <= most, (
            f"{op.name} crash point {n}: recoveries went from {rec} to {rec + got}"
        )
        if not crashed:
            return n - 1, outcomes
        outcomes[which] += 1
        assert n < 5000, f"{op.name}: the crash hook never stops firing"
    raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def crash_tally() -> Iterator[dict[str, int]]:
    tally: dict[str, int] = {}
    yield tally
    if tally:
        record_figures(
            "crash_points",
            ops=len([k for k in tally if not k.startswith("recovery:")]),
            points=sum(v for k, v in tally.items() if not k.startswith("recovery:")),
            recovery_points=sum(
                v for k, v in tally.items() if k.startswith("recovery:")
            ),
            per_op=tally,
        )


def crash_dict(
    name_factory: Callable[[], str], op: CrashOp
) -> tuple[shmdict.SharedDict, Callable[[], None]]:
    """The dict op runs on, and the function that resets it."""
    if op.stripes:
        d = shmdict.new(name_factory(), 4 * MiB, stripes=op.stripes)
        assert d.stats()["stripes"] == op.stripes
    else:
        d = shmdict.new(
            name_factory(),
            shmdict.MIN_SIZE if op.full else MiB,
            evict=op.evict,
            # A state of its own may need the whole heap for one value.
            stripes=1 if op.state else None,
        )

    def reset() -> None:
        if op.state is not None:
            op.state(d)
        elif op.full:
            full_state(d)
        else:
            base_state(d)
        if op.prep is not None:
            op.prep(d)

    return d, reset


def crash_param(o: CrashOp) -> Any:
    marks: list[Any] = []
    if o.full or o.slow:
        # The full-dict ops refill a dict before every crash: slow under ASan.
        marks.append(pytest.mark.no_asan)
    return pytest.param(o, marks=marks, id=o.name)


@pytest.mark.parametrize("op", [crash_param(o) for o in CRASH_OPS])
def test_crash_points(
    name_factory: Callable[[], str], op: CrashOp, crash_tally: dict[str, int]
) -> None:
    """Die at every crash point of one kind of write; the dict stays whole."""
    d, reset = crash_dict(name_factory, op)
    try:
        points, outcomes = crash_sweep(d, op, reset)
        crash_tally[op.name] = points
        assert points >= 2, f"{op.name}: only {points} crash points"
        if op.redo:
            # flush_all records its intent before its first crash point;
            # whoever takes the lock next finishes it.
            assert outcomes["old"] == 0, outcomes
            assert outcomes["new"] > 0, outcomes
        elif op.changes:
            # The commit point lies inside the swept range: early deaths
            # roll back, late ones keep the write.
            assert outcomes["old"] > 0, outcomes
            assert outcomes["new"] > 0, outcomes
        if op.may_drop and not op.per_key:
            # The crash points between its two commits leave the key
            # absent; none of the others may.
            assert outcomes["dropped"] > 0, outcomes
        if op.name in ONE_STORE_OPS:
            # Stored alone, unlogged: only the point just before the store
            # leaves the old state (a logged word alone would give three).
            assert outcomes["old"] == 1, outcomes
        # Nothing leaks over all those crashes: flush gives everything back.
        d.flush_all()
        s = d.stats()
        assert (s["entries"], s["bytes_used"], s["expiring"]) == (0, 0, 0)
        assert s["bytes_free"] == s["capacity"]
        assert d.verify() == []
    finally:
        d.close()


def test_push_never_evicts_its_own_list(name: str) -> None:
    """The key being written is never evicted to make room for its own new
    value (as set protects it); a list that grows to fill an evicting dict
    must not be the one evicted, its items silently dropped. Deterministic:
    the list is the only thing stored, so making room can only evict it."""
    d = shmdict.new(name, shmdict.MIN_SIZE, evict=True)
    try:
        lengths = []
        for i in range(80):
            try:
                lengths.append(d.rpush("queue", b"%02d" % i + b"x" * 1000))
            except shmdict.NoMemoryError:
                lengths.append(0)
        assert d.verify() == []
        # Each push either adds one item or raises NoMemoryError; never
        # does the list start again from one item.
        grown = [n for n in lengths if n]
        assert grown == list(range(1, len(grown) + 1)), lengths
        assert d.stats()["evictions"] == 0
    finally:
        d.close()


RECOVERY_OPS = [
    "overwrite_big_grow",
    "delete",
    "set_new_ttl",
    "incr_with_exptime",
    "flush_all",
    "full_overwrite_fits_after_free",
    "cas_match_big",
    "incr_init_expired",
    "rpush_existing_big",
    "rpop_last",
    "lpop_middle",
    "evict_set_new",
    "big_overwrite_set",
]


def crash_count(d: shmdict.SharedDict, op: CrashOp, reset: Callable[[], None]) -> int:
    """How many crash points op passes from the state reset() makes: a
    child arms the hook too high to fire, runs op, and reports how much of
    the countdown it used."""
    reset()
    r, w = os.pipe()
    try:
        assert not fork_crash(d.name, 2**31 - 1, op, report=w)
    finally:
        os.close(w)
    with os.fdopen(r, "rb") as f:
        return int(f.read())


def recoverer_run(name: str, m: int) -> None:  # pragma: no cover - child
    """Attach and take the lock (which repairs the dead writer's change),
    dying at the m-th crash point of the repair or of the own write."""
    code = 3
    try:
        c = shmdict.get(name)
        _core._crash_after(m)
        c.delete("no-such-key")
        code = 0
    finally:
        os._exit(code)


@pytest.mark.no_asan
@pytest.mark.parametrize("opname", RECOVERY_OPS)
def test_crash_during_recovery(
    name_factory: Callable[[], str], opname: str, crash_tally: dict[str, int]
) -> None:
    """A writer dies at crash point n; the process that repairs it dies at
    every step of the repair in turn; the third process finds a whole dict.
    Replaying the undo log (or redoing a flush) must be idempotent."""
    op = next(o for o in CRASH_OPS if o.name == opname)
    d, reset = crash_dict(name_factory, op)
    try:
        ref = reference(d, op, reset)
        total_points = 0
        # The writer dies at a spread of 8 of its crash points; for each,
        # the repairer dies at each of its own in turn.
        points = crash_count(d, op, reset)
        for n in sorted({max(1, points * i // 8) for i in range(1, 9)}):
            reset()
            assert fork_crash(d.name, n, op)
            for m in itertools.count(1):
                if m > 1:
                    reset()  # recreate the same half-done write
                    assert fork_crash(d.name, n, op)
                pid = os.fork()
                if pid == 0:  # pragma: no cover - child
                    recoverer_run(d.name, m)
                status = wait_child(pid)
                died = os.WIFSIGNALED(status)
                if not died:
                    assert os.waitstatus_to_exitcode(status) == 0
                check_after_crash(d, op, ref, n, True)
                if not died:
                    break
                total_points += 1
                assert m < 5000
        crash_tally[f"recovery:{opname}"] = total_points
        assert total_points > 0
    finally:
        d.close()


def test_crash_hook_off_by_default_and_resettable(name: str) -> None:
    """_crash_after(0) disarms the hook; a disarmed hook never fires."""
    d = shmdict.new(name, MiB)
    try:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            code = 3
            try:
                c = shmdict.get(name)
                _core._crash_after(1)
                _core._crash_after(0)
                for i in range(100):
                    c.set(f"k{i}", i)
                c.flush_all()
                code = 0
            finally:
                os._exit(code)
        status = wait_child(pid)
        assert os.waitstatus_to_exitcode(status) == 0
        assert d.verify() == []
    finally:
        d.close()


# --------------------------------------------------------------------------
# owner killed


OWNER_SCRIPT = r"""
import os, sys, time
import shmdict
from shmdict import _core
name, mode = sys.argv[1], sys.argv[2]
d = shmdict.new(name, 1 << 20)
d["owner"] = os.getpid()
d["n"] = 0
for i in range(100):
    d[f"k{i}"] = i
sys.stdout.write("ready\n"); sys.stdout.flush()
if mode == "midwrite":
    sys.stdin.readline()
    _core._crash_after(7)
    d.set("k0", b"x" * 5000)  # dies holding the lock
    sys.exit(3)
time.sleep(3600)
"""


def _peer_loop(name: str, stop: Any, counter_key: str) -> None:  # pragma: no cover
    code = 3
    try:
        p = shmdict.get(name, lock_timeout=10)
        while not stop[0]:
            p.incr(counter_key, 1)
            p.set(f"peer{os.getpid()}", os.urandom(100))
            assert p.get("k5") == 5
        code = 0
    except shmdict.LockTimeout:
        code = 4
    finally:
        os._exit(code)


@pytest.mark.parametrize("mode", ["idle", "midwrite"])
def test_owner_killed(name: str, mode: str) -> None:
    """The creator is SIGKILLed (idle, or in the middle of a write while
    holding the lock). Its file stays; peers keep working; new() of the
    name fails while it lives and takes the name over once it is dead."""
    import subprocess

    env = dict(
        os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(shmdict.__file__))
    )
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER_SCRIPT, name, mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    peers: list[int] = []
    stop = mmap.mmap(-1, 4096)
    try:
        assert owner.stdout is not None
        assert owner.stdin is not None
        assert owner.stdout.readline() == "ready\n"
        with pytest.raises(FileExistsError):
            shmdict.new(name, MiB)  # the creator lives
        assert _core.creator_alive(shmdict.path_for(name)) is True
        for _ in range(2):
            pid = os.fork()
            if pid == 0:  # pragma: no cover - child
                _peer_loop(name, stop, "n")
            peers.append(pid)
        watcher = shmdict.get(name, lock_timeout=10)
        deadline = time.monotonic() + 30
        while cast(int, watcher.get("n", 0)) < 200:
            assert time.monotonic() < deadline, "peers made no progress"
            time.sleep(0.001)
        if mode == "midwrite":
            owner.stdin.write("go\n")
            owner.stdin.flush()
            assert owner.wait(30) == -signal.SIGKILL
        else:
            owner.kill()
            owner.wait(30)
        assert shmdict.exists(name), "a killed owner's file must stay"
        assert _core.creator_alive(shmdict.path_for(name)) is False
        # Peers keep working after the owner died (and after the repair of
        # its half-done write, in midwrite mode).
        n0 = cast(int, watcher.get("n"))
        deadline = time.monotonic() + 30
        while cast(int, watcher.get("n")) < n0 + 200:
            assert time.monotonic() < deadline, "peers stopped after the owner died"
            time.sleep(0.001)
        assert watcher.get("k0") == 0, "the owner's write in flight must be undone"
        assert all(watcher.get(f"k{i}") == i for i in range(100))
        assert watcher.verify() == []
        if mode == "midwrite":
            assert watcher.stats()["recoveries"] >= 1
        # A later new() takes the name over: a fresh, empty dict.
        fresh = shmdict.new(name, MiB)
        try:
            assert fresh.owner
            assert len(fresh) == 0
            assert fresh.verify() == []
            # The old dict lives on for the handles that have it open.
            assert watcher.get("k99") == 99
            stop[0] = 1
            for pid in peers:
                status = wait_child(pid)
                assert os.waitstatus_to_exitcode(status) == 0, "a peer failed"
            peers.clear()
            with pytest.raises(FileExistsError):
                shmdict.new(name, MiB)  # now the creator (us) lives
        finally:
            fresh.close()
        assert not shmdict.exists(name)
        watcher.close()
    finally:
        stop[0] = 1
        for pid in peers:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        if owner.poll() is None:
            owner.kill()
            owner.wait()


def test_takeover_race_has_one_winner(name: str) -> None:
    """Several processes call new() on the name of a dead creator at once:
    exactly one wins, the others get FileExistsError."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child: create, then die without closing
        try:
            h = shmdict.new(name, MiB)  # kept: its collection would remove it
            h["k"] = 1
        finally:
            os.kill(os.getpid(), signal.SIGKILL)
    wait_child(pid)
    assert shmdict.exists(name)
    go = mmap.mmap(-1, 4096)
    racers = []
    r, w = os.pipe()
    for _ in range(4):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            res = b"E"
            try:
                while not go[0]:
                    pass
                try:
                    h = shmdict.new(name, MiB)
                    res = b"W"
                    os.write(w, res)
                    time.sleep(1.0)  # hold the name while the others try
                    h.close()
                    os._exit(0)
                except FileExistsError:
                    res = b"L"
            finally:
                if res != b"W":
                    os.write(w, res)
                os._exit(0)
        racers.append(pid)
    os.close(w)
    go[0] = 1
    for pid in racers:
        wait_child(pid)
    results = b""
    while chunk := os.read(r, 16):
        results += chunk
    os.close(r)
    assert sorted(results) == sorted(b"WLLL"), results
    assert not shmdict.exists(name), "the winner's close removes its file"


# --------------------------------------------------------------------------
# waiters are woken after a kill


def _contender(name: str, i: int, ctl: mmap.mmap) -> None:  # pragma: no cover
    """incr in a loop; between calls, go idle (ctl[8+i] = 1) while ctl[0]."""
    code = 3
    try:
        h = shmdict.get(name, lock_timeout=60)
        while True:
            if ctl[0]:
                ctl[8 + i] = 1
                while ctl[0]:
                    time.sleep(0.0002)
                ctl[8 + i] = 0
            h.incr("c", 1)
    finally:
        os._exit(code)


WAKE_STALL = 30.0  # seconds with no waiter getting the lock: a lost wake-up


@pytest.mark.no_asan
def test_waiters_wake_after_kills(name: str) -> None:
    """Processes contend for the lock; one is SIGKILLed at a random moment
    and the others are then asked to go idle. Each must get the lock and
    finish its call: none may stay asleep while the lock is free.

    Regression: the waiter that an unlock wakes can be the process that is
    being killed. If a third process takes the lock on the fast path before
    the kernel runs the killed one's robust-list cleanup, the lock word has
    an owner again (without FUTEX_WAITERS), so the kernel wakes nobody, and
    the remaining waiters sleep in futex_wait until their timeout, or
    forever with lock_timeout=0, while the lock is free."""
    kills = env_int("SHMDICT_WAKEUP_KILLS", 1000)
    n = 4
    d = shmdict.new(name, MiB)
    ctl = mmap.mmap(-1, 4096)
    procs: dict[int, int] = {}
    rng = random.Random(env_int("SHMDICT_TORTURE_SEED", 1))

    def spawn(i: int) -> None:
        ctl[8 + i] = 0
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            _contender(name, i, ctl)
        procs[i] = pid

    try:
        d["c"] = 0
        for i in range(n):
            spawn(i)
        for k in range(kills):
            time.sleep(rng.uniform(0, 0.003))
            i = rng.randrange(n)
            os.kill(procs[i], signal.SIGKILL)
            wait_child(procs.pop(i))
            ctl[0] = 1
            # Progress, not speed: the deadline moves on whenever another
            # contender gets through, so a slow machine only takes longer.
            # A lost wake-up leaves a waiter asleep for its whole
            # lock_timeout (60 s), far past WAKE_STALL with nobody moving.
            others = [j for j in procs]
            waiting = [j for j in others if not ctl[8 + j]]
            deadline = time.monotonic() + WAKE_STALL
            while waiting:
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"after kill {k + 1}: contenders {waiting} are still waiting "
                        f"for the lock, {WAKE_STALL} s after the last one got it, "
                        f"and the lock words are {lock_words(d.path)} (0 = free): "
                        f"a lost wake-up"
                    )
                time.sleep(0.0005)
                still = [j for j in waiting if not ctl[8 + j]]
                if len(still) < len(waiting):
                    deadline = time.monotonic() + WAKE_STALL
                waiting = still
            assert d.verify() == []
            spawn(i)
            ctl[0] = 0
        record_figures("waiter_wakeups", kills=kills)
    finally:
        ctl[0] = 0
        for pid in procs.values():
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        d.close()

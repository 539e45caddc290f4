"""Model-based tests: random sequences of operations through several handles
on one dict, checked against a plain dict after every step, with verify().

DictMachine and SmallDictMachine: set/get/delete/incr/expire and the mapping
protocol through up to four handles, on a roomy and on a small dict.

FeatureMachine: the feature set (add, replace, cas, pop, setdefault, incr
with init, the list calls, get_many/set_many/delete_many and get_stale
without expiry), next to set/get/delete, against a plain dict whose values
are scalars or ``collections.deque`` for lists. Two handles share the dict:
the owner and a peer reopened with shmdict.get(). Rules write through
either; the invariant reads through both, compares everything with the
model and runs verify().

DictMachine and FeatureMachine run on every backend (dict_backend: shm,
redis, cluster; a peer of a RedisDict is a new connection to the same
namespace); SmallDictMachine is about a full 64 KiB dict, shm's alone.
"""

from __future__ import annotations

import pickle
from collections import deque
from typing import Union

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)

import shmdict

from .helpers import MiB
from .redis_fixtures import DictBackend
from .strategies import (
    INT64_MAX,
    INT64_MIN,
    Value,
    bulky_values,
    canon_map,
    deltas,
    incr_model,
    is_number,
    same_value,
    small_values,
)
from .strategies import (
    keys as key_strategy,
)

LONG = 1000.0  # never passes during a test run
RESOLUTION = 0.0011
MAX_HANDLES = 4
MISSING = object()

# An exptime argument: OMIT means "call without it".
OMIT = "omit"
set_exptimes = st.sampled_from([OMIT, 0, -1, 0.0, LONG, LONG / 2])
incr_exptimes = st.sampled_from([OMIT, None, 0, -5, LONG, LONG / 2])
expire_exptimes = st.sampled_from([0, -1, -0.5, LONG, LONG / 2, 2 * LONG])


class DictMachine(RuleBasedStateMachine):
    """One dict, several handles, and a model of what it must hold."""

    SIZE = MiB
    VALUES: st.SearchStrategy[Value] = small_values
    #: Whether a set may legitimately fail with NoMemoryError.
    NOMEM_OK = False

    keys = Bundle("keys")

    def __init__(self, backend: DictBackend) -> None:
        super().__init__()
        self.backend = backend
        self.owner: shmdict.SharedDict = backend.new(self.SIZE)
        self.name = self.owner.name
        self.handles: list[shmdict.SharedDict] = [self.owner]
        self.cur = 0
        self.model: dict[str, Value] = {}
        self.expiring: set[str] = set()
        self.nomem = 0

    @property
    def h(self) -> shmdict.SharedDict:
        return self.handles[self.cur]

    def _nomem(self, exc: shmdict.NoMemoryError) -> None:
        if not self.NOMEM_OK:
            raise AssertionError(
                "NoMemoryError in a dict that is nowhere near full"
            ) from exc
        self.nomem += 1

    # ------------------------------------------------------------ keys

    @rule(target=keys, k=key_strategy)
    def add_key(self, k: str) -> str:
        return k

    @rule(
        target=keys,
        items=st.lists(st.tuples(key_strategy, st.integers(0, 2**31)), max_size=25),
        exptime=set_exptimes,
    )
    def set_many(self, items: list[tuple[str, int]], exptime: float | str) -> object:
        """Grow the dict quickly; the keys join the bundle."""
        for k, v in items:
            self._set(k, v, exptime)
        return multiple(*(k for k, _ in items))

    # ------------------------------------------------------------ writes

    @rule(k=keys, v=VALUES, exptime=set_exptimes)
    def set(self, k: str, v: Value, exptime: float | str) -> None:
        self._set(k, v, exptime)

    def _set(self, k: str, v: Value, exptime: float | str) -> None:
        try:
            if exptime == OMIT:
                assert self.h.set(k, v) is True
            else:
                assert isinstance(exptime, (float, int))
                assert self.h.set(k, v, exptime) is True
        except shmdict.NoMemoryError as e:
            self._nomem(e)
            return
        self.model[k] = v
        if exptime != OMIT and isinstance(exptime, (float, int)) and exptime > 0:
            self.expiring.add(k)
        else:
            self.expiring.discard(k)

    @rule(k=keys, v=VALUES)
    def setitem(self, k: str, v: Value) -> None:
        try:
            self.h[k] = v
        except shmdict.NoMemoryError as e:
            self._nomem(e)
            return
        self.model[k] = v
        self.expiring.discard(k)

    @rule(k=keys)
    def delete(self, k: str) -> None:
        assert self.h.delete(k) is (k in self.model)
        self.model.pop(k, None)
        self.expiring.discard(k)

    @rule(k=keys)
    def delitem(self, k: str) -> None:
        if k in self.model:
            del self.h[k]
            del self.model[k]
            self.expiring.discard(k)
        else:
            with pytest.raises(KeyError):
                del self.h[k]

    @rule(k=keys, delta=deltas, exptime=incr_exptimes)
    def incr(self, k: str, delta: int | float, exptime: float | str | None) -> None:
        def call() -> int | float:
            if exptime == OMIT:
                return self.h.incr(k, delta)
            assert not isinstance(exptime, str)
            return self.h.incr(k, delta, exptime)

        if k not in self.model:
            with pytest.raises(KeyError):
                call()
            return
        old = self.model[k]
        if not is_number(old):
            with pytest.raises(TypeError):
                call()
            return
        assert isinstance(old, (int, float))
        expected = incr_model(old, delta)
        if expected is None:
            with pytest.raises(OverflowError):
                call()
            return
        try:
            got = call()
        except shmdict.NoMemoryError as e:
            self._nomem(e)
            return
        assert same_value(got, expected), (old, delta, got, expected)
        self.model[k] = expected
        if exptime not in (OMIT, None):
            assert isinstance(exptime, (float, int))
            if exptime > 0:
                self.expiring.add(k)
            else:
                self.expiring.discard(k)

    @rule(k=keys, exptime=expire_exptimes)
    def expire(self, k: str, exptime: float) -> None:
        assert self.h.expire(k, exptime) is (k in self.model)
        if k in self.model:
            if exptime > 0:
                self.expiring.add(k)
            else:
                self.expiring.discard(k)

    @rule()
    def flush_all(self) -> None:
        assert self.h.flush_all() is None  # type: ignore[func-returns-value]
        self.model.clear()
        self.expiring.clear()

    # ------------------------------------------------------------ reads

    @rule(k=keys)
    def get(self, k: str) -> None:
        got = self.h.get(k, MISSING)
        if k in self.model:
            assert same_value(got, self.model[k])
        else:
            assert got is MISSING

    @rule(k=keys)
    def getitem(self, k: str) -> None:
        if k in self.model:
            assert same_value(self.h[k], self.model[k])
        else:
            with pytest.raises(KeyError):
                self.h[k]

    @rule(k=keys)
    def contains(self, k: str) -> None:
        assert (k in self.h) is (k in self.model)

    @rule(k=keys)
    def ttl(self, k: str) -> None:
        t = self.h.ttl(k)
        if k not in self.model:
            assert t is None
        elif k in self.expiring:
            assert t is not None
            assert 0 < t <= 2 * LONG + RESOLUTION
        else:
            assert t == 0

    @rule()
    def get_keys(self) -> None:
        ks = self.h.get_keys()
        assert len(ks) == len(set(ks))
        assert sorted(ks) == sorted(self.model)

    @rule()
    def length(self) -> None:
        assert len(self.h) == len(self.model)

    # ------------------------------------------------------------ handles

    @precondition(lambda self: len(self.handles) < MAX_HANDLES)
    @rule()
    def open_peer(self) -> None:
        p = self.backend.peer(self.owner)
        assert p.owner is False
        self.handles.append(p)
        self.cur = len(self.handles) - 1

    @precondition(lambda self: len(self.handles) < MAX_HANDLES)
    @rule()
    def unpickle_peer(self) -> None:
        p = pickle.loads(pickle.dumps(self.h))
        assert p.owner is False
        self.handles.append(p)
        self.cur = len(self.handles) - 1

    @precondition(lambda self: len(self.handles) > 1)
    @rule(i=st.integers(min_value=0, max_value=MAX_HANDLES))
    def close_peer(self, i: int) -> None:
        idx = 1 + i % (len(self.handles) - 1)
        p = self.handles.pop(idx)
        p.close()
        assert p.closed
        if self.backend.shm:
            assert shmdict.exists(self.name)
        self.cur = 0 if self.cur == idx else min(self.cur, len(self.handles) - 1)

    @rule(i=st.integers(min_value=0, max_value=MAX_HANDLES))
    def switch(self, i: int) -> None:
        self.cur = i % len(self.handles)

    # ------------------------------------------------------------ checks

    @invariant()
    def matches_model(self) -> None:
        h = self.h
        assert canon_map(dict(h.items())) == canon_map(self.model)
        assert len(h) == len(self.model)
        assert h.verify() == []

    def teardown(self) -> None:
        for p in self.handles[1:]:
            p.close()
        self.owner.close()
        assert self.backend.gone(self.owner)


class SmallDictMachine(DictMachine):
    """A 64 KiB dict with bulky values: NoMemoryError happens and must
    leave the dict exactly as the model says."""

    SIZE = shmdict.MIN_SIZE
    VALUES = bulky_values
    NOMEM_OK = True

    @rule(k=DictMachine.keys, v=VALUES, exptime=set_exptimes)
    def set(self, k: str, v: Value, exptime: float | str) -> None:
        super().set(k, v, exptime)

    @rule(k=DictMachine.keys, v=VALUES)
    def setitem(self, k: str, v: Value) -> None:
        super().setitem(k, v)

    @rule(
        target=DictMachine.keys,
        items=st.lists(st.tuples(key_strategy, bulky_values), max_size=10),
        exptime=set_exptimes,
    )
    def set_many_bulky(
        self, items: list[tuple[str, Value]], exptime: float | str
    ) -> object:
        for k, v in items:
            self._set(k, v, exptime)
        return multiple(*(k for k, _ in items))


# At least 100 machines of 80 steps; more under a bigger profile
# (HYPOTHESIS_PROFILE=thorough).
_profile = settings.default  # the loaded profile
assert _profile is not None
MACHINE_SETTINGS = settings(
    _profile,
    max_examples=max(100, _profile.max_examples),
    stateful_step_count=80,
    deadline=None,
)


def test_dict_machine(dict_backend: DictBackend) -> None:
    # hypothesis annotates the argument as type[RuleBasedStateMachine], but
    # it documents (and calls) it as any zero-argument factory.
    run_state_machine_as_test(
        lambda: DictMachine(dict_backend),  # type: ignore[arg-type]
        settings=MACHINE_SETTINGS,
    )


@pytest.mark.shm_only("a 64 KiB dict that fills up: NoMemoryError of shm's size")
def test_small_dict_machine(dict_backend: DictBackend) -> None:
    # hypothesis annotates the argument as type[RuleBasedStateMachine], but
    # it documents (and calls) it as any zero-argument factory.
    run_state_machine_as_test(
        lambda: SmallDictMachine(dict_backend),  # type: ignore[arg-type]
        settings=MACHINE_SETTINGS,
    )


# ---------------------------------------------------------------- the feature set

Item = Union[Value, "deque[Value]"]

#: Few keys, so that rules meet on the same ones often.
KEYS = st.sampled_from(["a", "b", "c", "d", "e", "\u20ac"])
KEY_LISTS = st.lists(KEYS, max_size=6)
INITS = st.one_of(
    st.integers(INT64_MIN, INT64_MAX),
    st.sampled_from([0, -1, INT64_MAX, INT64_MIN]),
    st.floats(allow_nan=False, allow_infinity=False),
)
#: Values that are sometimes equal to what a key holds, for cas.
CAS_EXPECTED = st.one_of(small_values, st.just(MISSING))


class FeatureMachine(RuleBasedStateMachine):
    def __init__(self, backend: DictBackend) -> None:
        super().__init__()
        self.backend = backend
        # Either backend's dict; typed as the API the machine calls.
        self.owner: shmdict.SharedDict = backend.new(MiB)
        self.name = self.owner.name
        self.peer: shmdict.SharedDict = backend.peer(self.owner)
        self.use_peer = False
        self.model: dict[str, Item] = {}

    @property
    def h(self) -> shmdict.SharedDict:
        return self.peer if self.use_peer else self.owner

    def is_list(self, k: str) -> bool:
        return isinstance(self.model.get(k), deque)

    def scalar(self, k: str) -> Value:
        v = self.model[k]
        assert not isinstance(v, deque)
        return v

    # ------------------------------------------------------------ handles

    @rule(peer=st.booleans())
    def switch(self, peer: bool) -> None:
        self.use_peer = peer

    # ------------------------------------------------------------ plain

    @rule(k=KEYS, v=small_values)
    def set(self, k: str, v: Value) -> None:
        assert self.h.set(k, v) is True
        self.model[k] = v

    @rule(k=KEYS)
    def get(self, k: str) -> None:
        if self.is_list(k):
            with pytest.raises(TypeError):
                self.h.get(k)
            return
        got = self.h.get(k, MISSING)
        if k in self.model:
            assert same_value(got, self.model[k])
        else:
            assert got is MISSING

    @rule(k=KEYS)
    def delete(self, k: str) -> None:
        assert self.h.delete(k) is (k in self.model)
        self.model.pop(k, None)

    # ------------------------------------------------------------ conditional

    @rule(k=KEYS, v=small_values)
    def add(self, k: str, v: Value) -> None:
        ok = k not in self.model
        assert self.h.add(k, v) is ok
        if ok:
            self.model[k] = v

    @rule(k=KEYS, v=small_values)
    def replace(self, k: str, v: Value) -> None:
        ok = k in self.model
        assert self.h.replace(k, v) is ok
        if ok:
            self.model[k] = v

    @rule(k=KEYS, expected=CAS_EXPECTED, new=small_values)
    def cas(self, k: str, expected: object, new: Value) -> None:
        if self.is_list(k):
            with pytest.raises(TypeError):
                self.h.cas(k, None, new)
            return
        if expected is MISSING:
            # Use what the key holds, so that cas succeeds now and then.
            expected = self.model.get(k)
        assert expected is not MISSING
        assert not isinstance(expected, deque)
        ok = (
            k in self.model
            and type(self.model[k]) is type(expected)
            and self.model[k] == expected
        )
        assert self.h.cas(k, expected, new) is ok  # type: ignore[arg-type]
        if ok:
            self.model[k] = new

    @rule(k=KEYS, with_default=st.booleans())
    def pop(self, k: str, with_default: bool) -> None:
        if self.is_list(k):
            with pytest.raises(TypeError):
                self.h.pop(k, None)
            return
        if k not in self.model:
            if with_default:
                assert self.h.pop(k, "dflt") == "dflt"
            else:
                with pytest.raises(KeyError):
                    self.h.pop(k)
            return
        got = self.h.pop(k, "dflt") if with_default else self.h.pop(k)
        assert same_value(got, self.model.pop(k))

    @rule(k=KEYS, v=small_values)
    def setdefault(self, k: str, v: Value) -> None:
        if self.is_list(k):
            with pytest.raises(TypeError):
                self.h.setdefault(k, v)
            return
        want = self.model.setdefault(k, v)
        assert same_value(self.h.setdefault(k, v), want)

    @rule(k=KEYS, delta=deltas, init=st.one_of(st.none(), INITS))
    def incr(self, k: str, delta: int | float, init: int | float | None) -> None:
        if self.is_list(k):
            with pytest.raises(TypeError):
                self.h.incr(k, delta, init=init)
            return
        if k not in self.model:
            if init is None:
                with pytest.raises(KeyError):
                    self.h.incr(k, delta)
                return
            start: Value = init
        else:
            start = self.scalar(k)
        if not is_number(start):
            with pytest.raises(TypeError):
                self.h.incr(k, delta, init=init)
            return
        assert isinstance(start, (int, float))
        want = incr_model(start, delta)
        if want is None:
            with pytest.raises(OverflowError):
                self.h.incr(k, delta, init=init)
            return
        got = self.h.incr(k, delta, init=init)
        assert same_value(got, want), (start, delta, got, want)
        self.model[k] = want

    # ------------------------------------------------------------ stale

    @rule(k=KEYS)
    def get_stale(self, k: str) -> None:
        if self.is_list(k):
            with pytest.raises(TypeError):
                self.h.get_stale(k)
            return
        got = self.h.get_stale(k)
        if k in self.model:
            assert got is not None
            assert same_value(got[0], self.model[k])
            assert got[1] is False
        else:
            assert got is None

    # ------------------------------------------------------------ lists

    @rule(k=KEYS, v=small_values, left=st.booleans())
    def push(self, k: str, v: Value, left: bool) -> None:
        fn = self.h.lpush if left else self.h.rpush
        if k in self.model and not self.is_list(k):
            with pytest.raises(TypeError):
                fn(k, v)
            return
        q = self.model.setdefault(k, deque())
        assert isinstance(q, deque)
        if left:
            q.appendleft(v)
        else:
            q.append(v)
        assert fn(k, v) == len(q)

    @rule(k=KEYS, left=st.booleans())
    def pop_item(self, k: str, left: bool) -> None:
        fn = self.h.lpop if left else self.h.rpop
        if k in self.model and not self.is_list(k):
            with pytest.raises(TypeError):
                fn(k)
            return
        if k not in self.model:
            assert fn(k) is None
            return
        q = self.model[k]
        assert isinstance(q, deque)
        want = q.popleft() if left else q.pop()
        assert same_value(fn(k), want)
        if not q:
            del self.model[k]
            assert k not in self.h

    @rule(k=KEYS)
    def llen(self, k: str) -> None:
        if k in self.model and not self.is_list(k):
            with pytest.raises(TypeError):
                self.h.llen(k)
            return
        q = self.model.get(k, deque())
        assert isinstance(q, deque)
        assert self.h.llen(k) == len(q)

    # ------------------------------------------------------------ batches

    @rule(ks=KEY_LISTS)
    def get_many(self, ks: list[str]) -> None:
        if any(self.is_list(k) for k in ks):
            with pytest.raises(TypeError):
                self.h.get_many(ks)
            return
        want = {k: self.model[k] for k in ks if k in self.model}
        assert canon_map(self.h.get_many(ks)) == canon_map(want)

    @rule(items=st.dictionaries(KEYS, small_values, max_size=4))
    def set_many(self, items: dict[str, Value]) -> None:
        assert self.h.set_many(items) is None  # type: ignore[func-returns-value]
        self.model.update(items)

    @rule(ks=KEY_LISTS)
    def delete_many(self, ks: list[str]) -> None:
        present = {k for k in ks if k in self.model}
        assert self.h.delete_many(ks) == len(present)
        for k in present:
            del self.model[k]

    @rule()
    def flush_all(self) -> None:
        self.h.flush_all()
        self.model.clear()

    # ------------------------------------------------------------ checks

    @invariant()
    def matches_model(self) -> None:
        scalars = {k: v for k, v in self.model.items() if not isinstance(v, deque)}
        lists = {k: v for k, v in self.model.items() if isinstance(v, deque)}
        for h in (self.owner, self.peer):
            assert sorted(h.get_keys()) == sorted(self.model)
            assert len(h) == len(self.model)
            assert canon_map(h.get_many(list(scalars))) == canon_map(scalars)
            for k, q in lists.items():
                assert h.llen(k) == len(q)
        st_ = self.owner.stats()
        assert st_["entries"] == len(self.model)
        assert st_["expiring"] == 0
        assert self.peer.verify() == []

    def teardown(self) -> None:
        self.peer.close()
        self.owner.close()
        assert self.backend.gone(self.owner)


FEATURE_MACHINE_SETTINGS = settings(
    _profile,
    max_examples=max(75, _profile.max_examples),
    stateful_step_count=30,
    deadline=None,
)


def test_feature_machine(dict_backend: DictBackend) -> None:
    # hypothesis annotates the argument as type[RuleBasedStateMachine], but
    # it documents (and calls) it as any zero-argument factory.
    run_state_machine_as_test(
        lambda: FeatureMachine(dict_backend),  # type: ignore[arg-type]
        settings=FEATURE_MACHINE_SETTINGS,
    )

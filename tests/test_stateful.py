"""Model-based tests: random sequences of operations through several handles
on one dict, checked against a plain dict after every step, with verify().
"""

from __future__ import annotations

import pickle
from collections.abc import Callable

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

from .conftest import MiB
from .strategies import (
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

    def __init__(self, make_name: Callable[[], str]) -> None:
        super().__init__()
        self.name = make_name()
        self.owner = shmdict.new(self.name, self.SIZE)
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
        p = shmdict.get(self.name)
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
        assert not shmdict.exists(self.name)


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


def test_dict_machine(name_factory: Callable[[], str]) -> None:
    # hypothesis annotates the argument as type[RuleBasedStateMachine], but
    # it documents (and calls) it as any zero-argument factory.
    run_state_machine_as_test(
        lambda: DictMachine(name_factory),  # type: ignore[arg-type]
        settings=MACHINE_SETTINGS,
    )


def test_small_dict_machine(name_factory: Callable[[], str]) -> None:
    # hypothesis annotates the argument as type[RuleBasedStateMachine], but
    # it documents (and calls) it as any zero-argument factory.
    run_state_machine_as_test(
        lambda: SmallDictMachine(name_factory),  # type: ignore[arg-type]
        settings=MACHINE_SETTINGS,
    )

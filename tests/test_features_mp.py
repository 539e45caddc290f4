"""The feature set across real processes (fork and spawn): add, incr with
init, cas loops, setdefault, pop, producer/consumer lists, batch snapshots
and an evicting dict under several writers.

Child entry points are module-level functions so that spawn can import
them. Children report failure through their exit code (and a traceback on
stderr) and their results through the dict itself; every join has a
deadline. Nothing asserts timing.
"""

from __future__ import annotations

import multiprocessing
import time
from array import array
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

import shmdict

SharedDict = shmdict.SharedDict

MiB = 1 << 20
START_METHODS = ["fork", "spawn"]
JOIN_TIMEOUT = 60.0
BARRIER_TIMEOUT = 30.0
LONG = 1000.0


# ---------------------------------------------------------------- helpers


def _ctx(method: str) -> Any:
    # Any: the stubs only give a BaseContext, which lacks Process & co.
    return multiprocessing.get_context(method)


def run_procs(
    d: SharedDict,
    method: str,
    target: Callable[..., None],
    args_list: Sequence[tuple[Any, ...]],
    timeout: float = JOIN_TIMEOUT,
) -> None:
    """Start one process per args tuple; once all have reached the start
    barrier, let them go; join them all by a deadline; expect exit 0."""
    d["ready"] = 0
    d["go"] = False
    ctx = _ctx(method)
    procs = [ctx.Process(target=target, args=a) for a in args_list]
    for p in procs:
        p.start()
    try:
        end = time.monotonic() + BARRIER_TIMEOUT
        while d.get("ready") != len(procs):
            if time.monotonic() > end or not any(p.is_alive() for p in procs):
                break
            time.sleep(0.002)
        d["go"] = True
        deadline = time.monotonic() + timeout
        for p in procs:
            p.join(max(0.0, deadline - time.monotonic()))
    finally:
        hung = [p for p in procs if p.is_alive()]
        for p in hung:
            p.kill()
            p.join(5)
    assert not hung, f"{len(hung)} child process(es) did not finish in {timeout} s"
    codes = [p.exitcode for p in procs]
    assert codes == [0] * len(procs), f"exit codes {codes}"


def _start_barrier(h: SharedDict) -> None:
    """Children: announce readiness, then wait for the parent's go."""
    h.incr("ready", 1)
    end = time.monotonic() + BARRIER_TIMEOUT
    while not h.get("go"):
        if time.monotonic() > end:
            raise AssertionError("no go from the parent")
        time.sleep(0.0005)


def _ints(b: object) -> list[int]:
    assert isinstance(b, bytes)
    a = array("q")
    a.frombytes(b)
    return a.tolist()


def _pack(xs: Sequence[int]) -> bytes:
    return array("q", xs).tobytes()


@pytest.fixture
def big(name: str) -> Iterator[SharedDict]:
    """An 8 MiB dict owned by this process."""
    sd = shmdict.new(name, 8 * MiB)
    try:
        yield sd
    finally:
        sd.close()


# ---------------------------------------------------------------- add


ADD_ROUNDS = 2000


def _add_worker(name: str, wid: int) -> None:
    with shmdict.get(name) as h:
        _start_barrier(h)
        mine = 0
        for r in range(ADD_ROUNDS):
            if h.add(f"k{r}", wid):
                mine += 1
                h.incr(f"wins{r}", 1, init=0)
                h.set(f"by{r}", wid)
        h.set(f"mine{wid}", mine)


@pytest.mark.parametrize("method", START_METHODS)
def test_add_has_exactly_one_winner(big: SharedDict, method: str) -> None:
    n = 4
    run_procs(big, method, _add_worker, [(big.name, w) for w in range(n)])
    for r in range(ADD_ROUNDS):
        assert big.get(f"wins{r}") == 1, r
        winner = big[f"k{r}"]
        assert winner in range(n)
        assert big[f"by{r}"] == winner
    assert sum(big[f"mine{w}"] for w in range(n)) == ADD_ROUNDS  # type: ignore[misc]
    assert big.verify() == []


# ---------------------------------------------------------------- incr init


INCR_KEYS = 20
INCR_REPS = 500


def _incr_init_worker(name: str, wid: int) -> None:
    with shmdict.get(name) as h:
        _start_barrier(h)
        for _i in range(INCR_REPS):
            for j in range(INCR_KEYS):
                # Offset the order per worker so they meet on every key.
                k = (j + wid * 7) % INCR_KEYS
                h.incr(f"c{k}", 1, init=0)
                h.incr(f"f{k}", 0.5, init=100.0, init_ttl=LONG)
            h.incr("big", 3, init=10)


@pytest.mark.parametrize("method", START_METHODS)
def test_incr_init_on_missing_keys_is_exact(big: SharedDict, method: str) -> None:
    n = 4
    run_procs(big, method, _incr_init_worker, [(big.name, w) for w in range(n)])
    for k in range(INCR_KEYS):
        c = big[f"c{k}"]
        assert type(c) is int
        assert c == n * INCR_REPS
        f = big[f"f{k}"]
        assert type(f) is float
        assert f == 100.0 + 0.5 * n * INCR_REPS
        t = big.ttl(f"f{k}")
        assert t is not None
        assert 0 < t <= LONG + 0.0011
        assert big.ttl(f"c{k}") == 0
    assert big["big"] == 10 + 3 * n * INCR_REPS
    assert big.verify() == []


# ---------------------------------------------------------------- cas


CAS_REPS = 1500


def _cas_worker(name: str, wid: int) -> None:
    with shmdict.get(name) as h:
        _start_barrier(h)
        h.setdefault("n", 0)
        h.setdefault("s", "")
        retries = 0
        for _ in range(CAS_REPS):
            while True:
                v = h.get("n")
                assert type(v) is int
                if h.cas("n", v, v + 1):
                    break
                retries += 1
            # A str counter: each success appends one character.
            while True:
                s = h.get("s")
                assert isinstance(s, str)
                if h.cas("s", s, s + "x"):
                    break
        h.set(f"retries{wid}", retries)


@pytest.mark.parametrize("method", START_METHODS)
def test_cas_increment_loops_are_exact(big: SharedDict, method: str) -> None:
    n = 4
    run_procs(big, method, _cas_worker, [(big.name, w) for w in range(n)])
    assert big["n"] == n * CAS_REPS
    assert type(big["n"]) is int
    assert big["s"] == "x" * (n * CAS_REPS)
    assert all(isinstance(big[f"retries{w}"], int) for w in range(n))
    assert big.verify() == []


# ---------------------------------------------------------------- setdefault, pop


SD_ROUNDS = 1000


def _setdefault_worker(name: str, wid: int) -> None:
    with shmdict.get(name) as h:
        _start_barrier(h)
        seen = [h.setdefault(f"s{r}", wid * 1000 + r) for r in range(SD_ROUNDS)]
        assert all(type(v) is int for v in seen)
        h.set(f"seen{wid}", _pack(seen))  # type: ignore[arg-type]


@pytest.mark.parametrize("method", START_METHODS)
def test_setdefault_everyone_sees_the_same_value(big: SharedDict, method: str) -> None:
    n = 4
    run_procs(big, method, _setdefault_worker, [(big.name, w) for w in range(n)])
    seen = [_ints(big[f"seen{w}"]) for w in range(n)]
    for r in range(SD_ROUNDS):
        stored = big[f"s{r}"]
        assert isinstance(stored, int)
        assert stored % 1000 == r
        assert [s[r] for s in seen] == [stored] * n, r
    assert big.verify() == []


POP_KEYS = 3000


def _pop_worker(name: str, wid: int) -> None:
    with shmdict.get(name) as h:
        _start_barrier(h)
        got: list[int] = []
        order = range(POP_KEYS) if wid % 2 == 0 else range(POP_KEYS - 1, -1, -1)
        for i in order:
            v = h.pop(f"p{i}", None)
            if v is not None:
                assert v == i * 3
                got.append(i)
        h.set(f"got{wid}", _pack(got))


@pytest.mark.parametrize("method", START_METHODS)
def test_pop_hands_each_item_to_one_process(big: SharedDict, method: str) -> None:
    n = 4
    big.set_many({f"p{i}": i * 3 for i in range(POP_KEYS)})
    run_procs(big, method, _pop_worker, [(big.name, w) for w in range(n)])
    got = Counter(i for w in range(n) for i in _ints(big[f"got{w}"]))
    assert got == Counter(range(POP_KEYS))
    assert not any(f"p{i}" in big for i in range(POP_KEYS))
    assert big.verify() == []


# ---------------------------------------------------------------- lists


ITEMS_PER_PRODUCER = 5000


def _producer(name: str, wid: int, push: str) -> None:
    with shmdict.get(name) as h:
        _start_barrier(h)
        fn = getattr(h, push)
        for i in range(ITEMS_PER_PRODUCER):
            # Every third item is a str, so items of several types and sizes
            # travel; all encode (producer, index).
            item = wid * 1_000_000 + i
            fn("q", item if i % 3 else f"{item}:" + "p" * (i % 50))
        h.incr("producers_done", 1, init=0)


def _consumer(name: str, cid: int, pop: str, n_producers: int) -> None:
    with shmdict.get(name) as h:
        _start_barrier(h)
        fn = getattr(h, pop)
        got: list[int] = []
        end = time.monotonic() + JOIN_TIMEOUT
        while True:
            done = h.get("producers_done", 0) == n_producers
            item = fn("q")
            if item is None:
                if done:
                    break  # every item was pushed before done was read
                if time.monotonic() > end:
                    raise AssertionError("consumer gave up waiting")
                time.sleep(0.0002)
                continue
            if isinstance(item, str):
                num, _, pad = item.partition(":")
                assert pad == "p" * ((int(num) % 1_000_000) % 50)
                got.append(int(num))
            else:
                assert type(item) is int
                got.append(item)
        h.set(f"res{cid}", _pack(got))


@pytest.mark.parametrize("ends", [("rpush", "lpop"), ("lpush", "rpop")])
@pytest.mark.parametrize("method", START_METHODS)
def test_producers_and_consumers_share_a_queue(
    big: SharedDict, method: str, ends: tuple[str, str]
) -> None:
    push, pop = ends
    n_prod, n_cons = 3, 3
    args: list[tuple[Any, ...]] = [(big.name, w, push) for w in range(n_prod)]
    run_procs(
        big,
        method,
        _dispatch,
        [("p", *a) for a in args]
        + [("c", big.name, c, pop, n_prod) for c in range(n_cons)],
    )
    results = [_ints(big[f"res{c}"]) for c in range(n_cons)]
    everything = Counter(x for r in results for x in r)
    want = Counter(
        w * 1_000_000 + i for w in range(n_prod) for i in range(ITEMS_PER_PRODUCER)
    )
    assert everything == want  # each item consumed exactly once
    # The queue is FIFO: each consumer sees each producer's items in order.
    for r in results:
        for w in range(n_prod):
            mine = [x for x in r if x // 1_000_000 == w]
            assert mine == sorted(mine)
    assert "q" not in big
    assert big.llen("q") == 0
    big.set("drain", 0)
    assert big.verify() == []


def _dispatch(kind: str, *args: Any) -> None:
    if kind == "p":
        _producer(*args)
    else:
        _consumer(*args)


# ---------------------------------------------------------------- batches


BATCH_KEYS = ["a", "b", "c", "d"]


BATCH_READERS = 2


def _batch_writer(name: str, reps: int) -> None:
    with shmdict.get(name) as h:
        _start_barrier(h)
        # At least `reps` batches, and on until every reader has seen a full
        # batch while the writer was still writing (else a reader scheduled
        # late could legitimately count 0, and the test would check nothing).
        end = time.monotonic() + BARRIER_TIMEOUT
        i = 0
        while i < reps or not all(h.get(f"saw{r}") for r in range(BATCH_READERS)):
            if i >= reps and time.monotonic() > end:
                break  # the parent's `seen > 0` check then fails
            if i % 5 == 4:
                n = h.delete_many(BATCH_KEYS)
                assert n in (0, len(BATCH_KEYS))
            else:
                # Values of different sizes, so some are not overwritten in
                # place.
                h.set_many({k: f"{i}:" + "v" * (i % 200) for k in BATCH_KEYS})
            i += 1
        h.set("writer_done", True)


def _batch_reader(name: str, rid: int) -> None:
    with shmdict.get(name) as h:
        _start_barrier(h)
        seen = 0
        while not h.get("writer_done"):
            snap = h.get_many(BATCH_KEYS)
            # All or nothing, and all from the same set_many.
            assert len(snap) in (0, len(BATCH_KEYS)), snap
            assert len(set(snap.values())) <= 1, snap
            if snap and not seen:
                h.set(f"saw{rid}", True)
            seen += bool(snap)
        h.set(f"seen{rid}", seen)


@pytest.mark.parametrize("method", START_METHODS)
def test_batches_are_atomic_to_other_processes(big: SharedDict, method: str) -> None:
    run_procs(
        big,
        method,
        _batch_dispatch,
        [("w", big.name, 20000)] + [("r", big.name, r) for r in range(BATCH_READERS)],
    )
    assert big["writer_done"] is True
    for r in range(BATCH_READERS):
        # Each reader saw full batches while the writer wrote.
        seen = big[f"seen{r}"]
        assert isinstance(seen, int)
        assert seen > 0, f"reader {r} saw no batch"
        assert big[f"saw{r}"] is True
    assert big.verify() == []


def _batch_dispatch(kind: str, name: str, arg: int) -> None:
    if kind == "w":
        _batch_writer(name, arg)
    else:
        _batch_reader(name, arg)


# ---------------------------------------------------------------- eviction


def _evict_worker(ctl_name: str, name: str, wid: int, reps: int) -> None:
    # The start barrier lives in a plain dict: churn here could evict it.
    with shmdict.get(ctl_name) as ctl:
        _start_barrier(ctl)
    with shmdict.get(name) as h:
        for i in range(reps):
            k = f"w{wid}:{i}"
            v = b"%d" % i * (1 + i % 300)
            h.set(k, v)  # never NoMemoryError: every value fits
            got = h.get(k)
            assert got is None or got == v  # another process may evict it
            if i % 10 == 0:
                h.incr(f"ctr{wid}", 1, init=0)
                h.add(f"a{wid}:{i % 50}", i)


@pytest.mark.parametrize("method", START_METHODS)
def test_evicting_dict_under_several_writers(
    big: SharedDict, name_factory: Callable[[], str], method: str
) -> None:
    with shmdict.new(name_factory(), shmdict.MIN_SIZE, evict=True) as d:
        n = 3
        run_procs(
            big,
            method,
            _evict_worker,
            [(big.name, d.name, w, 2000) for w in range(n)],
        )
        st = d.stats()
        assert st["evictions"] > 0
        assert d.verify() == []
        assert len(d) == len(d.get_keys()) == st["entries"]
        # Every key still there holds what its writer stored.
        survivors = 0
        for k, v in d.get_many(d.get_keys()).items():
            if k.startswith("w") and ":" in k:
                i = int(k.partition(":")[2])
                assert v == b"%d" % i * (1 + i % 300), k
                survivors += 1
            elif k.startswith("ctr"):
                assert type(v) is int
                assert v >= 1
            elif k.startswith("a"):
                assert type(v) is int
                assert v % 10 == 0
        assert survivors > 0

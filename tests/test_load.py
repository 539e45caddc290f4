"""Load: processes run mixed operations for a bounded time; then a model
check. Each process owns its keys and keeps a model of them, so every read
of its own key must match exactly while everyone else hammers the dict;
shared counters are incremented by all and must sum exactly; reads of other
processes' keys must be well-formed, self-checking values. At the end the
dict verifies, every process finds its keys as its model says, and deleting
everything gives every byte back.

    SHMDICT_LOAD_SECONDS   how long the workers run (default 5 per case)
    SHMDICT_LOAD_PROCS     worker processes (default 4)
    SHMDICT_FIGURES        append a JSON line of figures to this file
"""

from __future__ import annotations

import collections
import json
import os
import random
import signal
import time
import zlib
from typing import Any

import pytest

import shmdict

from .figures import env_int, record_figures

MiB = 1 << 20
KEYS = 150
COUNTERS = 8
MIN_OPS = 200  # operations each worker does at least, however slow the machine
PROGRESS_DEADLINE = 60.0  # seconds past the run's end to get there
LONG = 10**6


def make_value(owner: int, k: int, seq: int, rng: random.Random) -> shmdict.Value:
    kind = rng.random()
    if kind < 0.2:
        return rng.randrange(-(2**62), 2**62)
    if kind < 0.3:
        return rng.uniform(-1e9, 1e9)
    if kind < 0.35:
        return rng.choice([None, True, False])
    size = rng.choice([0, 10, 50, 300, 2000, 12000])
    head = f"{owner}:{k}:{seq}:".encode()
    body = head + rng.randbytes(size)
    raw = body + zlib.crc32(body).to_bytes(4, "little")
    if kind < 0.5:
        return raw.hex()  # str
    return raw


def well_formed(v: object, owner: int | None = None) -> bool:
    if isinstance(v, str):
        try:
            v = bytes.fromhex(v)
        except ValueError:
            return False
    if isinstance(v, bytes):
        body, crc = v[:-4], v[-4:]
        if zlib.crc32(body).to_bytes(4, "little") != crc:
            return False
        return owner is None or body.startswith(f"{owner}:".encode())
    return v is None or isinstance(v, (bool, int, float))


def same(a: object, b: object) -> bool:
    return type(a) is type(b) and (
        a == b or (isinstance(a, float) and a != a and b != b)
    )


def worker(
    name: str, me: int, nprocs: int, seconds: float, wfd: int
) -> None:  # pragma: no cover
    """Run mixed operations until the deadline; then check every own key
    against the model and report counts and counter sums."""
    out: dict[str, Any] = {"me": me, "errors": []}
    code = 0
    try:
        rng = random.Random(me * 7919 + os.getpid())
        d = shmdict.get(name, lock_timeout=30)
        model: dict[str, shmdict.Value] = {}
        lists: dict[str, collections.deque[int]] = {}
        sums = [0] * COUNTERS
        ops: collections.Counter[str] = collections.Counter()
        has = {
            m: hasattr(d, m)
            for m in (
                "add",
                "cas",
                "pop",
                "setdefault",
                "rpush",
                "lpop",
                "get_many",
                "set_many",
            )
        }
        seq = 0

        def check(ok: bool, what: str) -> None:
            if not ok:
                out["errors"].append(what)
                raise AssertionError(what)

        # Run for `seconds` and at least MIN_OPS operations, however long a
        # loaded machine takes for those (up to a generous deadline).
        t_end = time.monotonic() + seconds
        give_up = t_end + PROGRESS_DEADLINE
        while time.monotonic() < t_end or sum(ops.values()) < MIN_OPS:
            if time.monotonic() >= give_up:
                n = sum(ops.values())
                check(False, f"only {n} operations in {seconds + PROGRESS_DEADLINE} s")
            for _ in range(50):
                seq += 1
                k = rng.randrange(KEYS)
                key = f"p{me}:{k}"
                r = rng.random()
                if r < 0.25:
                    v = make_value(me, k, seq, rng)
                    d.set(key, v, rng.choice([0, 0, 0, LONG]))
                    model[key] = v
                    ops["set"] += 1
                elif r < 0.45:
                    got = d.get(key, KeyError)
                    want = model.get(key, KeyError)
                    check(
                        same(got, want), f"{key}: read {got!r:.80}, model {want!r:.80}"
                    )
                    ops["get"] += 1
                elif r < 0.52:
                    existed = d.delete(key)
                    check(existed == (key in model), f"{key}: delete said {existed}")
                    model.pop(key, None)
                    ops["delete"] += 1
                elif r < 0.65:
                    c = rng.randrange(COUNTERS)
                    delta = rng.randrange(1, 1000)
                    d.incr(f"shared:{c}", delta)
                    sums[c] += delta
                    ops["incr_shared"] += 1
                elif r < 0.7:
                    v0 = model.get(key)
                    if (
                        isinstance(v0, int)
                        and not isinstance(v0, bool)
                        and abs(v0) < 2**62
                    ):
                        got = d.incr(key, 3)
                        model[key] = v0 + 3
                        check(got == v0 + 3, f"{key}: incr gave {got}, model {v0 + 3}")
                        ops["incr_own"] += 1
                elif r < 0.75:
                    ok = d.expire(key, rng.choice([0, LONG]))
                    check(ok == (key in model), f"{key}: expire said {ok}")
                    ops["expire"] += 1
                elif r < 0.82:
                    # Others' keys: anything readable must be whole and theirs.
                    o = rng.randrange(nprocs)
                    okey = f"p{o}:{rng.randrange(KEYS)}"
                    got = d.get(okey)
                    check(
                        well_formed(got, o),
                        f"{okey}: torn or foreign value {got!r:.80}",
                    )
                    ops["get_other"] += 1
                elif r < 0.86 and has["rpush"]:
                    lkey = f"p{me}:list{k % 5}"
                    dq = lists.setdefault(lkey, collections.deque())
                    if rng.random() < 0.6 or not dq:
                        item = rng.randrange(10**9)
                        n = d.rpush(lkey, item)
                        dq.append(item)
                        check(
                            n == len(dq),
                            f"{lkey}: rpush gave length {n}, model {len(dq)}",
                        )
                    else:
                        got = d.lpop(lkey)
                        want = dq.popleft()
                        check(got == want, f"{lkey}: lpop gave {got!r}, model {want!r}")
                    ops["list"] += 1
                elif r < 0.9 and has["cas"] and key in model:
                    v0 = model[key]
                    v1 = make_value(me, k, seq, rng)
                    ok = d.cas(key, v0, v1)
                    check(ok is True, f"{key}: cas with the model's value failed")
                    model[key] = v1
                    ops["cas"] += 1
                elif r < 0.93 and has["get_many"]:
                    ks = [f"p{me}:{rng.randrange(KEYS)}" for _ in range(5)]
                    many = d.get_many(ks)
                    for kk in ks:
                        check(
                            same(many.get(kk, KeyError), model.get(kk, KeyError)),
                            f"{kk}: get_many",
                        )
                    ops["get_many"] += 1
                elif r < 0.95 and has["set_many"]:
                    items = {
                        f"p{me}:{rng.randrange(KEYS)}": make_value(me, k, seq, rng)
                        for _ in range(4)
                    }
                    d.set_many(items)
                    model.update(items)
                    ops["set_many"] += 1
                elif r < 0.97 and has["pop"]:
                    got = d.pop(key, KeyError)
                    want = model.pop(key, KeyError)
                    check(
                        same(got, want),
                        f"{key}: pop gave {got!r:.80}, model {want!r:.80}",
                    )
                    ops["pop"] += 1
                elif r < 0.985:
                    n = len(d)
                    check(n >= 0, "len")
                    ops["len"] += 1
                else:
                    keys = d.get_keys(max_count=500)
                    check(all(x.startswith(("p", "shared:")) for x in keys), "get_keys")
                    ops["get_keys"] += 1
        # Final check of everything this process owns.
        for k in range(KEYS):
            key = f"p{me}:{k}"
            got = d.get(key, KeyError)
            check(
                same(got, model.get(key, KeyError)),
                f"final {key}: {got!r:.80} vs {model.get(key, KeyError)!r:.80}",
            )
        for lkey, dq in lists.items():
            n = d.llen(lkey) if dq else 0
            check(n == len(dq), f"final {lkey}: llen {n}, model {len(dq)}")
        out.update(
            ops=dict(ops),
            sums=sums,
            keys=len(model),
            lists=sum(len(q) for q in lists.values()),
        )
        d.close()
    except BaseException as e:
        out["errors"].append(f"{type(e).__name__}: {e}")
        code = 3
    finally:
        try:
            data = json.dumps(out).encode()
            while data:
                data = data[os.write(wfd, data) :]
        finally:
            os._exit(code)


@pytest.mark.no_asan
@pytest.mark.parametrize("stripes", [None, 4])
def test_load_model_check(name: str, stripes: int | None) -> None:
    seconds = env_int("SHMDICT_LOAD_SECONDS", 5)
    nprocs = env_int("SHMDICT_LOAD_PROCS", 4)
    kwargs: dict[str, Any] = {} if stripes is None else {"stripes": stripes}
    d = shmdict.new(name, 32 * MiB, **kwargs)
    if stripes is not None:
        assert d.stats()["stripes"] == stripes
    pids: list[tuple[int, int]] = []
    try:
        for c in range(COUNTERS):
            d.set(f"shared:{c}", 0)
        for me in range(nprocs):
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:  # pragma: no cover - child
                os.close(r)
                worker(name, me, nprocs, seconds, w)
            os.close(w)
            pids.append((pid, r))
        results = []
        deadline = time.monotonic() + seconds + PROGRESS_DEADLINE + 120
        for pid, r in pids:
            chunks = []
            while chunk := os.read(r, 1 << 16):
                chunks.append(chunk)
            os.close(r)
            while True:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    break
                assert time.monotonic() < deadline, (
                    f"worker {pid} did not finish (hang)"
                )
                time.sleep(0.01)
            res = json.loads(b"".join(chunks) or b"{}")
            assert not res.get("errors"), f"worker {res.get('me')}: {res.get('errors')}"
            assert os.waitstatus_to_exitcode(status) == 0
            results.append(res)
        pids.clear()
        assert d.verify() == []
        # Shared counters sum exactly.
        for c in range(COUNTERS):
            want = sum(res["sums"][c] for res in results)
            assert d.get(f"shared:{c}") == want, (
                f"shared:{c} is {d.get(f'shared:{c}')!r}, the workers added {want}"
            )
        total = sum(sum(res["ops"].values()) for res in results)
        # Progress, not speed: every worker did its MIN_OPS (the workers
        # check it too, against a deadline).
        for res in results:
            assert sum(res["ops"].values()) >= MIN_OPS, res["ops"]
        # Deleting everything gives every byte back. Items of deleted lists
        # wait on their stripe's gc chain until later writes to that stripe
        # free them; writes to many keys reach every stripe.
        for k in d.get_keys():
            d.delete(k)
        for _ in range(200):
            if not d.stats().get("pending_free"):
                break
            for i in range(64):
                d.set(f"drain{i}", 0)
                d.delete(f"drain{i}")
        s = d.stats()
        assert (s["entries"], s["bytes_used"]) == (0, 0), s
        assert d.verify() == []
        ops: collections.Counter[str] = collections.Counter()
        for res in results:
            ops.update(res["ops"])
        record_figures(
            "load",
            stripes=stripes or "auto",
            procs=nprocs,
            seconds=seconds,
            operations=total,
            per_op=dict(ops),
            lock_waits=s.get("lock_waits", 0),
        )
    finally:
        for pid, r in pids:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(r)
        d.close()

"""Several worker processes share one dict: a counter, a rate limit, a cache.

Run it with ``./scripts/demo.sh`` (or ``python examples/demo.py`` once the
extension is built). The parent creates the dict and owns it; each worker
attaches by name, as a gunicorn or Celery worker would.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import time

import shmdict


def worker(name: str, wid: int, requests: int, limit: int) -> None:
    d = shmdict.get(name)  # a peer: its close never removes the file
    served = limited = cached = 0
    for i in range(requests):
        # A shared rate limit: at most `limit` requests per client per window.
        client = f"client:{i % 7}"
        if d.incr(f"rate:{client}", 1) > limit:
            limited += 1
            continue
        # A shared cache with a TTL: one worker computes, all reuse it.
        key = f"page:{i % 50}"
        page = d.get(key)
        if page is None:
            page = f"<html>page {i % 50} rendered by worker {wid}</html>"
            d.set(key, page, exptime=30)
        else:
            cached += 1
        d.incr("requests_served", 1)
        served += 1
    d.incr(f"worker:{wid}:served", served)
    d.incr("limited", limited)
    d.incr("cache_hits", cached)
    d.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--requests", type=int, default=20000)
    args = ap.parse_args()
    name = f"shmdict-demo-{os.getpid()}"
    limit = args.workers * args.requests // 8

    with shmdict.new(name, 8 << 20) as d:  # the owner: removes the file on exit
        for counter in ("requests_served", "limited", "cache_hits"):
            d[counter] = 0
        for c in range(7):
            d.set(f"rate:client:{c}", 0, exptime=60)  # the limit's window
        for w in range(args.workers):
            d[f"worker:{w}:served"] = 0

        print(f"dict {d.name!r} at {d.path}, {d.size >> 20} MiB, owner={d.owner}")
        start = time.perf_counter()
        ctx = mp.get_context("spawn")
        procs = [
            ctx.Process(target=worker, args=(name, w, args.requests, limit))
            for w in range(args.workers)
        ]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        if any(p.exitcode != 0 for p in procs):
            raise SystemExit("a worker failed")
        elapsed = time.perf_counter() - start

        total = args.workers * args.requests
        served = d["requests_served"]
        assert isinstance(served, int)
        print(f"{args.workers} workers handled {total} requests in {elapsed:.2f} s")
        for w in range(args.workers):
            print(f"  worker {w}: served {d[f'worker:{w}:served']}")
        print(
            f"served {served}, rate-limited {d['limited']}, cache hits "
            f"{d['cache_hits']}"
        )
        print(f"rate window for client:0 ends in {d.ttl('rate:client:0'):.1f} s")
        print(f"{len(d)} keys; stats: {d.stats()}")
        print(f"verify(): {d.verify() or 'no problems'}")
        # Every request was either served or limited: no update was lost.
        assert served + d["limited"] == total, "lost updates!"
        assert sum(d[f"worker:{w}:served"] for w in range(args.workers)) == served
    print(f"closed; file removed: {not shmdict.exists(name)}")


if __name__ == "__main__":
    main()

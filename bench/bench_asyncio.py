#!/usr/bin/env python3
"""Python asyncio peers of bench/bench_co.c, as JSON lines (see bench/bench.h).

co_spawn      n tasks that each `await asyncio.sleep(0)` once and finish; the
              spawner yields (sleep(0)) after every 1,000 creations.
co_spawn_all  the same with every task created before any runs.

asyncio is far slower per task than weft or Go, so it runs a smaller n
(--asyncio-n, default 100,000; 2,000 with --tiny): the time per task hardly
depends on n, so the line carries the params of the C and Go runs
({"n": --spawn, default 1,000,000}) for report.py to line it up, and the n
actually measured in "measured_n". Peak RSS (ru_maxrss, KiB) is printed with
the measured n (not comparable with the others' n).

usage: bench/bench_asyncio.py [--tiny] [--runs=N] [--stat=median|best] [--SIZE=N]...
"""
import asyncio
import os
import resource
import statistics
import sys
import time

import steal

args = sys.argv[1:]


def opt(name):
    for a in args:
        if a.startswith("--" + name + "="):
            return a.split("=", 1)[1]
    return os.environ.get("WEFT_BENCH_" + name.upper().replace("-", "_")) or None


def parse(v):
    mult = {"k": 1000, "K": 1000, "M": 1000000, "G": 1000000000}.get(v[-1:], 1)
    return int(v[:-1] if mult != 1 else v) * mult


tiny = "--tiny" in args or os.environ.get("WEFT_BENCH_TINY", "0") not in ("", "0")
runs = 1 if tiny else int(opt("runs") or 5)
best = (opt("stat") or "median") == "best"


def size(name, value, tiny_value):
    v = opt(name)
    return parse(v) if v else (tiny_value if tiny else value)


async def yield_once(counter):
    await asyncio.sleep(0)
    counter[0] += 1


async def spawn_main(n, all_first):
    counter = [0]
    tasks = []
    for i in range(n):
        tasks.append(asyncio.create_task(yield_once(counter)))
        if not all_first and (i + 1) % 1000 == 0:
            await asyncio.sleep(0)
    await asyncio.gather(*tasks)
    if counter[0] != n:
        print(f"bench: FAILED: spawn count {counter[0]} of {n}", file=sys.stderr)
        sys.exit(1)


def run_spawn(n, all_first):
    t0 = time.perf_counter_ns()
    asyncio.run(spawn_main(n, all_first))
    return (time.perf_counter_ns() - t0) / n


def summary(v):
    v = sorted(v)
    return v[0] if best else statistics.median(v)


def emit(bench, params, unit, value, **notes):
    p = ", ".join(f'"{k}": {v}' for k, v in params.items())
    extra = "".join(f', "{k}": {v}' for k, v in notes.items())
    print(f'{{"bench": "{bench}", "impl": "python_asyncio", "params": {{{p}, '
          f'"stat": "{"best" if best else "median"}"}}, "{unit}": {value:.4g}{extra}, "runs": {runs}, '
          f'"steal": {steal.mark():.3f}}}', flush=True)


def main():
    n_cmp = size("spawn", 1000000, 10000)
    n = size("asyncio-n", 100000, 2000)
    emit("co_spawn", {"n": n_cmp}, "ns_per_op", summary([run_spawn(n, False) for _ in range(runs)]),
         measured_n=n)
    emit("co_spawn_rss", {"n": n}, "kib", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    n_cmp = size("spawn-all", 1000000, 10000)
    emit("co_spawn_all", {"n": n_cmp}, "ns_per_op", summary([run_spawn(n, True) for _ in range(runs)]),
         measured_n=n)
    emit("co_spawn_all_rss", {"n": n}, "kib", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    print(f"python asyncio peers: Python {sys.version.split()[0]}, n={n}", file=sys.stderr)


if __name__ == "__main__":
    main()

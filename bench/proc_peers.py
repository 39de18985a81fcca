#!/usr/bin/env python3
"""Python peers of bench/bench_proc_map.c: map x -> x*x over range(n) with
multiprocessing.Pool and concurrent.futures.ProcessPoolExecutor, at chunk
sizes 1 and 1000. Prints JSON lines in the format of bench/bench.h (unit
req_per_s: tasks per second). The pools are created once, outside the
timing, as weft's is. Run by bench_proc_map, which passes its options."""
import argparse
import concurrent.futures
import json
import multiprocessing
import statistics
import time

import steal


def square(x):
    return x * x


def measure(fn, runs, best):
    vals = []
    for _ in range(runs):
        vals.append(fn())
    return max(vals) if best else statistics.median(vals)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--stat", default="median")
    a = ap.parse_args()
    n = 2000 if a.tiny else a.n
    runs = 1 if a.tiny else a.runs
    best = a.stat == "best"
    expect = [i * i for i in range(n)]
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(a.workers) as pool, concurrent.futures.ProcessPoolExecutor(
            a.workers, mp_context=ctx) as ppe:
        for chunk in (1, 1000):
            def run_pool():
                t0 = time.perf_counter()
                r = pool.map(square, range(n), chunk)
                t = time.perf_counter() - t0
                assert r == expect
                return n / t

            def run_ppe():
                t0 = time.perf_counter()
                r = list(ppe.map(square, range(n), chunksize=chunk))
                t = time.perf_counter() - t0
                assert r == expect
                return n / t

            params = {"n": n, "workers": a.workers, "chunksize": chunk,
                      "stat": "best" if best else "median"}
            for impl, fn in (("python_pool", run_pool), ("python_ppe", run_ppe)):
                v = measure(fn, runs, best)
                print(json.dumps({"bench": "proc_map_square", "impl": impl, "params": params,
                                  "req_per_s": float("%.4g" % v), "runs": runs,
                                  "steal": round(steal.mark(), 3)}), flush=True)


if __name__ == "__main__":
    main()

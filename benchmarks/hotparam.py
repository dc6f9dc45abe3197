"""Hot-parameter check cost per call, beside Sentinel-Go's documented hotspot figure.

Every timed call touches a real per-value bucket: the values cycle through many distinct user ids
(each call finds its value's bucket, refreshes its LRU position and takes a token), with a
threshold nothing reaches, so every call does the full work of an admitted request. Cases:

  bucket   ParamBuckets.try_acquire(value) alone (the data structure, 10 000 tracked values)
  evict    the same with more distinct values than the capacity: every call evicts one value
  guard    ``@guard`` on a function whose ``user_id`` argument a HotParamRateLimitStrategy limits
           (argument read from the call, the bucket, and the engine's entry/exit)
  no rule  ``@guard`` on a function of a resource without any rule (what every other resource
           pays: the hot-parameter support must add nothing here)
  rl only  ``@guard`` on a resource with a plain RateLimitStrategy (no hot-parameter limit)

Sentinel-Go 1.0 documents 277-369 ns/op for its hotspot module (32 cores, Go 1.15.5,
sentinel-group/sentinel-website ``Sentinel-Go-Benchmark.md``), but its benchmark
(``tests/benchmark/hotspot/hotspot_benchmark_test.go``) passes no arguments to the entry, so the
rule finds no parameter and no bucket is ever touched: it measures a bare entry with a hotspot
rule loaded. Sentinel Java publishes no param-flow benchmark.

Method: ``time.perf_counter_ns`` around loops of N calls after a warm-up, each case repeated R
times keeping its best run, GC off while timing. Overhead = per-call time minus the same loop
calling the bare function with the same argument.

Usage: python benchmarks/hotparam.py [--number N] [--repeats R] [--values V]
"""

from __future__ import annotations

import argparse
import gc
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from opensergo.governance import Engine, guard, load_rules  # noqa: E402
from opensergo.governance.faulttolerance.hotparam import ParamBuckets  # noqa: E402

HIGH = 10**12  # a threshold nothing in this run reaches
SENTINEL_GO = "277-369 ns/op (Sentinel-Go 1.0 hotspot, 32 cores, Go 1.15.5; never touches a bucket)"

RULES = f"""
apiVersion: fault-tolerance.opensergo.io/v1alpha1
kind: HotParamRateLimitStrategy
metadata: {{name: per-user}}
spec:
  param: {{source: argument, name: user_id}}
  threshold: {HIGH}
  statDuration: 1m
  maxTrackedValues: 200000
---
apiVersion: fault-tolerance.opensergo.io/v1alpha1
kind: RateLimitStrategy
metadata: {{name: rl}}
spec: {{threshold: {HIGH}, statDurationSeconds: 1}}
---
apiVersion: fault-tolerance.opensergo.io/v1alpha1
kind: FaultToleranceRule
metadata: {{name: hot}}
spec:
  targets: [{{targetResourceName: bench-hot}}]
  strategies: [{{name: per-user, kind: HotParamRateLimitStrategy}}]
---
apiVersion: fault-tolerance.opensergo.io/v1alpha1
kind: FaultToleranceRule
metadata: {{name: plain}}
spec:
  targets: [{{targetResourceName: bench-rl}}]
  strategies: [{{name: rl, kind: RateLimitStrategy}}]
"""


def best_ns_per_call(run: Callable[[], None], calls: int, repeats: int) -> float:
    run()  # warm-up
    best = float("inf")
    gc.disable()
    try:
        for _ in range(repeats):
            start = time.perf_counter_ns()
            run()
            best = min(best, (time.perf_counter_ns() - start) / calls)
    finally:
        gc.enable()
    return best


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--number", type=int, default=200_000, help="calls per timed run")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--values", type=int, default=10_000, help="distinct parameter values")
    args = parser.parse_args()
    n, repeats = args.number, args.repeats
    values = [f"user-{i}" for i in range(args.values)]
    stream = [values[i % len(values)] for i in range(n)]

    engine = Engine()
    result = load_rules(RULES, app=None, engine=engine)
    assert not result.problems, result.problems

    def target(user_id: str) -> None:
        return None

    hot = guard("bench-hot", engine=engine)(target)
    no_rule = guard("bench-none", engine=engine)(target)
    rl_only = guard("bench-rl", engine=engine)(target)

    def loop(fn: Callable[[str], object]) -> Callable[[], None]:
        def run() -> None:
            for value in stream:
                fn(value)

        return run

    buckets = ParamBuckets(HIGH, 60, max_values=len(values))
    small = ParamBuckets(HIGH, 60, max_values=max(1, len(values) // 2))  # every call evicts

    bare = best_ns_per_call(loop(target), n, repeats)
    rows = [
        (
            "bucket",
            "ParamBuckets.try_acquire, existing bucket",
            best_ns_per_call(loop(buckets.try_acquire), n, repeats),
        ),
        (
            "evict",
            "ParamBuckets.try_acquire, evicting (LRU full)",
            best_ns_per_call(loop(small.try_acquire), n, repeats),
        ),
        (
            "guard",
            "@guard + HotParamRateLimitStrategy on an argument",
            best_ns_per_call(loop(hot), n, repeats),
        ),
        ("no rule", "@guard, resource without any rule", best_ns_per_call(loop(no_rule), n, repeats)),
        (
            "rl only",
            "@guard + RateLimitStrategy, no hot-param limit",
            best_ns_per_call(loop(rl_only), n, repeats),
        ),
    ]
    checks = engine.checks("bench-hot")
    assert checks is not None and checks.hot_params is not None
    tracked = len(checks.hot_params.limits[0].table)
    assert tracked == len(values), tracked  # every value has its own bucket

    print(f"hot-parameter check cost, CPython {platform.python_version()} on {platform.machine()}")
    print(
        f"{n} calls per run, best of {repeats}; {len(values)} distinct values cycled; bare call {bare:.0f} ns"
    )
    print(f"{'case':<9} {'what':<52} {'ns/call':>8} {'overhead':>9}")
    for name, what, ns in rows:
        print(f"{name:<9} {what:<52} {ns:>8.0f} {ns - bare:>8.0f}")
    print(f"peer      Sentinel-Go hotspot: {SENTINEL_GO}")
    print("          (its benchmark passes no args: no parameter, no bucket; ours above always touch one)")


if __name__ == "__main__":
    main()

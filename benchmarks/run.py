"""Guard overhead per call, beside Python peers doing the same work in the same run.

Cases (each sync and asyncio; a protected no-op function; thresholds high enough that everything
passes, so every call does the full check-and-count work):

  (a) a resource with no rule
  (b) one rate limit
  (c) a rate limit + a circuit breaker + a concurrency limit on one resource
  (c) again from 2 threads at once (contention)

Peers: pybreaker, circuitbreaker (fabfuel), limits (fixed window, sliding window counter, moving
window; MemoryStorage), throttled-py (MemoryStore) and aiolimiter; for (c) the comparison is
pybreaker + limits' sliding window together (for asyncio, circuitbreaker + limits.aio, since
pybreaker's async support needs tornado).

Method: ``time.perf_counter_ns`` around loops of N calls, after a warm-up; the candidates of a
case run round-robin, R times, and each keeps its best run (the machine may be shared).
Overhead = best time per call minus the same loop calling the bare no-op. GC is off while timing.

Usage: python benchmarks/run.py [--number N] [--repeats R] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import platform
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from opensergo.governance import BlockedError, Engine, guard, load_rules  # noqa: E402

HIGH = 10**9  # a threshold nothing in this run reaches

RULES = f"""
apiVersion: fault-tolerance.opensergo.io/v1alpha1
kind: RateLimitStrategy
metadata: {{name: rl, labels: {{app: bench}}}}
spec: {{threshold: {HIGH}, statDurationSeconds: 1}}
---
apiVersion: fault-tolerance.opensergo.io/v1alpha1
kind: CircuitBreakerStrategy
metadata: {{name: cb, labels: {{app: bench}}}}
spec:
  strategy: ErrorRequestRatio
  triggerRatio: 50%
  statDuration: 10s
  recoveryTimeout: 5s
  minRequestAmount: 5
---
apiVersion: fault-tolerance.opensergo.io/v1alpha1
kind: ConcurrencyLimitStrategy
metadata: {{name: cc, labels: {{app: bench}}}}
spec: {{maxConcurrency: 1000}}
---
apiVersion: fault-tolerance.opensergo.io/v1alpha1
kind: FaultToleranceRule
metadata: {{name: rate-only, labels: {{app: bench}}}}
spec:
  targets: [{{targetResourceName: "GET:/b"}}]
  strategies: [{{name: rl, kind: RateLimitStrategy}}]
---
apiVersion: fault-tolerance.opensergo.io/v1alpha1
kind: FaultToleranceRule
metadata: {{name: all-three, labels: {{app: bench}}}}
spec:
  targets: [{{targetResourceName: "GET:/c"}}]
  strategies:
    - {{name: rl, kind: RateLimitStrategy}}
    - {{name: cb, kind: CircuitBreakerStrategy}}
    - {{name: cc, kind: ConcurrencyLimitStrategy}}
"""

SyncLoop = Callable[[int], None]
AsyncLoop = Callable[[int], Awaitable[None]]


def noop() -> None:
    return None


async def anoop() -> None:
    return None


@dataclass
class Candidate:
    name: str
    loop: SyncLoop | None = None
    aloop: AsyncLoop | None = None
    threads: int = 1
    best_ns: float = float("inf")


@dataclass
class Case:
    title: str
    mode: str  # "sync" | "async" | "threads"
    ours: Candidate
    peers: list[Candidate] = field(default_factory=list)
    extra: list[Candidate] = field(default_factory=list)  # other forms of ours


def sync_loop(fn: Callable[[], Any]) -> SyncLoop:
    def loop(n: int) -> None:
        for _ in range(n):
            fn()

    return loop


def async_loop(fn: Callable[[], Awaitable[Any]]) -> AsyncLoop:
    async def loop(n: int) -> None:
        for _ in range(n):
            await fn()

    return loop


def checked(check: Callable[[], bool], fn: Callable[[], Any] = noop) -> Callable[[], Any]:
    """A peer's "check then call": raise when refused, else call the no-op."""

    def call() -> Any:
        if not check():
            raise RuntimeError("refused")
        return fn()

    return call


def achecked(check: Callable[[], Awaitable[bool]], fn: Callable[[], Awaitable[Any]] = anoop) -> Any:
    async def call() -> Any:
        if not await check():
            raise RuntimeError("refused")
        return await fn()

    return call


# -- ours ---------------------------------------------------------------------------------------


def ours(engine: Engine) -> dict[str, Candidate]:
    def with_loop(resource: str) -> SyncLoop:
        def loop(n: int) -> None:
            for _ in range(n):
                with guard(resource, engine=engine):
                    noop()

        return loop

    def awith_loop(resource: str) -> AsyncLoop:
        async def loop(n: int) -> None:
            for _ in range(n):
                async with guard(resource, engine=engine):
                    await anoop()

        return loop

    def entry_loop(resource: str) -> SyncLoop:
        entry = engine.entry

        def loop(n: int) -> None:
            for _ in range(n):
                e = entry(resource)
                noop()
                e.exit()

        return loop

    out: dict[str, Candidate] = {}
    for case, resource in (("a", "GET:/a"), ("b", "GET:/b"), ("c", "GET:/c")):
        out[f"{case}-sync"] = Candidate(
            "opensergo @guard", loop=sync_loop(guard(resource, engine=engine)(noop))
        )
        out[f"{case}-with"] = Candidate("opensergo with guard()", loop=with_loop(resource))
        out[f"{case}-entry"] = Candidate("opensergo Engine.entry/exit", loop=entry_loop(resource))
        out[f"{case}-async"] = Candidate(
            "opensergo @guard (async)", aloop=async_loop(guard(resource, engine=engine)(anoop))
        )
        out[f"{case}-awith"] = Candidate("opensergo async with guard()", aloop=awith_loop(resource))
    return out


# -- peers --------------------------------------------------------------------------------------


def peers() -> dict[str, Candidate]:
    out: dict[str, Candidate] = {}
    try:
        import pybreaker

        pyb = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=60)
        out["pybreaker"] = Candidate("pybreaker", loop=sync_loop(pyb(noop)))
    except ImportError:
        pyb = None
    try:
        from circuitbreaker import circuit  # type: ignore[import-untyped]

        out["circuitbreaker"] = Candidate(
            "circuitbreaker (fabfuel)",
            loop=sync_loop(circuit(failure_threshold=5, recovery_timeout=30)(noop)),
        )
        out["circuitbreaker-async"] = Candidate(
            "circuitbreaker (fabfuel)",
            aloop=async_loop(circuit(failure_threshold=5, recovery_timeout=30)(anoop)),
        )
    except ImportError:
        circuit = None
    try:
        from limits import RateLimitItemPerSecond, storage, strategies
        from limits.aio import storage as astorage
        from limits.aio import strategies as astrategies

        item = RateLimitItemPerSecond(HIGH)
        for key, label, cls, acls in (
            ("fixed", "fixed window", strategies.FixedWindowRateLimiter, astrategies.FixedWindowRateLimiter),
            (
                "sliding",
                "sliding window counter",
                strategies.SlidingWindowCounterRateLimiter,
                astrategies.SlidingWindowCounterRateLimiter,
            ),
            (
                "moving",
                "moving window",
                strategies.MovingWindowRateLimiter,
                astrategies.MovingWindowRateLimiter,
            ),
        ):
            limiter = cls(storage.MemoryStorage())
            alimiter = acls(astorage.MemoryStorage())
            out[f"limits-{key}"] = Candidate(
                f"limits {label}", loop=sync_loop(checked(functools.partial(limiter.hit, item, "k")))
            )
            out[f"limits-{key}-async"] = Candidate(
                f"limits.aio {label}",
                aloop=async_loop(achecked(functools.partial(alimiter.hit, item, "k"))),
            )
        sliding = strategies.SlidingWindowCounterRateLimiter(storage.MemoryStorage())
        if pyb is not None:
            pyb_c = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=60)
            out["pybreaker+limits"] = Candidate(
                "pybreaker + limits sliding window",
                loop=sync_loop(checked(functools.partial(sliding.hit, item, "c"), pyb_c(noop))),
            )
        if circuit is not None:
            asliding = astrategies.SlidingWindowCounterRateLimiter(astorage.MemoryStorage())
            protected = circuit(failure_threshold=5, recovery_timeout=30)(anoop)
            out["circuitbreaker+limits-async"] = Candidate(
                "circuitbreaker + limits.aio sliding window",
                aloop=async_loop(achecked(functools.partial(asliding.hit, item, "c"), protected)),
            )
    except ImportError:
        pass
    try:
        import throttled
        import throttled.asyncio as athrottled

        for using in ("fixed_window", "sliding_window", "token_bucket", "gcra"):
            t = throttled.Throttled(
                key="k",
                using=using,
                quota=throttled.rate_limiter.per_sec(HIGH),
                store=throttled.MemoryStore(),
            )
            at = athrottled.Throttled(
                key="k",
                using=using,
                quota=athrottled.rate_limiter.per_sec(HIGH),
                store=athrottled.MemoryStore(),
            )

            def limit(t: Any = t) -> bool:
                return not t.limit().limited

            async def alimit(at: Any = at) -> bool:
                return not (await at.limit()).limited

            out[f"throttled-{using}"] = Candidate(
                f"throttled-py {using.replace('_', ' ')}", loop=sync_loop(checked(limit))
            )
            out[f"throttled-{using}-async"] = Candidate(
                f"throttled-py {using.replace('_', ' ')}", aloop=async_loop(achecked(alimit))
            )
    except ImportError:
        pass
    try:
        from aiolimiter import AsyncLimiter

        leaky = AsyncLimiter(HIGH, 1)

        async def with_limiter() -> None:
            async with leaky:
                await anoop()

        out["aiolimiter-async"] = Candidate("aiolimiter", aloop=async_loop(with_limiter))
    except ImportError:
        pass
    return out


# -- timing -------------------------------------------------------------------------------------


def time_sync(c: Candidate, n: int) -> float:
    assert c.loop is not None
    start = time.perf_counter_ns()
    c.loop(n)
    return (time.perf_counter_ns() - start) / n


def time_async(c: Candidate, n: int, loop: asyncio.AbstractEventLoop) -> float:
    assert c.aloop is not None
    aloop = c.aloop

    async def run() -> float:
        start = time.perf_counter_ns()
        await aloop(n)
        return (time.perf_counter_ns() - start) / n

    return loop.run_until_complete(run())


def time_threads(c: Candidate, n: int) -> float:
    """Wall time per call with ``c.threads`` threads each making ``n`` calls."""
    assert c.loop is not None
    loop = c.loop
    barrier = threading.Barrier(c.threads + 1)

    def worker() -> None:
        barrier.wait()
        loop(n)

    workers = [threading.Thread(target=worker) for _ in range(c.threads)]
    for w in workers:
        w.start()
    barrier.wait()
    start = time.perf_counter_ns()
    for w in workers:
        w.join()
    return (time.perf_counter_ns() - start) / (n * c.threads)


def run_case(case: Case, n: int, repeats: int, loop: asyncio.AbstractEventLoop) -> None:
    candidates = [case.ours, *case.extra, *case.peers]

    def once(c: Candidate, count: int) -> float:
        if case.mode == "async":
            return time_async(c, count, loop)
        if case.mode == "threads":
            return time_threads(c, count)
        return time_sync(c, count)

    for c in candidates:  # warm-up (and a smoke test: a refusal here is a harness bug)
        once(c, max(100, n // 20))
    gc.collect()
    gc.disable()
    try:
        for _ in range(repeats):
            for c in candidates:
                c.best_ns = min(c.best_ns, once(c, n))
    finally:
        gc.enable()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--number", type=int, default=50_000, help="calls per timed run (default 50000)")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per candidate (default 7)")
    parser.add_argument("--quick", action="store_true", help="a fast smoke run (2000 calls, 2 repeats)")
    args = parser.parse_args()
    n, repeats = (2000, 2) if args.quick else (args.number, args.repeats)

    engine = Engine()
    load_rules(RULES, app="bench", engine=engine)
    o = ours(engine)
    p = peers()

    def pick(*keys: str) -> list[Candidate]:
        return [p[k] for k in keys if k in p]

    b_sync_peers = pick(
        "limits-fixed",
        "limits-sliding",
        "limits-moving",
        "throttled-fixed_window",
        "throttled-sliding_window",
        "throttled-token_bucket",
        "throttled-gcra",
    )
    b_async_peers = pick(
        "limits-fixed-async",
        "limits-sliding-async",
        "limits-moving-async",
        "throttled-fixed_window-async",
        "throttled-sliding_window-async",
        "throttled-token_bucket-async",
        "throttled-gcra-async",
        "aiolimiter-async",
    )
    threaded_ours = Candidate("opensergo @guard, 2 threads", loop=o["c-sync"].loop, threads=2)
    threaded_peers = []
    if "pybreaker+limits" in p:
        threaded_peers.append(
            Candidate(
                "pybreaker + limits sliding window, 2 threads", loop=p["pybreaker+limits"].loop, threads=2
            )
        )
    cases = [
        Case("(a) no rule", "sync", o["a-sync"], [], [o["a-with"], o["a-entry"]]),
        Case("(a) no rule", "async", o["a-async"], [], [o["a-awith"]]),
        Case("(b) rate limit", "sync", o["b-sync"], b_sync_peers, [o["b-with"], o["b-entry"]]),
        Case("(b) rate limit", "async", o["b-async"], b_async_peers, [o["b-awith"]]),
        Case(
            "(c) rate limit + breaker + concurrency",
            "sync",
            o["c-sync"],
            pick("pybreaker+limits", "pybreaker", "circuitbreaker"),
            [o["c-with"], o["c-entry"]],
        ),
        Case(
            "(c) rate limit + breaker + concurrency",
            "async",
            o["c-async"],
            pick("circuitbreaker+limits-async", "circuitbreaker-async", "aiolimiter-async"),
            [o["c-awith"]],
        ),
        Case("(c) contention", "threads", threaded_ours, threaded_peers),
    ]

    loop = asyncio.new_event_loop()
    bare_sync = Candidate("bare call", loop=sync_loop(noop))
    bare_async = Candidate("bare await", aloop=async_loop(anoop))
    run_case(Case("baseline", "sync", bare_sync), n, repeats, loop)
    run_case(Case("baseline", "async", bare_async), n, repeats, loop)
    bare_threads = Candidate("bare call, 2 threads", loop=sync_loop(noop), threads=2)
    run_case(Case("baseline", "threads", bare_threads), n, repeats, loop)
    baseline = {"sync": bare_sync.best_ns, "async": bare_async.best_ns, "threads": bare_threads.best_ns}

    for case in cases:
        try:
            run_case(case, n, repeats, loop)
        except BlockedError as exc:  # pragma: no cover - the thresholds are meant never to trip
            print(f"harness error in {case.title}: {exc}", file=sys.stderr)
            return 1
    loop.close()

    print(
        f"Guard overhead per call (µs), {platform.python_implementation()} {platform.python_version()}, "
        f"{platform.machine()}; best of {repeats} x {n} calls; overhead = time - bare call"
    )
    print(
        f"bare call {baseline['sync'] / 1000:.3f} µs, bare await {baseline['async'] / 1000:.3f} µs, "
        f"bare call from 2 threads {baseline['threads'] / 1000:.3f} µs"
    )
    header = f"{'case':<44} {'mode':<7} {'implementation':<46} {'µs/call':>8} {'x ours':>7}"
    print()
    print(header)
    print("-" * len(header))
    for case in cases:
        base = baseline[case.mode]
        ours_us = max(case.ours.best_ns - base, 1.0) / 1000
        rows = [(case.ours, True), *((c, False) for c in case.extra), *((c, False) for c in case.peers)]
        for i, (c, is_ours) in enumerate(rows):
            us = (c.best_ns - base) / 1000
            ratio = "" if is_ours else f"{us / ours_us:.1f}"
            title = case.title if i == 0 else ""
            mode = case.mode if i == 0 else ""
            print(f"{title:<44} {mode:<7} {c.name:<46} {us:>8.3f} {ratio:>7}")
        print()
    c_sync = next(c for c in cases if c.title.startswith("(c) rate") and c.mode == "sync")
    ours_c = (c_sync.ours.best_ns - baseline["sync"]) / 1000
    comparison = next((c for c in c_sync.peers if c.name.startswith("pybreaker + limits")), None)
    print(f"Target (c) sync <= 1 µs/call: {ours_c:.3f} µs -> {'met' if ours_c <= 1.0 else 'NOT met'}")
    if comparison is not None:
        times = (comparison.best_ns - baseline["sync"]) / 1000 / ours_c
        print(
            f"Target (c) sync >= 5x faster than pybreaker + limits sliding window: {times:.1f}x -> "
            f"{'met' if times >= 5 else 'NOT met'}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

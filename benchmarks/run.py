"""Guard overhead per call, beside Python peers doing the same work in the same run.

Cases (each sync and asyncio; a protected no-op function; thresholds high enough that everything
passes, so every call does the full check-and-count work):

  (a) a resource with no rule
  (b) one rate limit (1 s window)
  (c) a rate limit + a circuit breaker + a concurrency limit on one resource
  (c) again from 2 threads at once (contention)

Ours comes in its three forms: ``@guard``, ``with guard(name):`` (the name a constant, the
process-wide engine) and ``Engine.entry``/``exit``. Peers: limits (fixed window, sliding window
counter, moving window; MemoryStorage), throttled-py (MemoryStore), aiolimiter, pybreaker and
circuitbreaker (fabfuel). Every peer is called the cheapest way it offers: its decorator where it
has one, else its check inline in the timing loop (no wrapper of ours around it). For (c) the
peer does the same three things ours does: a non-blocking ``threading.BoundedSemaphore`` slot,
a limits sliding-window hit and a pybreaker (asyncio: circuitbreaker) protected call. Every row
prints what it does.

Rate limiters are measured at steady state: each runs continuously for more than one window
before it is timed, so its window holds a full second of its own traffic, as ours does. The
moving window keeps one entry per admitted call (its cost grows with the entries in the window),
so it is brought back to that steady state before each of its timed runs.

Method: ``time.perf_counter_ns`` around loops of N calls, after the warm-up; the candidates of a
case run round-robin, R times, and each keeps its best run (the machine may be shared).
Overhead = best time per call minus the same loop calling the bare no-op. GC is off while timing.

Import: ``import opensergo.governance`` in fresh interpreters (this tree's sources), wall time
median and best of N, beside ``python -c pass`` (target: <= 150 ms). benchmarks/footprint.py
measures it again from the installed wheel, with the per-module breakdown.

Usage: python benchmarks/run.py [--number N] [--repeats R] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from opensergo.governance import BlockedError, default_engine, guard, load_rules  # noqa: E402

HIGH = 10**9  # a threshold nothing in this run reaches
WINDOW_S = 1.0  # every rate limit in this run: 1 s
STEADY_S = 1.2 * WINDOW_S  # continuous calls before timing a rate limiter
CONCURRENCY = 1000

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
spec: {{maxConcurrency: {CONCURRENCY}}}
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

# What each case asks of both sides, printed above its rows.
WORK = {
    "a": "no rule: the guard finds nothing to check",
    "b": "one rate limit, 1 s window, threshold 10^9: check and count every call",
    "c": (
        f"concurrency slot (max {CONCURRENCY}, taken and released) + rate limit (1 s window, "
        "checked and counted) + error-count circuit breaker (state checked, completion recorded)"
    ),
}
OURS_DOES = {
    "a": "table lookup, nothing to run",
    "b": "sliding window (2 x 500 ms buckets): check + count",
    "c": "in-flight count + sliding window check/count + breaker state check; exit: release, "
    "breaker completion (error-ratio window)",
}

SyncLoop = Callable[[int], None]
AsyncLoop = Callable[[int], Awaitable[None]]


class Refused(Exception):
    """A peer refused a call (a harness bug: the thresholds are meant never to trip)."""


def noop() -> None:
    return None


async def anoop() -> None:
    return None


@dataclass
class Candidate:
    name: str
    does: str
    loop: SyncLoop | None = None
    aloop: AsyncLoop | None = None
    threads: int = 1
    steady: bool = False  # a rate limiter: warmed to steady state before timing
    rewarm: bool = False  # its cost depends on the window's content: re-warm before each run
    content: Callable[[], str] | None = None  # describes the window's content after a timed run
    content_seen: str = ""
    best_ns: float = float("inf")


@dataclass
class Case:
    key: str
    title: str
    mode: str  # "sync" | "async" | "threads"
    ours: Candidate
    extra: list[Candidate] = field(default_factory=list)  # other forms of ours
    peers: list[Candidate] = field(default_factory=list)


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


def hit_loop(hit: Callable[[Any, str], bool], item: Any) -> SyncLoop:
    """limits: ``hit(item, key)`` inline in the loop, then the no-op (no layer of ours around it)."""

    def loop(n: int) -> None:
        for _ in range(n):
            if not hit(item, "k"):
                raise Refused
            noop()

    return loop


def ahit_loop(hit: Callable[[Any, str], Awaitable[bool]], item: Any) -> AsyncLoop:
    async def loop(n: int) -> None:
        for _ in range(n):
            if not await hit(item, "k"):
                raise Refused
            await anoop()

    return loop


def limit_loop(limit: Callable[[], Any]) -> SyncLoop:
    """throttled-py: ``limit()`` inline in the loop, then the no-op."""

    def loop(n: int) -> None:
        for _ in range(n):
            if limit().limited:
                raise Refused
            noop()

    return loop


def alimit_loop(limit: Callable[[], Awaitable[Any]]) -> AsyncLoop:
    async def loop(n: int) -> None:
        for _ in range(n):
            if (await limit()).limited:
                raise Refused
            await anoop()

    return loop


# -- ours ---------------------------------------------------------------------------------------


def with_loop(resource: str) -> SyncLoop:
    def loop(n: int) -> None:
        for _ in range(n):
            with guard(resource):
                noop()

    return loop


def awith_loop(resource: str) -> AsyncLoop:
    async def loop(n: int) -> None:
        for _ in range(n):
            async with guard(resource):
                await anoop()

    return loop


def entry_loop(resource: str) -> SyncLoop:
    entry = default_engine().entry

    def loop(n: int) -> None:
        for _ in range(n):
            e = entry(resource)
            noop()
            e.exit()

    return loop


def window_content(resource: str) -> Callable[[], str]:
    engine = default_engine()

    def describe() -> str:
        checks = engine.checks(resource)
        if checks is None or not checks.rates:
            return ""
        window = checks.rates[0][0]
        return f"window holds {window.pass_count(engine.clock.now_ns()):,} passes (2 ints)"

    return describe


def ours() -> dict[str, Candidate]:
    """Our three forms on the process-wide engine (the one ``guard(name)`` uses by default)."""
    load_rules(RULES, app="bench")
    out: dict[str, Candidate] = {}
    for case, resource in (("a", "GET:/a"), ("b", "GET:/b"), ("c", "GET:/c")):
        does = OURS_DOES[case]
        steady = case != "a"
        kw: dict[str, Any] = {"steady": steady, "content": window_content(resource) if steady else None}
        out[f"{case}-sync"] = Candidate(
            "opensergo @guard", f"decorated no-op; {does}", loop=sync_loop(guard(resource)(noop)), **kw
        )
        out[f"{case}-with"] = Candidate(
            "opensergo with guard(name)", "same, as a with block", loop=with_loop(resource), **kw
        )
        out[f"{case}-entry"] = Candidate(
            "opensergo Engine.entry/exit", "same, one Entry object per call", loop=entry_loop(resource), **kw
        )
        out[f"{case}-async"] = Candidate(
            "opensergo @guard (async)",
            f"decorated async no-op; {does}",
            aloop=async_loop(guard(resource)(anoop)),
            **kw,
        )
        out[f"{case}-awith"] = Candidate(
            "opensergo async with guard(name)",
            "same, as an async with block",
            aloop=awith_loop(resource),
            **kw,
        )
    return out


# -- peers --------------------------------------------------------------------------------------


def limits_peers() -> dict[str, Candidate]:
    try:
        from limits import RateLimitItemPerSecond, storage, strategies
        from limits.aio import storage as astorage
        from limits.aio import strategies as astrategies
    except ImportError:
        return {}
    item = RateLimitItemPerSecond(HIGH)
    out: dict[str, Candidate] = {}
    for key, label, cls, acls in (
        ("fixed", "fixed window", strategies.FixedWindowRateLimiter, astrategies.FixedWindowRateLimiter),
        (
            "sliding",
            "sliding window counter",
            strategies.SlidingWindowCounterRateLimiter,
            astrategies.SlidingWindowCounterRateLimiter,
        ),
        ("moving", "moving window", strategies.MovingWindowRateLimiter, astrategies.MovingWindowRateLimiter),
    ):
        store, astore = storage.MemoryStorage(), astorage.MemoryStorage()
        hit, ahit = cls(store).hit, acls(astore).hit
        moving = key == "moving"
        does = f"limiter.hit(item, key) inline, MemoryStorage, {label}"
        if moving:
            does += "; one list entry per admitted call, inserted at the head"
        out[f"limits-{key}"] = Candidate(
            f"limits {label}",
            does,
            loop=hit_loop(hit, item),
            steady=True,
            rewarm=moving,
            content=moving_content(store, item) if moving else None,
        )
        out[f"limits-{key}-async"] = Candidate(
            f"limits.aio {label}",
            f"await {does}",
            aloop=ahit_loop(ahit, item),
            steady=True,
            rewarm=moving,
            content=moving_content(astore, item) if moving else None,
        )
    return out


def moving_content(store: Any, item: Any) -> Callable[[], str]:
    def describe() -> str:
        return f"window holds {len(store.events.get(item.key_for('k'), ())):,} entries"

    return describe


def throttled_peers() -> dict[str, Candidate]:
    try:
        import throttled
        import throttled.asyncio as athrottled
    except ImportError:
        return {}
    out: dict[str, Candidate] = {}
    for using in ("fixed_window", "sliding_window", "token_bucket", "gcra"):
        quota = throttled.rate_limiter.per_sec(HIGH)
        t = throttled.Throttled(key="k", using=using, quota=quota, store=throttled.MemoryStore())
        at = athrottled.Throttled(
            key="k", using=using, quota=athrottled.rate_limiter.per_sec(HIGH), store=athrottled.MemoryStore()
        )

        label = using.replace("_", " ")
        does = f"Throttled.limit() inline, MemoryStore, {label}"
        out[f"throttled-{using}"] = Candidate(
            f"throttled-py {label}", does, loop=limit_loop(t.limit), steady=True
        )
        out[f"throttled-{using}-async"] = Candidate(
            f"throttled-py {label}", f"await {does}", aloop=alimit_loop(at.limit), steady=True
        )
    return out


def breaker_peers() -> dict[str, Candidate]:
    """Breakers alone (less work than ours in (c): shown for scale) and the full (c) peer."""
    out: dict[str, Candidate] = {}
    try:
        import pybreaker
        from circuitbreaker import circuit  # type: ignore[import-untyped]
        from limits import RateLimitItemPerSecond, storage, strategies
        from limits.aio import storage as astorage
        from limits.aio import strategies as astrategies
    except ImportError:
        return out
    breaker_only = "breaker only, decorated no-op (less work than ours: no rate limit, no slot)"
    out["pybreaker"] = Candidate(
        "pybreaker",
        breaker_only,
        loop=sync_loop(pybreaker.CircuitBreaker(fail_max=5, reset_timeout=60)(noop)),
    )
    out["circuitbreaker"] = Candidate(
        "circuitbreaker (fabfuel)",
        breaker_only,
        loop=sync_loop(circuit(failure_threshold=5, recovery_timeout=30)(noop)),
    )
    out["circuitbreaker-async"] = Candidate(
        "circuitbreaker (fabfuel)",
        breaker_only.replace("no-op", "async no-op"),
        aloop=async_loop(circuit(failure_threshold=5, recovery_timeout=30)(anoop)),
    )
    item = RateLimitItemPerSecond(HIGH)
    hit = strategies.SlidingWindowCounterRateLimiter(storage.MemoryStorage()).hit
    protected = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=60)(noop)
    sem = threading.BoundedSemaphore(CONCURRENCY)

    def loop(n: int) -> None:
        acquire, release = sem.acquire, sem.release
        for _ in range(n):
            if not acquire(False):
                raise Refused
            try:
                if not hit(item, "c"):
                    raise Refused
                protected()
            finally:
                release()

    same = (
        f"BoundedSemaphore({CONCURRENCY}).acquire(blocking=False)/release + limits sliding window "
        "hit (MemoryStorage) + pybreaker-decorated no-op, inline"
    )
    out["combo"] = Candidate("pybreaker + limits sliding window + semaphore", same, loop=loop, steady=True)
    out["combo-threads"] = Candidate(
        "pybreaker + limits sliding window + semaphore, 2 threads", same, loop=loop, threads=2, steady=True
    )
    ahit = astrategies.SlidingWindowCounterRateLimiter(astorage.MemoryStorage()).hit
    aprotected = circuit(failure_threshold=5, recovery_timeout=30)(anoop)
    asem = threading.BoundedSemaphore(CONCURRENCY)

    async def aloop(n: int) -> None:
        acquire, release = asem.acquire, asem.release
        for _ in range(n):
            if not acquire(False):
                raise Refused
            try:
                if not await ahit(item, "c"):
                    raise Refused
                await aprotected()
            finally:
                release()

    out["combo-async"] = Candidate(
        "circuitbreaker + limits.aio sliding window + semaphore",
        f"BoundedSemaphore({CONCURRENCY}) non-blocking + await limits.aio sliding window hit + "
        "circuitbreaker-decorated async no-op, inline",
        aloop=aloop,
        steady=True,
    )
    return out


def aiolimiter_peer() -> dict[str, Candidate]:
    try:
        from aiolimiter import AsyncLimiter
    except ImportError:
        return {}
    leaky = AsyncLimiter(HIGH, WINDOW_S)

    async def with_limiter() -> None:
        async with leaky:
            await anoop()

    return {
        "aiolimiter-async": Candidate(
            "aiolimiter",
            "async with AsyncLimiter (leaky bucket), 1 s",
            aloop=async_loop(with_limiter),
            steady=True,
        )
    }


def peers() -> dict[str, Candidate]:
    return {**limits_peers(), **throttled_peers(), **breaker_peers(), **aiolimiter_peer()}


# -- import -------------------------------------------------------------------------------------

IMPORT_TARGET_MS = 150.0


def import_ms(code: str, env: dict[str, str]) -> float:
    """Wall ms of ``python -c code`` in a fresh interpreter."""
    start = time.perf_counter_ns()
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
    return (time.perf_counter_ns() - start) / 1e6


def report_import(runs: int) -> None:
    """The import beside ``python -c pass``; their runs alternate, so both see the same load.

    This tree's sources run with their bytecode cached (in a temporary directory, written by a
    first untimed run), as an installed wheel's are: compiling them is not what users pay."""
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "PYTHONPYCACHEPREFIX": cache}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        bare: list[float] = []
        ours: list[float] = []
        for i in range(runs + 1):
            pair = import_ms("pass", env), import_ms("import opensergo.governance", env)
            if i:  # the first run writes the bytecode
                bare.append(pair[0])
                ours.append(pair[1])
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    median = statistics.median(ours)
    print(
        f"import opensergo.governance: median {median:.0f} ms, best {min(ours):.0f} ms; "
        f"python -c pass: median {statistics.median(bare):.0f} ms, best {min(bare):.0f} ms "
        f"({runs} fresh interpreters each, load average {load:.2f})"
    )
    verdict = "met" if median <= IMPORT_TARGET_MS else "NOT met"
    print(f"Target import opensergo.governance <= {IMPORT_TARGET_MS:.0f} ms: {median:.0f} ms -> {verdict}")


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

    def steady(c: Candidate) -> None:
        deadline = time.monotonic() + STEADY_S
        while time.monotonic() < deadline:
            once(c, 1000)

    for c in candidates:  # warm-up (and a smoke test: a refusal here is a harness bug)
        once(c, max(100, n // 20))
        if c.steady:
            steady(c)
    gc.collect()
    gc.disable()
    try:
        for _ in range(repeats):
            for c in candidates:
                if c.rewarm:
                    steady(c)
                c.best_ns = min(c.best_ns, once(c, n))
                if c.content is not None:
                    c.content_seen = c.content()
    finally:
        gc.enable()


def cases(o: dict[str, Candidate], p: dict[str, Candidate]) -> list[Case]:
    def pick(*keys: str) -> list[Candidate]:
        return [p[k] for k in keys if k in p]

    b_sync = pick(
        "limits-fixed",
        "limits-sliding",
        "limits-moving",
        "throttled-fixed_window",
        "throttled-sliding_window",
        "throttled-token_bucket",
        "throttled-gcra",
    )
    b_async = pick(
        "limits-fixed-async",
        "limits-sliding-async",
        "limits-moving-async",
        "throttled-fixed_window-async",
        "throttled-sliding_window-async",
        "throttled-token_bucket-async",
        "throttled-gcra-async",
        "aiolimiter-async",
    )
    threaded = Candidate(
        "opensergo @guard, 2 threads", o["c-sync"].does, loop=o["c-sync"].loop, threads=2, steady=True
    )
    threaded.content = o["c-sync"].content
    c_title = "(c) rate limit + breaker + concurrency"
    return [
        Case("a", "(a) no rule", "sync", o["a-sync"], [o["a-with"], o["a-entry"]]),
        Case("a", "(a) no rule", "async", o["a-async"], [o["a-awith"]]),
        Case("b", "(b) rate limit", "sync", o["b-sync"], [o["b-with"], o["b-entry"]], b_sync),
        Case("b", "(b) rate limit", "async", o["b-async"], [o["b-awith"]], b_async),
        Case(
            "c",
            c_title,
            "sync",
            o["c-sync"],
            [o["c-with"], o["c-entry"]],
            pick("combo", "pybreaker", "circuitbreaker"),
        ),
        Case(
            "c", c_title, "async", o["c-async"], [o["c-awith"]], pick("combo-async", "circuitbreaker-async")
        ),
        Case("c", "(c) contention", "threads", threaded, [], pick("combo-threads")),
    ]


def report(all_cases: list[Case], baseline: dict[str, float], n: int, repeats: int) -> None:
    print(
        f"Guard overhead per call (µs), {platform.python_implementation()} {platform.python_version()}, "
        f"{platform.machine()}; best of {repeats} x {n} calls; overhead = time - bare call"
    )
    print(
        f"bare call {baseline['sync'] / 1000:.3f} µs, bare await {baseline['async'] / 1000:.3f} µs, "
        f"bare call from 2 threads {baseline['threads'] / 1000:.3f} µs"
    )
    print(
        f"Rate limiters are timed at steady state (after {STEADY_S:g} s of continuous calls; the moving "
        "window re-warmed before each run)."
    )
    for case in all_cases:
        base = baseline[case.mode]
        ours_us = max(case.ours.best_ns - base, 1.0) / 1000
        print()
        print(f"{case.title}, {case.mode}: {WORK[case.key]}")
        print(f"  {'implementation':<58} {'µs/call':>8} {'x ours':>7}")
        rows = [(case.ours, True), *((c, False) for c in case.extra), *((c, False) for c in case.peers)]
        for c, is_ours in rows:
            us = (c.best_ns - base) / 1000
            ratio = "" if is_ours else f"{us / ours_us:.1f}"
            print(f"  {c.name:<58} {us:>8.3f} {ratio:>7}")
            detail = c.does
            if c.content_seen:
                detail += f" [after its last run, {c.content_seen}]"
            print(f"      does: {detail}")


def targets(all_cases: list[Case], baseline: dict[str, float]) -> None:
    c_sync = next(c for c in all_cases if c.key == "c" and c.mode == "sync")
    base = baseline["sync"]
    deco = (c_sync.ours.best_ns - base) / 1000
    with_form = next(
        ((c.best_ns - base) / 1000 for c in c_sync.extra if c.name.startswith("opensergo with")), 0
    )
    print()
    print(f"Target (c) sync, @guard <= 0.5 µs: {deco:.3f} µs -> {'met' if deco <= 0.5 else 'NOT met'}")
    print(
        f"Target (c) sync, with guard(name) <= 0.6 µs: {with_form:.3f} µs -> "
        f"{'met' if with_form <= 0.6 else 'NOT met'}"
    )
    peer = next((c for c in c_sync.peers if c.name.startswith("pybreaker + limits")), None)
    if peer is not None:
        peer_us = (peer.best_ns - base) / 1000
        for label, us in (("@guard", deco), ("with guard(name)", with_form)):
            times = peer_us / max(us, 0.001)
            print(
                f"Target (c) sync, {label} >= 8x faster than {peer.name}: {times:.1f}x -> "
                f"{'met' if times >= 8 else 'NOT met'}"
            )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--number", type=int, default=50_000, help="calls per timed run (default 50000)")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per candidate (default 7)")
    parser.add_argument("--quick", action="store_true", help="a fast smoke run (2000 calls, 2 repeats)")
    parser.add_argument("--import-runs", type=int, default=9, help="fresh interpreters timed (default 9)")
    args = parser.parse_args()
    n, repeats = (2000, 2) if args.quick else (args.number, args.repeats)
    import_runs = 3 if args.quick else args.import_runs

    all_cases = cases(ours(), peers())
    loop = asyncio.new_event_loop()
    bare_sync = Candidate("bare call", "", loop=sync_loop(noop))
    bare_async = Candidate("bare await", "", aloop=async_loop(anoop))
    bare_threads = Candidate("bare call, 2 threads", "", loop=sync_loop(noop), threads=2)
    for mode, bare in (("sync", bare_sync), ("async", bare_async), ("threads", bare_threads)):
        run_case(Case("a", "baseline", mode, bare), n, repeats, loop)
    baseline = {"sync": bare_sync.best_ns, "async": bare_async.best_ns, "threads": bare_threads.best_ns}
    for case in all_cases:
        try:
            run_case(case, n, repeats, loop)
        except (BlockedError, Refused) as exc:  # pragma: no cover - the thresholds never trip
            print(f"harness error in {case.title}: {exc!r}", file=sys.stderr)
            return 1
    loop.close()
    report(all_cases, baseline, n, repeats)
    targets(all_cases, baseline)
    print()
    report_import(import_runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())

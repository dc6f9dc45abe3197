"""opensergo.cache per-GET cost beside plain redis-py, on one real redis-server.

Starts a private redis-server (Debian ``redis-server``) on a free loopback port, then times, in
interleaved rounds against the same server:

* a GET of a non-hot key (cycling over 1,000 keys) through plain ``redis.Redis`` and through
  ``opensergo.cache.governed`` under a CachePolicy with hot-key detection, near-cache, breaker
  and big-value checks (the threshold is out of reach, so every GET goes to Redis: this is the
  governance cost every cache read pays); and with no policy (pass-through);
* a GET of a hot key: plain redis-py (a round trip) against the governed client answering from
  the near-cache;
* the same two for ``redis.asyncio``.

Each figure is a median over ROUNDS rounds, GC off while timing; the overhead of a variant is the
median of its per-round ratios to plain redis-py (paired, so the drift of a shared machine
cancels), beside a second plain client as the noise floor. Because a loopback round trip on a
busy machine varies by more than the governance costs, the governance work per GET is also
measured alone (the Redis call replaced by a constant) and set against a plain GET's CPU.

Usage: python benchmarks/cache.py [GETS_PER_ROUND] [ROUNDS]
Target: non-hot GET overhead <= 5 % over plain redis-py (see docs/cache.md for where it stands).
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import sys
import tempfile
import time
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aredis

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from opensergo.cache import governed  # noqa: E402
from opensergo.cache.rules import CacheRules  # noqa: E402
from opensergo.spec.loader import parse_documents  # noqa: E402
from tests.integration.cache.redis_server import RedisServer  # noqa: E402

POLICY = """
apiVersion: cache.opensergo.io/v1alpha1
kind: CachePolicy
metadata: {name: bench}
spec:
  cacheNames: [bench]
  hotKey: {threshold: THRESHOLD, window: 10s, capacity: 1024}
  nearCache: {maxEntries: 10000, ttl: 60s}
  breaker: {errorRatio: 50%, minRequestAmount: 20, statDuration: 10s, recoveryTimeout: 5s, staleIfError: 30s}
  bigValue: {warnAbove: 1MiB, refuseAbove: 16MiB}
"""

KEYS = [f"item:{i}" for i in range(1000)]


def rules(threshold: float) -> CacheRules:
    out = CacheRules()
    out.apply(parse_documents(POLICY.replace("THRESHOLD", str(threshold))), namespace="default")
    return out


def per_get_us(fn: Callable[[int], None], n: int) -> tuple[float, float]:
    """(wall, this process's CPU) microseconds per GET."""
    gc.disable()
    try:
        start, cpu = time.perf_counter(), time.process_time()
        fn(n)
        return (time.perf_counter() - start) / n * 1e6, (time.process_time() - cpu) / n * 1e6
    finally:
        gc.enable()


def cycling(client: Any) -> Callable[[int], None]:
    get = client.get

    def run(n: int) -> None:
        keys = KEYS
        size = len(keys)
        for i in range(n):
            get(keys[i % size])

    return run


def one_key(client: Any) -> Callable[[int], None]:
    get = client.get

    def run(n: int) -> None:
        for _ in range(n):
            get("item:0")

    return run


def paired_rounds(
    variants: dict[str, Callable[[int], None]], n: int, rounds: int
) -> dict[str, tuple[float, float, float, float]]:
    """Per variant: median wall and CPU per GET, and the medians of its per-round wall and CPU
    ratios to the first variant (paired within a round, so drift of a shared machine cancels).
    The order of the variants rotates every round."""
    for fn in variants.values():
        fn(max(100, n // 10))  # warm: connections, detector
    names = list(variants)
    per_round: list[dict[str, tuple[float, float]]] = []
    for r in range(rounds):
        got: dict[str, tuple[float, float]] = {}
        for name in names[r % len(names) :] + names[: r % len(names)]:
            got[name] = per_get_us(variants[name], n)
        per_round.append(got)
    base = names[0]
    out = {}
    for name in names:
        wall = statistics.median(g[name][0] for g in per_round)
        cpu = statistics.median(g[name][1] for g in per_round)
        wall_ratio = statistics.median(g[name][0] / g[base][0] for g in per_round)
        cpu_ratio = statistics.median(g[name][1] / max(g[base][1], 1e-9) for g in per_round)
        out[name] = (wall, cpu, wall_ratio, cpu_ratio)
    return out


def governance_work(client: Any) -> float:
    """Microseconds the governed GET path adds, measured without the round trip: the module's
    handle on redis-py's command path is swapped for a constant for the measurement, and the
    baseline calls that constant the way the no-policy path does."""
    from opensergo.cache import client as governed_module

    original = governed_module._plain_execute

    def constant(self: Any, *args: Any, **options: Any) -> bytes:
        return b"x" * 64

    governed_module._plain_execute = constant
    try:
        keys = KEYS
        get = client.get
        spent = min(timeit.repeat(lambda: [get(k) for k in keys], number=50, repeat=9))
        bare = min(
            timeit.repeat(lambda: [constant(client, "GET", k, keys=[k]) for k in keys], number=50, repeat=9)
        )
    finally:
        governed_module._plain_execute = original
    return (spent - bare) / (50 * len(keys)) * 1e6


async def async_rounds(port: int, n: int, rounds: int) -> dict[str, float]:
    plain = aredis.Redis(port=port)
    hot = governed(aredis.Redis(port=port), "bench", rules=rules(1))
    while hot.governor.tracking_target() is None:
        await asyncio.sleep(0.01)

    async def loop(client: Any, count: int) -> None:
        get = client.get
        for _ in range(count):
            await get("item:0")

    samples: dict[str, list[float]] = {"plain": [], "near": []}
    await loop(plain, 200)
    await loop(hot, 200)
    for _ in range(rounds):
        for name, client in (("plain", plain), ("near", hot)):
            start = time.perf_counter()
            await loop(client, n)
            samples[name].append((time.perf_counter() - start) / n * 1e6)
    await plain.aclose()
    await hot.aclose()
    return {k: statistics.median(v) for k, v in samples.items()}


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 9
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp))
        server.start()
        try:
            run(server, n, rounds)
        finally:
            server.stop()


def run(server: RedisServer, n: int, rounds: int) -> None:
    port = server.port
    seed = redis.Redis(port=port)
    seed.mset({k: "x" * 64 for k in KEYS})
    version = seed.info("server")["redis_version"]
    seed.close()

    plain = redis.Redis(port=port)
    plain2 = redis.Redis(port=port)
    bare = governed(redis.Redis(port=port), "bench", rules=CacheRules())
    cold = governed(redis.Redis(port=port), "bench", rules=rules(1e9))
    figures = paired_rounds(
        {
            "plain redis-py": cycling(plain),
            "plain redis-py, 2nd client (noise)": cycling(plain2),
            "governed, no policy": cycling(bare),
            "governed, full policy (not hot)": cycling(cold),
        },
        n,
        rounds,
    )
    print(f"redis-server {version} on loopback, redis-py {redis.__version__}, {n} GETs x {rounds} rounds")
    print("non-hot GET (1,000 keys cycling; every GET reaches Redis), medians; overhead = paired ratio:")
    for name, (wall, cpu, wall_ratio, cpu_ratio) in figures.items():
        extra = "" if name == "plain redis-py" else f"  overhead {100 * (wall_ratio - 1):+.1f} % wall"
        extra += "" if name == "plain redis-py" else f", {100 * (cpu_ratio - 1):+.1f} % CPU"
        print(f"  {name:<32} {wall:8.2f} us wall {cpu:7.2f} us CPU{extra}")

    hot = governed(redis.Redis(port=port), "bench", rules=rules(1))
    while hot.governor.tracking_target() is None:
        time.sleep(0.01)
    hot_figures = paired_rounds({"plain": one_key(plain), "near": one_key(hot)}, n, rounds)
    near = hot.governor.policy.near
    assert near is not None and near.hits > 0
    print("hot-key GET:")
    plain_hot, near_hot = hot_figures["plain"][0], hot_figures["near"][0]
    print(f"  {'plain redis-py (round trip)':<34} {plain_hot:8.2f} us")
    print(f"  {'governed, from the near-cache':<34} {near_hot:8.2f} us  ({plain_hot / near_hot:.1f}x faster)")
    afig = asyncio.run(async_rounds(port, max(1000, n // 2), rounds))
    print("hot-key GET, redis.asyncio:")
    print(f"  {'plain redis.asyncio (round trip)':<34} {afig['plain']:8.2f} us")
    speedup = afig["plain"] / afig["near"]
    print(f"  {'governed, from the near-cache':<34} {afig['near']:8.2f} us  ({speedup:.1f}x faster)")
    work, plain_cpu = governance_work(cold), figures["plain redis-py"][1]
    print(
        f"governance work per non-hot GET (full policy, the Redis call replaced by a constant): {work:.2f} us"
        f" = {100 * work / plain_cpu:.1f} % of a plain GET's CPU ({plain_cpu:.1f} us)"
    )
    for client in (plain, plain2, bare, cold, hot):
        client.close()


if __name__ == "__main__":
    main()

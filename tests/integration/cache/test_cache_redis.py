"""Governed redis-py clients against a real redis-server (Debian's 7.0, started per test).

Commands Redis executed are counted with ``INFO commandstats`` (reset with ``CONFIG RESETSTAT``
before each measurement). During a measurement only the key under test is read, so the count
of GETs (plus the CLIENT CACHING / CLIENT TRACKING commands that tracked reads add) is the count
of commands for that key. MONITOR is not used: it halves the server's throughput.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.asyncio as aredis
from redis.backoff import NoBackoff
from redis.retry import Retry

from opensergo.cache import CacheUnavailableError, SourceProtectedError, governed
from opensergo.cache.breaker import BreakerState
from opensergo.cache.rules import CacheRules
from opensergo.spec.loader import parse_documents
from tests.helpers import wait_until
from tests.integration.cache.redis_server import RedisServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def policy(spec: str, cache: str = "products") -> str:
    return f"""
apiVersion: cache.opensergo.io/v1alpha1
kind: CachePolicy
metadata: {{name: {cache}-policy, labels: {{app: shop}}}}
spec:
  cacheNames: [{cache}]
{spec}
"""


def use(rules: CacheRules, text: str) -> None:
    rules.apply(parse_documents(text, source="test"), namespace="default")


HOT_NEAR = """
  hotKey: {threshold: 20, window: 2s, capacity: 64}
  nearCache: {maxEntries: 100, ttl: 30s}
"""


def tracking_up(client: Any) -> bool:
    near = client.governor.policy.near
    return near is not None and near.tracking_up


@pytest.fixture
def plain(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis(port=redis_server.port)
    yield client
    client.close()


def tracked_commands(stats: dict[str, int]) -> int:
    """Commands a read of the key caused: GETs plus the tracking commands around them."""
    return stats.get("get", 0) + stats.get("client|caching", 0) + stats.get("client|tracking", 0)


def test_hot_key_storm_from_threads_and_coroutines_reaches_redis_90_percent_less(
    redis_server: RedisServer, plain: redis.Redis, cache_rules: CacheRules
) -> None:
    use(cache_rules, policy(HOT_NEAR))
    plain.set("product:1", "widget")
    sync_client = governed(redis.Redis(port=redis_server.port), "products", rules=cache_rules)
    wait_until(lambda: tracking_up(sync_client), what="invalidation connection up")
    redis_server.reset_stats()

    threads, per_thread = 8, 1500
    errors: list[BaseException] = []

    def storm() -> None:
        try:
            for _ in range(per_thread):
                assert sync_client.get("product:1") == b"widget"
        except BaseException as err:
            errors.append(err)

    workers = [threading.Thread(target=storm) for _ in range(threads)]
    for w in workers:
        w.start()

    coroutines, per_coroutine = 100, 100

    async def async_storm() -> None:
        client = governed(aredis.Redis(port=redis_server.port), "products", rules=cache_rules)
        await asyncio.to_thread(wait_until, lambda: tracking_up(client), 10.0)

        async def one() -> None:
            for _ in range(per_coroutine):
                assert await client.get("product:1") == b"widget"

        await asyncio.gather(*(one() for _ in range(coroutines)))
        await client.aclose()

    asyncio.run(async_storm())
    for w in workers:
        w.join(60)
    assert not errors, errors
    issued = threads * per_thread + coroutines * per_coroutine
    stats = redis_server.commandstats()
    seen = tracked_commands(stats)
    print(f"hot-key storm: {issued} GETs issued, Redis executed {seen} commands for the key ({stats})")
    assert seen <= issued * 0.10, f"Redis saw {seen} of {issued} ({seen / issued:.1%})"
    assert sync_client.governor.policy.near is not None
    assert sync_client.governor.policy.near.hits > 0
    sync_client.close()


def test_write_elsewhere_invalidates_near_caches_and_no_stale_read_follows(
    redis_server: RedisServer, plain: redis.Redis, cache_rules: CacheRules
) -> None:
    use(cache_rules, policy(HOT_NEAR))
    plain.set("stock", 0)
    client = governed(redis.Redis(port=redis_server.port), "products", rules=cache_rules)
    wait_until(lambda: tracking_up(client), what="invalidation connection up")
    near = client.governor.policy.near
    assert near is not None
    while near.fills == 0:  # make the key hot and cached
        client.get("stock")

    stop = threading.Event()
    # (monotonic time the read started, value read) per reader
    reads: list[list[tuple[float, int]]] = [[] for _ in range(4)]

    def reader(out: list[tuple[float, int]]) -> None:
        while not stop.is_set():
            started = time.monotonic()
            out.append((started, int(client.get("stock"))))

    workers = [threading.Thread(target=reader, args=(out,)) for out in reads]
    for w in workers:
        w.start()
    arrivals: list[tuple[float, int]] = []  # (invalidation observed, version written)
    try:
        for version in range(1, 21):
            before = near.invalidations
            plain.set("stock", version)
            wait_until(lambda b=before: near.invalidations > b, 5.0, 0.0005, "the invalidation")
            arrivals.append((time.monotonic(), version))
            time.sleep(0.02)
    finally:
        stop.set()
        for w in workers:
            w.join(10)

    stale = [
        (started, value, version)
        for out in reads
        for started, value in out
        for arrived, version in arrivals
        if started > arrived and value < version
    ]
    assert not stale, f"stale reads after the invalidation arrived: {stale[:5]}"
    assert sum(len(out) for out in reads) > 1000
    assert near.hits > 0  # the reads were served from the near-cache between writes
    assert int(client.get("stock")) == 20

    async def async_side() -> None:
        aclient = governed(aredis.Redis(port=redis_server.port), "products", rules=cache_rules)
        await asyncio.to_thread(wait_until, lambda: tracking_up(aclient), 10.0)
        anear = aclient.governor.policy.near
        assert anear is not None
        while anear.fills == 0:
            await aclient.get("stock")
        before = anear.invalidations
        await asyncio.to_thread(plain.set, "stock", 21)
        await asyncio.to_thread(wait_until, lambda: anear.invalidations > before, 5.0, 0.0005)
        assert int(await aclient.get("stock")) == 21
        await aclient.aclose()

    asyncio.run(async_side())
    client.close()


BREAKER = """
  hotKey: {threshold: 1, window: 1s, capacity: 64}
  nearCache: {maxEntries: 100, ttl: 1s}
  breaker:
    errorRatio: 50%
    minRequestAmount: 3
    statDuration: 5s
    recoveryTimeout: 2s
    staleIfError: 4s
    whenOpen: Error
"""


def test_redis_killed_mid_load_opens_breaker_serves_stale_within_bound_and_recovers(
    redis_server: RedisServer, plain: redis.Redis, cache_rules: CacheRules
) -> None:
    use(cache_rules, policy(BREAKER))
    plain.set("hot", "cached-value")
    client = governed(
        redis.Redis(
            port=redis_server.port,
            socket_timeout=0.5,
            socket_connect_timeout=0.5,
            retry=Retry(NoBackoff(), 0),
        ),
        "products",
        rules=cache_rules,
    )
    wait_until(lambda: tracking_up(client), what="invalidation connection up")
    near = client.governor.policy.near
    breaker = client.governor.policy.breaker
    assert near is not None and breaker is not None
    wait_until(lambda: client.get("hot") == b"cached-value" and near.fills > 0, what="hot key cached")

    outcomes: list[str] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            for key in ("hot", "cold"):
                try:
                    client.get(key)
                    outcomes.append("ok")
                except CacheUnavailableError:
                    outcomes.append("unavailable")
                except redis.ConnectionError:
                    outcomes.append("error")
            time.sleep(0.005)

    worker = threading.Thread(target=load)
    worker.start()
    try:
        time.sleep(0.2)
        killed_at = time.monotonic()
        redis_server.kill9()
        wait_until(lambda: breaker.state is BreakerState.OPEN, 10.0, what="breaker open")
        print(f"breaker open {time.monotonic() - killed_at:.3f} s after kill -9")
        # Within the bound: the hot key from the near-cache (stale), the cold key: the error.
        assert client.get("hot") == b"cached-value"
        assert near.stale_hits > 0
        with pytest.raises(CacheUnavailableError):
            client.get("cold")
        # Beyond the bound (freshness ended at the kill at the latest, + staleIfError 4 s).
        wait_until(lambda: time.monotonic() > killed_at + 4.3, 10.0)
        with pytest.raises(redis.ConnectionError):
            client.get("hot")
    finally:
        stop.set()
        worker.join(10)
    assert "unavailable" in outcomes

    redis_server.start()
    restarted = time.monotonic()

    def recovered() -> bool:
        try:
            client.get("cold")
            return True
        except redis.ConnectionError:
            return False

    wait_until(recovered, 10.0, 0.05, "reads succeed after the restart")
    took = time.monotonic() - restarted
    print(f"recovered {took:.3f} s after the restart (recoveryTimeout 2 s)")
    assert took <= 2.0 + 0.5
    assert breaker.state is BreakerState.CLOSED
    client.close()


COALESCE = """
  coalescing: {enabled: true}
  sourceProtection: {maxConcurrentLoads: 1}
"""


def test_stampede_of_1000_concurrent_misses_makes_exactly_one_load(
    redis_server: RedisServer, cache_rules: CacheRules
) -> None:
    use(cache_rules, policy(COALESCE))
    loads = 0

    async def run() -> list[Any]:
        client = governed(aredis.Redis(port=redis_server.port), "products", rules=cache_rules)

        async def loader() -> str:
            nonlocal loads
            loads += 1
            await asyncio.sleep(0.2)
            return "from-db"

        try:
            return await asyncio.gather(
                *(client.get_or_load("product:9", loader, ttl=60) for _ in range(1000))
            )
        finally:
            await client.aclose()

    results = asyncio.run(run())
    assert loads == 1
    assert {r if isinstance(r, str) else r.decode() for r in results} == {"from-db"}

    # The same with threads of a sync client.
    client = governed(redis.Redis(port=redis_server.port), "products", rules=cache_rules)
    thread_loads = 0
    lock = threading.Lock()
    barrier = threading.Barrier(64)

    def thread_loader() -> str:
        nonlocal thread_loads
        with lock:
            thread_loads += 1
        time.sleep(0.2)
        return "from-db-2"

    out: list[Any] = []

    def miss() -> None:
        barrier.wait()
        out.append(client.get_or_load("product:10", thread_loader, ttl=60))

    workers = [threading.Thread(target=miss) for _ in range(64)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(30)
    assert thread_loads == 1
    assert len(out) == 64
    assert {v if isinstance(v, str) else v.decode() for v in out} == {"from-db-2"}
    client.close()


def test_source_protection_limits_loads_per_key_not_other_keys(
    redis_server: RedisServer, cache_rules: CacheRules
) -> None:
    use(cache_rules, policy("  coalescing: {enabled: false}\n  sourceProtection: {maxLoadsPerSecond: 2}\n"))
    client = governed(redis.Redis(port=redis_server.port), "products", rules=cache_rules)

    def load_none() -> None:  # a value the source does not have: nothing is cached, loads repeat
        return None

    assert client.get_or_load("missing:1", load_none) is None
    assert client.get_or_load("missing:1", load_none) is None
    with pytest.raises(SourceProtectedError):
        client.get_or_load("missing:1", load_none)
    for i in range(2, 6):  # other keys have their own allowance
        assert client.get_or_load(f"missing:{i}", load_none) is None
    client.close()


def test_asyncio_client_breaker_serves_stale_then_errors_for_misses(
    redis_server: RedisServer, plain: redis.Redis, cache_rules: CacheRules
) -> None:
    from redis.asyncio.retry import Retry as AsyncRetry

    use(cache_rules, policy(BREAKER))
    plain.set("hot", "cached-value")

    async def run() -> None:
        client = governed(
            aredis.Redis(
                port=redis_server.port,
                socket_timeout=0.5,
                socket_connect_timeout=0.5,
                retry=AsyncRetry(NoBackoff(), 0),
            ),
            "products",
            rules=cache_rules,
        )
        await asyncio.to_thread(wait_until, lambda: tracking_up(client), 10.0)
        near = client.governor.policy.near
        breaker = client.governor.policy.breaker
        assert near is not None and breaker is not None
        while near.fills == 0:
            assert await client.get("hot") == b"cached-value"
        redis_server.kill9()
        for _ in range(20):  # failures open the breaker
            with contextlib.suppress(redis.ConnectionError):
                await client.get("cold")
            if breaker.state is BreakerState.OPEN:
                break
            await asyncio.sleep(0.01)
        assert breaker.state is BreakerState.OPEN
        assert await client.get("hot") == b"cached-value"  # stale, within staleIfError
        with pytest.raises(CacheUnavailableError):
            await client.get("cold")
        with pytest.raises(CacheUnavailableError):  # any other command while open
            await client.set("cold", "x")
        await client.aclose()

    asyncio.run(run())


def test_re_push_of_the_same_policy_keeps_the_near_cache(
    redis_server: RedisServer, plain: redis.Redis, cache_rules: CacheRules
) -> None:
    use(cache_rules, policy(HOT_NEAR))
    plain.set("k", "v")
    client = governed(redis.Redis(port=redis_server.port), "products", rules=cache_rules)
    wait_until(lambda: tracking_up(client), what="invalidation connection up")
    near = client.governor.policy.near
    assert near is not None
    while near.fills == 0:
        client.get("k")
    use(cache_rules, policy(HOT_NEAR))  # the same object pushed again
    assert client.governor.policy.near is near and len(near) == 1
    use(cache_rules, policy(HOT_NEAR.replace("ttl: 30s", "ttl: 20s")))  # a change recompiles
    assert client.governor.policy.near is not near
    client.close()

"""Near-cache, breaker, single-flight, big values, load guard and the policy registry."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from opensergo.cache.bigvalue import BigValueCheck
from opensergo.cache.breaker import BreakerState, CacheBreaker
from opensergo.cache.errors import BigValueError, SourceProtectedError
from opensergo.cache.nearcache import MISSING, NearCache
from opensergo.cache.policy import LoadGuard, compile_policy
from opensergo.cache.rules import CacheRules
from opensergo.cache.singleflight import AsyncSingleFlight, SingleFlight
from opensergo.common.clock import ManualClock
from opensergo.governance.faulttolerance.hotparam import ParamBuckets
from opensergo.spec import parse_documents
from opensergo.spec.cache import CachePolicy

pytestmark = pytest.mark.unit


def test_near_cache_placeholder_drops_a_reply_overtaken_by_its_invalidation() -> None:
    near = NearCache(10, ttl=5.0, tracking=True)
    near.tracking_restored()
    token = near.reserve(b"k")
    near.invalidate([b"k"])  # arrived before the GET reply
    assert not near.fill(b"k", token, "old", now=0.0)
    assert near.get_fresh(b"k", 0.0) is MISSING and near.dropped_fills == 1
    token = near.reserve(b"k")
    assert near.fill(b"k", token, "new", now=0.0)
    assert near.get_fresh(b"k", 1.0) == "new"
    near.invalidate([b"k"])
    assert near.get_fresh(b"k", 1.0) is MISSING


def test_near_cache_ttl_stale_bound_and_tracking_loss() -> None:
    near = NearCache(10, ttl=5.0, stale_for=3.0, tracking=True)
    assert near.get_fresh(b"k", 0.0) is MISSING  # nothing is fresh before tracking is up
    token = near.reserve(b"k")
    assert not near.fill(b"k", token, "v", 0.0)
    near.tracking_restored()
    near.fill(b"k", near.reserve(b"k"), "v", 0.0)
    assert near.get_fresh(b"k", 4.9) == "v" and near.get_fresh(b"k", 5.0) is MISSING
    assert near.get_stale(b"k", 8.0) == "v" and near.get_stale(b"k", 8.1) is MISSING
    near.fill(b"k", near.reserve(b"k"), "v2", 10.0)
    near.tracking_lost(11.0)  # freshness ends now, not at the TTL
    assert near.get_fresh(b"k", 11.5) is MISSING
    assert near.get_stale(b"k", 14.0) == "v2" and near.get_stale(b"k", 14.1) is MISSING
    near.tracking_restored()  # invalidations may have been lost: flushed
    assert len(near) == 0


def test_near_cache_bounded() -> None:
    near = NearCache(3, ttl=10.0, tracking=False)
    for i in range(5):
        near.fill(b"%d" % i, near.reserve(b"%d" % i), i, 0.0)
    assert len(near) == 3 and near.get_fresh(b"0", 1.0) is MISSING and near.get_fresh(b"4", 1.0) == 4
    near.invalidate([b"4"])
    near.flush()
    assert len(near) == 0


def test_breaker_opens_on_error_ratio_then_half_opens_one_probe() -> None:
    t = [0.0]
    breaker = CacheBreaker(0.5, 4, 10.0, 2.0, clock=lambda: t[0])
    for _ in range(3):
        breaker.on_success()
    breaker.on_error()
    assert breaker.state is BreakerState.CLOSED  # 1 of 4
    breaker.on_error()
    breaker.on_error()  # 3 of 6
    assert breaker.state is BreakerState.OPEN and not breaker.allow()
    t[0] = 2.0
    assert breaker.allow() and breaker.state is BreakerState.HALF_OPEN
    assert not breaker.allow()  # one probe at a time
    breaker.on_error()
    assert breaker.state is BreakerState.OPEN
    t[0] = 4.1
    assert breaker.allow()
    breaker.on_success()
    assert breaker.state is BreakerState.CLOSED and breaker.opens == 2
    t[0] = 30.0  # old errors left the window
    breaker.on_error()
    assert breaker.state is BreakerState.CLOSED


def test_single_flight_threads_share_value_and_error() -> None:
    flights = SingleFlight()
    calls = 0
    gate = threading.Event()

    def slow() -> int:
        nonlocal calls
        calls += 1
        gate.wait(5)
        return 42

    out: list[int] = []
    workers = [threading.Thread(target=lambda: out.append(flights.do("k", slow))) for _ in range(20)]
    for w in workers:
        w.start()
    while flights.shared < 19:
        time.sleep(0.001)
    gate.set()
    for w in workers:
        w.join(5)
    assert calls == 1 and out == [42] * 20 and flights.in_flight() == 0

    def boom() -> int:
        raise KeyError("x")

    with pytest.raises(KeyError):
        flights.do("k", boom)


async def test_async_single_flight() -> None:
    flights = AsyncSingleFlight()
    calls = 0

    async def load() -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return "v"

    results = await asyncio.gather(*(flights.do("k", load) for _ in range(500)))
    assert calls == 1 and set(results) == {"v"} and flights.in_flight() == 0


def test_big_values() -> None:
    check = BigValueCheck("c", warn_above=10, refuse_above=100)
    check.check_write("k", b"x" * 10)
    check.check_write("k", "é" * 6)  # 12 bytes: warned
    assert check.warned == 1
    with pytest.raises(BigValueError, match="101 bytes"):
        check.check_write("k", b"x" * 101)
    assert check.check_read("k", b"x" * 50) and not check.check_read("k", b"x" * 101)


def test_load_guard_rate_and_concurrency_per_key() -> None:
    clock = ManualClock()
    guard = LoadGuard("c", "p", ParamBuckets(2, clock=clock), max_concurrent=1)
    guard.acquire("a")
    with pytest.raises(SourceProtectedError, match="in flight"):
        guard.acquire("a")
    guard.acquire("b")  # another key is untouched
    guard.release("a")
    guard.acquire("a")
    guard.release("a")
    with pytest.raises(SourceProtectedError, match="loads per second"):
        guard.acquire("a")
    clock.advance(1100)
    guard.acquire("a")


POLICY = """apiVersion: cache.opensergo.io/v1alpha1
kind: CachePolicy
metadata: {name: NAME, labels: {app: shop}}
spec:
  cacheNames: [CACHES]
  hotKey: {threshold: 5}
  nearCache: {invalidation: TtlOnly}
  breaker: {staleIfError: 10s}
"""


def policy(name: str, caches: str) -> CachePolicy:
    [obj] = parse_documents(POLICY.replace("NAME", name).replace("CACHES", caches))
    assert isinstance(obj, CachePolicy)
    return obj


def test_rules_pick_the_policy_naming_the_cache_and_notify() -> None:
    rules = CacheRules()
    seen: list[int] = []

    class Listener:
        def policies_changed(self) -> None:
            seen.append(rules.version)

    listener = Listener()
    rules.add_listener(listener)
    rules.apply([policy("b", "products"), policy("a", "products, users")], namespace="default")
    chosen = rules.policy_for("products")
    assert chosen is not None and chosen.name == "a" and seen == [1]
    assert rules.policy_for("sessions") is None
    compiled = compile_policy("products", chosen)
    assert compiled.detector is not None and compiled.near is not None and compiled.near.tracking_up
    assert compiled.stale and compiled.breaker is not None and not compiled.tracking
    assert compile_policy("x", None).detector is None and compile_policy("x", None).coalesce

"""Global limits: the server's accounting (GlobalLimits) and the engine's leases against it.

The token source here is an in-process adapter that calls GlobalLimits directly (a pure unit test;
the real stream is covered by tests/integration/test_cluster_flow.py).
"""

from __future__ import annotations

import concurrent.futures
from typing import Any

import pytest

from opensergo.common.clock import NS_PER_MS as NS
from opensergo.common.clock import ManualClock
from opensergo.common.stats import Window
from opensergo.controlplane.snapshots import SnapshotCache
from opensergo.controlplane.store.base import EventType, StoredObject, WatchEvent
from opensergo.controlplane.tokens import GlobalLimits, TokenService
from opensergo.governance import Engine, RateLimitedError
from opensergo.governance.errors import ConcurrencyLimitedError
from opensergo.governance.faulttolerance.cluster import GlobalRate
from opensergo.proto.flowcontrol.v1 import token_pb2 as tk
from opensergo.spec.loader import parse_documents

pytestmark = pytest.mark.unit

FT = "fault-tolerance.opensergo.io/v1alpha1"
RULES = f"""
apiVersion: {FT}
kind: RateLimitStrategy
metadata: {{name: global-rl, labels: {{app: shop}}}}
spec: {{metricType: RequestAmount, limitMode: Global, threshold: 10, statDurationSeconds: 1}}
---
apiVersion: {FT}
kind: ConcurrencyLimitStrategy
metadata: {{name: global-cc, labels: {{app: shop}}}}
spec: {{maxConcurrency: 3, limitMode: Global}}
---
apiVersion: {FT}
kind: FaultToleranceRule
metadata: {{name: rule, labels: {{app: shop}}}}
spec:
  targets: [{{targetResourceName: "GET:/buy"}}]
  strategies: [{{name: global-rl, kind: RateLimitStrategy}}]
---
apiVersion: {FT}
kind: FaultToleranceRule
metadata: {{name: rule-cc, labels: {{app: shop}}}}
spec:
  targets: [{{targetResourceName: "GET:/slow"}}]
  strategies: [{{name: global-cc, kind: ConcurrencyLimitStrategy}}]
"""


def snapshots_with(text: str) -> SnapshotCache:
    cache = SnapshotCache()
    for revision, obj in enumerate(parse_documents(text), start=1):
        body: dict[str, Any] = obj.to_dict()
        kind = f"{FT}/{obj.kind}"
        cache.apply(
            WatchEvent(EventType.ADDED, StoredObject(kind, obj.namespace, obj.name, body, revision), revision)
        )
    return cache


class InProcessSource:
    """A TokenSource answering synchronously from a GlobalLimits (no network)."""

    def __init__(self, limits: GlobalLimits, client: str) -> None:
        self.service = TokenService(limits)
        self.client = client
        self.timeout = 0.02
        self.up = True
        self.slow = 0

    @property
    def usable(self) -> bool:
        return self.up

    def mark_slow(self, seconds: float = 1.0) -> None:
        self.slow += 1

    def request(
        self, key: Any, op: str, count: int, bucket: int = 0
    ) -> concurrent.futures.Future[tk.TokenResponse]:
        future: concurrent.futures.Future[tk.TokenResponse] = concurrent.futures.Future()
        if not self.up:
            future.set_exception(ConnectionError("down"))
            return future
        request = tk.TokenRequest(
            key=tk.FlowKey(namespace=key[0], app=key[1], resource=key[2], strategy=key[3])
        )
        getattr(request, op).count = count
        if bucket:
            getattr(request, op).bucket = bucket
        future.set_result(self.service.handle(request, self.client))
        return future


def test_server_window_grants_at_most_the_threshold() -> None:
    clock = ManualClock()
    limits = GlobalLimits(snapshots_with(RULES), clock=clock.now_ns)
    key = ("default", "shop", "GET:/buy", "global-rl")
    leases = [limits.lease(key, 4) for _ in range(4)]
    assert [lease.granted for lease in leases] == [4, 4, 2, 0]
    assert limits.lease(key, 1).threshold == 10
    limits.give_back(key, 3, leases[0].bucket)
    assert limits.lease(key, 5).granted == 3
    clock.advance(1000)  # a full window later everything is available again
    assert limits.lease(key, 20).granted == 10
    assert limits.lease(("default", "shop", "GET:/buy", "missing"), 1).code == tk.TokenResponse.NO_RULE


def test_server_permits_and_reclaim() -> None:
    limits = GlobalLimits(snapshots_with(RULES))
    key = ("default", "shop", "GET:/slow", "global-cc")
    assert limits.acquire(key, "a", 2).granted == 2
    assert limits.acquire(key, "b", 2).granted == 1
    assert limits.acquire(key, "c", 1).granted == 0
    assert limits.release_client("a") == 2
    assert limits.acquire(key, "c", 2).granted == 2
    assert limits.held(key) == 3


def test_engines_share_one_global_budget() -> None:
    clock = ManualClock()
    limits = GlobalLimits(snapshots_with(RULES), clock=clock.now_ns)
    engines = []
    for name in ("a", "b", "c"):
        engine = Engine(clock=clock, instances=3)
        engine.set_token_source(InProcessSource(limits, name))
        engine.set_rules(parse_documents(RULES))
        engines.append(engine)
    admitted = 0
    for _ in range(20):
        for engine in engines:
            try:
                engine.entry("GET:/buy").exit()
                admitted += 1
            except RateLimitedError:
                pass
    assert admitted == 10  # the cluster total, not 3 x 10 and not 3 x floor(10 / 3)


def test_local_share_when_the_service_is_down() -> None:
    clock = ManualClock()
    limits = GlobalLimits(snapshots_with(RULES), clock=clock.now_ns)
    source = InProcessSource(limits, "a")
    engine = Engine(clock=clock, instances=2)
    engine.set_token_source(source)
    engine.set_rules(parse_documents(RULES))
    source.up = False
    admitted = 0
    for _ in range(20):
        try:
            engine.entry("GET:/buy").exit()
            admitted += 1
        except RateLimitedError as err:
            assert "local share 5" in str(err.detail)
    assert admitted == 5  # threshold 10 / 2 live instances


def test_global_concurrency_permits() -> None:
    limits = GlobalLimits(snapshots_with(RULES))
    engines = []
    for name in ("a", "b"):
        engine = Engine()
        engine.set_token_source(InProcessSource(limits, name))
        engine.set_rules(parse_documents(RULES))
        engines.append(engine)
    held = [engines[0].entry("GET:/slow"), engines[1].entry("GET:/slow"), engines[0].entry("GET:/slow")]
    with pytest.raises(ConcurrencyLimitedError):
        engines[1].entry("GET:/slow")
    held.pop().exit()
    engines[1].entry("GET:/slow").exit()
    for entry in held:
        entry.exit()
    key = ("default", "shop", "GET:/slow", "global-cc")
    assert limits.held(key) == 0  # every permit went back


def test_give_back_credits_the_bucket_that_counted_the_lease() -> None:
    clock = ManualClock()
    limits = GlobalLimits(snapshots_with(RULES), clock=clock.now_ns)  # 10 / s, 10 x 100 ms buckets
    key = ("default", "shop", "GET:/buy", "global-rl")
    old = limits.lease(key, 6)
    clock.advance(300)
    new = limits.lease(key, 4)
    assert new.bucket != old.bucket
    # 5 of the old lease come back 300 ms later: credited to the old bucket, not the new one.
    limits.give_back(key, 5, old.bucket)
    assert limits.lease(key, 10).granted == 5
    # 750 ms on, the old bucket has left the window: only what the new bucket counted (4, plus the
    # 5 just granted 300 ms ago) still holds.
    clock.advance(750)
    assert limits.lease(key, 10).granted == 1
    # A give-back for a bucket that has left the window changes nothing.
    limits.give_back(key, 5, old.bucket)
    assert limits.lease(key, 10).granted == 0


class ScriptedSource:
    """A TokenSource that grants scripted leases and records every request."""

    def __init__(self, leases: list[tuple[int, int, int]]) -> None:
        self.leases = leases  # (granted, valid_for_ms, bucket), answered in order
        self.requests: list[tuple[str, int, int]] = []
        self.timeout = 0.02

    @property
    def usable(self) -> bool:
        return True

    def mark_slow(self, seconds: float = 1.0) -> None:
        raise AssertionError("never slow")

    def request(
        self, key: Any, op: str, count: int, bucket: int = 0
    ) -> concurrent.futures.Future[tk.TokenResponse]:
        self.requests.append((op, count, bucket))
        future: concurrent.futures.Future[tk.TokenResponse] = concurrent.futures.Future()
        response = tk.TokenResponse(code=tk.TokenResponse.OK, interval_ms=1000)
        if op == "lease" and self.leases:
            response.granted, response.valid_for_ms, response.bucket = self.leases.pop(0)
        future.set_result(response)
        return future


def test_a_new_lease_does_not_extend_the_tokens_of_an_older_one() -> None:
    clock = ManualClock()
    source = ScriptedSource([(10, 200, 111), (10, 200, 222)])
    # Local share 100: the first lease asks for 10 (one bucket of it), refilled when 5 are left.
    rate = GlobalRate(("default", "shop", "GET:/buy", "rl"), source, Window(10, 1000), 100, clock.now_ns)
    for _ in range(4):
        assert rate.acquire(clock.now_ns())
    clock.advance(150)
    assert rate.acquire(clock.now_ns())  # 5 left: lease 222 is asked for (and granted) now
    assert [list(b) for b in rate.batches] == [[5, 200 * NS, 111], [10, 350 * NS, 222]]
    clock.advance(100)  # 250 ms: lease 111 has expired, lease 222 has not
    assert rate.acquire(clock.now_ns())
    # 111's five tokens went back to bucket 111 instead of living on with lease 222's expiry.
    assert [r for r in source.requests if r[0] == "give_back"] == [("give_back", 5, 111)]
    assert rate.tokens == 9 and [list(b) for b in rate.batches] == [[9, 350 * NS, 222]]

"""The token service behind ``limitMode: Global`` (our extension, opensergo.ext.flowcontrol.v1).

Data planes lease tokens in batches instead of asking once per request (Sentinel's token server
costs a round trip per call): a lease grants up to the asked count out of what the limit's sliding
window has left, and the tokens are valid for the rest of the current bucket plus one more, after
which unused ones are given back. Global concurrency permits are acquired and released in small
batches too; permits held by a client whose stream ends are reclaimed at once.

The window has the local engine's semantics (opensergo.common.stats.Window): 10 buckets over
the strategy's statDuration when it divides evenly (Sentinel's cluster server uses 10 x 100 ms),
else one bucket. Thresholds come from the same snapshots the control plane pushes: the
RateLimitStrategy / ConcurrencyLimitStrategy named in the key, for the key's namespace and app,
with ``limitMode: Global``.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from opensergo.common.clock import NS_PER_MS
from opensergo.common.protocol import SubscriptionKey
from opensergo.common.stats import Window
from opensergo.controlplane.snapshots import SnapshotCache
from opensergo.proto.flowcontrol.v1 import token_pb2 as tk
from opensergo.proto.flowcontrol.v1 import token_pb2_grpc as tk_grpc
from opensergo.spec import kinds
from opensergo.spec.faulttolerance import (
    ConcurrencyLimitMode,
    ConcurrencyLimitStrategy,
    LimitMode,
    RateLimitStrategy,
)

log = logging.getLogger(__name__)

RATE_KIND = kinds.lookup(RateLimitStrategy.KIND).full_kind
CONCURRENCY_KIND = kinds.lookup(ConcurrencyLimitStrategy.KIND).full_kind

Key = tuple[str, str, str, str]  # namespace, app, resource, strategy


def _key(message: tk.FlowKey) -> Key:
    return (message.namespace, message.app, message.resource, message.strategy)


class GlobalLimits:
    """Token and permit accounting for every global limit (one process owns each key)."""

    def __init__(self, snapshots: SnapshotCache, clock: Callable[[], int] = time.monotonic_ns) -> None:
        self._snapshots = snapshots
        self._clock = clock
        self._windows: dict[tuple[Key, int], Window] = {}
        self._held: dict[Key, dict[str, int]] = {}
        self.decisions = 0  # leases and acquisitions answered (for benchmarks)

    def _strategy(self, key: Key, kind: str) -> Any:
        namespace, app, _, name = key
        for obj in self._snapshots.get(SubscriptionKey(namespace, app, kind)).resources:
            if obj.name == name:
                return obj
        return None

    def rate_limit(self, key: Key) -> tuple[int, int] | None:
        """(threshold, interval ms) of the key's Global RateLimitStrategy, or None."""
        strategy = self._strategy(key, RATE_KIND)
        if not isinstance(strategy, RateLimitStrategy) or strategy.spec.limitMode is not LimitMode.GLOBAL:
            return None
        return strategy.spec.threshold, strategy.spec.stat_duration_millis

    def max_concurrency(self, key: Key) -> int | None:
        strategy = self._strategy(key, CONCURRENCY_KIND)
        if (
            not isinstance(strategy, ConcurrencyLimitStrategy)
            or strategy.spec.limitMode is not ConcurrencyLimitMode.GLOBAL
        ):
            return None
        return strategy.spec.maxConcurrency

    def _window(self, key: Key, interval_ms: int) -> Window:
        window = self._windows.get((key, interval_ms))
        if window is None:
            buckets = 10 if interval_ms % 10 == 0 else 1
            window = self._windows[(key, interval_ms)] = Window(buckets, interval_ms)
        return window

    def lease(self, key: Key, count: int) -> tk.TokenResponse:
        limit = self.rate_limit(key)
        if limit is None:
            return tk.TokenResponse(code=tk.TokenResponse.NO_RULE)
        threshold, interval_ms = limit
        window = self._window(key, interval_ms)
        now = self._clock()
        if now >= window.end:
            window.roll(now)
        used = window.hist_pass + window.passes[window.idx]
        granted = max(0, min(count, threshold - used))
        window.passes[window.idx] += granted
        if granted < count:
            window.blocks[window.idx] += count - granted
        self.decisions += 1
        valid_ns = window.end - now + window.length_ns
        return tk.TokenResponse(
            code=tk.TokenResponse.OK,
            granted=granted,
            valid_for_ms=max(1, valid_ns // NS_PER_MS),
            threshold=threshold,
            interval_ms=interval_ms,
            bucket=window.start,
        )

    def give_back(self, key: Key, count: int, bucket: int) -> tk.TokenResponse:
        """Unused tokens of the lease counted in ``bucket`` go back to that bucket, if it is still
        in the window (crediting a newer bucket instead would let the old count expire on time
        and leave the window short: over-admission later)."""
        limit = self.rate_limit(key)
        if limit is None:
            return tk.TokenResponse(code=tk.TokenResponse.NO_RULE)
        window = self._window(key, limit[1])
        now = self._clock()
        if now >= window.end:
            window.roll(now)
        oldest = window.start - window.interval_ns
        for i in range(window.sample_count):
            if window.starts[i] == bucket and oldest < bucket <= window.start:
                taken = min(count, window.passes[i])
                window.passes[i] -= taken
                if i != window.idx:
                    window.hist_pass -= taken
                break
        return tk.TokenResponse(code=tk.TokenResponse.OK)

    def acquire(self, key: Key, client: str, count: int) -> tk.TokenResponse:
        maximum = self.max_concurrency(key)
        if maximum is None:
            return tk.TokenResponse(code=tk.TokenResponse.NO_RULE)
        held = self._held.setdefault(key, {})
        granted = max(0, min(count, maximum - sum(held.values())))
        if granted:
            held[client] = held.get(client, 0) + granted
        self.decisions += 1
        return tk.TokenResponse(code=tk.TokenResponse.OK, granted=granted, threshold=maximum)

    def release(self, key: Key, client: str, count: int) -> tk.TokenResponse:
        held = self._held.get(key, {})
        left = held.get(client, 0) - count
        if left > 0:
            held[client] = left
        else:
            held.pop(client, None)
        return tk.TokenResponse(code=tk.TokenResponse.OK)

    def release_client(self, client: str) -> int:
        """Reclaim every permit ``client`` holds (its stream ended); returns how many."""
        reclaimed = 0
        for held in self._held.values():
            reclaimed += held.pop(client, 0)
        return reclaimed

    def held(self, key: Key) -> int:
        return sum(self._held.get(key, {}).values())


Owner = Callable[[Key], "str | None"]


def rendezvous_owner(key: Key, replicas: dict[str, str]) -> str | None:
    """The replica id that owns ``key`` among ``replicas`` (id -> address): highest hash wins."""
    if not replicas:
        return None
    text = "/".join(key)
    return max(replicas, key=lambda rid: hashlib.sha256(f"{rid}|{text}".encode()).digest())


class TokenService(tk_grpc.TokenServiceServicer):
    """``owner`` maps a key to the address of the replica that owns it, or None for this one."""

    def __init__(self, limits: GlobalLimits, owner: Owner | None = None) -> None:
        self.limits = limits
        self.owner = owner

    async def Connect(
        self,
        request_iterator: AsyncIterator[tk.TokenBatch],
        context: grpc.aio.ServicerContext[tk.TokenBatch, tk.TokenBatchResponse],
    ) -> None:
        client = f"stream:{id(context)}"
        try:
            async for batch in request_iterator:
                if batch.client_id:
                    client = batch.client_id + f"@{id(context)}"
                answers = tk.TokenBatchResponse()
                for request in batch.requests:
                    response = self.handle(request, client)
                    response.id = request.id
                    answers.responses.append(response)
                await context.write(answers)
        finally:
            reclaimed = self.limits.release_client(client)
            if reclaimed:
                log.info("token client %s went away: reclaimed %d permit(s)", client, reclaimed)

    def handle(self, request: tk.TokenRequest, client: str) -> tk.TokenResponse:
        key = _key(request.key)
        op = request.WhichOneof("op")
        if not all(key) or op is None:
            return tk.TokenResponse(code=tk.TokenResponse.BAD_REQUEST, message="key and op are required")
        count = max(0, getattr(request, op).count)
        owner = self.owner(key) if self.owner is not None else None
        if owner is not None:
            return tk.TokenResponse(code=tk.TokenResponse.REDIRECT, owner=owner)
        if op == "lease":
            return self.limits.lease(key, count)
        if op == "give_back":
            return self.limits.give_back(key, count, request.give_back.bucket)
        if op == "acquire":
            return self.limits.acquire(key, client, count)
        return self.limits.release(key, client, count)

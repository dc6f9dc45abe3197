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

Integrity and fairness: a client (one Connect stream) can give back only tokens it leased in that
bucket, and a contended budget is shared so that no client can take what another asked for within
its fair share (:func:`share_cap`). Every request's namespace must be one where the caller may
act as a data plane (grpcauth.py).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import grpc

from opensergo.common.clock import NS_PER_MS
from opensergo.common.kube_names import InvalidName, check_app, check_namespace
from opensergo.common.protocol import SubscriptionKey
from opensergo.common.stats import Window
from opensergo.controlplane.api.auth import ANONYMOUS, Principal
from opensergo.controlplane.grpcauth import OPEN, Action, GrpcAuth
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
WANT_NS = 1_000_000_000  # a refused permit request counts as demand for this long


def _key(message: tk.FlowKey) -> Key:
    return (message.namespace, message.app, message.resource, message.strategy)


class _Share:
    """One client's part of one rate limit's window: per bucket start, the tokens it holds
    (granted, minus what it gave back) and the tokens it asked for and did not get."""

    __slots__ = ("held", "refused")

    def __init__(self) -> None:
        self.held: dict[int, int] = {}
        self.refused: dict[int, int] = {}

    def holding(self) -> int:
        return sum(self.held.values())

    def demand(self) -> int:
        return sum(self.held.values()) + sum(self.refused.values())

    def forget_before(self, oldest: int) -> bool:
        """Drop buckets that have left the window; True when nothing is left."""
        for counts in (self.held, self.refused):
            for bucket in [b for b in counts if b <= oldest]:
                del counts[bucket]
        return not self.held and not self.refused


def share_cap(threshold: int, mine: int, count: int, others: Iterable[int], clients: int) -> int:
    """How many of ``count`` tokens (or permits) a client that holds ``mine`` may still take.

    The fairness rule: with ``clients`` clients asking in the window (this one included), each is
    entitled to ``fair = ceil(threshold / clients)``; a client may go beyond its fair share only
    into what the others' demand (what they hold plus what they were refused, each counted up to
    its own fair share) leaves free. So an idle budget is never wasted, but nobody can take what
    another client asked for within its share. ``others`` is each other client's demand.
    """
    fair = -(-threshold // max(1, clients))
    if mine + count <= fair:
        return count
    reserved = sum(min(demand, fair) for demand in others)
    return max(0, min(count, max(fair, threshold - reserved) - mine))


class GlobalLimits:
    """Token and permit accounting for every global limit (one process owns each key).

    Per client (one token stream), it keeps what the client leased in each bucket of the window,
    so a give-back credits at most what that client leased in that bucket, and it caps each
    client's share of a contended budget (:func:`share_cap`; docs/flow-control.md, "Fairness").
    """

    def __init__(self, snapshots: SnapshotCache, clock: Callable[[], int] = time.monotonic_ns) -> None:
        self._snapshots = snapshots
        self._clock = clock
        self._windows: dict[tuple[Key, int], Window] = {}
        # Per window: client -> its share, pruned when the window moves to a new bucket.
        self._shares: dict[tuple[Key, int], dict[str, _Share]] = {}
        self._pruned: dict[tuple[Key, int], int] = {}
        self._held: dict[Key, dict[str, int]] = {}
        # Permits refused per client: (count, when); a client still asking counts for WANT_NS.
        self._wanting: dict[Key, dict[str, tuple[int, int]]] = {}
        self.decisions = 0  # leases and acquisitions answered (for benchmarks)
        self.refused_give_backs = 0  # tokens given back that the client did not hold

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

    def _current(self, key: Key, interval_ms: int) -> tuple[Window, dict[str, _Share], int]:
        """The key's window rolled to now, its clients' shares (stale buckets dropped), and now."""
        window = self._window(key, interval_ms)
        now = self._clock()
        if now >= window.end:
            window.roll(now)
        wkey = (key, interval_ms)
        shares = self._shares.setdefault(wkey, {})
        if self._pruned.get(wkey) != window.start:
            self._pruned[wkey] = window.start
            oldest = window.start - window.interval_ns
            for client in [c for c, share in shares.items() if share.forget_before(oldest)]:
                del shares[client]
        return window, shares, now

    def lease(self, key: Key, count: int, client: str = "") -> tk.TokenResponse:
        limit = self.rate_limit(key)
        if limit is None:
            return tk.TokenResponse(code=tk.TokenResponse.NO_RULE)
        threshold, interval_ms = limit
        window, shares, now = self._current(key, interval_ms)
        share = shares.get(client)
        if share is None:
            share = _Share()
        used = window.hist_pass + window.passes[window.idx]
        room = max(0, min(count, threshold - used))
        granted = 0
        if room:
            others = (s.demand() for c, s in shares.items() if c != client)
            clients = len(shares) + (client not in shares)
            granted = share_cap(threshold, share.holding(), room, others, clients)
        window.passes[window.idx] += granted
        bucket = window.start
        if granted:
            share.held[bucket] = share.held.get(bucket, 0) + granted
        if granted < count:
            window.blocks[window.idx] += count - granted
            share.refused[bucket] = share.refused.get(bucket, 0) + count - granted
        if share.held or share.refused:
            shares[client] = share
        self.decisions += 1
        valid_ns = window.end - now + window.length_ns
        return tk.TokenResponse(
            code=tk.TokenResponse.OK,
            granted=granted,
            valid_for_ms=max(1, valid_ns // NS_PER_MS),
            threshold=threshold,
            interval_ms=interval_ms,
            bucket=bucket,
        )

    def give_back(self, key: Key, count: int, bucket: int, client: str = "") -> tk.TokenResponse:
        """Unused tokens of the lease counted in ``bucket`` go back to that bucket, if it is still
        in the window (crediting a newer bucket instead would let the old count expire on time
        and leave the window short: over-admission later), and only as many as ``client`` leased
        in that bucket and has not given back yet (else a give-back would mint tokens)."""
        limit = self.rate_limit(key)
        if limit is None:
            return tk.TokenResponse(code=tk.TokenResponse.NO_RULE)
        window, shares, _ = self._current(key, limit[1])
        share = shares.get(client)
        held = share.held.get(bucket, 0) if share is not None else 0
        if count > held:
            self.refused_give_backs += count - held
            log.debug(
                "token client %s gave back %d token(s) of bucket %d, but held %d", client, count, bucket, held
            )
        oldest = window.start - window.interval_ns
        for i in range(window.sample_count):
            if window.starts[i] == bucket and oldest < bucket <= window.start:
                taken = min(count, held, window.passes[i])
                if taken and share is not None:
                    share.held[bucket] = held - taken
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
        wanting = self._wanting.setdefault(key, {})
        now = self._clock()
        for stale in [c for c, (_, at) in wanting.items() if now - at > WANT_NS]:
            del wanting[stale]
        room = max(0, min(count, maximum - sum(held.values())))
        granted = 0
        if room:
            others = {c: n for c, n in held.items() if c != client}
            for c, (n, _) in wanting.items():
                if c != client:
                    others[c] = others.get(c, 0) + n
            granted = share_cap(maximum, held.get(client, 0), room, others.values(), len(others) + 1)
        if granted:
            held[client] = held.get(client, 0) + granted
        if granted < count:
            wanting[client] = (count - granted, now)
        else:
            wanting.pop(client, None)
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
        """Reclaim every permit ``client`` holds (its stream ended) and forget its shares of the
        rate windows (its tokens stay counted; it no longer asks); returns the permits."""
        reclaimed = 0
        for held in self._held.values():
            reclaimed += held.pop(client, 0)
        for wanting in self._wanting.values():
            wanting.pop(client, None)
        for shares in self._shares.values():
            shares.pop(client, None)
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


class PermissionDenied(Exception):
    """The caller may not lease in a request's namespace: the stream ends with PERMISSION_DENIED."""


class TokenService(tk_grpc.TokenServiceServicer):
    """``owner`` maps a key to the address of the replica that owns it, or None for this one.

    A client is one stream (its first batch's ``client_id`` names it in logs; later batches cannot
    rename it, so it cannot take a fresh share). Every request's namespace must be one where the
    caller is a data plane (grpcauth): otherwise the stream ends with PERMISSION_DENIED."""

    def __init__(self, limits: GlobalLimits, owner: Owner | None = None, access: GrpcAuth = OPEN) -> None:
        self.limits = limits
        self.owner = owner
        self._access = access

    async def Connect(
        self,
        request_iterator: AsyncIterator[tk.TokenBatch],
        context: grpc.aio.ServicerContext[tk.TokenBatch, tk.TokenBatchResponse],
    ) -> None:
        caller = self._access.caller()
        client = f"stream:{id(context)}"
        named = False
        try:
            async for batch in request_iterator:
                if batch.client_id and not named:
                    client = batch.client_id[:128] + f"@{id(context)}"
                    named = True
                answers = tk.TokenBatchResponse()
                for request in batch.requests:
                    try:
                        response = self.handle(request, client, caller)
                    except PermissionDenied as err:
                        await context.abort(grpc.StatusCode.PERMISSION_DENIED, str(err))
                    response.id = request.id
                    answers.responses.append(response)
                await context.write(answers)
        finally:
            reclaimed = self.limits.release_client(client)
            if reclaimed:
                log.info("token client %s went away: reclaimed %d permit(s)", client, reclaimed)

    def handle(
        self, request: tk.TokenRequest, client: str, caller: Principal = ANONYMOUS
    ) -> tk.TokenResponse:
        """The answer to one request of ``client``; raises PermissionDenied when ``caller`` may
        not lease in the key's namespace."""
        key = _key(request.key)
        op = request.WhichOneof("op")
        if not all(key) or op is None:
            return tk.TokenResponse(code=tk.TokenResponse.BAD_REQUEST, message="key and op are required")
        try:
            check_namespace(key[0], "key.namespace")
            check_app(key[1], "key.app")
        except InvalidName as err:
            return tk.TokenResponse(code=tk.TokenResponse.BAD_REQUEST, message=str(err))
        denial = self._access.denial(caller, key[0], Action.LEASE)
        if denial is not None:
            raise PermissionDenied(denial)
        count = max(0, getattr(request, op).count)
        owner = self.owner(key) if self.owner is not None else None
        if owner is not None:
            return tk.TokenResponse(code=tk.TokenResponse.REDIRECT, owner=owner)
        if op == "lease":
            return self.limits.lease(key, count, client)
        if op == "give_back":
            return self.limits.give_back(key, count, request.give_back.bucket, client)
        if op == "acquire":
            return self.limits.acquire(key, client, count)
        return self.limits.release(key, client, count)

"""Global limits: tokens and permits leased from the control plane's token service.

Accuracy against latency: a guarded call spends a token leased earlier, so in the common case it
waits on nothing. Leases are sized to about one lease period of this instance's recent traffic
(at least 1, at most the threshold) and are refilled in the background when half is left.
Each lease keeps its own expiry (the server's current bucket plus one) and is spent oldest first;
its unused tokens go back to the server bucket that counted them, so a token never outlives the
window it was counted in, and a give-back never credits a newer bucket. A call
finds the bag empty only when traffic jumped or the server granted nothing; it then waits for one
lease, at most ``timeout`` (20 ms by default): granted -> pass, nothing granted -> block (the
cluster's budget is spent), no answer -> local share. The cost is accuracy at the edges: tokens
leased by an idle instance are unavailable to the others until given back (at most about two
buckets, 200 ms for a 1 s window), so the cluster may admit slightly less than the threshold
while load shifts between instances; it never admits more than the server's window allows,
except for tokens spent across a window boundary.

When the token service is unreachable or slow, or has no Global rule of that name, each instance
enforces ``threshold / live instances`` locally (the GlobalToLocal share), and returns to global
mode as soon as the service answers again.

Concurrency permits are different: a permit that one instance keeps in reserve is one that another
instance cannot use, so they are acquired per call (one round trip, bounded by ``timeout``) and
released as soon as the call ends (a message, not waited on). A client that dies loses its
permits to the control plane when its stream ends.
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from opensergo.common.clock import NS_PER_MS
from opensergo.common.stats import Window

if TYPE_CHECKING:
    # At run time token_pb2 (protobuf) is imported where a response is read: only a token
    # client, which has loaded it already, produces responses.
    from opensergo.proto.flowcontrol.v1 import token_pb2 as tk

FlowKey = tuple[str, str, str, str]  # namespace, app, resource, strategy

LOW_WATER = 0.5  # refill in the background when half the lease is left
SPARE_PERMITS = 0  # see the module docstring


class TokenSource(Protocol):
    """What global limits need from a token client (opensergo.client.tokens.TokenClient)."""

    timeout: float

    @property
    def usable(self) -> bool: ...

    def mark_slow(self, seconds: float = 1.0) -> None: ...

    def request(
        self, key: FlowKey, op: str, count: int, bucket: int = 0
    ) -> concurrent.futures.Future[tk.TokenResponse]: ...


def _answer(future: concurrent.futures.Future[tk.TokenResponse], timeout: float) -> tk.TokenResponse | None:
    try:
        return future.result(timeout=timeout)
    except (concurrent.futures.TimeoutError, ConnectionError, concurrent.futures.CancelledError):
        return None


class GlobalRate:
    """One Global RateLimitStrategy on one resource; falls back to a local window."""

    __slots__ = (
        "_lock",
        "batches",
        "clock",
        "fallback",
        "key",
        "lease_started",
        "local_threshold",
        "no_rule",
        "pending",
        "retry_at",
        "source",
        "tokens",
        "used",
        "want",
    )

    def __init__(
        self,
        key: FlowKey,
        source: TokenSource,
        fallback: Window,
        local_threshold: int,
        clock: Callable[[], int],
    ) -> None:
        self.key = key
        self.clock = clock
        self.source = source
        self.fallback = fallback
        self.local_threshold = local_threshold
        self.tokens = 0  # sum of the batches' counts
        self.batches: deque[list[int]] = deque()  # leases, oldest first: [count, expires, bucket]
        self.used = 0
        self.lease_started = 0
        self.retry_at = 0  # after the server granted nothing: no new lease before this
        # One bucket (a tenth of the window) of this instance's share: a lease lives about that long.
        self.want = max(1, local_threshold // 10)
        self.pending: concurrent.futures.Future[tk.TokenResponse] | None = None
        self.no_rule = False
        # Reentrant: a lease answered at once (or failed at once) runs _granted inside _refill.
        self._lock = threading.RLock()
        self._refill(0)  # lease ahead of the first request

    @property
    def global_mode(self) -> bool:
        return self.source.usable and not self.no_rule

    def acquire(self, now: int) -> bool:
        if not self.source.usable or self.no_rule:
            return self._local(now)
        with self._lock:
            if self._spend_locked(now):
                if self.tokens <= self.want * LOW_WATER and self.pending is None:
                    self._refill(now)
                return True
            if self.pending is None and now < self.retry_at:
                return False  # the cluster's budget is spent (asked again at retry_at)
            pending = self.pending if self.pending is not None else self._refill(now)
        response = _answer(pending, self.source.timeout)
        if response is None:
            self.source.mark_slow()
            return self._local(now)
        with self._lock:
            # The future wakes its waiters before it runs its callbacks: apply the answer here
            # if _granted has not yet.
            if self.pending is pending:
                self._apply_locked(response)
            if self.no_rule:
                return self._local(now)
            return self._spend_locked(self.clock())  # False: the cluster's budget is spent

    def _spend_locked(self, now: int) -> bool:
        """Take one token from the oldest unexpired lease; expired ones are given back."""
        batches = self.batches
        while batches:
            batch = batches[0]
            if now >= batch[1]:
                self._give_back_locked(batches.popleft())
                continue
            batch[0] -= 1
            if batch[0] == 0:
                batches.popleft()
            self.tokens -= 1
            self.used += 1
            self._count_locally(now)
            return True
        return False

    def _count_locally(self, now: int) -> None:
        # Passes in global mode also go into the fallback window, so that a switch to the local
        # share mid-window starts from what this instance already admitted.
        w = self.fallback
        if now >= w.end:
            w.roll(now)
        w.passes[w.idx] += 1

    def _refill(self, now: int) -> concurrent.futures.Future[tk.TokenResponse]:
        """Ask for the next lease (call with the lock held, or before first use)."""
        if self.lease_started and now > self.lease_started:
            # Size the lease to one lease period of recent traffic, with some headroom.
            period = max(now - self.lease_started, 50 * NS_PER_MS)
            rate_per_period = self.used * (100 * NS_PER_MS) / period
            self.want = max(1, min(int(rate_per_period * 1.5) + 1, max(1, self.local_threshold * 4)))
        self.used = 0
        self.lease_started = now
        future = self.source.request(self.key, "lease", self.want)
        self.pending = future
        future.add_done_callback(self._granted)
        return future

    def _granted(self, future: concurrent.futures.Future[tk.TokenResponse]) -> None:
        try:
            response = future.result()
        except Exception:
            response = None
        with self._lock:
            if self.pending is future:  # else the waiting caller applied it already
                self._apply_locked(response)

    def _apply_locked(self, response: tk.TokenResponse | None) -> None:
        self.pending = None
        if response is None:
            return
        from opensergo.proto.flowcontrol.v1 import token_pb2 as tk

        if response.code == tk.TokenResponse.NO_RULE:
            self.no_rule = True
            return
        self.no_rule = False
        now = self.clock()
        if response.granted:
            self.tokens += response.granted
            expires = now + response.valid_for_ms * NS_PER_MS
            self.batches.append([response.granted, expires, response.bucket])
        else:
            # Nothing left in the window: do not ask once per blocked request, but ask again
            # within a quarter bucket: other instances give back what their leases did not use.
            self.retry_at = now + max(1, response.interval_ms // 40) * NS_PER_MS

    def _give_back_locked(self, batch: list[int]) -> None:
        count, _, bucket = batch
        self.tokens -= count
        if count:
            self.source.request(self.key, "give_back", count, bucket)

    def _local(self, now: int) -> bool:
        w = self.fallback
        if now >= w.end:
            w.roll(now)
        if w.hist_pass + w.passes[w.idx] >= self.local_threshold:
            return False
        w.passes[w.idx] += 1
        return True

    def close(self) -> None:
        with self._lock:
            while self.batches:
                self._give_back_locked(self.batches.popleft())


class GlobalPermits:
    """One Global ConcurrencyLimitStrategy on one resource; falls back to a local count."""

    __slots__ = ("_lock", "available", "in_global", "in_local", "key", "local_max", "no_rule", "source")

    def __init__(self, key: FlowKey, source: TokenSource, local_max: int) -> None:
        self.key = key
        self.source = source
        self.local_max = local_max
        self.available = 0
        self.in_global = 0
        self.in_local = 0
        self.no_rule = False
        self._lock = threading.Lock()

    def acquire(self) -> bool:
        if self.source.usable and not self.no_rule:
            with self._lock:
                if self.available > 0:
                    self.available -= 1
                    self.in_global += 1
                    return True
            response = _answer(
                self.source.request(self.key, "acquire", 1 + SPARE_PERMITS), self.source.timeout
            )
            from opensergo.proto.flowcontrol.v1 import token_pb2 as tk

            if response is not None and response.code == tk.TokenResponse.NO_RULE:
                self.no_rule = True
            elif response is not None:
                with self._lock:
                    self.available += response.granted
                    if self.available > 0:
                        self.available -= 1
                        self.in_global += 1
                        return True
                return False
            else:
                self.source.mark_slow()
        with self._lock:
            if self.in_local >= self.local_max:
                return False
            self.in_local += 1
            return True

    def release(self) -> None:
        with self._lock:
            if self.in_local > 0:
                self.in_local -= 1
                return
            if self.in_global > 0:
                self.in_global -= 1
                self.available += 1
            extra = self.available - SPARE_PERMITS
            if extra > 0:
                self.available -= extra
            else:
                extra = 0
        if extra and self.source.usable:
            self.source.request(self.key, "release", extra)

    def close(self) -> None:
        with self._lock:
            count, self.available = self.available, 0
        if count and self.source.usable:
            self.source.request(self.key, "release", count)

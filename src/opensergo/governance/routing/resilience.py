"""A TrafficRouter rule's timeout, retries and fault injection, applied by the SDK like Envoy's router.

The outbound integrations (httpx, requests, gRPC) drive one :class:`CallPolicy` per routed call:

1. :meth:`CallPolicy.fault`: the injected delay (seconds, possibly 0) and abort (an HTTP status
   or gRPC code, or None), drawn with the rule's percentages; the delay comes first, then the
   abort, as in Envoy's fault filter.
2. Each try runs within :meth:`CallPolicy.try_timeout` (the per-try timeout, cut to what is left
   of the route timeout; the route timeout includes every retry).
3. After each try :meth:`CallPolicy.retry_after_status` / :meth:`retry_after_failure` say
   whether to retry, and the back-off to wait: Envoy's fully jittered exponential back-off,
   base 25 ms, at most 250 ms. A retry goes to a new pick of the same pool.
4. When the route timeout has passed (or a per-try timeout ends the last try) the call answers
   504 (Envoy: ``upstream request timeout``).

Retry conditions are Envoy's names: ``5xx`` (any 5xx answer, a connect failure, a reset or a
per-try timeout), ``gateway-error`` (502/503/504 and the same transport failures),
``connect-failure``, ``reset``, ``refused-stream``, ``retriable-4xx`` (409), listed status codes;
for gRPC the status names ``unavailable``, ``cancelled``, ``deadline-exceeded``, ``internal``,
``resource-exhausted``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Literal

from opensergo.spec.resilience import Abort, RoutePolicy

__all__ = ["BACKOFF_BASE", "BACKOFF_MAX", "TIMEOUT_BODY", "CallPolicy", "Failure"]

BACKOFF_BASE = 0.025
BACKOFF_MAX = 0.25
TIMEOUT_BODY = b"upstream request timeout"
FAULT_ABORT_BODY = b"fault filter abort"

Failure = Literal["connect", "reset", "timeout"]
_FAILURE_CONDITIONS: dict[str, frozenset[str]] = {
    "connect": frozenset({"5xx", "gateway-error", "connect-failure", "refused-stream"}),
    "reset": frozenset({"5xx", "gateway-error", "reset"}),
    "timeout": frozenset({"5xx", "gateway-error"}),
}
_GRPC_CONDITIONS = {
    "UNAVAILABLE": "unavailable",
    "CANCELLED": "cancelled",
    "DEADLINE_EXCEEDED": "deadline-exceeded",
    "INTERNAL": "internal",
    "RESOURCE_EXHAUSTED": "resource-exhausted",
}


class CallPolicy:
    """The retry/timeout state of one call."""

    __slots__ = ("_clock", "_conditions", "_rng", "deadline", "left", "policy", "retries_done")

    def __init__(
        self,
        policy: RoutePolicy,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.policy = policy
        self._clock = clock
        self._rng = rng
        retries = policy.retries
        self.left = retries.attempts if retries is not None else 0
        self._conditions = frozenset(retries.retry_on) if retries is not None else frozenset()
        self.deadline = clock() + policy.timeout if policy.timeout is not None else None
        self.retries_done = 0

    # -- fault injection ---------------------------------------------------------------------------
    def fault(self) -> tuple[float, Abort | None]:
        """(delay in seconds, abort or None) for this call."""
        delay = 0.0
        if self.policy.delay is not None and self._rng() * 100 < self.policy.delay.percent:
            delay = self.policy.delay.seconds
        abort = self.policy.abort
        if abort is not None and not self._rng() * 100 < abort.percent:
            abort = None
        return delay, abort

    # -- timeouts ----------------------------------------------------------------------------------
    @property
    def timed(self) -> bool:
        """Whether the rule sets a timeout (the SDK then answers 504 when it passes)."""
        retries = self.policy.retries
        return self.deadline is not None or (retries is not None and retries.per_try_timeout is not None)

    def remaining(self) -> float | None:
        return None if self.deadline is None else max(0.0, self.deadline - self._clock())

    def expired(self) -> bool:
        return self.deadline is not None and self._clock() >= self.deadline

    def try_timeout(self) -> float | None:
        """The timeout of the next try (None: unbounded)."""
        retries = self.policy.retries
        per_try = retries.per_try_timeout if retries is not None else None
        remaining = self.remaining()
        if per_try is None:
            return remaining
        return per_try if remaining is None else min(per_try, remaining)

    # -- retries -----------------------------------------------------------------------------------
    def _retry(self, wanted: bool) -> float | None:
        if not wanted or self.left <= 0 or self.expired():
            return None
        self.left -= 1
        self.retries_done += 1
        backoff: float = self._rng() * min(BACKOFF_MAX, BACKOFF_BASE * (2**self.retries_done - 1))
        remaining = self.remaining()
        return backoff if remaining is None else min(backoff, remaining)

    def retry_after_status(self, status: int) -> float | None:
        """The back-off before retrying an HTTP answer, None when it is final."""
        retries = self.policy.retries
        if retries is None:
            return None
        c = self._conditions
        wanted = (
            ("5xx" in c and status >= 500)
            or ("gateway-error" in c and status in (502, 503, 504))
            or ("retriable-4xx" in c and status == 409)
            or status in retries.status_codes
        )
        return self._retry(wanted)

    def retry_after_failure(self, failure: Failure) -> float | None:
        """The back-off before retrying after a transport failure, None when it is final."""
        return self._retry(bool(self._conditions & _FAILURE_CONDITIONS[failure]))

    def retry_after_grpc(self, code_name: str) -> float | None:
        """The back-off before retrying a gRPC status (by name, e.g. ``UNAVAILABLE``)."""
        condition = _GRPC_CONDITIONS.get(code_name)
        return self._retry(condition is not None and condition in self._conditions)

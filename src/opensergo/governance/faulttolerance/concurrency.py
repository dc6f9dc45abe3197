"""ConcurrencyLimitStrategy: at most ``maxConcurrency`` requests of a resource in flight.

Sentinel blocks when ``inFlight + 1 > maxConcurrency``. The in-flight count is the resource's
:class:`~opensergo.governance.faulttolerance.node.InFlight`, taken when the request passes this
check and released when it exits (a request later refused by another strategy gives its slot back
at once). Several limits on one resource compile to the smallest; a refusal is attributed to the
first limit in rule order that the request would exceed, as Sentinel's first failing rule.

``limitMode: Global`` takes its permits from the control plane's token service
(:class:`~opensergo.governance.faulttolerance.cluster.GlobalPermits`) when one is attached, and is
enforced per instance otherwise (with a warning logged once per strategy).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING

from opensergo.governance.errors import BlockedError, ConcurrencyLimitedError
from opensergo.governance.faulttolerance.cluster import GlobalPermits
from opensergo.governance.faulttolerance.ref import RuleRef

if TYPE_CHECKING:
    from opensergo.governance.faulttolerance.compiling import Compilation
    from opensergo.spec.faulttolerance import ConcurrencyLimitStrategy

NO_LIMIT = sys.maxsize


class ConcurrencyLimits:
    """The compiled concurrency strategies of one resource (immutable once built).

    ``max`` is the smallest local limit (:data:`NO_LIMIT` when there is none); ``limits`` every
    local (limit, rule) in rule order; ``permits`` the Global strategies backed by the token
    service.
    """

    __slots__ = ("limits", "max", "permits")

    def __init__(
        self,
        limits: tuple[tuple[int, RuleRef], ...],
        permits: tuple[tuple[GlobalPermits, RuleRef], ...],
    ) -> None:
        self.limits = limits
        self.max = min((limit for limit, _ in limits), default=NO_LIMIT)
        self.permits = permits

    def refusal(self, in_flight: int) -> BlockedError:
        """The error for a request that found ``in_flight`` others in flight: the first limit
        (in rule order) that ``in_flight + 1`` exceeds."""
        for limit, ref in self.limits:
            if in_flight + 1 > limit:
                return ConcurrencyLimitedError.from_ref(ref, f"{in_flight} in flight, max {limit}")
        limit, ref = self.limits[0]  # pragma: no cover - only called when over the smallest limit
        return ConcurrencyLimitedError.from_ref(ref, f"{in_flight} in flight, max {limit}")

    def acquire_permits(self) -> BlockedError | None:
        """Take one permit of every Global strategy, or none (a refusal gives back what it took)."""
        for i, (permits, ref) in enumerate(self.permits):
            if not permits.acquire():
                for taken, _ in self.permits[:i]:
                    taken.release()
                return ConcurrencyLimitedError.from_ref(ref, "global max concurrency reached")
        return None

    def release_permits(self) -> None:
        for permits, _ in self.permits:
            permits.release()


def is_global(strategy: ConcurrencyLimitStrategy) -> bool:
    # The spec models (pydantic) are imported with the first rules, not with this module.
    from opensergo.spec.faulttolerance import ConcurrencyLimitMode

    return strategy.spec.limitMode is ConcurrencyLimitMode.GLOBAL


def compile_check(
    resource: str,
    strategies: Sequence[tuple[ConcurrencyLimitStrategy, RuleRef]],
    build: Compilation,
) -> ConcurrencyLimits | None:
    """The concurrency check of ``resource`` (None: no concurrency strategy applies)."""
    local: list[tuple[int, RuleRef]] = []
    permits: list[tuple[GlobalPermits, RuleRef]] = []
    source = build.token_source
    for strategy, ref in strategies:
        limit = strategy.spec.maxConcurrency
        if is_global(strategy) and source is not None:
            share = max(1, limit // build.instances)
            flow = (ref.namespace, strategy.app or "", resource, strategy.name)
            kept = build.keep(
                ("permits", resource, ref.namespace, strategy.name, build.spec_key(strategy)),
                partial(GlobalPermits, flow, source, share),
            )
            kept.local_max = share
            permits.append((kept, ref))
            continue
        if is_global(strategy):
            build.warn_global(ref, "ConcurrencyLimitStrategy", "per instance")
        local.append((limit, ref))
    if not local and not permits:
        return None
    return ConcurrencyLimits(tuple(local), tuple(permits))

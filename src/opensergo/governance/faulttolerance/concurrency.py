"""ConcurrencyLimitStrategy: at most ``maxConcurrency`` requests of a resource in flight.

Sentinel blocks when ``inFlight + 1 > maxConcurrency``. The in-flight count is the resource's
:class:`~opensergo.common.stats.ConcurrencyGauge`, taken when the request passes this check and
released when it exits (a request later refused by another strategy gives its slot back at once).
Several limits on one resource compile to the smallest; a refusal is attributed to the first
limit in rule order that the request would exceed, as Sentinel's first failing rule.
"""

from __future__ import annotations

from opensergo.governance.faulttolerance.ref import RuleRef
from opensergo.spec.faulttolerance import ConcurrencyLimitMode, ConcurrencyLimitStrategy


def max_concurrency(strategy: ConcurrencyLimitStrategy) -> int:
    """The enforced limit; ``Global`` is enforced per instance until cluster limiting exists."""
    return strategy.spec.maxConcurrency


def is_global(strategy: ConcurrencyLimitStrategy) -> bool:
    return strategy.spec.limitMode is ConcurrencyLimitMode.GLOBAL


def attribute(limits: tuple[tuple[int, RuleRef], ...], in_flight: int) -> RuleRef:
    """The first limit (in rule order) that ``in_flight + 1`` exceeds."""
    for limit, ref in limits:
        if in_flight + 1 > limit:
            return ref
    return limits[0][1]

"""Governance for Python services: Sentinel-grade fault tolerance driven by OpenSergo rules.

``guard`` protects a resource; ``load_rules`` applies CR YAML locally; an :class:`Engine` holds a
compiled rule set (``default_engine()`` is the process-wide one that the SDK updates).
"""

from opensergo.common.clock import Clock, ManualClock, SystemClock
from opensergo.governance.api import Guard, default_engine, guard, load_rules
from opensergo.governance.errors import (
    BlockedError,
    CircuitBreakerOpenError,
    ConcurrencyLimitedError,
    OverloadedError,
    RateLimitedError,
    ThrottledError,
)
from opensergo.governance.faulttolerance.adaptive import SystemSampler
from opensergo.governance.faulttolerance.breaker import BreakerState, CircuitBreaker, StateListener
from opensergo.governance.faulttolerance.checks import ResourceChecks
from opensergo.governance.faulttolerance.engine import KINDS, ApplyResult, Engine, Entry
from opensergo.governance.faulttolerance.fallback import FallbackResponse
from opensergo.governance.faulttolerance.ref import RuleRef

__all__ = [
    "KINDS",
    "ApplyResult",
    "BlockedError",
    "BreakerState",
    "CircuitBreaker",
    "CircuitBreakerOpenError",
    "Clock",
    "ConcurrencyLimitedError",
    "Engine",
    "Entry",
    "FallbackResponse",
    "Guard",
    "ManualClock",
    "OverloadedError",
    "RateLimitedError",
    "ResourceChecks",
    "RuleRef",
    "StateListener",
    "SystemClock",
    "SystemSampler",
    "ThrottledError",
    "default_engine",
    "guard",
    "load_rules",
]

"""Governance for Python services: Sentinel-grade fault tolerance driven by OpenSergo rules.

``guard`` protects a resource; ``load_rules`` applies CR YAML locally; an :class:`Engine` holds a
compiled rule set (``default_engine()`` is the process-wide one that the SDK updates).
``enable_from_env`` keeps that engine in step with the control plane (see
:mod:`opensergo.governance.runtime`; imported on first use, as it brings in gRPC).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from opensergo.common.clock import Clock, ManualClock, SystemClock
from opensergo.governance.api import Guard, default_engine, guard, load_rules
from opensergo.governance.errors import (
    BlockedError,
    CircuitBreakerOpenError,
    ConcurrencyLimitedError,
    HotParamLimitedError,
    OverloadedError,
    RateLimitedError,
    ThrottledError,
)
from opensergo.governance.faulttolerance.adaptive import SystemSampler
from opensergo.governance.faulttolerance.breaker import BreakerState, StateListener
from opensergo.governance.faulttolerance.engine import Engine, Entry
from opensergo.governance.faulttolerance.fallback import FallbackResponse
from opensergo.governance.faulttolerance.ref import RuleRef

if TYPE_CHECKING:
    from opensergo.governance.runtime import Governance, attach, current, disable, enable_from_env

__all__ = [
    "BlockedError",
    "BreakerState",
    "CircuitBreakerOpenError",
    "Clock",
    "ConcurrencyLimitedError",
    "Engine",
    "Entry",
    "FallbackResponse",
    "Governance",
    "Guard",
    "HotParamLimitedError",
    "ManualClock",
    "OverloadedError",
    "RateLimitedError",
    "RuleRef",
    "StateListener",
    "SystemClock",
    "SystemSampler",
    "ThrottledError",
    "attach",
    "current",
    "default_engine",
    "disable",
    "enable_from_env",
    "guard",
    "load_rules",
]

_RUNTIME = frozenset({"Governance", "attach", "current", "disable", "enable_from_env"})


def __getattr__(name: str) -> object:
    # The runtime needs the client and gRPC: middlewares that only guard requests never load them.
    if name in _RUNTIME:
        from opensergo.governance import runtime

        return getattr(runtime, name)
    raise AttributeError(f"module 'opensergo.governance' has no attribute {name!r}")

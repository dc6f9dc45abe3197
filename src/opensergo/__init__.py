"""OpenSergo for Python: control plane and data plane."""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"

__all__ = [
    "BlockedError",
    "CircuitBreakerOpenError",
    "ConcurrencyLimitedError",
    "OverloadedError",
    "RateLimitedError",
    "ThrottledError",
    "__version__",
    "guard",
    "load_rules",
]

if TYPE_CHECKING:
    from opensergo.governance import (
        BlockedError,
        CircuitBreakerOpenError,
        ConcurrencyLimitedError,
        OverloadedError,
        RateLimitedError,
        ThrottledError,
        guard,
        load_rules,
    )


def __getattr__(name: str) -> object:
    # The governance API is imported on first use, so `import opensergo` stays light (~0.3 s of
    # pydantic/protobuf imports otherwise) for the CLI and the control plane.
    if name in __all__ and name != "__version__":
        from opensergo import governance

        return getattr(governance, name)
    raise AttributeError(f"module 'opensergo' has no attribute {name!r}")

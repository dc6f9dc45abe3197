"""OpenSergo for Python: control plane and data plane.

What an application needs to go live::

    from opensergo import enable_from_env, guard

    enable_from_env(app="foo-app")  # governed by the control plane in $OPENSERGO_BOOTSTRAP_CONFIG

    @guard("GET:/users")
    def users() -> list[str]: ...

``TlsConfig`` secures the connection when the bootstrap does not say it.
"""

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
    "TlsConfig",
    "__version__",
    "enable_from_env",
    "guard",
    "load_rules",
]

if TYPE_CHECKING:
    from opensergo.client.tls import TlsConfig
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
    from opensergo.governance.runtime import enable_from_env


def __getattr__(name: str) -> object:
    # Imported on first use, so `import opensergo` stays light (~0.3 s of pydantic/protobuf
    # imports otherwise) for the CLI and the control plane.
    if name == "TlsConfig":
        from opensergo.client.tls import TlsConfig

        return TlsConfig
    if name in __all__ and name != "__version__":
        from opensergo import governance

        return getattr(governance, name)
    raise AttributeError(f"module 'opensergo' has no attribute {name!r}")

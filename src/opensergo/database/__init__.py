"""``opensergo.database``: database governance for SQLAlchemy, driven by OpenSergo rules.

::

    from opensergo.database import create_engine, primary

    engine = create_engine("readwrite_db")        # the VirtualDatabase service name
    with engine.connect() as conn:                # Core, ORM sessions and text() all work
        conn.execute(text("SELECT 1"))            # a read: a replica
    with primary():
        ...                                       # everything here: the write source
    with sharding_hint("t_order", database=1):    # values for hint sharding strategies
        ...

Rules come from ``opensergo.load_rules(...)`` or live from the control plane
(``enable_from_env()``); see docs/database.md. Importing this package does not import
SQLAlchemy; the names below load it on first use (``pip install opensergo[database]``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from opensergo.database.errors import (
    ConfigurationError,
    DatabaseGovernanceError,
    NoDataSourceError,
    PoolTimeoutError,
    UnsupportedStatementError,
)

if TYPE_CHECKING:
    from opensergo.database.dbapi import primary
    from opensergo.database.engine import create_async_engine, create_engine, state_of
    from opensergo.database.sharding.hints import sharding_hint

__all__ = [
    "ConfigurationError",
    "DatabaseGovernanceError",
    "NoDataSourceError",
    "PoolTimeoutError",
    "UnsupportedStatementError",
    "create_async_engine",
    "create_engine",
    "describe",
    "primary",
    "sharding_hint",
    "state_of",
]

_LAZY = {
    "create_engine": "opensergo.database.engine",
    "create_async_engine": "opensergo.database.engine",
    "state_of": "opensergo.database.engine",
    "primary": "opensergo.database.dbapi",
    "sharding_hint": "opensergo.database.sharding.hints",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'opensergo.database' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def describe(engine: Any) -> dict[str, Any]:
    """Plain data about an engine made by :func:`create_engine`: data sources, the current
    primary and read sources, discovery state and the plan cache's hit rate."""
    from opensergo.database.engine import state_of

    return state_of(engine).describe()

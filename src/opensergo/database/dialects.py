"""The routing engine's dialects: the endpoint's SQLAlchemy dialect minus per-connection setup.

The routing engine's pool holds :class:`~opensergo.database.dbapi.VirtualConnection` objects,
on which a driver's ``on_connect`` setup (type registration, client encoding …) cannot run; the
endpoint pools run it on each physical connection instead. Each dialect here is registered as
``opensergo_<backend>.<driver>``; its ``name`` and ``driver`` stay the endpoint's (``mysql``,
``pymysql``), so everything that inspects ``engine.dialect`` sees the real database.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import registry
from sqlalchemy.engine import make_url

_cache: dict[str, type[Any]] = {}


def _no_on_connect(self: Any) -> None:
    return None


def _no_on_connect_url(self: Any, url: Any) -> None:
    return None


def routing_url(family: str, driver: str, database: str | None) -> str:
    """The URL the routing engine is created with (it never connects by itself)."""
    key = f"opensergo_{family}.{driver}"
    registry.register(key, __name__, f"{family}__{driver}")
    return f"opensergo_{family}+{driver}:///{database or ''}"


def __getattr__(name: str) -> type[Any]:
    if "__" not in name or name.startswith("__"):
        raise AttributeError(name)
    cached = _cache.get(name)
    if cached is not None:
        return cached
    family, driver = name.split("__", 1)
    url = make_url(f"{family}+{driver}://")
    is_async = driver in ("aiomysql", "asyncpg", "asyncmy", "psycopg_async")
    base = url.get_dialect(_is_async=is_async)
    dialect = type(
        f"Routing{base.__name__}",
        (base,),
        {
            "on_connect": _no_on_connect,
            "on_connect_url": _no_on_connect_url,
            "supports_statement_cache": True,
        },
    )
    _cache[name] = dialect
    return dialect

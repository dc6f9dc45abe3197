"""``opensergo.cache``: redis-py clients governed by the ``cache.opensergo.io`` CachePolicy.

::

    import redis
    from opensergo.cache import governed

    cache = governed(redis.Redis(host="cache"), name="product-cache")
    cache.get("product:42")                                  # hot keys from the near-cache
    cache.get_or_load("product:42", lambda: db.load(42), ttl=60)

``governed`` takes a ``redis.Redis`` or a ``redis.asyncio.Redis`` and returns a client of the
same class (a subclass) sharing its connection pool; see docs/cache.md. Needs the ``cache``
extra (redis-py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, overload

from opensergo.cache.rules import CacheRules

if TYPE_CHECKING:
    import redis
    import redis.asyncio

    from opensergo.cache.aio import AsyncGovernedRedis
    from opensergo.cache.client import GovernedRedis

__all__ = [
    "AsyncGovernedRedis",
    "BigValueError",
    "CacheUnavailableError",
    "GovernedRedis",
    "SourceProtectedError",
    "governed",
]


@overload
def governed(
    client: redis.asyncio.Redis, name: str, *, rules: CacheRules | None = None
) -> AsyncGovernedRedis: ...
@overload
def governed(client: redis.Redis, name: str, *, rules: CacheRules | None = None) -> GovernedRedis: ...
def governed(client: Any, name: str, *, rules: CacheRules | None = None) -> Any:
    """``client`` governed by the CachePolicy naming ``name`` (a governed client is returned as is)."""
    import redis.asyncio as aredis

    if isinstance(client, aredis.Redis):
        from opensergo.cache.aio import governed_async

        return governed_async(client, name, rules=rules)
    from opensergo.cache.client import governed_sync

    return governed_sync(client, name, rules=rules)


def __getattr__(name: str) -> Any:
    if name == "GovernedRedis":
        from opensergo.cache.client import GovernedRedis

        return GovernedRedis
    if name == "AsyncGovernedRedis":
        from opensergo.cache.aio import AsyncGovernedRedis

        return AsyncGovernedRedis
    if name in ("BigValueError", "CacheUnavailableError", "SourceProtectedError"):
        from opensergo.cache import errors

        return getattr(errors, name)
    raise AttributeError(f"module 'opensergo.cache' has no attribute {name!r}")

"""The governed asyncio client: a ``redis.asyncio.Redis`` following the CachePolicy of its name.

The same behaviour as :class:`opensergo.cache.client.GovernedRedis`, awaited. The invalidation
listener is a thread for both (it only touches the near-cache, a dictionary), so an event loop
never waits on it.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aredis
from redis.exceptions import ResponseError

from opensergo.cache.client import _NAME_TYPES, CACHE_ERRORS, check_write, default_cache_name, ttl_args
from opensergo.cache.errors import BigValueError, CacheUnavailableError
from opensergo.cache.governor import Governor, key_bytes, key_text
from opensergo.cache.nearcache import MISSING, NearCache
from opensergo.cache.policy import Policy
from opensergo.cache.rules import CacheRules
from opensergo.cache.singleflight import AsyncSingleFlight
from opensergo.cache.tracking import resp2_kwargs, tracking_command
from opensergo.common.clock import SYSTEM_CLOCK, Clock

__all__ = ["AsyncGovernedRedis", "governed_async"]

log = logging.getLogger("opensergo.cache")

# The unwrapped command path (redis-py's own methods are untyped).
_plain_execute: Callable[..., Awaitable[Any]] = aredis.Redis.execute_command


class AsyncGovernedRedis(aredis.Redis):
    """A ``redis.asyncio.Redis`` governed by the CachePolicy naming ``cache_name``."""

    _og: Governor
    _og_flights: AsyncSingleFlight
    _og_fills: AsyncSingleFlight
    _og_pool: aredis.ConnectionPool | None

    def __init__(self, *args: Any, cache_name: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._og_attach(cache_name or default_cache_name(kwargs))

    @classmethod
    def wrap(
        cls, client: aredis.Redis, name: str, *, rules: CacheRules | None = None, clock: Clock = SYSTEM_CLOCK
    ) -> AsyncGovernedRedis:
        governed = cls.__new__(cls)
        governed.__dict__.update(client.__dict__)
        governed.auto_close_connection_pool = False  # the pool stays ``client``'s to close
        governed._og_attach(name, rules=rules, clock=clock)
        return governed

    def _og_attach(self, name: str, *, rules: CacheRules | None = None, clock: Clock = SYSTEM_CLOCK) -> None:
        pool = self.connection_pool
        self._og = Governor(name, pool.connection_class, pool.connection_kwargs, rules=rules, clock=clock)
        self._og_flights = AsyncSingleFlight()
        self._og_fills = AsyncSingleFlight()
        self._og_pool = None

    @property
    def governor(self) -> Governor:
        return self._og

    @property
    def cache_name(self) -> str:
        return self._og.cache

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        governor = self.__dict__.get("_og")
        if governor is not None:
            governor.close()
        pool, self._og_pool = self.__dict__.get("_og_pool"), None
        if pool is not None:
            await pool.aclose()
        await super().aclose(close_connection_pool)

    # -- every command --------------------------------------------------------------------------

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        policy = self._og.policy
        if policy.breaker is None and policy.big is None and policy.near is None:
            return await _plain_execute(self, *args, **options)
        check_write(policy, args)
        breaker = policy.breaker
        if breaker is None:
            return await _plain_execute(self, *args, **options)
        if not breaker.allow():
            raise CacheUnavailableError(self._og.cache, args[1] if len(args) > 1 else args[0])
        try:
            result = await _plain_execute(self, *args, **options)
        except CACHE_ERRORS:
            breaker.on_error()
            raise
        breaker.on_success()
        return result

    # -- GET ------------------------------------------------------------------------------------

    async def get(self, name: Any) -> Any:
        policy = self._og.policy
        if policy.detector is None and policy.breaker is None and policy.big is None:
            return await _plain_execute(self, "GET", name, keys=[name])
        return await self._og_get(policy, name)

    async def _og_get(self, policy: Policy, name: Any) -> Any:
        governor = self._og
        now = governor.now()
        detector = policy.detector
        # The detector counts names as given (str or bytes); only hot keys need Redis' spelling.
        hot = detector is not None and detector.record(
            name if type(name) in _NAME_TYPES else key_bytes(name), now
        )
        near = policy.near
        key = b""
        if hot and near is not None:
            key = key_bytes(name)
            value = near.get_fresh(key, now)
            if value is not MISSING:
                return value
        breaker = policy.breaker
        if breaker is not None and not breaker.allow(now):
            return self._og_unavailable(policy, key_bytes(name), name, now)
        try:
            if hot and near is not None:  # one fill per key at a time; the others wait for it
                value = await self._og_fills.do(key, lambda: self._og_fill(policy, near, key, name))
            else:
                value = await _plain_execute(self, "GET", name, keys=[name])
        except CACHE_ERRORS:
            if breaker is not None:
                breaker.on_error()
            if policy.stale and near is not None:
                stale = near.get_stale(key_bytes(name), governor.now())
                if stale is not MISSING:
                    return stale
            raise
        if breaker is not None:
            breaker.on_success(now)
        if policy.big is not None and not (hot and near is not None):
            policy.big.check_read(name, value)
        return value

    def _og_unavailable(self, policy: Policy, key: bytes, name: Any, now: float) -> Any:
        near = policy.near
        if policy.stale and near is not None:
            stale = near.get_stale(key, now)
            if stale is not MISSING:
                return stale
        if policy.miss_when_open:
            return None
        raise CacheUnavailableError(self._og.cache, name)

    async def _og_fill(self, policy: Policy, near: NearCache, key: bytes, name: Any) -> Any:
        if policy.tracking:
            target = self._og.tracking_target()
            if target is None:
                return await _plain_execute(self, "GET", name, keys=[name])
            token = near.reserve(key)
            try:
                value = await self._og_tracked_get(name, target)
            except BaseException:
                near.cancel(key, token)
                raise
        else:
            token = near.reserve(key)
            try:
                value = await _plain_execute(self, "GET", name, keys=[name])
            except BaseException:
                near.cancel(key, token)
                raise
        if value is not None and (policy.big is None or policy.big.check_read(name, value)):
            near.fill(key, token, value, self._og.now())
        else:
            near.cancel(key, token)
        return value

    async def _og_tracked_get(self, name: Any, target: tuple[int, int]) -> Any:
        pool = self._og_pool
        if pool is None:
            source = self.connection_pool
            kwargs = resp2_kwargs(source.connection_kwargs)
            pool = self._og_pool = aredis.ConnectionPool(connection_class=source.connection_class, **kwargs)
        get_connection: Callable[[], Awaitable[Any]] = pool.get_connection
        conn = await get_connection()
        try:
            client_id, generation = target
            if getattr(conn, "_og_tracking", None) != (generation, conn._reader):
                await conn.send_command(*tracking_command(client_id))
                reply = await conn.read_response()
                if reply not in (b"OK", "OK"):
                    raise ResponseError(f"CLIENT TRACKING answered {reply!r}")
                conn._og_tracking = (generation, conn._reader)
            await conn.send_packed_command(conn.pack_commands([("CLIENT", "CACHING", "YES"), ("GET", name)]))
            await conn.read_response()
            return await conn.read_response()
        except BaseException:
            await conn.disconnect()
            raise
        finally:
            await pool.release(conn)

    # -- cache-aside ----------------------------------------------------------------------------

    async def get_or_load(
        self, key: Any, loader: Callable[[], Awaitable[Any]], ttl: float | datetime.timedelta | None = None
    ) -> Any:
        """As :meth:`GovernedRedis.get_or_load`, with an async ``loader``."""
        expiry = ttl_args(ttl)
        policy = self._og.policy
        if not policy.coalesce:
            return await self._og_get_or_load(policy, key, loader, expiry)
        return await self._og_flights.do(
            key_bytes(key), lambda: self._og_get_or_load(policy, key, loader, expiry)
        )

    async def _og_get_or_load(
        self, policy: Policy, key: Any, loader: Callable[[], Awaitable[Any]], expiry: dict[str, Any]
    ) -> Any:
        try:
            value = await self.get(key)
        except CacheUnavailableError:
            value = None
        if value is not None:
            return value
        guard = policy.loads
        text = key_text(key_bytes(key))
        if guard is not None:
            guard.acquire(text)
        try:
            value = await loader()
        finally:
            if guard is not None:
                guard.release(text)
        if value is not None:
            try:
                await self.set(key, value, **expiry)
            except (*CACHE_ERRORS, BigValueError) as err:
                log.debug("cache %r: loaded %r but could not store it: %s", self._og.cache, key, err)
        return value


def governed_async(
    client: aredis.Redis, name: str, *, rules: CacheRules | None = None, clock: Clock = SYSTEM_CLOCK
) -> AsyncGovernedRedis:
    if isinstance(client, AsyncGovernedRedis):
        return client
    return AsyncGovernedRedis.wrap(client, name, rules=rules, clock=clock)

"""The governed sync client: a ``redis.Redis`` whose calls follow the CachePolicy of its name.

:class:`GovernedRedis` *is* a ``redis.Redis`` (same connection pool, same options, every
command), so code that takes a ``Redis`` takes it. What changes:

* ``get``: the key is counted by the hot-key detector; a hot key is answered from the near-cache
  while fresh, and otherwise read through a tracked connection (``CLIENT CACHING YES`` + ``GET``
  on a connection with ``CLIENT TRACKING ON REDIRECT <listener> OPTIN``) and kept;
* every command: while the breaker is open nothing is sent. A GET is answered from the near-cache
  within ``staleIfError``, else ``whenOpen`` decides (CacheUnavailableError or a miss); any other
  command raises CacheUnavailableError. Connection and timeout errors feed the breaker;
* writes of the SET family and MSET are checked for big values, and the keys they write are
  dropped from the near-cache at once (Redis' invalidation follows for the other processes);
* :meth:`get_or_load`: cache-aside with single-flight and per-key source protection.

Pipelines and transactions go to Redis as they are (their writes still invalidate near-caches
through Redis).
"""

from __future__ import annotations

import datetime
import logging
import os
from collections.abc import Callable
from typing import Any

import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from opensergo.cache.errors import BigValueError, CacheUnavailableError
from opensergo.cache.governor import Governor, key_bytes, key_text
from opensergo.cache.nearcache import MISSING, NearCache
from opensergo.cache.policy import Policy
from opensergo.cache.rules import CacheRules
from opensergo.cache.singleflight import SingleFlight
from opensergo.cache.tracking import resp2_kwargs, tracking_command
from opensergo.common.clock import SYSTEM_CLOCK, Clock

__all__ = ["DEFAULT_NAME", "ENV_CACHE_NAME", "GovernedRedis", "default_cache_name", "governed_sync"]

log = logging.getLogger("opensergo.cache")

ENV_CACHE_NAME = "OPENSERGO_CACHE_NAME"
DEFAULT_NAME = "default"
CACHE_ERRORS = (RedisConnectionError, RedisTimeoutError)

# Commands whose value argument(s) the big-value check reads: name -> index of the value.
VALUE_AT = {"SET": 2, "SETNX": 2, "GETSET": 2, "APPEND": 2, "SETEX": 3, "PSETEX": 3}
MULTI_VALUE = frozenset({"MSET", "MSETNX"})
# Commands that write the keys they name first: dropped from this process's near-cache at once.
WRITES_FIRST_KEY = frozenset(
    {"SET", "SETNX", "GETSET", "GETDEL", "GETEX", "APPEND", "SETEX", "PSETEX", "INCR", "INCRBY", "DECR",
     "DECRBY", "INCRBYFLOAT", "SETRANGE", "EXPIRE", "PEXPIRE", "EXPIREAT", "PEXPIREAT", "PERSIST"}
)  # fmt: skip
WRITES_ALL_KEYS = frozenset({"DEL", "UNLINK"})
_NAME_TYPES = (str, bytes)

# The unwrapped command path (redis-py's own methods are untyped).
_plain_execute: Callable[..., Any] = redis.Redis.execute_command


def default_cache_name(kwargs: dict[str, Any] | None = None) -> str:
    """``$OPENSERGO_CACHE_NAME``, else the connection's ``client_name``, else ``default``."""
    name = os.environ.get(ENV_CACHE_NAME) or (kwargs or {}).get("client_name")
    return name if isinstance(name, str) and name else DEFAULT_NAME


def check_write(policy: Policy, args: tuple[Any, ...]) -> None:
    """Big-value check and local invalidation for one command about to be sent."""
    command = str(args[0]).upper() if not isinstance(args[0], bytes) else args[0].decode().upper()
    big = policy.big
    if big is not None:
        at = VALUE_AT.get(command)
        if at is not None and len(args) > at:
            big.check_write(args[1], args[at])
        elif command in MULTI_VALUE:
            for i in range(2, len(args), 2):
                big.check_write(args[i - 1], args[i])
    near = policy.near
    if near is not None and len(args) > 1:
        if command in WRITES_FIRST_KEY:
            near.invalidate([key_bytes(args[1])])
        elif command in WRITES_ALL_KEYS:
            near.invalidate([key_bytes(k) for k in args[1:]])
        elif command in MULTI_VALUE:
            near.invalidate([key_bytes(k) for k in args[1::2]])


def ttl_args(ttl: float | datetime.timedelta | None) -> dict[str, Any]:
    if ttl is None:
        return {}
    seconds = ttl.total_seconds() if isinstance(ttl, datetime.timedelta) else float(ttl)
    if seconds <= 0:
        raise ValueError(f"ttl must be positive, got {ttl!r}")
    return {"ex": int(seconds)} if seconds.is_integer() else {"px": max(1, round(seconds * 1000))}


class GovernedRedis(redis.Redis):
    """A ``redis.Redis`` governed by the CachePolicy naming ``cache_name``.

    Build one like ``redis.Redis`` (``GovernedRedis(host=..., cache_name="products")``), or wrap
    an existing client with :func:`opensergo.cache.governed`.
    """

    _og: Governor
    _og_flights: SingleFlight
    _og_fills: SingleFlight
    _og_pool: redis.ConnectionPool | None

    def __init__(self, *args: Any, cache_name: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._og_attach(cache_name or default_cache_name(kwargs))

    @classmethod
    def wrap(
        cls, client: redis.Redis, name: str, *, rules: CacheRules | None = None, clock: Clock = SYSTEM_CLOCK
    ) -> GovernedRedis:
        """A governed client sharing ``client``'s pool and options (``client`` keeps working)."""
        governed = cls.__new__(cls)
        governed.__dict__.update(client.__dict__)
        governed.auto_close_connection_pool = False  # the pool stays ``client``'s to close
        governed._og_attach(name, rules=rules, clock=clock)
        return governed

    def _og_attach(self, name: str, *, rules: CacheRules | None = None, clock: Clock = SYSTEM_CLOCK) -> None:
        pool = self.connection_pool
        self._og = Governor(name, pool.connection_class, pool.connection_kwargs, rules=rules, clock=clock)
        self._og_flights = SingleFlight()
        self._og_fills = SingleFlight()
        self._og_pool = None

    @property
    def governor(self) -> Governor:
        return self._og

    @property
    def cache_name(self) -> str:
        return self._og.cache

    def close(self) -> None:
        governor = self.__dict__.get("_og")
        if governor is not None:
            governor.close()
        pool, self._og_pool = self.__dict__.get("_og_pool"), None
        if pool is not None:
            pool.disconnect()
        super().close()

    # -- every command --------------------------------------------------------------------------

    def execute_command(self, *args: Any, **options: Any) -> Any:
        policy = self._og.policy
        if policy.breaker is None and policy.big is None and policy.near is None:
            return _plain_execute(self, *args, **options)
        check_write(policy, args)
        breaker = policy.breaker
        if breaker is None:
            return _plain_execute(self, *args, **options)
        if not breaker.allow():
            raise CacheUnavailableError(self._og.cache, args[1] if len(args) > 1 else args[0])
        try:
            result = _plain_execute(self, *args, **options)
        except CACHE_ERRORS:
            breaker.on_error()
            raise
        breaker.on_success()
        return result

    # -- GET ------------------------------------------------------------------------------------

    def get(self, name: Any) -> Any:
        # A non-hot GET runs this one frame plus redis-py's: the detector's, breaker's and
        # big-value check's common cases are inlined (each is documented on its class). Not for
        # the instructions saved, which are few: between two GETs the process waits on the
        # socket and other processes evict its caches, so every frame, object and attribute the
        # path touches is a likely cache miss; measured, the per-call helpers cost several times
        # their in-cache price that way (see docs/cache.md, "Measured here").
        policy = self._og.policy
        detector = policy.detector
        breaker = policy.breaker
        big = policy.big
        if detector is None and breaker is None and big is None:
            return _plain_execute(self, "GET", name, keys=[name])
        now = self._og.now()
        hot = False
        if detector is not None:
            # The detector counts names as given (str or bytes); only hot keys need Redis' spelling.
            counted = name if type(name) in _NAME_TYPES else key_bytes(name)
            counts = detector.counts
            count = counts.get(counted)
            if count is not None and now < detector.slice_end and count + 1 < detector.slice_hot:
                counts[counted] = count + 1
                hot = counted in detector.hot
            else:
                hot = detector.record(counted, now)
            if hot and policy.near is not None:
                return self._og_get_hot(policy, policy.near, name, now)
        if breaker is not None and not breaker.closed and not breaker.allow(now):
            return self._og_unavailable(policy, key_bytes(name), name, now)
        try:
            value = _plain_execute(self, "GET", name, keys=[name])
        except CACHE_ERRORS:
            stale = self._og_failed(policy, name)
            if stale is MISSING:
                raise
            return stale
        if breaker is not None:
            if breaker.closed and now < breaker.bucket_end:
                breaker.bucket_calls += 1
            else:
                breaker.on_success(now)
        if big is not None and (type(value) is not bytes or len(value) > big.floor):
            big.check_read(name, value)
        return value

    def _og_failed(self, policy: Policy, name: Any) -> Any:
        """After a GET failed with a cache error: count it; the stale value to serve, or MISSING."""
        if policy.breaker is not None:
            policy.breaker.on_error()
        near = policy.near
        if policy.stale and near is not None:
            return near.get_stale(key_bytes(name), self._og.now())
        return MISSING

    def _og_get_hot(self, policy: Policy, near: NearCache, name: Any, now: float) -> Any:
        """GET a hot key: from the near-cache while fresh, else through one fill per key."""
        key = key_bytes(name)
        value = near.get_fresh(key, now)
        if value is not MISSING:
            return value
        breaker = policy.breaker
        if breaker is not None and not breaker.allow(now):
            return self._og_unavailable(policy, key, name, now)
        try:  # one fill per key at a time; the others wait for it
            value = self._og_fills.do(key, lambda: self._og_fill(policy, near, key, name))
        except CACHE_ERRORS:
            if breaker is not None:
                breaker.on_error()
            if policy.stale:
                stale = near.get_stale(key, self._og.now())
                if stale is not MISSING:
                    return stale
            raise
        if breaker is not None:
            breaker.on_success(now)
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

    def _og_fill(self, policy: Policy, near: NearCache, key: bytes, name: Any) -> Any:
        """GET a hot key and keep the reply unless an invalidation overtook it."""
        if policy.tracking:
            target = self._og.tracking_target()
            if target is None:  # invalidations would be lost: read without keeping
                return _plain_execute(self, "GET", name, keys=[name])
            token = near.reserve(key)
            try:
                value = self._og_tracked_get(name, target)
            except BaseException:
                near.cancel(key, token)
                raise
        else:
            token = near.reserve(key)
            try:
                value = _plain_execute(self, "GET", name, keys=[name])
            except BaseException:
                near.cancel(key, token)
                raise
        if value is not None and (policy.big is None or policy.big.check_read(name, value)):
            near.fill(key, token, value, self._og.now())
        else:
            near.cancel(key, token)
        return value

    def _og_tracked_get(self, name: Any, target: tuple[int, int]) -> Any:
        pool = self._og_pool
        if pool is None:
            source = self.connection_pool
            kwargs = resp2_kwargs(source.connection_kwargs)
            pool = self._og_pool = redis.ConnectionPool(connection_class=source.connection_class, **kwargs)
        conn: Any = pool.get_connection()
        try:
            client_id, generation = target
            if getattr(conn, "_og_tracking", None) != (generation, conn._sock):
                conn.send_command(*tracking_command(client_id))
                reply = conn.read_response()
                if reply not in (b"OK", "OK"):
                    raise ResponseError(f"CLIENT TRACKING answered {reply!r}")
                conn._og_tracking = (generation, conn._sock)
            conn.send_packed_command(conn.pack_commands([("CLIENT", "CACHING", "YES"), ("GET", name)]))
            conn.read_response()
            return conn.read_response()
        except BaseException:
            conn.disconnect()
            raise
        finally:
            pool.release(conn)

    # -- cache-aside ----------------------------------------------------------------------------

    def get_or_load(
        self, key: Any, loader: Callable[[], Any], ttl: float | datetime.timedelta | None = None
    ) -> Any:
        """The cached value of ``key``, else ``loader()`` stored with ``ttl`` (seconds).

        Concurrent calls for one key share one GET and at most one load (unless coalescing is
        disabled: then each call reads and, on a miss, loads); loads are
        limited per key by the policy's ``sourceProtection`` (SourceProtectedError beyond). While
        the cache is unavailable the value is loaded (under the same limits) and not stored.
        """
        expiry = ttl_args(ttl)
        policy = self._og.policy
        if not policy.coalesce:
            return self._og_get_or_load(policy, key, loader, expiry)
        return self._og_flights.do(key_bytes(key), lambda: self._og_get_or_load(policy, key, loader, expiry))

    def _og_get_or_load(
        self, policy: Policy, key: Any, loader: Callable[[], Any], expiry: dict[str, Any]
    ) -> Any:
        try:
            value = self.get(key)
        except CacheUnavailableError:
            value = None
        if value is not None:
            return value
        guard = policy.loads
        text = key_text(key_bytes(key))
        if guard is not None:
            guard.acquire(text)
        try:
            value = loader()
        finally:
            if guard is not None:
                guard.release(text)
        if value is not None:
            try:
                self.set(key, value, **expiry)
            except (*CACHE_ERRORS, BigValueError) as err:
                log.debug("cache %r: loaded %r but could not store it: %s", self._og.cache, key, err)
        return value


def governed_sync(
    client: redis.Redis, name: str, *, rules: CacheRules | None = None, clock: Clock = SYSTEM_CLOCK
) -> GovernedRedis:
    if isinstance(client, GovernedRedis):
        return client
    return GovernedRedis.wrap(client, name, rules=rules, clock=clock)

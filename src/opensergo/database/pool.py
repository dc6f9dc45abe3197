"""One connection pool per DatabaseEndpoint, with HikariCP's settings and draining.

``maxPoolSize`` (default 10) bounds the connections; ``minPoolSize`` (default 0) are opened at
the first use and kept; a connection idle longer than ``idleTimeoutMilliseconds`` (default 10
min) or older than ``maxLifetimeMilliseconds`` (default 30 min) is closed instead of being
reused; a caller waits at most ``connectionTimeout`` ms (default 30 s) for a free connection, and
opening one uses it as the driver's connect timeout. A connection idle for more than a second is
pinged before it is handed out (as HikariCP checks connections idle over 500 ms).

Connections come from the endpoint's SQLAlchemy dialect (``dialect.connect`` plus the dialect's
``on_connect`` setup), so the async engine gets the same adapted connections SQLAlchemy's own
async pools hold. Async pools only do I/O inside SQLAlchemy's greenlet, i.e. during a statement;
a drained async pool closes its idle connections at its next use or release.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from opensergo.database.errors import PoolTimeoutError
from opensergo.database.urls import EndpointURL
from opensergo.spec.database import MySQLEndpoint

__all__ = ["EndpointPool", "PhysicalConnection", "PoolSettings"]

log = logging.getLogger("opensergo.database.pool")

VALIDATE_AFTER = 1.0  # seconds idle before a connection is pinged at checkout


@dataclass(frozen=True, slots=True)
class PoolSettings:
    max_size: int = 10
    min_size: int = 0
    connection_timeout: float = 30.0
    idle_timeout: float = 600.0
    max_lifetime: float = 1800.0

    @classmethod
    def from_endpoint(cls, spec: MySQLEndpoint) -> PoolSettings:
        def seconds(ms: int | None, default: float) -> float:
            return default if ms is None else ms / 1000.0

        max_size = spec.maxPoolSize or 10
        return cls(
            max_size=max_size,
            min_size=min(spec.minPoolSize or 0, max_size),
            connection_timeout=seconds(spec.connectionTimeout, 30.0) or 30.0,
            idle_timeout=seconds(spec.idleTimeoutMilliseconds, 600.0),
            max_lifetime=seconds(spec.maxLifetimeMilliseconds, 1800.0),
        )


class PhysicalConnection:
    """A driver connection of one endpoint, as the routing layer holds it."""

    __slots__ = ("autocommit", "created", "dbapi", "last_used", "pool")

    def __init__(self, dbapi: Any, pool: EndpointPool) -> None:
        self.dbapi = dbapi
        self.pool = pool
        self.created = self.last_used = time.monotonic()
        self.autocommit = False

    def set_autocommit(self, value: bool) -> None:
        if value != self.autocommit:
            self.pool.set_autocommit(self.dbapi, value)
            self.autocommit = value

    def __repr__(self) -> str:
        return f"<PhysicalConnection {self.pool.name}>"


class EndpointPool:
    """Connections to one endpoint. Thread-safe; cheap checkout (a deque pop under a lock)."""

    def __init__(
        self,
        name: str,
        url: EndpointURL,
        settings: PoolSettings,
        *,
        asynchronous: bool = False,
        connect_args: dict[str, Any] | None = None,
        isolation_level: str | None = None,
        engine_factory: Callable[..., Any] | None = None,
    ) -> None:
        self.name = name
        self.url = url
        self.settings = settings
        self.asynchronous = asynchronous
        options: dict[str, Any] = {"poolclass": NullPool}
        if engine_factory is not None:
            engine = engine_factory(url.url, **options)
        elif asynchronous:
            engine = create_async_engine(url.url, **options).sync_engine
        else:
            engine = sqlalchemy.create_engine(url.url, **options)
        self.dialect: Dialect = engine.dialect
        cargs, cparams = self.dialect.create_connect_args(engine.url)
        cparams.update(connect_args or {})
        timeout = max(1, math.ceil(settings.connection_timeout))
        if url.family == "postgresql" and asynchronous:
            cparams.setdefault("timeout", timeout)
        else:
            cparams.setdefault("connect_timeout", timeout)
        self._cargs, self._cparams = cargs, cparams
        self._on_connect = self.dialect.on_connect_url(engine.url)
        self._isolation_level = isolation_level
        self._idle: deque[PhysicalConnection] = deque()
        self._lock = threading.Lock()
        self._freed = threading.Condition(self._lock)
        self._waiting = 0  # sync callers blocked in acquire (a release notifies only then)
        self._size = 0  # open connections, idle or in use
        self._closing: list[PhysicalConnection] = []  # async: to close at the next greenlet call
        self.drained = False
        self.created = 0

    def __repr__(self) -> str:
        return f"<EndpointPool {self.name} {self.url.redacted()} size={self._size}>"

    # -- driver operations
    def _open(self) -> PhysicalConnection:
        raw = self.dialect.connect(*self._cargs, **self._cparams)
        try:
            if self._on_connect is not None:
                self._on_connect(raw)
            if self._isolation_level is not None:
                self.dialect.set_isolation_level(raw, self._isolation_level)  # type: ignore[arg-type]
        except BaseException:
            self._close_raw(raw)
            raise
        self.created += 1
        conn = PhysicalConnection(raw, self)
        # Drivers start in transactional mode (autocommit off) unless told otherwise.
        conn.autocommit = self._isolation_level == "AUTOCOMMIT"
        return conn

    def _close_raw(self, raw: Any) -> None:
        try:
            raw.close()
        except Exception:
            log.debug("closing a connection of %s failed", self.name, exc_info=True)

    def set_autocommit(self, raw: Any, value: bool) -> None:
        if self.url.family == "mysql":
            raw.autocommit(value)
        else:
            raw.autocommit = value

    def _alive(self, conn: PhysicalConnection) -> bool:
        try:
            return bool(self.dialect.do_ping(conn.dbapi))
        except Exception:
            return False

    # -- checkout / checkin
    def acquire(self) -> PhysicalConnection:  # noqa: C901 (complexity debt, see pyproject [tool.ruff.lint.mccabe])
        """A connection, opening one if allowed; waits up to ``connectionTimeout`` otherwise."""
        if self._closing:
            self._close_pending()
        settings = self.settings
        deadline: float | None = None
        while True:
            with self._lock:
                if self.drained:
                    raise PoolTimeoutError(f"data source {self.name} was removed from the rules")
                conn = self._idle.pop() if self._idle else None
                if conn is None and self._size < settings.max_size:
                    self._size += 1
                    opening = True
                else:
                    opening = False
            if conn is not None:
                now = time.monotonic()
                if (
                    now - conn.created >= settings.max_lifetime
                    or now - conn.last_used >= settings.idle_timeout
                ) or (now - conn.last_used >= VALIDATE_AFTER and not self._alive(conn)):
                    self._discard(conn)
                    continue
                return conn
            if opening:
                try:
                    conn = self._open()
                except BaseException:
                    with self._lock:
                        self._size -= 1
                        self._freed.notify()
                    raise
                self._fill_minimum()
                return conn
            if deadline is None:
                deadline = time.monotonic() + settings.connection_timeout
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PoolTimeoutError(
                    f"data source {self.name}: no connection free within {settings.connection_timeout:g} s "
                    f"(maxPoolSize {settings.max_size})"
                )
            if self.asynchronous:
                from sqlalchemy.util import await_only

                await_only(asyncio.sleep(min(0.005, remaining)))
            else:
                with self._lock:
                    if not self._idle and self._size >= settings.max_size and not self.drained:
                        self._waiting += 1
                        try:
                            self._freed.wait(remaining)
                        finally:
                            self._waiting -= 1

    def _fill_minimum(self) -> None:
        """Open connections up to ``minPoolSize`` (at first use, then whenever below it)."""
        while True:
            with self._lock:
                if self.drained or self._size >= self.settings.min_size:
                    return
                self._size += 1
            try:
                conn = self._open()
            except Exception:
                with self._lock:
                    self._size -= 1
                return
            self.release(conn)

    def release(self, conn: PhysicalConnection, *, broken: bool = False) -> None:
        """Give ``conn`` back. Broken, drained or expired connections are closed."""
        now = time.monotonic()
        close = broken or self.drained or now - conn.created >= self.settings.max_lifetime
        if not close:
            conn.last_used = now
            with self._lock:
                if not self.drained:
                    self._idle.append(conn)
                    if self._waiting:
                        self._freed.notify()
                    return
        self._discard(conn)

    def _discard(self, conn: PhysicalConnection) -> None:
        with self._lock:
            self._size -= 1
            self._freed.notify()
        self._close_raw(conn.dbapi)

    # -- draining
    def drain(self) -> None:
        """No new checkouts; idle connections close now (sync) or at the next greenlet call
        (async); connections in use close when they are released."""
        with self._lock:
            self.drained = True
            idle = list(self._idle)
            self._idle.clear()
            self._size -= len(idle)
            self._freed.notify_all()
        if self.asynchronous:
            self._closing.extend(idle)
        else:
            for conn in idle:
                self._close_raw(conn.dbapi)

    def close_idle(self) -> None:
        """Close the idle connections now (``engine.dispose()``); the pool stays usable."""
        with self._lock:
            idle = list(self._idle)
            self._idle.clear()
            self._size -= len(idle)
            self._freed.notify_all()
        for conn in idle:
            self._close_raw(conn.dbapi)
        self._close_pending()

    def _close_pending(self) -> None:
        pending, self._closing = self._closing, []
        for conn in pending:
            self._close_raw(conn.dbapi)

    def close_pending(self) -> None:
        """Close connections a drain left for the greenlet (async pools)."""
        if self._closing:
            self._close_pending()

    @property
    def size(self) -> int:
        return self._size

    @property
    def idle(self) -> int:
        return len(self._idle)

"""``create_engine`` / ``create_async_engine``: a SQLAlchemy engine for a VirtualDatabase.

The returned object is a plain :class:`sqlalchemy.engine.Engine` (or ``AsyncEngine``). Its pool
holds :class:`~.dbapi.VirtualConnection` objects and its dialect is the endpoints' dialect, so
Core, the ORM and ``text()`` work unchanged while every statement is routed by the rules.

Two SQLAlchemy hooks tell the routing what the application means by a transaction:

* the engine's connection class marks ``engine.begin()`` / ``conn.begin()`` as explicit (an
  autobegun transaction is not: ShardingSphere's "in transaction" is JDBC's autoCommit=false,
  which SQLAlchemy's autobegin is not);
* a Session ``after_begin`` listener marks a session transaction explicit only when the session
  was begun explicitly (``session.begin()``, ``sessionmaker.begin()``), and ties the connection
  to ``Session.info`` so that a session that has written keeps reading from the write source
  (read-your-writes).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import sqlalchemy
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.ext.asyncio import create_async_engine as _sa_create_async_engine
from sqlalchemy.orm import Session, SessionTransaction, SessionTransactionOrigin
from sqlalchemy.pool import AsyncAdaptedQueuePool, Pool, QueuePool

from opensergo.database import dialects
from opensergo.database.dbapi import MySQLVirtualConnection, PostgreSQLVirtualConnection, VirtualConnection
from opensergo.database.errors import ConfigurationError, NoDataSourceError
from opensergo.database.pool import EndpointPool, PhysicalConnection
from opensergo.database.readwrite import HealthBoard
from opensergo.database.rules import DatabaseRules, default_rules
from opensergo.database.urls import ASYNC_DRIVERS, SYNC_DRIVERS
from opensergo.database.virtual import DatabaseRuntime, Options, Resources, build_runtime

__all__ = ["EngineState", "create_async_engine", "create_engine", "state_of"]

log = logging.getLogger("opensergo.database")

# Engine options that configure the endpoints' physical connections, not the routing engine.
_ENDPOINT_OPTIONS = ("connect_args", "isolation_level")
_REFUSED_OPTIONS = ("creator", "async_creator", "poolclass", "pool", "module", "url")

_states: weakref.WeakKeyDictionary[Engine, EngineState] = weakref.WeakKeyDictionary()


class EngineState:
    """The live side of one routing engine: the current runtime and what it was built from."""

    def __init__(self, name: str, namespace: str, rules: DatabaseRules, options: Options) -> None:
        self.name = name
        self.namespace = namespace
        self.rules = rules
        self.options = options
        self.resources = Resources()
        self.health = HealthBoard(options.retry_after)
        self._lock = threading.Lock()
        self._runtime: DatabaseRuntime | None = None
        self.problem: str | None = None
        self.updates = 0
        self.updated_at: float | None = None
        self._connection_cls: type[VirtualConnection] = VirtualConnection
        self._disposed = False
        self._executor: ThreadPoolExecutor | None = None

    # -- runtime
    def current(self) -> DatabaseRuntime:
        runtime = self._runtime
        if runtime is None:
            raise ConfigurationError(self.problem or f"VirtualDatabase {self.name!r} is not configured")
        return runtime

    def build(self) -> DatabaseRuntime:
        """(Re)build from the current rules; keeps the old runtime and raises when they are invalid."""
        with self._lock:
            objects = self.rules.objects(self.namespace)
            try:
                runtime = build_runtime(
                    self.name, self.namespace, objects, self.options, self.resources, self.health
                )
            except ConfigurationError as e:
                self.problem = str(e)
                raise
            old = self._runtime
            if old is not None and old.fingerprint == runtime.fingerprint:
                return old
            for monitor in runtime.monitors:
                monitor.start()
            try:
                # XA: resolve branches a crashed process left prepared (async: at the first transaction).
                runtime.coordinator.attach(runtime.pools, recover_now=not self.options.asynchronous)
            except Exception:
                log.warning(
                    "VirtualDatabase %s: transaction recovery failed; will retry", self.name, exc_info=True
                )
            self._runtime = runtime
            self.problem = None
            self.updates += 1
            self.updated_at = time.monotonic()
            self.resources.retire_unused(runtime)
            if old is not None:
                log.info("VirtualDatabase %s: rules updated (%d)", self.name, self.updates)
            return runtime

    def rules_changed(self, namespace: str) -> None:
        if namespace != self.namespace or self._disposed:
            return
        try:
            self.build()
        except ConfigurationError as e:
            log.warning("VirtualDatabase %s: keeping the previous rules: %s", self.name, e)

    def wait_configured(self, timeout: float) -> DatabaseRuntime:
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.build()
            except ConfigurationError:
                if time.monotonic() >= deadline:
                    raise
            time.sleep(0.05)

    def dispose(self) -> None:
        self._disposed = True
        self.rules.remove_listener(self)
        self._runtime = None
        self.resources.retire_unused(None)
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False)

    # -- running the units of a sharded statement
    def run_concurrently(self, calls: Sequence[Callable[[], Any]]) -> list[Any]:
        """Each call's result, or the exception it raised; at most ``shard_concurrency`` at once
        (threads for the sync engine, asyncio tasks in SQLAlchemy's greenlets for the async one)."""
        if len(calls) == 1 or self.options.shard_concurrency <= 1:
            out: list[Any] = []
            for call in calls:
                try:
                    out.append(call())
                except BaseException as e:
                    out.append(e)
            return out
        if self.options.asynchronous:
            return self._run_async(calls)
        executor = self._executor
        if executor is None:
            with self._lock:
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(  # the calling thread runs one call itself
                        max_workers=self.options.shard_concurrency - 1,
                        thread_name_prefix=f"opensergo-db-{self.name}",
                    )
                executor = self._executor
        futures = [executor.submit(call) for call in calls[1:]]
        out = []
        try:
            out.append(calls[0]())
        except BaseException as e:
            out.append(e)
        for future in futures:
            try:
                out.append(future.result())
            except BaseException as e:
                out.append(e)
        return out

    def _run_async(self, calls: Sequence[Callable[[], Any]]) -> list[Any]:
        from sqlalchemy.util import await_only, greenlet_spawn

        limit = asyncio.Semaphore(max(1, self.options.shard_concurrency))

        async def one(call: Callable[[], Any]) -> Any:
            async with limit:
                return await greenlet_spawn(call)

        async def everything() -> list[Any]:
            return list(await asyncio.gather(*(one(c) for c in calls), return_exceptions=True))

        result: list[Any] = await_only(everything())
        return result

    # -- connections
    def new_connection(self, *args: Any) -> VirtualConnection:
        return self._connection_cls(self)

    def acquire(self, runtime: DatabaseRuntime, pool: EndpointPool, *, failover: bool) -> PhysicalConnection:
        """A connection of ``pool``; for the write source of a dynamic strategy, a failed
        connect re-probes and retries on the primary discovery finds (up to failover_timeout)."""
        try:
            conn = pool.acquire()
        except Exception as e:
            if not failover or not self.is_connect_error(pool, e):
                raise
            self.source_failed(runtime, pool.name)
            deadline = time.monotonic() + self.options.failover_timeout
            while True:
                try:
                    name = runtime.write_source()
                except NoDataSourceError:
                    raise e from None
                try:
                    conn = runtime.pools[name].acquire()
                    break
                except Exception as again:
                    if not self.is_connect_error(runtime.pools[name], again) or time.monotonic() > deadline:
                        raise
                    self.source_failed(runtime, name)
        self.health.mark_up(pool.name)
        return conn

    @staticmethod
    def is_connect_error(pool: EndpointPool, error: BaseException) -> bool:
        dbapi = pool.dialect.loaded_dbapi
        return isinstance(error, dbapi.OperationalError | dbapi.InterfaceError | OSError)

    @staticmethod
    def is_disconnect(pool: EndpointPool, error: BaseException, dbapi_connection: Any, cursor: Any) -> bool:
        if isinstance(error, pool.dialect.loaded_dbapi.Error):
            try:
                return bool(pool.dialect.is_disconnect(error, dbapi_connection, cursor))
            except Exception:
                return False
        return isinstance(error, OSError | ConnectionError)

    def source_failed(self, runtime: DatabaseRuntime, name: str) -> None:
        log.warning("VirtualDatabase %s: data source %s failed; routing around it", self.name, name)
        self.health.mark_down(name)
        for monitor in runtime.monitors:
            if name in monitor.members:
                monitor.exclude(name)

    def describe(self) -> dict[str, Any]:
        runtime = self._runtime
        return {
            "name": self.name,
            "namespace": self.namespace,
            "updates": self.updates,
            "problem": self.problem,
            "runtime": runtime.describe() if runtime is not None else None,
            "discovery": [
                {
                    "group": m.group,
                    "primary": m.primary(0),
                    "replicas": list(m.replicas()),
                    "probes": m.probes,
                }
                for m in (runtime.monitors if runtime else ())
            ],
        }


class RoutingConnection(Connection):
    """Marks explicitly begun transactions on the virtual connection."""

    _opensergo_autobegin = False

    def _autobegin(self) -> None:
        self._opensergo_autobegin = True
        try:
            super()._autobegin()
        finally:
            self._opensergo_autobegin = False

    def begin(self) -> Any:
        transaction = super().begin()
        if not self._opensergo_autobegin:
            virtual = self.connection.dbapi_connection
            if isinstance(virtual, VirtualConnection):
                virtual.mark_explicit(True)
        return transaction


def _after_session_begin(session: Session, transaction: SessionTransaction, connection: Connection) -> None:
    virtual = connection.connection.dbapi_connection
    if not isinstance(virtual, VirtualConnection):
        return
    root = transaction
    while root.parent is not None:
        root = root.parent
    virtual.mark_explicit(root.origin is not SessionTransactionOrigin.AUTOBEGIN)
    virtual.session_info = session.info


def _pool_class(state: EngineState, asynchronous: bool) -> type[Pool]:
    """The engine's pool class: SQLAlchemy's default one, whose ``dispose()`` (``engine.dispose()``)
    also closes the idle connections of the endpoint pools.

    An ``engine_disposed`` listener would do the same, but any engine-level listener makes
    SQLAlchemy dispatch the connection events on every statement (``Engine._has_events``).
    ``Pool.recreate()`` keeps the class, so the hook outlives a dispose.
    """
    base: type[QueuePool] = AsyncAdaptedQueuePool if asynchronous else QueuePool

    def dispose(self: QueuePool) -> None:
        base.dispose(self)
        for pool in list(state.resources.pools.values()):
            pool.close_idle()

    return type(f"Routing{base.__name__}", (base,), {"dispose": dispose})


def _on_checkin(dbapi_connection: Any, record: Any) -> None:
    if isinstance(dbapi_connection, VirtualConnection):
        dbapi_connection.on_checkin()


_session_hooked = False
_hook_lock = threading.Lock()


def _hook_sessions() -> None:
    global _session_hooked
    with _hook_lock:
        if not _session_hooked:
            event.listen(Session, "after_begin", _after_session_begin)
            _session_hooked = True


def _prepare(
    name: str,
    namespace: str,
    rules: DatabaseRules | None,
    wait: float,
    asynchronous: bool,
    engine_options: dict[str, Any],
    settings: dict[str, Any],
) -> tuple[EngineState, str, dict[str, Any]]:
    for key in _REFUSED_OPTIONS:
        if key in engine_options:
            raise TypeError(f"create_engine: {key!r} is decided by the VirtualDatabase and cannot be given")
    endpoint_options = {k: engine_options.pop(k) for k in _ENDPOINT_OPTIONS if k in engine_options}
    options = Options(
        asynchronous=asynchronous,
        connect_args=dict(endpoint_options.get("connect_args") or {}),
        isolation_level=endpoint_options.get("isolation_level"),
        **settings,
    )
    registry = rules if rules is not None else default_rules()
    state = EngineState(name, namespace, registry, options)
    runtime = state.wait_configured(wait) if wait > 0 else state.build()
    registry.add_listener(state)
    family = runtime.family
    driver = options.driver or (ASYNC_DRIVERS if asynchronous else SYNC_DRIVERS)[family]
    state._connection_cls = MySQLVirtualConnection if family == "mysql" else PostgreSQLVirtualConnection
    url = dialects.routing_url(family, driver, name)
    if runtime.sharding is not None:
        # SQLAlchemy's "insertmanyvalues" (INSERT … SELECT FROM (VALUES …) ORDER BY sen_counter
        # RETURNING …) cannot be split per data node; the ORM then inserts row by row.
        engine_options.setdefault("use_insertmanyvalues", False)
    engine_options.setdefault("pool_size", 64)
    engine_options.setdefault("max_overflow", -1)
    engine_options["creator"] = state.new_connection
    engine_options["poolclass"] = _pool_class(state, asynchronous)
    return state, url, engine_options


def _wire(engine: Engine, state: EngineState) -> None:
    engine._connection_cls = RoutingConnection
    event.listen(engine.pool, "checkin", _on_checkin)
    _hook_sessions()
    _states[engine] = state
    weakref.finalize(engine, state.dispose)


def create_engine(
    name: str,
    *,
    namespace: str = "default",
    rules: DatabaseRules | None = None,
    wait: float = 0.0,
    driver: str | None = None,
    failover_timeout: float = 10.0,
    retry_after: float = 2.0,
    plan_cache_size: int = 2048,
    shard_concurrency: int = 8,
    transaction_log_dir: str | None = None,
    **engine_options: Any,
) -> Engine:
    """A SQLAlchemy :class:`~sqlalchemy.engine.Engine` for VirtualDatabase service ``name``.

    Rules come from ``rules`` (default: the process-wide rules that ``load_rules`` and
    ``enable_from_env`` fill). ``wait`` seconds: wait for the VirtualDatabase to be configured
    (e.g. the first push after ``enable_from_env``) instead of failing at once. ``driver``
    overrides the default driver (``pymysql`` / ``psycopg2``). ``failover_timeout``: how long a
    write waits for discovery to find a new primary; ``retry_after``: how long a read source that
    failed is skipped. ``connect_args`` and ``isolation_level`` apply to the endpoints'
    connections; other ``engine_options`` (``echo``, ``execution_options`` …) to the engine.
    ``shard_concurrency``: how many data sources one sharded statement queries at once.
    ``transaction_log_dir``: where XA transactions log their decisions (default
    ``$OPENSERGO_TRANSACTION_LOG_DIR`` or ``~/.local/state/opensergo/transactions``).
    """
    settings = {"driver": driver, "failover_timeout": failover_timeout, "retry_after": retry_after,
                "plan_cache_size": plan_cache_size, "shard_concurrency": shard_concurrency,
                "transaction_log_dir": transaction_log_dir}  # fmt: skip
    state, url, options = _prepare(name, namespace, rules, wait, False, dict(engine_options), settings)
    try:
        engine = sqlalchemy.create_engine(url, **options)
    except BaseException:
        state.dispose()
        raise
    _wire(engine, state)
    return engine


def create_async_engine(
    name: str,
    *,
    namespace: str = "default",
    rules: DatabaseRules | None = None,
    wait: float = 0.0,
    driver: str | None = None,
    failover_timeout: float = 10.0,
    retry_after: float = 2.0,
    plan_cache_size: int = 2048,
    shard_concurrency: int = 8,
    transaction_log_dir: str | None = None,
    **engine_options: Any,
) -> AsyncEngine:
    """The asyncio form of :func:`create_engine` (drivers ``aiomysql`` / ``asyncpg``)."""
    settings = {"driver": driver, "failover_timeout": failover_timeout, "retry_after": retry_after,
                "plan_cache_size": plan_cache_size, "shard_concurrency": shard_concurrency,
                "transaction_log_dir": transaction_log_dir}  # fmt: skip
    state, url, options = _prepare(name, namespace, rules, wait, True, dict(engine_options), settings)
    try:
        engine = _sa_create_async_engine(url, **options)
    except BaseException:
        state.dispose()
        raise
    _wire(engine.sync_engine, state)
    return engine


def state_of(engine: Engine | AsyncEngine) -> EngineState:
    """The routing state behind an engine made by this module."""
    sync = engine.sync_engine if isinstance(engine, AsyncEngine) else engine
    state = _states.get(sync)
    if state is None:
        raise ValueError("not an engine made by opensergo.database.create_engine")
    return state

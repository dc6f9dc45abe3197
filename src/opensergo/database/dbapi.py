"""The DB-API layer the routing engine's dialect talks to.

A :class:`VirtualConnection` stands for one SQLAlchemy connection. It holds no socket of its own:
each statement is planned (cached per SQL string), routed to a data source, rewritten if an
encryption rule applies, and run on a physical connection of that source's pool.

* Statements that must run on the write source (writes, locking reads, reads in an explicit
  transaction or after a write, :func:`primary` blocks)
  run on a connection *held* for the rest of the transaction; ``commit`` / ``rollback`` end the
  transaction on every held connection (:mod:`.transactions`) and give them back.
* Other reads run in autocommit on a connection of the chosen read source, which goes back to
  its pool as soon as the rows are fetched (server-side cursors keep it until they close). A read
  that cannot reach its source is retried on the next one; such reads have no side effects.
* A transaction keeps the rules it started with: a rule change mid-transaction applies from the
  next transaction on (:meth:`VirtualConnection.runtime`).
* Under a Sharding rule a statement becomes one unit per data node (:mod:`.sharding.planner`).
  The units of one data source run in turn on one connection of it, different data sources run
  concurrently (threads for the sync engine, tasks for the async engine, at most
  ``shard_concurrency`` at once), and the results are merged (:mod:`.sharding.merge`). Every held
  connection is enlisted in the transaction of the VirtualDatabase's coordinator (local or XA).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from opensergo.database.errors import NoDataSourceError, PoolTimeoutError
from opensergo.database.pool import PhysicalConnection
from opensergo.database.sharding.merge import merge
from opensergo.database.sharding.planner import Execution
from opensergo.database.transactions import LocalTransaction, Transaction
from opensergo.database.virtual import DatabaseRuntime, Plan
from opensergo.governance.routing import lanes as _lanes

if TYPE_CHECKING:
    from opensergo.database.engine import EngineState

__all__ = ["SESSION_WROTE", "VirtualConnection", "VirtualCursor", "primary"]

SESSION_WROTE = "opensergo.database.wrote"  # Session.info key: this session has written

_PRIMARY: ContextVar[bool] = ContextVar("opensergo_database_primary", default=False)


@contextlib.contextmanager
def primary() -> Iterator[None]:
    """Send every statement run inside the block to the write source."""
    token = _PRIMARY.set(True)
    try:
        yield
    finally:
        _PRIMARY.reset(token)


_lane_manager = _lanes.default_manager()


class VirtualConnection:
    """What the routing engine's pool holds in place of a driver connection."""

    def __init__(self, state: EngineState) -> None:
        self._state = state
        self._pinned: DatabaseRuntime | None = None
        self.held: dict[str, PhysicalConnection] = {}  # transactional connections, in first-use order
        self.explicit = False  # an explicit transaction (engine.begin(), session.begin())
        self.wrote = False  # a write ran since this connection was checked out
        self.session_info: dict[Any, Any] | None = None
        self.autocommit_mode = False
        self.transaction: Transaction | None = None  # of the coordinator, while connections are held
        self._enlisted: set[int] = set()  # held connections that joined ``transaction``
        self.closed = 0  # psycopg2's attribute, read by SQLAlchemy's disconnect check

    # -- routing state
    def runtime(self) -> DatabaseRuntime:
        pinned = self._pinned
        if pinned is not None:
            return pinned
        return self._state.current()

    def needs_primary(self) -> bool:
        if self.held or self.explicit or self.wrote:
            return True
        info = self.session_info
        return info is not None and bool(info.get(SESSION_WROTE))

    def in_transaction(self) -> bool:
        """Statements must join the transaction (sharding): an explicit transaction, a write
        before, or a connection already enlisted — not merely one held for a driver call."""
        if self.explicit or self.wrote or self._enlisted:
            return True
        info = self.session_info
        return info is not None and bool(info.get(SESSION_WROTE))

    def mark_explicit(self, explicit: bool) -> None:
        self.explicit = explicit
        if explicit and self._pinned is None:
            self._pinned = self._state.current()

    def hold(self, runtime: DatabaseRuntime, name: str, *, failover: bool) -> tuple[PhysicalConnection, bool]:
        """The held connection of ``name`` (opening it if needed); True when newly opened."""
        conn = self.held.get(name)
        if conn is not None:
            return conn, False
        pool = runtime.pools[name]
        conn = self._state.acquire(runtime, pool, failover=failover)
        try:
            conn.set_autocommit(self.autocommit_mode)
        except BaseException:
            conn.pool.release(conn, broken=True)
            raise
        if self._pinned is None:
            self._pinned = runtime
        self.held[conn.pool.name] = conn
        return conn, True

    def enlist(self, conn: PhysicalConnection) -> None:
        """Join ``conn`` to the transaction before its first statement (XA START); connections
        held only for a driver call (``__getattr__``) never join."""
        if self.autocommit_mode or id(conn) in self._enlisted:
            return
        transaction = self.transaction
        if transaction is None:
            transaction = self.transaction = self.runtime().coordinator.begin()
        transaction.enlist(conn)
        self._enlisted.add(id(conn))

    def drop(self, conn: PhysicalConnection) -> None:
        """Forget a held connection that broke."""
        self.held.pop(conn.pool.name, None)
        self._enlisted.discard(id(conn))
        conn.pool.release(conn, broken=True)

    def _end(self, commit: bool) -> None:
        if not self.held:  # nothing ran on a held connection (a plain read): only reset
            self.transaction = None
            if self._enlisted:
                self._enlisted = set()
            self._pinned = None
            self.explicit = False
            return
        held = list(self.held.values())
        self.held = {}
        transaction, self.transaction = self.transaction, None
        enlisted, self._enlisted = self._enlisted, set()
        self._pinned = None
        self.explicit = False
        joined = [c for c in held if id(c) in enlisted]
        local = [c for c in held if id(c) not in enlisted]  # autocommit mode, or only a driver call
        broken: set[int] = set()
        try:
            if transaction is not None and joined:
                if commit:
                    broken = {id(c) for c in transaction.commit(joined)}
                else:
                    transaction.rollback(joined)
            if local:
                ending = LocalTransaction()
                ending.commit(local) if commit else ending.rollback(local)
        except BaseException:
            broken = {id(c) for c in held}
            raise
        finally:
            for conn in held:
                conn.pool.release(conn, broken=id(conn) in broken)

    # -- DB-API
    def cursor(self, *args: Any, **kwargs: Any) -> VirtualCursor:
        return VirtualCursor(self, args, kwargs)

    def commit(self) -> None:
        self._end(True)

    def rollback(self) -> None:
        self._end(False)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._end(False)
        self.on_checkin()

    def terminate(self) -> None:  # the async pools' hard close
        self.close()

    def on_checkin(self) -> None:
        self.wrote = False
        self.session_info = None
        self.explicit = False

    def _set_autocommit(self, value: bool) -> None:
        self.autocommit_mode = bool(value)
        for conn in self.held.values():
            conn.set_autocommit(self.autocommit_mode)

    def __getattr__(self, name: str) -> Any:
        # Driver-specific calls of the dialect (character_set_name, server_version, ping …) go
        # to the write source's connection.
        if name.startswith("__"):
            raise AttributeError(name)
        runtime = self.runtime()
        conn, _ = self.hold(runtime, runtime.write_source(), failover=True)
        return getattr(conn.dbapi, name)


# (description, rows or None, rowcount, lastrowid) of one unit
_UnitResult = tuple[Any, list[Any] | None, int, Any]


def _run_batch(
    phys: PhysicalConnection, work: list[tuple[str, list[Any], list[tuple[int, int]]]], many: bool
) -> list[tuple[tuple[int, int], _UnitResult]]:
    """Run the units of one data source in turn on ``phys``."""
    out: list[tuple[tuple[int, int], _UnitResult]] = []
    for sql, params_list, keys in work:
        cursor = phys.dbapi.cursor()
        try:
            if len(params_list) > 1:
                cursor.executemany(sql, params_list)
            elif params_list[0] is None:
                cursor.execute(sql)
            else:
                cursor.execute(sql, params_list[0])
            description = cursor.description
            rows = list(cursor.fetchall()) if description is not None else None
            result: _UnitResult = (description, rows, cursor.rowcount, getattr(cursor, "lastrowid", None))
        finally:
            cursor.close()
        if len(keys) == 1:
            out.append((keys[0], result))
        else:  # an executemany batch: the count belongs to the batch, reported once
            out.append((keys[0], result))
            out.extend((key, (description, None, 0, None)) for key in keys[1:])
    return out


class MySQLVirtualConnection(VirtualConnection):
    def autocommit(self, value: bool) -> None:  # PyMySQL / aiomysql style
        self._set_autocommit(value)

    def get_autocommit(self) -> bool:
        return self.autocommit_mode


class PostgreSQLVirtualConnection(VirtualConnection):
    notices: list[str] = []  # psycopg2's server notices, read by SQLAlchemy after each statement

    @property
    def autocommit(self) -> bool:  # psycopg2 / asyncpg adapter style
        return self.autocommit_mode

    @autocommit.setter
    def autocommit(self, value: bool) -> None:
        self._set_autocommit(value)


class VirtualCursor:
    """Routes each ``execute`` and serves its results."""

    arraysize = 1

    def __init__(self, connection: VirtualConnection, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self._conn = connection
        self._args = args
        self._kwargs = kwargs
        self._streaming = bool(args) or bool(kwargs.get("server_side"))
        self._cursor: Any = None  # a physical cursor still open
        self._cursor_conn: PhysicalConnection | None = None  # released when the cursor closes
        self._rows: list[Any] | None = None
        self._merged: Iterator[Any] | None = None  # rows merged from several data nodes
        self._pos = 0
        self._decrypt: Plan | None = None
        self.description: Any = None
        self.rowcount = -1
        self.lastrowid: Any = None
        self.force_primary = False
        self.data_source: str | None = None  # where the last statement ran

    @property
    def connection(self) -> VirtualConnection:
        return self._conn

    # -- execution
    def execute(self, operation: str, parameters: Any = None) -> None:
        self._reset()
        conn = self._conn
        runtime = conn.runtime()
        plan = runtime.plans.get(operation)
        if plan.error is not None:
            raise plan.error
        sql, params = operation, parameters
        rewrite = plan.rewrite
        if rewrite is not None:
            sql, params = rewrite.sql, rewrite.bind(parameters)
            if rewrite.decrypt:
                self._decrypt = plan
        if plan.sharding is not None:
            self._run_sharded(runtime, plan, [plan.sharding.route(params)], parameters)
            return
        name, on_primary = self._route(runtime, plan, parameters)
        if plan.statement.kind == "ddl" and runtime.coordinator.name == "xa" and name not in conn.held:
            on_primary = False  # XA branches cannot run DDL (MySQL: XAER_RMFAIL); it runs on its own
        if on_primary:
            self._run_held(runtime, name, plan, sql, params, many=False)
        else:
            self._run_read(runtime, name, plan, sql, params)

    def executemany(self, operation: str, seq_of_parameters: Sequence[Any]) -> None:
        self._reset()
        conn = self._conn
        runtime = conn.runtime()
        plan = runtime.plans.get(operation)
        if plan.error is not None:
            raise plan.error
        items = list(seq_of_parameters)
        sql: str = operation
        params: Any = items
        if plan.rewrite is not None:
            sql, params = plan.rewrite.sql, [plan.rewrite.bind(p) for p in items]
        if plan.sharding is not None:
            sharding = plan.sharding
            self._run_sharded(runtime, plan, [sharding.route(p) for p in params], items[0] if items else None)
            return
        name, _ = self._route(runtime, plan, items[0] if items else None, force_primary=True)
        self._run_held(runtime, name, plan, sql, params, many=True)

    def _route(
        self, runtime: DatabaseRuntime, plan: Plan, parameters: Any, *, force_primary: bool = False
    ) -> tuple[str, bool]:
        """(data source, on a held transactional connection?)

        Writes, locking reads and everything in a transaction that needs it run on a held
        connection; reads sent to the write source by a hint or :func:`primary` run there in
        autocommit and leave the connection free for the replicas again.
        """
        conn = self._conn
        rw = runtime.readwrite
        held = force_primary or plan.statement.is_write or conn.needs_primary()
        if plan.data_source is not None:
            name = plan.data_source
        elif rw is None:
            name = runtime.default_source  # type: ignore[assignment]
            held = True
        elif held:
            name = self._held_write(runtime)
        elif plan.primary or self.force_primary or _PRIMARY.get():
            name = runtime.write_source()
        else:
            name = rw.read_source()
        on_primary = held
        shadow = runtime.shadow
        if shadow is not None and plan.shadow is not None:
            lane = _lane_manager.current() if shadow.uses_lane else None
            if shadow.decide(plan.shadow, parameters, lane):
                target = shadow.target(name, self._write_name(runtime))
                if target is not None:
                    name = target
        if name in conn.held:
            on_primary = True
        return name, on_primary

    def _held_write(self, runtime: DatabaseRuntime) -> str:
        # A transaction that already holds its write source keeps it, even if discovery moved.
        rw = runtime.readwrite
        if rw is not None and rw.dynamic:
            for name in self._conn.held:
                if runtime.shadow is None or name not in runtime.shadow.mappings.values():
                    return name
        return runtime.write_source()

    @staticmethod
    def _write_name(runtime: DatabaseRuntime) -> str | None:
        try:
            return runtime.write_source()
        except NoDataSourceError:
            return None

    def _run_held(
        self, runtime: DatabaseRuntime, name: str, plan: Plan, sql: str, params: Any, *, many: bool
    ) -> None:
        conn = self._conn
        state = conn._state
        rw = runtime.readwrite
        dynamic = rw is not None and rw.dynamic
        attempts = 3 if dynamic else 1
        while True:
            phys, fresh = conn.hold(runtime, name, failover=dynamic)
            conn.enlist(phys)
            cursor = phys.dbapi.cursor(*self._args, **self._kwargs)
            try:
                if many:
                    cursor.executemany(sql, params)
                else:
                    cursor.execute(sql, params) if params is not None else cursor.execute(sql)
            except Exception as e:
                if not state.is_disconnect(phys.pool, e, phys.dbapi, cursor):
                    raise
                conn.drop(phys)
                state.source_failed(runtime, phys.pool.name)
                attempts -= 1
                # Safe to retry only when nothing else ran in this transaction on that connection
                # (the server rolled it back) and the driver was not in autocommit.
                if not (fresh and not phys.autocommit and attempts > 0 and len(conn.held) == 0):
                    raise
                name = runtime.write_source()
                continue
            break
        if plan.statement.is_write:
            conn.wrote = True
            info = conn.session_info
            if info is not None:
                info[SESSION_WROTE] = True
        self.data_source = phys.pool.name
        self._adopt(cursor)

    def _run_read(self, runtime: DatabaseRuntime, name: str, plan: Plan, sql: str, params: Any) -> None:
        state = self._conn._state
        rw = runtime.readwrite
        tried: list[str] = []
        while True:
            pool = runtime.pools[name]
            phys: PhysicalConnection | None = None
            try:
                phys = state.acquire(runtime, pool, failover=False)
                phys.set_autocommit(True)
                cursor = phys.dbapi.cursor(*self._args, **self._kwargs)
                cursor.execute(sql, params) if params is not None else cursor.execute(sql)
            except PoolTimeoutError:
                if phys is not None:
                    pool.release(phys)
                raise
            except Exception as e:
                broken = phys is None or state.is_disconnect(pool, e, phys.dbapi, None)
                if phys is not None:
                    pool.release(phys, broken=broken)
                if not broken or rw is None:
                    raise
                state.source_failed(runtime, name)
                tried.append(name)
                try:
                    name = rw.read_source(exclude=tried)
                except NoDataSourceError:
                    raise e from None
                if name in tried:
                    raise
                continue
            break
        self.data_source = name
        if self._streaming:
            self._cursor_conn = phys
            self._adopt(cursor)
            return
        try:
            description = cursor.description
            rows = list(cursor.fetchall()) if description is not None else None
            self.rowcount = cursor.rowcount
            self.lastrowid = getattr(cursor, "lastrowid", None)
            cursor.close()
        except BaseException:
            pool.release(phys, broken=True)
            raise
        pool.release(phys)
        self.description = description
        self._rows = rows

    # -- sharding
    def _run_sharded(  # noqa: C901 (complexity debt, see pyproject [tool.ruff.lint.mccabe])
        self, runtime: DatabaseRuntime, plan: Plan, executions: list[Execution], parameters: Any
    ) -> None:
        """Run the units of one statement (several executions for ``executemany``) and merge."""
        conn = self._conn
        statement = plan.statement
        transactional = statement.is_write or statement.locks or conn.in_transaction()
        if statement.kind == "ddl" and runtime.coordinator.name == "xa":
            transactional = False  # XA branches cannot run DDL (MySQL: XAER_RMFAIL); it runs on its own
        shadow = runtime.shadow
        if shadow is not None and plan.shadow is not None:
            lane = _lane_manager.current() if shadow.uses_lane else None
            if shadow.decide(plan.shadow, parameters, lane):
                for execution in executions:
                    for unit in execution.units:
                        unit.data_source = shadow.target(unit.data_source, None) or unit.data_source
        first = executions[0]
        if len(executions) == 1 and len(first.units) == 1 and first.merge is None:
            # One data node (a point read or write): the plain single-source path.
            unit = first.units[0]
            if transactional:
                self._run_held(runtime, unit.data_source, plan, unit.sql, unit.params, many=False)
            else:
                self._run_read(runtime, unit.data_source, plan, unit.sql, unit.params)
            if first.generated:
                self.lastrowid = first.generated[0]
            return
        # Units of one data source run in turn on one connection, data sources concurrently.
        batches: dict[str, list[tuple[str, list[Any], list[tuple[int, int]]]]] = {}
        for number, execution in enumerate(executions):
            for index, unit in enumerate(execution.units):
                work = batches.setdefault(unit.data_source, [])
                if len(executions) > 1 and work and work[-1][0] == unit.sql:
                    work[-1][1].append(unit.params)
                    work[-1][2].append((number, index))
                else:
                    work.append((unit.sql, [unit.params], [(number, index)]))
        many = len(executions) > 1
        if not batches:
            self.rowcount = 0
            self.description = None
            return
        results = self._state_run(runtime, batches, transactional, many)
        if statement.is_write:
            conn.wrote = True
            info = conn.session_info
            if info is not None:
                info[SESSION_WROTE] = True
        self.data_source = next(iter(batches))
        by_unit = {key: result for ds_results in results.values() for key, result in ds_results}
        ordered = [by_unit[(0, i)] for i in range(len(first.units))] if not many else list(by_unit.values())
        description = ordered[0][0] if ordered else None
        if first.merge is not None and not many:
            spec = first.merge
            if description is not None and spec.derived:
                description = description[: len(description) - spec.derived]
            self.description = description
            self._merged = merge(spec, runtime.family, [r[1] or () for r in ordered], first.bound)
            self.rowcount = -1
            return
        self.description = description
        if first.first_rowcount:
            self.rowcount = ordered[0][2]
        else:
            counts = [r[2] for r in ordered if r[2] is not None and r[2] >= 0]
            self.rowcount = sum(counts) if counts else -1
        if first.generated and not many:
            self.lastrowid = first.generated[0]
        else:
            self.lastrowid = ordered[0][3] if ordered else None
        if description is not None:
            if first.returning_rows and not many:
                slots: list[Any] = [None] * first.returning_rows
                for i, unit in enumerate(first.units):
                    for position, row in zip(unit.rows, by_unit[(0, i)][1] or (), strict=False):
                        slots[position] = row
                self._rows = slots
            else:
                self._rows = [row for r in ordered for row in (r[1] or ())]

    def _state_run(
        self,
        runtime: DatabaseRuntime,
        batches: dict[str, list[tuple[str, list[Any], list[tuple[int, int]]]]],
        transactional: bool,
        many: bool,
    ) -> dict[str, list[tuple[tuple[int, int], _UnitResult]]]:
        conn = self._conn
        state = conn._state
        connections: dict[str, PhysicalConnection] = {}
        try:
            for name in batches:  # acquire in the calling thread (XA START happens here)
                if transactional:
                    connections[name], _ = conn.hold(runtime, name, failover=False)
                    conn.enlist(connections[name])
                else:
                    phys = state.acquire(runtime, runtime.pools[name], failover=False)
                    connections[name] = phys
                    phys.set_autocommit(True)
        except BaseException:
            if not transactional:
                for phys in connections.values():
                    phys.pool.release(phys)
            raise
        tasks = [(name, connections[name], work) for name, work in batches.items()]
        outcomes = state.run_concurrently(
            [functools.partial(_run_batch, phys, work, many) for _, phys, work in tasks]
        )
        error: BaseException | None = None
        results: dict[str, list[tuple[tuple[int, int], _UnitResult]]] = {}
        for (name, phys, _), outcome in zip(tasks, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                broken = state.is_disconnect(phys.pool, outcome, phys.dbapi, None)
                error = error or outcome
            else:
                broken = False
                results[name] = outcome
            if not transactional:
                phys.pool.release(phys, broken=broken)
            elif broken:
                conn.drop(phys)
        if error is not None:
            raise error
        return results

    def _adopt(self, cursor: Any) -> None:
        self._cursor = cursor
        self.description = cursor.description
        self.rowcount = cursor.rowcount
        self.lastrowid = getattr(cursor, "lastrowid", None)

    # -- results
    def _reset(self) -> None:
        if self._cursor is not None:
            self._close_cursor()
        self._rows = None
        self._merged = None
        self._pos = 0
        self._decrypt = None
        self.description = None
        self.rowcount = -1
        self.lastrowid = None

    def _close_cursor(self) -> None:
        cursor, self._cursor = self._cursor, None
        phys, self._cursor_conn = self._cursor_conn, None
        try:
            cursor.close()
        finally:
            if phys is not None:
                phys.pool.release(phys)

    def _out(self, row: Any) -> Any:
        plan = self._decrypt
        if plan is None or row is None:
            return row
        assert plan.rewrite is not None
        return plan.rewrite.decrypt_row(row)

    def fetchone(self) -> Any:
        if self._merged is not None:
            return self._out(next(self._merged, None))
        if self._rows is not None:
            if self._pos >= len(self._rows):
                return None
            row = self._rows[self._pos]
            self._pos += 1
            return self._out(row)
        if self._cursor is None:
            return None
        return self._out(self._cursor.fetchone())

    def fetchmany(self, size: int | None = None) -> list[Any]:
        count = size if size is not None else self.arraysize
        if self._merged is not None:
            chunk = list(itertools.islice(self._merged, count))
            return [self._out(r) for r in chunk] if self._decrypt else chunk
        if self._rows is not None:
            chunk = self._rows[self._pos : self._pos + count]
            self._pos += len(chunk)
            return [self._out(r) for r in chunk] if self._decrypt else list(chunk)
        if self._cursor is None:
            return []
        chunk = list(self._cursor.fetchmany(count))
        return [self._out(r) for r in chunk] if self._decrypt else chunk

    def fetchall(self) -> list[Any]:
        if self._merged is not None:
            chunk = list(self._merged)
            return [self._out(r) for r in chunk] if self._decrypt else chunk
        if self._rows is not None:
            chunk = self._rows[self._pos :]
            self._pos = len(self._rows)
            return [self._out(r) for r in chunk] if self._decrypt else list(chunk)
        if self._cursor is None:
            return []
        chunk = list(self._cursor.fetchall())
        return [self._out(r) for r in chunk] if self._decrypt else chunk

    def __iter__(self) -> Iterator[Any]:
        while True:
            row = self.fetchone()
            if row is None:
                return
            yield row

    def close(self) -> None:
        if self._cursor is not None:
            self._close_cursor()
        self._rows = None
        self._merged = None

    async def _async_soft_close(self) -> None:
        # SQLAlchemy's asyncio result layer calls this on adapted cursors.
        cursor = self._cursor
        if cursor is not None and hasattr(cursor, "_async_soft_close"):
            await cursor._async_soft_close()

    def nextset(self) -> bool | None:
        return None

    def setinputsizes(self, sizes: Any) -> None:
        pass

    def setoutputsize(self, size: Any, column: Any = None) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or self._cursor is None:
            raise AttributeError(name)
        return getattr(self._cursor, name)

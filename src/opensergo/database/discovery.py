"""DatabaseDiscovery: find the primary and the healthy replicas of a group by probing them.

Probes run on a daemon thread on the heartbeat's ``keep-alive-cron`` (Quartz syntax, seconds
first: ``0/5 * * * * ?`` is every 5 s), over their own connections (never the pools'), with the
synchronous driver of the endpoint's family.

Types (``discoveryTypes.<name>.type``):

* ``MySQL.NORMAL_REPLICATION`` (MariaDB/MySQL primary-replica): the primary is the reachable
  server with ``read_only`` off that is not itself replicating; a replica is healthy when both
  replication threads run and ``Seconds_Behind_Master`` * 1000 is below
  ``delay-milliseconds-threshold`` (prop; 0, the default, disables the lag check).
* ``MySQL.MGR`` (group replication): the primary is ``group_replication_primary_member``; members
  ``ONLINE`` are healthy. Accepted and implemented from the documentation, but not tested here
  (group replication needs a MySQL server; Debian ships MariaDB).
* ``PostgreSQL.NORMAL_REPLICATION`` (an extension; streaming replication): the primary is the
  server where ``pg_is_in_recovery()`` is false; a standby is healthy while its WAL receiver is
  ``streaming`` and its replay lag is below the threshold.

When several servers look like a primary (just after a manual promotion, before the old primary
is fenced), the current primary is kept while it still qualifies. A promoted replica becomes the
write source at the next probe, or at once when a write fails to connect (:meth:`refresh`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from croniter import croniter  # type: ignore[import-untyped]

from opensergo.database.errors import ConfigurationError
from opensergo.database.urls import EndpointURL

__all__ = ["DiscoveryMonitor", "MemberState", "parse_cron", "probe_member"]

log = logging.getLogger("opensergo.database.discovery")

TYPES = ("MySQL.NORMAL_REPLICATION", "MySQL.MGR", "PostgreSQL.NORMAL_REPLICATION")
DEFAULT_CRON = "0/5 * * * * ?"


def parse_cron(expression: str) -> croniter:
    """A Quartz cron (seconds first; ``?`` allowed) as a croniter starting now."""
    quartz = expression.split()
    if len(quartz) == 7:  # Quartz allows a year field
        quartz = quartz[:6]
    if len(quartz) != 6:
        raise ConfigurationError(f"keep-alive-cron {expression!r}: expected 6 fields, seconds first")
    text = " ".join("*" if f == "?" else f for f in quartz)
    try:
        return croniter(text, datetime.now(), second_at_beginning=True)
    except (ValueError, KeyError) as e:
        raise ConfigurationError(f"keep-alive-cron {expression!r}: {e}") from None


@dataclass(frozen=True, slots=True)
class MemberState:
    name: str
    reachable: bool
    primary: bool = False  # qualifies as primary
    replicating: bool = False
    lag_ms: float = math.inf
    has_replicas: bool = False
    error: str | None = None


def _connect(url: EndpointURL, timeout: float) -> Any:
    u = url.url
    if url.family == "mysql":
        import pymysql  # type: ignore[import-untyped]

        return pymysql.connect(
            host=u.host,
            port=u.port or 3306,
            user=u.username,
            password=u.password or "",
            database=u.database,
            connect_timeout=max(1, math.ceil(timeout)),
            read_timeout=max(1, math.ceil(timeout)),
            autocommit=True,
        )
    import psycopg2  # type: ignore[import-untyped]

    conn = psycopg2.connect(
        host=u.host,
        port=u.port or 5432,
        user=u.username,
        password=u.password,
        dbname=u.database,
        connect_timeout=max(1, math.ceil(timeout)),
    )
    conn.autocommit = True
    return conn


def _rows(conn: Any, sql: str) -> list[dict[str, Any]]:
    cursor = conn.cursor()
    try:
        cursor.execute(sql)
        if cursor.description is None:
            return []
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    finally:
        cursor.close()


def probe_member(name: str, conn: Any, type_name: str, props: Mapping[str, Any]) -> MemberState:
    """One probe of one member over an open connection (raises on connection errors)."""
    if type_name == "PostgreSQL.NORMAL_REPLICATION":
        [row] = _rows(conn, "SELECT pg_is_in_recovery() AS recovery")
        if not row["recovery"]:
            return MemberState(name, True, primary=True, replicating=False, lag_ms=0.0)
        receiver = _rows(conn, "SELECT status FROM pg_stat_wal_receiver")
        streaming = bool(receiver) and receiver[0]["status"] == "streaming"
        [lag_row] = _rows(
            conn,
            "SELECT CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 ELSE"
            " COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()) * 1000, 0) END AS lag",
        )
        return MemberState(name, True, replicating=streaming, lag_ms=float(lag_row["lag"]))
    if type_name == "MySQL.MGR":
        group = props.get("group-name")
        [var] = _rows(conn, "SELECT @@global.group_replication_group_name AS g, "
                            "@@global.group_replication_single_primary_mode AS single")  # fmt: skip
        if group is not None and str(var["g"]) != str(group):
            raise ConfigurationError(f"{name}: group_replication_group_name is {var['g']!r}, not {group!r}")
        members = _rows(
            conn,
            "SELECT m.MEMBER_ID AS id, m.MEMBER_STATE AS state, @@server_uuid AS me, "
            "(SELECT VARIABLE_VALUE FROM performance_schema.global_status WHERE "
            "VARIABLE_NAME = 'group_replication_primary_member') AS primary_id "
            "FROM performance_schema.replication_group_members m",
        )
        me = next((m for m in members if m["id"] == m["me"]), None)
        if me is None:
            return MemberState(name, True, error="not a group member")
        online = me["state"] == "ONLINE"
        is_primary = me["id"] == me["primary_id"]
        return MemberState(name, True, primary=is_primary and online, replicating=online, lag_ms=0.0)
    # MySQL.NORMAL_REPLICATION (MariaDB and MySQL)
    [ro] = _rows(conn, "SELECT @@global.read_only AS ro")
    status = _rows(conn, "SHOW SLAVE STATUS")
    hosts = _rows(conn, "SHOW SLAVE HOSTS")
    sql_running = bool(status) and status[0].get("Slave_SQL_Running") == "Yes"
    io_running = bool(status) and status[0].get("Slave_IO_Running") == "Yes"
    seconds = status[0].get("Seconds_Behind_Master") if status else None
    lag = math.inf if seconds is None else float(seconds) * 1000.0
    return MemberState(
        name,
        True,
        primary=not int(ro["ro"]) and not sql_running,
        replicating=sql_running and io_running,
        lag_ms=lag,
        has_replicas=bool(hosts),
    )


class DiscoveryMonitor:
    """Probes one discovery group and keeps its primary and healthy replicas.

    ``members`` maps data-source names to their URLs (with credentials). Start with
    :meth:`start`; :meth:`stop` ends the thread and closes the probe connections.
    """

    def __init__(
        self,
        group: str,
        members: Mapping[str, EndpointURL],
        type_name: str,
        props: Mapping[str, Any],
        cron: str = DEFAULT_CRON,
        *,
        probe_timeout: float = 2.0,
        on_change: Callable[[DiscoveryMonitor], None] | None = None,
    ) -> None:
        if type_name not in TYPES:
            raise ConfigurationError(f"discovery type {type_name!r} is not supported ({', '.join(TYPES)})")
        self.group = group
        self.members = dict(members)
        self.type_name = type_name
        self.props = dict(props)
        self.cron = cron
        parse_cron(cron)  # validate now
        try:
            self.threshold_ms = float(self.props.get("delay-milliseconds-threshold", 0) or 0)
        except (TypeError, ValueError):
            raise ConfigurationError("delay-milliseconds-threshold must be a number") from None
        self.probe_timeout = probe_timeout
        self.on_change = on_change
        self._conns: dict[str, Any] = {}
        self._primary: str | None = None
        self._replicas: tuple[str, ...] = ()
        self.states: dict[str, MemberState] = {}
        self.probes = 0
        self.last_change: float | None = None
        self._ready = threading.Event()
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._probe_lock = threading.Lock()
        self._thread: threading.Thread | None = None

    # -- what routing reads
    def primary(self, timeout: float = 0.0) -> str | None:
        """The current primary; waits up to ``timeout`` for the first probe or a new primary."""
        if self._primary is not None:
            return self._primary
        if timeout > 0:
            deadline = time.monotonic() + timeout
            self.refresh()
            while self._primary is None and time.monotonic() < deadline and not self._stopped.is_set():
                self._ready.wait(min(0.05, max(0.0, deadline - time.monotonic())))
                if self._primary is None:
                    self.refresh()
        return self._primary

    def replicas(self) -> Sequence[str]:
        return self._replicas

    def refresh(self) -> None:
        """Probe now (asynchronously) instead of waiting for the next heartbeat."""
        self._wake.set()

    def exclude(self, name: str) -> None:
        """A statement failed to connect to ``name``: stop routing to it until a probe sees it."""
        changed = False
        if self._primary == name:
            self._primary = None
            changed = True
        if name in self._replicas:
            self._replicas = tuple(r for r in self._replicas if r != name)
            changed = True
        if changed:
            self.last_change = time.monotonic()
            self._ready.clear()
        self.refresh()

    # -- lifecycle
    def start(self) -> DiscoveryMonitor:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name=f"opensergo-db-discovery-{self.group}", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
        for conn in self._conns.values():
            with contextlib.suppress(Exception):
                conn.close()
        self._conns.clear()

    def _run(self) -> None:
        schedule = parse_cron(self.cron)
        while not self._stopped.is_set():
            self.probe_once()
            next_at = schedule.get_next(float)
            while True:
                delay = next_at - time.time()
                if delay <= 0 or self._stopped.is_set():
                    break
                if self._wake.wait(delay):
                    self._wake.clear()
                    break

    def probe_once(self) -> None:
        with self._probe_lock:
            states = {name: self._probe(name, url) for name, url in self.members.items()}
            self.probes += 1
            self._apply(states)

    def _probe(self, name: str, url: EndpointURL) -> MemberState:
        conn = self._conns.get(name)
        try:
            if conn is None:
                conn = _connect(url, self.probe_timeout)
                self._conns[name] = conn
            return probe_member(name, conn, self.type_name, self.props)
        except ConfigurationError as e:
            return MemberState(name, True, error=str(e))
        except Exception as e:
            self._conns.pop(name, None)
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()
            return MemberState(name, False, error=f"{type(e).__name__}: {e}".splitlines()[0])

    def _apply(self, states: dict[str, MemberState]) -> None:
        self.states = states
        candidates = [s for s in states.values() if s.reachable and s.primary]
        primary: str | None
        if not candidates:
            primary = None
        elif self._primary in {c.name for c in candidates}:
            primary = self._primary
        else:
            with_replicas = [c for c in candidates if c.has_replicas]
            primary = (with_replicas or candidates)[0].name
        if len(candidates) > 1:
            log.warning(
                "discovery group %s: several servers qualify as primary (%s); using %s",
                self.group,
                ", ".join(c.name for c in candidates),
                primary,
            )
        threshold = self.threshold_ms
        replicas = tuple(
            s.name
            for s in states.values()
            if s.reachable
            and s.name != primary
            and s.replicating
            and (threshold <= 0 or s.lag_ms < threshold)
        )
        if primary != self._primary or replicas != self._replicas:
            log.info(
                "discovery group %s: primary %s, replicas %s (was %s, %s)",
                self.group, primary, list(replicas), self._primary, list(self._replicas),
            )  # fmt: skip
            self._primary, self._replicas = primary, replicas
            self.last_change = time.monotonic()
            if self.on_change is not None:
                self.on_change(self)
        if primary is not None:
            self._ready.set()
        else:
            self._ready.clear()

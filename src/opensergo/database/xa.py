"""XA transactions: two-phase commit across data sources, with a transaction log and recovery.

Branch statements per server:

============  =======================================  ==========================================
phase         MariaDB / MySQL                          PostgreSQL
============  =======================================  ==========================================
enlist        ``XA START 'g','b'``                     (the driver's implicit BEGIN)
prepare       ``XA END 'g','b'``; ``XA PREPARE 'g','b'``  ``PREPARE TRANSACTION 'g.b'``
commit        ``XA COMMIT 'g','b'``                    ``COMMIT PREPARED 'g.b'`` (autocommit)
rollback      ``XA ROLLBACK 'g','b'``                  ``ROLLBACK PREPARED 'g.b'`` (autocommit)
one phase     ``XA END``; ``XA COMMIT … ONE PHASE``     ``COMMIT``
recover       ``XA RECOVER``                           ``pg_prepared_xacts`` of the database
============  =======================================  ==========================================

PostgreSQL needs ``max_prepared_transactions`` > 0 (its default is 0: PREPARE then fails with
"prepared transactions are disabled").

**The log.** Each coordinator writes ``<directory>/<database>.<owner>.xalog`` and holds an
exclusive ``flock`` on it while the process lives; ``owner`` is random and starts every global
transaction id (``os.<owner>.<n>``). A commit decision (``C <gtrid>``) is written and fsynced
after every branch prepared and before any is committed; ``D <gtrid>`` follows when all are
committed. **Recovery** (when an engine starts, and after a commit whose second phase failed):
for every log of the same database that no live process holds, the prepared branches of its
owner on every data source of the VirtualDatabase are committed when the log decided so and
rolled back otherwise; the log is deleted once nothing of it is left. A branch whose second phase
failed in a live process is retried the same way, from a new connection.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import logging
import os
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from opensergo.database.errors import ConfigurationError
from opensergo.database.pool import EndpointPool, PhysicalConnection

__all__ = ["TransactionLog", "XATransactions", "default_log_dir"]

log = logging.getLogger("opensergo.database.xa")

_SAFE = re.compile(r"[^A-Za-z0-9_]")


def default_log_dir() -> Path:
    """``$OPENSERGO_TRANSACTION_LOG_DIR``, else ``$XDG_STATE_HOME/opensergo/transactions``
    (``~/.local/state/opensergo/transactions``)."""
    configured = os.environ.get("OPENSERGO_TRANSACTION_LOG_DIR")
    if configured:
        return Path(configured)
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "opensergo" / "transactions"


class TransactionLog:
    """This process's XA decisions for one database (an append-only file under an exclusive lock)."""

    def __init__(self, directory: Path, database: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.database = _SAFE.sub("_", database)
        self.owner = os.urandom(6).hex()
        self.path = directory / f"{self.database}.{self.owner}.xalog"
        self._file = self.path.open("a+b")
        fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._lock = threading.Lock()
        self.pending: dict[str, tuple[str, ...]] = {}  # decided, not yet committed everywhere

    def decide(self, gtrid: str, sources: Sequence[str]) -> None:
        """Record the commit decision durably (fsync) before phase two."""
        line = f"C {gtrid} {','.join(sources)}\n".encode()
        with self._lock:
            self._file.write(line)
            self._file.flush()
            os.fsync(self._file.fileno())
            self.pending[gtrid] = tuple(sources)

    def done(self, gtrid: str) -> None:
        with self._lock:
            self._file.write(f"D {gtrid}\n".encode())
            self._file.flush()
            self.pending.pop(gtrid, None)
            if not self.pending and self._file.tell() > 1 << 20:
                self._file.truncate(0)  # nothing undecided: start the file over

    def close(self) -> None:
        with self._lock:
            if self._file.closed:
                return
            keep = bool(self.pending)
            self._file.close()  # releases the lock
            if not keep:
                with contextlib.suppress(OSError):
                    self.path.unlink()

    def orphans(self) -> list[Path]:
        """Logs of this database that no live process holds (their owners died)."""
        found: list[Path] = []
        for path in sorted(self.directory.glob(f"{self.database}.*.xalog")):
            if path == self.path:
                continue
            try:
                with path.open("rb") as handle:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
            except BlockingIOError:
                continue
            except OSError:
                continue
            found.append(path)
        return found


def read_decisions(path: Path) -> set[str]:
    """The global transactions a log decided to commit and did not finish."""
    decided: set[str] = set()
    for raw in path.read_bytes().splitlines():
        parts = raw.decode(errors="replace").split()
        if len(parts) >= 2 and parts[0] == "C":
            decided.add(parts[1])
        elif len(parts) >= 2 and parts[0] == "D":
            decided.discard(parts[1])
    return decided


# --- branch statements per server ---------------------------------------------------------------


def _execute(conn: PhysicalConnection, sql: str) -> list[Any]:
    cursor = conn.dbapi.cursor()
    try:
        cursor.execute(sql)
        return list(cursor.fetchall()) if cursor.description is not None else []
    finally:
        cursor.close()


class _MySQL:
    @staticmethod
    def xid(gtrid: str, bqual: str) -> str:
        return f"'{gtrid}','{bqual}'"

    def start(self, conn: PhysicalConnection, gtrid: str, bqual: str) -> None:
        _execute(conn, f"XA START {self.xid(gtrid, bqual)}")

    def prepare(self, conn: PhysicalConnection, gtrid: str, bqual: str) -> None:
        xid = self.xid(gtrid, bqual)
        _execute(conn, f"XA END {xid}")
        _execute(conn, f"XA PREPARE {xid}")

    def commit_one_phase(self, conn: PhysicalConnection, gtrid: str, bqual: str) -> None:
        xid = self.xid(gtrid, bqual)
        _execute(conn, f"XA END {xid}")
        _execute(conn, f"XA COMMIT {xid} ONE PHASE")

    def finish(self, conn: PhysicalConnection, gtrid: str, bqual: str, commit: bool) -> None:
        _execute(conn, f"XA {'COMMIT' if commit else 'ROLLBACK'} {self.xid(gtrid, bqual)}")

    def abort(self, conn: PhysicalConnection, gtrid: str, bqual: str) -> None:
        """Roll back a branch that was not prepared."""
        xid = self.xid(gtrid, bqual)
        with contextlib.suppress(Exception):  # already ended when a statement failed
            _execute(conn, f"XA END {xid}")
        _execute(conn, f"XA ROLLBACK {xid}")

    def prepared(self, conn: PhysicalConnection, prefix: str) -> list[tuple[str, str]]:
        conn.set_autocommit(
            True
        )  # no local transaction around XA COMMIT/ROLLBACK of other sessions' branches
        out = []
        for row in _execute(conn, "XA RECOVER"):
            _, gtrid_length, _, data = row[0], int(row[1]), int(row[2]), row[3]
            text = data.decode() if isinstance(data, bytes | bytearray) else str(data)
            gtrid, bqual = text[:gtrid_length], text[gtrid_length:]
            if gtrid.startswith(prefix):
                out.append((gtrid, bqual))
        return out


class _PostgreSQL:
    @staticmethod
    def gid(gtrid: str, bqual: str) -> str:
        return f"{gtrid}.{bqual}"

    def start(self, conn: PhysicalConnection, gtrid: str, bqual: str) -> None:
        return None  # the driver begins the transaction at the first statement

    def prepare(self, conn: PhysicalConnection, gtrid: str, bqual: str) -> None:
        _execute(conn, f"PREPARE TRANSACTION '{self.gid(gtrid, bqual)}'")
        # The server ended the transaction; reset the driver's idea of it (a warning, no error).
        conn.dbapi.rollback()

    def commit_one_phase(self, conn: PhysicalConnection, gtrid: str, bqual: str) -> None:
        conn.dbapi.commit()

    def finish(self, conn: PhysicalConnection, gtrid: str, bqual: str, commit: bool) -> None:
        self._outside(conn, f"{'COMMIT' if commit else 'ROLLBACK'} PREPARED '{self.gid(gtrid, bqual)}'")

    def abort(self, conn: PhysicalConnection, gtrid: str, bqual: str) -> None:
        conn.dbapi.rollback()

    @staticmethod
    def _outside(conn: PhysicalConnection, sql: str) -> None:
        was = conn.autocommit
        conn.set_autocommit(True)  # COMMIT PREPARED cannot run inside a transaction block
        try:
            _execute(conn, sql)
        finally:
            conn.set_autocommit(was)

    def prepared(self, conn: PhysicalConnection, prefix: str) -> list[tuple[str, str]]:
        conn.set_autocommit(True)
        rows = _execute(conn, "SELECT gid FROM pg_prepared_xacts WHERE database = current_database()")
        out = []
        for (gid,) in rows:
            gtrid, _, bqual = str(gid).rpartition(".")
            if gtrid.startswith(prefix):
                out.append((gtrid, bqual))
        return out


def _server(conn: PhysicalConnection) -> _MySQL | _PostgreSQL:
    return _MySQL() if conn.pool.url.family == "mysql" else _PostgreSQL()


# --- the coordinator ----------------------------------------------------------------------------


class XATransaction:
    def __init__(self, coordinator: XATransactions, gtrid: str) -> None:
        self.coordinator = coordinator
        self.gtrid = gtrid
        self.branches: dict[int, str] = {}  # id(conn) -> bqual

    def enlist(self, conn: PhysicalConnection) -> None:
        bqual = str(len(self.branches))
        _server(conn).start(conn, self.gtrid, bqual)
        self.branches[id(conn)] = bqual

    def _bqual(self, conn: PhysicalConnection) -> str:
        return self.branches[id(conn)]

    def commit(self, connections: Sequence[PhysicalConnection]) -> Sequence[PhysicalConnection]:
        branches = [c for c in connections if id(c) in self.branches]
        if not branches:
            return ()
        if len(branches) == 1:
            conn = branches[0]
            _server(conn).commit_one_phase(conn, self.gtrid, self._bqual(conn))
            return ()
        prepared: list[PhysicalConnection] = []
        try:
            for conn in branches:
                self.coordinator.before_prepare(conn)
                _server(conn).prepare(conn, self.gtrid, self._bqual(conn))
                prepared.append(conn)
        except BaseException:
            self._roll_back(branches, prepared)
            raise
        self.coordinator.log.decide(self.gtrid, [c.pool.name for c in branches])
        self.coordinator.after_decision(self.gtrid)
        failed: list[PhysicalConnection] = []
        for conn in branches:
            try:
                _server(conn).finish(conn, self.gtrid, self._bqual(conn), commit=True)
                self.coordinator.after_branch_commit(conn)
            except Exception:
                log.exception(
                    "XA %s: COMMIT of the prepared branch on %s failed; the transaction is committed and "
                    "the branch will be committed by recovery",
                    self.gtrid,
                    conn.pool.name,
                )
                failed.append(conn)
        if failed:
            self.coordinator.retry_later(self.gtrid, [c.pool for c in failed])
        else:
            self.coordinator.log.done(self.gtrid)
        return failed

    def _roll_back(
        self, branches: Sequence[PhysicalConnection], prepared: Sequence[PhysicalConnection]
    ) -> None:
        for conn in branches:
            try:
                if conn in prepared:
                    _server(conn).finish(conn, self.gtrid, self._bqual(conn), commit=False)
                else:
                    _server(conn).abort(conn, self.gtrid, self._bqual(conn))
            except Exception:
                log.warning(
                    "XA %s: rolling back the branch on %s failed", self.gtrid, conn.pool.name, exc_info=True
                )

    def rollback(self, connections: Sequence[PhysicalConnection]) -> None:
        first: BaseException | None = None
        for conn in connections:
            if id(conn) not in self.branches:
                continue
            try:
                _server(conn).abort(conn, self.gtrid, self._bqual(conn))
            except BaseException as e:
                first = first or e
        if first is not None:
            raise first


class XATransactions:
    """The ``xa`` coordinator of one VirtualDatabase (one per engine, kept across rule updates)."""

    name = "xa"

    def __init__(self, database: str, log_dir: str | os.PathLike[str] | None = None) -> None:
        directory = Path(log_dir) if log_dir is not None else default_log_dir()
        try:
            self.log = TransactionLog(directory, database)
        except OSError as e:
            raise ConfigurationError(f"XA transaction log in {directory}: {e}") from None
        self.database = database
        self._counter = itertools.count(1)
        self._recover_lock = threading.Lock()
        self._retry: dict[str, list[EndpointPool]] = {}
        self._pools: Mapping[str, EndpointPool] = {}
        self.recovered = False

    @property
    def prefix(self) -> str:
        return f"os.{self.log.owner}."

    def attach(self, pools: Mapping[str, EndpointPool], *, recover_now: bool) -> None:
        self._pools = dict(pools)
        if recover_now and not self.recovered:
            self.recover(self._pools)

    def begin(self) -> XATransaction:
        if not self.recovered and self._pools:  # the async engine recovers at its first transaction
            self.recover(self._pools)
        elif self._retry:
            with self._recover_lock:
                self._retry_pending()
        return XATransaction(self, f"{self.prefix}{next(self._counter)}")

    # Seams a test (or a crash) can act at.
    def before_prepare(self, conn: PhysicalConnection) -> None:
        return None

    def after_decision(self, gtrid: str) -> None:
        return None

    def after_branch_commit(self, conn: PhysicalConnection) -> None:
        return None

    def retry_later(self, gtrid: str, pools: Iterable[EndpointPool]) -> None:
        with self._recover_lock:
            self._retry[gtrid] = list(pools)
            self._retry_pending()

    def _retry_pending(self) -> None:
        """Commit the branches whose phase two failed, from new connections (a pooled one may be
        as dead as the one that failed: each pool gets a few tries)."""
        for gtrid, pools in list(self._retry.items()):
            left = [pool for pool in pools if not self._commit_prepared(pool, gtrid)]
            if left:
                self._retry[gtrid] = left
            else:
                del self._retry[gtrid]
                self.log.done(gtrid)

    @staticmethod
    def _commit_prepared(pool: EndpointPool, gtrid: str, attempts: int = 3) -> bool:
        for _ in range(attempts):
            try:
                conn = pool.acquire()
            except Exception:
                return False
            try:
                server = _server(conn)
                for found, bqual in server.prepared(conn, gtrid):
                    if found == gtrid:
                        server.finish(conn, gtrid, bqual, commit=True)
            except Exception:
                pool.release(conn, broken=True)
                continue
            pool.release(conn)
            return True
        return False

    def recover(self, pools: Mapping[str, EndpointPool]) -> dict[str, int]:
        """Resolve the prepared branches of dead owners (their logs) on every pool; returns counts."""
        counts = {"committed": 0, "rolled_back": 0}
        with self._recover_lock:
            self.recovered = True
            if self._retry:
                self._retry_pending()
            for path in self.log.orphans():
                owner = path.name.split(".")[-2]
                decided = read_decisions(path)
                complete = True
                for pool in pools.values():
                    try:
                        done = self._recover_pool(pool, f"os.{owner}.", decided)
                    except Exception:
                        log.warning(
                            "XA recovery of %s on %s failed; will retry", path.name, pool.name, exc_info=True
                        )
                        complete = False
                        continue
                    counts["committed"] += done[0]
                    counts["rolled_back"] += done[1]
                if complete:
                    with contextlib.suppress(OSError):
                        path.unlink()
        if counts["committed"] or counts["rolled_back"]:
            log.warning(
                "XA recovery for %s: committed %d and rolled back %d prepared branches left by a stopped "
                "process",
                self.database,
                counts["committed"],
                counts["rolled_back"],
            )
        return counts

    @staticmethod
    def _recover_pool(pool: EndpointPool, prefix: str, decided: set[str]) -> tuple[int, int]:
        conn = pool.acquire()
        broken = False
        committed = rolled_back = 0
        try:
            server = _server(conn)
            for gtrid, bqual in server.prepared(conn, prefix):
                commit = gtrid in decided
                server.finish(conn, gtrid, bqual, commit=commit)
                if commit:
                    committed += 1
                else:
                    rolled_back += 1
        except BaseException:
            broken = True
            raise
        finally:
            pool.release(conn, broken=broken)
        return committed, rolled_back

    def close(self) -> None:
        self.log.close()

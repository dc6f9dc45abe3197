"""How a transaction that touched several data sources ends (DistributedTransaction).

A :class:`Coordinator` starts one :class:`Transaction` per virtual transaction; every physical
connection the transaction holds is *enlisted* when it is opened, and the transaction commits or
rolls back all of them.

* ``local`` (the default, ShardingSphere's LOCAL): one transaction per data source, committed
  in the order the sources were first used. A failure while committing rolls back the sources not
  yet committed and re-raises; sources already committed stay committed (the documented failure
  window of local transactions).
* ``xa``: two-phase commit with each server's own XA support (MariaDB/MySQL ``XA START/END/
  PREPARE/COMMIT``, PostgreSQL ``PREPARE TRANSACTION`` / ``COMMIT PREPARED``): every branch is
  prepared, the decision is written (fsync) to a transaction log on disk, then every branch is
  committed. A branch that fails to prepare rolls all of them back. Branches left prepared by a
  process that died are resolved by the next engine of the same VirtualDatabase that starts with
  the same log directory: committed when the log holds the decision, rolled back otherwise
  (presumed abort). A transaction with one branch commits in one phase. See :mod:`.xa`.
* ``base`` (Seata AT) is accepted in the rules and refused when a transaction starts: there is no
  maintained Python client for a Seata server.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Protocol

from opensergo.database.errors import ConfigurationError, UnsupportedStatementError
from opensergo.database.pool import EndpointPool, PhysicalConnection
from opensergo.spec.database import DistributedTransaction

__all__ = ["Coordinator", "LocalTransactions", "Transaction", "coordinator_for"]

log = logging.getLogger("opensergo.database")


class Transaction(Protocol):
    def enlist(self, conn: PhysicalConnection) -> None:
        """``conn`` joins the transaction (before any statement runs on it)."""

    def commit(self, connections: Sequence[PhysicalConnection]) -> Sequence[PhysicalConnection]:
        """Commit every connection; returns those that broke (to be discarded) without raising
        when the outcome is nevertheless decided (XA phase two)."""

    def rollback(self, connections: Sequence[PhysicalConnection]) -> None: ...


class Coordinator(Protocol):
    name: str

    def begin(self) -> Transaction: ...

    def attach(self, pools: Mapping[str, EndpointPool], *, recover_now: bool) -> None:
        """The data sources of the current rules (XA: where recovery looks)."""

    def close(self) -> None: ...


class LocalTransaction:
    def enlist(self, conn: PhysicalConnection) -> None:
        return None

    def commit(self, connections: Sequence[PhysicalConnection]) -> Sequence[PhysicalConnection]:
        for i, conn in enumerate(connections):
            try:
                conn.dbapi.commit()
            except BaseException:
                if i:
                    log.error(
                        "commit failed on %s after %s committed (local transaction): partial commit",
                        conn.pool.name,
                        ", ".join(c.pool.name for c in connections[:i]),
                    )
                self.rollback(connections[i + 1 :])
                raise
        return ()

    def rollback(self, connections: Sequence[PhysicalConnection]) -> None:
        first: BaseException | None = None
        for conn in connections:
            try:
                conn.dbapi.rollback()
            except BaseException as e:  # roll back the others before raising
                first = first or e
        if first is not None:
            raise first


class LocalTransactions:
    name = "local"

    def begin(self) -> Transaction:
        return LocalTransaction()

    def attach(self, pools: Mapping[str, EndpointPool], *, recover_now: bool) -> None:
        return None

    def close(self) -> None:
        return None


class _RefusedTransaction(LocalTransaction):
    def enlist(self, conn: PhysicalConnection) -> None:
        raise UnsupportedStatementError(
            "DistributedTransaction defaultType base (Seata AT) is not supported by the Python SDK: there is "
            "no maintained Python client for a Seata server. Use defaultType xa or local"
        )


class BaseTransactions(LocalTransactions):
    """``base``: accepted in the rules, refused when a transaction starts (nothing is sent)."""

    name = "base"

    def begin(self) -> Transaction:
        return _RefusedTransaction()


def coordinator_for(obj: DistributedTransaction | None, database: str, log_dir: str | None) -> Coordinator:
    """The coordinator of a VirtualDatabase's DistributedTransaction (``local`` without one)."""
    if obj is None:
        return LocalTransactions()
    kind = obj.spec.transaction.defaultType.value
    if kind == "local":
        return LocalTransactions()
    if kind == "base":
        return BaseTransactions()
    if kind == "xa":
        from opensergo.database.xa import XATransactions

        return XATransactions(database, log_dir)
    raise ConfigurationError(f"DistributedTransaction {obj.name!r}: unknown defaultType {kind!r}")

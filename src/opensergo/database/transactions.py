"""How a transaction that touched several data sources ends (DistributedTransaction).

``local`` (the default, as ShardingSphere's LOCAL): one transaction per data source, committed in
the order the sources were first written. A failure while committing rolls back the sources not
yet committed and re-raises; sources already committed stay committed (the documented failure
window of local transactions). With one data source, which is the common case under read/write
splitting and shadow routing, this is an ordinary transaction.

``xa`` and ``base`` plug in here as other coordinators (not implemented yet).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

from opensergo.database.errors import ConfigurationError
from opensergo.database.pool import PhysicalConnection
from opensergo.spec.database import DistributedTransaction

__all__ = ["Coordinator", "LocalTransactions", "coordinator_for"]

log = logging.getLogger("opensergo.database")


class Coordinator(Protocol):
    def commit(self, connections: Sequence[PhysicalConnection]) -> None: ...

    def rollback(self, connections: Sequence[PhysicalConnection]) -> None: ...


class LocalTransactions:
    name = "local"

    def commit(self, connections: Sequence[PhysicalConnection]) -> None:
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

    def rollback(self, connections: Sequence[PhysicalConnection]) -> None:
        first: BaseException | None = None
        for conn in connections:
            try:
                conn.dbapi.rollback()
            except BaseException as e:  # roll back the others before raising
                first = first or e
        if first is not None:
            raise first


def coordinator_for(obj: DistributedTransaction | None) -> Coordinator:
    if obj is None or obj.spec.transaction.defaultType.value == "local":
        return LocalTransactions()
    kind = obj.spec.transaction.defaultType.value
    raise ConfigurationError(
        f"DistributedTransaction {obj.name!r}: defaultType {kind!r} is not supported yet (only local)"
    )

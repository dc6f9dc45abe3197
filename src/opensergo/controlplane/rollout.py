"""The rollout status writer: on a store with a status subresource (Kubernetes), every object's
``status`` says how far its current version got, so ``kubectl get`` shows it::

    status: {observedVersion: 12, acked: 3, nacked: 0, pending: 1}

The counts are per (namespace, app, kind) group, over the connected clients of every replica as
of the last status exchange. One replica writes (else they would overwrite each other's
counts): the replica leader of :class:`~opensergo.controlplane.replicas.ReplicaStatus`.
"""

from __future__ import annotations

import asyncio
import logging

from opensergo.controlplane.readmodels import Group, merge_clients, rollout_counts
from opensergo.controlplane.replicas import ReplicaStatus
from opensergo.controlplane.snapshots import SnapshotCache
from opensergo.controlplane.store.base import Store

log = logging.getLogger(__name__)

_NONE = {"acked": 0, "nacked": 0, "pending": 0}


class RolloutStatusWriter:
    def __init__(self, store: Store, snapshots: SnapshotCache, replicas: ReplicaStatus) -> None:
        self.store = store
        self.snapshots = snapshots
        self.replicas = replicas
        # What this replica last wrote per object, so that only changes are written.
        self._written: dict[tuple[str, str, str], dict[str, int]] = {}

    def counts(self) -> dict[Group, dict[str, int]]:
        """Per group: the clients that ACKed / NACKed / have not yet answered its current version."""
        replicas = self.replicas
        clients = merge_clients(replicas.transport, replicas.replica_id, replicas.documents)
        return rollout_counts(clients, self.snapshots)

    async def run(self, period: float = 2.0) -> None:
        """Write every ``period`` seconds while this replica leads, until cancelled."""
        while True:
            await asyncio.sleep(period)
            if not self.replicas.is_leader():
                self._written.clear()  # if this replica takes over, it writes everything again
                continue
            try:
                await self.write()
            except Exception as err:
                log.warning("cannot write rollout status: %s", err)

    async def write(self) -> None:
        """Bring every object's status to its group's counts (objects already there are skipped)."""
        counts = self.counts()
        for snapshot in self.snapshots.groups():
            key = snapshot.key
            status = {"observedVersion": snapshot.version, **counts.get(key, _NONE)}
            for resource in snapshot.resources:
                okey = (key.kind, key.namespace, resource.name)
                if self._written.get(okey) != status:
                    await self.store.set_status(key.kind, key.namespace, resource.name, status)
                    self._written[okey] = status

"""What the replicas sharing one store know of each other.

Every replica publishes a status document through the store about once a second: its gRPC
address and its clients with their ACK state. From the documents of every live replica it learns
which replicas are alive and where (token-service key ownership, instance expiry), and what they
know of their clients (clients and rollout views, the Kubernetes status writer).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from opensergo.controlplane.store.base import Store
from opensergo.controlplane.tokens import Key, rendezvous_owner
from opensergo.controlplane.transport import TransportService

log = logging.getLogger(__name__)

STATUS_CLIENTS_MAX = 500  # clients published in full per replica status document


class ReplicaStatus:
    """This replica's status, published to the others, and theirs as last read.

    With a store that is not ``shared`` nothing is published: the replica is alone, and
    :attr:`peers` and :attr:`documents` stay empty."""

    def __init__(
        self, store: Store, transport: TransportService, replica_id: str, advertise: Callable[[], str]
    ) -> None:
        self.store = store
        self.transport = transport
        self.replica_id = replica_id
        self._advertise = advertise  # host:port of this replica's gRPC port, known once it listens
        self.peers: dict[str, str] = {}  # live replica id -> gRPC address (this one included)
        self.documents: dict[str, dict[str, Any]] = {}  # every live replica's last status document

    def live_ids(self) -> set[str]:
        return set(self.peers)

    async def run(self, period: float = 1.0) -> None:
        """Publish and read the documents every ``period`` seconds, until cancelled."""
        while True:
            try:
                await self.exchange(ttl=max(5.0, 5 * period))
            except Exception as err:
                log.warning("cannot publish replica status: %s", err)
            await asyncio.sleep(period)

    async def exchange(self, ttl: float) -> None:
        """Publish this replica's document once, then read every live replica's."""
        streams = self.transport.clients(include_disconnected=False)
        # etcd refuses requests over 1.5 MiB and a ConfigMap holds 1 MiB: past a few hundred
        # clients the other replicas see a sample, never a failed write (which would also hide
        # this replica's liveness and token-service ownership).
        clients = [c.to_dict() for c in streams[:STATUS_CLIENTS_MAX]]
        document = {"clients": clients, "clientsTotal": len(streams), "grpc": self._advertise()}
        await self.store.publish_status(self.replica_id, document, ttl=ttl)
        status = self.documents = await self.store.read_status()
        self.peers = {rid: str(doc.get("grpc", "")) for rid, doc in status.items() if doc.get("grpc")}

    def token_owner(self, key: Key) -> str | None:
        """The gRPC address of the replica owning a token-service ``key``; None when it is this one."""
        owner = rendezvous_owner(key, self.peers)
        if owner is None or owner == self.replica_id:
            return None
        return self.peers[owner]

    def is_leader(self) -> bool:
        """True on one replica at a time: the live replica with the lowest id (this one when alone)."""
        return min({self.replica_id, *self.peers}) == self.replica_id

"""The Store protocol: versioned objects, a global revision, and a replayable watch.

Every write bumps one store-wide revision (like etcd and the Kubernetes API). An object's
``metadata.resourceVersion`` is the revision of its last write, and watch events carry the
revision of the write that produced them, so versions only ever increase, across restarts too.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol


class EventType(StrEnum):
    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"


ObjectKey = tuple[str, str, str]  # (full kind, namespace, name)


@dataclass(frozen=True)
class StoredObject:
    """An object as persisted. ``body`` is the full YAML form including metadata."""

    kind: str  # full kind name, "group/version/Kind"
    namespace: str
    name: str
    body: dict[str, Any]
    revision: int

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.kind, self.namespace, self.name)


@dataclass(frozen=True)
class WatchEvent:
    """A change. For DELETED, ``object`` is the last state before the deletion."""

    type: EventType
    object: StoredObject
    revision: int


@dataclass(frozen=True)
class Bookmark:
    """A watch marker: every event up to ``revision`` has been delivered (as in Kubernetes)."""

    revision: int


class NotFoundError(KeyError):
    """The object does not exist."""


class ConflictError(ValueError):
    """Create of an existing object, or a write whose expected revision is stale."""


class CompactedError(Exception):
    """A watch asked to start before the oldest change the store still keeps (Kubernetes: 410)."""


class InvalidObjectError(ValueError):
    """The store itself refused the object (e.g. the Kubernetes API server: a name that is not a
    DNS subdomain, or its CRD schema)."""


WatchEvents = list[WatchEvent]  # spelled out here: inside Store, `list` is the method


@dataclass(frozen=True)
class Put:
    """One write of a batch (:meth:`Store.apply_batch`): create or replace, unconditionally."""

    kind: str
    namespace: str
    name: str
    body: dict[str, Any]
    ttl: float | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.kind, self.namespace, self.name)


@dataclass(frozen=True)
class Delete:
    """One deletion of a batch; deleting an object that does not exist is no error (None).
    With ``revision``, only the object at that revision is deleted (None when it changed since)."""

    kind: str
    namespace: str
    name: str
    revision: int | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.kind, self.namespace, self.name)

    def deletes(self, current: StoredObject | None) -> StoredObject | None:
        """What this deletes of the object's ``current`` state: all of it, or nothing when it is
        gone or no longer at ``revision``."""
        if current is None or self.revision not in (None, current.revision):
            return None
        return current


BatchOp = Put | Delete
BatchResults = list[StoredObject | None]


class Store(Protocol):
    """Async storage of OpenSergo objects. Bodies are validated before they get here.

    What replicas share through a store is declared here, never probed for: ``shared`` says
    whether other replicas can see this one (:meth:`publish_status` / :meth:`read_status` carry
    their status documents), and ``status_subresource`` whether objects carry a status that the
    control plane keeps at their rollout counts (:meth:`set_status`).
    """

    # True when put(ttl=...) expires objects by itself (etcd leases); else the caller expires them.
    supports_ttl: bool
    # True when several control-plane replicas can share this store (they then publish their
    # status to each other, split token-service keys, and elect one rollout-status writer).
    shared: bool
    # True when objects have a status subresource (Kubernetes): set_status writes it.
    status_subresource: bool
    # The most operations apply_batch takes at once.
    max_batch: int

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    @property
    def revision(self) -> int:
        """The revision of the last write (0 for an empty store)."""
        ...

    async def get(self, kind: str, namespace: str, name: str) -> StoredObject | None: ...

    async def list(self, kind: str | None = None, namespace: str | None = None) -> list[StoredObject]: ...

    async def put(
        self,
        kind: str,
        namespace: str,
        name: str,
        body: dict[str, Any],
        *,
        expected_revision: int | None = None,
        create_only: bool = False,
        ttl: float | None = None,
    ) -> StoredObject:
        """Create or replace. ``expected_revision`` enables optimistic concurrency; ``ttl`` makes
        the object expire unless refreshed (only where ``supports_ttl``)."""
        ...

    async def apply_batch(self, ops: Sequence[BatchOp]) -> BatchResults:
        """Apply many writes at once, atomically where the store can (one SQLite transaction,
        one etcd transaction): all are durable when it returns, or none and it raises. A key
        appears at most once per batch. Results in order: the stored object of a Put, the last
        state of a Delete (None when there was nothing to delete)."""
        ...

    async def refresh(self, kind: str, namespace: str, name: str) -> bool:
        """Extend a TTL object's life; False when it no longer exists."""
        ...

    async def delete(
        self, kind: str, namespace: str, name: str, *, expected_revision: int | None = None
    ) -> StoredObject:
        """Delete and return the last state. Raises NotFoundError."""
        ...

    def watch(self, since_revision: int = 0) -> AsyncIterator[WatchEvent | Bookmark]:
        """Every event with a revision greater than ``since_revision``, then live events, in order.

        A Bookmark follows the replay of past events, and again after every reconnect, so a
        consumer knows when it has caught up even if nothing changed.
        """
        ...

    async def history(self, kind: str, namespace: str, name: str) -> WatchEvents:
        """Every recorded change of one object, oldest first."""
        ...

    async def publish_status(self, replica: str, document: dict[str, Any], ttl: float) -> None:
        """Share a replica's status (e.g. clients' ACK state) with the other replicas."""
        ...

    async def read_status(self) -> dict[str, dict[str, Any]]:
        """Every live replica's last published status, by replica id."""
        ...

    async def set_status(self, kind: str, namespace: str, name: str, status: dict[str, Any]) -> StoredObject:
        """Merge ``status`` into the object's status subresource (only where
        ``status_subresource``; elsewhere NotImplementedError). Raises NotFoundError."""
        ...

    async def compact(self, keep_per_object: int, retention: float) -> int:
        """Drop history beyond the retention: at most ``keep_per_object`` changes per object, and
        no change older than ``retention`` seconds that is not an object's current state (0: no
        age limit). Returns how many changes were dropped. A store whose history is compacted
        elsewhere (etcd's own compaction, the Kubernetes API server) only trims what it keeps."""
        ...

    async def get_or_create_value(self, name: str, value: str, ttl: float | None = None) -> str:
        """The server value stored under ``name`` (e.g. the session key); ``value`` is stored
        first when there is none, atomically, so that replicas sharing the store agree on one.
        ``ttl``: the value expires that many seconds after it was stored."""
        ...

    async def get_value(self, name: str) -> str | None:
        """The server value stored under ``name``, None when there is none (or it expired)."""
        ...


def with_server_metadata(
    body: dict[str, Any], current: StoredObject | None, namespace: str
) -> dict[str, Any]:
    """Fill the fields the server owns: uid, creationTimestamp, generation, namespace."""
    out = dict(body)
    meta = dict(out.get("metadata") or {})
    meta["namespace"] = namespace
    old_meta = current.body.get("metadata", {}) if current else {}
    meta["uid"] = old_meta.get("uid") or str(uuid.uuid4())
    meta["creationTimestamp"] = old_meta.get("creationTimestamp") or datetime.now(UTC).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    changed = current is None or current.body.get("spec") != out.get("spec")
    meta["generation"] = int(old_meta.get("generation", 0)) + (1 if changed else 0)
    meta.pop("resourceVersion", None)
    out["metadata"] = meta
    out.pop("status", None)
    return out


def with_revision(body: dict[str, Any], revision: int) -> dict[str, Any]:
    out = dict(body)
    meta = dict(out.get("metadata") or {})
    meta["resourceVersion"] = str(revision)
    out["metadata"] = meta
    return out

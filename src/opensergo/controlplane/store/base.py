"""The Store protocol: versioned objects, a global revision, and a replayable watch.

Every write bumps one store-wide revision (like etcd and the Kubernetes API). An object's
``metadata.resourceVersion`` is the revision of its last write, and watch events carry the
revision of the write that produced them, so versions only ever increase, across restarts too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol


class EventType(StrEnum):
    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"


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


class NotFoundError(KeyError):
    """The object does not exist."""


class ConflictError(ValueError):
    """Create of an existing object, or a write whose expected revision is stale."""


WatchEvents = list[WatchEvent]  # spelled out here: inside Store, `list` is the method


class Store(Protocol):
    """Async storage of OpenSergo objects. Bodies are validated before they get here."""

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
    ) -> StoredObject:
        """Create or replace. ``expected_revision`` enables optimistic concurrency."""
        ...

    async def delete(
        self, kind: str, namespace: str, name: str, *, expected_revision: int | None = None
    ) -> StoredObject:
        """Delete and return the last state. Raises NotFoundError."""
        ...

    def watch(self, since_revision: int = 0) -> AsyncIterator[WatchEvent]:
        """Every event with a revision greater than ``since_revision``, then live events, in order."""
        ...

    async def history(self, kind: str, namespace: str, name: str) -> WatchEvents:
        """Every recorded change of one object, oldest first."""
        ...

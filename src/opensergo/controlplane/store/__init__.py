"""Rule storage backends behind one async interface (see base.Store)."""

from opensergo.controlplane.store.base import (
    ConflictError,
    EventType,
    NotFoundError,
    Store,
    StoredObject,
    WatchEvent,
)

__all__ = ["ConflictError", "EventType", "NotFoundError", "Store", "StoredObject", "WatchEvent"]

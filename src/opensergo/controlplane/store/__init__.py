"""Rule storage backends behind one async interface (see base.Store)."""

from opensergo.controlplane.store.base import (
    Bookmark,
    ConflictError,
    EventType,
    NotFoundError,
    Store,
    StoredObject,
    WatchEvent,
)

__all__ = ["Bookmark", "ConflictError", "EventType", "NotFoundError", "Store", "StoredObject", "WatchEvent"]

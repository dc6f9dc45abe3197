"""Versioned state of the world per (namespace, app, kind), folded from store events.

The cache plays the role of go-control-plane's ``pkg/cache``: it knows nothing about streams.
A group's version is the store revision of the last event that changed the group, so versions
strictly increase per group, survive restarts (the store log is replayed at start) and agree
across replicas that share a store. Payloads are encoded once per (version, encoding) and the
same ``Any`` objects are shared by every stream.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from google.protobuf import any_pb2

from opensergo.common.protocol import Encoding, SubscriptionKey
from opensergo.controlplane.store.base import Bookmark, EventType, Store, WatchEvent
from opensergo.spec import codec
from opensergo.spec.base import Resource
from opensergo.spec.errors import SpecError
from opensergo.spec.loader import parse_object

log = logging.getLogger(__name__)


class EncodeError(Exception):
    """A snapshot's objects cannot be encoded (e.g. a value that does not fit its wire type).

    Only that group's pushes fail: each subscribed stream gets a NACK naming the object, and
    the error is logged once per snapshot and encoding."""


@dataclass
class Snapshot:
    key: SubscriptionKey
    version: int
    resources: tuple[Resource, ...]
    # Encodes one resource; the cache passes its per-object memo, so a new snapshot of a group
    # of 5,000 instances encodes the one that changed, not all 5,000.
    encode: Callable[[Resource, Encoding], any_pb2.Any] = field(
        default=lambda r, e: _encode(r, e), repr=False
    )
    _encoded: dict[Encoding, tuple[any_pb2.Any, ...]] = field(default_factory=dict, repr=False)
    _memo: dict[object, bytes] = field(default_factory=dict, repr=False)
    _failed: dict[Encoding, str] = field(default_factory=dict, repr=False)

    def encoded(self, encoding: Encoding) -> tuple[any_pb2.Any, ...]:
        """The payload, built on first use and shared afterwards; EncodeError when it cannot be."""
        cached = self._encoded.get(encoding)
        if cached is None:
            failure = self._failed.get(encoding)
            if failure is not None:
                raise EncodeError(failure)
            try:
                encode = self.encode
                cached = tuple(encode(r, encoding) for r in self.resources)
            except Exception as err:
                failure = self._failed[encoding] = _encode_failure(self, encoding, err)
                raise EncodeError(failure) from None
            self._encoded[encoding] = cached
        return cached

    def memo(self, key: object, build: Callable[[], bytes]) -> bytes:
        """Bytes derived from this snapshot (e.g. a serialized push), built once per key."""
        value = self._memo.get(key)
        if value is None:
            value = self._memo[key] = build()
        return value


def _encode_failure(snapshot: Snapshot, encoding: Encoding, err: Exception) -> str:
    """Which object failed and why; logged here, once per snapshot and encoding."""
    culprit = ""
    for resource in snapshot.resources:
        try:
            _encode(resource, encoding)
        except Exception:
            culprit = f" ({resource.metadata.name})"
            break
    key = snapshot.key
    message = f"cannot encode {key.kind}{culprit} for {key.namespace}/{key.app}: {err}"
    log.error("version %d, %s encoding: %s", snapshot.version, encoding.value, message)
    return message


def _encode(resource: Resource, encoding: Encoding) -> any_pb2.Any:
    if encoding is Encoding.UPSTREAM:
        packed = codec.encode_upstream(resource)
        if packed is not None:
            return packed
    return codec.encode_native(resource)


ObjectKey = tuple[str, str, str]  # (kind, namespace, name)
Listener = Callable[[Snapshot], None]


class SnapshotCache:
    """Folds store events into per-group snapshots and tells listeners about changed groups."""

    def __init__(self) -> None:
        self._objects: dict[ObjectKey, Resource] = {}
        self._members: dict[SubscriptionKey, dict[str, Resource]] = {}
        self._snapshots: dict[SubscriptionKey, Snapshot] = {}
        # Each current object's encoded forms, by id() of its Resource (held, so ids stay unique).
        self._any: dict[int, tuple[Resource, dict[Encoding, any_pb2.Any]]] = {}
        self._listeners: list[Listener] = []
        self.revision = 0
        self.invalid: dict[ObjectKey, str] = {}

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def get(self, key: SubscriptionKey) -> Snapshot:
        """The group's snapshot; an empty one at version 0 for a group never seen."""
        snapshot = self._snapshots.get(key)
        if snapshot is None:
            snapshot = Snapshot(key, 0, ())
        return snapshot

    def objects(self, kind: str) -> list[Resource]:
        """Every current object of one kind, whatever its app."""
        return [r for (k, _, _), r in sorted(self._objects.items()) if k == kind]

    def named(self, kind: str) -> list[tuple[str, str, Resource]]:
        """Every current object of one kind as (namespace, name, object), in that order."""
        return [(ns, name, r) for (k, ns, name), r in sorted(self._objects.items()) if k == kind]

    def groups(self) -> list[Snapshot]:
        return [self._snapshots[k] for k in sorted(self._snapshots)]

    def apply(self, event: WatchEvent) -> list[Snapshot]:
        """Fold one event; returns the snapshots that changed (already sent to listeners)."""
        return self._publish(dict.fromkeys(self._fold(event), event.revision))

    def _fold(self, event: WatchEvent) -> set[SubscriptionKey]:
        """Apply one event to the objects; returns the groups it touched."""
        obj = event.object
        okey: ObjectKey = (obj.kind, obj.namespace, obj.name)
        old = self._objects.pop(okey, None)
        if old is not None:
            self._any.pop(id(old), None)
        self.invalid.pop(okey, None)
        new: Resource | None = None
        if event.type != EventType.DELETED:
            try:
                new = parse_object(obj.body)
            except SpecError as err:
                # Stored before a validation rule existed: keep serving the rest, surface it.
                self.invalid[okey] = str(err)
                log.error("ignoring invalid stored object %s %s/%s: %s", *okey, err)
        touched: set[SubscriptionKey] = set()
        if old is not None and old.app:
            gkey = SubscriptionKey(obj.namespace, old.app, obj.kind)
            self._members.get(gkey, {}).pop(obj.name, None)
            touched.add(gkey)
        if new is not None:
            self._objects[okey] = new
            self._any[id(new)] = (new, {})
            if new.app:
                gkey = SubscriptionKey(obj.namespace, new.app, obj.kind)
                self._members.setdefault(gkey, {})[obj.name] = new
                touched.add(gkey)
        self.revision = max(self.revision, event.revision)
        return touched

    def _encode_once(self, resource: Resource, encoding: Encoding) -> any_pb2.Any:
        """A current object's encoded form, built once per object version and encoding and
        shared by every snapshot that holds it (Any messages are not modified once built)."""
        entry = self._any.get(id(resource))
        if entry is None or entry[0] is not resource:
            return _encode(resource, encoding)  # no longer current: not worth keeping
        packed = entry[1].get(encoding)
        if packed is None:
            packed = entry[1][encoding] = _encode(resource, encoding)
        return packed

    def _publish(self, groups: dict[SubscriptionKey, int]) -> list[Snapshot]:
        """New snapshots of ``groups`` (group -> revision of its last change), to the listeners."""
        changed = []
        for gkey in sorted(groups):
            members = self._members.get(gkey, {})
            resources = tuple(members[n] for n in sorted(members))
            snapshot = Snapshot(gkey, groups[gkey], resources, self._encode_once)
            self._snapshots[gkey] = snapshot
            changed.append(snapshot)
        for snapshot in changed:
            for listener in self._listeners:
                listener(snapshot)
        return changed

    async def follow(self, store: Store, ready: asyncio.Event | None = None) -> None:
        """Replay the store's log, set ``ready`` at the first bookmark, then follow live events.

        Events that arrive together (a batch of registrations, a replay) are folded first and
        each touched group gets one new snapshot, published once the watch has nothing more
        ready: a burst of 1,000 instances of one app is one push per stream, not 1,000, and
        one sort of the group, not 1,000. A batch written at one store revision (etcd) is
        delivered in one watch response, so no group is published halfway through it."""
        loop = asyncio.get_running_loop()
        pending: dict[SubscriptionKey, int] = {}
        scheduled: asyncio.Handle | None = None

        def flush() -> None:
            nonlocal scheduled
            scheduled = None
            groups = dict(pending)
            pending.clear()
            self._publish(groups)

        try:
            async for event in store.watch(self.revision):
                if isinstance(event, Bookmark):
                    if scheduled is not None:
                        scheduled.cancel()
                        flush()
                    self.revision = max(self.revision, event.revision)
                    if ready is not None:
                        ready.set()
                    continue
                for gkey in self._fold(event):
                    pending[gkey] = event.revision
                if scheduled is None and pending:
                    scheduled = loop.call_soon(flush)
        finally:
            if scheduled is not None:
                scheduled.cancel()

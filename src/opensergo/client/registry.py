"""Who is subscribed to what: the subscription registry, and the push handler's hooks.

:class:`SubscriptionRegistry` keeps the subscribers of each (namespace, app, kind) key and makes
the requests that follow from them: it says when a key got its first subscriber (a SUBSCRIBE is
due) or lost its last one (an UNSUBSCRIBE), and gives a SUBSCRIBE per key whenever a stream opens. It is
what :class:`~opensergo.client.subscriber.PushHandler` asks about a push (the kind, the callbacks,
which request a control-plane NACK refers to) and tells about applied data (:meth:`persist`).
It never sends anything itself: the client puts its requests on the stream.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable, Sequence

from opensergo.client._spec import KindLike, kind_by_full_kind
from opensergo.client.cache import RuleCache
from opensergo.client.snapshot import SnapshotWriter
from opensergo.client.subscriber import Callback, subscribe_request, unsubscribe_request
from opensergo.common.protocol import SubscriptionKey
from opensergo.proto.transport.v1 import protocol_pb2 as pb
from opensergo.spec.base import Resource

__all__ = ["Subscription", "SubscriptionRegistry"]

_log = logging.getLogger("opensergo.client")

_MAX_TRACKED_REQUESTS = 1024


class Subscription:
    """One subscriber's interest in (namespace, app, kind). Compared by identity."""

    def __init__(
        self,
        key: SubscriptionKey,
        kind: KindLike,
        callback: Callback | None,
        *,
        cache: RuleCache,
        unsubscribe: Callable[[Subscription], None],
    ) -> None:
        self.key = key
        self.kind_info = kind
        self.callback = callback
        self.active = True
        self._cache = cache
        self._unsubscribe = unsubscribe

    @property
    def kind(self) -> str:
        """The full kind name, ``group/version/Kind``."""
        return self.key.kind

    @property
    def namespace(self) -> str:
        return self.key.namespace

    @property
    def app(self) -> str:
        return self.key.app

    @property
    def resources(self) -> list[Resource]:
        """The currently cached resources of this key."""
        entry = self._cache.entry(self.key)
        return list(entry.items) if entry is not None else []

    @property
    def version(self) -> int | None:
        """The cached version of this key, or None."""
        entry = self._cache.entry(self.key)
        return entry.version if entry is not None else None

    def deliver_cached(self) -> None:
        """Call the callback with the cached data of the key, if any (snapshot or earlier push)."""
        if self.callback is None:
            return
        entry = self._cache.entry(self.key)
        if entry is None:
            return
        try:
            self.callback(list(entry.items), entry.version)
        except Exception:
            _log.exception("subscriber callback for %s failed on cached data", self)

    def unsubscribe(self) -> None:
        self._unsubscribe(self)

    def __repr__(self) -> str:
        state = "active" if self.active else "closed"
        return f"<Subscription {self.key.namespace}/{self.key.app} {self.key.kind} {state}>"


class SubscriptionRegistry:
    """The subscribers per key, the requests they imply, and the PushHandler hooks.

    ``labels`` go into every request's target (the encoding label); ``snapshot`` is written after
    every applied push (None: no on-disk snapshot).
    """

    def __init__(
        self,
        *,
        identifier: str,
        labels: Sequence[tuple[str, str]] = (),
        snapshot: SnapshotWriter | None = None,
    ) -> None:
        self._identifier = identifier
        self._labels = list(labels)
        self._snapshot = snapshot
        self._lock = threading.RLock()
        self._subs: dict[SubscriptionKey, list[Subscription]] = {}
        self._kinds: dict[str, KindLike] = {}
        self._request_ids = itertools.count(1)
        self._request_keys: dict[str, tuple[str, SubscriptionKey]] = {}
        self.streams_opened = 0
        """How many streams asked for the subscriptions (PushHandler compares versions per stream)."""

    # -- subscribers -------------------------------------------------------------------------------
    def add(self, sub: Subscription) -> bool:
        """Register ``sub``; True when it is the first of its key (a SUBSCRIBE is due)."""
        with self._lock:
            subs = self._subs.setdefault(sub.key, [])
            subs.append(sub)
            self._kinds.setdefault(sub.key.kind, sub.kind_info)
            return len(subs) == 1

    def remove(self, sub: Subscription) -> bool:
        """Drop ``sub`` (idempotent); True when it was the last of its key (an UNSUBSCRIBE is due)."""
        with self._lock:
            sub.active = False
            subs = self._subs.get(sub.key, [])
            if sub not in subs:
                return False
            subs.remove(sub)
            if subs:
                return False
            del self._subs[sub.key]
            return True

    def subscriptions(self) -> list[Subscription]:
        with self._lock:
            return [sub for subs in self._subs.values() for sub in subs]

    def keys(self) -> list[SubscriptionKey]:
        with self._lock:
            return list(self._subs)

    def on_stream_open(self) -> list[pb.SubscribeRequest]:
        """A new stream: a SUBSCRIBE for every key (request ids of the old stream are forgotten)."""
        self.streams_opened += 1
        self._request_keys.clear()
        return [self.subscribe_request(key) for key in self.keys()]

    def subscribe_request(self, key: SubscriptionKey) -> pb.SubscribeRequest:
        rid = self._next_request_id(key, "subscribe")
        return subscribe_request(key, identifier=self._identifier, request_id=rid, labels=self._labels)

    def unsubscribe_request(self, key: SubscriptionKey) -> pb.SubscribeRequest:
        rid = self._next_request_id(key, "unsubscribe")
        return unsubscribe_request(key, identifier=self._identifier, request_id=rid, labels=self._labels)

    def _next_request_id(self, key: SubscriptionKey, what: str) -> str:
        rid = str(next(self._request_ids))
        self._request_keys[rid] = (what, key)
        while len(self._request_keys) > _MAX_TRACKED_REQUESTS:
            del self._request_keys[next(iter(self._request_keys))]
        return rid

    # -- PushHandler hooks -----------------------------------------------------------------------
    def resolve_push_kind(self, name: str) -> KindLike | None:
        with self._lock:
            known = self._kinds.get(name)
        return known if known is not None else kind_by_full_kind(name)

    def callbacks_for(self, key: SubscriptionKey) -> list[Callback]:
        with self._lock:
            return [sub.callback for sub in self._subs.get(key, ()) if sub.callback is not None]

    def persist(self) -> None:
        if self._snapshot is not None:
            self._snapshot.schedule()

    def describe_request(self, request_id: str) -> str:
        found = self._request_keys.get(request_id)
        if found is None:
            return "unknown request"
        what, key = found
        return f"{what} {key.namespace}/{key.app} {key.kind}"

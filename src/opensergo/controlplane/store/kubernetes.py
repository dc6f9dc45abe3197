"""Store on the Kubernetes API (``--store kubernetes``): objects are custom resources of the CRDs
in ``deploy/kubernetes/crds/``.

Mapping of the Store protocol (see docs/kubernetes.md):

- ``get``/``list``/``put``/``delete`` are the custom-objects REST calls of each kind's CRD
  (``/apis/<group>/<version>/namespaces/<ns>/<plural>[/<name>]``).
- Revisions are ``metadata.resourceVersion``. Kubernetes calls them opaque, but every API server
  backed by etcd uses the etcd revision, a single increasing integer; the control plane folds
  them as ints, so they are converted with ``int()``. A non-numeric resourceVersion (a storage
  other than etcd) is mapped to 0 for ordering and still passed back verbatim for concurrency.
- ``put(expected_revision=N)`` is a replace carrying ``metadata.resourceVersion: N`` (409 ->
  ConflictError); ``create_only`` is a create (409 AlreadyExists -> ConflictError); a plain put
  is create-or-replace, retried on conflicts. ``delete`` sends ``preconditions.resourceVersion``.
- ``watch`` lists every kind, replays the objects changed after ``since_revision`` (state-based:
  the API server keeps no per-object history beyond its watch cache), yields a ``Bookmark``, then
  watches each kind from its list's resourceVersion with ``allowWatchBookmarks=true``. A
  ``410 Gone`` (expired resourceVersion) re-lists that kind and emits the difference from what
  this watch had delivered as synthetic ADDED/MODIFIED/DELETED events, then a Bookmark. Broken
  connections resume from the last resourceVersion seen and are followed by a Bookmark.
- The status subresource carries the rollout state: :meth:`KubernetesStore.set_status`.
- ``supports_ttl`` is False: the metadata registry expires instances itself.
- ``publish_status``/``read_status`` use one ConfigMap per replica in the control plane's
  namespace, labelled ``opensergo.io/replica-status``, with the expiry time inside.
- ``history`` has only what this process saw (its own writes and watch events) plus, for an
  object it never saw change, its current state: Kubernetes keeps no per-object history.
  :meth:`compact` trims it (the API server compacts etcd itself).
- Server values shared by the replicas (the session key, revoked sessions) are Secrets in the
  control plane's namespace, labelled ``opensergo.io/server-value``, created once (409: another
  replica's value wins).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import os
import re
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import kubernetes_asyncio as _k8s_module

from opensergo.controlplane.store.base import (
    BatchOp,
    BatchResults,
    Bookmark,
    ConflictError,
    EventType,
    InvalidObjectError,
    NotFoundError,
    Put,
    StoredObject,
    WatchEvent,
    WatchEvents,
)
from opensergo.spec.kinds import KindInfo, all_kinds, by_full_kind

log = logging.getLogger(__name__)

k8s: Any = _k8s_module  # the client is untyped; keep mypy --strict quiet at the boundary

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
STATUS_LABEL = "opensergo.io/replica-status"
VALUE_LABEL = "opensergo.io/server-value"
DEFAULT_NAMESPACE = "opensergo-system"
_HISTORY_LIMIT = 64


def revision_of(resource_version: str | None) -> int:
    """A resourceVersion as an int (etcd revision); 0 when absent or not numeric."""
    try:
        return int(resource_version or 0)
    except ValueError:
        return 0


def _raise_if_invalid(err: Any) -> None:
    """422 from the API server: the object is invalid for Kubernetes; say why, in its words."""
    if err.status != 422:
        return
    try:
        message = json.loads(err.body)["message"]
    except (TypeError, ValueError, KeyError):
        message = str(err.body or err.reason)
    raise InvalidObjectError(message) from None


def control_plane_namespace() -> str:
    """The namespace for replica status: $POD_NAMESPACE, the service account's, or the default."""
    env = os.environ.get("POD_NAMESPACE") or os.environ.get("OPENSERGO_NAMESPACE")
    if env:
        return env
    with contextlib.suppress(OSError):
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or DEFAULT_NAMESPACE
    return DEFAULT_NAMESPACE


class _Gone(Exception):
    """The watch's resourceVersion is too old (410): re-list."""


class KubernetesStore:
    """The Store protocol on the Kubernetes API server's custom resources."""

    supports_ttl = False
    shared = True
    status_subresource = True
    max_batch = 64  # concurrent requests per batch

    def __init__(
        self,
        *,
        host: str | None = None,
        token: str | None = None,
        kubeconfig: str | None = None,
        namespace: str | None = None,
        watch_timeout: int = 300,
        kinds: tuple[KindInfo, ...] | None = None,
    ) -> None:
        """``host`` (e.g. ``http://127.0.0.1:8080``) skips config discovery; otherwise the
        in-cluster service account is used, then ``kubeconfig`` / ``$KUBECONFIG``."""
        self._host = host
        self._token = token
        self._kubeconfig = kubeconfig
        self.namespace = namespace or control_plane_namespace()
        self._watch_timeout = watch_timeout
        self._kinds = kinds or all_kinds()
        self._api_client: Any = None
        self._custom: Any = None
        self._core: Any = None
        self._revision = 0
        self._closed = False
        self._history: dict[tuple[str, str, str], deque[WatchEvent]] = defaultdict(
            lambda: deque(maxlen=_HISTORY_LIMIT)
        )
        self._deleted_at: dict[tuple[str, str, str], float] = {}  # for compact()

    # --- connection ---

    async def open(self) -> None:
        if self._api_client is None:
            configuration = k8s.client.Configuration()
            if self._host is not None:
                configuration.host = self._host
                if self._token:
                    configuration.api_key = {"authorization": f"Bearer {self._token}"}
            else:
                try:
                    k8s.config.load_incluster_config(client_configuration=configuration)
                except k8s.config.ConfigException:
                    await k8s.config.load_kube_config(
                        config_file=self._kubeconfig, client_configuration=configuration
                    )
            self._api_client = k8s.client.ApiClient(configuration)
            self._custom = k8s.client.CustomObjectsApi(self._api_client)
            self._core = k8s.client.CoreV1Api(self._api_client)
        # One list per kind: fails early when the CRDs are missing, and sets the revision.
        for info in self._kinds:
            await self._list_kind(info)

    async def close(self) -> None:
        self._closed = True
        if self._api_client is not None:
            await self._api_client.close()
            self._api_client = None

    @property
    def revision(self) -> int:
        return self._revision

    def _seen(self, revision: int) -> None:
        self._revision = max(self._revision, revision)

    # --- conversions ---

    def _stored(self, info: KindInfo, item: dict[str, Any]) -> StoredObject:
        meta = item.get("metadata") or {}
        revision = revision_of(meta.get("resourceVersion"))
        self._seen(revision)
        return StoredObject(info.full_kind, meta.get("namespace", ""), meta.get("name", ""), item, revision)

    @staticmethod
    def _request_body(info: KindInfo, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """What we send: our fields only; the API server owns uid, generation, timestamps."""
        meta = body.get("metadata") or {}
        out_meta: dict[str, Any] = {"name": name, "namespace": namespace}
        for key in ("labels", "annotations"):
            if meta.get(key):
                out_meta[key] = dict(meta[key])
        out = {k: v for k, v in body.items() if k not in ("metadata", "status")}
        out["apiVersion"] = info.api_version
        out["kind"] = info.kind
        out["metadata"] = out_meta
        return out

    def _record(self, event: WatchEvent) -> None:
        history = self._history[event.object.key]
        if not history or history[-1].revision < event.revision:
            history.append(event)
        if event.type == EventType.DELETED:
            self._deleted_at[event.object.key] = time.time()
        else:
            self._deleted_at.pop(event.object.key, None)

    async def compact(self, keep_per_object: int, retention: float) -> int:
        dropped = 0
        cutoff = time.time() - retention if retention > 0 else None
        for key, deleted_at in list(self._deleted_at.items()):
            if cutoff is not None and deleted_at < cutoff:
                dropped += len(self._history.pop(key, ()))
                del self._deleted_at[key]
        for history in self._history.values():
            while len(history) > keep_per_object:
                history.popleft()
                dropped += 1
        return dropped

    @staticmethod
    def _value_name(name: str) -> str:
        return "opensergo-value-" + hashlib.sha256(name.encode()).hexdigest()[:40]

    def _read_value(self, secret: Any) -> str | None:
        data = secret.data or {}
        annotations = secret.metadata.annotations or {}
        try:
            if float(annotations.get("opensergo.io/expires-at", "inf")) < time.time():
                return None
            return base64.b64decode(data.get("value", "")).decode()
        except ValueError:
            return None

    async def get_or_create_value(self, name: str, value: str, ttl: float | None = None) -> str:
        secret_name = self._value_name(name)
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {
                "name": secret_name,
                "namespace": self.namespace,
                "labels": {VALUE_LABEL: "true"},
                "annotations": {} if ttl is None else {"opensergo.io/expires-at": repr(time.time() + ttl)},
            },
            "data": {"value": base64.b64encode(value.encode()).decode()},
        }
        for _ in range(3):
            try:
                await self._core.create_namespaced_secret(self.namespace, body)
                return value
            except k8s.client.ApiException as err:
                if err.status != 409:
                    raise
            stored = await self.get_value(name)
            if stored is not None:
                return stored
            # Expired: replace it (the 409 came from the stale one).
            with contextlib.suppress(k8s.client.ApiException):
                await self._core.delete_namespaced_secret(secret_name, self.namespace)
        raise ConflictError(f"cannot store server value {name!r}: too much contention")

    async def get_value(self, name: str) -> str | None:
        try:
            secret = await self._core.read_namespaced_secret(self._value_name(name), self.namespace)
        except k8s.client.ApiException as err:
            if err.status == 404:
                return None
            raise
        return self._read_value(secret)

    # --- reads ---

    async def get(self, kind: str, namespace: str, name: str) -> StoredObject | None:
        info = by_full_kind(kind)
        try:
            item = await self._custom.get_namespaced_custom_object(
                info.group, info.version, namespace, info.plural, name
            )
        except k8s.client.ApiException as err:
            if err.status == 404:
                return None
            raise
        return self._stored(info, item)

    async def _list_kind(
        self, info: KindInfo, namespace: str | None = None
    ) -> tuple[list[StoredObject], int]:
        if namespace is None:
            result = await self._custom.list_cluster_custom_object(info.group, info.version, info.plural)
        else:
            result = await self._custom.list_namespaced_custom_object(
                info.group, info.version, namespace, info.plural
            )
        list_revision = revision_of((result.get("metadata") or {}).get("resourceVersion"))
        self._seen(list_revision)
        items = [self._stored(info, item) for item in result.get("items") or []]
        return items, list_revision

    async def list(self, kind: str | None = None, namespace: str | None = None) -> list[StoredObject]:
        kinds = [by_full_kind(kind)] if kind is not None else list(self._kinds)
        objects: list[StoredObject] = []
        for info in kinds:
            objects.extend((await self._list_kind(info, namespace))[0])
        return sorted(objects, key=lambda o: o.key)

    # --- writes ---

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
        info = by_full_kind(kind)
        request = self._request_body(info, namespace, name, body)
        what = f"{kind} {namespace}/{name}"
        if create_only or expected_revision == 0:
            stored = await self._create(info, namespace, request)
            if stored is None:
                raise ConflictError(f"{what} already exists")
            return stored
        if expected_revision is not None:
            stored = await self._replace(info, namespace, name, request, str(expected_revision))
            if stored is None:
                raise ConflictError(
                    f"{what} was modified or deleted: resourceVersion is not {expected_revision}"
                )
            return stored
        for _ in range(16):  # create or replace, whichever applies, until no writer races us
            current = await self.get(kind, namespace, name)
            if current is None:
                stored = await self._create(info, namespace, request)
            else:
                version = current.body["metadata"].get("resourceVersion")
                stored = await self._replace(info, namespace, name, request, version)
            if stored is not None:
                return stored
        raise ConflictError(f"{what}: too much write contention")

    async def apply_batch(self, ops: Sequence[BatchOp]) -> BatchResults:
        """The API server has no multi-object transaction: the writes run concurrently, one
        request each (a failure fails the batch, though some writes may have been applied)."""

        async def one(op: BatchOp) -> StoredObject | None:
            if isinstance(op, Put):
                return await self.put(*op.key, op.body)
            try:
                return await self.delete(*op.key, expected_revision=op.revision)
            except (NotFoundError, ConflictError):  # gone, or changed since op.revision
                return None

        return list(await asyncio.gather(*(one(op) for op in ops)))

    async def _create(self, info: KindInfo, namespace: str, request: dict[str, Any]) -> StoredObject | None:
        """Create; None when it already exists (409)."""
        try:
            item = await self._custom.create_namespaced_custom_object(
                info.group, info.version, namespace, info.plural, request
            )
        except k8s.client.ApiException as err:
            if err.status == 409:
                return None
            _raise_if_invalid(err)
            if err.status == 404:  # custom objects live in existing namespaces only
                raise NotFoundError(
                    f'namespace "{namespace}" not found in the Kubernetes API server: create it first'
                    f" (kubectl create namespace {namespace})"
                ) from None
            raise
        stored = self._stored(info, item)
        self._record(WatchEvent(EventType.ADDED, stored, stored.revision))
        return stored

    async def _replace(
        self, info: KindInfo, namespace: str, name: str, request: dict[str, Any], version: str | None
    ) -> StoredObject | None:
        """Replace at ``version``; None on a conflict (409) or when the object is gone (404)."""
        body = {**request, "metadata": {**request["metadata"], "resourceVersion": version}}
        try:
            item = await self._custom.replace_namespaced_custom_object(
                info.group, info.version, namespace, info.plural, name, body
            )
        except k8s.client.ApiException as err:
            _raise_if_invalid(err)
            if err.status in (404, 409):
                return None
            raise
        stored = self._stored(info, item)
        self._record(WatchEvent(EventType.MODIFIED, stored, stored.revision))
        return stored

    async def refresh(self, kind: str, namespace: str, name: str) -> bool:
        """No TTLs here (``supports_ttl`` is False): True while the object exists."""
        return await self.get(kind, namespace, name) is not None

    async def delete(
        self, kind: str, namespace: str, name: str, *, expected_revision: int | None = None
    ) -> StoredObject:
        info = by_full_kind(kind)
        what = f"{kind} {namespace}/{name}"
        for _ in range(16):
            current = await self.get(kind, namespace, name)
            if current is None:
                raise NotFoundError(f"{what} not found")
            if expected_revision is not None and current.revision != expected_revision:
                raise ConflictError(
                    f"{what} was modified: resourceVersion is {current.revision}, not {expected_revision}"
                )
            options = {
                "apiVersion": "v1",
                "kind": "DeleteOptions",
                "preconditions": {"resourceVersion": current.body["metadata"].get("resourceVersion")},
            }
            try:
                result = await self._custom.delete_namespaced_custom_object(
                    info.group, info.version, namespace, info.plural, name, body=options
                )
            except k8s.client.ApiException as err:
                if err.status == 404:
                    raise NotFoundError(f"{what} not found") from None
                if err.status != 409:
                    raise
                if expected_revision is not None:
                    raise ConflictError(f"{what} was modified concurrently") from None
                continue
            revision = current.revision
            if isinstance(result, dict) and result.get("kind") == info.kind:
                revision = max(revision, revision_of((result.get("metadata") or {}).get("resourceVersion")))
            else:
                # A real kube-apiserver answers with a Status, which carries no revision: a quorum
                # list's resourceVersion is at least the delete's, so the DELETED event is kept.
                revision = max(revision, await self._current_revision(info))
            self._seen(revision)
            self._record(WatchEvent(EventType.DELETED, current, revision))
            return current
        raise ConflictError(f"{what}: too much write contention")

    async def _current_revision(self, info: KindInfo) -> int:
        listed = await self._custom.list_cluster_custom_object(info.group, info.version, info.plural, limit=1)
        return revision_of(((listed or {}).get("metadata") or {}).get("resourceVersion"))

    async def set_status(self, kind: str, namespace: str, name: str, status: dict[str, Any]) -> StoredObject:
        """Merge ``status`` (e.g. ``{"acked": 3, "nacked": 0, "pending": 1}``) into the object's
        status subresource. Raises NotFoundError."""
        info = by_full_kind(kind)
        try:
            item = await self._custom.patch_namespaced_custom_object_status(
                info.group,
                info.version,
                namespace,
                info.plural,
                name,
                {"status": status},
                _content_type="application/merge-patch+json",
            )
        except k8s.client.ApiException as err:
            if err.status == 404:
                raise NotFoundError(f"{kind} {namespace}/{name} not found") from None
            raise
        return self._stored(info, item)

    # --- watch ---

    async def watch(self, since_revision: int = 0) -> AsyncIterator[WatchEvent | Bookmark]:
        queue: asyncio.Queue[WatchEvent | Bookmark | BaseException] = asyncio.Queue()
        delivered: dict[tuple[str, str, str], StoredObject] = {}
        progress: dict[str, int] = {}
        # Replay: the state of every kind, as events for what changed after since_revision.
        replay: WatchEvents = []
        for info in self._kinds:
            events, list_revision = await self._relist(info, delivered, since_revision)
            replay.extend(events)
            progress[info.full_kind] = list_revision
        replay.sort(key=lambda e: e.revision)
        for event in replay:
            yield event
        yield Bookmark(max([self._revision, *progress.values()]))
        tasks = [
            asyncio.create_task(self._watch_kind(info, progress, delivered, queue)) for info in self._kinds
        ]
        try:
            while True:
                item = await queue.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _relist(
        self, info: KindInfo, delivered: dict[tuple[str, str, str], StoredObject], since_revision: int
    ) -> tuple[WatchEvents, int]:
        """List one kind; the events that bring ``delivered`` to the listed state."""
        items, list_revision = await self._list_kind(info)
        events: WatchEvents = []
        present = set()
        for obj in items:
            present.add(obj.key)
            old = delivered.get(obj.key)
            if old is None:
                if obj.revision > since_revision:
                    events.append(WatchEvent(EventType.ADDED, obj, obj.revision))
            elif old.revision != obj.revision:
                events.append(WatchEvent(EventType.MODIFIED, obj, obj.revision))
            delivered[obj.key] = obj
        for key in [k for k in delivered if k[0] == info.full_kind and k not in present]:
            gone = delivered.pop(key)
            events.append(WatchEvent(EventType.DELETED, gone, max(list_revision, gone.revision)))
        return events, list_revision

    async def _watch_kind(
        self,
        info: KindInfo,
        progress: dict[str, int],
        delivered: dict[tuple[str, str, str], StoredObject],
        queue: asyncio.Queue[WatchEvent | Bookmark | BaseException],
    ) -> None:
        """Watch one kind into ``queue`` until closed: resume after a broken connection (then a
        Bookmark), re-list after an expired resourceVersion (the difference, then a Bookmark)."""
        kind = info.full_kind
        delay = 0.05
        reconnect = gone = False
        while not self._closed:
            try:
                if gone:  # the resourceVersion expired (410): re-list, emit the difference
                    await self._catch_up(info, progress, delivered, queue)
                    gone = reconnect = False
                if reconnect:
                    queue.put_nowait(Bookmark(min(progress.values())))
                    reconnect = False
                async for event_type, item in self._stream(info, progress[kind]):
                    delay = 0.05
                    self._deliver(info, event_type, item, progress, delivered, queue)
            except _Gone:
                log.info("watch of %s: resourceVersion %d expired; re-listing", kind, progress[kind])
                gone = True
            except asyncio.CancelledError:
                raise
            except (TimeoutError, k8s.client.ApiException, OSError, ValueError, aiohttp.ClientError) as err:
                if self._closed:
                    return
                log.warning("watch of %s failed (%s); resuming from %d", kind, err, progress[kind])
                reconnect = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
            except Exception as err:  # a bug: end the consumer's watch with it
                queue.put_nowait(err)
                return

    async def _catch_up(
        self,
        info: KindInfo,
        progress: dict[str, int],
        delivered: dict[tuple[str, str, str], StoredObject],
        queue: asyncio.Queue[WatchEvent | Bookmark | BaseException],
    ) -> None:
        """Re-list one kind and queue the events that bring ``delivered`` to it, then a Bookmark."""
        events, list_revision = await self._relist(info, delivered, 0)
        for event in events:
            self._record(event)
            queue.put_nowait(event)
        progress[info.full_kind] = max(progress[info.full_kind], list_revision)
        queue.put_nowait(Bookmark(min(progress.values())))

    def _deliver(
        self,
        info: KindInfo,
        event_type: str,
        item: dict[str, Any],
        progress: dict[str, int],
        delivered: dict[tuple[str, str, str], StoredObject],
        queue: asyncio.Queue[WatchEvent | Bookmark | BaseException],
    ) -> None:
        """Queue one watch event of the API server (a BOOKMARK as a Bookmark)."""
        kind = info.full_kind
        if event_type == "BOOKMARK":
            progress[kind] = max(progress[kind], revision_of(item["metadata"]["resourceVersion"]))
            self._seen(progress[kind])
            queue.put_nowait(Bookmark(min(progress.values())))
            return
        obj = self._stored(info, item)
        progress[kind] = max(progress[kind], obj.revision)
        if event_type == "DELETED":
            last = delivered.pop(obj.key, None)
            event = WatchEvent(EventType.DELETED, last or obj, obj.revision)
        else:
            delivered[obj.key] = obj
            event = WatchEvent(EventType(event_type), obj, obj.revision)
        self._record(event)
        queue.put_nowait(event)

    async def _stream(
        self, info: KindInfo, resource_version: int
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        try:
            response = await self._custom.list_cluster_custom_object(
                info.group,
                info.version,
                info.plural,
                watch=True,
                allow_watch_bookmarks=True,
                resource_version=str(resource_version),
                timeout_seconds=self._watch_timeout,
                _preload_content=False,
                _request_timeout=self._watch_timeout + 30,
            )
        except k8s.client.ApiException as err:
            if err.status == 410:
                raise _Gone() from None
            raise
        try:
            while True:
                line = await response.content.readline()
                if not line:
                    return
                line = line.strip()
                if not line:
                    continue
                event = json.loads(line)
                event_type = event.get("type")
                item = event.get("object") or {}
                if event_type == "ERROR":
                    if item.get("code") == 410:
                        raise _Gone()
                    raise k8s.client.ApiException(status=item.get("code", 500), reason=item.get("message"))
                if event_type in ("ADDED", "MODIFIED", "DELETED", "BOOKMARK"):
                    yield event_type, item
        finally:
            response.release()

    async def history(self, kind: str, namespace: str, name: str) -> WatchEvents:
        """The changes this process saw; else the current state as one ADDED event."""
        events = list(self._history.get((kind, namespace, name), ()))
        if events:
            return events
        current = await self.get(kind, namespace, name)
        return [WatchEvent(EventType.ADDED, current, current.revision)] if current else []

    # --- replica status documents (ConfigMaps) ---

    @staticmethod
    def _status_name(replica: str) -> str:
        slug = re.sub(r"[^a-z0-9-]+", "-", replica.lower()).strip("-")[:40].strip("-")
        digest = hashlib.sha256(replica.encode()).hexdigest()[:10]
        return f"opensergo-status-{slug}-{digest}" if slug else f"opensergo-status-{digest}"

    async def publish_status(self, replica: str, document: dict[str, Any], ttl: float) -> None:
        name = self._status_name(replica)
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": self.namespace, "labels": {STATUS_LABEL: "true"}},
            "data": {
                "replica": replica,
                "expiresAt": repr(time.time() + ttl),
                "document": json.dumps(document),
            },
        }
        try:
            await self._core.replace_namespaced_config_map(name, self.namespace, body)
        except k8s.client.ApiException as err:
            if err.status != 404:
                raise
            try:
                await self._core.create_namespaced_config_map(self.namespace, body)
            except k8s.client.ApiException as create_err:
                if create_err.status != 409:
                    raise
                await self._core.replace_namespaced_config_map(name, self.namespace, body)

    async def read_status(self) -> dict[str, dict[str, Any]]:
        result = await self._core.list_namespaced_config_map(self.namespace, label_selector=STATUS_LABEL)
        now = time.time()
        out: dict[str, dict[str, Any]] = {}
        for item in result.items or []:
            data = item.data or {}
            try:
                expired = float(data.get("expiresAt", "0")) < now
                document = json.loads(data.get("document", "{}"))
            except ValueError:
                continue
            if expired:
                with contextlib.suppress(k8s.client.ApiException):  # another replica may win
                    await self._core.delete_namespaced_config_map(item.metadata.name, self.namespace)
                continue
            out[data.get("replica", item.metadata.name)] = document
        return out

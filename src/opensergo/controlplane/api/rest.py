"""Kubernetes-style REST API over the store, plus read-only views of clients and apps.

Paths: ``/apis/{group}/{version}/namespaces/{ns}/{plural}[/{name}]`` with GET (list/get), POST
(create), PUT (create or replace; ``metadata.resourceVersion`` makes it conditional), DELETE, and
``?watch=true`` (newline-delimited JSON events). ``?dryRun=All`` validates without writing.
Errors are Kubernetes ``Status`` objects whose ``details.causes`` name the field path.

Sub-resources of every object: ``/history`` (each recorded change with its revision),
``/rollout`` (which subscribed clients ACKed, NACKed or have yet to answer the current version)
and ``POST /rollback`` (``{"revision": N}``: store the body recorded at revision N again;
``?dryRun=All`` returns the diff only). Secret fields are redacted in every response (see
:mod:`.redact`); with auth on, cross-namespace views show only the caller's namespaces (see
:mod:`.auth`). The dashboard and its JSON views are in :mod:`.dashboard`.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import yaml
from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse

from opensergo import __version__
from opensergo.controlplane.api.auth import AuthConfig, AuthMiddleware, Principal, principal_of
from opensergo.controlplane.api.redact import PLACEHOLDER, placeholder_path, redact, restore
from opensergo.controlplane.api.views import body_app, diff, index_subscriptions, rollout
from opensergo.controlplane.metadata import INSTANCE_KIND, MetadataRegistry
from opensergo.controlplane.snapshots import SnapshotCache
from opensergo.controlplane.store.base import (
    Bookmark,
    ConflictError,
    InvalidObjectError,
    NotFoundError,
    Store,
    StoredObject,
)
from opensergo.controlplane.transport import TransportService
from opensergo.spec import kinds
from opensergo.spec.errors import SpecError, format_path
from opensergo.spec.kinds import KindInfo
from opensergo.spec.loader import parse_object

if TYPE_CHECKING:
    from opensergo.controlplane.metrics.history import MetricsHistory
    from opensergo.controlplane.metrics.prometheus import ControlPlaneMetrics
    from opensergo.controlplane.metrics.store import MetricStore


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str, causes: list[dict[str, str]] | None = None):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.causes = causes or []

    def response(self) -> JSONResponse:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.causes:
            body["details"] = {"causes": self.causes}
        return JSONResponse(body, status_code=self.code)


def _kind(group: str, version: str, plural: str) -> KindInfo:
    try:
        return kinds.by_resource(group, version, plural)
    except KeyError:
        raise ApiError(
            404, "NotFound", f"the server could not find the resource {plural}.{group}/{version}"
        ) from None


async def _read_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        data = (
            json.loads(raw) if "json" in request.headers.get("content-type", "json") else yaml.safe_load(raw)
        )
    except (ValueError, yaml.YAMLError) as err:
        raise ApiError(400, "BadRequest", f"request body is not valid JSON/YAML: {err}") from None
    if not isinstance(data, dict):
        raise ApiError(400, "BadRequest", "request body must be an object")
    return data


def _validate(
    kind: KindInfo,
    namespace: str,
    body: dict[str, Any],
    name: str | None = None,
    current: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Check the body against the kind's model and the URL; return the body to store.

    Redacted secrets (``******``) are taken from ``current``, the stored object."""
    body = restore(dict(body), current)
    meta = dict(body.get("metadata") or {})
    if meta.get("namespace") not in (None, namespace):
        raise ApiError(
            400,
            "BadRequest",
            f"the namespace of the object ({meta['namespace']}) does not match the URL ({namespace})",
        )
    meta["namespace"] = namespace
    if name is not None and meta.get("name") not in (None, name):
        raise ApiError(
            400, "BadRequest", f"the name of the object ({meta['name']}) does not match the URL ({name})"
        )
    if name is not None:
        meta["name"] = name
    body["metadata"] = meta
    body.setdefault("apiVersion", kind.api_version)
    body.setdefault("kind", kind.kind)
    if body.get("apiVersion") != kind.api_version or body.get("kind") != kind.kind:
        raise ApiError(
            400,
            "BadRequest",
            f"object is {body.get('apiVersion')}/{body.get('kind')}, but the URL is for {kind.full_kind}",
        )
    try:
        parse_object(body)
    except SpecError as err:
        where = f"{err.field}: " if err.path else ""
        raise ApiError(
            422,
            "Invalid",
            f"{kind.kind} {meta.get('name', '')} is invalid: {where}{err.message}",
            [{"field": err.field, "message": err.message}],
        ) from None
    secret = placeholder_path(body)
    if secret is not None:
        field = format_path(secret)
        message = f"{PLACEHOLDER} is the redacted form of a secret; write the real value"
        raise ApiError(
            422,
            "Invalid",
            f"{kind.kind} {meta.get('name', '')} is invalid: {field}: {message}",
            [{"field": field, "message": message}],
        )
    return body


def _expected_revision(body: dict[str, Any]) -> int | None:
    value = (body.get("metadata") or {}).get("resourceVersion")
    if value in (None, ""):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ApiError(400, "BadRequest", f"metadata.resourceVersion {value!r} is not a number") from None


def _list_body(kind: KindInfo | None, items: list[StoredObject], revision: int) -> dict[str, Any]:
    return {
        "apiVersion": kind.api_version if kind else "v1",
        "kind": f"{kind.kind}List" if kind else "List",
        "metadata": {"resourceVersion": str(revision)},
        "items": [redact(o.body) for o in items],
    }


async def all_clients(store: Store, transport: TransportService, replica_id: str) -> list[dict[str, Any]]:
    """This replica's clients (connected and recently disconnected) and, with a shared store,
    the connected ones of every other replica."""
    return merge_clients(transport, replica_id, await store.read_status())


def merge_clients(
    transport: TransportService, replica_id: str, status: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """This replica's clients, and those of the other replicas' status documents."""
    items = [dict(c.to_dict(), replica=replica_id) for c in transport.clients()]
    for other, document in status.items():
        clients = document.get("clients")
        if other != replica_id and isinstance(clients, list):
            items += [dict(c, replica=other) for c in clients if isinstance(c, dict)]
    return items


def visible_clients(items: list[dict[str, Any]], principal: Principal) -> list[dict[str, Any]]:
    """Clients with their subscriptions in namespaces the principal may view."""
    if principal.can_view("*") and len(principal.roles) == 1:
        return items
    out = []
    for client in items:
        subs = [s for s in client.get("subscriptions", []) if principal.can_view(s["namespace"])]
        if subs:
            out.append(dict(client, subscriptions=subs))
    return out


def list_instances(
    registry: MetadataRegistry,
    snapshots: SnapshotCache,
    principal: Principal,
    app: str | None = None,
    namespace: str | None = None,
) -> list[dict[str, Any]]:
    """Instances registered here (full detail) and through other replicas (from the store)."""
    now = time.time()
    local = {
        (i.namespace, i.name): i.to_dict(now, registry.ttl)
        for i in registry.instances(app, namespace)
        if principal.can_view(i.namespace)
    }
    # Instances registered through other replicas are known from the shared store only.
    for obj in snapshots.objects(INSTANCE_KIND.full_kind):
        spec = obj.spec
        if (obj.namespace, obj.name) in local or (app and spec.app != app):
            continue
        if (namespace and obj.namespace != namespace) or not principal.can_view(obj.namespace):
            continue
        local[(obj.namespace, obj.name)] = {
            "namespace": obj.namespace,
            "app": spec.app,
            "name": obj.name,
            "nodeId": spec.nodeId,
            "hostName": spec.hostName,
            "pid": spec.pid,
            "labels": dict(spec.labels),
            "addresses": [a.url for a in spec.addresses],
            "lastSeen": None,
            "healthy": True,  # its lease is alive, or it would be gone
        }
    return [local[k] for k in sorted(local)]


def create_app(
    store: Store,
    snapshots: SnapshotCache,
    transport: TransportService,
    registry: MetadataRegistry,
    replica_id: str = "",
    *,
    auth: AuthConfig | None = None,
    metric_store: MetricStore | None = None,
    history: MetricsHistory | None = None,
    prometheus: ControlPlaneMetrics | None = None,
) -> FastAPI:
    """The HTTP API; ``auth`` None means no auth middleware (every request has every role)."""
    app = FastAPI(
        title="OpenSergo control plane",
        version=__version__,
        description="Governance rules (Kubernetes-style resources), connected clients and reported apps.",
    )

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(InvalidObjectError)
    async def _invalid(_: Request, exc: InvalidObjectError) -> JSONResponse:
        return ApiError(422, "Invalid", str(exc)).response()

    @app.exception_handler(NotFoundError)
    async def _not_found(_: Request, exc: NotFoundError) -> JSONResponse:
        # A store refusing a write for a missing parent, e.g. a Kubernetes namespace.
        return ApiError(404, "NotFound", str(exc.args[0] if exc.args else exc)).response()

    if auth is not None:
        app.add_middleware(AuthMiddleware, config=auth)

    router = APIRouter()

    @router.get("/healthz", tags=["meta"])
    async def healthz() -> dict[str, Any]:
        return {
            "status": "ok",
            "revision": store.revision,
            "clients": transport.connected_count,
            "replica": replica_id,
        }

    @router.get("/apis", tags=["meta"])
    async def api_kinds() -> dict[str, Any]:
        """Every kind the server knows, with its REST path and wire type."""
        return {
            "kinds": [
                {
                    "group": k.group,
                    "version": k.version,
                    "kind": k.kind,
                    "plural": k.plural,
                    "shortNames": list(k.short_names),
                    "fullName": k.full_kind,
                    "typeUrl": k.type_url,
                }
                for k in kinds.all_kinds()
            ]
        }

    @router.get("/apis/{group}/{version}/{plural}", tags=["resources"])
    async def list_all_namespaces(group: str, version: str, plural: str, request: Request) -> dict[str, Any]:
        kind = _kind(group, version, plural)
        revision = store.revision
        principal = principal_of(request.state)
        items = [o for o in await store.list(kind.full_kind) if principal.can_view(o.namespace)]
        return _list_body(kind, items, revision)

    @router.get(
        "/apis/{group}/{version}/namespaces/{namespace}/{plural}", tags=["resources"], response_model=None
    )
    async def list_or_watch(
        group: str,
        version: str,
        namespace: str,
        plural: str,
        watch: bool = False,
        resourceVersion: int | None = Query(default=None),
    ) -> dict[str, Any] | StreamingResponse:
        kind = _kind(group, version, plural)
        if watch:
            since = store.revision if resourceVersion is None else resourceVersion
            return StreamingResponse(
                _watch_stream(store, kind, namespace, since), media_type="application/x-ndjson"
            )
        revision = store.revision
        return _list_body(kind, await store.list(kind.full_kind, namespace), revision)

    @router.post(
        "/apis/{group}/{version}/namespaces/{namespace}/{plural}", tags=["resources"], status_code=201
    )
    async def create(
        group: str,
        version: str,
        namespace: str,
        plural: str,
        request: Request,
        dryRun: str | None = None,
    ) -> JSONResponse:
        kind = _kind(group, version, plural)
        body = _validate(kind, namespace, await _read_body(request))
        name = body["metadata"].get("name")
        if dryRun:
            return JSONResponse(redact(body), status_code=201)
        try:
            stored = await store.put(kind.full_kind, namespace, name, body, create_only=True)
        except ConflictError as err:
            raise ApiError(409, "AlreadyExists", str(err)) from None
        return JSONResponse(redact(stored.body), status_code=201)

    @router.get("/apis/{group}/{version}/namespaces/{namespace}/{plural}/{name}", tags=["resources"])
    async def get(group: str, version: str, namespace: str, plural: str, name: str) -> dict[str, Any]:
        kind = _kind(group, version, plural)
        stored = await store.get(kind.full_kind, namespace, name)
        if stored is None:
            raise ApiError(404, "NotFound", f'{kind.plural} "{name}" not found in namespace {namespace}')
        return dict(redact(stored.body))

    @router.put("/apis/{group}/{version}/namespaces/{namespace}/{plural}/{name}", tags=["resources"])
    async def replace(
        group: str,
        version: str,
        namespace: str,
        plural: str,
        name: str,
        request: Request,
        dryRun: str | None = None,
    ) -> JSONResponse:
        kind = _kind(group, version, plural)
        raw = await _read_body(request)
        existing = await store.get(kind.full_kind, namespace, name)
        body = _validate(kind, namespace, raw, name, existing.body if existing else None)
        expected = _expected_revision(body)
        if dryRun:
            return JSONResponse(redact(body), status_code=200 if existing else 201)
        try:
            stored = await store.put(kind.full_kind, namespace, name, body, expected_revision=expected)
        except ConflictError as err:
            raise ApiError(409, "Conflict", str(err)) from None
        return JSONResponse(redact(stored.body), status_code=200 if existing else 201)

    @router.delete("/apis/{group}/{version}/namespaces/{namespace}/{plural}/{name}", tags=["resources"])
    async def delete(
        group: str,
        version: str,
        namespace: str,
        plural: str,
        name: str,
        dryRun: str | None = None,
    ) -> dict[str, Any]:
        kind = _kind(group, version, plural)
        try:
            if dryRun:
                stored = await store.get(kind.full_kind, namespace, name)
                if stored is None:
                    raise NotFoundError(name)
                return dict(redact(stored.body))
            return dict(redact((await store.delete(kind.full_kind, namespace, name)).body))
        except NotFoundError:
            raise ApiError(
                404, "NotFound", f'{kind.plural} "{name}" not found in namespace {namespace}'
            ) from None

    @router.get("/api/v1/clients", tags=["status"])
    async def clients(request: Request, connected: bool | None = None) -> dict[str, Any]:
        """Data planes with per-subscription ACK state: this replica's (connected and recently
        disconnected) and, with a shared store, the connected ones of every other replica."""
        items = await all_clients(store, transport, replica_id)
        if connected is not None:
            items = [c for c in items if c["connected"] == connected]
        return {"items": visible_clients(items, principal_of(request.state))}

    @router.get("/api/v1/snapshots", tags=["status"])
    async def snapshot_versions(request: Request) -> dict[str, Any]:
        principal = principal_of(request.state)
        return {
            "revision": snapshots.revision,
            "items": [
                {
                    "namespace": s.key.namespace,
                    "app": s.key.app,
                    "kind": s.key.kind,
                    "version": s.version,
                    "names": [r.name for r in s.resources],
                }
                for s in snapshots.groups()
                if principal.can_view(s.key.namespace)
            ],
            "invalid": [
                {"kind": k[0], "namespace": k[1], "name": k[2], "error": e}
                for k, e in snapshots.invalid.items()
                if principal.can_view(k[1])
            ],
        }

    @router.get("/api/v1/apps", tags=["status"])
    async def apps(request: Request) -> dict[str, Any]:
        """Apps with instances registered through this replica (language and framework as the
        instances' labels or metric exports describe them)."""
        principal = principal_of(request.state)
        described = metric_store.app_info() if metric_store is not None else {}
        labels: dict[tuple[str, str], dict[str, str]] = {}
        for i in registry.instances():
            entry = labels.setdefault((i.namespace, i.app), {})
            for key in ("language", "framework"):
                if i.labels.get(key) and not entry.get(key):
                    entry[key] = i.labels[key]
        items = []
        for item in registry.apps():
            if not principal.can_view(item["namespace"]):
                continue
            app_key = (item["namespace"], item["app"])
            info = described.get(app_key, {})
            extra = labels.get(app_key, {})
            item["language"] = extra.get("language") or info.get("language", "")
            item["framework"] = extra.get("framework") or info.get("framework", "")
            items.append(item)
        return {"items": items}

    @router.get("/api/v1/instances", tags=["status"])
    async def instances(
        request: Request, app: str | None = None, namespace: str | None = None
    ) -> dict[str, Any]:
        """Registered instances with their last heartbeat (all namespaces unless given)."""
        return {"items": list_instances(registry, snapshots, principal_of(request.state), app, namespace)}

    @router.get("/apis/{group}/{version}/namespaces/{namespace}/{plural}/{name}/history", tags=["resources"])
    async def history_of(group: str, version: str, namespace: str, plural: str, name: str) -> dict[str, Any]:
        """Every recorded change of the object, newest first, with the body it left."""
        kind = _kind(group, version, plural)
        events = await store.history(kind.full_kind, namespace, name)
        if not events:
            raise ApiError(404, "NotFound", f'{kind.plural} "{name}" has no history in namespace {namespace}')
        current = await store.get(kind.full_kind, namespace, name)
        items = [
            {
                "revision": e.revision,
                "type": e.type.value,
                "generation": (e.object.body.get("metadata") or {}).get("generation"),
                "current": current is not None and e.revision == current.revision,
                "object": redact(e.object.body),
            }
            for e in reversed(events)
        ]
        return {"kind": kind.kind, "namespace": namespace, "name": name, "items": items}

    @router.post(
        "/apis/{group}/{version}/namespaces/{namespace}/{plural}/{name}/rollback", tags=["resources"]
    )
    async def rollback(
        group: str,
        version: str,
        namespace: str,
        plural: str,
        name: str,
        request: Request,
        dryRun: str | None = None,
    ) -> dict[str, Any]:
        """Store again the body recorded at ``revision`` (a new version with the old content).

        Body: ``{"revision": N, "resourceVersion": "<current, optional precondition>"}``."""
        kind = _kind(group, version, plural)
        data = await _read_body(request)
        try:
            revision = int(data.get("revision"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ApiError(400, "BadRequest", 'body must be {"revision": <number>}') from None
        events = {e.revision: e for e in await store.history(kind.full_kind, namespace, name)}
        event = events.get(revision)
        if event is None or event.type.value == "DELETED":
            raise ApiError(404, "NotFound", f"{kind.kind} {namespace}/{name} has no version {revision}")
        current = await store.get(kind.full_kind, namespace, name)
        old = dict(event.object.body)
        meta = {
            k: v
            for k, v in (old.get("metadata") or {}).items()
            if k in ("name", "namespace", "labels", "annotations")
        }
        old["metadata"] = meta
        body = _validate(kind, namespace, old, name)
        expected = _expected_revision({"metadata": {"resourceVersion": data.get("resourceVersion")}})
        if expected is None and current is not None:
            expected = current.revision
        changes = diff(current.body if current else None, body)
        if dryRun:
            return {"dryRun": True, "diff": changes, "object": redact(body)}
        try:
            stored = await store.put(
                kind.full_kind, namespace, name, body, expected_revision=expected or None
            )
        except ConflictError as err:
            raise ApiError(409, "Conflict", str(err)) from None
        return {"dryRun": False, "diff": changes, "object": redact(stored.body), "rolledBackTo": revision}

    @router.get("/apis/{group}/{version}/namespaces/{namespace}/{plural}/{name}/rollout", tags=["resources"])
    async def rollout_of(group: str, version: str, namespace: str, plural: str, name: str) -> dict[str, Any]:
        """Which subscribed clients ACKed, NACKed (with the message) or have yet to answer the
        object's current version."""
        kind = _kind(group, version, plural)
        stored = await store.get(kind.full_kind, namespace, name)
        if stored is None:
            raise ApiError(404, "NotFound", f'{kind.plural} "{name}" not found in namespace {namespace}')
        index = index_subscriptions(await all_clients(store, transport, replica_id))
        app_name = body_app(stored.body)
        result = rollout(namespace, app_name, kind.full_kind, stored.revision, index)
        result.update(kind=kind.kind, namespace=namespace, name=name)
        if not app_name:
            result["note"] = "no app: set metadata.labels.app (or spec.selector.app) to deliver this object"
        return result

    app.include_router(router)

    from opensergo.controlplane.api import dashboard

    dashboard.install(
        app,
        dashboard.Context(
            store=store,
            snapshots=snapshots,
            transport=transport,
            registry=registry,
            replica_id=replica_id,
            auth=auth,
            metric_store=metric_store,
            history=history,
            prometheus=prometheus,
        ),
    )
    return app


async def _watch_stream(store: Store, kind: KindInfo, namespace: str, since: int) -> AsyncIterator[bytes]:
    async for event in store.watch(since):
        if isinstance(event, Bookmark):
            continue
        obj = event.object
        if obj.kind != kind.full_kind or obj.namespace != namespace:
            continue
        yield (json.dumps({"type": event.type.value, "object": redact(obj.body)}) + "\n").encode()

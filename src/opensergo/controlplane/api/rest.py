"""Kubernetes-style REST API over the store, plus read-only views of clients and apps.

Paths: ``/apis/{group}/{version}/namespaces/{ns}/{plural}[/{name}]`` with GET (list/get), POST
(create), PUT (create or replace; ``metadata.resourceVersion`` makes it conditional), DELETE, and
``?watch=true`` (newline-delimited JSON events). ``?dryRun=All`` validates without writing.
Errors are Kubernetes ``Status`` objects whose ``details.causes`` name the field path.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import yaml
from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse

from opensergo import __version__
from opensergo.controlplane.metadata import INSTANCE_KIND, MetadataRegistry
from opensergo.controlplane.snapshots import SnapshotCache
from opensergo.controlplane.store.base import Bookmark, ConflictError, NotFoundError, Store, StoredObject
from opensergo.controlplane.transport import TransportService
from opensergo.spec import kinds
from opensergo.spec.errors import SpecError
from opensergo.spec.kinds import KindInfo
from opensergo.spec.loader import parse_object


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
    kind: KindInfo, namespace: str, body: dict[str, Any], name: str | None = None
) -> dict[str, Any]:
    """Check the body against the kind's model and the URL; return the body to store."""
    body = dict(body)
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
            f"object is {body.get('apiVersion')}/{body.get('kind')}, but the URL is for {kind.full_name}",
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
        "items": [o.body for o in items],
    }


def create_app(
    store: Store,
    snapshots: SnapshotCache,
    transport: TransportService,
    registry: MetadataRegistry,
    replica_id: str = "",
) -> FastAPI:
    app = FastAPI(
        title="OpenSergo control plane",
        version=__version__,
        description="Governance rules (Kubernetes-style resources), connected clients and reported apps.",
    )

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return exc.response()

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
                    "fullName": k.full_name,
                    "typeUrl": k.type_url,
                }
                for k in kinds.all_kinds()
            ]
        }

    @router.get("/apis/{group}/{version}/{plural}", tags=["resources"])
    async def list_all_namespaces(group: str, version: str, plural: str) -> dict[str, Any]:
        kind = _kind(group, version, plural)
        revision = store.revision
        return _list_body(kind, await store.list(kind.full_name), revision)

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
        return _list_body(kind, await store.list(kind.full_name, namespace), revision)

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
            return JSONResponse(body, status_code=201)
        try:
            stored = await store.put(kind.full_name, namespace, name, body, create_only=True)
        except ConflictError as err:
            raise ApiError(409, "AlreadyExists", str(err)) from None
        return JSONResponse(stored.body, status_code=201)

    @router.get("/apis/{group}/{version}/namespaces/{namespace}/{plural}/{name}", tags=["resources"])
    async def get(group: str, version: str, namespace: str, plural: str, name: str) -> dict[str, Any]:
        kind = _kind(group, version, plural)
        stored = await store.get(kind.full_name, namespace, name)
        if stored is None:
            raise ApiError(404, "NotFound", f'{kind.plural} "{name}" not found in namespace {namespace}')
        return stored.body

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
        body = _validate(kind, namespace, await _read_body(request), name)
        expected = _expected_revision(body)
        existing = await store.get(kind.full_name, namespace, name)
        if dryRun:
            return JSONResponse(body, status_code=200 if existing else 201)
        try:
            stored = await store.put(kind.full_name, namespace, name, body, expected_revision=expected)
        except ConflictError as err:
            raise ApiError(409, "Conflict", str(err)) from None
        return JSONResponse(stored.body, status_code=200 if existing else 201)

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
                stored = await store.get(kind.full_name, namespace, name)
                if stored is None:
                    raise NotFoundError(name)
                return stored.body
            return (await store.delete(kind.full_name, namespace, name)).body
        except NotFoundError:
            raise ApiError(
                404, "NotFound", f'{kind.plural} "{name}" not found in namespace {namespace}'
            ) from None

    @router.get("/api/v1/clients", tags=["status"])
    async def clients(connected: bool | None = None) -> dict[str, Any]:
        """Data planes with per-subscription ACK state: this replica's (connected and recently
        disconnected) and, with a shared store, the connected ones of every other replica."""
        items = [dict(c.to_dict(), replica=replica_id) for c in transport.clients()]
        for other, document in (await store.read_status()).items():
            if other != replica_id:
                items += [dict(c, replica=other) for c in document.get("clients", [])]
        if connected is not None:
            items = [c for c in items if c["connected"] == connected]
        return {"items": items}

    @router.get("/api/v1/snapshots", tags=["status"])
    async def snapshot_versions() -> dict[str, Any]:
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
            ],
            "invalid": [
                {"kind": k[0], "namespace": k[1], "name": k[2], "error": e}
                for k, e in snapshots.invalid.items()
            ],
        }

    @router.get("/api/v1/apps", tags=["status"])
    async def apps() -> dict[str, Any]:
        return {"items": registry.apps()}

    @router.get("/api/v1/instances", tags=["status"])
    async def instances(app: str | None = None, namespace: str | None = None) -> dict[str, Any]:
        """Registered instances with their last heartbeat (all namespaces unless given)."""
        now = time.time()
        local = {
            (i.namespace, i.name): i.to_dict(now, registry.ttl) for i in registry.instances(app, namespace)
        }
        # Instances registered through other replicas are known from the shared store only.
        for obj in snapshots.objects(INSTANCE_KIND.full_name):
            spec = obj.spec
            if (obj.namespace, obj.name) in local or (app and spec.app != app):
                continue
            if namespace and obj.namespace != namespace:
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
        return {"items": [local[k] for k in sorted(local)]}

    app.include_router(router)
    return app


async def _watch_stream(store: Store, kind: KindInfo, namespace: str, since: int) -> AsyncIterator[bytes]:
    async for event in store.watch(since):
        if isinstance(event, Bookmark):
            continue
        obj = event.object
        if obj.kind != kind.full_name or obj.namespace != namespace:
            continue
        yield (json.dumps({"type": event.type.value, "object": obj.body}) + "\n").encode()

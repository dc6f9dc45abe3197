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
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse

from opensergo.controlplane.api.context import Caller, Context
from opensergo.controlplane.api.diffs import diff
from opensergo.controlplane.api.errors import ApiError, bad_request, not_found
from opensergo.controlplane.api.redact import redact
from opensergo.controlplane.api.validation import expected_revision, read_body, validate_object
from opensergo.controlplane.readmodels import (
    ClientFilter,
    InstanceFilter,
    Page,
    all_clients,
    body_app,
    client_page,
    index_subscriptions,
    instance_page,
    list_apps,
    rollout,
)
from opensergo.controlplane.store.base import (
    Bookmark,
    CompactedError,
    ConflictError,
    NotFoundError,
    Store,
    StoredObject,
)
from opensergo.spec import kinds
from opensergo.spec.kinds import KindInfo

router = APIRouter()

NAMESPACED = "/apis/{group}/{version}/namespaces/{namespace}/{plural}"
MAX_REVISION = 2**63 - 1  # revisions are int64 in every store
OBJECT = NAMESPACED + "/{name}"
MAX_PAGE = 1000


def _kind(group: str, version: str, plural: str) -> KindInfo:
    try:
        return kinds.by_resource(group, version, plural)
    except KeyError:
        raise not_found(f"the server could not find the resource {plural}.{group}/{version}") from None


def _object_not_found(kind: KindInfo, namespace: str, name: str) -> ApiError:
    return not_found(f'{kind.plural} "{name}" not found in namespace {namespace}')


def _list_body(kind: KindInfo | None, items: list[StoredObject], revision: int) -> dict[str, Any]:
    return {
        "apiVersion": kind.api_version if kind else "v1",
        "kind": f"{kind.kind}List" if kind else "List",
        "metadata": {"resourceVersion": str(revision)},
        "items": [redact(o.body) for o in items],
    }


# -- meta -----------------------------------------------------------------------------------------


@router.get("/healthz", tags=["meta"])
async def healthz(ctx: Context) -> dict[str, Any]:
    return {
        "status": "ok",
        "revision": ctx.store.revision,
        "clients": ctx.transport.connected_count,
        "replica": ctx.replica_id,
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


# -- resources ------------------------------------------------------------------------------------


@router.get("/apis/{group}/{version}/{plural}", tags=["resources"])
async def list_all_namespaces(
    group: str, version: str, plural: str, ctx: Context, caller: Caller
) -> dict[str, Any]:
    kind = _kind(group, version, plural)
    revision = ctx.store.revision
    items = [o for o in await ctx.store.list(kind.full_kind) if caller.can_view(o.namespace)]
    return _list_body(kind, items, revision)


@router.get(NAMESPACED, tags=["resources"], response_model=None)
async def list_or_watch(
    group: str,
    version: str,
    namespace: str,
    plural: str,
    ctx: Context,
    watch: bool = False,
    resourceVersion: int | None = Query(default=None, ge=0, le=MAX_REVISION),
) -> dict[str, Any] | StreamingResponse:
    kind = _kind(group, version, plural)
    store = ctx.store
    if watch:
        since = store.revision if resourceVersion is None else resourceVersion
        return StreamingResponse(
            _watch_stream(store, kind, namespace, since), media_type="application/x-ndjson"
        )
    revision = store.revision
    return _list_body(kind, await store.list(kind.full_kind, namespace), revision)


async def _watch_stream(store: Store, kind: KindInfo, namespace: str, since: int) -> AsyncIterator[bytes]:
    try:
        async for event in store.watch(since):
            if isinstance(event, Bookmark):
                continue
            obj = event.object
            if obj.kind != kind.full_kind or obj.namespace != namespace:
                continue
            yield (json.dumps({"type": event.type.value, "object": redact(obj.body)}) + "\n").encode()
    except CompactedError as err:
        # As Kubernetes: an ERROR event with a 410 Status; the client lists again.
        status = ApiError(410, "Expired", str(err))
        yield (json.dumps({"type": "ERROR", "object": status.status()}) + "\n").encode()


@router.post(NAMESPACED, tags=["resources"], status_code=201)
async def create(
    group: str,
    version: str,
    namespace: str,
    plural: str,
    request: Request,
    ctx: Context,
    dryRun: str | None = None,
) -> JSONResponse:
    kind = _kind(group, version, plural)
    body = validate_object(kind, namespace, await read_body(request, ctx.limits.parser))
    name = body["metadata"].get("name")
    if dryRun:
        return JSONResponse(redact(body), status_code=201)
    try:
        stored = await ctx.store.put(kind.full_kind, namespace, name, body, create_only=True)
    except ConflictError as err:
        raise ApiError(409, "AlreadyExists", str(err)) from None
    return JSONResponse(redact(stored.body), status_code=201)


@router.get(OBJECT, tags=["resources"])
async def get(
    group: str, version: str, namespace: str, plural: str, name: str, ctx: Context
) -> dict[str, Any]:
    kind = _kind(group, version, plural)
    stored = await ctx.store.get(kind.full_kind, namespace, name)
    if stored is None:
        raise _object_not_found(kind, namespace, name)
    return dict(redact(stored.body))


@router.put(OBJECT, tags=["resources"])
async def replace(
    group: str,
    version: str,
    namespace: str,
    plural: str,
    name: str,
    request: Request,
    ctx: Context,
    dryRun: str | None = None,
) -> JSONResponse:
    kind = _kind(group, version, plural)
    raw = await read_body(request, ctx.limits.parser)
    existing = await ctx.store.get(kind.full_kind, namespace, name)
    body = validate_object(kind, namespace, raw, name, existing.body if existing else None)
    expected = expected_revision(body)
    status = 200 if existing else 201
    if dryRun:
        return JSONResponse(redact(body), status_code=status)
    try:
        stored = await ctx.store.put(kind.full_kind, namespace, name, body, expected_revision=expected)
    except ConflictError as err:
        raise ApiError(409, "Conflict", str(err)) from None
    return JSONResponse(redact(stored.body), status_code=status)


@router.delete(OBJECT, tags=["resources"])
async def delete(
    group: str,
    version: str,
    namespace: str,
    plural: str,
    name: str,
    ctx: Context,
    dryRun: str | None = None,
) -> dict[str, Any]:
    kind = _kind(group, version, plural)
    try:
        if dryRun:
            stored = await ctx.store.get(kind.full_kind, namespace, name)
            if stored is None:
                raise NotFoundError(name)
            return dict(redact(stored.body))
        return dict(redact((await ctx.store.delete(kind.full_kind, namespace, name)).body))
    except NotFoundError:
        raise _object_not_found(kind, namespace, name) from None


@router.get(OBJECT + "/history", tags=["resources"])
async def history_of(
    group: str, version: str, namespace: str, plural: str, name: str, ctx: Context
) -> dict[str, Any]:
    """Every recorded change of the object, newest first, with the body it left."""
    kind = _kind(group, version, plural)
    events = await ctx.store.history(kind.full_kind, namespace, name)
    if not events:
        raise not_found(f'{kind.plural} "{name}" has no history in namespace {namespace}')
    current = await ctx.store.get(kind.full_kind, namespace, name)
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


def _requested_revision(data: dict[str, Any]) -> int:
    value = data.get("revision")
    try:
        revision = int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        revision = -1
    if isinstance(value, bool) or not 0 < revision <= MAX_REVISION:
        message = "must be a revision number (a positive integer)"
        raise bad_request(message, "revision")
    return revision


def _user_metadata(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` with only the metadata a person writes (name, namespace, labels, annotations)."""
    meta = body.get("metadata") or {}
    keep = ("name", "namespace", "labels", "annotations")
    return dict(body, metadata={k: v for k, v in meta.items() if k in keep})


@router.post(OBJECT + "/rollback", tags=["resources"])
async def rollback(
    group: str,
    version: str,
    namespace: str,
    plural: str,
    name: str,
    request: Request,
    ctx: Context,
    dryRun: str | None = None,
) -> dict[str, Any]:
    """Store again the body recorded at ``revision`` (a new version with the old content).

    Body: ``{"revision": N, "resourceVersion": "<current, optional precondition>"}``."""
    kind = _kind(group, version, plural)
    data = await read_body(request, ctx.limits.parser)
    revision = _requested_revision(data)
    events = {e.revision: e for e in await ctx.store.history(kind.full_kind, namespace, name)}
    event = events.get(revision)
    if event is None or event.type.value == "DELETED":
        raise not_found(f"{kind.kind} {namespace}/{name} has no version {revision}")
    current = await ctx.store.get(kind.full_kind, namespace, name)
    body = validate_object(kind, namespace, _user_metadata(event.object.body), name)
    expected = expected_revision({"metadata": {"resourceVersion": data.get("resourceVersion")}})
    if expected is None and current is not None:
        expected = current.revision
    changes = diff(current.body if current else None, body)
    if dryRun:
        return {"dryRun": True, "diff": changes, "object": redact(body)}
    try:
        stored = await ctx.store.put(
            kind.full_kind, namespace, name, body, expected_revision=expected or None
        )
    except ConflictError as err:
        raise ApiError(409, "Conflict", str(err)) from None
    return {"dryRun": False, "diff": changes, "object": redact(stored.body), "rolledBackTo": revision}


@router.get(OBJECT + "/rollout", tags=["resources"])
async def rollout_of(
    group: str, version: str, namespace: str, plural: str, name: str, ctx: Context
) -> dict[str, Any]:
    """Which subscribed clients ACKed, NACKed (with the message) or have yet to answer the
    object's current version."""
    kind = _kind(group, version, plural)
    stored = await ctx.store.get(kind.full_kind, namespace, name)
    if stored is None:
        raise _object_not_found(kind, namespace, name)
    index = index_subscriptions(await all_clients(ctx.store, ctx.transport, ctx.replica_id))
    app_name = body_app(stored.body)
    result = rollout(namespace, app_name, kind.full_kind, stored.revision, index)
    result.update(kind=kind.kind, namespace=namespace, name=name)
    if not app_name:
        result["note"] = "no app: set metadata.labels.app (or spec.selector.app) to deliver this object"
    return result


# -- status views ---------------------------------------------------------------------------------


# Paging of the status lists, as /api/v1/rules pages: ``offset`` and ``limit`` (1..1000), the body
# says ``total``. Without ``limit`` a list is whole (as before paging existed).
OFFSET = Query(default=0, ge=0, le=2**31)
LIMIT = Query(default=None, ge=-(2**31), le=2**31)  # clamped to 1..1000 below


def _page(offset: int, limit: int | None) -> Page:
    return Page(offset, None if limit is None else max(1, min(limit, MAX_PAGE)))


@router.get("/api/v1/clients", tags=["status"])
async def clients(
    ctx: Context,
    caller: Caller,
    connected: bool | None = None,
    namespace: str | None = None,
    app: str | None = None,
    q: str | None = None,
    offset: int = OFFSET,
    limit: int | None = LIMIT,
) -> dict[str, Any]:
    """Data planes with per-subscription ACK state: this replica's (connected and recently
    disconnected) and, with a shared store, the connected ones of every other replica; filtered
    (subscribed namespace / app, ``q``: text in identifier, peer, app or kind) and paged."""
    select = ClientFilter(connected, namespace or None, app or None, q or "")
    status = await ctx.store.read_status()
    return client_page(ctx.transport, ctx.replica_id, status, caller, select, _page(offset, limit))


@router.get("/api/v1/snapshots", tags=["status"])
async def snapshot_versions(ctx: Context, caller: Caller) -> dict[str, Any]:
    snapshots = ctx.snapshots
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
            if caller.can_view(s.key.namespace)
        ],
        "invalid": [
            {"kind": k[0], "namespace": k[1], "name": k[2], "error": e}
            for k, e in snapshots.invalid.items()
            if caller.can_view(k[1])
        ],
    }


@router.get("/api/v1/apps", tags=["status"])
async def apps(ctx: Context, caller: Caller) -> dict[str, Any]:
    """Apps with instances registered through this replica (language and framework as the
    instances' labels or metric exports describe them)."""
    return {"items": list_apps(ctx.registry, ctx.metric_store, caller)}


@router.get("/api/v1/instances", tags=["status"])
async def instances(
    ctx: Context,
    caller: Caller,
    app: str | None = None,
    namespace: str | None = None,
    healthy: bool | None = None,
    q: str | None = None,
    offset: int = OFFSET,
    limit: int | None = LIMIT,
) -> dict[str, Any]:
    """Registered instances with their last heartbeat (all namespaces unless given); filtered
    (``q``: text in name, node, host, address or a label value) and paged."""
    select = InstanceFilter(app or None, namespace or None, healthy, q or "")
    return instance_page(ctx.registry, ctx.snapshots, caller, select, _page(offset, limit))

"""The web dashboard: static pages at ``/`` (``/ui/...``) and the JSON views they use.

The pages are hand-written HTML, CSS and JavaScript modules shipped in the package
(``api/static``); nothing is built or downloaded. JSON views (all under ``/api/v1``):

* ``whoami``, ``login``, ``logout``: the session (see :mod:`.sessions` and :mod:`.auth`);
* ``overview``, ``namespaces``, ``apps/{namespace}/{app}``: what the registry and the transport
  know about apps, their instances, contracts and subscriptions;
* ``rules``: every rule object across kinds (paged, filtered), with its rollout summary;
* ``validate``: parse and check YAML the way a write would, with each error's line, and the diff
  against the stored object (nothing is written);
* ``metrics/apps``, ``metrics/series``, ``metrics/history``: the live and downsampled metrics
  the data planes export over OTLP (see :mod:`.charts`).

``GET /metrics`` serves the control plane's own Prometheus metrics.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, Response
from starlette.staticfiles import StaticFiles

from opensergo.common.restpaths import resource_path
from opensergo.controlplane.api.auth import Principal, Role
from opensergo.controlplane.api.context import ApiContext, Caller, Context
from opensergo.controlplane.api.diffs import diff
from opensergo.controlplane.api.errors import ApiError, bad_request, forbidden_namespace, not_found
from opensergo.controlplane.api.redact import clear_secrets, redact
from opensergo.controlplane.api.validation import read_json, validate_object, with_url_metadata
from opensergo.controlplane.metadata import INSTANCE_KIND
from opensergo.controlplane.readmodels import (
    RULE_KINDS,
    all_clients,
    app_contracts,
    app_subscriptions,
    body_app,
    index_subscriptions,
    kind_dict,
    list_instances,
    rollout,
    visible_clients,
    visible_namespaces,
)
from opensergo.controlplane.store.base import StoredObject
from opensergo.spec import kinds
from opensergo.spec.kinds import KindInfo
from opensergo.spec.limits import LimitError, ParserLimits
from opensergo.spec.loader import YamlSyntaxError, iter_yaml, locate

STATIC_DIR = Path(__file__).resolve().parent / "static"

_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
        " connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
_PATH_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")

router = APIRouter()


def parse_path(field: str) -> tuple[str | int, ...]:
    """``spec.strategies[0].kind`` -> ("spec", "strategies", 0, "kind")."""
    return tuple(
        int(m.group(2)) if m.group(2) is not None else m.group(1) for m in _PATH_PART.finditer(field)
    )


# -- pages ----------------------------------------------------------------------------------------


class UiStatic(StaticFiles):
    """The dashboard's files under ``/ui``, with the pages' security headers."""

    def __init__(self) -> None:
        super().__init__(directory=STATIC_DIR)

    async def get_response(self, path: str, scope: Any) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(_SECURITY_HEADERS)
        response.headers["Cache-Control"] = "no-cache"
        return response


@router.get("/", include_in_schema=False)
async def index() -> FileResponse:
    response = FileResponse(STATIC_DIR / "index.html", media_type="text/html")
    response.headers.update(_SECURITY_HEADERS)
    response.headers["Cache-Control"] = "no-cache"
    return response


# -- overview, apps -------------------------------------------------------------------------------


@router.get("/api/v1/namespaces", tags=["dashboard"])
async def namespaces(ctx: Context, caller: Caller) -> dict[str, Any]:
    return {
        "items": [
            {"name": ns, "role": (r.name.lower() if (r := caller.role_in(ns)) else None)}
            for ns in visible_namespaces(ctx.registry, ctx.snapshots, ctx.rules, caller)
        ]
    }


@router.get("/api/v1/overview", tags=["dashboard"])
async def overview(ctx: Context, caller: Caller) -> dict[str, Any]:
    apps = [a for a in ctx.registry.apps() if caller.can_view(a["namespace"])]
    rules = sum(n for ns, n in ctx.rules.per_namespace().items() if caller.can_view(ns))
    clients = visible_clients(
        [c.to_dict() for c in ctx.transport.clients(include_disconnected=False)], caller
    )
    out: dict[str, Any] = {
        "apps": len(apps),
        "instances": sum(a["instances"] for a in apps),
        "healthyInstances": sum(a["healthyInstances"] for a in apps),
        "rules": rules,
        "clients": len(clients),
        "revision": ctx.store.revision,
        "replica": ctx.replica_id,
        "namespaces": visible_namespaces(ctx.registry, ctx.snapshots, ctx.rules, caller),
    }
    if ctx.prometheus is not None:
        out.update(ctx.prometheus.summary())
    if ctx.metric_store is not None:
        out["metricSeries"] = len(ctx.metric_store.series)
    return out


def _first_label(instances: list[dict[str, Any]], label: str) -> str | None:
    return next((i["labels"].get(label) for i in instances if i["labels"].get(label)), None)


@router.get("/api/v1/apps/{namespace}/{app_name}", tags=["dashboard"])
async def app_detail(
    namespace: str, app_name: str, ctx: Context, caller: Caller, instances: bool = True
) -> dict[str, Any]:
    """One app: instances, service contracts, subscribed kinds and their ACK state, rules.

    ``instances=false`` leaves the instance list out (the counts stay): the dashboard pages it
    from ``/api/v1/instances`` instead, as an app may have thousands."""
    include_instances = instances
    if not caller.can_view(namespace):
        raise forbidden_namespace(caller.name, namespace)
    metric_store = ctx.metric_store
    listed = list_instances(ctx.registry, ctx.snapshots, caller, app_name, namespace)
    services, types = app_contracts(listed)
    exporters = metric_store.app_instances(namespace, app_name) if metric_store else []
    clients = visible_clients(await all_clients(ctx.store, ctx.transport, ctx.replica_id), caller)
    subscriptions = app_subscriptions(clients, namespace, app_name)
    rules = ctx.rules.of_app(namespace, app_name)
    if not listed and not subscriptions and not rules and not exporters:
        raise not_found(f"no app {app_name!r} in namespace {namespace}")
    info = metric_store.app_info().get((namespace, app_name), {}) if metric_store else {}
    detail = {
        "namespace": namespace,
        "app": app_name,
        "language": _first_label(listed, "language") or info.get("language", ""),
        "framework": _first_label(listed, "framework") or info.get("framework", ""),
        "sdk": info.get("sdk", ""),
        "instances": listed,
        "instanceCount": len(listed),
        "healthyInstances": sum(1 for i in listed if i.get("healthy")),
        "services": services,
        "types": types,
        "subscriptions": subscriptions,
        "rules": rules,
        "metricExporters": exporters,
        "metricResources": [k[2] for k in metric_store.keys(namespace, app_name)] if metric_store else [],
    }
    if not include_instances:
        del detail["instances"]
    return detail


# -- rules ----------------------------------------------------------------------------------------


def _selected_kinds(kind: str | None) -> tuple[KindInfo, ...]:
    if not kind:
        return RULE_KINDS
    try:
        return (kinds.lookup(kind),)
    except KeyError as err:
        raise bad_request(str(err.args[0]), "kind") from None


def _matches(obj: StoredObject, app: str | None, app_name: str | None, needle: str) -> bool:
    """The rules view's filters: the app, and a search text in the name or the app."""
    if app_name and app != app_name:
        return False
    return not needle or needle in obj.name.lower() or needle in (app or "").lower()


@router.get("/api/v1/rules", tags=["dashboard"])
async def rules(
    ctx: Context,
    caller: Caller,
    namespace: str | None = None,
    kind: str | None = None,
    app_name: str | None = Query(default=None, alias="app"),
    q: str | None = None,
    offset: int = Query(default=0, ge=0, le=2**31),
    limit: int = Query(default=100, ge=-(2**31), le=2**31),  # clamped to 1..1000 below
) -> dict[str, Any]:
    """Rule objects of every kind (or one), newest state, with rollout summaries; paged."""
    selected = _selected_kinds(kind)
    index = index_subscriptions(await all_clients(ctx.store, ctx.transport, ctx.replica_id))
    needle = (q or "").lower()
    items = []
    for info in selected:
        for obj in await ctx.store.list(info.full_kind, namespace or None):
            app = body_app(obj.body)
            if not caller.can_view(obj.namespace) or not _matches(obj, app, app_name, needle):
                continue
            meta = obj.body.get("metadata") or {}
            items.append(
                {
                    **kind_dict(info),
                    "namespace": obj.namespace,
                    "name": obj.name,
                    "app": app,
                    "resourceVersion": str(obj.revision),
                    "generation": meta.get("generation"),
                    "created": meta.get("creationTimestamp"),
                    "rollout": rollout(obj.namespace, app, info.full_kind, obj.revision, index)["summary"],
                }
            )
    items.sort(key=lambda r: (r["namespace"], r["kind"], r["name"]))
    limit = max(1, min(limit, 1000))
    return {"total": len(items), "offset": offset, "limit": limit, "items": items[offset : offset + limit]}


# -- validate -------------------------------------------------------------------------------------


class _Invalid(Exception):
    """The text is not one object of a known kind with a name: (field, message, where)."""

    def __init__(self, field: str, message: str, where: tuple[int, int] | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.message = message
        self.where = where


def _error(text: str, field: str, message: str, where: tuple[int, int] | None = None) -> dict[str, Any]:
    """One error of the validate view, located in the text (its field's line, else ``where``)."""
    if where is None and field:
        where = locate(text, parse_path(field))
    return {
        "field": field,
        "message": message,
        "line": where[0] if where else None,
        "column": where[1] if where else None,
    }


def _one_object(text: str, limits: ParserLimits) -> tuple[dict[str, Any], KindInfo, str]:
    """(object, kind, name) of the one named object of a known kind the text holds; _Invalid."""
    try:
        docs = [d for d in iter_yaml(text, limits) if d is not None]
    except YamlSyntaxError as err:
        raise _Invalid("", f"invalid YAML: {err.problem}", err.position) from None
    except LimitError as err:
        raise _Invalid(err.field, err.message, None if err.path else (1, 1)) from None
    if len(docs) != 1:
        raise _Invalid("", f"expected exactly one object, found {len(docs)}", (1, 1))
    body = docs[0]
    if not isinstance(body, dict):
        raise _Invalid("", "expected an object with apiVersion, kind, metadata and spec", (1, 1))
    for field in ("apiVersion", "kind"):
        if not isinstance(body.get(field), str) or not body.get(field):
            raise _Invalid(field, "required field is missing")
    try:
        kind = kinds.by_api_version_kind(body["apiVersion"], body["kind"])
    except KeyError:
        raise _Invalid("kind", f"unknown kind {body['apiVersion']}/{body['kind']}") from None
    meta = body.get("metadata")
    if not isinstance(meta, dict) or not meta.get("name"):
        raise _Invalid("metadata.name", "required field is missing")
    return body, kind, str(meta["name"])


def _user_fields_equal(current: dict[str, Any], checked: dict[str, Any]) -> bool:
    """Nothing a person writes differs (metadata other than the labels is the server's).

    Callers must not use this when the written text holds a secret in clear: the answer would
    tell whether it matches the stored one."""
    return {k: v for k, v in current.items() if k != "metadata"} == {
        k: v for k, v in checked.items() if k != "metadata"
    } and (current.get("metadata") or {}).get("labels") == checked["metadata"].get("labels")


async def check(ctx: ApiContext, text: str, default_ns: str, caller: Principal) -> dict[str, Any]:
    """The validate view of one YAML object: its errors, located, or what writing it would do.

    A secret written in clear always reads as changed (in ``diff`` and ``unchanged``): the
    answer never says whether it matches the stored one, to a viewer or anyone else."""
    limits = ctx.limits.parser
    try:
        if len(text) > 64 * 1024:  # parse a large text off the event loop
            body, kind, name = await asyncio.to_thread(_one_object, text, limits)
        else:
            body, kind, name = _one_object(text, limits)
    except _Invalid as err:
        return {"valid": False, "errors": [_error(text, err.field, err.message, err.where)]}
    namespace = str(body["metadata"].get("namespace") or default_ns)
    current = await ctx.store.get(kind.full_kind, namespace, name) if caller.can_view(namespace) else None
    try:
        checked = validate_object(kind, namespace, body, name, current.body if current else None)
    except ApiError as err:
        if not err.causes:
            return {"valid": False, "errors": [_error(text, "", err.message, (1, 1))]}
        errors = [
            _error(text, c["field"], c["message"], locate(text, parse_path(c["field"]))) for c in err.causes
        ]
        return {
            "valid": False,
            "errors": errors,
            "kind": kind_dict(kind),
            "namespace": namespace,
            "name": name,
            "object": redact(body),
        }
    return {
        "valid": True,
        "errors": [],
        "kind": kind_dict(kind),
        "namespace": namespace,
        "name": name,
        "exists": current is not None,
        "resourceVersion": str(current.revision) if current else None,
        "path": resource_path(kind, namespace, name),
        "canWrite": caller.can(
            namespace, Role.ADMIN if kind.full_kind == INSTANCE_KIND.full_kind else Role.EDITOR
        ),
        # The text as written (redacted secrets not restored): a secret in clear reads as changed.
        "diff": diff(
            current.body if current else None,
            with_url_metadata(kind, namespace, dict(body), name),
            compare=False,
        ),
        "object": redact(checked),
        "unchanged": current is not None
        and not clear_secrets(body)
        and _user_fields_equal(current.body, checked),
    }


@router.post("/api/v1/validate", tags=["dashboard"])
async def validate(request: Request, ctx: Context, caller: Caller) -> dict[str, Any]:
    """Check one YAML object as a write would, without writing it.

    Body: ``{"yaml": "...", "namespace": "default"}``. The answer lists each error with its
    field path and line, and gives the diff against the stored object."""
    data = await read_json(request, ctx.limits.parser)
    text = data.get("yaml") if isinstance(data, dict) else None
    if not isinstance(text, str):
        raise bad_request('body must be JSON: {"yaml": "..."}')
    return await check(ctx, text, str(data.get("namespace") or "default"), caller)

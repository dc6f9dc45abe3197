"""The web dashboard: static pages at ``/`` (``/ui/...``) and the JSON views they use.

The pages are hand-written HTML, CSS and JavaScript modules shipped in the package
(``api/static``); nothing is built or downloaded. JSON views (all under ``/api/v1``):

* ``whoami``, ``login``, ``logout``: the session (see :mod:`.auth`);
* ``overview``, ``namespaces``, ``apps/{namespace}/{app}``: what the registry and the transport
  know about apps, their instances, contracts and subscriptions;
* ``rules``: every rule object across kinds (paged, filtered), with its rollout summary;
* ``validate``: parse and check YAML the way a write would, with each error's line, and the diff
  against the stored object (nothing is written);
* ``metrics/apps``, ``metrics/series``, ``metrics/history``: the live and downsampled metrics
  the data planes export over OTLP.

``GET /metrics`` serves the control plane's own Prometheus metrics.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from fastapi import FastAPI, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.staticfiles import StaticFiles

from opensergo.controlplane.api.auth import (
    SESSION_COOKIE,
    AuthConfig,
    AuthMiddleware,
    Principal,
    Role,
    csrf_token,
    principal_of,
    session_value,
)
from opensergo.controlplane.api.redact import redact
from opensergo.controlplane.api.rest import (
    ApiError,
    _validate,
    all_clients,
    list_instances,
    visible_clients,
)
from opensergo.controlplane.api.views import body_app, diff, index_subscriptions, locate, rollout
from opensergo.controlplane.metadata import INSTANCE_KIND, MetadataRegistry
from opensergo.controlplane.snapshots import SnapshotCache
from opensergo.controlplane.store.base import Store
from opensergo.controlplane.transport import TransportService
from opensergo.spec import kinds
from opensergo.spec.kinds import KindInfo

if TYPE_CHECKING:
    from opensergo.controlplane.metrics.history import MetricsHistory
    from opensergo.controlplane.metrics.prometheus import ControlPlaneMetrics
    from opensergo.controlplane.metrics.store import MetricStore

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


class _YamlLoader(yaml.SafeLoader):
    """SafeLoader that keeps timestamps as strings (as the spec loader does)."""


_YamlLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


@dataclass
class Context:
    store: Store
    snapshots: SnapshotCache
    transport: TransportService
    registry: MetadataRegistry
    replica_id: str
    auth: AuthConfig | None
    metric_store: MetricStore | None
    history: MetricsHistory | None
    prometheus: ControlPlaneMetrics | None


def parse_path(field: str) -> tuple[str | int, ...]:
    """``spec.strategies[0].kind`` -> ("spec", "strategies", 0, "kind")."""
    return tuple(
        int(m.group(2)) if m.group(2) is not None else m.group(1) for m in _PATH_PART.finditer(field)
    )


def kind_dict(kind: KindInfo) -> dict[str, Any]:
    return {
        "group": kind.group,
        "version": kind.version,
        "kind": kind.kind,
        "plural": kind.plural,
        "fullName": kind.full_kind,
    }


def rest_path(kind: KindInfo, namespace: str, name: str | None = None) -> str:
    path = f"/apis/{kind.group}/{kind.version}/namespaces/{namespace}/{kind.plural}"
    return f"{path}/{name}" if name else path


RULE_KINDS = tuple(k for k in kinds.all_kinds() if k.full_kind != INSTANCE_KIND.full_kind)


def _ui_response(path: Path, media_type: str | None = None) -> FileResponse:
    response = FileResponse(path, media_type=media_type)
    response.headers.update(_SECURITY_HEADERS)
    response.headers["Cache-Control"] = "no-cache"
    return response


class _UiStatic(StaticFiles):
    async def get_response(self, path: str, scope: Any) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(_SECURITY_HEADERS)
        response.headers["Cache-Control"] = "no-cache"
        return response


def install(app: FastAPI, ctx: Context) -> None:
    """Add the dashboard's pages and JSON views to ``app``."""
    auth = ctx.auth

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return _ui_response(STATIC_DIR / "index.html", "text/html")

    app.mount("/ui", _UiStatic(directory=STATIC_DIR), name="ui")

    # -- session ------------------------------------------------------------------------------

    def _cookie_expiry(request: Request) -> int | None:
        value = request.cookies.get(SESSION_COOKIE)
        if not value:
            return None
        try:
            return AuthMiddleware.session_expiry(value)
        except (IndexError, ValueError):
            return None

    @app.get("/api/v1/whoami", tags=["dashboard"])
    async def whoami(request: Request) -> dict[str, Any]:
        """The caller: auth on or off, user name and roles, and the CSRF token of the session."""
        if auth is None or not auth.enabled:
            return {
                "authEnabled": False,
                "authenticated": True,
                "user": {"name": "anonymous", "roles": {"*": "admin"}},
            }
        principal = principal_of(request.state)
        if principal.via not in ("bearer", "cookie"):
            return {"authEnabled": True, "authenticated": False}
        out: dict[str, Any] = {"authEnabled": True, "authenticated": True, "user": principal.to_dict()}
        expiry = _cookie_expiry(request)
        if principal.via == "cookie" and expiry is not None:
            out["csrfToken"] = csrf_token(principal, expiry)
            out["expires"] = expiry
        return out

    @app.post("/api/v1/login", tags=["dashboard"])
    async def login(request: Request) -> JSONResponse:
        """Exchange a token for a session cookie (HttpOnly, SameSite=Strict) and a CSRF token."""
        if auth is None or not auth.enabled:
            return JSONResponse({"authEnabled": False, "authenticated": True})
        try:
            data = await request.json()
        except ValueError:
            data = None
        token = data.get("token") if isinstance(data, dict) else None
        principal = auth.tokens.authenticate(str(token).strip()) if token else None
        if principal is None:
            raise ApiError(401, "Unauthorized", "invalid token")
        expires = int(time.time() + auth.session_ttl)
        response = JSONResponse(
            {
                "authEnabled": True,
                "authenticated": True,
                "user": principal.to_dict(),
                "csrfToken": csrf_token(principal, expires),
                "expires": expires,
            }
        )
        secure = request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https"
        response.set_cookie(
            SESSION_COOKIE,
            session_value(principal, expires),
            max_age=int(auth.session_ttl),
            httponly=True,
            samesite="strict",
            secure=secure,
            path="/",
        )
        return response

    @app.post("/api/v1/logout", tags=["dashboard"])
    async def logout() -> JSONResponse:
        response = JSONResponse({"authenticated": False})
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
        return response

    # -- overview, apps -----------------------------------------------------------------------

    rule_index: dict[str, Any] = {"revision": -1}

    def _rule_index() -> dict[str, Any]:
        """Rules per namespace and per (namespace, app), rebuilt only when the store changed."""
        if rule_index["revision"] != ctx.snapshots.revision:
            per_ns: dict[str, int] = {}
            per_app: dict[tuple[str, str], list[dict[str, Any]]] = {}
            for kind in RULE_KINDS:
                for obj in ctx.snapshots.objects(kind.full_kind):
                    per_ns[obj.namespace] = per_ns.get(obj.namespace, 0) + 1
                    if obj.app:
                        per_app.setdefault((obj.namespace, obj.app), []).append(
                            {
                                **kind_dict(kind),
                                "namespace": obj.namespace,
                                "name": obj.name,
                                "resourceVersion": obj.metadata.resourceVersion,
                            }
                        )
            rule_index.update(revision=ctx.snapshots.revision, per_ns=per_ns, per_app=per_app)
        return rule_index

    def _namespaces(principal: Principal) -> list[str]:
        found = {"default"}
        found.update(i.namespace for i in ctx.registry.instances())
        found.update(s.key.namespace for s in ctx.snapshots.groups())
        found.update(_rule_index()["per_ns"])
        return sorted(ns for ns in found if principal.can_view(ns))

    @app.get("/api/v1/namespaces", tags=["dashboard"])
    async def namespaces(request: Request) -> dict[str, Any]:
        principal = principal_of(request.state)
        return {
            "items": [
                {"name": ns, "role": (r.name.lower() if (r := principal.role_in(ns)) else None)}
                for ns in _namespaces(principal)
            ]
        }

    @app.get("/api/v1/overview", tags=["dashboard"])
    async def overview(request: Request) -> dict[str, Any]:
        principal = principal_of(request.state)
        apps = [a for a in ctx.registry.apps() if principal.can_view(a["namespace"])]
        rules = sum(n for ns, n in _rule_index()["per_ns"].items() if principal.can_view(ns))
        clients = visible_clients(
            [c.to_dict() for c in ctx.transport.clients(include_disconnected=False)], principal
        )
        out: dict[str, Any] = {
            "apps": len(apps),
            "instances": sum(a["instances"] for a in apps),
            "healthyInstances": sum(a["healthyInstances"] for a in apps),
            "rules": rules,
            "clients": len(clients),
            "revision": ctx.store.revision,
            "replica": ctx.replica_id,
            "namespaces": _namespaces(principal),
        }
        if ctx.prometheus is not None:
            out.update(ctx.prometheus.summary())
        if ctx.metric_store is not None:
            out["metricSeries"] = len(ctx.metric_store.series)
        return out

    @app.get("/api/v1/apps/{namespace}/{app_name}", tags=["dashboard"])
    async def app_detail(namespace: str, app_name: str, request: Request) -> dict[str, Any]:
        """One app: instances, service contracts, subscribed kinds and their ACK state, rules."""
        principal = principal_of(request.state)
        if not principal.can_view(namespace):
            raise ApiError(403, "Forbidden", f"{principal.name} may not view namespace {namespace!r}")
        instances = list_instances(ctx.registry, ctx.snapshots, principal, app_name, namespace)
        services: dict[str, dict[str, Any]] = {}
        types: dict[str, dict[str, Any]] = {}
        for inst in instances:
            for md in inst.get("serviceMetadata", []):
                contract = md.get("serviceContract") or {}
                for svc in contract.get("services", []):
                    entry = services.setdefault(
                        svc.get("name", ""),
                        {
                            "name": svc.get("name", ""),
                            "description": svc.get("description", ""),
                            "protocols": md.get("protocols", []),
                            "methods": svc.get("methods", []),
                            "instances": 0,
                        },
                    )
                    entry["instances"] += 1
                for t in contract.get("types", []):
                    types.setdefault(t.get("name", ""), t)
        exporters = ctx.metric_store.app_instances(namespace, app_name) if ctx.metric_store else []
        clients = visible_clients(await all_clients(ctx.store, ctx.transport, ctx.replica_id), principal)
        subscriptions: dict[str, dict[str, Any]] = {}
        for client in clients:
            if not client.get("connected"):
                continue
            for sub in client.get("subscriptions", []):
                if sub["namespace"] != namespace or sub["app"] != app_name:
                    continue
                entry = subscriptions.setdefault(
                    sub["kind"],
                    {"kind": sub["kind"], "clients": 0, "states": {}, "version": 0},
                )
                entry["clients"] += 1
                entry["states"][sub["state"]] = entry["states"].get(sub["state"], 0) + 1
                entry["version"] = max(entry["version"], sub.get("pushedVersion") or 0)
        rules = list(_rule_index()["per_app"].get((namespace, app_name), []))
        info = ctx.metric_store.app_info().get((namespace, app_name), {}) if ctx.metric_store else {}
        language = next((i["labels"].get("language") for i in instances if i["labels"].get("language")), None)
        framework = next(
            (i["labels"].get("framework") for i in instances if i["labels"].get("framework")), None
        )
        if not instances and not subscriptions and not rules and not exporters:
            raise ApiError(404, "NotFound", f"no app {app_name!r} in namespace {namespace}")
        return {
            "namespace": namespace,
            "app": app_name,
            "language": language or info.get("language", ""),
            "framework": framework or info.get("framework", ""),
            "sdk": info.get("sdk", ""),
            "instances": instances,
            "healthyInstances": sum(1 for i in instances if i.get("healthy")),
            "services": sorted(services.values(), key=lambda s: str(s["name"])),
            "types": [types[k] for k in sorted(types)],
            "subscriptions": sorted(subscriptions.values(), key=lambda s: str(s["kind"])),
            "rules": rules,
            "metricExporters": exporters,
            "metricResources": [k[2] for k in ctx.metric_store.keys(namespace, app_name)]
            if ctx.metric_store
            else [],
        }

    # -- rules --------------------------------------------------------------------------------

    @app.get("/api/v1/rules", tags=["dashboard"])
    async def rules(
        request: Request,
        namespace: str | None = None,
        kind: str | None = None,
        app_name: str | None = Query(default=None, alias="app"),
        q: str | None = None,
        offset: int = 0,
        limit: int = 100,
    ) -> dict[str, Any]:
        """Rule objects of every kind (or one), newest state, with rollout summaries; paged."""
        principal = principal_of(request.state)
        selected: tuple[KindInfo, ...] = RULE_KINDS
        if kind:
            try:
                selected = (kinds.lookup(kind),)
            except KeyError as err:
                raise ApiError(400, "BadRequest", str(err.args[0])) from None
        index = index_subscriptions(await all_clients(ctx.store, ctx.transport, ctx.replica_id))
        needle = (q or "").lower()
        items = []
        for info in selected:
            for obj in await ctx.store.list(info.full_kind, namespace or None):
                if not principal.can_view(obj.namespace):
                    continue
                app = body_app(obj.body)
                if app_name and app != app_name:
                    continue
                if needle and needle not in obj.name.lower() and needle not in (app or "").lower():
                    continue
                meta = obj.body.get("metadata") or {}
                summary = rollout(obj.namespace, app, info.full_kind, obj.revision, index)["summary"]
                items.append(
                    {
                        **kind_dict(info),
                        "namespace": obj.namespace,
                        "name": obj.name,
                        "app": app,
                        "resourceVersion": str(obj.revision),
                        "generation": meta.get("generation"),
                        "created": meta.get("creationTimestamp"),
                        "rollout": summary,
                    }
                )
        items.sort(key=lambda r: (r["namespace"], r["kind"], r["name"]))
        limit = max(1, min(limit, 1000))
        return {
            "total": len(items),
            "offset": offset,
            "limit": limit,
            "items": items[offset : offset + limit],
        }

    @app.post("/api/v1/validate", tags=["dashboard"])
    async def validate(request: Request) -> dict[str, Any]:
        """Check one YAML object as a write would, without writing it.

        Body: ``{"yaml": "...", "namespace": "default"}``. The answer lists each error with its
        field path and line, and gives the diff against the stored object."""
        principal = principal_of(request.state)
        try:
            data = await request.json()
        except ValueError:
            raise ApiError(400, "BadRequest", 'body must be JSON: {"yaml": "..."}') from None
        text = data.get("yaml") if isinstance(data, dict) else None
        if not isinstance(text, str):
            raise ApiError(400, "BadRequest", 'body must be JSON: {"yaml": "..."}')
        default_ns = str(data.get("namespace") or "default")
        return await _check(text, default_ns, principal)

    async def _check(text: str, default_ns: str, principal: Principal) -> dict[str, Any]:
        def failed(field: str, message: str, where: tuple[int, int] | None = None) -> dict[str, Any]:
            if where is None and field:
                where = locate(text, parse_path(field))
            return {
                "valid": False,
                "errors": [
                    {
                        "field": field,
                        "message": message,
                        "line": where[0] if where else None,
                        "column": where[1] if where else None,
                    }
                ],
            }

        try:
            docs = [d for d in yaml.load_all(text, Loader=_YamlLoader) if d is not None]
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            problem = getattr(err, "problem", None) or str(err)
            where = (mark.line + 1, mark.column + 1) if mark is not None else None
            return failed("", f"invalid YAML: {problem}", where)
        if len(docs) != 1:
            return failed("", f"expected exactly one object, found {len(docs)}", (1, 1))
        body = docs[0]
        if not isinstance(body, dict):
            return failed("", "expected an object with apiVersion, kind, metadata and spec", (1, 1))
        for field in ("apiVersion", "kind"):
            if not isinstance(body.get(field), str) or not body.get(field):
                return failed(field, "required field is missing")
        try:
            kind = kinds.by_api_version_kind(body["apiVersion"], body["kind"])
        except KeyError:
            return failed("kind", f"unknown kind {body['apiVersion']}/{body['kind']}")
        meta = body.get("metadata")
        if not isinstance(meta, dict) or not meta.get("name"):
            return failed("metadata.name", "required field is missing")
        namespace = str(meta.get("namespace") or default_ns)
        name = str(meta["name"])
        current = (
            await ctx.store.get(kind.full_kind, namespace, name) if principal.can_view(namespace) else None
        )
        try:
            checked = _validate(kind, namespace, body, name, current.body if current else None)
        except ApiError as err:
            if not err.causes:
                return failed("", err.message, (1, 1))
            errors: list[dict[str, Any]] = []
            out: dict[str, Any] = {"valid": False, "errors": errors}
            for cause in err.causes:
                where = locate(text, parse_path(cause["field"]))
                errors.append(
                    {
                        "field": cause["field"],
                        "message": cause["message"],
                        "line": where[0] if where else None,
                        "column": where[1] if where else None,
                    }
                )
            out.update(kind=kind_dict(kind), namespace=namespace, name=name, object=redact(body))
            return out
        return {
            "valid": True,
            "errors": [],
            "kind": kind_dict(kind),
            "namespace": namespace,
            "name": name,
            "exists": current is not None,
            "resourceVersion": str(current.revision) if current else None,
            "path": rest_path(kind, namespace, name),
            "canWrite": principal.can(
                namespace, Role.ADMIN if kind.full_kind == INSTANCE_KIND.full_kind else Role.EDITOR
            ),
            "diff": diff(current.body if current else None, checked),
            "object": redact(checked),
            "unchanged": current is not None
            and {k: v for k, v in current.body.items() if k != "metadata"}
            == {k: v for k, v in checked.items() if k != "metadata"}
            and (current.body.get("metadata") or {}).get("labels") == checked["metadata"].get("labels"),
        }

    # -- metrics ------------------------------------------------------------------------------

    def _metric_store() -> MetricStore:
        if ctx.metric_store is None:
            raise ApiError(404, "NotFound", "metrics are not enabled on this control plane")
        return ctx.metric_store

    @app.get("/api/v1/metrics/apps", tags=["metrics"])
    async def metrics_apps(request: Request, window: int = 10) -> dict[str, Any]:
        """Per app (and resource): QPS, RT and breaker figures over the last ``window`` seconds."""
        principal = principal_of(request.state)
        store = _metric_store()
        end = int(store.now()) - 1
        start = end - max(1, min(window, store.retention))
        by_app: dict[tuple[str, str], dict[str, Any]] = {}
        for key in store.keys(None, None):
            if not principal.can_view(key[0]):
                continue
            t = store.totals(key, start, end)
            entry = by_app.setdefault(
                (key[0], key[1]),
                {"namespace": key[0], "app": key[1], "passQps": 0.0, "blockQps": 0.0, "errorQps": 0.0,
                 "resources": 0, "breakersOpen": 0, "_rt": 0.0, "_n": 0.0},
            )  # fmt: skip
            entry["passQps"] += t["passQps"]
            entry["blockQps"] += t["blockQps"]
            entry["errorQps"] += t["errorQps"]
            entry["resources"] += 1
            entry["_rt"] += t["rtSum"]
            entry["_n"] += t["completed"]
            entry["breakersOpen"] += sum(b["instances"]["open"] for b in store.breakers(key))
        items = []
        for entry in by_app.values():
            n, rt = entry.pop("_n"), entry.pop("_rt")
            entry["avgRt"] = round(rt / n, 3) if n else None
            for k in ("passQps", "blockQps", "errorQps"):
                entry[k] = round(entry[k], 3)
            items.append(entry)
        return {"window": window, "items": sorted(items, key=lambda e: (e["namespace"], e["app"]))}

    @app.get("/api/v1/metrics/series", tags=["metrics"])
    async def metrics_series(
        request: Request,
        namespace: str,
        app_name: str = Query(alias="app"),
        resource: str | None = None,
        window: int = 60,
    ) -> dict[str, Any]:
        """Per-second points of each resource of an app for the last ``window`` seconds."""
        principal = principal_of(request.state)
        if not principal.can_view(namespace):
            raise ApiError(403, "Forbidden", f"{principal.name} may not view namespace {namespace!r}")
        store = _metric_store()
        now = store.now()
        end = int(now) - 1
        window = max(1, min(window, store.retention))
        start = end - window
        out = []
        for key in store.keys(namespace, app_name):
            if resource is not None and key[2] != resource:
                continue
            out.append(
                {
                    "resource": key[2],
                    "points": store.points(key, start, end),
                    "last10s": store.totals(key, end - 10, end),
                    "concurrency": store.concurrency(key, now),
                    "breakers": store.breakers(key, now),
                }
            )
        return {"namespace": namespace, "app": app_name, "start": start, "end": end, "resources": out}

    @app.get("/api/v1/metrics/history", tags=["metrics"])
    async def metrics_history(
        request: Request,
        namespace: str,
        app_name: str = Query(alias="app"),
        resource: str | None = None,
        start: int | None = None,
        end: int | None = None,
    ) -> dict[str, Any]:
        """Downsampled history (one point per resolution period) from the on-disk store."""
        principal = principal_of(request.state)
        if not principal.can_view(namespace):
            raise ApiError(403, "Forbidden", f"{principal.name} may not view namespace {namespace!r}")
        history = ctx.history
        now = int(time.time())
        end = end if end is not None else now
        start = start if start is not None else end - 86400
        items = history.query(namespace, app_name, resource, start, end) if history is not None else []
        return {
            "namespace": namespace,
            "app": app_name,
            "resolution": history.resolution if history is not None else None,
            "items": items,
        }

    @app.get("/metrics", tags=["meta"], include_in_schema=True)
    async def prometheus_metrics() -> Response:
        """The control plane's own metrics in the Prometheus text format."""
        if ctx.prometheus is None:
            raise ApiError(404, "NotFound", "Prometheus metrics are not enabled on this control plane")
        from opensergo.controlplane.metrics.prometheus import CONTENT_TYPE

        return Response(ctx.prometheus.render(), media_type=CONTENT_TYPE)

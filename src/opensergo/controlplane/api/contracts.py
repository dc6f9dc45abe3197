"""Service contracts and endpoints of an app (``/api/v1/apps/{namespace}/{app}/...``), read from
the ServiceContract and ServiceInstance objects every replica holds in its snapshot cache.

* ``contracts``: every stored version (oldest first), which ones live instances report now;
* ``contracts/{hash}``: one version; ``contracts/diff?from=&to=``: what changed between two;
* ``endpoints``: the methods of the current contracts as guardable resources (``GET:/users/{id}``,
  ``/pkg.Service/Method``), each with its live figures and the FaultToleranceRules targeting it.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from opensergo.controlplane.api.context import ApiContext, Caller, Context
from opensergo.controlplane.api.errors import forbidden_namespace, not_found
from opensergo.controlplane.contracts import CONTRACT_KIND, diff_contracts
from opensergo.controlplane.metadata import INSTANCE_KIND
from opensergo.spec.base import Resource
from opensergo.spec.discovery import ServiceContract, ServiceInstance
from opensergo.spec.faulttolerance import FaultToleranceRule

router = APIRouter()

_RULE_KIND = f"{FaultToleranceRule.api_version()}/{FaultToleranceRule.KIND}"


def _versions(ctx: ApiContext, namespace: str, app: str) -> list[ServiceContract]:
    found = [
        obj
        for obj in ctx.snapshots.objects(CONTRACT_KIND.full_kind)
        if isinstance(obj, ServiceContract) and obj.namespace == namespace and obj.spec.app == app
    ]
    return sorted(found, key=lambda o: int(o.metadata.resourceVersion or 0))


def _current_hashes(ctx: ApiContext, namespace: str, app: str) -> dict[str, int]:
    """hash -> live instances reporting it."""
    counts: dict[str, int] = {}
    for obj in ctx.snapshots.objects(INSTANCE_KIND.full_kind):
        if isinstance(obj, ServiceInstance) and obj.namespace == namespace and obj.spec.app == app:
            for digest in obj.spec.contracts:
                counts[digest] = counts.get(digest, 0) + 1
    return counts


def _check(caller: Any, namespace: str) -> None:
    if not caller.can_view(namespace):
        raise forbidden_namespace(caller.name, namespace)


def _summary(obj: ServiceContract, current: dict[str, int]) -> dict[str, Any]:
    spec = obj.spec
    return {
        "name": obj.name,
        "hash": spec.hash,
        "revision": int(obj.metadata.resourceVersion or 0),
        "created": obj.metadata.creationTimestamp,
        "protocols": spec.protocols,
        "services": len(spec.services),
        "methods": sum(len(s.methods) for s in spec.services),
        "types": len(spec.types),
        "instances": current.get(spec.hash, 0),
    }


@router.get("/api/v1/apps/{namespace}/{app_name}/contracts", tags=["dashboard"])
async def app_contract_versions(
    namespace: str, app_name: str, ctx: Context, caller: Caller
) -> dict[str, Any]:
    """Every stored version of the app's contracts, oldest first; ``instances`` > 0 marks the
    versions live instances report now."""
    _check(caller, namespace)
    current = _current_hashes(ctx, namespace, app_name)
    versions = [_summary(obj, current) for obj in _versions(ctx, namespace, app_name)]
    return {"namespace": namespace, "app": app_name, "current": sorted(current), "versions": versions}


def _version(ctx: ApiContext, namespace: str, app: str, digest: str) -> ServiceContract:
    for obj in _versions(ctx, namespace, app):
        if obj.spec.hash == digest or (obj.spec.hash.startswith(digest) and len(digest) >= 8):
            return obj
    raise not_found(f"no contract {digest} of {namespace}/{app}")


@router.get("/api/v1/apps/{namespace}/{app_name}/contracts/diff", tags=["dashboard"])
async def app_contract_diff(
    namespace: str,
    app_name: str,
    ctx: Context,
    caller: Caller,
    old: str = Query(alias="from"),
    new: str = Query(alias="to"),
) -> dict[str, Any]:
    """What changed from contract ``from`` to contract ``to`` (hashes or 8+ character prefixes)."""
    _check(caller, namespace)
    before = _version(ctx, namespace, app_name, old)
    after = _version(ctx, namespace, app_name, new)
    return {
        "from": before.spec.hash,
        "to": after.spec.hash,
        **diff_contracts(before.spec.model_dump(mode="json"), after.spec.model_dump(mode="json")),
    }


@router.get("/api/v1/apps/{namespace}/{app_name}/contracts/{digest}", tags=["dashboard"])
async def app_contract(
    namespace: str, app_name: str, digest: str, ctx: Context, caller: Caller
) -> dict[str, Any]:
    _check(caller, namespace)
    obj = _version(ctx, namespace, app_name, digest)
    return {
        **_summary(obj, _current_hashes(ctx, namespace, app_name)),
        "spec": obj.spec.model_dump(mode="json"),
    }


def endpoint_resource(protocols: list[str], service: str, method: dict[str, Any], index: int) -> str:
    """The resource name the integrations guard the endpoint as."""
    paths, verbs = method.get("httpPaths") or [], method.get("httpMethods") or []
    if index < len(paths):
        verb = verbs[index] if index < len(verbs) else "GET"
        return f"{verb}:{paths[index]}"
    return f"/{service}/{method['name']}"


def _rules_by_target(ctx: ApiContext, namespace: str, app: str) -> dict[str, list[dict[str, str]]]:
    out: dict[str, list[dict[str, str]]] = {}
    for obj in ctx.snapshots.objects(_RULE_KIND):
        if not isinstance(obj, FaultToleranceRule) or obj.namespace != namespace or not _applies(obj, app):
            continue
        for target in obj.spec.targets:
            out.setdefault(target.targetResourceName, []).append(
                {
                    "name": obj.name,
                    "strategies": ", ".join(f"{s.kind} {s.name}" for s in obj.spec.strategies),
                }
            )
    return out


def _applies(obj: Resource, app: str) -> bool:
    return obj.app in (None, app)


@router.get("/api/v1/apps/{namespace}/{app_name}/endpoints", tags=["dashboard"])
async def app_endpoints(
    namespace: str, app_name: str, ctx: Context, caller: Caller, window: int = 10
) -> dict[str, Any]:
    """Each method of the app's current contracts as a resource, with its live figures over the
    last ``window`` seconds and the FaultToleranceRules that target it."""
    _check(caller, namespace)
    current = _current_hashes(ctx, namespace, app_name)
    versions = _versions(ctx, namespace, app_name)
    live = [v for v in versions if v.spec.hash in current] or versions[-1:]
    rules = _rules_by_target(ctx, namespace, app_name)
    store = ctx.metric_store
    end = int(store.now()) - 1 if store is not None else 0
    seen: set[str] = set()
    items = []
    for version in live:
        spec = version.spec.model_dump(mode="json")
        for service in spec["services"]:
            for method in service["methods"]:
                for index in range(max(1, len(method.get("httpPaths") or []))):
                    resource = endpoint_resource(spec["protocols"], service["name"], method, index)
                    if resource in seen:
                        continue
                    seen.add(resource)
                    figures = (
                        store.totals((namespace, app_name, resource), end - max(1, window), end)
                        if store is not None
                        else None
                    )
                    items.append(
                        {
                            "resource": resource,
                            "service": service["name"],
                            "method": method["name"],
                            "description": method.get("description", ""),
                            "protocols": spec["protocols"],
                            "inputTypes": method.get("inputTypes", []),
                            "outputTypes": method.get("outputTypes", []),
                            "contract": spec["hash"],
                            "metrics": None
                            if figures is None or not figures["seen"]
                            else {
                                k: figures[k] for k in ("passQps", "blockQps", "errorQps", "avgRt", "p99Rt")
                            },
                            "rules": rules.get(resource, []),
                        }
                    )
    return {
        "namespace": namespace,
        "app": app_name,
        "contracts": [v.spec.hash for v in live],
        "window": window,
        "items": items,
    }

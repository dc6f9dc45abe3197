"""``opensergo webhook``: a mutating admission webhook that bootstraps pods for OpenSergo.

For each pod the Kubernetes API server sends (``AdmissionReview`` v1, ``POST /mutate``), the
webhook answers with a JSON patch that adds to every container:

* ``OPENSERGO_BOOTSTRAP_CONFIG``: ``{"endpoint": <control plane>, "namespace": <pod namespace>,
  "app": <app>, "labels": {"version": ...}}`` (plus ``"tls": true`` when configured);
* ``OPENSERGO_APP``: the app, from the pod annotation ``opensergo.io/app``, else the label
  ``app.kubernetes.io/name``, else the label ``app``;

and, when the pod is annotated ``opensergo.io/launcher: "true"`` (or the webhook runs with
``--launcher``), prefixes each container's ``command`` with ``opensergo-run --`` so an unmodified
Python program is governed (containers that only set ``args`` keep their image's entrypoint and
are listed in the annotation ``opensergo.io/launcher-skipped``).

Which pods: the ``MutatingWebhookConfiguration`` (deploy/kubernetes/webhook.yaml, the Helm
chart) sends pods of namespaces labelled ``opensergo.io/inject: enabled`` and pods labelled
``opensergo.io/inject: enabled``. A pod annotated ``opensergo.io/inject: "disabled"`` is left
alone, and a container that sets ``OPENSERGO_BOOTSTRAP_CONFIG`` itself keeps its own. The
webhook never refuses a pod: a pod it cannot patch is admitted unchanged (``failurePolicy:
Ignore`` in the manifests, so pods are created even while the webhook is down).
"""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

log = logging.getLogger(__name__)

__all__ = ["InjectionConfig", "create_webhook_app", "mutate", "patch_for"]

INJECT = "opensergo.io/inject"
APP_ANNOTATION = "opensergo.io/app"
LAUNCHER = "opensergo.io/launcher"
INJECTED = "opensergo.io/injected"
LAUNCHER_SKIPPED = "opensergo.io/launcher-skipped"
BOOTSTRAP_ENV = "OPENSERGO_BOOTSTRAP_CONFIG"
LAUNCHER_COMMAND = ("opensergo-run", "--")


@dataclass(frozen=True)
class InjectionConfig:
    endpoint: str
    """The control plane's gRPC address as pods reach it (``opensergo.opensergo-system:10246``)."""
    launcher: bool = False
    """Prefix commands with ``opensergo-run --`` for every pod (not only annotated ones)."""
    tls: bool = False
    """Pods connect with TLS (verified by the system roots)."""


def _escape(key: str) -> str:
    """A JSON pointer token (RFC 6901)."""
    return key.replace("~", "~0").replace("/", "~1")


def app_of(pod: dict[str, Any]) -> str | None:
    meta = pod.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    labels = meta.get("labels") or {}
    for value in (annotations.get(APP_ANNOTATION), labels.get("app.kubernetes.io/name"), labels.get("app")):
        if isinstance(value, str) and value:
            return value
    return None


def patch_for(pod: dict[str, Any], namespace: str, config: InjectionConfig) -> list[dict[str, Any]]:  # noqa: C901 (complexity debt, see pyproject [tool.ruff.lint.mccabe])
    """The JSON patch for one pod (empty: leave it as it is)."""
    meta = pod.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    if str(annotations.get(INJECT, "")).lower() in ("disabled", "false") or annotations.get(INJECTED):
        return []
    app = app_of(pod)
    bootstrap: dict[str, Any] = {"endpoint": config.endpoint, "namespace": namespace}
    if app:
        bootstrap["app"] = app
    version = (meta.get("labels") or {}).get("version")
    if isinstance(version, str) and version:
        bootstrap["labels"] = {"version": version}
    if config.tls:
        bootstrap["tls"] = True
    env = [{"name": BOOTSTRAP_ENV, "value": json.dumps(bootstrap, separators=(",", ":"))}]
    if app:
        env.append({"name": "OPENSERGO_APP", "value": app})
    launcher = config.launcher or str(annotations.get(LAUNCHER, "")).lower() == "true"
    ops: list[dict[str, Any]] = []
    skipped = []
    for index, container in enumerate((pod.get("spec") or {}).get("containers") or []):
        existing = container.get("env")
        names = {e.get("name") for e in existing or []}
        if BOOTSTRAP_ENV in names:
            continue  # configured by hand
        base = f"/spec/containers/{index}"
        if existing is None:
            ops.append({"op": "add", "path": f"{base}/env", "value": env})
        else:
            ops.extend(
                {"op": "add", "path": f"{base}/env/-", "value": item}
                for item in env
                if item["name"] not in names
            )
        if launcher:
            command = container.get("command")
            if command and list(command[: len(LAUNCHER_COMMAND)]) != list(LAUNCHER_COMMAND):
                ops.append(
                    {"op": "replace", "path": f"{base}/command", "value": [*LAUNCHER_COMMAND, *command]}
                )
            elif not command:
                skipped.append(str(container.get("name", index)))
    if not ops:
        return []
    added = {INJECTED: "true", **({LAUNCHER_SKIPPED: ",".join(skipped)} if skipped else {})}
    if "annotations" not in meta or meta.get("annotations") is None:
        ops.append({"op": "add", "path": "/metadata/annotations", "value": added})
    else:
        ops.extend(
            {"op": "add", "path": f"/metadata/annotations/{_escape(k)}", "value": v} for k, v in added.items()
        )
    return ops


def mutate(review: dict[str, Any], config: InjectionConfig) -> dict[str, Any]:
    """The AdmissionReview answer to an AdmissionReview request (always allowed)."""
    request = review.get("request") or {}
    response: dict[str, Any] = {"uid": request.get("uid", ""), "allowed": True}
    try:
        obj = request.get("object") or {}
        if request.get("kind", {}).get("kind") == "Pod" and request.get("operation", "CREATE") == "CREATE":
            namespace = request.get("namespace") or (obj.get("metadata") or {}).get("namespace") or "default"
            ops = patch_for(obj, namespace, config)
            if ops:
                response["patchType"] = "JSONPatch"
                response["patch"] = base64.b64encode(json.dumps(ops).encode()).decode()
                log.info(
                    "injected OpenSergo bootstrap into a pod of %s (%s)", namespace, app_of(obj) or "no app"
                )
    except Exception:  # never block a pod over our own problem
        log.exception("cannot build the injection patch; admitting the pod unchanged")
        response.pop("patch", None)
        response.pop("patchType", None)
    return {
        "apiVersion": review.get("apiVersion", "admission.k8s.io/v1"),
        "kind": "AdmissionReview",
        "response": response,
    }


def create_webhook_app(config: InjectionConfig) -> Starlette:
    async def handle(request: Request) -> JSONResponse:
        try:
            review = await request.json()
        except ValueError:
            return JSONResponse({"message": "expected an AdmissionReview"}, status_code=400)
        return JSONResponse(mutate(review, config))

    async def healthz(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    return Starlette(routes=[Route("/mutate", handle, methods=["POST"]), Route("/healthz", healthz)])


def serve(config: InjectionConfig, host: str, port: int, cert: Path, key: Path) -> None:
    """Run the webhook over HTTPS (the API server only calls webhooks over TLS)."""
    import uvicorn

    uvicorn.run(
        create_webhook_app(config),
        host=host,
        port=port,
        ssl_certfile=str(cert),
        ssl_keyfile=str(key),
        log_level="warning",
    )

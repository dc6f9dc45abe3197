"""The admission webhook's patch for a pod (pure), and its HTTP answer."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import httpx
import pytest

from opensergo.controlplane.webhook import InjectionConfig, create_webhook_app, mutate, patch_for

pytestmark = pytest.mark.unit

CONFIG = InjectionConfig("opensergo.opensergo-system:10246")


def pod(**meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "labels": {"app": "checkout", "version": "v2"}, **meta},
        "spec": {
            "containers": [
                {"name": "app", "image": "python", "command": ["python", "app.py"]},
                {"name": "side", "image": "x", "args": ["serve"], "env": [{"name": "A", "value": "1"}]},
            ]
        },
    }


def apply_patch(obj: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    """RFC 6902 ``add`` and ``replace`` (what the webhook emits), as the API server applies them."""
    out = copy.deepcopy(obj)
    for op in ops:
        *parents, last = [t.replace("~1", "/").replace("~0", "~") for t in op["path"].split("/")[1:]]
        target: Any = out
        for token in parents:
            target = target[int(token)] if isinstance(target, list) else target[token]
        assert op["op"] in ("add", "replace"), op
        if isinstance(target, list):
            if last == "-":
                target.append(op["value"])
            else:
                target.insert(int(last), op["value"])
        else:
            assert op["op"] == "replace" or last not in target, f"add over an existing member: {op}"
            target[last] = op["value"]
    return out


def applied(obj: dict[str, Any], config: InjectionConfig = CONFIG) -> dict[str, Any]:
    return apply_patch(obj, patch_for(obj, "shop", config))


def env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", [])}


def test_every_container_gets_the_bootstrap() -> None:
    out = applied(pod())
    first, second = out["spec"]["containers"]
    bootstrap = json.loads(env(first)["OPENSERGO_BOOTSTRAP_CONFIG"])
    assert bootstrap == {
        "endpoint": "opensergo.opensergo-system:10246",
        "namespace": "shop",
        "app": "checkout",
        "labels": {"version": "v2"},
    }
    assert env(first)["OPENSERGO_APP"] == "checkout"
    assert (
        env(second)["A"] == "1"
        and env(second)["OPENSERGO_BOOTSTRAP_CONFIG"] == env(first)["OPENSERGO_BOOTSTRAP_CONFIG"]
    )
    assert first["command"] == ["python", "app.py"]  # no launcher unless asked
    assert out["metadata"]["annotations"] == {"opensergo.io/injected": "true"}


def test_launcher_prefixes_commands_and_names_the_containers_it_cannot() -> None:
    out = applied(pod(annotations={"opensergo.io/launcher": "true", "keep/me": "x"}))
    first, second = out["spec"]["containers"]
    assert first["command"] == ["opensergo-run", "--", "python", "app.py"]
    assert "command" not in second
    assert out["metadata"]["annotations"] == {
        "opensergo.io/launcher": "true",
        "keep/me": "x",
        "opensergo.io/injected": "true",
        "opensergo.io/launcher-skipped": "side",
    }
    tls = applied(pod(), InjectionConfig("cp:10246", launcher=True, tls=True))
    assert json.loads(env(tls["spec"]["containers"][0])["OPENSERGO_BOOTSTRAP_CONFIG"])["tls"] is True
    assert tls["spec"]["containers"][0]["command"][:2] == ["opensergo-run", "--"]


def test_opt_out_hand_configured_and_already_injected_pods_are_left_alone() -> None:
    assert patch_for(pod(annotations={"opensergo.io/inject": "disabled"}), "shop", CONFIG) == []
    assert patch_for(pod(annotations={"opensergo.io/injected": "true"}), "shop", CONFIG) == []
    manual = pod()
    for c in manual["spec"]["containers"]:
        c["env"] = [{"name": "OPENSERGO_BOOTSTRAP_CONFIG", "value": "{}"}]
    assert patch_for(manual, "shop", CONFIG) == []
    # The app from the annotation wins over the labels.
    out = applied(pod(annotations={"opensergo.io/app": "billing"}))
    assert env(out["spec"]["containers"][0])["OPENSERGO_APP"] == "billing"


async def test_admission_review_over_http() -> None:
    review = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "u-1",
            "kind": {"kind": "Pod"},
            "operation": "CREATE",
            "namespace": "shop",
            "object": pod(),
        },
    }
    transport = httpx.ASGITransport(app=create_webhook_app(CONFIG))
    async with httpx.AsyncClient(transport=transport, base_url="https://webhook") as client:
        answer = (await client.post("/mutate", json=review)).json()
        assert (await client.post("/mutate", content=b"not json")).status_code == 400
    response = answer["response"]
    assert answer["kind"] == "AdmissionReview" and response["uid"] == "u-1" and response["allowed"] is True
    assert response["patchType"] == "JSONPatch"
    assert json.loads(base64.b64decode(response["patch"])) == patch_for(pod(), "shop", CONFIG)
    # Not a pod: allowed, untouched.
    other = mutate({"request": {"uid": "u-2", "kind": {"kind": "Service"}, "object": {}}}, CONFIG)
    assert other["response"] == {"uid": "u-2", "allowed": True}

"""deploy/kubernetes/opensergo.yaml: parseable and consistent with the kinds. The Helm chart is
rendered by the real helm and checked with the same rules in tests/integration/test_helm_chart.py."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import yaml

from opensergo.spec.kinds import all_kinds

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
MANIFEST = ROOT / "deploy" / "kubernetes" / "opensergo.yaml"


def check_deployment_docs(docs: list[dict[str, Any]], namespace: str) -> None:
    by_kind: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for doc in docs:
        by_kind[doc["kind"]].append(doc)
    [account] = by_kind["ServiceAccount"]
    [role] = by_kind["ClusterRole"]
    [binding] = by_kind["ClusterRoleBinding"]
    [deployment] = by_kind["Deployment"]
    [service] = by_kind["Service"]
    [ns_role] = by_kind["Role"]
    [ns_binding] = by_kind["RoleBinding"]
    for doc in (account, deployment, service, ns_role, ns_binding):
        assert doc["metadata"]["namespace"] == namespace

    # RBAC: every kind and its status, with every verb the store uses.
    needed = {"get", "list", "watch", "create", "update", "patch", "delete"}
    granted: dict[str, set[str]] = defaultdict(set)
    for rule in role["rules"]:
        if needed <= set(rule["verbs"]):
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    granted[group].add(resource)
    for info in all_kinds():
        assert {info.plural, f"{info.plural}/status"} <= granted[info.group], info.kind
    assert needed <= set(ns_role["rules"][0]["verbs"]) and "configmaps" in ns_role["rules"][0]["resources"]
    for bind, target in ((binding, role), (ns_binding, ns_role)):
        assert bind["roleRef"]["name"] == target["metadata"]["name"]
        assert bind["roleRef"]["kind"] == target["kind"]
        [subject] = bind["subjects"]
        assert subject["name"] == account["metadata"]["name"] and subject["namespace"] == namespace

    # Deployment: 2+ replicas of the control plane on the Kubernetes store.
    spec = deployment["spec"]
    assert int(spec["replicas"]) >= 2
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == account["metadata"]["name"]
    [container] = pod["containers"]
    args = container["args"]
    assert args[:2] == ["opensergo", "control-plane"]
    assert args[args.index("--store") + 1] == "kubernetes"
    assert args[args.index("--host") + 1] == "0.0.0.0"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"grpc": 10246, "http": 10247}
    assert any(e["name"] == "POD_NAMESPACE" for e in container["env"])

    # Service: selects the pods, exposes both ports.
    assert service["spec"]["selector"].items() <= labels.items()
    exposed = {p["name"]: (p["port"], p["targetPort"]) for p in service["spec"]["ports"]}
    assert exposed == {"grpc": (10246, "grpc"), "http": (10247, "http")}


def test_plain_manifests_are_consistent() -> None:
    docs = [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]
    [namespace] = [d for d in docs if d["kind"] == "Namespace"]
    assert namespace["metadata"]["name"] == "opensergo-system"
    check_deployment_docs([d for d in docs if d["kind"] != "Namespace"], "opensergo-system")

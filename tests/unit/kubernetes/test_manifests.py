"""deploy/kubernetes/opensergo.yaml and the Helm chart: parseable and consistent with each other,
with the CRDs and with the kinds. The chart is rendered with `helm template` when helm is on the
PATH; otherwise with a minimal renderer of the only template syntax it uses ({{ .Values.a.b }},
{{ .Release.Name }}, {{ .Release.Namespace }}, {{ .Chart.Version }})."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import yaml

from opensergo.spec.kinds import all_kinds

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
MANIFEST = ROOT / "deploy" / "kubernetes" / "opensergo.yaml"
CHART = ROOT / "deploy" / "helm" / "opensergo"
_TEMPLATE = re.compile(r"\{\{-?\s*([^}]*?)\s*-?\}\}")


def render_chart(release: str = "opensergo", namespace: str = "opensergo-system") -> list[dict[str, Any]]:
    if shutil.which("helm"):
        out = subprocess.run(
            ["helm", "template", release, str(CHART), "-n", namespace],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        return [d for d in yaml.safe_load_all(out) if d]
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    scope = {
        "Values": values,
        "Release": {"Name": release, "Namespace": namespace},
        "Chart": {"Version": chart["version"], "AppVersion": chart["appVersion"], "Name": chart["name"]},
    }

    def lookup(match: re.Match[str]) -> str:
        expr = match.group(1)
        assert re.fullmatch(r"\.[A-Za-z][\w.]*", expr), f"unsupported template expression {expr!r}"
        value: Any = scope
        for part in expr[1:].split("."):
            value = value[part]
        return str(value)

    docs: list[dict[str, Any]] = []
    for path in sorted((CHART / "templates").glob("*.yaml")):
        docs.extend(d for d in yaml.safe_load_all(_TEMPLATE.sub(lookup, path.read_text())) if d)
    return docs


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


@pytest.mark.parametrize("namespace", ["opensergo-system", "governance"])
def test_helm_chart_renders_consistently(namespace: str) -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2" and chart["name"] == "opensergo" and chart["version"]
    docs = render_chart(namespace=namespace)
    check_deployment_docs(docs, namespace)
    assert all(d["metadata"]["name"].startswith("opensergo") for d in docs)


def test_chart_and_manifests_deploy_the_same_thing() -> None:
    plain = {d["kind"]: d for d in yaml.safe_load_all(MANIFEST.read_text()) if d}
    chart = {d["kind"]: d for d in render_chart()}
    for kind in ("ClusterRole", "Role"):
        assert plain[kind]["rules"] == chart[kind]["rules"]
    plain_container = plain["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    chart_container = chart["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert plain_container["args"] == chart_container["args"]
    assert plain_container["image"] == chart_container["image"]
    assert plain["Service"]["spec"]["ports"] == chart["Service"]["spec"]["ports"]

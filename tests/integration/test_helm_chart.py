"""The Helm chart (deploy/helm/opensergo) through the real helm, built from Go modules by
scripts/build-helm.sh (`make test` builds it when missing, then it is cached): `helm lint`, and
`helm template` checked against the plain manifests and the CRDs."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import ROOT
from tests.unit.kubernetes.test_manifests import MANIFEST, check_deployment_docs

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

BUILD_SCRIPT = ROOT / "scripts" / "build-helm.sh"
CHART = ROOT / "deploy" / "helm" / "opensergo"
CRD_DIR = ROOT / "deploy" / "kubernetes" / "crds"


def helm_binary() -> Path:
    """The binary, built on first use (minutes, with progress on stderr); fails without Go."""
    result = subprocess.run(
        [str(BUILD_SCRIPT)], stdout=subprocess.PIPE, stderr=sys.stderr, text=True, check=True
    )
    return Path(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def helm() -> Path:
    return helm_binary()


def run(helm: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(helm), *args], capture_output=True, text=True, timeout=120)


def render(helm: Path, *args: str, namespace: str = "opensergo-system") -> list[dict[str, Any]]:
    done = run(helm, "template", "opensergo", str(CHART), "-n", namespace, *args)
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def test_helm_lint_passes_strict(helm: Path) -> None:
    done = run(helm, "lint", "--strict", str(CHART))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in done.stdout


def test_helm_lint_finds_a_broken_template(helm: Path, tmp_path: Path) -> None:
    # The lint above can fail: the same chart with one unclosed action does.
    broken = tmp_path / "opensergo"
    shutil.copytree(CHART, broken)
    service = broken / "templates" / "service.yaml"
    service.write_text(service.read_text().replace("{{ .Release.Name }}", "{{ .Release.Name ", 1))
    done = run(helm, "lint", "--strict", str(broken))
    assert done.returncode != 0
    assert "service.yaml" in done.stdout + done.stderr


@pytest.mark.parametrize("namespace", ["opensergo-system", "governance"])
def test_helm_chart_renders_consistently(helm: Path, namespace: str) -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2" and chart["name"] == "opensergo" and chart["version"]
    docs = render(helm, namespace=namespace)
    check_deployment_docs(docs, namespace)
    assert all(d["metadata"]["name"].startswith("opensergo") for d in docs)


def test_values_reach_the_deployment(helm: Path) -> None:
    [deployment] = [d for d in render(helm, "--set", "replicas=5") if d["kind"] == "Deployment"]
    assert deployment["spec"]["replicas"] == 5


def test_chart_and_manifests_deploy_the_same_thing(helm: Path) -> None:
    plain = {d["kind"]: d for d in yaml.safe_load_all(MANIFEST.read_text()) if d}
    chart = {d["kind"]: d for d in render(helm)}
    for kind in ("ClusterRole", "Role"):
        assert plain[kind]["rules"] == chart[kind]["rules"]
    plain_container = plain["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    chart_container = chart["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert plain_container["args"] == chart_container["args"]
    assert plain_container["image"] == chart_container["image"]
    assert plain["Service"]["spec"]["ports"] == chart["Service"]["spec"]["ports"]


def test_chart_installs_the_project_crds(helm: Path) -> None:
    rendered = {
        d["metadata"]["name"]: d
        for d in render(helm, "--include-crds")
        if d["kind"] == "CustomResourceDefinition"
    }
    expected = {}
    for path in sorted(CRD_DIR.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        expected[crd["metadata"]["name"]] = crd
    assert rendered == expected

"""The admission webhook behind a real kube-apiserver (the one `make test` builds): label a
namespace, create pods, and read the environment the API server stored for them."""

from __future__ import annotations

import base64
import json
import os
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import ROOT, free_port, stop_processes, wait_until
from tests.kube import KubeApiServer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

ENDPOINT = "opensergo-control-plane.opensergo-system:10246"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def issue_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A CA, and a server certificate it signed for 127.0.0.1 (what the API server dials)."""
    directory.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
             "-days", "2", "-subj", "/CN=opensergo-webhook-test-ca", cwd=directory)  # fmt: skip
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "tls.key", "-out", "tls.csr",
             "-subj", "/CN=127.0.0.1", cwd=directory)  # fmt: skip
    (directory / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    _openssl("x509", "-req", "-in", "tls.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "tls.crt", "-days", "2", "-extfile", "ext.cnf", cwd=directory)  # fmt: skip
    return directory / "ca.pem", directory / "tls.crt", directory / "tls.key"


@pytest.fixture(scope="module")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeApiServer]:
    server = KubeApiServer(tmp_path_factory.mktemp("kube-webhook"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def webhook(tmp_path: Path, kube: KubeApiServer) -> Iterator[str]:
    ca, cert, key = issue_certificates(tmp_path / "pki")
    port = free_port()
    trusted = ssl.create_default_context(cafile=str(ca))
    log = (tmp_path / "webhook.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "opensergo.cli", "webhook", "--endpoint", ENDPOINT, "--tls-cert", str(cert),
         "--tls-key", str(key), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )  # fmt: skip
    try:
        wait_until(
            lambda: (
                httpx.get(f"https://127.0.0.1:{port}/healthz", verify=trusted, timeout=2).status_code == 200
            ),
            timeout=30,
            interval=0.2,
            what="the webhook over HTTPS",
        )
        config = {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": "opensergo-webhook-test"},
            "webhooks": [
                {
                    "name": "namespaces.inject.opensergo.io",
                    "admissionReviewVersions": ["v1"],
                    "sideEffects": "None",
                    "failurePolicy": "Fail",  # the test must see the webhook act, not be skipped
                    "namespaceSelector": {"matchLabels": {"opensergo.io/inject": "enabled"}},
                    "rules": [
                        {
                            "operations": ["CREATE"],
                            "apiGroups": [""],
                            "apiVersions": ["v1"],
                            "resources": ["pods"],
                            "scope": "Namespaced",
                        }
                    ],
                    "clientConfig": {
                        "url": f"https://127.0.0.1:{port}/mutate",
                        "caBundle": base64.b64encode(ca.read_bytes()).decode(),
                    },
                }
            ],
        }
        with kube.client() as c:
            path = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"
            response = c.post(path, json=config)
            assert response.status_code == 201, response.text
        try:
            yield f"https://127.0.0.1:{port}"
        finally:
            with kube.client() as c:
                c.delete(f"{path}/opensergo-webhook-test")
    finally:
        stop_processes([proc])
        print((tmp_path / "webhook.log").read_text(errors="replace")[-3000:])


def namespace(kube: KubeApiServer, name: str, labels: dict[str, str]) -> None:
    with kube.client() as c:
        body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}
        assert c.post("/api/v1/namespaces", json=body).status_code in (201, 409)
        # No controller manager here: pods need their ServiceAccount created by hand.
        account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}}
        assert c.post(f"/api/v1/namespaces/{name}/serviceaccounts", json=account).status_code in (201, 409)


def create_pod(
    kube: KubeApiServer, ns: str, name: str, annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": {"app": "checkout", "version": "v2"},
            "annotations": annotations or {},
        },
        "spec": {
            "automountServiceAccountToken": False,
            "containers": [
                {"name": "app", "image": "python:3.12", "command": ["python", "app.py"]},
                {
                    "name": "worker",
                    "image": "python:3.12",
                    "args": ["worker"],
                    "env": [{"name": "MODE", "value": "w"}],
                },
            ],
        },
    }
    with kube.client() as c:
        response = c.post(f"/api/v1/namespaces/{ns}/pods", json=body)
        assert response.status_code == 201, response.text
        stored: dict[str, Any] = c.get(f"/api/v1/namespaces/{ns}/pods/{name}").json()
    return stored


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


def test_pods_of_labelled_namespaces_get_the_bootstrap(kube: KubeApiServer, webhook: str) -> None:
    namespace(kube, "shop", {"opensergo.io/inject": "enabled"})
    namespace(kube, "plain", {})

    pod = create_pod(kube, "shop", "checkout-1", {"opensergo.io/launcher": "true"})
    app, worker = pod["spec"]["containers"]
    bootstrap = json.loads(env_of(app)["OPENSERGO_BOOTSTRAP_CONFIG"])
    assert bootstrap == {
        "endpoint": ENDPOINT,
        "namespace": "shop",
        "app": "checkout",
        "labels": {"version": "v2"},
    }
    assert env_of(app)["OPENSERGO_APP"] == "checkout"
    assert (
        env_of(worker)["MODE"] == "w"
        and json.loads(env_of(worker)["OPENSERGO_BOOTSTRAP_CONFIG"]) == bootstrap
    )
    assert app["command"] == ["opensergo-run", "--", "python", "app.py"]
    assert "command" not in worker and worker["args"] == ["worker"]
    annotations = pod["metadata"]["annotations"]
    assert annotations["opensergo.io/injected"] == "true"
    assert annotations["opensergo.io/launcher-skipped"] == "worker"

    # Without the launcher annotation: the environment only.
    pod = create_pod(kube, "shop", "checkout-2")
    assert pod["spec"]["containers"][0]["command"] == ["python", "app.py"]
    assert "OPENSERGO_BOOTSTRAP_CONFIG" in env_of(pod["spec"]["containers"][0])

    # Opted out, and a namespace without the label: untouched.
    pod = create_pod(kube, "shop", "checkout-3", {"opensergo.io/inject": "disabled"})
    assert "OPENSERGO_BOOTSTRAP_CONFIG" not in env_of(pod["spec"]["containers"][0])
    pod = create_pod(kube, "plain", "checkout-4")
    assert "OPENSERGO_BOOTSTRAP_CONFIG" not in env_of(pod["spec"]["containers"][0])
    assert "opensergo.io/injected" not in (pod["metadata"].get("annotations") or {})

"""A real kube-apiserver (built from Go modules by scripts/build-kube-apiserver.sh) on a real etcd,
loopback only, with the project's CRDs installed: for the Kubernetes store tests."""

from __future__ import annotations

import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.helpers import ROOT, EtcdCluster, free_port, stop_processes, wait_until

BUILD_SCRIPT = ROOT / "scripts" / "build-kube-apiserver.sh"
CRD_DIR = ROOT / "deploy" / "kubernetes" / "crds"
NAMESPACE = "opensergo-system"


def kube_apiserver_binary() -> Path:
    """The binary, built on first use (minutes, with progress on stderr)."""
    result = subprocess.run(
        [str(BUILD_SCRIPT)], stdout=subprocess.PIPE, stderr=sys.stderr, text=True, check=True
    )
    return Path(result.stdout.strip().splitlines()[-1])


class KubeApiServer:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.etcd = EtcdCluster(base / "etcd")
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.proc: subprocess.Popen[bytes] | None = None
        self.kubeconfig = base / "kubeconfig"

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def client(self) -> httpx.Client:
        # The server's certificate is self-signed by the apiserver itself (--cert-dir).
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, verify=False
        )

    def start(self) -> None:
        binary = kube_apiserver_binary()
        self.base.mkdir(parents=True, exist_ok=True)
        self.etcd.start()
        auth = self.base / "auth"
        auth.mkdir(exist_ok=True)
        key, pub = auth / "sa.key", auth / "sa.pub"
        subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
        subprocess.run(
            ["openssl", "rsa", "-in", str(key), "-pubout", "-out", str(pub)], check=True, capture_output=True
        )
        tokens = auth / "tokens.csv"
        tokens.write_text(f'{self.token},admin,admin-uid,"system:masters"\n')
        etcd_url = self.etcd.url.replace("etcd://", "http://")
        self.proc = subprocess.Popen(
            [
                str(binary),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.port}",
                f"--cert-dir={self.base / 'certs'}",
                "--service-account-issuer=https://kubernetes.default.svc",
                f"--service-account-key-file={pub}",
                f"--service-account-signing-key-file={key}",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--authorization-mode=AlwaysAllow",
                f"--token-auth-file={tokens}",
                "--enable-priority-and-fairness=false",
                # A loopback advertise address cannot be the kubernetes Service's endpoint.
                "--endpoint-reconciler-type=none",
            ],
            stdout=(self.base / "kube-apiserver.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        with self.client() as c:
            wait_until(lambda: self._ready(c), timeout=90, interval=0.25, what="kube-apiserver /readyz")
            self._install(c)
        self.kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [
                        {"name": "test", "cluster": {"server": self.url, "insecure-skip-tls-verify": True}}
                    ],
                    "users": [{"name": "admin", "user": {"token": self.token}}],
                    "contexts": [{"name": "test", "context": {"cluster": "test", "user": "admin"}}],
                    "current-context": "test",
                }
            )
        )

    def _ready(self, c: httpx.Client) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(
                f"kube-apiserver exited: {(self.base / 'kube-apiserver.log').read_text()[-3000:]}"
            )
        try:
            return c.get("/readyz").status_code == 200
        except httpx.HTTPError:
            return False

    def _install(self, c: httpx.Client) -> None:
        """The namespace for replica status, and every CRD, until each is Established."""
        c.post(
            "/api/v1/namespaces",
            json={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        )
        names = []
        for path in sorted(CRD_DIR.glob("*.yaml")):
            crd = yaml.safe_load(path.read_text())
            response = c.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=crd)
            if response.status_code not in (201, 409):
                raise RuntimeError(
                    f"{path.name} refused by kube-apiserver: {response.status_code} {response.text}"
                )
            names.append(crd["metadata"]["name"])
        for name in names:
            wait_until(
                lambda name=name: self.established(c, name), timeout=30, what=f"CRD {name} Established"
            )

    def create_namespace(self, name: str) -> None:
        with self.client() as c:
            response = c.post(
                "/api/v1/namespaces",
                json={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
            )
            assert response.status_code in (201, 409), response.text

    @staticmethod
    def established(c: httpx.Client, name: str) -> bool:
        crd: dict[str, Any] = c.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}").json()
        conditions = crd.get("status", {}).get("conditions", [])
        return any(x["type"] == "Established" and x["status"] == "True" for x in conditions)

    def stop(self) -> None:
        if self.proc is not None:
            stop_processes([self.proc], timeout=15)
        self.etcd.stop()

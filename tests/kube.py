"""A real kube-apiserver (built from Go modules by scripts/build-kube-apiserver.sh) on a real etcd,
loopback only, with the project's CRDs installed: for the Kubernetes store tests. Plus a TCP relay
in front of it that can cut every connection, to drop the store's watches for real."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import yaml

from opensergo.controlplane.store.base import Bookmark
from opensergo.controlplane.store.kubernetes import KubernetesStore
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
    def __init__(self, base: Path, *, watch_cache: bool = True) -> None:
        """``watch_cache=False`` serves watches straight from etcd, so that compacting etcd
        (:meth:`compact_etcd`) expires their resourceVersions: 410 Gone. With the cache, a
        resumed watch is answered from the API server's memory as long as the version is within
        the cache's window, whatever etcd has compacted."""
        self.base = base
        self.watch_cache = watch_cache
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
                f"--watch-cache={str(self.watch_cache).lower()}",
            ],
            stdout=(self.base / "kube-apiserver.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        with self.client() as c:
            wait_until(lambda: self._ready(c), timeout=90, interval=0.25, what="kube-apiserver /readyz")
            self._install(c)
        self.write_kubeconfig(self.kubeconfig, self.url)

    def write_kubeconfig(self, path: Path, server: str) -> Path:
        """A kubeconfig for ``server`` (this API server, or a relay in front of it)."""
        path.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [
                        {"name": "test", "cluster": {"server": server, "insecure-skip-tls-verify": True}}
                    ],
                    "users": [{"name": "admin", "user": {"token": self.token}}],
                    "contexts": [{"name": "test", "context": {"cluster": "test", "user": "admin"}}],
                    "current-context": "test",
                }
            )
        )
        return path

    def compact_etcd(self) -> int:
        """Compact etcd's history up to its current revision with etcdctl; the revision."""
        endpoints = "--endpoints=" + self.etcd.url.replace("etcd://", "http://")
        status = subprocess.run(
            ["etcdctl", endpoints, "endpoint", "status", "--write-out=json"],
            check=True,
            capture_output=True,
            text=True,
        )
        revision = int(json.loads(status.stdout)[0]["Status"]["header"]["revision"])
        subprocess.run(
            ["etcdctl", endpoints, "compaction", "--physical", str(revision)],
            check=True,
            capture_output=True,
            text=True,
        )
        return revision

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


class Relay:
    """A TCP relay to ``port`` on loopback (runs on the current event loop).

    :meth:`cut` resets every relayed connection and refuses new ones (they are accepted and reset
    at once) until :meth:`resume`: a real dropped connection, with the server still up."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.port = 0
        self.accepting = True
        self.accepted = 0
        self._open: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def connections(self) -> int:
        return len(self._open) // 2

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def cut(self) -> None:
        self.accepting = False
        for writer in list(self._open):
            writer.transport.abort()
        self._open.clear()

    def resume(self) -> None:
        self.accepting = True

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.accepting:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.transport.abort()
            return
        self.accepted += 1
        self._open.update((writer, up_writer))
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            for w in (writer, up_writer):
                self._open.discard(w)
                w.transport.abort()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()


EventSummary = tuple[str, str, Any]
"""(event type, object name, spec.threshold)."""


class Follower:
    """Follows ``store.watch(0)`` in a task and queues one namespace's events as summaries."""

    def __init__(self, store: KubernetesStore, namespace: str) -> None:
        self.events: asyncio.Queue[EventSummary] = asyncio.Queue()
        self.replayed = asyncio.Event()  # the store's first Bookmark: the watch streams start
        self._task = asyncio.create_task(self._run(store, namespace))

    async def _run(self, store: KubernetesStore, namespace: str) -> None:
        async for item in store.watch(0):
            if isinstance(item, Bookmark):
                self.replayed.set()
            elif item.object.namespace == namespace:
                spec = item.object.body.get("spec") or {}
                self.events.put_nowait((item.type.value, item.object.name, spec.get("threshold")))

    async def take(self, count: int, timeout: float = 60) -> list[EventSummary]:
        out: list[EventSummary] = []
        async with asyncio.timeout(timeout):
            while len(out) < count:
                getter = asyncio.ensure_future(self.events.get())
                await asyncio.wait({getter, self._task}, return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    self._task.result()  # the watch ended: raise what ended it
                    raise AssertionError("the store's watch ended")
                out.append(getter.result())
        return out

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

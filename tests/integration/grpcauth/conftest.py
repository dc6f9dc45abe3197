"""A real control plane with auth on (tokens file with per-namespace roles), and raw gRPC helpers.

Identities (tokens file): ``ops`` (admin everywhere), ``shop-agent`` and ``bank-agent`` (data
planes of one namespace each), ``viewer`` (viewer everywhere), ``shop-editor`` (editor of shop),
and ``cert-agent`` (no token: a client certificate naming ``shop-agent.example``).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import yaml

from opensergo.proto.transport.v1 import protocol_pb2 as pb
from opensergo.proto.transport.v1 import protocol_pb2_grpc as pb_grpc
from opensergo.spec import kinds
from tests.helpers import ControlPlaneProcess

OPS = "ops-token-0123456789"
SHOP_AGENT = "shop-agent-token-0123456789"
BANK_AGENT = "bank-agent-token-0123456789"
VIEWER = "viewer-token-0123456789"
SHOP_EDITOR = "shop-editor-token-0123456789"
CERT_NAME = "shop-agent.example"

TOKENS = {
    "tokens": [
        {"name": "ops", "token": OPS, "roles": {"*": "admin"}},
        {"name": "shop-agent", "token": SHOP_AGENT, "roles": {"shop": "agent"}},
        {"name": "bank-agent", "token": BANK_AGENT, "roles": {"bank": "agent"}},
        {"name": "viewer", "token": VIEWER, "roles": {"*": "viewer"}},
        {"name": "shop-editor", "token": SHOP_EDITOR, "roles": {"shop": "editor"}},
        {"name": "cert-agent", "certificates": [CERT_NAME], "roles": {"shop": "agent"}},
    ]
}

DB_KIND = "database.opensergo.io/v1alpha1/DatabaseEndpoint"
RATE_KIND = "fault-tolerance.opensergo.io/v1alpha1/RateLimitStrategy"
BANK_PASSWORD = "bank-Sup3r-S3cret"


def bearer(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


def rest_headers(token: str = OPS) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def write_tokens(path: Path) -> Path:
    path.write_text(yaml.safe_dump(TOKENS))
    return path


class SecuredControlPlane(ControlPlaneProcess):
    """A control plane whose REST calls in tests carry the ops token."""

    def put(self, body: dict[str, Any]) -> None:
        info = kinds.by_api_version_kind(body["apiVersion"], body["kind"])
        meta = body["metadata"]
        path = f"/apis/{info.group}/{info.version}/namespaces/{meta['namespace']}/{info.plural}"
        response = httpx.put(
            f"{self.http_url}{path}/{meta['name']}", json=body, headers=rest_headers(), timeout=30
        )
        assert response.status_code in (200, 201), response.text

    def get(self, path: str) -> Any:
        response = httpx.get(self.http_url + path, headers=rest_headers(), timeout=10)
        assert response.status_code == 200, response.text
        return response.json()


def start_secured(base: Path, *extra: str) -> SecuredControlPlane:
    logs = base / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    tokens = write_tokens(base / "tokens.yaml")
    cp = SecuredControlPlane(
        base / "data",
        logs,
        ["--allow-loopback", "--auth", "on", "--auth-tokens", str(tokens), *extra],
    )
    cp.start()
    return cp


@pytest.fixture(scope="module")
def secured(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[SecuredControlPlane]:
    """One control plane with auth on for a whole test module (tests use their own apps)."""
    failed_before = request.session.testsfailed
    cp = start_secured(tmp_path_factory.mktemp("secured"))
    try:
        yield cp
    finally:
        cp.stop()
        if request.session.testsfailed > failed_before:
            print(cp.logs()[-30_000:])


def subscribe(
    address: str,
    targets: Sequence[tuple[str, str, str]],
    metadata: Sequence[tuple[str, str]] = (),
    labels: Sequence[tuple[str, str]] = (),
    timeout: float = 10.0,
    credentials: grpc.ChannelCredentials | None = None,
    options: Sequence[tuple[str, Any]] = (),
) -> list[pb.SubscribeResponse]:
    """Send one SubscribeRequest per (namespace, app, kind), half-close, and return every answer
    (the control plane answers each request, then ends the stream)."""
    requests = [
        pb.SubscribeRequest(
            request_id=f"req-{i}",
            identifier="grpcauth-test",
            target=pb.SubscribeRequestTarget(
                namespace=namespace,
                app=app,
                kinds=[kind],
                labels=[pb.SubscribeLabelKV(key=k, value=v) for k, v in labels],
            ),
        )
        for i, (namespace, app, kind) in enumerate(targets)
    ]
    channel = (
        grpc.secure_channel(address, credentials, options=list(options))
        if credentials is not None
        else grpc.insecure_channel(address)
    )
    with channel:
        stub = pb_grpc.OpenSergoUniversalTransportServiceStub(channel)  # type: ignore[no-untyped-call]
        call = stub.SubscribeConfig(iter(requests), metadata=list(metadata), timeout=timeout)
        return list(call)


@dataclass(frozen=True)
class Pki:
    """A throwaway CA, a server certificate for localhost and two client certificates: one whose
    SAN is listed in the tokens file, one that is not listed anywhere."""

    ca: Path
    server_cert: Path
    server_key: Path
    listed_cert: Path
    listed_key: Path
    unlisted_cert: Path
    unlisted_key: Path

    def client_credentials(self, listed: bool = True) -> grpc.ChannelCredentials:
        cert, key = (self.listed_cert, self.listed_key) if listed else (self.unlisted_cert, self.unlisted_key)
        return grpc.ssl_channel_credentials(self.ca.read_bytes(), key.read_bytes(), cert.read_bytes())


def _openssl(directory: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True, timeout=30)


def _issue(directory: Path, name: str, subject: str, extensions: str) -> None:
    _openssl(
        directory, "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}-key.pem", "-out", f"{name}.csr", "-subj", subject,
    )  # fmt: skip
    (directory / f"{name}.ext").write_text(extensions)
    _openssl(
        directory, "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem",
        "-CAcreateserial", "-days", "2", "-out", f"{name}.pem", "-extfile", f"{name}.ext",
    )  # fmt: skip


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    _openssl(
        d, "req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", "ca-key.pem", "-out", "ca.pem", "-days", "2", "-subj", "/CN=grpcauth test CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    _issue(
        d,
        "server",
        "/CN=localhost",
        "basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    client_ext = "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n"
    _issue(d, "listed", "/CN=shop-workload", client_ext + f"subjectAltName=DNS:{CERT_NAME}\n")
    _issue(d, "unlisted", "/CN=stranger", client_ext + "subjectAltName=DNS:stranger.example\n")
    return Pki(
        d / "ca.pem",
        d / "server.pem",
        d / "server-key.pem",
        d / "listed.pem",
        d / "listed-key.pem",
        d / "unlisted.pem",
        d / "unlisted-key.pem",
    )

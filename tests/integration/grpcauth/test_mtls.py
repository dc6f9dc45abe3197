"""A verified mTLS client certificate as an identity of the tokens file (``certificates:``).

Before the gRPC port had auth, any certificate the CA signed could subscribe to every namespace:
mTLS said who may connect, not what they may read.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from opensergo.client import Heartbeat, OpenSergoClient, ServiceInfo
from opensergo.client.tls import TlsConfig
from opensergo.common.protocol import CODE_PERMISSION_DENIED, NACK
from tests.helpers import Recorder, wait_until
from tests.integration.grpcauth.conftest import (
    BANK_AGENT,
    RATE_KIND,
    Pki,
    SecuredControlPlane,
    bearer,
    rest_headers,
    subscribe,
    write_tokens,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


class MtlsControlPlane(SecuredControlPlane):
    """HTTPS on the HTTP port (verified against the test CA), mTLS on the gRPC port."""

    def __init__(self, base: Path, pki: Pki) -> None:
        logs = base / "logs"
        logs.mkdir(parents=True)
        tokens = write_tokens(base / "tokens.yaml")
        tls = ["--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key)]
        super().__init__(
            base / "data",
            logs,
            [
                "--allow-loopback",
                "--auth",
                "on",
                "--auth-tokens",
                str(tokens),
                *tls,
                "--tls-client-ca",
                str(pki.ca),
            ],
        )
        self.http = httpx.Client(
            verify=ssl.create_default_context(cafile=str(pki.ca)), timeout=10, headers=rest_headers()
        )

    @property
    def http_url(self) -> str:
        return f"https://127.0.0.1:{self.http_port}"

    def _healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"control plane exited with {self.proc.returncode}:\n{self.logs()}")
        try:
            return self.http.get(self.http_url + "/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def put(self, body: dict[str, Any]) -> None:
        meta = body["metadata"]
        path = (
            f"/apis/fault-tolerance.opensergo.io/v1alpha1/namespaces/{meta['namespace']}/ratelimitstrategies"
        )
        response = self.http.put(f"{self.http_url}{path}/{meta['name']}", json=body)
        assert response.status_code in (200, 201), response.text

    def get(self, path: str) -> Any:
        return self.http.get(self.http_url + path).json()


@pytest.fixture
def mtls(tmp_path: Path, pki: Pki, request: pytest.FixtureRequest) -> Iterator[MtlsControlPlane]:
    cp = MtlsControlPlane(tmp_path, pki)
    cp.start()
    try:
        yield cp
    finally:
        cp.stop()
        cp.http.close()
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            print(cp.logs())


def rule(namespace: str, app: str, threshold: int) -> dict[str, Any]:
    return {
        "apiVersion": "fault-tolerance.opensergo.io/v1alpha1",
        "kind": "RateLimitStrategy",
        "metadata": {"name": "rl", "namespace": namespace, "labels": {"app": app}},
        "spec": {"metricType": "RequestAmount", "limitMode": "Local", "threshold": threshold},
    }


def mtls_subscribe(cp: MtlsControlPlane, pki: Pki, listed: bool, **kwargs: Any) -> list[Any]:
    return subscribe(
        cp.grpc_address,
        [("shop", "orders", RATE_KIND), ("bank", "ledger", RATE_KIND)],
        credentials=pki.client_credentials(listed),
        options=[("grpc.ssl_target_name_override", "localhost")],
        **kwargs,
    )


def test_a_listed_certificate_acts_as_its_identity(mtls: MtlsControlPlane, pki: Pki) -> None:
    mtls.put(rule("shop", "orders", 7))
    mtls.put(rule("bank", "ledger", 9))
    push, refused = mtls_subscribe(mtls, pki, listed=True)
    assert (push.namespace, push.ack) == ("shop", "") and len(push.dataWithVersion.data) == 1
    assert (refused.namespace, refused.ack, refused.status.code) == ("bank", NACK, CODE_PERMISSION_DENIED)
    assert "cert-agent" in refused.status.message


def test_an_unlisted_certificate_is_unauthenticated(mtls: MtlsControlPlane, pki: Pki) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        mtls_subscribe(mtls, pki, listed=False)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]
    assert "stranger.example" in caught.value.details()  # type: ignore[attr-defined]


def test_a_bearer_token_decides_over_the_certificate(mtls: MtlsControlPlane, pki: Pki) -> None:
    mtls.put(rule("bank", "ledger", 9))
    # The unlisted certificate with bank's token: the token's roles apply.
    pushes = mtls_subscribe(mtls, pki, listed=False, metadata=bearer(BANK_AGENT))
    assert [(r.namespace, r.status.code) for r in pushes] == [("shop", CODE_PERMISSION_DENIED), ("bank", 1)]
    # A wrong token is refused, even beside a listed certificate.
    with pytest.raises(grpc.RpcError) as caught:
        mtls_subscribe(mtls, pki, listed=True, metadata=bearer("wrong"))
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]


def test_the_sdk_with_a_listed_certificate(mtls: MtlsControlPlane, pki: Pki, tmp_path: Path) -> None:
    mtls.put(rule("shop", "orders", 7))
    tls = TlsConfig(ca_file=str(pki.ca), cert_file=str(pki.listed_cert), key_file=str(pki.listed_key))
    received = Recorder()
    client = OpenSergoClient(
        mtls.grpc_address,
        app="orders",
        namespace="shop",
        tls=tls,
        snapshot=None,
        heartbeat=Heartbeat(interval=0.5),
        service_metadata=[ServiceInfo(protocols=["http"], listening_addresses=["10.0.0.9:8080"])],
    )
    client.subscribe(RATE_KIND, callback=received)
    with client:
        wait_until(lambda: received.thresholds() == [7], what="the rule pushed to the certificate's identity")
        [instance] = wait_until(
            lambda: mtls.get("/api/v1/instances")["items"], what="the instance the certificate reported"
        )
        assert (instance["namespace"], instance["app"]) == ("shop", "orders")

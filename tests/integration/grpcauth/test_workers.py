"""Auth with ``--workers 2``: calls that reach the worker process are authenticated as on the
primary, including OTLP exports the worker relays to the primary."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc as ms_grpc

from opensergo.observability import names
from tests.integration.grpcauth.conftest import SHOP_AGENT, SecuredControlPlane, bearer, start_secured
from tests.integration.test_workers import OWN_CONNECTION
from tests.unit.dashboard.otlp_builders import counter, request, res

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

CONNECTIONS = 20  # one export each: the chance that none reaches the worker is 2 in a million


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[SecuredControlPlane]:
    cp = start_secured(tmp_path, "--workers", "2")
    try:
        yield cp
    finally:
        cp.stop()


def export(cp: SecuredControlPlane, app: str, metadata: list[tuple[str, str]]) -> grpc.StatusCode:
    now = time.time()
    body = request([counter(names.PASSED, [(res("GET:/w"), 3)], now - 1, now)], app=app, namespace="shop")
    with grpc.insecure_channel(cp.grpc_address, options=OWN_CONNECTION) as channel:
        try:
            ms_grpc.MetricsServiceStub(channel).Export(body, metadata=metadata, timeout=10)
        except grpc.RpcError as err:
            return err.code()  # type: ignore[attr-defined, no-any-return]
    return grpc.StatusCode.OK


def test_relayed_exports_are_authenticated_like_direct_ones(workers: SecuredControlPlane) -> None:
    refused = {export(workers, f"anonymous-{i}", []) for i in range(CONNECTIONS)}
    assert refused == {grpc.StatusCode.UNAUTHENTICATED}
    assert {export(workers, f"shop-{i}", bearer(SHOP_AGENT)) for i in range(CONNECTIONS)} == {
        grpc.StatusCode.OK
    }
    apps = {a["app"] for a in workers.get("/api/v1/metrics/apps?window=60")["items"]}
    assert {f"shop-{i}" for i in range(CONNECTIONS)} <= apps
    assert not any(a.startswith("anonymous-") for a in apps)

"""The Python SDK against a control plane with auth on: the token (argument, bootstrap "token" or
"tokenFile") reaches every channel: SubscribeConfig, ReportMetadata, the token service and the
OTLP exporter. And the OTLP receiver refuses what the token does not allow. Before, the SDK had no
way to send a token, and the OTLP receiver took exports for any namespace from anyone."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc as ms_grpc

from opensergo.client import Backoff, Heartbeat, OpenSergoClient, ServiceInfo
from opensergo.client.credentials import BearerToken
from opensergo.client.tokens import TokenClient
from opensergo.governance import Engine, guard, load_rules
from opensergo.observability import enable_metrics, names
from tests.helpers import Recorder, wait_until
from tests.integration.grpcauth.conftest import (
    BANK_AGENT,
    RATE_KIND,
    SHOP_AGENT,
    SecuredControlPlane,
    bearer,
)
from tests.unit.dashboard.otlp_builders import counter, request, res

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

FT = "fault-tolerance.opensergo.io/v1alpha1"


def rate_limit(name: str, app: str, threshold: int, mode: str = "Local") -> dict[str, Any]:
    return {
        "apiVersion": FT,
        "kind": "RateLimitStrategy",
        "metadata": {"name": name, "namespace": "shop", "labels": {"app": app}},
        "spec": {
            "metricType": "RequestAmount",
            "limitMode": mode,
            "threshold": threshold,
            "statDuration": "1s",
        },
    }


def client(cp: SecuredControlPlane, app: str, **kwargs: Any) -> OpenSergoClient:
    kwargs.setdefault("snapshot", None)
    return OpenSergoClient(
        cp.grpc_address, app=app, namespace="shop", backoff=Backoff(initial=0.05, maximum=0.2), **kwargs
    )


def test_the_token_reaches_subscriptions_and_reports(secured: SecuredControlPlane, tmp_path: Path) -> None:
    secured.put(rate_limit("rl", "cart", 7))
    services = [ServiceInfo(protocols=["http"], listening_addresses=["10.0.1.1:8080"])]
    token_file = tmp_path / "token"
    token_file.write_text(SHOP_AGENT + "\n")
    bootstrap = tmp_path / "bootstrap.json"
    bootstrap.write_text(json.dumps({"endpoint": secured.grpc_address, "app": "cart", "tokenFile": "token"}))
    with_token, from_file, without = Recorder(), Recorder(), Recorder()
    a = client(secured, "cart", token=SHOP_AGENT, heartbeat=None)
    b = OpenSergoClient.from_env(
        environ={"OPENSERGO_BOOTSTRAP": str(bootstrap), "OPENSERGO_NAMESPACE": "shop"},
        snapshot=None,
        service_metadata=services,
        heartbeat=Heartbeat(interval=0.5),
    )
    assert b.token is not None and b.token.file == str(token_file)
    c = client(secured, "cart", service_metadata=services, heartbeat=Heartbeat(interval=0.5))
    a.subscribe(RATE_KIND, callback=with_token)
    b.subscribe(RATE_KIND, callback=from_file)
    c.subscribe(RATE_KIND, callback=without)
    with a, b, c:
        wait_until(lambda: with_token.thresholds() == [7], what="the push to the client with a token")
        wait_until(lambda: from_file.thresholds() == [7], what="the push to the bootstrap tokenFile client")
        wait_until(lambda: secured.get("/api/v1/instances?app=cart")["items"], what="the report with a token")
        reporter = c.reporter
        assert reporter is not None
        wait_until(lambda: reporter.reports_failed > 0, what="the report without a token refused")
        assert "UNAUTHENTICATED" in (reporter.last_error or "")
        assert without.calls == [] and not c.connected
        [instance] = secured.get("/api/v1/instances?app=cart")["items"]
        assert instance["namespace"] == "shop" and instance["addresses"] == ["http://10.0.1.1:8080"]


def test_the_token_reaches_the_token_service(secured: SecuredControlPlane) -> None:
    secured.put(rate_limit("global-rl", "pay", 5, mode="Global"))
    key = ("shop", "pay", "GET:/pay", "global-rl")
    tokens = TokenClient([secured.grpc_address], client_id="sdk", token=BearerToken(SHOP_AGENT)).start()
    outsider = TokenClient(
        [secured.grpc_address], client_id="outsider", token=BearerToken(BANK_AGENT)
    ).start()
    try:
        wait_until(lambda: tokens.healthy, what="the token stream")
        response = wait_until(lambda: tokens.request(key, "lease", 3).result(timeout=5), what="a lease")
        assert response.granted == 3 and response.threshold == 5
        # bank's agent may not lease in shop: its stream ends with PERMISSION_DENIED.
        wait_until(lambda: outsider.healthy, what="the outsider's stream opens")
        with pytest.raises(ConnectionError):
            outsider.request(key, "lease", 3).result(timeout=5)
        wait_until(lambda: not outsider.healthy, what="the outsider's stream ended")
    finally:
        tokens.stop()
        outsider.stop()


def test_the_token_reaches_the_metrics_exporter(secured: SecuredControlPlane) -> None:
    engine = Engine()
    load_rules(
        f"""
apiVersion: {FT}
kind: RateLimitStrategy
metadata: {{name: rl, labels: {{app: metered}}}}
spec: {{threshold: 100, statDuration: 1s}}
---
apiVersion: {FT}
kind: FaultToleranceRule
metadata: {{name: rule, labels: {{app: metered}}}}
spec:
  targets: [{{targetResourceName: "GET:/m"}}]
  strategies: [{{name: rl, kind: RateLimitStrategy}}]
""",
        app="metered",
        engine=engine,
    )
    handle = enable_metrics(
        app="metered", namespace="shop", endpoint=secured.grpc_address, engine=engine, token=SHOP_AGENT
    )
    try:
        with guard("GET:/m", engine=engine):
            pass
        handle.force_flush()
        wait_until(
            lambda: [a["app"] for a in secured.get("/api/v1/metrics/apps?window=60")["items"]] == ["metered"],
            what="the export with a token",
        )
    finally:
        handle.shutdown()
        engine.close()


@pytest.mark.parametrize(
    ("token", "namespace", "code"),
    [
        (None, "shop", grpc.StatusCode.UNAUTHENTICATED),
        (SHOP_AGENT, "bank", grpc.StatusCode.PERMISSION_DENIED),
        (SHOP_AGENT, "<b>shop</b>", grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
def test_otlp_exports_outside_the_tokens_namespaces_are_refused(
    secured: SecuredControlPlane, token: str | None, namespace: str, code: grpc.StatusCode
) -> None:
    now = time.time()
    export = request(
        [counter(names.PASSED, [(res("GET:/x"), 5)], now - 1, now)], app="intruded", namespace=namespace
    )
    with grpc.insecure_channel(secured.grpc_address) as channel, pytest.raises(grpc.RpcError) as caught:
        ms_grpc.MetricsServiceStub(channel).Export(
            export, metadata=bearer(token) if token else (), timeout=10
        )
    assert caught.value.code() == code  # type: ignore[attr-defined]
    assert "intruded" not in str(secured.get("/api/v1/metrics/apps?window=60"))

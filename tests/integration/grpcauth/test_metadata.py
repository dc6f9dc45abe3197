"""ReportMetadata on a control plane with auth on.

Before the gRPC port had auth (finding 1 of issue 12), a caller registered 6.6.6.6 as an instance
of another namespace's app (and discovery pushed it to that app's clients), and an HTML namespace
header was stored as given.
"""

from __future__ import annotations

import grpc
import pytest

from opensergo.proto.service_contract.v1 import service_contract_pb2 as sc
from opensergo.proto.service_contract.v1 import service_contract_pb2_grpc as sc_grpc
from tests.integration.grpcauth.conftest import (
    BANK_AGENT,
    OPS,
    SHOP_AGENT,
    VIEWER,
    SecuredControlPlane,
    bearer,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

HTML = "<img src=x onerror=alert(1)>"


def report(
    cp: SecuredControlPlane,
    app: str,
    address: str,
    metadata: list[tuple[str, str]],
    namespace: str | None = None,
    labels: str | None = None,
) -> None:
    request = sc.ReportMetadataRequest(
        app_name=app,
        service_metadata=[
            sc.ServiceMetadata(
                listening_addresses=[sc.SocketAddress(address=address, port_value=8080)], protocols=["http"]
            )
        ],
    )
    request.node.identifier.host_name = f"host-{address}"
    request.node.identifier.pid = 4242
    headers = list(metadata)
    if namespace is not None:
        headers.append(("opensergo-namespace", namespace))
    if labels is not None:
        headers.append(("opensergo-labels", labels))
    with grpc.insecure_channel(cp.grpc_address) as channel:
        sc_grpc.MetadataServiceStub(channel).ReportMetadata(  # type: ignore[no-untyped-call]
            request, metadata=headers, timeout=10
        )


def expect_error(code: grpc.StatusCode, *args: object, **kwargs: object) -> str:
    with pytest.raises(grpc.RpcError) as caught:
        report(*args, **kwargs)  # type: ignore[arg-type]
    assert caught.value.code() == code, caught.value.details()  # type: ignore[attr-defined]
    details: str = caught.value.details()  # type: ignore[attr-defined]
    return details


def addresses(cp: SecuredControlPlane) -> str:
    return str(cp.get("/api/v1/instances"))


def test_reporting_for_another_namespaces_app_is_refused(secured: SecuredControlPlane) -> None:
    details = expect_error(
        grpc.StatusCode.PERMISSION_DENIED, secured, "ledger", "6.6.6.6", bearer(SHOP_AGENT), namespace="bank"
    )
    assert "shop-agent" in details and "'bank'" in details
    # No header means namespace "default": not shop-agent's either.
    expect_error(grpc.StatusCode.PERMISSION_DENIED, secured, "ledger", "6.6.6.7", bearer(SHOP_AGENT))
    # A viewer is not a data plane anywhere.
    expect_error(
        grpc.StatusCode.PERMISSION_DENIED, secured, "ledger", "6.6.6.8", bearer(VIEWER), namespace="bank"
    )
    assert "6.6.6." not in addresses(secured)
    # The namespace's own data plane registers.
    report(secured, "ledger", "10.0.0.7", bearer(BANK_AGENT), namespace="bank")
    instances = secured.get("/api/v1/instances")["items"]
    assert [(i["namespace"], i["app"], i["addresses"]) for i in instances if i["app"] == "ledger"] == [
        ("bank", "ledger", ["http://10.0.0.7:8080"])
    ]


def test_unauthenticated_reports_are_refused(secured: SecuredControlPlane) -> None:
    expect_error(grpc.StatusCode.UNAUTHENTICATED, secured, "ledger", "6.6.6.9", [], namespace="bank")
    expect_error(
        grpc.StatusCode.UNAUTHENTICATED, secured, "ledger", "6.6.6.9", bearer("guess"), namespace="bank"
    )
    assert "6.6.6.9" not in addresses(secured)


@pytest.mark.parametrize(
    ("app", "namespace", "labels", "field"),
    [
        ("cart", HTML, None, "opensergo-namespace"),
        ("cart", "Shop", None, "opensergo-namespace"),
        (HTML, "shop", None, "app_name"),
        ("cart", "shop", f"version={HTML}", "opensergo-labels"),
        ("cart", "shop", "bad key=v1", "opensergo-labels"),
    ],
)
def test_names_that_kubernetes_would_refuse_are_invalid(
    secured: SecuredControlPlane, app: str, namespace: str, labels: str | None, field: str
) -> None:
    details = expect_error(
        grpc.StatusCode.INVALID_ARGUMENT,
        secured,
        app,
        "10.0.0.8",
        bearer(OPS),
        namespace=namespace,
        labels=labels,
    )
    assert field in details
    assert "<img" not in str(secured.get("/api/v1/apps")) and "10.0.0.8" not in addresses(secured)

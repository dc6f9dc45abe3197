"""SubscribeConfig on a control plane with auth on: who may subscribe where, and what is refused.

Each of these passed before the gRPC port had auth (finding 1 of issue 12): a call without a token
was served, a data plane of one namespace received another namespace's DatabaseEndpoint with its
password in clear, and an HTML namespace was accepted as a subscription.
"""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from opensergo.common.protocol import CODE_PERMISSION_DENIED, CODE_REQUEST_INVALID, NACK
from tests.integration.grpcauth.conftest import (
    BANK_AGENT,
    BANK_PASSWORD,
    DB_KIND,
    OPS,
    SHOP_AGENT,
    SHOP_EDITOR,
    VIEWER,
    SecuredControlPlane,
    bearer,
    subscribe,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

SHOP_PASSWORD = "shop-own-S3cret"
HTML = "<script>alert(1)</script>"


def database(namespace: str, app: str, password: str) -> dict[str, Any]:
    return {
        "apiVersion": "database.opensergo.io/v1alpha1",
        "kind": "DatabaseEndpoint",
        "metadata": {"name": f"{app}-db", "namespace": namespace, "labels": {"app": app}},
        "spec": {
            "database": {
                "MySQL": {"url": f"jdbc:mysql://db:3306/{app}", "username": "app", "password": password}
            }
        },
    }


@pytest.fixture(scope="module")
def databases(secured: SecuredControlPlane) -> SecuredControlPlane:
    secured.put(database("bank", "ledger", BANK_PASSWORD))
    secured.put(database("shop", "orders", SHOP_PASSWORD))
    return secured


def pushes(responses: list[Any]) -> list[Any]:
    return [r for r in responses if not r.ack]


def refusals(responses: list[Any]) -> list[Any]:
    return [r for r in responses if r.ack == NACK]


def test_another_namespaces_database_endpoint_is_refused_per_target(databases: SecuredControlPlane) -> None:
    responses = subscribe(
        databases.grpc_address,
        [("bank", "ledger", DB_KIND), ("shop", "orders", DB_KIND)],
        bearer(SHOP_AGENT),
    )
    assert all(BANK_PASSWORD.encode() not in r.SerializeToString() for r in responses)
    [refused] = refusals(responses)
    assert refused.status.code == CODE_PERMISSION_DENIED
    assert (refused.namespace, refused.app) == ("bank", "ledger")
    assert "PERMISSION_DENIED" in refused.status.message and "shop-agent" in refused.status.message
    # The stream went on: the target in its own namespace is pushed, with its own secret in clear.
    [push] = pushes(responses)
    assert (push.namespace, push.app, push.kind) == ("shop", "orders", DB_KIND)
    assert len(push.dataWithVersion.data) == 1
    assert SHOP_PASSWORD.encode() in push.SerializeToString()


@pytest.mark.parametrize(("token", "who"), [(VIEWER, "viewer"), (SHOP_EDITOR, "shop-editor")])
def test_viewers_and_editors_are_not_data_planes(
    databases: SecuredControlPlane, token: str, who: str
) -> None:
    """Subscriptions carry secrets in clear, which REST redacts even for editors: role agent only."""
    responses = subscribe(databases.grpc_address, [("shop", "orders", DB_KIND)], bearer(token))
    [refused] = responses
    assert refused.ack == NACK and refused.status.code == CODE_PERMISSION_DENIED
    assert who in refused.status.message and "agent" in refused.status.message
    assert SHOP_PASSWORD.encode() not in refused.SerializeToString()


@pytest.mark.parametrize("token", [BANK_AGENT, OPS])
def test_the_namespaces_agent_and_an_admin_subscribe(databases: SecuredControlPlane, token: str) -> None:
    [push] = subscribe(databases.grpc_address, [("bank", "ledger", DB_KIND)], bearer(token))
    assert not push.ack and BANK_PASSWORD.encode() in push.SerializeToString()


@pytest.mark.parametrize(
    ("metadata", "problem"),
    [
        ([], "authentication required"),
        (bearer("not-a-token"), "invalid token"),
        ([("authorization", f"Basic {OPS}")], "Bearer"),
    ],
)
def test_unauthenticated_streams_end_with_unauthenticated(
    databases: SecuredControlPlane, metadata: list[tuple[str, str]], problem: str
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        subscribe(databases.grpc_address, [("bank", "ledger", DB_KIND)], metadata)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]
    assert problem in caught.value.details()  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("target", "labels", "field"),
    [
        ((HTML, "orders"), [], "target.namespace"),
        (("Shop", "orders"), [], "target.namespace"),
        (("shop", HTML), [], "target.app"),
        (("shop", "orders"), [("version", HTML)], "target.labels"),
    ],
)
def test_names_that_kubernetes_would_refuse_are_refused(
    databases: SecuredControlPlane, target: tuple[str, str], labels: list[tuple[str, str]], field: str
) -> None:
    namespace, app = target
    [refused] = subscribe(databases.grpc_address, [(namespace, app, DB_KIND)], bearer(OPS), labels=labels)
    assert refused.ack == NACK and refused.status.code == CODE_REQUEST_INVALID
    assert field in refused.status.message
    assert not refused.HasField("dataWithVersion")
    # Nothing was recorded: the clients view never shows the value.
    clients = databases.get("/api/v1/clients")["items"]
    assert HTML not in str(clients) and "Shop" not in str(clients)

"""gRPC authentication and authorization (grpcauth), the tokens file's certificate identities and
the Kubernetes name checks, without a server."""

from __future__ import annotations

import pytest

from opensergo.common.kube_names import InvalidName, check_app, check_label, check_namespace
from opensergo.controlplane.api.auth import (
    ANONYMOUS,
    AuthConfig,
    Role,
    TokenFileError,
    TokenRegistry,
    parse_tokens,
)
from opensergo.controlplane.grpcauth import OPEN, Action, GrpcAuth

pytestmark = pytest.mark.unit

TOKENS = """
tokens:
  - {name: ops, token: ops-token, roles: {"*": admin}}
  - {name: shop-agent, token: shop-token, roles: {shop: agent, "*": viewer}}
  - {name: editor, token: editor-token, roles: {shop: editor}}
  - name: workload
    certificates: [spiffe://cluster/ns/shop/sa/cart, cart.shop.internal]
    roles: {shop: agent}
"""
CERT = {
    "x509_common_name": [b"cart"],
    "x509_subject_alternative_name": [b"cart.shop.internal"],
}


def auth(client_certificates: bool = True) -> GrpcAuth:
    registry = TokenRegistry(entries=parse_tokens(TOKENS))
    return GrpcAuth(AuthConfig(True, registry), client_certificates=client_certificates)


def who(found: object) -> str:
    assert not isinstance(found, str), found
    return found.name  # type: ignore[attr-defined]


def test_a_bearer_token_identifies_the_caller() -> None:
    assert who(auth().authenticate([("authorization", "Bearer shop-token")], {})) == "shop-agent"
    assert who(auth().authenticate([("authorization", "bearer  ops-token ")], {})) == "ops"
    assert auth().authenticate([("authorization", "Bearer nope")], {}) == "invalid token"
    assert "Bearer <token>" in str(auth().authenticate([("authorization", "Basic b3Bz")], {}))
    assert "authentication required" in str(auth().authenticate([], {}))


def test_a_verified_certificate_maps_by_san_or_common_name() -> None:
    assert who(auth().authenticate([], CERT)) == "workload"
    found = auth().authenticate([], {"x509_common_name": [b"spiffe://cluster/ns/shop/sa/cart"]})
    assert who(found) == "workload"
    unlisted = auth().authenticate([], {"x509_common_name": [b"stranger"]})
    assert isinstance(unlisted, str) and "stranger" in unlisted and "certificates:" in unlisted
    # Without --tls-client-ca nothing verified the certificate: its names mean nothing.
    assert "authentication required" in str(auth(client_certificates=False).authenticate([], CERT))


def test_a_token_decides_over_a_certificate() -> None:
    assert who(auth().authenticate([("authorization", "Bearer ops-token")], CERT)) == "ops"
    assert auth().authenticate([("authorization", "Bearer wrong")], CERT) == "invalid token"


@pytest.mark.parametrize(
    ("token", "namespace", "allowed"),
    [
        ("ops-token", "anything", True),
        ("shop-token", "shop", True),
        ("shop-token", "bank", False),  # viewer there
        ("editor-token", "shop", False),  # editors are not data planes
    ],
)
def test_data_plane_actions_need_agent_or_admin(token: str, namespace: str, allowed: bool) -> None:
    a = auth()
    principal = a.authenticate([("authorization", f"Bearer {token}")], {})
    assert not isinstance(principal, str)
    denial = a.denial(principal, namespace, Action.SUBSCRIBE)
    assert (denial is None) == allowed
    if denial is not None:
        assert repr(namespace) in denial and "agent or admin" in denial


def test_auth_off_is_anonymous_and_a_missing_auth_wrapper_fails_closed() -> None:
    assert OPEN.caller() is ANONYMOUS and OPEN.handler_wrapper() is None
    assert OPEN.denial(ANONYMOUS, "any", Action.LEASE) is None
    enabled = auth()
    assert enabled.handler_wrapper() is not None
    # No auth wrapper ran in this context: nobody, with no role anywhere.
    assert enabled.denial(enabled.caller(), "shop", Action.REPORT) is not None


def test_the_agent_role_reads_like_a_viewer_on_the_http_api() -> None:
    assert Role.VIEWER < Role.AGENT < Role.EDITOR < Role.ADMIN
    assert Role.parse("Agent") is Role.AGENT


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tokens: [{name: a, certificates: x, roles: {'*': agent}}]", "certificates must be a list"),
        (
            "tokens: [{name: a, certificates: [c], roles: {'*': agent}},"
            " {name: b, certificates: [c], roles: {'*': agent}}]",
            "also listed by a",
        ),
        ("tokens: [{name: a, roles: {'*': agent}}]", "token or sha256"),
    ],
)
def test_certificate_entries_are_checked(text: str, message: str) -> None:
    with pytest.raises(TokenFileError, match=message):
        parse_tokens(text)


def test_a_certificate_only_identity_cannot_hold_a_session() -> None:
    registry = TokenRegistry(entries=parse_tokens(TOKENS))
    assert registry.by_name("workload") is None  # it has no token to sign a session with
    assert registry.by_name("ops") is not None


@pytest.mark.parametrize("value", ["shop", "a", "team-a", "1abc", "a" * 63])
def test_namespaces_accepted(value: str) -> None:
    assert check_namespace(value, "ns") == value


@pytest.mark.parametrize("value", ["", "Shop", "-a", "a-", "a.b", "a_b", "<b>x</b>", "a" * 64, "ä"])
def test_namespaces_refused(value: str) -> None:
    with pytest.raises(InvalidName, match=r"^ns: "):
        check_namespace(value, "ns")


@pytest.mark.parametrize("value", ["foo-app", "FooService", "com.example.Svc", "svc_1", "a"])
def test_app_names_accepted(value: str) -> None:
    assert check_app(value, "app") == value


@pytest.mark.parametrize("value", ["", "-a", "a b", "a/b", "<script>", "x" * 64])
def test_app_names_refused(value: str) -> None:
    with pytest.raises(InvalidName, match=r"^app: "):
        check_app(value, "app")


def test_labels() -> None:
    check_label("version", "v1", "labels")
    check_label("opensergo.io/encoding", "native", "labels")
    check_label("tier", "", "labels")  # an empty value is a valid label value
    for key, value in [("a b", "v"), ("/x", "v"), ("Bad.Prefix/x", "v"), ("k", "<i>"), ("k", "-v")]:
        with pytest.raises(InvalidName, match=r"^labels: "):
            check_label(key, value, "labels")


def test_the_stream_limit_counts_the_caller_not_the_host() -> None:
    """The transport's per-peer stream limit: the peer's host with auth off, the authenticated
    caller with auth on (two hosts with one token share a budget; two tokens behind one host do not)."""

    class Context:
        def __init__(self, peer: str) -> None:
            self._peer = peer

        def peer(self) -> str:
            return self._peer

    from opensergo.controlplane.grpcauth import _caller
    from opensergo.controlplane.transport import peer_host

    assert OPEN.peer_identity(peer_host) is peer_host
    identity = auth().peer_identity(peer_host)
    registry = TokenRegistry(entries=parse_tokens(TOKENS))
    shop, ops = registry.authenticate("shop-token"), registry.authenticate("ops-token")
    assert shop is not None and ops is not None
    reset = _caller.set(shop)
    try:
        assert (
            identity(Context("ipv4:10.0.0.1:5000")) == identity(Context("ipv4:10.0.0.2:6000")) == "shop-agent"
        )
        _caller.set(ops)
        assert identity(Context("ipv4:10.0.0.1:5000")) == "ops"
    finally:
        _caller.reset(reset)

"""The node's credential in its configuration (the ratelimit filter's RateLimitService calls)
and nowhere else: not in the profile's text, not in stored or logged NACK messages."""

from __future__ import annotations

from dataclasses import replace

import pytest

from opensergo.controlplane.xds.build import INBOUND, Builder
from opensergo.controlplane.xds.resources import LISTENER, Built
from opensergo.controlplane.xds.server import _redacted
from tests.unit.xds.test_translate import SIDECAR, Cache, resource

pytestmark = pytest.mark.unit

TOKEN = "shop-agent-token-0123456789"
AUTHORIZED = replace(SIDECAR, control_plane_metadata=(("authorization", f"Bearer {TOKEN}"),))


def _rls_service(built: Built) -> dict[str, object]:
    listener = resource(built, LISTENER, INBOUND)
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    [ratelimit] = [f for f in hcm["http_filters"] if f["name"] == "envoy.filters.http.ratelimit"]
    service: dict[str, object] = ratelimit["typed_config"]["rate_limit_service"]["grpc_service"]
    return service


def test_the_ratelimit_filter_repeats_the_streams_credential() -> None:
    builder = Builder(Cache().cache)
    assert _rls_service(builder.get(AUTHORIZED))["initial_metadata"] == [
        {"key": "authorization", "value": f"Bearer {TOKEN}"}
    ]
    assert "initial_metadata" not in _rls_service(builder.get(SIDECAR))  # auth off: nothing sent
    # Another credential is another build (never another node's token).
    other = replace(SIDECAR, control_plane_metadata=(("authorization", "Bearer other"),))
    assert _rls_service(builder.get(other))["initial_metadata"] == [
        {"key": "authorization", "value": "Bearer other"}
    ]
    assert TOKEN not in repr(AUTHORIZED) and TOKEN not in str(AUTHORIZED)


def test_nack_messages_do_not_keep_the_credential() -> None:
    message = f'initial_metadata {{ key: "authorization" value: "Bearer {TOKEN}" }} ... bad regex'
    assert TOKEN not in _redacted(message, AUTHORIZED)
    assert _redacted(message, AUTHORIZED).endswith("bad regex")
    assert _redacted(f"token {TOKEN} alone", AUTHORIZED) == "token ****** alone"
    assert _redacted("plain", SIDECAR) == "plain" and _redacted("plain", None) == "plain"

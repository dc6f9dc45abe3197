"""The client with the real spec codec, loader and kind registry (its default decoder and parser)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from opensergo.client import Backoff, OpenSergoClient, Snapshot
from opensergo.spec import codec, kinds, loader
from opensergo.spec.base import Resource
from tests.unit.client.client_fakes import RLS, FakeControlPlane, push, wait_until

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]


def rate_limit(name: str, threshold: int) -> Resource:
    return loader.parse_object(
        {
            "apiVersion": "fault-tolerance.opensergo.io/v1alpha1",
            "kind": "RateLimitStrategy",
            "metadata": {"name": name, "namespace": "default", "labels": {"app": "foo-app"}},
            "spec": {
                "metricType": "RequestAmount",
                "limitMode": "Local",
                "threshold": threshold,
                "statDurationSeconds": 1,
            },
        }
    )


def client_for(cp: FakeControlPlane, snapshots: Path, **kwargs: Any) -> OpenSergoClient:
    return OpenSergoClient(
        cp.endpoint,
        app="foo-app",
        snapshot=Snapshot(snapshots),
        heartbeat=None,
        backoff=Backoff(initial=0.02, maximum=0.2),
        **kwargs,
    )


def test_default_decoder_native_and_upstream_payloads(cp: FakeControlPlane, tmp_path: Path) -> None:
    seen: list[list[int]] = []
    with client_for(cp, tmp_path) as client:
        # a short kind name resolves through the registry to the full wire name
        client.subscribe(
            "ratelimitstrategy", callback=lambda items, v: seen.append([r.spec.threshold for r in items])
        )
        stream = cp.wait_stream()
        (request,) = cp.wait_subscribes(stream, 1)
        assert list(request.target.kinds) == [RLS]
        payloads = [codec.encode_native(rate_limit("native", 10))]
        upstream = codec.encode_upstream(rate_limit("upstream", 20))
        assert upstream is not None
        payloads.append(upstream)
        cp.push(push(RLS, 5, payloads, response_id=request.request_id))
        reply = cp.wait_reply(stream, request.request_id)
        assert (reply.response_ack, reply.status.code) == ("ACK", 1), reply.status.message
        resources = client.get("RateLimitStrategy")
        assert [type(r).__name__ for r in resources] == ["RateLimitStrategy", "RateLimitStrategy"]
        assert [(r.name, r.spec.threshold) for r in resources] == [("native", 10), ("upstream", 20)]
        assert seen == [[10, 20]]

        # a payload of the wrong kind is a decode failure: NACK 4001, cache unchanged
        wrong = codec.encode_native(
            loader.parse_object(
                {
                    "apiVersion": "fault-tolerance.opensergo.io/v1alpha1",
                    "kind": "ConcurrencyLimitStrategy",
                    "metadata": {"name": "c", "labels": {"app": "foo-app"}},
                    "spec": {"maxConcurrency": 3, "limitMode": "Local"},
                }
            )
        )
        cp.push(push(RLS, 6, [wrong], response_id="w"))
        reply = cp.wait_reply(stream, "w")
        assert (reply.response_ack, reply.status.code) == ("NACK", 4001)
        assert "ConcurrencyLimitStrategy" in reply.status.message
        assert client.version(RLS) == 5

    # the snapshot is parsed back into typed resources while the control plane is down
    cp.stop()
    offline: list[list[int]] = []
    with client_for(cp, tmp_path) as client:
        client.subscribe(
            kinds.lookup("RateLimitStrategy"),
            callback=lambda items, v: offline.append([r.spec.threshold for r in items]),
        )
        wait_until(lambda: offline, message="snapshot delivery")
        assert offline == [[10, 20]]
        assert type(client.get(RLS)[0]).__name__ == "RateLimitStrategy"


def test_unknown_kinds_are_rejected_at_subscribe(cp: FakeControlPlane, tmp_path: Path) -> None:
    client = client_for(cp, tmp_path)
    with pytest.raises(ValueError, match="unknown kind"):
        client.subscribe("RateLimitStrategies-typo")
    with pytest.raises(ValueError, match=r"not in opensergo\.spec\.kinds"):
        client.subscribe("example.io/v1/Custom")

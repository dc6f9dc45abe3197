"""Unit tests of the SDK's version-reset rule (opensergo.client.subscriber, rule 3).

Versions are compared only between pushes of one stream; the first push of a key on a new stream
is authoritative even when its version is lower (an upstream control plane restarted its counter).
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from google.protobuf import any_pb2

from opensergo.client._spec import KindLike, default_decoder, kind_by_full_kind
from opensergo.client.cache import RuleCache
from opensergo.client.subscriber import Callback, PushHandler
from opensergo.common.protocol import SubscriptionKey
from opensergo.proto.fault_tolerance.v1 import fault_tolerance_pb2 as ft
from opensergo.proto.transport.v1 import protocol_pb2 as pb
from tests.interop.expected import RATE

pytestmark = [pytest.mark.unit, pytest.mark.timeout(10)]

KEY = SubscriptionKey("default", "foo-app", RATE)


class Hooks:
    """PushHandler hooks of a client whose stream counter the test moves."""

    def __init__(self, streams_opened: int | None = 1) -> None:
        if streams_opened is not None:
            self.streams_opened = streams_opened

    def resolve_push_kind(self, name: str) -> KindLike | None:
        return kind_by_full_kind(name)

    def callbacks_for(self, key: SubscriptionKey) -> Sequence[Callback]:
        return ()

    def persist(self) -> None:
        pass

    def describe_request(self, request_id: str) -> str:
        return "subscribe"


def payload(threshold: int) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(ft.RateLimitStrategy(name="r", threshold=threshold, stat_duration=1))
    return packed


def push(version: int | None, threshold: int = 1, *, status: int = 200) -> pb.SubscribeResponse:
    response = pb.SubscribeResponse(
        status=pb.Status(code=status),
        namespace=KEY.namespace,
        app=KEY.app,
        kind=KEY.kind,
        control_plane=pb.ControlPlaneDesc(identifier="osg-host"),
    )
    if version is not None:
        response.dataWithVersion.CopyFrom(pb.DataWithVersion(data=[payload(threshold)], version=version))
    return response


def handle(handler: PushHandler, response: pb.SubscribeResponse) -> int:
    reply = handler.handle(response)
    assert reply is not None and reply.response_ack == "ACK", reply
    return reply.status.code


def thresholds(cache: RuleCache) -> list[int]:
    entry = cache.entry(KEY)
    assert entry is not None
    return [item.spec.threshold for item in entry.items]


@pytest.fixture
def cache() -> RuleCache:
    return RuleCache()


def make(cache: RuleCache, hooks: Hooks) -> PushHandler:
    return PushHandler(cache=cache, identifier="me", decoder=default_decoder, hooks=hooks)


def test_lower_version_on_the_same_stream_is_outdated(cache: RuleCache) -> None:
    handler = make(cache, Hooks(1))
    assert handle(handler, push(5, 10)) == 1
    assert handle(handler, push(4, 11)) == 4010
    assert handle(handler, push(5, 12)) == 1  # an equal version is re-applied
    assert thresholds(cache) == [12] and handler.version_resets == 0


def test_first_push_on_a_new_stream_resets_the_version(cache: RuleCache) -> None:
    hooks = Hooks(1)
    handler = make(cache, hooks)
    assert handle(handler, push(5, 10)) == 1
    hooks.streams_opened = 2  # reconnected: a restarted upstream control plane counts from 1
    assert handle(handler, push(1, 20)) == 1
    entry = cache.entry(KEY)
    assert entry is not None and (entry.version, entry.stream, entry.live) == (1, 2, True)
    assert thresholds(cache) == [20] and handler.version_resets == 1
    # from then on, the same stream may not go back
    assert handle(handler, push(2, 21)) == 1
    assert handle(handler, push(1, 22)) == 4010
    assert thresholds(cache) == [21] and handler.version_resets == 1


def test_status_does_not_matter_for_the_reset(cache: RuleCache) -> None:
    hooks = Hooks(1)
    handler = make(cache, hooks)
    handle(handler, push(7, 1, status=1))
    hooks.streams_opened = 2
    assert handle(handler, push(3, 2, status=1)) == 1  # a status-1 reply to the new subscribe
    hooks.streams_opened = 3
    assert handle(handler, push(1, 3, status=200)) == 1  # or the first of a reconcile burst
    assert handler.version_resets == 2 and thresholds(cache) == [3]


def test_a_higher_version_on_a_new_stream_is_no_reset(cache: RuleCache) -> None:
    hooks = Hooks(1)
    handler = make(cache, hooks)
    handle(handler, push(5))
    hooks.streams_opened = 2
    assert handle(handler, push(9, 4)) == 1
    assert handler.version_resets == 0 and thresholds(cache) == [4]


def test_a_push_without_data_never_resets(cache: RuleCache) -> None:
    hooks = Hooks(1)
    handler = make(cache, hooks)
    handle(handler, push(5, 10))
    hooks.streams_opened = 2
    # e.g. upstream's code-500 "Register watcher error" reply: ack "", no dataWithVersion
    assert handle(handler, push(None, status=500)) == 4010
    assert thresholds(cache) == [10] and handler.version_resets == 0


def test_without_a_stream_counter_versions_never_go_back(cache: RuleCache) -> None:
    """Hooks without ``streams_opened``: every push counts as one stream (the official SDKs)."""
    handler = make(cache, Hooks(None))
    handle(handler, push(5, 10))
    assert handle(make(cache, Hooks(None)), push(1, 20)) == 4010
    assert thresholds(cache) == [10]


def test_snapshot_data_is_replaced_by_the_first_live_push(cache: RuleCache) -> None:
    cached = make(cache, Hooks(1))
    handle(cached, push(9, 1))
    entry = cache.entry(KEY)
    assert entry is not None
    cache.put(KEY, entry.version, entry.items, live=False)  # as loaded from the on-disk snapshot
    handler = make(cache, Hooks(1))
    assert handle(handler, push(2, 5)) == 1
    assert thresholds(cache) == [5] and handler.version_resets == 0
    assert handle(handler, push(1, 6)) == 4010

"""Fuzzing the gRPC port of a real control plane: SubscribeConfig streams, ReportMetadata (with its
metadata headers) and the token service, with well-formed-but-hostile messages (every field, see
:mod:`tests.fuzz.messages`) and with bytes that are not, or are mutated, protobuf. Every call ends
with OK or a status that says why (never UNKNOWN/INTERNAL, never a hang), and every answer on a
stream is well-formed: a NACK carries an error code and a message."""

from __future__ import annotations

import string
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message
from hypothesis import given
from hypothesis import strategies as st

from opensergo.common.protocol import CODE_CHANGE_PUSH, CODE_SUCCESS, ENCODING_LABEL
from opensergo.proto.flowcontrol.v1 import token_pb2 as tk
from opensergo.proto.service_contract.v1 import service_contract_pb2 as sc
from opensergo.proto.transport.v1 import protocol_pb2 as pb
from opensergo.spec import kinds
from tests.fuzz import oracle, tally
from tests.fuzz import strategies as fs
from tests.fuzz.conftest import MARKS, FuzzedControlPlane, budget
from tests.fuzz.messages import PROTO_TEXT, message
from tests.helpers import put_object

pytestmark = MARKS

TIMEOUT = 30.0  # seconds; a call that takes longer is a hang
SUBSCRIBE = "/io.opensergo.proto.transport.v1.OpenSergoUniversalTransportService/SubscribeConfig"
REPORT = "/opensergo.proto.service_contract.v1.MetadataService/ReportMetadata"
TOKENS = "/opensergo.ext.flowcontrol.v1.TokenService/Connect"
GLOBAL_RATE, GLOBAL_CONCURRENCY = "fuzz-global-rate", "fuzz-global-concurrency"


def _raw(data: bytes) -> bytes:
    return data


@pytest.fixture(scope="module")
def channel(fuzzed_cp: FuzzedControlPlane) -> Iterator[grpc.Channel]:
    options = [("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)]
    with grpc.insecure_channel(fuzzed_cp.grpc_address, options=options) as ch:
        yield ch


@pytest.fixture(scope="module")
def global_limits(fuzzed_cp: FuzzedControlPlane) -> None:
    """Global strategies, so that token requests for their keys reach the accounting."""
    for kind, name, spec in (
        ("RateLimitStrategy", GLOBAL_RATE, {"threshold": 50, "statDuration": "1s", "limitMode": "Global"}),
        ("ConcurrencyLimitStrategy", GLOBAL_CONCURRENCY, {"maxConcurrency": 5, "limitMode": "Global"}),
    ):
        info = kinds.lookup(kind)
        body = {
            "apiVersion": info.api_version,
            "kind": info.kind,
            "metadata": {"name": name, "namespace": fs.FUZZ_NAMESPACE, "labels": {"app": fs.FUZZ_APP}},
            "spec": spec,
        }
        assert put_object(fuzzed_cp, body).status_code in (200, 201)


def _stream(channel: grpc.Channel, method: str, requests: list[bytes], metadata: Any = None) -> list[bytes]:
    call = channel.stream_stream(method, request_serializer=_raw, response_deserializer=_raw)
    return list(call(iter(requests), timeout=TIMEOUT, metadata=metadata))


def _unary(channel: grpc.Channel, method: str, request: bytes, metadata: Any = None) -> bytes:
    call = channel.unary_unary(method, request_serializer=_raw, response_deserializer=_raw)
    return call(request, timeout=TIMEOUT, metadata=metadata)  # type: ignore[no-any-return]


def _ended(err: grpc.RpcError, target: str) -> None:
    tally.count(target, oracle.rpc_outcome(err))


# -- SubscribeConfig --------------------------------------------------------------------------------

_FULL_KINDS = [k.full_kind for k in kinds.all_kinds()]
_SUBSCRIBE_FIELDS = {
    ("io.opensergo.proto.transport.v1.SubscribeRequestTarget", "namespace"): fs.weighted(
        (3, st.just(fs.FUZZ_NAMESPACE)), (1, PROTO_TEXT)
    ),
    ("io.opensergo.proto.transport.v1.SubscribeRequestTarget", "app"): fs.weighted(
        (3, st.just(fs.FUZZ_APP)), (1, PROTO_TEXT)
    ),
    ("io.opensergo.proto.transport.v1.SubscribeRequestTarget", "kinds"): fs.weighted(
        (6, st.lists(st.sampled_from(_FULL_KINDS), min_size=1, max_size=5)),
        (2, st.lists(fs.weighted((4, st.sampled_from(_FULL_KINDS)), (1, PROTO_TEXT)), max_size=5)),
        (1, st.lists(PROTO_TEXT, min_size=200, max_size=400)),
    ),
    ("io.opensergo.proto.transport.v1.SubscribeLabelKV", "key"): fs.weighted(
        (2, st.just(ENCODING_LABEL)), (1, PROTO_TEXT)
    ),
    ("io.opensergo.proto.transport.v1.SubscribeRequest", "response_ack"): fs.weighted(
        (4, st.sampled_from(["", "ACK", "NACK"])), (1, PROTO_TEXT)
    ),
}
_plausible_subscription = st.builds(
    lambda kinds_, op, request_id, identifier, native: pb.SubscribeRequest(
        target=pb.SubscribeRequestTarget(
            namespace=fs.FUZZ_NAMESPACE,
            app=fs.FUZZ_APP,
            kinds=kinds_,
            labels=[pb.SubscribeLabelKV(key=ENCODING_LABEL, value="native")] if native else [],
        ),
        op_type=op,
        request_id=request_id,
        identifier=identifier,
    ),
    st.lists(st.sampled_from(_FULL_KINDS), min_size=1, max_size=5),
    st.sampled_from([pb.SUBSCRIBE, pb.UNSUBSCRIBE]),
    PROTO_TEXT,
    PROTO_TEXT,
    st.booleans(),
)
subscribe_requests = fs.weighted(
    (1, message(pb.SubscribeRequest, _SUBSCRIBE_FIELDS)), (1, _plausible_subscription)
)


def _check_answers(answers: list[bytes], requests: list[pb.SubscribeRequest]) -> str:
    nacks = 0
    for data in answers:
        answer = pb.SubscribeResponse.FromString(data)
        if answer.ack == "NACK":
            assert oracle.nack_is_well_formed(answer), answer
            nacks += 1
        else:
            assert answer.status.code in (CODE_SUCCESS, CODE_CHANGE_PUSH), answer
            assert answer.kind in _FULL_KINDS and answer.namespace and answer.app, answer
    asked = [r for r in requests if r.response_ack not in ("ACK", "NACK")]
    assert nacks <= len(asked)  # one refusal per request at most, answers are never refusals
    return "nacked" if nacks else ("pushed" if answers else "no answer")


@given(requests=st.lists(subscribe_requests, min_size=1, max_size=4))
@budget(ci=200, deep=7_000)
def test_subscribe_config_messages(channel: grpc.Channel, requests: list[pb.SubscribeRequest]) -> None:
    try:
        answers = _stream(channel, SUBSCRIBE, [r.SerializeToString() for r in requests])
    except grpc.RpcError as err:
        _ended(err, "grpc.subscribe")
        return
    tally.count("grpc.subscribe", _check_answers(answers, requests))


# -- ReportMetadata ---------------------------------------------------------------------------------

_ASCII = st.text(st.sampled_from(string.printable[:95]), max_size=60)  # metadata values: printable ASCII
_HEADERS = st.lists(
    st.tuples(
        fs.weighted(
            (3, st.sampled_from(["opensergo-namespace", "opensergo-labels", "opensergo-client-id"])),
            (1, st.from_regex(r"\A[a-z][a-z0-9-]{0,20}\Z").filter(lambda k: not k.startswith("grpc-"))),
        ),
        fs.weighted(
            (
                2,
                st.sampled_from([fs.FUZZ_NAMESPACE, "version=v1,zone=a", "a=b,,c=d", "=x", "k=", "<b>x</b>"]),
            ),
            (2, _ASCII),
            (1, st.text(st.sampled_from(string.printable[:95]), min_size=4000, max_size=9000)),
        ),
    ),
    max_size=4,
    unique_by=lambda kv: kv[0],
)
_REPORT_FIELDS = {
    ("opensergo.proto.service_contract.v1.ReportMetadataRequest", "app_name"): fs.weighted(
        (3, st.sampled_from([fs.FUZZ_APP, "fuzz-other"])), (1, PROTO_TEXT)
    ),
    ("opensergo.proto.service_contract.v1.SocketAddress", "address"): fs.weighted(
        (3, st.sampled_from(["10.0.0.7", "127.0.0.1", "::1", "0.0.0.0", "fe80::1%eth0", "example.com"])),
        (1, PROTO_TEXT),
    ),
}
report_requests = message(sc.ReportMetadataRequest, _REPORT_FIELDS)


@given(request=report_requests, headers=_HEADERS)
@budget(ci=300, deep=8_000)
def test_report_metadata_messages(
    channel: grpc.Channel, request: sc.ReportMetadataRequest, headers: list[tuple[str, str]]
) -> None:
    try:
        reply = _unary(channel, REPORT, request.SerializeToString(), metadata=headers)
    except grpc.RpcError as err:
        _ended(err, "grpc.report")
        return
    sc.ReportMetadataReply.FromString(reply)
    tally.count("grpc.report", "registered")


# -- the token service ------------------------------------------------------------------------------

_TOKEN_FIELDS = {
    ("opensergo.ext.flowcontrol.v1.FlowKey", "namespace"): fs.weighted(
        (3, st.just(fs.FUZZ_NAMESPACE)), (1, PROTO_TEXT)
    ),
    ("opensergo.ext.flowcontrol.v1.FlowKey", "app"): fs.weighted((3, st.just(fs.FUZZ_APP)), (1, PROTO_TEXT)),
    ("opensergo.ext.flowcontrol.v1.FlowKey", "strategy"): fs.weighted(
        (3, st.sampled_from([GLOBAL_RATE, GLOBAL_CONCURRENCY])), (1, PROTO_TEXT)
    ),
    ("opensergo.ext.flowcontrol.v1.Lease", "count"): fs.weighted(
        (3, st.integers(-2, 100)), (1, st.integers(-(2**31), 2**31 - 1))
    ),
}
token_batches = message(tk.TokenBatch, _TOKEN_FIELDS)
_CODES = set(tk.TokenResponse.Code.values())


@given(batches=st.lists(token_batches, min_size=1, max_size=3))
@budget(ci=200, deep=6_000)
def test_token_service_messages(
    channel: grpc.Channel, global_limits: None, batches: list[tk.TokenBatch]
) -> None:
    try:
        answers = _stream(channel, TOKENS, [b.SerializeToString() for b in batches])
    except grpc.RpcError as err:
        _ended(err, "grpc.tokens")
        return
    assert len(answers) == len(batches)  # one answer per batch
    for batch, data in zip(batches, answers, strict=True):
        answer = tk.TokenBatchResponse.FromString(data)
        assert len(answer.responses) == len(batch.requests)
        for request, response in zip(batch.requests, answer.responses, strict=True):
            assert response.id == request.id
            assert response.code in _CODES, response
            op = request.WhichOneof("op")
            asked = getattr(request, op).count if op else 0
            assert 0 <= response.granted <= max(asked, 0), (request, response)
            if response.code == tk.TokenResponse.BAD_REQUEST:
                assert response.message
    tally.count("grpc.tokens", "answered")


# -- bytes that are not (quite) protobuf ------------------------------------------------------------


def _mutate(data: bytes, edits: list[tuple[int, int]]) -> bytes:
    buffer = bytearray(data)
    for position, value in edits:
        if buffer:
            buffer[position % len(buffer)] = value
    return bytes(buffer)


def _corrupted(messages: st.SearchStrategy[Message]) -> st.SearchStrategy[bytes]:
    edits = st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), min_size=1, max_size=4)
    valid = messages.map(lambda m: m.SerializeToString())
    return fs.weighted(
        (2, st.tuples(valid, edits).map(lambda p: _mutate(*p))),
        (2, st.binary(max_size=200)),
        (1, st.tuples(valid, st.integers(0, 1 << 16)).map(lambda p: p[0][: p[1] % (len(p[0]) + 1)])),
    )


_BYTES = {
    SUBSCRIBE: _corrupted(subscribe_requests),
    REPORT: _corrupted(report_requests),
    TOKENS: _corrupted(token_batches),
}


@given(data=st.data(), method=st.sampled_from(sorted(_BYTES)))
@budget(ci=300, deep=8_000)
def test_bytes_that_are_not_protobuf(channel: grpc.Channel, data: st.DataObject, method: str) -> None:
    target = "grpc.bytes." + method.rsplit("/", 1)[-1]
    try:
        if method == REPORT:
            _unary(channel, method, data.draw(_BYTES[method]))
        else:
            _stream(channel, method, data.draw(st.lists(_BYTES[method], min_size=1, max_size=3)))
    except grpc.RpcError as err:
        _ended(err, target)
        return
    tally.count(target, "OK")


def test_the_control_plane_stayed_well(fuzzed_cp: FuzzedControlPlane) -> None:
    """Runs after this module's fuzzers: alive, answering, nothing uncaught in its log."""
    fuzzed_cp.assert_healthy()

"""The SDK's access token: bootstrap "token" / "tokenFile", BearerToken, and its metadata on every
kind of call of a channel from open_channel (checked against an in-process server)."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from opensergo.client import BootstrapError, OpenSergoClient
from opensergo.client.bootstrap import load_bootstrap
from opensergo.client.credentials import BearerToken, TokenError
from opensergo.client.tls import open_channel
from opensergo.proto.service_contract.v1 import service_contract_pb2 as sc
from opensergo.proto.service_contract.v1 import service_contract_pb2_grpc as sc_grpc
from opensergo.proto.transport.v1 import protocol_pb2 as pb
from opensergo.proto.transport.v1 import protocol_pb2_grpc as pb_grpc

pytestmark = [pytest.mark.unit, pytest.mark.timeout(20)]

INLINE = "OPENSERGO_BOOTSTRAP_CONFIG"


def test_bootstrap_token_and_token_file(tmp_path: Path) -> None:
    config = load_bootstrap({INLINE: json.dumps({"endpoint": "cp:10246", "token": " s3cr3t "})})
    assert config is not None and config.token is not None and config.token.value() == "s3cr3t"
    (tmp_path / "token").write_text("from-file\n")
    path = tmp_path / "bootstrap.json"
    path.write_text(json.dumps({"endpoint": "cp:10246", "tokenFile": "token"}))
    config = load_bootstrap({"OPENSERGO_BOOTSTRAP": str(path)})
    assert config is not None and config.token is not None
    assert config.token.file == str(tmp_path / "token") and config.token.value() == "from-file"
    assert load_bootstrap({INLINE: json.dumps({"endpoint": "cp:10246"})}).token is None  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"token": "a", "tokenFile": "b"}, "either"),
        ({"token": ""}, "non-empty string"),
        ({"token": 5}, "non-empty string"),
        ({"tokenFile": "/no/such/token"}, "cannot read the token file"),
    ],
)
def test_bootstrap_token_errors(document: dict[str, Any], message: str) -> None:
    with pytest.raises(BootstrapError, match=message):
        load_bootstrap({INLINE: json.dumps({"endpoint": "cp:10246", **document})})


def test_a_token_file_is_read_again_when_it_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "token"
    path.write_text("first")
    token = BearerToken(file=path)
    assert token.value() == "first"
    path.write_text("second")
    os.utime(path, (1, 1))  # a different mtime, whatever the file system's resolution
    assert token.value() == "first"  # checked at most once a second
    monkeypatch.setattr("opensergo.client.credentials._RECHECK_S", 0.0)
    assert token.value() == "second"
    path.unlink()
    assert token.value() == "second"  # a file that went away keeps the last token
    assert "second" not in repr(token) and "first" not in repr(BearerToken("first"))
    with pytest.raises(TokenError):
        BearerToken(" ")
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(TokenError, match="empty"):
        BearerToken(file=tmp_path / "empty")


def test_the_client_takes_the_bootstrap_token() -> None:
    client = OpenSergoClient.from_env(
        environ={INLINE: json.dumps({"endpoint": "cp:10246", "app": "a", "token": "t0k"})},
        snapshot=None,
    )
    assert client.token is not None and client.token.value() == "t0k"
    assert OpenSergoClient("cp:10246", app="a", token="x", snapshot=None).token.value() == "x"  # type: ignore[union-attr]


class _Transport(pb_grpc.OpenSergoUniversalTransportServiceServicer):
    def __init__(self, seen: list[str]) -> None:
        self.seen = seen

    async def SubscribeConfig(
        self, request_iterator: AsyncIterator[pb.SubscribeRequest], context: Any
    ) -> AsyncIterator[pb.SubscribeResponse]:
        self.seen.append(dict(context.invocation_metadata()).get("authorization", ""))
        async for _ in request_iterator:
            yield pb.SubscribeResponse(ack="ACK")


class _Metadata(sc_grpc.MetadataServiceServicer):
    def __init__(self, seen: list[str]) -> None:
        self.seen = seen

    async def ReportMetadata(self, request: sc.ReportMetadataRequest, context: Any) -> sc.ReportMetadataReply:
        self.seen.append(dict(context.invocation_metadata()).get("authorization", ""))
        return sc.ReportMetadataReply()


def test_open_channel_sends_the_token_on_unary_and_streaming_calls() -> None:
    async def scenario() -> list[str]:
        seen: list[str] = []
        server = grpc.aio.server()
        pb_grpc.add_OpenSergoUniversalTransportServiceServicer_to_server(_Transport(seen), server)  # type: ignore[no-untyped-call]
        sc_grpc.add_MetadataServiceServicer_to_server(_Metadata(seen), server)  # type: ignore[no-untyped-call]
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with open_channel(f"127.0.0.1:{port}", None, (), BearerToken("t0k")) as channel:
                await sc_grpc.MetadataServiceStub(channel).ReportMetadata(  # type: ignore[no-untyped-call]
                    sc.ReportMetadataRequest(app_name="a"), metadata=(("opensergo-namespace", "shop"),)
                )
                call = pb_grpc.OpenSergoUniversalTransportServiceStub(channel).SubscribeConfig()  # type: ignore[no-untyped-call]
                await call.write(pb.SubscribeRequest())
                assert (await call.read()).ack == "ACK"
                call.cancel()
            async with open_channel(f"127.0.0.1:{port}", None) as plain:
                await sc_grpc.MetadataServiceStub(plain).ReportMetadata(
                    sc.ReportMetadataRequest(app_name="a")
                )  # type: ignore[no-untyped-call]
        finally:
            await server.stop(None)
        return seen

    assert asyncio.run(scenario()) == ["Bearer t0k", "Bearer t0k", ""]

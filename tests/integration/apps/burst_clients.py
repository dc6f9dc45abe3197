"""Thousands of data planes in one process: subscribe streams, then a registration burst.

Usage: burst_clients.py ADDRESS COUNT APP PREFIX. Opens COUNT SubscribeConfig streams (identifier
``PREFIX-i``, subscribed to a rule kind of APP, ACKing as the SDK does) over a few HTTP/2
connections, prints ``streams N``; then sends the COUNT ReportMetadata registrations at once (each
with the ``opensergo-client-id`` of its stream), prints one JSON line (registered, errors, the
seconds until the last call was sent and until the last answer came), and keeps every stream
open until it is killed: a kill breaks them all at once. Requests are serialized up front and
sent as bytes, so the calls cost this process little CPU.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator

import grpc

from opensergo.proto.service_contract.v1 import service_contract_pb2 as sc
from opensergo.proto.transport.v1 import protocol_pb2 as pb
from opensergo.proto.transport.v1 import protocol_pb2_grpc as pb_grpc

RULE_KIND = "fault-tolerance.opensergo.io/v1alpha1/RateLimitStrategy"
REPORT = "/opensergo.proto.service_contract.v1.MetadataService/ReportMetadata"
STREAMS_PER_CONNECTION = 250


async def stream(
    stub: pb_grpc.OpenSergoUniversalTransportServiceStub, app: str, name: str, ready: asyncio.Event
) -> None:
    outbox: asyncio.Queue[pb.SubscribeRequest] = asyncio.Queue()

    async def requests() -> AsyncIterator[pb.SubscribeRequest]:
        while True:
            yield await outbox.get()

    target = pb.SubscribeRequestTarget(namespace="default", app=app, kinds=[RULE_KIND])
    outbox.put_nowait(pb.SubscribeRequest(target=target, identifier=name, request_id="1"))
    async for response in stub.SubscribeConfig(requests()):
        if response.ack:
            continue
        outbox.put_nowait(
            pb.SubscribeRequest(response_ack="ACK", request_id=response.response_id, status=pb.Status(code=1))
        )
        ready.set()


def report(app: str, i: int) -> bytes:
    request = sc.ReportMetadataRequest(app_name=app)
    request.node.identifier.host_name = f"burst-host-{i // 100}"
    request.node.identifier.pid = 10_000 + i
    request.node.identifier.start_timestamp.seconds = 1_700_000_000
    metadata = request.service_metadata.add(protocols=["http"])
    metadata.listening_addresses.add(
        address=f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}", port_value=8080
    )
    return request.SerializeToString()


async def main() -> None:
    address, count, app, prefix = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    # A local subchannel pool gives each channel its own HTTP/2 connection.
    options = [("grpc.use_local_subchannel_pool", 1)]
    channels = [
        grpc.aio.insecure_channel(address, options=options)
        for _ in range(max(1, count // STREAMS_PER_CONNECTION))
    ]
    stubs = [pb_grpc.OpenSergoUniversalTransportServiceStub(c) for c in channels]  # type: ignore[no-untyped-call]
    ready = [asyncio.Event() for _ in range(count)]
    tasks = [
        asyncio.create_task(stream(stubs[i % len(stubs)], app, f"{prefix}-{i}", ready[i]))
        for i in range(count)
    ]
    await asyncio.gather(*(r.wait() for r in ready))
    print(f"streams {count}", flush=True)

    bodies = [report(app, i) for i in range(count)]
    calls = [c.unary_unary(REPORT, request_serializer=None, response_deserializer=None) for c in channels]
    errors: list[str] = []

    started = time.monotonic()
    # Every call is started here (grpc.aio sends it from its own task): no task per call of ours.
    pending = [
        calls[i % len(calls)](
            bodies[i],
            metadata=(("opensergo-namespace", "default"), ("opensergo-client-id", f"{prefix}-{i}")),
            timeout=60,
        )
        for i in range(count)
    ]
    issued = time.monotonic() - started
    for call in pending:
        try:
            await call
        except grpc.aio.AioRpcError as err:
            errors.append(f"{err.code().name}: {err.details()}")
    result = {
        "registered": count - len(errors),
        "errors": errors[:5],
        "issued": issued,  # every call started
        "seconds": time.monotonic() - started,  # every answer received
    }
    print(json.dumps(result), flush=True)
    await asyncio.gather(*tasks)  # until killed


if __name__ == "__main__":
    asyncio.run(main())

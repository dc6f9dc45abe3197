"""Load generator for benchmarks/scale.py: many SubscribeConfig streams multiplexed in one process.

Each stream behaves like an SDK: it subscribes, ACKs every push with request_id = response_id,
and records the wall-clock time at which it first received each version.
Usage: scale_loadgen.py ADDRESS STREAMS CHANNELS OUT_JSON; then commands on stdin: dump, quit.
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys
import time
from collections.abc import AsyncIterator

import grpc

from opensergo.proto.transport.v1 import protocol_pb2 as pb
from opensergo.proto.transport.v1 import protocol_pb2_grpc as pb_grpc

KIND = "fault-tolerance.opensergo.io/v1alpha1/RateLimitStrategy"


async def run_stream(
    stub: pb_grpc.OpenSergoUniversalTransportServiceStub, index: int, seen: dict[int, float], ready: list[int]
) -> None:
    outbox: asyncio.Queue[pb.SubscribeRequest] = asyncio.Queue()

    async def requests() -> AsyncIterator[pb.SubscribeRequest]:
        while True:
            yield await outbox.get()

    target = pb.SubscribeRequestTarget(namespace="default", app="scale-app", kinds=[KIND])
    outbox.put_nowait(pb.SubscribeRequest(target=target, identifier=f"loadgen-{index}", request_id="1"))
    first = True
    async for response in stub.SubscribeConfig(requests()):
        if response.ack:
            continue
        seen.setdefault(response.dataWithVersion.version, time.time())
        ack = pb.SubscribeRequest(
            response_ack="ACK", request_id=response.response_id, status=pb.Status(code=1)
        )
        outbox.put_nowait(ack)
        if first:
            ready[0] += 1
            first = False


async def main() -> None:
    address, streams, channels, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    # A local subchannel pool gives every channel its own HTTP/2 connection (gRPC would share one).
    options = [("grpc.use_local_subchannel_pool", 1)]
    stubs = [
        pb_grpc.OpenSergoUniversalTransportServiceStub(grpc.aio.insecure_channel(address, options=options))  # type: ignore[no-untyped-call]
        for _ in range(channels)
    ]
    seen: list[dict[int, float]] = [{} for _ in range(streams)]
    ready = [0]
    tasks = [asyncio.create_task(run_stream(stubs[i % channels], i, seen[i], ready)) for i in range(streams)]
    while ready[0] < streams:
        await asyncio.sleep(0.05)
    # Same GC tuning as the control plane, so that the load generator is not the bottleneck.
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    while True:
        command = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
        if command == "dump":
            times: dict[str, list[float]] = {}
            for per_stream in seen:
                for version, at in per_stream.items():
                    times.setdefault(str(version), []).append(at)
            with open(out, "w") as fh:
                json.dump(times, fh)
            print("dumped", flush=True)
        else:
            break
    for task in tasks:
        task.cancel()


if __name__ == "__main__":
    asyncio.run(main())

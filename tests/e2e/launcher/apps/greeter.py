"""An ordinary grpc.aio server (no OpenSergo import): ``demo.Greeter/Hello`` answers its version
and what it received of the lane and the trace context. Usage: greeter.py VERSION PORT"""

from __future__ import annotations

import asyncio
import json
import os
import sys

import grpc
import grpc.aio

VERSION = sys.argv[1]


async def hello(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    metadata = {key: value for key, value in context.invocation_metadata() or ()}
    answer = {
        "version": VERSION,
        "pid": os.getpid(),
        "lane": metadata.get("x-opensergo-traffic"),
        "baggage": metadata.get("baggage", ""),
        "traceparent": metadata.get("traceparent", ""),
    }
    return json.dumps(answer).encode()


async def main(port: int) -> None:
    server = grpc.aio.server()
    handler = grpc.unary_unary_rpc_method_handler(hello)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("demo.Greeter", {"Hello": handler}),)
    )
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[2])))

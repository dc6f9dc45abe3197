"""An ordinary grpc.aio server (no OpenSergo import) whose ``demo.Front/Call`` calls the greeter
by its service name over a grpc.aio channel, forwarding the caller's ``x-user-tier``. The channel
is built before the server, so before governance starts. Usage: front.py PORT"""

from __future__ import annotations

import asyncio
import json
import sys

import grpc
import grpc.aio


async def main(port: int) -> None:
    channel = grpc.aio.insecure_channel("greeter-app:50051")
    hello = channel.unary_unary("/demo.Greeter/Hello")

    async def call(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        metadata = [(k, v) for k, v in context.invocation_metadata() or () if k == "x-user-tier"]
        try:
            reply: bytes = await hello(b"hi", metadata=metadata, timeout=5)
        except Exception as error:  # what a blocked or failed call looks like to the app
            kinds = [cls.__name__ for cls in type(error).__mro__]
            return json.dumps({"error": kinds, "detail": str(error)}).encode()
        return reply

    server = grpc.aio.server()
    handler = grpc.unary_unary_rpc_method_handler(call)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("demo.Front", {"Call": handler}),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))

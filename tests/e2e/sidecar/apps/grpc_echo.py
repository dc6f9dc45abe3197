"""A gRPC server (generic handler, no generated code) registered through the SDK.

Usage: grpc_echo.py ENDPOINT APP NAME [label=value ...]

``/echo.Echo/Call`` answers this server's NAME (bytes in, bytes out).
"""

from __future__ import annotations

import signal
import sys
import threading
from concurrent import futures

import grpc

from opensergo.client import Heartbeat, InstanceInfo, OpenSergoClient, ServiceInfo


def main() -> None:
    endpoint, app, name, *label_args = sys.argv[1:]
    labels = dict(arg.split("=", 1) for arg in label_args)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    handler = grpc.unary_unary_rpc_method_handler(lambda request, context: name.encode())
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("echo.Echo", {"Call": handler}),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    client = OpenSergoClient(
        endpoint,
        app=app,
        heartbeat=Heartbeat(interval=0.5),
        instance=InstanceInfo(labels=labels),
        snapshot=None,
        service_metadata=[ServiceInfo(protocols=["grpc"], listening_addresses=[f"127.0.0.1:{port}"])],
    )
    client.start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    print(f"grpc {name} listening on {port}", flush=True)
    done.wait()
    client.stop()
    server.stop(1)


if __name__ == "__main__":
    main()

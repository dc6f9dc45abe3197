"""An HTTP app that registers through the SDK, routes its outbound calls, and reports what it saw.

Usage: service.py ENDPOINT APP NAME [label=value ...] [tag=<tag>]

``GET /call?hops=a,b`` answers with this instance's identity and the lane headers it received,
after calling ``http://a/call?hops=b`` (through the routing transport, in the lane of the
inbound request) and nesting that answer under ``next``.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from opensergo.client import Heartbeat, InstanceInfo, OpenSergoClient, ServiceInfo
from opensergo.governance.routing import ServiceDirectory, lanes
from opensergo.integrations.httpx import RoutingTransport


def main() -> None:
    endpoint, app, name, *label_args = sys.argv[1:]
    labels = dict(arg.split("=", 1) for arg in label_args)
    tag = labels.pop("tag", None)
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = server.server_address[1]
    client = OpenSergoClient(
        endpoint,
        app=app,
        heartbeat=Heartbeat(interval=0.5),
        instance=InstanceInfo(tag=tag, labels=labels),
        snapshot=None,
        service_metadata=[ServiceInfo(protocols=["http"], listening_addresses=[f"127.0.0.1:{port}"])],
    )
    client.start()
    directory = ServiceDirectory(client)
    http = httpx.Client(transport=RoutingTransport(directory), timeout=10)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body are separate writes

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            token = lanes.enter_from_headers(self.headers.items(), method="GET", path=self.path)
            try:
                body: dict[str, Any] = {
                    "app": app,
                    "name": name,
                    "labels": labels,
                    "tag": tag,
                    "lane": self.headers.get("x-opensergo-traffic"),
                    "baggage": self.headers.get("baggage"),
                    "context_lane": lanes.current_name(),
                }
                hops = [h for h in parse_qs(parts.query).get("hops", [""])[0].split(",") if h]
                status = 200
                if hops:
                    rest = ",".join(hops[1:])
                    try:
                        response = http.get(f"http://{hops[0]}/call?hops={rest}")
                        body["next"] = response.json()
                    except Exception as exc:  # reported to the test, which fails on it
                        body["error"] = repr(exc)
                        status = 502
            finally:
                lanes.reset(token)
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server.RequestHandlerClass = Handler
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"{name} ({app}) serving on 127.0.0.1:{port}", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    done.wait()
    server.shutdown()
    directory.close()
    client.stop()


if __name__ == "__main__":
    main()

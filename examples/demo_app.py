"""A small HTTP service governed by OpenSergo, used by `make run`.

It reads its control-plane endpoint from OPENSERGO_BOOTSTRAP_CONFIG / OPENSERGO_BOOTSTRAP,
reports its metadata (with heartbeats), subscribes to every fault-tolerance kind for its app and
prints each rule set it receives. GET / shows the rules it currently holds.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opensergo.client import OpenSergoClient
from opensergo.common.address import routable_address
from opensergo.governance import BlockedError, Engine
from opensergo.governance.runtime import attach
from opensergo.proto.service_contract.v1 import service_contract_pb2 as sc
from opensergo.spec import kinds
from opensergo.spec.base import Resource

FAULT_TOLERANCE_GROUP = "fault-tolerance.opensergo.io"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--app", default=os.environ.get("OPENSERGO_APP", "demo-app"))
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s demo-app %(levelname)s %(message)s")

    metadata = sc.ServiceMetadata(
        listening_addresses=[sc.SocketAddress(address=routable_address(), port_value=args.port)],
        protocols=["http"],
        service_contract=sc.ServiceContract(
            services=[
                sc.ServiceDescriptor(
                    name="demo",
                    methods=[sc.MethodDescriptor(name="hello", http_paths=["/hello"], http_methods=["GET"])],
                )
            ]
        ),
    )
    client = OpenSergoClient.from_env(app=args.app, service_metadata=[metadata])
    for kind in kinds.all_kinds():
        if kind.group == FAULT_TOLERANCE_GROUP:
            client.subscribe(kind, callback=_printer(kind.kind))
    # The fault-tolerance engine follows the same pushes: GET /hello is guarded by them.
    governance = attach(client, Engine())
    governance.start()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.startswith("/hello"):
                try:
                    with governance.engine.entry("GET:/hello"):
                        self._send(200, {"message": "hello from " + args.app})
                except BlockedError as blocked:
                    response = blocked.fallback
                    if response is None:
                        self._send(429, {"error": str(blocked)})
                    else:
                        self._send_raw(response.status, response.body_bytes, dict(response.headers))
                return
            rules = {
                key.kind: [
                    r.to_dict() for r in client.cache.get(key.kind, namespace=key.namespace, app=key.app)
                ]
                for key in client.cache.keys()  # noqa: SIM118 - a method, not a dict
            }
            self._send(200, rules)

        def _send(self, status: int, body: object) -> None:
            self._send_raw(status, json.dumps(body, indent=2).encode(), {"content-type": "application/json"})

        def _send_raw(self, status: int, data: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    logging.info("listening on http://127.0.0.1:%d", args.port)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        governance.stop()


def _printer(kind: str):  # type: ignore[no-untyped-def]
    def on_rules(resources: list[Resource], version: int) -> None:
        names = ", ".join(r.name for r in resources) or "(none)"
        logging.info("%s version %d: %s", kind, version, names)

    return on_rules


if __name__ == "__main__":
    main()

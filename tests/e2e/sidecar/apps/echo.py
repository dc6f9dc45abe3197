"""A plain HTTP app (no OpenSergo code) for the sidecar tests.

Usage: echo.py PORT NAME [FAIL_STATUS]

``GET /<anything>`` answers 200 ``{"name": NAME, "path": ..., "headers": {...}}``; a path with
``.../status/<code>`` answers that status, one with ``.../sleep/<ms>`` after that many ms;
``/count`` answers how many requests arrived so far (retries and mirrors are counted too).
With FAIL_STATUS every request is answered with that status.
"""

from __future__ import annotations

import itertools
import json
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main() -> None:
    port, name = int(sys.argv[1]), sys.argv[2]
    fail = int(sys.argv[3]) if len(sys.argv) > 3 else None
    counter = {"requests": 0}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def _answer(self) -> None:
            with lock:
                counter["requests"] += 1
                seen = counter["requests"]
            length = int(self.headers.get("content-length") or 0)
            if length:
                self.rfile.read(length)
            status = fail or 200
            parts = self.path.split("?")[0].strip("/").split("/")
            for word, value in itertools.pairwise(parts):
                if word == "status" and value.isdigit():
                    status = int(value)
                elif word == "sleep" and value.isdigit():
                    time.sleep(int(value) / 1000)
            body = json.dumps(
                {
                    "name": name,
                    "path": self.path,
                    "count": seen,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                }
            ).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"echo {name} listening on {port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()

"""`make run`: start the control plane on the embedded store and a demo app it governs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GRPC_PORT = int(os.environ.get("OPENSERGO_GRPC_PORT", "10246"))
HTTP_PORT = int(os.environ.get("OPENSERGO_HTTP_PORT", "10247"))
DEMO_PORT = int(os.environ.get("DEMO_PORT", "8080"))
BIN = Path(sys.executable).parent


def wait_http(url: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return True
        except OSError:
            time.sleep(0.2)
    return False


def main() -> int:
    cp = subprocess.Popen(
        [
            str(BIN / "opensergo"),
            "control-plane",
            "--grpc-port",
            str(GRPC_PORT),
            "--http-port",
            str(HTTP_PORT),
            "--data-dir",
            str(ROOT / ".opensergo"),
            # Everything runs on this machine; the demo may only have a loopback address.
            "--allow-loopback",
        ]
    )
    procs = [cp]
    try:
        if not wait_http(f"http://127.0.0.1:{HTTP_PORT}/healthz", 30):
            print("control plane did not start; see the log above", file=sys.stderr)
            return 1
        env = dict(os.environ)
        env["OPENSERGO_BOOTSTRAP_CONFIG"] = json.dumps({"endpoint": f"127.0.0.1:{GRPC_PORT}"})
        env["OPENSERGO_SNAPSHOT_DIR"] = str(ROOT / ".opensergo" / "demo-snapshots")
        demo = subprocess.Popen(
            [sys.executable, str(ROOT / "examples" / "demo_app.py"), "--port", str(DEMO_PORT)], env=env
        )
        procs.append(demo)
        wait_http(f"http://127.0.0.1:{DEMO_PORT}/hello", 15)
        print(
            f"""
OpenSergo is running.
  control plane gRPC   127.0.0.1:{GRPC_PORT}   (OpenSergo universal transport + MetadataService)
  dashboard            http://127.0.0.1:{HTTP_PORT}/
  control plane REST   http://127.0.0.1:{HTTP_PORT}/docs   (OpenAPI: /openapi.json)
  demo app             http://127.0.0.1:{DEMO_PORT}/hello  (guarded; / shows the rules it holds)

Try, in another terminal (after `. .venv/bin/activate`):
  opensergo apply -f examples/rules/rate-limit.yaml     # at most 5 GET /hello per second
  for i in $(seq 8); do curl -s -o /dev/null -w "%{{http_code}} " http://127.0.0.1:{DEMO_PORT}/hello; done
  opensergo get ratelimitstrategies
  opensergo get instances
  opensergo get clients
  curl http://127.0.0.1:{DEMO_PORT}/
Press Ctrl-C to stop.
""",
            flush=True,
        )
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    sys.exit(main())

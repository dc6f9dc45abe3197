"""`make run`: start the control plane on the embedded store and a demo app it governs.

Ctrl-C stops both and exits 0. In a terminal, this process takes the terminal's foreground so
that Ctrl-C reaches it alone: `make` above it would otherwise get the SIGINT too and die of it
(exit 130). The two children run in their own process group and are stopped with SIGTERM.

Environment: OPENSERGO_GRPC_PORT (10246), OPENSERGO_HTTP_PORT (10247), DEMO_PORT (8080) and
OPENSERGO_DATA_DIR (.opensergo in the repository).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parent.parent
GRPC_PORT = int(os.environ.get("OPENSERGO_GRPC_PORT", "10246"))
HTTP_PORT = int(os.environ.get("OPENSERGO_HTTP_PORT", "10247"))
DEMO_PORT = int(os.environ.get("DEMO_PORT", "8080"))
DATA_DIR = Path(os.environ.get("OPENSERGO_DATA_DIR", str(ROOT / ".opensergo")))
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


def take_terminal() -> Callable[[], None]:
    """Become the terminal's foreground process group (when running in one); returns the undo."""
    try:
        fd = sys.stdin.fileno()
        if not os.isatty(fd) or os.tcgetpgrp(fd) != os.getpgrp():
            return lambda: None
    except (OSError, ValueError):
        return lambda: None
    previous = os.getpgrp()

    def foreground(group: int) -> None:
        # A process outside the foreground group gets SIGTTOU for tcsetpgrp unless it ignores it.
        old = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
        try:
            os.tcsetpgrp(fd, group)
        except OSError:
            pass
        finally:
            signal.signal(signal.SIGTTOU, old)

    os.setpgid(0, 0)
    foreground(os.getpgrp())
    return lambda: foreground(previous)


def _stop(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main() -> int:
    give_back_terminal = take_terminal()
    # A closed terminal or a `kill` stops the children too, as Ctrl-C does.
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGHUP, _stop)
    try:
        return run()
    finally:
        give_back_terminal()


def run() -> int:
    cp = subprocess.Popen(
        [
            str(BIN / "opensergo"),
            "control-plane",
            "--grpc-port",
            str(GRPC_PORT),
            "--http-port",
            str(HTTP_PORT),
            "--data-dir",
            str(DATA_DIR),
            # Everything runs on this machine; the demo may only have a loopback address.
            "--allow-loopback",
        ],
        process_group=0,
    )
    procs = [cp]
    try:
        if not wait_http(f"http://127.0.0.1:{HTTP_PORT}/healthz", 30):
            print("control plane did not start; see the log above", file=sys.stderr)
            return 1
        env = dict(os.environ)
        env["OPENSERGO_BOOTSTRAP_CONFIG"] = json.dumps({"endpoint": f"127.0.0.1:{GRPC_PORT}"})
        env["OPENSERGO_SNAPSHOT_DIR"] = str(DATA_DIR / "demo-snapshots")
        demo = subprocess.Popen(
            [sys.executable, str(ROOT / "examples" / "demo_app.py"), "--port", str(DEMO_PORT)],
            env=env,
            process_group=0,
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
        print("a process stopped on its own; see the log above", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopping the demo app and the control plane", flush=True)
        return 0
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the shutdown
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

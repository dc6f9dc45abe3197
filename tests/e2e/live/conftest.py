"""Live-control fixtures: governed app processes next to a real control plane."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from opensergo.governance.faulttolerance.engine import KINDS
from tests.helpers import ROOT, ControlPlaneProcess, free_port, spawn_python, wait_until

EXAMPLES = ROOT / "examples"


class LiveApp:
    """One example app in its own process, governed by the control plane (bootstrap env)."""

    def __init__(self, script: Path, app: str, cp: ControlPlaneProcess, root: Path, *args: str) -> None:
        self.app = app
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = root / f"{app}.log"
        bootstrap = {"endpoint": cp.grpc_address, "snapshotDir": str(root / f"{app}-snapshot")}
        env = {"OPENSERGO_BOOTSTRAP_CONFIG": json.dumps(bootstrap), "OPENSERGO_APP": app}
        self.proc = spawn_python(script, *args, "--port", str(self.port), log=self.log, env=env)
        self.http = httpx.Client(base_url=self.url, timeout=5)

    def status(self) -> dict[str, Any]:
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.app} exited with {self.proc.returncode}:\n{self.logs()}")
        body: dict[str, Any] = self.http.get("/opensergo/status").json()
        return body

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Serving, connected, and every fault-tolerance kind received its first push."""

        def ready() -> bool:
            try:
                status = self.status()
            except httpx.HTTPError:
                return False
            # Ready once every fault-tolerance kind has had its first push.
            return bool(status.get("connected")) and len(status.get("versions", {})) >= len(KINDS)

        wait_until(ready, timeout=timeout, interval=0.1, what=f"{self.app} ready")

    def stop(self) -> None:
        self.http.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)

    def logs(self) -> str:
        return f"--- {self.log.name} ---\n{self.log.read_text(errors='replace')}" if self.log.exists() else ""


class Cli:
    """``python -m opensergo.cli`` against the control plane; returns when the command did."""

    def __init__(self, cp: ControlPlaneProcess) -> None:
        self.cp = cp
        self.started = 0.0
        """When the last command was started (monotonic)."""

    def run(self, *args: str) -> float:
        """Run the command; the monotonic time at which it returned."""
        self.started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "opensergo.cli", *args, "--server", self.cp.http_url],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        )
        returned = time.monotonic()
        assert done.returncode == 0, f"opensergo {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
        return returned

    def apply(self, path: Path) -> float:
        return self.run("apply", "-f", str(path))

    def delete(self, path: Path) -> float:
        return self.run("delete", "-f", str(path))


@pytest.fixture
def live(
    control_plane: ControlPlaneProcess, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[Cli, list[LiveApp]]]:
    apps: list[LiveApp] = []
    yield Cli(control_plane), apps
    for app in apps:
        app.stop()
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        for app in apps:
            print(app.logs())

"""Shared test helpers: free ports, polling, and real control-plane processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import httpx

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(
    condition: Callable[[], T], timeout: float = 10.0, interval: float = 0.02, what: str = ""
) -> T:
    """Poll ``condition`` until it returns a truthy value; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
        except Exception as e:
            last_error = e
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}: {last_error!r}")


class ControlPlaneProcess:
    """A real `opensergo control-plane` process on loopback with its own data dir."""

    def __init__(
        self, data_dir: Path, log_dir: Path, extra_args: Sequence[str] = ("--allow-loopback",)
    ) -> None:
        self.extra_args = list(extra_args)
        self.data_dir = data_dir
        self.log_dir = log_dir
        self.grpc_port = free_port()
        self.http_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def grpc_address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"control-plane-{self.starts}.log"

    def start(self, timeout: float = 20.0) -> None:
        self.starts += 1
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "opensergo.cli",
                "control-plane",
                "--grpc-port",
                str(self.grpc_port),
                "--http-port",
                str(self.http_port),
                "--data-dir",
                str(self.data_dir),
                "--log-level",
                "info",
                *self.extra_args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        )
        wait_until(self._healthy, timeout=timeout, interval=0.05, what="control plane /healthz")

    def _healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"control plane exited with {self.proc.returncode}:\n{self.logs()}")
        try:
            return httpx.get(self.http_url + "/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name} ---\n{p.read_text(errors='replace')}"
            for p in sorted(self.log_dir.glob("control-plane-*.log"))
        )


def spawn_python(
    script: Path, *args: str, log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start a Python helper process with the project on its path, output to ``log``."""
    return subprocess.Popen(
        [sys.executable, str(script), *args],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}", **(env or {})},
    )

"""A control plane, plain HTTP apps and real Envoy sidecars (``opensergo sidecar``) on loopback.

Every process is started here and stopped here by PID; logs are printed when a test fails.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from opensergo.sidecar.runner import find_envoy
from tests.helpers import (
    ROOT,
    ControlPlaneProcess,
    free_port,
    run_cli,
    spawn_python,
    stop_processes,
    wait_until,
)

ECHO = Path(__file__).parent / "apps" / "echo.py"


class Sidecar:
    def __init__(
        self,
        name: str,
        proc: subprocess.Popen[bytes],
        admin_port: int,
        inbound_port: int,
        outbound_port: int | None,
    ) -> None:
        self.name = name
        self.proc = proc
        self.admin_port = admin_port
        self.inbound_port = inbound_port
        self.outbound_port = outbound_port

    @property
    def admin(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def ready(self) -> bool:
        try:
            return httpx.get(self.admin + "/ready", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def stat(self, name: str) -> int:
        text = httpx.get(self.admin + "/stats", params={"filter": f"^{name}$"}, timeout=2).text
        for line in text.splitlines():
            key, _, value = line.partition(": ")
            if key == name:
                return int(value)
        return 0


class Mesh:
    def __init__(self, root: Path, cp_args: Sequence[str] = ("--allow-loopback",), token: str = "") -> None:
        """``cp_args``: the control plane's options; ``token``: what the tests' REST and CLI
        calls send (a control plane with auth on)."""
        self.root = root
        self.logs = root / "logs"
        self.logs.mkdir()
        self.cp = ControlPlaneProcess(root / "data", self.logs, cp_args)
        self.token = token
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.sidecars: dict[str, Sidecar] = {}
        self.app_ports: dict[str, int] = {}
        self.envoy = find_envoy()

    def app(self, name: str, fail_status: int | None = None) -> int:
        port = free_port()
        extra = [str(fail_status)] if fail_status else []
        self.procs[f"app-{name}"] = spawn_python(
            ECHO, str(port), name, *extra, log=self.logs / f"app-{name}.log"
        )
        self.app_ports[name] = port
        wait_until(lambda: _listening(port), timeout=10, what=f"app {name} on {port}")
        return port

    def sidecar(
        self,
        name: str,
        app: str,
        app_port: int,
        *labels: str,
        outbound: bool = False,
        engine: str = "envoy",
        extra: Sequence[str] = (),
        env: dict[str, str] | None = None,
        wait_ready: bool = True,
    ) -> Sidecar:
        """``extra``: more ``opensergo sidecar`` options; ``wait_ready``: wait for Envoy's
        /ready (which needs its first configuration, or 15 s without one)."""
        admin, inbound = free_port(), free_port()
        outbound_port = free_port() if outbound else None
        args = [
            sys.executable,
            "-m",
            "opensergo.cli",
            "sidecar",
            "--app",
            app,
            "--app-port",
            str(app_port),
            "--inbound-port",
            str(inbound),
            "--inbound-host",
            "127.0.0.1",
            "--admin-port",
            str(admin),
            "--control-plane",
            self.cp.grpc_address,
            "--envoy",
            self.envoy,
            "--engine",
            engine,
        ]
        if outbound_port is not None:
            args += ["--outbound-port", str(outbound_port)]
        for label in labels:
            args += ["--label", label]
        args += extra
        proc = subprocess.Popen(
            args,
            stdout=(self.logs / f"sidecar-{name}.log").open("wb"),
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(ROOT / "src"), **(env or {})},
        )
        self.procs[f"sidecar-{name}"] = proc
        sidecar = Sidecar(name, proc, admin, inbound, outbound_port)
        self.sidecars[name] = sidecar
        if wait_ready:
            wait_until(sidecar.ready, timeout=30, what=f"sidecar {name} ready")
        return sidecar

    def kill(self, name: str) -> None:
        proc = self.procs[name]
        proc.kill()
        proc.wait(timeout=10)

    def stop(self) -> None:
        stop_processes([p for n, p in self.procs.items() if n.startswith("sidecar-")])
        stop_processes([p for n, p in self.procs.items() if not n.startswith("sidecar-")])
        self.cp.stop()

    def dump_logs(self) -> str:
        parts = [self.cp.logs()]
        for path in sorted(self.logs.glob("*.log")):
            if not path.name.startswith("control-plane"):
                parts.append(f"--- {path.name} ---\n{path.read_text(errors='replace')[-6000:]}")
        return "\n".join(parts)

    def apply(self, text: str) -> None:
        path = self.root / f"rules-{time.monotonic_ns()}.yaml"
        path.write_text(text)
        result = run_cli("apply", "-f", str(path), "-s", self.cp.http_url, env=self._cli_env())
        assert result.returncode == 0, result.stdout + result.stderr

    def delete(self, text: str) -> None:
        path = self.root / f"rules-{time.monotonic_ns()}.yaml"
        path.write_text(text)
        result = run_cli("delete", "-f", str(path), "-s", self.cp.http_url, env=self._cli_env())
        assert result.returncode == 0, result.stdout + result.stderr

    def _cli_env(self) -> dict[str, str]:
        return {"OPENSERGO_TOKEN": self.token} if self.token else {}

    def clients(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = httpx.get(
            self.cp.http_url + "/api/v1/clients", headers=self.headers, timeout=5
        ).json()["items"]
        return items

    def xds_clients(self) -> list[dict[str, Any]]:
        return [c for c in self.clients() if c.get("protocol") == "xds" and c.get("connected")]

    def instances(self, app: str, namespace: str | None = None) -> list[dict[str, Any]]:
        params = {"app": app, **({"namespace": namespace} if namespace else {})}
        items: list[dict[str, Any]] = httpx.get(
            self.cp.http_url + "/api/v1/instances", params=params, headers=self.headers, timeout=5
        ).json()["items"]
        return items


def _listening(port: int) -> bool:
    try:
        httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
    except httpx.HTTPError:
        return False
    return True


@pytest.fixture
def mesh(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Mesh]:
    mesh = Mesh(tmp_path)
    mesh.cp.start()
    try:
        yield mesh
    finally:
        mesh.stop()
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            print(mesh.dump_logs())

"""Processes under ``opensergo-run`` next to a real control plane (the observability e2e tests)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import ROOT, ControlPlaneProcess, stop_processes

APPS = Path(__file__).parent / "apps"


class Launched:
    def __init__(self, tmp: Path, cp: ControlPlaneProcess) -> None:
        self.tmp = tmp
        self.cp = cp
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def run(self, name: str, app: str, labels: dict[str, str], command: list[str], **env: str) -> None:
        bootstrap = {"endpoint": self.cp.grpc_address, "snapshotDir": str(self.tmp / f"{name}-snapshot")}
        args = [sys.executable, "-m", "opensergo.launcher", "--app", app]
        for key, value in labels.items():
            args += ["--label", f"{key}={value}"]
        log = (self.tmp / f"{name}.log").open("wb")
        proc = subprocess.Popen(
            [*args, "--", *command],
            cwd=APPS,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={
                **os.environ,
                "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}",
                "OPENSERGO_BOOTSTRAP_CONFIG": json.dumps(bootstrap),
                "OTEL_BSP_SCHEDULE_DELAY": "100",
                "OTEL_BLRP_SCHEDULE_DELAY": "100",
                "OPENSERGO_CONTRACT_INTERVAL": "1",
                **env,
            },
            start_new_session=True,  # gunicorn's workers go with the arbiter's group
        )
        self.procs.append((name, proc))

    def stop(self) -> None:
        stop_processes([p for _, p in self.procs], timeout=15)

    def logs(self) -> str:
        return "\n".join(
            f"--- {name} ---\n{(self.tmp / f'{name}.log').read_text(errors='replace')[-6000:]}"
            for name, _ in self.procs
        )


@pytest.fixture
def cp(tmp_path: Path) -> Iterator[ControlPlaneProcess]:
    control = ControlPlaneProcess(
        tmp_path / "cp", tmp_path, extra_args=("--allow-loopback", "--metrics-history-retention", "0")
    )
    control.start()
    yield control
    control.stop()


@pytest.fixture
def launched(tmp_path: Path, cp: ControlPlaneProcess, request: pytest.FixtureRequest) -> Iterator[Launched]:
    apps = Launched(tmp_path, cp)
    yield apps
    apps.stop()
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        print(apps.logs())
        print(cp.logs())


def api(cp: ControlPlaneProcess, path: str, **params: Any) -> Any:
    response = httpx.get(cp.http_url + path, params=params, timeout=10)
    response.raise_for_status()
    return response.json()

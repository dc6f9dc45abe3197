"""Fixtures of the hardening tests: real control-plane processes with chosen flags."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from tests.helpers import ControlPlaneProcess

StartControlPlane = Callable[..., ControlPlaneProcess]


@pytest.fixture
def start_cp(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[StartControlPlane]:
    """Start a control plane with extra flags (and optionally a given data dir); every process
    started is stopped at the end, its logs printed when the test failed."""
    started: list[ControlPlaneProcess] = []

    def start(*args: str, data: Path | None = None, env: dict[str, str] | None = None) -> ControlPlaneProcess:
        logs = tmp_path / f"logs-{len(started)}"
        logs.mkdir()
        flags: Sequence[str] = ("--allow-loopback", *args)
        cp = ControlPlaneProcess(data or tmp_path / f"data-{len(started)}", logs, flags, env=env)
        cp.start()
        started.append(cp)
        return cp

    yield start
    for cp in started:
        cp.stop()
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        for cp in started:
            print(cp.logs())

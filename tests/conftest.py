"""Test-wide fixtures. Process fixtures stop exactly the PIDs they started and print logs on failure."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import ControlPlaneProcess, EtcdCluster


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, "rep_" + report.when, report)


@pytest.fixture
def control_plane(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[ControlPlaneProcess]:
    logs = tmp_path / "logs"
    logs.mkdir()
    cp = ControlPlaneProcess(tmp_path / "data", logs)
    cp.start()
    yield cp
    cp.stop()
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        print(cp.logs())


@pytest.fixture
def etcd(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[EtcdCluster]:
    """A single-member etcd."""
    cluster = EtcdCluster(tmp_path / "etcd", size=1)
    cluster.start()
    yield cluster
    cluster.stop()
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        print(cluster.logs())

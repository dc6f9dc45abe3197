"""``opensergo sidecar`` as a process: it registers the app at the inbound address with its
labels, forwards Envoy's log lines, stops Envoy and deregisters on SIGTERM, and exits when Envoy
exits."""

from __future__ import annotations

import os
import signal

import pytest

from tests.e2e.sidecar.conftest import Mesh
from tests.helpers import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def _envoy_pid(sidecar_pid: int) -> int | None:
    with open(f"/proc/{sidecar_pid}/task/{sidecar_pid}/children") as fh:
        children = [int(p) for p in fh.read().split()]
    return children[0] if children else None


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_registration_logs_sigterm_and_envoy_exit(mesh: Mesh) -> None:
    sidecar = mesh.sidecar("orders", "orders", mesh.app("orders"), "version=v2", "zone=a")
    [instance] = wait_until(lambda: mesh.instances("orders"), timeout=10, what="registered")
    assert instance["addresses"] == [f"http://127.0.0.1:{sidecar.inbound_port}"]
    assert instance["labels"] == {"version": "v2", "zone": "a"}
    envoy = _envoy_pid(sidecar.proc.pid)
    assert envoy is not None

    sidecar.proc.send_signal(signal.SIGTERM)
    assert sidecar.proc.wait(timeout=20) == 0
    assert not _running(envoy)
    wait_until(lambda: not mesh.instances("orders"), timeout=10, what="deregistered")
    log = (mesh.logs / "sidecar-orders.log").read_text()
    assert "[envoy]" in log and "envoy exited with status 0" in log

    # Envoy dying ends the sidecar too, with Envoy's status.
    other = mesh.sidecar("billing", "billing", mesh.app("billing"))
    envoy = _envoy_pid(other.proc.pid)
    assert envoy is not None
    os.kill(envoy, signal.SIGKILL)
    assert other.proc.wait(timeout=20) == 128 + signal.SIGKILL
    wait_until(lambda: not mesh.instances("billing"), timeout=10, what="billing deregistered")


def test_envoy_does_not_outlive_a_killed_sidecar(mesh: Mesh) -> None:
    # kill -9 (or the OOM killer) gives the sidecar no chance to stop Envoy: the kernel must.
    sidecar = mesh.sidecar("audit", "audit", mesh.app("audit"))
    envoy = _envoy_pid(sidecar.proc.pid)
    assert envoy is not None and _running(envoy)
    sidecar.proc.kill()
    sidecar.proc.wait(timeout=10)
    wait_until(lambda: not _running(envoy), timeout=15, what="envoy gone with its sidecar")

"""A Go client with the Go SDK's wire behaviour (interop/go) against our control plane.

The official Go SDK's subscribe client (github.com/opensergo/opensergo-go pkg/client) cannot be
resolved from the Go module proxy this project can reach, so interop/go reproduces its wire
behaviour on grpc-go/protobuf-go and decodes with Go bindings generated from the upstream .proto
files in the official Java SDK jar; metadata goes through the official Go module's own generated
MetadataService client (docs/interop.md).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import ControlPlaneProcess, wait_until
from tests.interop.conftest import ProgramRun, go_command
from tests.interop.expected import (
    ALL_KINDS,
    APP,
    RATE,
    ROUTER_APP,
    apply_rate_limit,
    apply_rules,
    check_all,
    check_rate_limit,
    cli,
    clients,
    every_kind_acked,
    prune,
    snapshot_version,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def start_go(
    run_program: Callable[..., ProgramRun], binary: Path, cp: ControlPlaneProcess, name: str, *args: str
) -> ProgramRun:
    return run_program(
        name, go_command(binary, cp, "-app", APP, "-router-app", ROUTER_APP, "-reconnect", "300ms", *args)
    )


def go_streams(cp: ControlPlaneProcess, *, connected: bool = True) -> list[dict[str, Any]]:
    # The Go SDK sends no identifier; our control plane keys streams per stream, not per identifier.
    return [c for c in clients(cp) if c["identifier"] == "" and c["connected"] == connected]


def test_go_client_decodes_every_kind_then_gets_the_change(
    control_plane: ControlPlaneProcess, go_client: Path, run_program: Callable[..., ProgramRun]
) -> None:
    apply_rules(control_plane)
    go = start_go(run_program, go_client, control_plane, "go", "-report-metadata")

    # The initial state of the world arrives for every kind, ACKed as the Go SDK does.
    pushes = {kind: go.wait_push(kind) for kind in ALL_KINDS}
    for kind, push in pushes.items():
        assert push["status"] == 1 and push["ack"] == {"flag": "ACK", "code": 1, "message": ""}, kind
        assert push["responseId"], "our control plane generates a response id for requests without one"
        assert push["controlPlane"].startswith("osg-")
    check_all(pushes, control_plane)

    # The control plane recorded each ACK against the pushed version.
    wait_until(
        lambda: every_kind_acked(go_streams(control_plane), pushes), timeout=10, what="every Go ACK recorded"
    )

    # ReportMetadata through the official Go module's MetadataService client.
    assert go.events("metadata") and go.events("metadata")[0]["ok"], go.events("metadata")
    apps = httpx.get(control_plane.http_url + "/api/v1/apps", timeout=5).json()["items"]
    assert any(a["app"] == APP and "interop.Echo" in a["services"] for a in apps), apps

    # Change a rule with `opensergo apply`: a change push (status 200) with a higher version.
    before = int(pushes[RATE]["version"])
    apply_rate_limit(control_plane, threshold=25)
    changed = go.wait_push(RATE, lambda p: int(p["version"]) > before)
    assert changed["status"] == 200
    check_rate_limit(changed["data"], threshold=25)
    assert int(changed["version"]) == snapshot_version(control_plane, RATE)
    assert changed["responseId"], "our change pushes carry a response id (upstream sends '')"

    # Deleting the strategy pushes an empty list with a still higher version.
    cli(control_plane, "delete", "ratelimitstrategy", "rate-limit-foo")
    emptied = go.wait_push(RATE, lambda p: int(p["version"]) > int(changed["version"]))
    assert emptied["data"] == []
    # Nothing was ever refused as outdated or undecodable.
    assert [p for p in go.events("push") if not p["applied"]] == []


def test_go_client_keeps_its_cache_across_a_control_plane_restart(
    control_plane: ControlPlaneProcess, go_client: Path, run_program: Callable[..., ProgramRun]
) -> None:
    """Interop checks 5 and 9: the Go SDK keeps its cached versions across reconnects and answers 4010
    to anything older. Our versions are store revisions, so they never go back after a restart."""
    apply_rules(control_plane)
    go = start_go(run_program, go_client, control_plane, "go", "-kinds", "RateLimitStrategy")
    first = go.wait_push(RATE)

    control_plane.stop()
    wait_until(lambda: go.events("stream_end"), timeout=10, what="the Go client to notice the outage")
    control_plane.start()
    again = go.wait_push(RATE, lambda p: p["stream"] >= 2, timeout=30)
    assert int(again["version"]) >= int(first["version"])
    assert again["ack"]["code"] == 1

    apply_rate_limit(control_plane, threshold=33)
    changed = go.wait_push(RATE, lambda p: int(p["version"]) > int(again["version"]))
    check_rate_limit(changed["data"], threshold=33)
    refused = [p for p in go.events("push") if p["ack"]["code"] == 4010]
    assert refused == [], f"a version went backwards across the restart: {refused}"


def test_several_go_clients_each_get_change_pushes(
    control_plane: ControlPlaneProcess, go_client: Path, run_program: Callable[..., ProgramRun]
) -> None:
    """Interop check 10: Go clients send no identifier; upstream keeps only the first one per key."""
    apply_rules(control_plane)
    runs = [
        start_go(run_program, go_client, control_plane, f"go-{i}", "-kinds", "RateLimitStrategy")
        for i in range(3)
    ]
    initial = [run.wait_push(RATE) for run in runs]
    # One of them goes away; the others must keep receiving change pushes.
    runs[0].stop()
    wait_until(lambda: len(go_streams(control_plane)) == 2, timeout=10, what="two Go streams left")
    apply_rate_limit(control_plane, threshold=44)
    for run, push in zip(runs[1:], initial[1:], strict=True):
        version = int(push["version"])
        changed = run.wait_push(RATE, lambda p, v=version: int(p["version"]) > v)  # type: ignore[misc]
        check_rate_limit(changed["data"], threshold=44)
    assert prune(runs[1].pushes(RATE)[-1]["data"]) == prune(runs[2].pushes(RATE)[-1]["data"])

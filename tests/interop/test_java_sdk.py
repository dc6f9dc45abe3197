"""The official Java SDK (io.opensergo:opensergo-java-sdk:0.1.0, via interop/java) against our control plane.

The SDK opens its SubscribeConfig stream with a 10 s deadline and never reconnects (protocol.md
§2.8). Our control plane answers every subscribe with the state of the world at once, so the SDK
has every rule well before the deadline, and it cleans up the stream when the client cancels it.
"""

from __future__ import annotations

import re
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
    clients,
    every_kind_acked,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

# <hostname>-<ip>-<pid>-<identityHashCode>, as the Java SDK builds its identifier
JAVA_IDENTIFIER = re.compile(r"^.+-[0-9.]+-\d+-\d+$")
DEADLINE = 10.0


def start_java(
    run_program: Callable[..., ProgramRun],
    java: Any,
    cp: ControlPlaneProcess,
    *,
    exit_after: float,
    report_metadata: bool = False,
) -> ProgramRun:
    args = ["127.0.0.1", str(cp.grpc_port), "default", APP, ROUTER_APP, str(exit_after)]
    if report_metadata:
        args.append("--report-metadata")
    return run_program("java", java.command(*args))


def java_streams(cp: ControlPlaneProcess) -> list[dict[str, Any]]:
    return [c for c in clients(cp) if JAVA_IDENTIFIER.match(c["identifier"])]


def test_java_sdk_decodes_every_kind_then_gets_the_change(
    control_plane: ControlPlaneProcess, java_client: Any, run_program: Callable[..., ProgramRun]
) -> None:
    apply_rules(control_plane)
    java = start_java(run_program, java_client, control_plane, exit_after=8, report_metadata=True)

    pushes = {kind: java.wait_push(kind) for kind in ALL_KINDS}
    check_all(pushes, control_plane)
    # Delivered at once after each subscribe, far inside the SDK's 10 s stream deadline.
    subscribed = {e["kind"]: e["ts"] for e in java.events("subscribe")}
    for kind, push in pushes.items():
        assert push["ts"] - subscribed[kind] < 3000, f"{kind} took {push['ts'] - subscribed[kind]} ms"

    # The SDK ACKs with its identifier and request ids; the control plane recorded each ACK.
    wait_until(
        lambda: every_kind_acked(java_streams(control_plane), pushes),
        timeout=5,
        what="every Java ACK recorded",
    )

    # ReportMetadata through the Java SDK's generated MetadataService stub.
    assert java.events("metadata") and java.events("metadata")[0]["ok"], java.events("metadata")
    apps = httpx.get(control_plane.http_url + "/api/v1/apps", timeout=5).json()["items"]
    assert any(a["app"] == APP and "interop.JavaService" in a["services"] for a in apps), apps

    # A change within the stream's lifetime arrives with a higher version.
    before = int(pushes[RATE]["version"])
    apply_rate_limit(control_plane, threshold=25)
    changed = java.wait_push(RATE, lambda p: int(p["version"]) > before, timeout=5)
    check_rate_limit(changed["data"], threshold=25)
    assert java.wait_exit(timeout=30) == 0
    assert [e for e in java.events("push") if "error" in e] == []


def test_java_stream_deadline_is_cleaned_up(
    control_plane: ControlPlaneProcess,
    java_client: Any,
    go_client: Path,
    run_program: Callable[..., ProgramRun],
) -> None:
    """What our control plane does about the Java SDK's 10 s stream deadline."""
    apply_rules(control_plane)
    go = run_program("go", go_command(go_client, control_plane, "-app", APP, "-kinds", "RateLimitStrategy"))
    go.wait_push(RATE)
    java = start_java(run_program, java_client, control_plane, exit_after=DEADLINE + 4)
    pushes = {kind: java.wait_push(kind) for kind in ALL_KINDS}
    check_all(pushes, control_plane)

    # The client cancels the call after 10 s (DEADLINE_EXCEEDED); the control plane sees the stream
    # end, keeps its ACK record and drops it from the fan-out index.
    ended: list[dict[str, Any]] = wait_until(
        lambda: [s for s in java_streams(control_plane) if not s["connected"]],
        timeout=DEADLINE + 5,
        what="the Java stream to end at its deadline",
    )
    (stream,) = ended
    lifetime = stream["disconnectedAt"] - stream["connectedAt"]
    assert DEADLINE - 0.5 <= lifetime <= DEADLINE + 2.5, lifetime
    states = {s["kind"]: (s["state"], s["ackedVersion"]) for s in stream["subscriptions"]}
    assert states == {k: ("acked", int(pushes[k]["version"])) for k in ALL_KINDS}
    connected = httpx.get(control_plane.http_url + "/api/v1/clients", params={"connected": "true"}).json()
    assert [c for c in connected["items"] if JAVA_IDENTIFIER.match(c["identifier"])] == []
    wait_until(lambda: "DEADLINE_EXCEEDED" in java.stderr(), timeout=5, what="the SDK to log the deadline")

    # A change after the deadline reaches the Go client; the Java SDK never reconnects, so it keeps
    # (and still serves from its cache) what it decoded before the deadline.
    apply_rate_limit(control_plane, threshold=77)
    changed = go.wait_push(RATE, lambda p: int(p["version"]) > int(pushes[RATE]["version"]))
    check_rate_limit(changed["data"], threshold=77)
    assert java.wait_exit(timeout=30) == 0
    exited = java.events("exit")[0]["ts"] - java.events("started")[0]["ts"]
    assert exited >= DEADLINE * 1000, "the program ran past the deadline"
    assert {int(p["version"]) for p in java.pushes(RATE)} == {int(pushes[RATE]["version"])}
    assert len(java_streams(control_plane)) == 1, "the SDK opened no second stream"

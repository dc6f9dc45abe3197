"""The official Java SDK and the Go client against a control plane with auth on (issue 12).

Both programs pass a token from ``$OPENSERGO_TOKEN``: the Go program as grpc-go per-RPC
credentials, the Java program through a grpc-java ManagedChannelProvider that the SDK's own
``ManagedChannelBuilder.forAddress`` picks up (interop/java/.../BearerTokenChannelProvider.java),
so the SDK itself is unchanged. With the namespace's agent token everything works as with auth off;
without a token the stream ends UNAUTHENTICATED; with another namespace's token every target is
refused (code 4003) and nothing is pushed, and ReportMetadata gets PERMISSION_DENIED.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.helpers import ControlPlaneProcess, wait_until
from tests.interop.conftest import ProgramRun, go_command
from tests.interop.expected import (
    ALL_KINDS,
    APP,
    ROUTER_APP,
    apply_rules,
    check_all,
    clients,
    every_kind_acked,
)
from tests.interop.test_java_sdk import JAVA_IDENTIFIER

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

ADMIN = "interop-admin-token"
AGENT = "interop-default-agent-token"
OTHER = "interop-other-agent-token"
PERMISSION_DENIED_CODE = 4003


class SecuredControlPlane(ControlPlaneProcess):
    """Auth on; REST helpers in tests/interop/expected.py send ``rest_token``."""

    rest_token = ADMIN


@pytest.fixture
def secured(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[SecuredControlPlane]:
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text(
        yaml.safe_dump(
            {
                "tokens": [
                    {"name": "admin", "token": ADMIN, "roles": {"*": "admin"}},
                    {"name": "default-agent", "token": AGENT, "roles": {"default": "agent"}},
                    {"name": "other-agent", "token": OTHER, "roles": {"other": "agent"}},
                ]
            }
        )
    )
    logs = tmp_path / "logs"
    logs.mkdir()
    cp = SecuredControlPlane(
        tmp_path / "data", logs, ["--allow-loopback", "--auth", "on", "--auth-tokens", str(tokens)]
    )
    cp.start()
    yield cp
    cp.stop()
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        print(cp.logs())


def instances(cp: SecuredControlPlane) -> list[dict[str, Any]]:
    response = httpx.get(cp.http_url + "/api/v1/instances", headers={"Authorization": f"Bearer {ADMIN}"})
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def java_run(
    run_program: Callable[..., ProgramRun], java: Any, cp: ControlPlaneProcess, name: str, token: str | None
) -> ProgramRun:
    args = ["127.0.0.1", str(cp.grpc_port), "default", APP, ROUTER_APP, "5", "--report-metadata"]
    return run_program(name, java.command(*args), env={"OPENSERGO_TOKEN": token or ""})


def test_java_sdk_with_auth_on(
    secured: SecuredControlPlane, java_client: Any, run_program: Callable[..., ProgramRun]
) -> None:
    apply_rules(secured)
    java = java_run(run_program, java_client, secured, "java", AGENT)
    pushes = {kind: java.wait_push(kind) for kind in ALL_KINDS}
    check_all(pushes, secured)
    assert java.events("started")[0]["token"] is True

    def java_streams() -> list[dict[str, Any]]:
        return [c for c in clients(secured) if JAVA_IDENTIFIER.match(c["identifier"])]

    wait_until(lambda: every_kind_acked(java_streams(), pushes), timeout=5, what="every Java ACK recorded")
    [metadata] = java.events("metadata")
    assert metadata["ok"], metadata
    assert [i["app"] for i in instances(secured)] == [APP]
    assert java.wait_exit(timeout=30) == 0


def test_java_sdk_without_a_token_or_with_another_namespaces(
    secured: SecuredControlPlane, java_client: Any, run_program: Callable[..., ProgramRun]
) -> None:
    apply_rules(secured)
    anonymous = java_run(run_program, java_client, secured, "java-anonymous", None)
    outsider = java_run(run_program, java_client, secured, "java-outsider", OTHER)
    assert anonymous.wait_exit(timeout=40) == 0 and outsider.wait_exit(timeout=40) == 0
    assert anonymous.events("push") == [] and outsider.events("push") == []
    [refused] = anonymous.events("metadata")
    assert not refused["ok"] and "UNAUTHENTICATED" in refused["error"]
    assert "UNAUTHENTICATED" in anonymous.stderr()
    [denied] = outsider.events("metadata")
    assert not denied["ok"] and "PERMISSION_DENIED" in denied["error"]
    # The SDK logs each refused subscription ("req failed") and keeps its stream.
    assert "PERMISSION_DENIED" in outsider.stderr()
    assert instances(secured) == []


def test_go_client_with_auth_on(
    secured: SecuredControlPlane, go_client: Path, run_program: Callable[..., ProgramRun]
) -> None:
    apply_rules(secured)
    base = ["-app", APP, "-router-app", ROUTER_APP, "-reconnect", "300ms", "-report-metadata"]
    go = run_program("go", go_command(go_client, secured, *base, "-token", AGENT))
    anonymous = run_program(
        "go-anonymous", go_command(go_client, secured, *base), env={"OPENSERGO_TOKEN": ""}
    )
    outsider = run_program(
        "go-outsider", go_command(go_client, secured, *base), env={"OPENSERGO_TOKEN": OTHER}
    )

    pushes = {kind: go.wait_push(kind) for kind in ALL_KINDS}
    check_all(pushes, secured)
    assert go.events("metadata")[0]["ok"]
    wait_until(
        lambda: len(anonymous.events("stream_end")) >= 2, timeout=20, what="the anonymous stream ended twice"
    )
    assert all("Unauthenticated" in e["error"] for e in anonymous.events("stream_end"))
    assert "Unauthenticated" in anonymous.events("metadata")[0]["error"]
    replies = wait_until(
        lambda: len(outsider.events("reply")) >= len(ALL_KINDS) and outsider.events("reply"),
        timeout=20,
        what="a refusal of every target",
    )
    assert {r["code"] for r in replies} == {PERMISSION_DENIED_CODE}
    assert "PermissionDenied" in outsider.events("metadata")[0]["error"]
    assert anonymous.events("push") == [] and outsider.events("push") == []
    assert [i["app"] for i in instances(secured)] == [APP]

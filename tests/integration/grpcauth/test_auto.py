"""``--auth auto`` means the same for both ports: on beyond loopback (the gRPC port then needs the
generated admin token too), off on loopback. Before, the gRPC port had no auth in either case."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from tests.helpers import ControlPlaneProcess
from tests.integration.grpcauth.conftest import RATE_KIND, bearer, subscribe

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def test_auth_auto_beyond_loopback_covers_the_grpc_port(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    cp = ControlPlaneProcess(tmp_path / "data", logs, ["--allow-loopback", "--host", "0.0.0.0"])
    cp.start()
    try:
        with pytest.raises(grpc.RpcError) as caught:
            subscribe(cp.grpc_address, [("default", "foo-app", RATE_KIND)])
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]
        admin = (tmp_path / "data" / "admin-token").read_text().strip()
        [push] = subscribe(cp.grpc_address, [("default", "foo-app", RATE_KIND)], bearer(admin))
        assert push.status.code == 1 and push.kind == RATE_KIND
    finally:
        cp.stop()
    assert "auth=on" in cp.logs()


def test_auth_auto_on_loopback_leaves_both_ports_open(control_plane: ControlPlaneProcess) -> None:
    [push] = subscribe(control_plane.grpc_address, [("default", "foo-app", RATE_KIND)])
    assert push.status.code == 1

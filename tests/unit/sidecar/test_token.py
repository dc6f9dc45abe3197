"""``opensergo sidecar``'s token: where it comes from, and where it goes in Envoy's bootstrap."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from opensergo.client.credentials import BearerToken
from opensergo.sidecar.bootstrap import SidecarNode, envoy_bootstrap
from opensergo.sidecar.runner import Sidecar, SidecarError, SidecarOptions, sidecar_token

pytestmark = pytest.mark.unit


def _ads_service(bootstrap: dict[str, object]) -> dict[str, object]:
    [service] = bootstrap["dynamic_resources"]["ads_config"]["grpc_services"]  # type: ignore[index]
    assert isinstance(service, dict)
    return service


def test_the_token_goes_to_the_ads_stream_as_initial_metadata() -> None:
    node = SidecarNode(app="orders", namespace="shop", app_port=8080, inbound_port=15006)
    with_token = envoy_bootstrap(node, "127.0.0.1:10246", 15000, token="s3cret")
    assert _ads_service(with_token)["initial_metadata"] == [
        {"key": "authorization", "value": "Bearer s3cret"}
    ]
    assert "initial_metadata" not in _ads_service(envoy_bootstrap(node, "127.0.0.1:10246", 15000))


def test_the_bootstrap_file_is_private_when_it_holds_a_token(tmp_path: Path) -> None:
    path = tmp_path / "envoy.json"
    path.write_text("{}")
    os.chmod(path, 0o644)
    options = SidecarOptions(
        app="orders", app_port=8080, inbound_port=15006, control_plane="127.0.0.1:10246",
        bootstrap_path=path, token=BearerToken("s3cret"),
    )  # fmt: skip
    Sidecar(options).write_bootstrap()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "Bearer s3cret" in json.dumps(json.loads(path.read_text()))


def test_token_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENSERGO_BOOTSTRAP", raising=False)
    monkeypatch.delenv("OPENSERGO_BOOTSTRAP_CONFIG", raising=False)
    assert sidecar_token() is None
    assert sidecar_token("") is None  # an exported but empty $OPENSERGO_TOKEN
    token = sidecar_token("flag-token")
    assert token is not None and token.value() == "flag-token"
    file = tmp_path / "token"
    file.write_text("file-token\n")
    from_file = sidecar_token(None, str(file))
    assert from_file is not None and from_file.value() == "file-token"
    monkeypatch.setenv("OPENSERGO_BOOTSTRAP_CONFIG", json.dumps({"endpoint": "cp:10246", "token": "boot"}))
    from_bootstrap = sidecar_token()
    assert from_bootstrap is not None and from_bootstrap.value() == "boot"
    flag = sidecar_token("flag-token")
    assert flag is not None and flag.value() == "flag-token"  # the flag wins over the bootstrap
    with pytest.raises(SidecarError, match="token"):
        sidecar_token(None, str(tmp_path / "missing"))

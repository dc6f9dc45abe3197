"""Bootstrap configuration from OPENSERGO_BOOTSTRAP_CONFIG / OPENSERGO_BOOTSTRAP, and from_env()."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from opensergo.client import BootstrapError, OpenSergoClient, governance_enabled
from opensergo.client.bootstrap import BootstrapConfig, load_bootstrap, parse_endpoints

pytestmark = [pytest.mark.unit, pytest.mark.timeout(10)]

INLINE = "OPENSERGO_BOOTSTRAP_CONFIG"
FILE = "OPENSERGO_BOOTSTRAP"


def test_inline_config() -> None:
    config = load_bootstrap({INLINE: '{"endpoint": "opensergo-control-plane.opensergo-system:10246"}'})
    assert config == BootstrapConfig(endpoints=["opensergo-control-plane.opensergo-system:10246"])
    assert config.endpoint == "opensergo-control-plane.opensergo-system:10246"
    assert config.source == "$OPENSERGO_BOOTSTRAP_CONFIG"


def test_file_config(tmp_path: Path) -> None:
    path = tmp_path / "bootstrap.json"
    path.write_text(json.dumps({"endpoint": "127.0.0.1:10246", "app": "foo-app", "heartbeatInterval": 5}))
    config = load_bootstrap({FILE: str(path)})
    assert config is not None
    assert config.endpoints == ["127.0.0.1:10246"]
    assert config.app == "foo-app"
    assert config.heartbeat_interval == 5.0
    assert config.source == str(path)


def test_inline_wins_over_file(tmp_path: Path) -> None:
    env = {INLINE: '{"endpoint": "a:1"}', FILE: str(tmp_path / "missing.json")}
    config = load_bootstrap(env)
    assert config is not None and config.endpoints == ["a:1"]


def test_neither_set_gives_none() -> None:
    assert load_bootstrap({}) is None
    assert load_bootstrap({INLINE: "  ", FILE: ""}) is None
    assert not governance_enabled({})
    assert governance_enabled({FILE: "/etc/opensergo.json"})
    assert governance_enabled({INLINE: "{}"})


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    with pytest.raises(BootstrapError, match=r"OPENSERGO_BOOTSTRAP: cannot read bootstrap file .*nope\.json"):
        load_bootstrap({FILE: str(missing)})


def test_bad_json_inline_and_file(tmp_path: Path) -> None:
    with pytest.raises(BootstrapError, match=r"\$OPENSERGO_BOOTSTRAP_CONFIG: invalid JSON at line 1"):
        load_bootstrap({INLINE: '{"endpoint": '})
    path = tmp_path / "b.json"
    path.write_text("endpoint: 1.2.3.4:10246\n")
    with pytest.raises(BootstrapError, match=r"b\.json: invalid JSON"):
        load_bootstrap({FILE: str(path)})
    with pytest.raises(BootstrapError, match="expected a JSON object"):
        load_bootstrap({INLINE: '["a:1"]'})


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("{}", 'missing "endpoint"'),
        ('{"endpoint": ""}', '"endpoint" is empty'),
        ('{"endpoint": " , "}', '"endpoint" is empty'),
        ('{"endpoint": 10246}', 'must be a "host:port" string'),
        ('{"endpoint": "localhost"}', "is not host:port"),
        ('{"endpoint": "localhost:http"}', "invalid port"),
        ('{"endpoint": "localhost:70000"}', "invalid port"),
        ('{"endpoint": "http://localhost:10246"}', "without a scheme"),
        ('{"endpoint": "::1:10246"}', "IPv6 host in brackets"),
        ('{"endpoint": "a:1", "heartbeatInterval": -1}', "positive number"),
        ('{"endpoint": "a:1", "app": 3}', "'app' must be a string"),
    ],
)
def test_invalid_endpoint(document: str, message: str) -> None:
    with pytest.raises(BootstrapError, match=message):
        load_bootstrap({INLINE: document})


def test_endpoint_lists() -> None:
    config = load_bootstrap({INLINE: '{"endpoint": "a:1, b:2,[::1]:3,a:1"}'})
    assert config is not None and config.endpoints == ["a:1", "b:2", "[::1]:3"]
    config = load_bootstrap({INLINE: '{"endpoints": ["a:1", "b:2,c:3"]}'})
    assert config is not None and config.endpoints == ["a:1", "b:2", "c:3"]
    assert parse_endpoints("x:1") == ["x:1"]


def test_optional_keys_and_unknown_keys(caplog: pytest.LogCaptureFixture) -> None:
    document = {
        "endpoint": "a:1",
        "namespace": "prod",
        "app": "foo",
        "snapshotDir": "/var/cache/os",
        "heartbeat_interval": 2.5,
        "tag": "t",
        "cluster": "c",
        "env": "e",
        "region": "r",
        "zone": "z",
        "somethingElse": {"x": 1},
    }
    with caplog.at_level(logging.DEBUG, logger="opensergo.client.bootstrap"):
        config = load_bootstrap({INLINE: json.dumps(document)})
    assert config == BootstrapConfig(
        endpoints=["a:1"],
        namespace="prod",
        app="foo",
        snapshot_dir="/var/cache/os",
        heartbeat_interval=2.5,
        tag="t",
        cluster="c",
        env="e",
        region="r",
        zone="z",
    )
    assert "ignoring unknown bootstrap key 'somethingElse'" in caplog.text


def test_from_env(tmp_path: Path) -> None:
    env = {
        INLINE: json.dumps({"endpoint": "a:1,b:2", "namespace": "prod", "tag": "blue"}),
        "OPENSERGO_APP": "env-app",
    }
    client = OpenSergoClient.from_env(environ=env, snapshot_dir=tmp_path)
    assert (client.app, client.namespace, client.endpoints) == ("env-app", "prod", ["a:1", "b:2"])
    assert client.snapshot_path == tmp_path / "prod" / "env-app.json"
    assert OpenSergoClient.from_env(app="arg-app", environ=env, snapshot_dir=tmp_path).app == "arg-app"
    env[INLINE] = json.dumps({"endpoint": "a:1", "app": "cfg-app"})
    assert OpenSergoClient.from_env(environ=env, snapshot_dir=tmp_path).app == "cfg-app"
    overridden = OpenSergoClient.from_env(environ=env, endpoint="c:3", namespace="ns2", snapshot_dir=tmp_path)
    assert (overridden.endpoints, overridden.namespace) == (["c:3"], "ns2")


def test_from_env_errors() -> None:
    with pytest.raises(BootstrapError, match="OpenSergo is not configured"):
        OpenSergoClient.from_env(environ={})
    with pytest.raises(BootstrapError, match="no app name"):
        OpenSergoClient.from_env(environ={INLINE: '{"endpoint": "a:1"}'})
    with pytest.raises(BootstrapError, match="invalid JSON"):
        OpenSergoClient.from_env(app="x", environ={INLINE: "{"})

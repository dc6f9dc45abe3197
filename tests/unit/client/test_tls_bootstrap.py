"""TlsConfig, the bootstrap "tls" object, TLS endpoint schemes, and how TLS reaches every channel."""

from __future__ import annotations

import json
from pathlib import Path

import grpc.aio
import pytest

from opensergo.client import BootstrapError, OpenSergoClient
from opensergo.client.bootstrap import load_bootstrap, parse_endpoints, split_endpoints
from opensergo.client.tls import TlsConfig, TlsError, open_channel
from opensergo.governance.faulttolerance.engine import Engine
from opensergo.governance.runtime import Governance

pytestmark = [pytest.mark.unit, pytest.mark.timeout(10)]

INLINE = "OPENSERGO_BOOTSTRAP_CONFIG"
FILE = "OPENSERGO_BOOTSTRAP"
# Not a real certificate: parsing happens in the TLS handshake, which these tests never reach.
PEM = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def inline(document: object) -> TlsConfig | None:
    config = load_bootstrap({INLINE: json.dumps(document)})
    assert config is not None
    return config.tls


def test_file_paths_resolve_against_the_bootstrap_files_directory(tmp_path: Path) -> None:
    conf = tmp_path / "etc" / "opensergo"
    conf.mkdir(parents=True)
    path = conf / "bootstrap.json"
    tls = {
        "caFile": "ca.pem",
        "certFile": "../certs/client.pem",
        "keyFile": "/abs/client-key.pem",
        "serverName": "cp.internal",
    }
    path.write_text(json.dumps({"endpoint": "cp:10246", "tls": tls}))
    config = load_bootstrap({FILE: str(path)})
    assert config is not None
    assert config.tls == TlsConfig(
        ca_file=str(conf / "ca.pem"),
        cert_file=str(tmp_path / "etc" / "certs" / "client.pem"),
        key_file="/abs/client-key.pem",
        server_name="cp.internal",
    )
    assert config.tls.mutual


def test_relative_file_paths_in_a_relative_bootstrap_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "b.json").write_text('{"endpoint": "cp:1", "tls": {"caFile": "ca.pem"}}')
    config = load_bootstrap({FILE: "b.json"})
    assert config is not None and config.tls == TlsConfig(ca_file=str(tmp_path / "ca.pem"))


def test_inline_config_keeps_paths_as_given() -> None:
    assert inline({"endpoint": "a:1", "tls": {"ca_file": "ca.pem"}}) == TlsConfig(ca_file="ca.pem")


def test_tls_true_schemes_and_plaintext() -> None:
    assert inline({"endpoint": "a:1"}) is None
    assert inline({"endpoint": "a:1", "tls": False}) is None
    assert inline({"endpoint": "a:1", "tls": None}) is None
    assert inline({"endpoint": "a:1", "tls": True}) == TlsConfig()
    assert inline({"endpoint": "grpcs://a:1"}) == TlsConfig()
    config = load_bootstrap({INLINE: '{"endpoint": "https://a:1, HTTPS://b:2/"}'})
    assert config is not None and config.endpoints == ["a:1", "b:2"] and config.tls == TlsConfig()
    # A scheme plus a "tls" object: the object says which CA.
    assert inline({"endpoint": "grpcs://a:1", "tls": {"caFile": "/ca.pem"}}) == TlsConfig(ca_file="/ca.pem")
    assert split_endpoints(["grpcs://a:1", "grpcs://b:2"]) == (["a:1", "b:2"], True)
    assert split_endpoints("a:1") == (["a:1"], False)
    assert parse_endpoints("grpcs://a:1") == ["a:1"]


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"tls": {"certFile": "c.pem"}}, "'certFile' needs 'keyFile'"),
        ({"tls": {"keyFile": "k.pem", "caFile": "ca.pem"}}, "'keyFile' needs 'certFile'"),
        ({"tls": {"cafile": "ca.pem"}}, "unknown key 'cafile' in \"tls\""),
        ({"tls": {"caFile": ""}}, "'caFile' must be a non-empty string"),
        ({"tls": {"caFile": 3}}, "'caFile' must be a non-empty string"),
        ({"tls": "ca.pem"}, '"tls" must be true or an object'),
        ({"tls": False, "endpoint": "grpcs://a:1"}, '"tls": false contradicts'),
        ({"endpoint": "grpcs://a:1,b:2"}, "mix TLS"),
        ({"endpoint": "http://a:1"}, "without a scheme"),
        ({"endpoint": "grpcs://a"}, "is not host:port"),
    ],
)
def test_bad_tls_settings(document: dict[str, object], message: str) -> None:
    with pytest.raises(BootstrapError, match=message) as info:
        load_bootstrap({INLINE: json.dumps({"endpoint": "a:1", **document})})
    assert str(info.value).startswith("$OPENSERGO_BOOTSTRAP_CONFIG: ")


def test_tls_config_checks_and_reads_its_files_once(tmp_path: Path) -> None:
    with pytest.raises(TlsError, match="cert_file needs key_file"):
        TlsConfig(cert_file="c.pem")
    with pytest.raises(TlsError, match="key_file needs cert_file"):
        TlsConfig(key_file="k.pem")
    with pytest.raises(TlsError, match=r"cannot read the CA file '.*missing\.pem'"):
        TlsConfig(ca_file=str(tmp_path / "missing.pem")).channel_credentials()
    (tmp_path / "junk.pem").write_text("not pem")
    with pytest.raises(TlsError, match=r"client key file '.*junk\.pem' is not PEM"):
        TlsConfig(ca_file=None, cert_file="x", key_file=str(tmp_path / "junk.pem")).channel_credentials()

    ca = tmp_path / "ca.pem"
    ca.write_bytes(PEM)
    tls = TlsConfig(ca_file=str(ca), server_name="cp.internal")
    credentials = tls.channel_credentials()
    ca.unlink()
    assert tls.channel_credentials() is credentials
    assert tls.channel_options() == [("grpc.ssl_target_name_override", "cp.internal")]
    assert TlsConfig().channel_options() == []
    assert TlsConfig(ca_file="ca.pem").resolve("/etc/os") == TlsConfig(ca_file="/etc/os/ca.pem")


async def test_open_channel_is_the_one_switch(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_bytes(PEM)
    plain = open_channel("127.0.0.1:1", None, [("grpc.max_receive_message_length", 1 << 20)])
    secure = open_channel("127.0.0.1:1", TlsConfig(ca_file=str(ca), server_name="x"))
    try:
        assert isinstance(plain, grpc.aio.Channel) and isinstance(secure, grpc.aio.Channel)
    finally:
        await plain.close(None)
        await secure.close(None)


def test_client_takes_tls_from_argument_scheme_and_bootstrap(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_bytes(PEM)

    def make(endpoint: str, tls: TlsConfig | None = None) -> OpenSergoClient:
        return OpenSergoClient(endpoint, app="a", tls=tls, snapshot=None)

    assert make("a:1").tls is None
    by_scheme = make("grpcs://a:1,grpcs://b:2")
    assert (by_scheme.endpoints, by_scheme.tls) == (["a:1", "b:2"], TlsConfig())
    explicit = TlsConfig(ca_file=str(ca))
    assert make("grpcs://a:1", explicit).tls is explicit
    with pytest.raises(TlsError, match=r"missing\.pem"):
        make("a:1", TlsConfig(ca_file=str(tmp_path / "missing.pem")))

    path = tmp_path / "bootstrap.json"
    path.write_text(json.dumps({"endpoint": "a:1", "app": "a", "tls": {"caFile": "ca.pem"}}))
    client = OpenSergoClient.from_env(environ={FILE: str(path)}, snapshot=None)
    assert client.tls == TlsConfig(ca_file=str(ca))
    # A file named by the bootstrap that cannot be read is a bootstrap error naming both.
    path.write_text(json.dumps({"endpoint": "a:1", "app": "a", "tls": {"caFile": "gone.pem"}}))
    with pytest.raises(BootstrapError, match=r"bootstrap\.json: TLS: cannot read the CA file '.*gone\.pem'"):
        OpenSergoClient.from_env(environ={FILE: str(path)}, snapshot=None)
    assert OpenSergoClient.from_env(environ={FILE: str(path)}, snapshot=None, tls=None).tls is None


def test_governance_gives_the_clients_tls_to_the_token_client() -> None:
    tls = TlsConfig()
    client = OpenSergoClient("127.0.0.1:1", app="a", tls=tls, snapshot=None, heartbeat=None)
    governance = Governance(client, Engine(), instances=False)
    governance.start()
    try:
        assert governance.tokens is not None and governance.tokens.tls is tls
    finally:
        governance.stop()

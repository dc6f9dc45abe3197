"""TLS and mutual TLS on a real control plane: the SDK, the REST API over HTTPS and the CLI."""

from __future__ import annotations

import json
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from opensergo.client import Backoff, Heartbeat, OpenSergoClient, ServiceInfo
from opensergo.client.tls import TlsConfig
from opensergo.client.tokens import TokenClient
from opensergo.governance import Engine, guard, load_rules
from opensergo.observability import enable_metrics
from opensergo.proto.flowcontrol.v1 import token_pb2 as tk
from tests.helpers import ControlPlaneProcess, EtcdCluster, Recorder, free_port, wait_until
from tests.helpers import run_cli as cli

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

RATE_KIND = "fault-tolerance.opensergo.io/v1alpha1/RateLimitStrategy"
RULE_PATH = "/apis/fault-tolerance.opensergo.io/v1alpha1/namespaces/default/ratelimitstrategies"
GUARD_RULES = """
apiVersion: fault-tolerance.opensergo.io/v1alpha1
kind: RateLimitStrategy
metadata: {name: rl, labels: {app: secure-app}}
spec: {threshold: 100, statDuration: 1s}
---
apiVersion: fault-tolerance.opensergo.io/v1alpha1
kind: FaultToleranceRule
metadata: {name: rule, labels: {app: secure-app}}
spec:
  targets: [{targetResourceName: "GET:/secure"}]
  strategies: [{name: rl, kind: RateLimitStrategy}]
"""


def rule(name: str, app: str, threshold: int) -> dict[str, Any]:
    return {
        "apiVersion": "fault-tolerance.opensergo.io/v1alpha1",
        "kind": "RateLimitStrategy",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": app}},
        "spec": {"metricType": "RequestAmount", "limitMode": "Local", "threshold": threshold},
    }


@dataclass(frozen=True)
class Pki:
    """A throwaway CA, a server certificate for localhost / 127.0.0.1 and a client certificate."""

    dir: Path
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def _issue(directory: Path, name: str, subject: str, extensions: str) -> None:
    # EC P-256: key generation is instant, unlike RSA.
    _openssl(
        "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}-key.pem", "-out", f"{name}.csr", "-subj", subject,
        cwd=directory,
    )  # fmt: skip
    (directory / f"{name}.ext").write_text(extensions)
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem",
        "-CAcreateserial", "-days", "2", "-out", f"{name}.pem", "-extfile", f"{name}.ext",
        cwd=directory,
    )  # fmt: skip


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    # The cryptography package is not installed in this venv; the openssl CLI is.
    d = tmp_path_factory.mktemp("pki")
    _openssl(
        "req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", "ca-key.pem", "-out", "ca.pem", "-days", "2", "-subj", "/CN=opensergo test CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=d,
    )  # fmt: skip
    _issue(
        d,
        "server",
        "/CN=localhost",
        "basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    _issue(d, "client", "/CN=test-client", "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n")
    return Pki(
        d, d / "ca.pem", d / "server.pem", d / "server-key.pem", d / "client.pem", d / "client-key.pem"
    )


class TlsControlPlane(ControlPlaneProcess):
    """ControlPlaneProcess whose HTTP port serves HTTPS, verified against the test CA."""

    def __init__(self, data_dir: Path, log_dir: Path, extra_args: list[str], pki: Pki) -> None:
        super().__init__(data_dir, log_dir, extra_args)
        self.pki = pki
        self.http = httpx.Client(verify=pki.context(), timeout=5)

    @property
    def http_url(self) -> str:
        return f"https://127.0.0.1:{self.http_port}"

    def _healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"control plane exited with {self.proc.returncode}:\n{self.logs()}")
        try:
            return self.http.get(self.http_url + "/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def put_rule(self, body: dict[str, Any]) -> None:
        response = self.http.put(f"{self.http_url}{RULE_PATH}/{body['metadata']['name']}", json=body)
        assert response.status_code in (200, 201), response.text


def _start(tmp_path: Path, pki: Pki, *args: str) -> Iterator[TlsControlPlane]:
    logs = tmp_path / "logs"
    logs.mkdir()
    tls_args = ["--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key)]
    cp = TlsControlPlane(tmp_path / "data", logs, ["--allow-loopback", *tls_args, *args], pki)
    cp.start()
    try:
        yield cp
    finally:
        cp.stop()  # with cp.http's keep-alive connection still open: shutdown must not wait for it
        cp.http.close()


@pytest.fixture
def tls_cp(tmp_path: Path, pki: Pki) -> Iterator[TlsControlPlane]:
    yield from _start(tmp_path, pki)


@pytest.fixture
def mtls_cp(tmp_path: Path, pki: Pki) -> Iterator[TlsControlPlane]:
    yield from _start(tmp_path, pki, "--tls-client-ca", str(pki.ca))


def client(cp: ControlPlaneProcess, app: str, tls: TlsConfig | None, **kw: Any) -> OpenSergoClient:
    kw.setdefault("heartbeat", None)
    return OpenSergoClient(
        cp.grpc_address, app=app, tls=tls, snapshot=None, backoff=Backoff(initial=0.05, maximum=0.2), **kw
    )


def test_tls_subscribe_rest_and_cli(tls_cp: TlsControlPlane, pki: Pki) -> None:
    assert "tls=on" in tls_cp.log_path.read_text()
    good, plain, misnamed = Recorder(), Recorder(), Recorder()
    with (
        client(tls_cp, "foo-app", TlsConfig(ca_file=str(pki.ca))) as secure,
        client(tls_cp, "foo-app", None) as plaintext,
        # server_name reaches the channel: a name the certificate does not carry is refused.
        client(tls_cp, "foo-app", TlsConfig(ca_file=str(pki.ca), server_name="other.example")) as wrong,
    ):
        secure.subscribe(RATE_KIND, callback=good)
        plaintext.subscribe(RATE_KIND, callback=plain)
        wrong.subscribe(RATE_KIND, callback=misnamed)
        wait_until(lambda: good.calls, what="the initial (empty) push over TLS")

        tls_cp.put_rule(rule("rl", "foo-app", 7))
        wait_until(lambda: good.thresholds() == [7], what="the rule pushed over TLS")
        assert secure.connected
        # Both refused clients have been retrying for the whole test.
        assert plain.calls == [] and misnamed.calls == []
        assert not plaintext.connected and not wrong.connected
        assert plaintext.streams_opened >= 1 and wrong.streams_opened >= 1
        clients = tls_cp.http.get(tls_cp.http_url + "/api/v1/clients").json()["items"]
        assert [c["identifier"] for c in clients] == [secure.identifier]

    # The CLI over HTTPS: --cacert, $OPENSERGO_CACERT, and a clear error without either.
    server = ["--server", tls_cp.http_url]
    result = cli("get", "ratelimitstrategy", "rl", "-o", "json", "--cacert", str(pki.ca), *server)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["spec"]["threshold"] == 7
    manifest = json.dumps(rule("rl2", "foo-app", 3))
    result = cli("apply", "-f", "-", *server, env={"OPENSERGO_CACERT": str(pki.ca)}, stdin=manifest)
    assert result.returncode == 0, result.stderr
    assert "rl2 created" in result.stdout
    result = cli("get", "ratelimitstrategies", *server)
    assert result.returncode != 0
    assert "CERTIFICATE_VERIFY_FAILED" in result.stderr and "--cacert" in result.stderr
    result = cli("get", "ratelimitstrategies", "--cacert", str(pki.dir / "missing.pem"), *server)
    assert result.returncode != 0 and "--cacert" in result.stderr and "missing.pem" in result.stderr


def test_mtls_push_metadata_tokens_and_metrics(mtls_cp: TlsControlPlane, pki: Pki) -> None:
    assert "tls=mtls" in mtls_cp.log_path.read_text()
    mtls = TlsConfig(ca_file=str(pki.ca), cert_file=str(pki.client_cert), key_file=str(pki.client_key))
    no_cert = TlsConfig(ca_file=str(pki.ca))
    services = [ServiceInfo(protocols=["http"], listening_addresses=["127.0.0.1:8080"])]
    # The accepted client comes from a bootstrap file whose TLS paths are relative to it.
    bootstrap = pki.dir / "bootstrap.json"
    bootstrap.write_text(
        json.dumps(
            {
                "endpoint": mtls_cp.grpc_address,
                "app": "secure-app",
                "tls": {"caFile": "ca.pem", "certFile": "client.pem", "keyFile": "client-key.pem"},
            }
        )
    )
    accepted = OpenSergoClient.from_env(
        environ={"OPENSERGO_BOOTSTRAP": str(bootstrap)},
        snapshot=None,
        service_metadata=services,
        heartbeat_interval=0.5,
        backoff=Backoff(initial=0.05, maximum=0.2),
    )
    assert accepted.tls == mtls
    good, refused_rec = Recorder(), Recorder()
    reporting = Heartbeat()
    tokens = TokenClient([mtls_cp.grpc_address], client_id="t1", tls=mtls).start()
    tokens_refused = TokenClient([mtls_cp.grpc_address], client_id="t2", tls=no_cert).start()
    try:
        with (
            accepted,
            client(mtls_cp, "other-app", no_cert, heartbeat=reporting, service_metadata=services) as refused,
        ):
            accepted.subscribe(RATE_KIND, callback=good)
            refused.subscribe(RATE_KIND, callback=refused_rec)
            mtls_cp.put_rule(rule("rl", "secure-app", 5))
            wait_until(lambda: good.thresholds() == [5], what="the rule pushed over mTLS")

            def instances(app: str) -> list[dict[str, Any]]:
                response = mtls_cp.http.get(mtls_cp.http_url + "/api/v1/instances", params={"app": app})
                items: list[dict[str, Any]] = response.json()["items"]
                return items

            listed = wait_until(lambda: instances("secure-app"), what="ReportMetadata over mTLS")
            assert len(listed) == 1 and "127.0.0.1:8080" in str(listed[0]["addresses"])
            wait_until(lambda: tokens.healthy, what="the token stream over mTLS")

            # OTLP metrics, configured by the same bootstrap file, go over mTLS too.
            engine = Engine()
            load_rules(GUARD_RULES, app="secure-app", engine=engine)  # metrics exist for guarded resources
            handle = enable_metrics(
                app="secure-app", engine=engine, environ={"OPENSERGO_BOOTSTRAP": str(bootstrap)}
            )
            try:
                with guard("GET:/secure", engine=engine):
                    pass
                handle.force_flush()

                def metric_apps() -> list[str]:
                    response = mtls_cp.http.get(
                        mtls_cp.http_url + "/api/v1/metrics/apps", params={"window": 30}
                    )
                    return [a["app"] for a in response.json()["items"]]

                wait_until(lambda: metric_apps() == ["secure-app"], what="OTLP export over mTLS")
            finally:
                handle.shutdown()
                engine.close()

            reporter = refused.reporter
            assert reporter is not None
            wait_until(lambda: reporter.reports_failed > 0, what="ReportMetadata refused without a cert")
            assert "UNAVAILABLE" in (reporter.last_error or "")
            assert reporter.reports_ok == 0
            assert refused_rec.calls == [] and not refused.connected
            assert instances("other-app") == []
            assert not tokens_refused.healthy
    finally:
        tokens.stop()
        tokens_refused.stop()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--tls-cert", "{server_cert}"], ["--tls-cert", "needs --tls-key"]),
        (["--tls-key", "{server_key}"], ["--tls-key", "needs --tls-cert"]),
        (["--tls-client-ca", "{ca}"], ["--tls-client-ca", "ca.pem", "needs --tls-cert and --tls-key"]),
        (
            ["--tls-cert", "{server_cert}", "--tls-key", "{dir}/no.pem"],
            ["--tls-key", "no.pem", "cannot read"],
        ),
        (["--tls-cert", "{server_cert}", "--tls-key", "{client_key}"], ["--tls-key", "does not match"]),
        (["--tls-cert", "{server_key}", "--tls-key", "{server_key}"], ["--tls-cert", "not a PEM"]),
    ],
)
def test_control_plane_tls_option_errors(
    pki: Pki, tmp_path: Path, args: list[str], expected: list[str]
) -> None:
    paths = {k: str(v) for k, v in vars(pki).items()}
    result = cli(
        "control-plane",
        "--grpc-port",
        str(free_port()),
        "--http-port",
        str(free_port()),
        "--data-dir",
        str(tmp_path / "data"),
        *[a.format(**paths) for a in args],
    )
    assert result.returncode != 0
    output = " ".join((result.stdout + result.stderr).split())  # rich wraps long lines
    for text in expected:
        assert text in output, output
    assert "ready" not in output


PLAINTEXT_WARNING = "is plaintext: rules"  # (auth, when on, covers the gRPC port now; TLS does not)


@pytest.mark.timeout(90)
def test_plaintext_grpc_beyond_loopback_is_warned_about(pki: Pki, tmp_path: Path) -> None:
    """One warning when gRPC listens beyond loopback without TLS; none on loopback or with TLS."""
    tls = ["--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key)]
    everywhere = ["--allow-loopback", "--host", "0.0.0.0"]
    runs = {
        "plaintext, all interfaces": ControlPlaneProcess(tmp_path / "a", tmp_path, everywhere),
        "plaintext, loopback": ControlPlaneProcess(tmp_path / "b", tmp_path, ["--allow-loopback"]),
        "TLS, all interfaces": TlsControlPlane(tmp_path / "c", tmp_path, [*everywhere, *tls], pki),
    }
    warnings = {}
    for name, cp in runs.items():
        cp.log_dir = tmp_path / name.replace(", ", "-").replace(" ", "-")
        cp.log_dir.mkdir()
        cp.start(timeout=60)
        try:
            log = cp.log_path.read_text()
        finally:
            cp.stop()
        warnings[name] = [line for line in log.splitlines() if PLAINTEXT_WARNING in line]
    [warning] = warnings["plaintext, all interfaces"]
    assert (
        "WARNING" in warning and f"gRPC on 0.0.0.0:{runs['plaintext, all interfaces'].grpc_port}" in warning
    )
    assert "--tls-cert" in warning  # it says what to do
    assert warnings["plaintext, loopback"] == [] and warnings["TLS, all interfaces"] == []


@pytest.mark.timeout(120)
def test_token_redirects_across_two_replicas_under_mutual_tls(
    pki: Pki, tmp_path: Path, etcd: EtcdCluster
) -> None:
    """Each Global key has one owner replica; a token client on the other one is answered REDIRECT
    and opens its second stream to the owner with the same TLS settings (mTLS here: a plaintext or
    certificate-less stream would be refused), so a limit holds across replicas exactly."""
    mtls = TlsConfig(ca_file=str(pki.ca), cert_file=str(pki.client_cert), key_file=str(pki.client_key))
    tls_args = [
        "--tls-cert",
        str(pki.server_cert),
        "--tls-key",
        str(pki.server_key),
        "--tls-client-ca",
        str(pki.ca),
    ]
    replicas = [
        TlsControlPlane(
            tmp_path / f"d{i}", tmp_path, ["--allow-loopback", *tls_args, "--store", etcd.url], pki
        )
        for i in range(2)
    ]
    for i, cp in enumerate(replicas):
        cp.log_dir = tmp_path / f"logs{i}"
        cp.log_dir.mkdir()
        cp.start(timeout=60)
    a = replicas[0]
    strategy = {
        "apiVersion": "fault-tolerance.opensergo.io/v1alpha1",
        "kind": "ConcurrencyLimitStrategy",
        "metadata": {"name": "three", "namespace": "default", "labels": {"app": "redirect-app"}},
        "spec": {"maxConcurrency": 3, "limitMode": "Global"},
    }
    watchers = [client(cp, "redirect-app", mtls) for cp in replicas]
    tokens = [
        TokenClient([cp.grpc_address], client_id=f"t{i}", tls=mtls).start() for i, cp in enumerate(replicas)
    ]
    try:
        response = a.http.put(
            f"{a.http_url}/apis/fault-tolerance.opensergo.io/v1alpha1/namespaces/default"
            "/concurrencylimitstrategies/three",
            json=strategy,
        )
        assert response.status_code in (200, 201), response.text
        # The replicas know each other once each lists the other's subscriber (status documents).
        for w in watchers:
            w.start()

        def sees_both(cp: TlsControlPlane) -> bool:
            clients = cp.http.get(f"{cp.http_url}/api/v1/clients", params={"connected": "true"}).json()[
                "items"
            ]
            return len({c["replica"] for c in clients}) == 2

        for cp in replicas:
            wait_until(lambda cp=cp: sees_both(cp), timeout=30, what="the replicas see each other")
        wait_until(lambda: all(t.usable for t in tokens), timeout=20, what="token streams up")

        def acquire(t: TokenClient) -> tk.TokenResponse:
            return t.request(("default", "redirect-app", "GET:/r", "three"), "acquire", 1).result(timeout=10)

        via_a, via_b = tokens
        wait_until(lambda: acquire(via_a).code == tk.TokenResponse.OK, timeout=20, what="the limit known")
        # One permit held through A; two more through B, then the limit (3) is reached for both.
        # Permits are counted in the owner's memory only: without the redirect (and its second
        # mTLS stream) the replica that does not own the key would grant 3 more of its own.
        assert [acquire(via_b).granted for _ in range(3)] == [1, 1, 0]
        assert acquire(via_a).granted == 0
    finally:
        for t in tokens:
            t.stop()
        for w in watchers:
            w.stop()
        for cp in replicas:
            cp.stop()
            cp.http.close()

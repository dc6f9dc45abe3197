"""TLS for the control plane's ports: --tls-cert, --tls-key and --tls-client-ca (mutual TLS on gRPC)."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import grpc


@dataclass(frozen=True)
class ServerTls:
    """The PEM files behind --tls-cert, --tls-key and --tls-client-ca, read and checked."""

    cert_file: Path
    key_file: Path
    cert: bytes
    key: bytes
    client_ca: bytes | None = None

    @property
    def mode(self) -> str:
        return "mtls" if self.client_ca is not None else "on"

    def grpc_credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(self.key, self.cert)],
            root_certificates=self.client_ca,
            require_client_auth=self.client_ca is not None,
        )


def load_server_tls(cert_path: Path | None, key_path: Path | None, ca_path: Path | None) -> ServerTls | None:
    """Read and check the files of --tls-cert, --tls-key and --tls-client-ca; None without
    --tls-cert. Raises ValueError naming the option and the path, so that a bad setting fails
    before anything listens."""
    if cert_path is None and key_path is None:
        if ca_path is not None:
            raise ValueError(f"--tls-client-ca {ca_path} needs --tls-cert and --tls-key (the server's own)")
        return None
    if cert_path is None or key_path is None:
        given, missing = ("--tls-cert", "--tls-key") if key_path is None else ("--tls-key", "--tls-cert")
        raise ValueError(f"{given} {cert_path or key_path} needs {missing} (a certificate and its key)")
    cert = _read_pem("--tls-cert", cert_path, b"CERTIFICATE-----")
    key = _read_pem("--tls-key", key_path, b"PRIVATE KEY-----")
    client_ca = _read_pem("--tls-client-ca", ca_path, b"CERTIFICATE-----") if ca_path else None
    # OpenSSL's checks (key matches the certificate, parsable CA) give clearer errors than gRPC's.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert_path, key_path, password=lambda: b"")
    except ssl.SSLError as exc:
        reason = str(exc.reason or exc)
        problem = (
            "the key does not match the certificate"
            if "MISMATCH" in reason
            else f"unusable ({reason}; encrypted keys are not supported)"
        )
        raise ValueError(f"--tls-key {key_path} / --tls-cert {cert_path}: {problem}") from exc
    if client_ca is not None:
        try:
            context.load_verify_locations(cadata=client_ca.decode("ascii", "replace"))
        except ssl.SSLError as exc:
            raise ValueError(f"--tls-client-ca {ca_path}: not a usable CA certificate: {exc}") from exc
    return ServerTls(cert_path, key_path, cert, key, client_ca)


def _read_pem(option: str, path: Path, marker: bytes) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"{option} {path}: cannot read: {exc.strerror or exc}") from exc
    if marker not in data:
        raise ValueError(f"{option} {path}: not a PEM file with a {marker.decode().strip('-')}")
    return data

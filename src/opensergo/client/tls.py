"""TLS for the SDK's gRPC channels, and the one place that picks a secure or a plaintext channel.

::

    tls = TlsConfig(ca_file="ca.pem")  # verify the control plane against this CA
    mtls = TlsConfig(ca_file="ca.pem", cert_file="client.pem", key_file="client-key.pem")
    client = OpenSergoClient("cp.example:10246", app="foo-app", tls=mtls)

``TlsConfig()`` (no files) means TLS verified against the system's root certificates.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio

if TYPE_CHECKING:
    from opensergo.client.credentials import BearerToken

__all__ = ["TlsConfig", "TlsError", "open_channel"]

TARGET_NAME_OPTION = "grpc.ssl_target_name_override"


class TlsError(ValueError):
    """A TLS setting is unusable: a file cannot be read, or a certificate comes without its key."""


@dataclass(frozen=True)
class TlsConfig:
    """Client-side TLS: ``ca_file`` verifies the server (default: system roots); ``cert_file`` and
    ``key_file`` (together) present a client certificate (mutual TLS); ``server_name`` is the name
    to verify in the server's certificate instead of the endpoint's host."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    server_name: str | None = None

    def __post_init__(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            given, missing = ("cert_file", "key_file") if self.key_file is None else ("key_file", "cert_file")
            raise TlsError(f"TLS: {given} needs {missing} (a client certificate and its key go together)")

    @property
    def mutual(self) -> bool:
        """Whether a client certificate is presented."""
        return self.cert_file is not None

    def resolve(self, base_dir: str | os.PathLike[str]) -> TlsConfig:
        """A copy whose relative file paths are taken relative to ``base_dir``."""

        def absolute(path: str | None) -> str | None:
            if path is None or os.path.isabs(path):
                return path
            return os.path.normpath(os.path.join(os.path.abspath(base_dir), path))

        return replace(
            self,
            ca_file=absolute(self.ca_file),
            cert_file=absolute(self.cert_file),
            key_file=absolute(self.key_file),
        )

    def channel_credentials(self) -> grpc.ChannelCredentials:
        """The channel credentials; the files are read on the first call only."""
        return self._credentials

    def channel_options(self) -> list[tuple[str, Any]]:
        return [(TARGET_NAME_OPTION, self.server_name)] if self.server_name else []

    # A frozen dataclass still has a __dict__, which is where cached_property stores the value.
    @functools.cached_property
    def _credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=_read(self.ca_file, "CA"),
            private_key=_read(self.key_file, "client key"),
            certificate_chain=_read(self.cert_file, "client certificate"),
        )

    def describe(self) -> str:
        """Short form for logs: ``tls`` or ``mtls``, and the CA."""
        return f"{'mtls' if self.mutual else 'tls'} (CA {self.ca_file or 'system roots'})"


def _read(path: str | None, what: str) -> bytes | None:
    if path is None:
        return None
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise TlsError(f"TLS: cannot read the {what} file {path!r}: {exc.strerror or exc}") from exc
    if b"-----BEGIN " not in data:
        raise TlsError(f"TLS: the {what} file {path!r} is not PEM")
    return data


def open_channel(
    endpoint: str,
    tls: TlsConfig | None,
    options: Sequence[tuple[str, Any]] = (),
    token: BearerToken | None = None,
) -> grpc.aio.Channel:
    """A channel to ``endpoint`` (``host:port``): TLS when ``tls`` is given, else plaintext;
    every call on it carries ``token`` (``authorization: Bearer ...``) when given."""
    interceptors = token.interceptors() if token is not None else None
    if tls is None:
        return grpc.aio.insecure_channel(endpoint, options=list(options), interceptors=interceptors)
    return grpc.aio.secure_channel(
        endpoint,
        tls.channel_credentials(),
        options=[*options, *tls.channel_options()],
        interceptors=interceptors,
    )

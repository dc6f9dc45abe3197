"""Bootstrap configuration from the environment (OpenSergo specification, "Data-plane and
control-plane communication configuration").

``OPENSERGO_BOOTSTRAP_CONFIG`` holds inline JSON such as ``{"endpoint": "host:port"}``; otherwise
``OPENSERGO_BOOTSTRAP`` names a file with the same JSON. If either is present, governance is enabled.
The only key the specification defines is ``endpoint``; we also accept a comma-separated list of
endpoints (or a JSON list, also under ``endpoints``) and a few optional keys, listed in
:data:`KNOWN_KEYS`. Any other key is ignored with a debug log.

TLS: ``"tls": {"caFile": ..., "certFile": ..., "keyFile": ..., "serverName": ...}`` (every key
optional; certFile and keyFile together), or ``"tls": true`` for TLS verified by the system roots,
as does writing the endpoints ``grpcs://host:port`` or ``https://host:port``. Relative paths in
a bootstrap file are relative to the file's directory.

Access token (a control plane with auth on): ``"token": "..."`` or ``"tokenFile": "path"`` (one of
them; the file is re-read when it changes), sent as ``authorization: Bearer`` on every call.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from opensergo.client.credentials import BearerToken, TokenError
from opensergo.client.options import Heartbeat, InstanceInfo, Snapshot
from opensergo.client.tls import TlsConfig, TlsError

__all__ = [
    "ENV_BOOTSTRAP",
    "ENV_BOOTSTRAP_CONFIG",
    "KNOWN_KEYS",
    "BootstrapConfig",
    "BootstrapError",
    "governance_enabled",
    "load_bootstrap",
    "parse_bootstrap",
    "parse_endpoints",
    "split_endpoints",
]

_log = logging.getLogger("opensergo.client.bootstrap")

ENV_BOOTSTRAP_CONFIG = "OPENSERGO_BOOTSTRAP_CONFIG"
ENV_BOOTSTRAP = "OPENSERGO_BOOTSTRAP"

# JSON key -> BootstrapConfig attribute (camelCase and snake_case spellings are both accepted).
_STRING_KEYS = {
    "namespace": "namespace",
    "app": "app",
    "snapshotDir": "snapshot_dir",
    "snapshot_dir": "snapshot_dir",
    "tag": "tag",
    "cluster": "cluster",
    "env": "env",
    "region": "region",
    "zone": "zone",
}
_FLOAT_KEYS = {"heartbeatInterval": "heartbeat_interval", "heartbeat_interval": "heartbeat_interval"}
_ENDPOINT_KEYS = ("endpoint", "endpoints")
_TLS_KEY = "tls"
_LABELS_KEY = "labels"  # {"version": "v2", ...}: the instance's selector labels
_TOKEN_KEYS = ("token", "tokenFile", "token_file")
# "tls" object key -> TlsConfig attribute.
_TLS_KEYS = {
    "caFile": "ca_file",
    "ca_file": "ca_file",
    "certFile": "cert_file",
    "cert_file": "cert_file",
    "keyFile": "key_file",
    "key_file": "key_file",
    "serverName": "server_name",
    "server_name": "server_name",
}
# Endpoint schemes that mean TLS with the system roots (unless "tls" says more).
TLS_SCHEMES = ("grpcs://", "https://")
KNOWN_KEYS: frozenset[str] = frozenset(
    (*_ENDPOINT_KEYS, *_STRING_KEYS, *_FLOAT_KEYS, _TLS_KEY, _LABELS_KEY, *_TOKEN_KEYS)
)


class BootstrapError(ValueError):
    """The bootstrap environment is set but unusable (unreadable file, bad JSON, bad endpoint)."""


@dataclass(frozen=True)
class BootstrapConfig:
    """What the bootstrap JSON says. ``endpoints`` is never empty."""

    endpoints: list[str]
    namespace: str | None = None
    app: str | None = None
    snapshot_dir: str | None = None
    heartbeat_interval: float | None = None
    tag: str | None = None
    cluster: str | None = None
    env: str | None = None
    region: str | None = None
    zone: str | None = None
    tls: TlsConfig | None = None
    """TLS for every gRPC channel to the control plane; None: plaintext."""
    labels: dict[str, str] = field(default_factory=dict)
    """Custom selector labels of the instance (e.g. ``version``)."""
    token: BearerToken | None = field(default=None, compare=False)
    """The access token sent on every call; None: no token."""
    source: str = field(default="", compare=False)
    """Where the config came from, e.g. ``$OPENSERGO_BOOTSTRAP_CONFIG`` or a file path."""

    @property
    def endpoint(self) -> str:
        """The first endpoint."""
        return self.endpoints[0]

    def client_options(self) -> dict[str, Any]:
        """What the config says, as :class:`~opensergo.client.OpenSergoClient` keywords (without
        the endpoints and the app): ``namespace``, ``tls``, ``token`` and the ``snapshot``, ``heartbeat`` and
        ``instance`` groups, each only when the config sets it."""
        options: dict[str, Any] = {}
        if self.namespace is not None:
            options["namespace"] = self.namespace
        if self.tls is not None:
            options["tls"] = self.tls
        if self.token is not None:
            options["token"] = self.token
        if self.snapshot_dir is not None:
            options["snapshot"] = Snapshot(directory=self.snapshot_dir)
        if self.heartbeat_interval is not None:
            options["heartbeat"] = Heartbeat(interval=self.heartbeat_interval)
        instance = InstanceInfo(
            tag=self.tag, cluster=self.cluster, env=self.env, region=self.region, zone=self.zone,
            labels=dict(self.labels),
        )  # fmt: skip
        if instance != InstanceInfo():
            options["instance"] = instance
        return options


def governance_enabled(environ: Mapping[str, str] | None = None) -> bool:
    """True when either bootstrap variable is set to a non-blank value."""
    env = os.environ if environ is None else environ
    return bool(env.get(ENV_BOOTSTRAP_CONFIG, "").strip() or env.get(ENV_BOOTSTRAP, "").strip())


def load_bootstrap(environ: Mapping[str, str] | None = None) -> BootstrapConfig | None:
    """Read the bootstrap config from ``environ`` (default ``os.environ``).

    Returns None when neither variable is set (blank counts as unset); raises
    :class:`BootstrapError` when one is set but unusable.
    """
    env = os.environ if environ is None else environ
    inline = env.get(ENV_BOOTSTRAP_CONFIG, "").strip()
    if inline:
        return parse_bootstrap(inline, source=f"${ENV_BOOTSTRAP_CONFIG}")
    path = env.get(ENV_BOOTSTRAP, "").strip()
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise BootstrapError(f"${ENV_BOOTSTRAP}: cannot read bootstrap file {path!r}: {reason}") from exc
    return parse_bootstrap(text, source=path, base_dir=os.path.dirname(os.path.abspath(path)))


def parse_bootstrap(
    text: str, *, source: str = "bootstrap", base_dir: str | os.PathLike[str] | None = None
) -> BootstrapConfig:
    """Parse bootstrap JSON text; ``source`` names it in error messages. Relative TLS file paths
    are taken relative to ``base_dir`` when given (else to the working directory)."""
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BootstrapError(
            f"{source}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from exc
    if not isinstance(data, dict):
        raise BootstrapError(f'{source}: expected a JSON object like {{"endpoint": "host:port"}}')

    raw_endpoint = next((data[k] for k in _ENDPOINT_KEYS if k in data), None)
    if raw_endpoint is None:
        raise BootstrapError(f'{source}: missing "endpoint" (expected {{"endpoint": "host:port"}})')
    endpoints, scheme_tls = split_endpoints(raw_endpoint, source=source)

    values: dict[str, Any] = {}
    tls = _bootstrap_tls(data, scheme_tls, source)
    if tls is not None:
        values["tls"] = tls.resolve(base_dir) if base_dir is not None else tls
    token = _parse_token(data, source, base_dir)
    if token is not None:
        values["token"] = token
    for key, value in data.items():
        if key in _ENDPOINT_KEYS or key in (_TLS_KEY, *_TOKEN_KEYS):
            continue
        if key == _LABELS_KEY:
            if not isinstance(value, dict) or not all(
                isinstance(k, str) and k and isinstance(v, str) for k, v in value.items()
            ):
                raise BootstrapError(
                    f'{source}: "labels" must be an object of strings, like {{"version": "v2"}}'
                )
            values["labels"] = dict(value)
            continue
        if key in _STRING_KEYS or key in _FLOAT_KEYS:
            parsed = _parse_value(key, value, source)
            if parsed is not None:
                values[_STRING_KEYS.get(key) or _FLOAT_KEYS[key]] = parsed
        else:
            _log.debug("%s: ignoring unknown bootstrap key %r", source, key)
    return BootstrapConfig(endpoints=endpoints, source=source, **values)


def _parse_value(key: str, value: object, source: str) -> str | float | None:
    """A string or seconds value; None when absent (null or blank)."""
    if value is None:
        return None
    if key in _FLOAT_KEYS:
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise BootstrapError(f"{source}: {key!r} must be a positive number of seconds")
        return float(value)
    if not isinstance(value, str):
        raise BootstrapError(f"{source}: {key!r} must be a string, got {type(value).__name__}")
    return value.strip() or None


def _bootstrap_tls(data: Mapping[str, Any], scheme_tls: bool, source: str) -> TlsConfig | None:
    """The TLS the bootstrap asks for: its ``"tls"`` value, else TLS by endpoint scheme."""
    tls = _parse_tls(data.get(_TLS_KEY), source)
    if tls is None and scheme_tls:
        if data.get(_TLS_KEY) is False:
            raise BootstrapError(f'{source}: "tls": false contradicts the grpcs:// or https:// endpoints')
        tls = TlsConfig()
    return tls


def _parse_tls(value: object, source: str) -> TlsConfig | None:
    """The ``"tls"`` value: absent, null or false (plaintext), true (system roots) or an object."""
    if value is None or value is False:
        return None
    if value is True:
        return TlsConfig()
    if not isinstance(value, dict):
        raise BootstrapError(
            f'{source}: "tls" must be true or an object like {{"caFile": "ca.pem"}},'
            f" got {type(value).__name__}"
        )
    fields: dict[str, str] = {}
    for key, item in value.items():
        # Strict here, unlike the top level: a misspelt key would silently drop a CA or a client cert.
        if key not in _TLS_KEYS:
            raise BootstrapError(
                f'{source}: unknown key {key!r} in "tls" (expected caFile, certFile, keyFile, serverName)'
            )
        if item is None:
            continue
        if not isinstance(item, str) or not item.strip():
            raise BootstrapError(f'{source}: "tls" {key!r} must be a non-empty string')
        fields[_TLS_KEYS[key]] = item.strip()
    if ("cert_file" in fields) != ("key_file" in fields):
        given, missing = ("certFile", "keyFile") if "cert_file" in fields else ("keyFile", "certFile")
        raise BootstrapError(
            f'{source}: "tls" {given!r} needs {missing!r} (a client certificate and its key)'
        )
    try:
        return TlsConfig(**fields)
    except TlsError as exc:  # pragma: no cover - the checks above come first
        raise BootstrapError(f"{source}: {exc}") from exc


def _parse_token(
    data: dict[str, Any], source: str, base_dir: str | os.PathLike[str] | None
) -> BearerToken | None:
    """``"token"`` or ``"tokenFile"`` (not both); a relative file is taken relative to ``base_dir``."""
    given = {key: data[key] for key in _TOKEN_KEYS if data.get(key) is not None}
    if not given:
        return None
    if len(given) > 1:
        raise BootstrapError(f'{source}: give either "token" or "tokenFile", not both')
    key, value = next(iter(given.items()))
    if not isinstance(value, str) or not value.strip():
        raise BootstrapError(f"{source}: {key!r} must be a non-empty string")
    try:
        if key == "token":
            return BearerToken(value)
        path = value.strip()
        if base_dir is not None and not os.path.isabs(path):
            path = os.path.join(os.path.abspath(base_dir), path)
        return BearerToken(file=path)
    except TokenError as exc:
        raise BootstrapError(f"{source}: {exc}") from exc


def parse_endpoints(value: object, *, source: str = "endpoint") -> list[str]:
    """Normalise ``"host:port"``, ``"h1:p1,h2:p2"`` or a list of those into a list of endpoints
    (``grpcs://`` and ``https://`` prefixes are dropped; :func:`split_endpoints` reports them)."""
    return split_endpoints(value, source=source)[0]


def split_endpoints(value: object, *, source: str = "endpoint") -> tuple[list[str], bool]:
    """Like :func:`parse_endpoints`, and whether the endpoints were written with a TLS scheme
    (``grpcs://host:port`` or ``https://host:port``; all of them or none)."""
    items: list[object]
    if isinstance(value, str):
        items = list(value.split(","))
    elif isinstance(value, list | tuple):
        items = []
        for item in value:
            items.extend(item.split(",") if isinstance(item, str) else [item])
    else:
        raise BootstrapError(f'{source}: "endpoint" must be a "host:port" string, got {type(value).__name__}')
    endpoints: list[str] = []
    schemes: set[bool] = set()
    for item in items:
        if not isinstance(item, str):
            raise BootstrapError(f'{source}: "endpoint" entries must be strings, got {type(item).__name__}')
        text = item.strip()
        if not text:
            continue
        scheme = next((s for s in TLS_SCHEMES if text.lower().startswith(s)), None)
        schemes.add(scheme is not None)
        if scheme is not None:
            text = text[len(scheme) :].rstrip("/")
        _check_endpoint(text, source)
        if text not in endpoints:
            endpoints.append(text)
    if not endpoints:
        raise BootstrapError(f'{source}: "endpoint" is empty (expected "host:port")')
    if len(schemes) > 1:
        raise BootstrapError(
            f"{source}: endpoints mix TLS (grpcs://, https://) and plaintext; one connection setting"
            " applies to all of them"
        )
    return endpoints, schemes == {True}


def _check_endpoint(text: str, source: str) -> None:
    if "://" in text:
        raise BootstrapError(
            f"{source}: endpoint {text!r} must be host:port without a scheme (or grpcs://host:port for TLS)"
        )
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise BootstrapError(f"{source}: endpoint {text!r} is not host:port")
    if host.startswith("["):
        if not host.endswith("]") or len(host) < 3:
            raise BootstrapError(f"{source}: endpoint {text!r} has a malformed IPv6 address")
    elif ":" in host:
        raise BootstrapError(f"{source}: endpoint {text!r}: write an IPv6 host in brackets, e.g. [::1]:10246")
    if any(c.isspace() for c in host):
        raise BootstrapError(f"{source}: endpoint {text!r} contains whitespace")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise BootstrapError(f"{source}: endpoint {text!r} has an invalid port {port!r} (1-65535)")

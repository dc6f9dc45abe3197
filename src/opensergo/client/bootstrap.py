"""Bootstrap configuration from the environment (OpenSergo specification, "Data-plane and
control-plane communication configuration").

``OPENSERGO_BOOTSTRAP_CONFIG`` holds inline JSON such as ``{"endpoint": "host:port"}``; otherwise
``OPENSERGO_BOOTSTRAP`` names a file with the same JSON. If either is present, governance is enabled.
The only key the specification defines is ``endpoint``; we also accept a comma-separated list of
endpoints (or a JSON list, also under ``endpoints``) and a few optional keys, listed in
:data:`KNOWN_KEYS`. Any other key is ignored with a debug log.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

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
KNOWN_KEYS: frozenset[str] = frozenset((*_ENDPOINT_KEYS, *_STRING_KEYS, *_FLOAT_KEYS))


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
    source: str = field(default="", compare=False)
    """Where the config came from, e.g. ``$OPENSERGO_BOOTSTRAP_CONFIG`` or a file path."""

    @property
    def endpoint(self) -> str:
        """The first endpoint."""
        return self.endpoints[0]


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
    return parse_bootstrap(text, source=path)


def parse_bootstrap(text: str, *, source: str = "bootstrap") -> BootstrapConfig:
    """Parse bootstrap JSON text; ``source`` names it in error messages."""
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
    endpoints = parse_endpoints(raw_endpoint, source=source)

    values: dict[str, Any] = {}
    for key, value in data.items():
        if key in _ENDPOINT_KEYS:
            continue
        if key in _STRING_KEYS:
            if value is None:
                continue
            if not isinstance(value, str):
                raise BootstrapError(f"{source}: {key!r} must be a string, got {type(value).__name__}")
            if value.strip():
                values[_STRING_KEYS[key]] = value.strip()
        elif key in _FLOAT_KEYS:
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise BootstrapError(f"{source}: {key!r} must be a positive number of seconds")
            values[_FLOAT_KEYS[key]] = float(value)
        else:
            _log.debug("%s: ignoring unknown bootstrap key %r", source, key)
    return BootstrapConfig(endpoints=endpoints, source=source, **values)


def parse_endpoints(value: object, *, source: str = "endpoint") -> list[str]:
    """Normalise ``"host:port"``, ``"h1:p1,h2:p2"`` or a list of those into a list of endpoints."""
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
    for item in items:
        if not isinstance(item, str):
            raise BootstrapError(f'{source}: "endpoint" entries must be strings, got {type(item).__name__}')
        text = item.strip()
        if not text:
            continue
        _check_endpoint(text, source)
        if text not in endpoints:
            endpoints.append(text)
    if not endpoints:
        raise BootstrapError(f'{source}: "endpoint" is empty (expected "host:port")')
    return endpoints


def _check_endpoint(text: str, source: str) -> None:
    if "://" in text:
        raise BootstrapError(f"{source}: endpoint {text!r} must be host:port without a scheme")
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

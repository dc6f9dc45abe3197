"""Where the OTLP exporters of every signal (metrics, traces, logs) send, and the OTel resource
that names this process.

The endpoint is, in order: an explicit ``endpoint=``; ``OTEL_EXPORTER_OTLP_<SIGNAL>_ENDPOINT`` /
``OTEL_EXPORTER_OTLP_ENDPOINT`` (the OTel exporter then reads them, with their headers,
certificates and ``..._INSECURE``); else the control plane of ``OPENSERGO_BOOTSTRAP_CONFIG`` /
``OPENSERGO_BOOTSTRAP``, with the bootstrap's TLS settings, as the SDK's own channels use.

The access token (``token=``, else the bootstrap's ``token`` / ``tokenFile`` when the endpoint comes
from it) is sent as ``authorization: Bearer`` with every export; it is read once, when the exporter
is built. Without one, the exporter's own ``OTEL_EXPORTER_OTLP_HEADERS`` apply.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from opensergo.observability import names

if TYPE_CHECKING:
    from opensergo.client.credentials import BearerToken
    from opensergo.client.tls import TlsConfig

Signal = Literal["metrics", "traces", "logs"]


def endpoint_variables(signal: Signal) -> tuple[str, str]:
    return (f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")


def bootstrap_endpoint(environ: Mapping[str, str]) -> str | None:
    """The control plane's first endpoint from the bootstrap config (None: not configured)."""
    target = bootstrap_target(environ)
    return target[0] if target is not None else None


def bootstrap_target(
    environ: Mapping[str, str],
) -> tuple[str, TlsConfig | None, BearerToken | None] | None:
    """The control plane's first endpoint, its TLS settings and token, from the bootstrap config."""
    from opensergo.client.bootstrap import BootstrapError, governance_enabled, load_bootstrap

    if not governance_enabled(environ):
        return None
    try:
        config = load_bootstrap(environ)
    except BootstrapError:
        return None
    return (config.endpoints[0], config.tls, config.token) if config is not None else None


def exporter_options(
    signal: Signal,
    endpoint: str | None,
    environ: Mapping[str, str],
    token: str | BearerToken | None = None,
) -> dict[str, Any]:
    """Keyword arguments for an OTLP/gRPC exporter of ``signal`` (without an endpoint: let it
    read the ``OTEL_EXPORTER_OTLP_*`` variables). Raises ValueError when no endpoint is known."""
    from opensergo.client.credentials import as_bearer_token

    bearer = as_bearer_token(token)
    target = endpoint
    tls: TlsConfig | None = None
    options: dict[str, Any] = {}
    if target is None and any(environ.get(v) for v in endpoint_variables(signal)):
        pass  # the exporter reads the variables
    else:
        if target is None:
            found = bootstrap_target(environ)
            if found is None:
                raise ValueError(
                    f"no {signal} endpoint: pass endpoint=, or set OTEL_EXPORTER_OTLP_ENDPOINT or"
                    " OPENSERGO_BOOTSTRAP_CONFIG"
                )
            target, tls, bootstrap_token = found
            bearer = bearer or bootstrap_token
        options["endpoint"] = target
        if tls is not None:
            from opensergo.client.tls import TARGET_NAME_OPTION

            options["insecure"] = False
            options["credentials"] = tls.channel_credentials()
            if tls.server_name:
                options["channel_options"] = ((TARGET_NAME_OPTION, tls.server_name),)
        else:
            options["insecure"] = not target.startswith("https://")
    if bearer is not None:  # (None: the exporter's own OTEL_EXPORTER_OTLP_HEADERS apply)
        options["headers"] = {"authorization": f"Bearer {bearer.value()}"}
    return options


def resource_attributes(
    app: str | None,
    namespace: str,
    instance_id: str | None,
    framework: str | None,
    environ: Mapping[str, str],
) -> dict[str, str]:
    """``service.name`` (the app), ``service.namespace``, ``service.instance.id`` and
    ``opensergo.framework``: what the control plane keys charts and traces by."""
    if not app:
        app = environ.get("OPENSERGO_APP") or environ.get("OTEL_SERVICE_NAME")
    if not app:
        raise ValueError("app is required (or set OPENSERGO_APP / OTEL_SERVICE_NAME)")
    attributes = {
        names.SERVICE_NAME: app,
        names.SERVICE_NAMESPACE: namespace,
        names.SERVICE_INSTANCE_ID: instance_id or default_instance_id(),
    }
    if framework:
        attributes[names.FRAMEWORK] = framework
    return attributes


def default_instance_id() -> str:
    """``<host>-<pid>``: one instance per process (a pre-forking server's workers differ)."""
    return f"{socket.gethostname()}-{os.getpid()}"

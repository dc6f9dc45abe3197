"""``opensergo-run``: run a Python program with OpenSergo governance, without code changes.

::

    OPENSERGO_BOOTSTRAP_CONFIG='{"endpoint": "cp:10246"}' opensergo-run --app foo -- python app.py
    python -m opensergo.launcher --app foo -- gunicorn app:app

The Python answer to a Java agent: the launcher puts a ``sitecustomize`` module first on
``PYTHONPATH`` and executes the command. In every Python process that the command starts, that
module installs import hooks which, when the program imports the framework, patch it:

* ``flask.Flask``: each app gets :func:`~opensergo.integrations.wsgi.instrument_flask`;
* ``starlette.applications.Starlette`` and ``fastapi.FastAPI``: each app gets
  :class:`~opensergo.integrations.asgi.OpenSergoMiddleware` as its outermost user middleware;
* ``grpc.server`` / ``grpc.aio.server``: the OpenSergo server interceptor is appended to
  ``interceptors``;
* ``grpc.insecure_channel`` / ``secure_channel`` and their ``grpc.aio`` twins: outbound calls
  are guarded, and a channel to a service name routes each call by the service's rules.
* ``redis.Redis`` / ``redis.asyncio.Redis``: replaced by the governed clients of
  :mod:`opensergo.cache.auto` (CachePolicy for ``$OPENSERGO_CACHE_NAME``, else the client's
  ``client_name``, else ``default``).

The first patched construction calls :func:`~opensergo.governance.runtime.enable_from_env`
(client from ``OPENSERGO_BOOTSTRAP_CONFIG`` / ``OPENSERGO_BOOTSTRAP``, app from ``--app`` /
``OPENSERGO_APP`` / the bootstrap), so the control-plane client starts in the process that serves
(after a pre-forking server forked, when apps are created in the workers). Without bootstrap
configuration nothing is patched. An app that already installs the middleware is not guarded
twice. ``OPENSERGO_AUTO_INSTRUMENT=0`` turns the hooks off.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import importlib.abc
import importlib.machinery
import inspect
import json
import logging
import os
import sys
import threading
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = ["ENV_AUTO", "bootstrap", "chain_sitecustomize", "main"]

log = logging.getLogger("opensergo.launcher")

ENV_AUTO = "OPENSERGO_AUTO_INSTRUMENT"
SITE_DIR = Path(__file__).resolve().parent / "sitecustomize"

_lock = threading.Lock()


def _governance(framework: str | None = None) -> None:
    """Turn governance on (once per process) at the first instrumented app or server, then
    report what the process serves so far (addresses, contracts)."""
    from opensergo.governance.runtime import current, enable_from_env
    from opensergo.integrations.registration import registration

    if framework and not os.environ.get("OPENSERGO_FRAMEWORK"):
        os.environ["OPENSERGO_FRAMEWORK"] = framework  # the OTel resource's opensergo.framework
    try:
        if current() is None:
            enable_from_env()
        registration().publish()
    except Exception:
        log.exception("opensergo-run: cannot start OpenSergo governance")


def _source(protocol: str, app: Any, derive: Callable[[Any], Any]) -> None:
    """Report ``derive(app)`` as a contract of ``protocol`` (the app is held weakly)."""
    from opensergo.integrations.registration import registration
    from opensergo.proto.service_contract.v1 import service_contract_pb2 as sc

    try:
        ref: Callable[[], Any] = weakref.ref(app)
    except TypeError:  # not weakly referenceable: keep it (apps live as long as the process)
        ref = lambda: app  # noqa: E731

    def source() -> Any:
        target = ref()
        return derive(target) if target is not None else sc.ServiceContract()

    registration().add_source(protocol, source)


def _address(protocol: str, host: str, port: int) -> None:
    from opensergo.integrations.registration import registration

    try:
        registration().add_address(protocol, host.strip("[]"), int(port))
    except Exception:
        log.exception("opensergo-run: cannot register %s address %s:%s", protocol, host, port)


# -- patches: inbound -------------------------------------------------------------------------------


def _patch_flask(module: ModuleType) -> None:
    flask_cls = module.Flask
    original = flask_cls.__init__
    if getattr(original, "_opensergo", False):
        return

    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        from opensergo.integrations.contracts import flask_contract
        from opensergo.integrations.wsgi import instrument_flask

        instrument_flask(self)
        _source("http", self, flask_contract)
        _governance("flask")

    __init__._opensergo = True  # type: ignore[attr-defined]
    flask_cls.__init__ = __init__


def _asgi_init_patch(cls: type[Any], framework: str) -> None:
    original = cls.__dict__.get("__init__")
    if original is None or getattr(original, "_opensergo", False):
        return

    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        from starlette.middleware import Middleware

        from opensergo.integrations.asgi import OpenSergoMiddleware
        from opensergo.integrations.contracts import starlette_contract

        middleware = getattr(self, "user_middleware", None)
        if isinstance(middleware, list) and not any(m.cls is OpenSergoMiddleware for m in middleware):
            middleware.insert(0, Middleware(OpenSergoMiddleware))
        # A FastAPI app runs Starlette's __init__ too: one contract, named after FastAPI.
        fastapi_app = any(c.__module__.startswith("fastapi") for c in type(self).__mro__)
        if type(self) is cls or framework == "fastapi":
            _source("http", self, starlette_contract)
        _governance("fastapi" if fastapi_app else framework)

    __init__._opensergo = True  # type: ignore[attr-defined]
    cls.__init__ = __init__


def _patch_starlette(module: ModuleType) -> None:
    _asgi_init_patch(module.Starlette, "starlette")


def _patch_fastapi(module: ModuleType) -> None:
    _asgi_init_patch(module.FastAPI, "fastapi")


def _patch_django_wsgi(module: ModuleType) -> None:
    original = module.get_wsgi_application
    if getattr(original, "_opensergo", False):
        return

    @functools.wraps(original)
    def get_wsgi_application() -> Any:
        from opensergo.integrations.contracts import django_contract
        from opensergo.integrations.django import DjangoResourceNamer
        from opensergo.integrations.wsgi import OpenSergoWSGIMiddleware

        application = OpenSergoWSGIMiddleware(original(), resource=DjangoResourceNamer())
        _source("http", application, lambda _app: django_contract())
        _governance("django")
        return application

    get_wsgi_application._opensergo = True  # type: ignore[attr-defined]
    setattr(module, "get_wsgi_application", get_wsgi_application)  # noqa: B010


def _django_scope_namer() -> Callable[[Any], str]:
    from opensergo.integrations.django import DjangoResourceNamer

    namer = DjangoResourceNamer()

    def name(scope: Any) -> str:
        path = scope.get("path", "/")
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :] or "/"
        return namer({"REQUEST_METHOD": scope["method"], "PATH_INFO": path.encode().decode("latin-1")})

    return name


def _patch_django_asgi(module: ModuleType) -> None:
    original = module.get_asgi_application
    if getattr(original, "_opensergo", False):
        return

    @functools.wraps(original)
    def get_asgi_application() -> Any:
        from opensergo.integrations.asgi import OpenSergoMiddleware
        from opensergo.integrations.contracts import django_contract

        application = OpenSergoMiddleware(original(), resource=_django_scope_namer())
        _source("http", application, lambda _app: django_contract())
        _governance("django")
        return application

    get_asgi_application._opensergo = True  # type: ignore[attr-defined]
    setattr(module, "get_asgi_application", get_asgi_application)  # noqa: B010


class _GrpcServices:
    """The services a gRPC server registers (for its contract)."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def contract(self, _server: Any) -> Any:
        from opensergo.integrations.contracts import grpc_contract

        return grpc_contract(self.names)


def _watch_grpc_server(server: Any) -> Any:
    """Record the services a server registers and the ports it listens on."""
    services = _GrpcServices()
    add_generic = server.add_generic_rpc_handlers

    def add_generic_rpc_handlers(handlers: Any) -> Any:
        for handler in handlers:
            name = getattr(handler, "service_name", None)
            if callable(name) and name() not in services.names:
                services.names.append(name())
        return add_generic(handlers)

    server.add_generic_rpc_handlers = add_generic_rpc_handlers
    add_registered = getattr(server, "add_registered_method_handlers", None)
    if add_registered is not None:

        def add_registered_method_handlers(service_name: str, method_handlers: Any) -> Any:
            if service_name not in services.names:
                services.names.append(service_name)
            return add_registered(service_name, method_handlers)

        server.add_registered_method_handlers = add_registered_method_handlers
    for method in ("add_insecure_port", "add_secure_port"):
        original = getattr(server, method)

        def add_port(address: str, *args: Any, _original: Any = original) -> int:
            port = int(_original(address, *args))
            if port:
                _address("grpc", address.rsplit(":", 1)[0], port)
            return port

        setattr(server, method, add_port)
    _source("grpc", server, services.contract)
    return server


def _with_interceptor(
    factory: Callable[..., Any], make: Callable[[], Any], kind: type[Any]
) -> Callable[..., Any]:
    if getattr(factory, "_opensergo", False):
        return factory

    @functools.wraps(factory)
    def server(*args: Any, **kwargs: Any) -> Any:
        interceptors = list(kwargs.get("interceptors") or ())
        if not any(isinstance(i, kind) for i in interceptors):
            interceptors.append(make())
        kwargs["interceptors"] = interceptors
        created = _watch_grpc_server(factory(*args, **kwargs))
        _governance("grpc")
        return created

    server._opensergo = True  # type: ignore[attr-defined]
    return server


def _patch_grpc(module: ModuleType) -> None:
    from opensergo.integrations.grpc_server import ServerInterceptor

    setattr(module, "server", _with_interceptor(module.server, ServerInterceptor, ServerInterceptor))  # noqa: B010
    _patch_grpc_channels(module)


def _patch_grpc_aio(module: ModuleType) -> None:
    from opensergo.integrations.grpc_server import AioServerInterceptor

    factory = _with_interceptor(module.server, AioServerInterceptor, AioServerInterceptor)
    setattr(module, "server", factory)  # noqa: B010
    _patch_grpc_aio_channels(module)


# -- patches: listening addresses -------------------------------------------------------------------


def _patch_uvicorn(module: ModuleType) -> None:
    server_cls = module.Server
    original = server_cls.startup
    if getattr(original, "_opensergo", False):
        return

    @functools.wraps(original)
    async def startup(self: Any, *args: Any, **kwargs: Any) -> None:
        await original(self, *args, **kwargs)
        for server in getattr(self, "servers", ()):
            for sock in getattr(server, "sockets", ()):
                address = sock.getsockname()
                if isinstance(address, tuple):
                    _address("http", str(address[0]), int(address[1]))

    startup._opensergo = True  # type: ignore[attr-defined]
    server_cls.startup = startup


def _patch_gunicorn(module: ModuleType) -> None:
    worker_cls = module.Worker
    original = worker_cls.init_process
    if getattr(original, "_opensergo", False):
        return

    @functools.wraps(original)
    def init_process(self: Any) -> None:
        # In the worker, after the fork: each worker is one instance at the arbiter's address.
        for listener in getattr(self, "sockets", ()):
            address = listener.getsockname()
            if isinstance(address, tuple):
                _address("http", str(address[0]), int(address[1]))
        original(self)

    init_process._opensergo = True  # type: ignore[attr-defined]
    worker_cls.init_process = init_process
    load_wsgi = worker_cls.load_wsgi

    @functools.wraps(load_wsgi)
    def load_and_report(self: Any) -> None:
        load_wsgi(self)
        from opensergo.integrations.registration import registration

        registration().publish()  # the app module ran: its routes exist now

    worker_cls.load_wsgi = load_and_report


def _patch_werkzeug(module: ModuleType) -> None:
    server_cls = module.BaseWSGIServer
    original = server_cls.__init__
    if getattr(original, "_opensergo", False):
        return

    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        address = getattr(self, "server_address", None)
        if isinstance(address, tuple):
            _address("http", str(address[0]), int(address[1]))

    __init__._opensergo = True  # type: ignore[attr-defined]
    server_cls.__init__ = __init__


# -- patches: outbound ------------------------------------------------------------------------------


def _patch_httpx(module: ModuleType) -> None:
    for cls, sync in ((module.Client, True), (module.AsyncClient, False)):
        original = cls.__init__
        if getattr(original, "_opensergo", False):
            continue

        def make_init(original: Any, sync: bool) -> Any:
            @functools.wraps(original)
            def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
                original(self, *args, **kwargs)
                # Imported here: opensergo.integrations.auto imports httpx (maybe for the first
                # time, while this very hook runs).
                from opensergo.integrations import auto, outbound

                guard: Any = outbound.GuardTransport if sync else outbound.AsyncGuardTransport
                routing: Any = auto.AutoRoutingTransport if sync else auto.AsyncAutoRoutingTransport
                transport = getattr(self, "_transport", None)
                if transport is not None and not isinstance(transport, guard):
                    self._transport = guard(routing(transport))

            __init__._opensergo = True  # type: ignore[attr-defined]
            return __init__

        cls.__init__ = make_init(original, sync)


def _patch_requests(module: ModuleType) -> None:
    session_cls = module.Session
    original = session_cls.__init__
    if getattr(original, "_opensergo", False):
        return

    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        from opensergo.integrations.auto import AutoRoutingAdapter
        from opensergo.integrations.outbound import GuardAdapter

        for prefix in ("http://", "https://"):
            self.mount(prefix, GuardAdapter(AutoRoutingAdapter()))

    __init__._opensergo = True  # type: ignore[attr-defined]
    session_cls.__init__ = __init__


def _patch_grpc_channels(module: ModuleType) -> None:
    for name in ("insecure_channel", "secure_channel"):
        original = getattr(module, name)
        if getattr(original, "_opensergo", False):
            continue

        def make(original: Any, secure: bool) -> Any:
            @functools.wraps(original)
            def channel(target: str, *args: Any, **kwargs: Any) -> Any:
                from opensergo.integrations.auto import directory, route_target
                from opensergo.integrations.grpc_client import RoutingChannel
                from opensergo.integrations.grpc_guard import GuardClientInterceptor

                service = route_target(target)
                routes = directory() if service is not None else None
                if routes is not None and service is not None:
                    credentials = (args[0] if args else kwargs.get("credentials")) if secure else None
                    rest = args[1:] if secure else args
                    options = (rest[0] if rest else kwargs.get("options")) or ()

                    def sub_channel(address: str) -> Any:  # unpatched: guarded once, at the top
                        if credentials is not None:
                            return original(address, credentials, options)
                        return original(address, options)

                    plain: Any = RoutingChannel(routes, service, channel_factory=sub_channel)
                else:
                    plain = original(target, *args, **kwargs)
                return module.intercept_channel(plain, GuardClientInterceptor(skip=_internal_method))

            channel._opensergo = True  # type: ignore[attr-defined]
            return channel

        setattr(module, name, make(original, name == "secure_channel"))


def _patch_grpc_aio_channels(module: ModuleType) -> None:
    """``grpc.aio.insecure_channel`` / ``secure_channel``: the guard (innermost) and, unless OTel
    already did, client spans (outermost) join the channel's interceptors, and a service-name
    target becomes an AioRoutingChannel. Routing and tracing are decided per call (the channel
    may be built before governance and tracing start), never for the SDK's own calls."""
    for name in ("insecure_channel", "secure_channel"):
        original = getattr(module, name)
        if getattr(original, "_opensergo", False):
            continue

        def make(original: Any) -> Any:
            signature = inspect.signature(original)

            @functools.wraps(original)
            def channel(*args: Any, **kwargs: Any) -> Any:
                from opensergo.integrations.auto import directory, route_target
                from opensergo.integrations.grpc_aio_client import AioRoutingChannel
                from opensergo.integrations.grpc_aio_guard import AioGuardClientInterceptor
                from opensergo.integrations.grpc_aio_tracing import (
                    AioTracingClientInterceptor,
                    has_otel_interceptor,
                )

                bound = signature.bind(*args, **kwargs)
                interceptors = list(bound.arguments.get("interceptors") or ())
                if not any(isinstance(i, AioGuardClientInterceptor) for i in interceptors):
                    interceptors.append(AioGuardClientInterceptor(skip=_internal_method))
                if not has_otel_interceptor(interceptors):  # built before tracing started
                    interceptors.insert(0, AioTracingClientInterceptor(skip=_internal_method))
                bound.arguments["interceptors"] = interceptors
                target = bound.arguments["target"]
                service = route_target(target)
                if service is None:
                    return original(*bound.args, **bound.kwargs)

                def sub_channel(address: str) -> Any:  # the same options and interceptors
                    bound.arguments["target"] = address
                    return original(*bound.args, **bound.kwargs)

                return AioRoutingChannel(
                    directory, service, channel_factory=sub_channel, target=target, skip=_internal_method
                )

            channel._opensergo = True  # type: ignore[attr-defined]
            return channel

        setattr(module, name, make(original))


def _patch_redis(module: ModuleType) -> None:
    """``redis.Redis`` / ``StrictRedis`` and ``redis.asyncio.Redis`` / ``StrictRedis`` become the
    governed clients of opensergo.cache. Both are patched once the ``redis`` package is complete
    (it imports ``redis.asyncio`` first, before ``redis.Redis`` exists)."""
    if getattr(module.Redis, "_opensergo", False):
        return
    from opensergo.cache.auto import async_class, sync_class

    for name in ("Redis", "StrictRedis"):
        setattr(module, name, sync_class())
    asyncio_module = sys.modules.get("redis.asyncio")
    if asyncio_module is not None:
        for name in ("Redis", "StrictRedis"):
            setattr(asyncio_module, name, async_class())


def _internal_method(method: str) -> bool:
    """The SDK's own calls (OTLP exports) are not the application's: not guarded."""
    return method.startswith(("/opentelemetry.proto.", "/io.opensergo.", "/opensergo."))


PATCHES: dict[str, Callable[[ModuleType], None]] = {
    "flask.app": _patch_flask,
    "starlette.applications": _patch_starlette,
    "fastapi.applications": _patch_fastapi,
    "django.core.wsgi": _patch_django_wsgi,
    "django.core.asgi": _patch_django_asgi,
    "grpc": _patch_grpc,
    "grpc.aio": _patch_grpc_aio,
    "uvicorn.server": _patch_uvicorn,
    "gunicorn.workers.base": _patch_gunicorn,
    "werkzeug.serving": _patch_werkzeug,
    "httpx": _patch_httpx,
    "requests": _patch_requests,
    "redis": _patch_redis,
}
"""Module name -> the patch applied once that module has been executed."""


# -- import hooks --------------------------------------------------------------------------------


class _PatchingLoader(importlib.abc.Loader):
    """Runs the real loader, then the patch."""

    def __init__(self, loader: Any, patch: Callable[[ModuleType], None]) -> None:
        self._loader = loader
        self._patch = patch

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        create = getattr(self._loader, "create_module", None)
        return create(spec) if create is not None else None

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        try:
            self._patch(module)
        except Exception:
            log.exception("opensergo-run: cannot instrument %s", module.__name__)

    def __getattr__(self, name: str) -> Any:  # get_resource_reader, is_package, ...
        return getattr(self._loader, name)


class _PatchFinder(importlib.abc.MetaPathFinder):
    def __init__(self, patches: dict[str, Callable[[ModuleType], None]]) -> None:
        self._patches = dict(patches)

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        patch = self._patches.get(fullname)
        if patch is None:
            return None
        for finder in sys.meta_path:
            if finder is self:
                continue
            find = getattr(finder, "find_spec", None)
            if find is None:
                continue
            spec: importlib.machinery.ModuleSpec | None = find(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        del self._patches[fullname]
        spec.loader = _PatchingLoader(spec.loader, patch)
        return spec


_installed = False


def bootstrap() -> bool:
    """Install the import hooks (and patch frameworks already imported). True when installed.

    Does nothing when governance is not configured or ``OPENSERGO_AUTO_INSTRUMENT=0``.
    """
    global _installed
    from opensergo.client.bootstrap import governance_enabled

    if os.environ.get(ENV_AUTO, "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    if not governance_enabled():
        return False
    with _lock:
        if _installed:
            return True
        pending = {}
        for name, patch in PATCHES.items():
            module = sys.modules.get(name)
            if module is not None:
                patch(module)
            else:
                pending[name] = patch
        sys.meta_path.insert(0, _PatchFinder(pending))
        _installed = True
    return True


def chain_sitecustomize(our_file: str) -> None:
    """Import the ``sitecustomize`` that ours shadows on sys.path, if any."""
    ours = Path(our_file).resolve().parent
    saved = sys.path[:]
    ours_module = sys.modules.pop("sitecustomize", None)
    try:
        sys.path[:] = [p for p in sys.path if _resolve(p) != ours]
        try:
            importlib.import_module("sitecustomize")
        except ImportError:
            pass
        except Exception as exc:  # pragma: no cover - the other module's problem
            print(f"opensergo-run: the original sitecustomize failed: {exc!r}", file=sys.stderr)
    finally:
        sys.path[:] = saved
        if ours_module is not None:
            sys.modules["sitecustomize"] = ours_module


def _resolve(entry: str) -> Path | None:
    try:
        return Path(entry or ".").resolve()
    except OSError:  # pragma: no cover
        return None


# -- the command ---------------------------------------------------------------------------------


def _with_labels(env: dict[str, str], labels: dict[str, str]) -> str:
    """The inline bootstrap JSON (from the inline config or the file) with ``labels`` added."""
    text = env.get("OPENSERGO_BOOTSTRAP_CONFIG", "").strip()
    if not text and env.get("OPENSERGO_BOOTSTRAP", "").strip():
        text = Path(env["OPENSERGO_BOOTSTRAP"]).read_text(encoding="utf-8")
    config = json.loads(text) if text else {}
    config["labels"] = {**(config.get("labels") or {}), **labels}
    return json.dumps(config)


def main(argv: Sequence[str] | None = None) -> int:  # noqa: C901 (complexity debt, see pyproject [tool.ruff.lint.mccabe])
    parser = argparse.ArgumentParser(
        prog="opensergo-run",
        description="Run a Python program with OpenSergo governance installed automatically.",
        epilog="example: opensergo-run --app foo -- python app.py",
    )
    parser.add_argument("--app", help="the app name (default: $OPENSERGO_APP or the bootstrap config)")
    parser.add_argument("--namespace", help="the namespace (default: $OPENSERGO_NAMESPACE or 'default')")
    parser.add_argument("--endpoint", help='the control plane, host:port (sets {"endpoint": ...} bootstrap)')
    parser.add_argument(
        "--label",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a selector label of the instances (repeatable), e.g. --label version=v2",
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command to run (after --)")
    args = parser.parse_args(argv)
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        parser.error("no command given; e.g. opensergo-run -- python app.py")
    env = dict(os.environ)
    if args.app:
        env["OPENSERGO_APP"] = args.app
    if args.namespace:
        env["OPENSERGO_NAMESPACE"] = args.namespace
    if args.endpoint:
        env["OPENSERGO_BOOTSTRAP_CONFIG"] = json.dumps({"endpoint": args.endpoint})
    if args.label:
        labels = {}
        for item in args.label:
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                parser.error(f"--label {item!r}: expected KEY=VALUE")
            labels[key.strip()] = value.strip()
        env["OPENSERGO_BOOTSTRAP_CONFIG"] = _with_labels(env, labels)
    from opensergo.client.bootstrap import governance_enabled

    if not governance_enabled(env):
        print(
            "opensergo-run: OPENSERGO_BOOTSTRAP_CONFIG / OPENSERGO_BOOTSTRAP not set;"
            " running without governance",
            file=sys.stderr,
        )
    paths = [str(SITE_DIR), *(p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p)]
    src = str(Path(__file__).resolve().parent.parent)  # opensergo importable even outside its venv
    if src not in paths:
        paths.append(src)
    env["PYTHONPATH"] = os.pathsep.join(paths)
    if command[0] in ("python", "python3"):
        command[0] = sys.executable  # the interpreter that has opensergo installed
    try:
        os.execvpe(command[0], command, env)
    except OSError as exc:
        print(f"opensergo-run: cannot run {command[0]!r}: {exc}", file=sys.stderr)
        return 127
    return 0  # pragma: no cover - exec does not return


if __name__ == "__main__":
    raise SystemExit(main())

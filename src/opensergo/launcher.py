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
  ``interceptors``.

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
import logging
import os
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = ["ENV_AUTO", "bootstrap", "chain_sitecustomize", "main"]

log = logging.getLogger("opensergo.launcher")

ENV_AUTO = "OPENSERGO_AUTO_INSTRUMENT"
SITE_DIR = Path(__file__).resolve().parent / "sitecustomize"

_lock = threading.Lock()


def _governance() -> None:
    """Turn governance on (once per process) at the first instrumented app or server."""
    from opensergo.governance.runtime import enable_from_env

    try:
        enable_from_env()
    except Exception:
        log.exception("opensergo-run: cannot start OpenSergo governance")


# -- patches ------------------------------------------------------------------------------------


def _patch_flask(module: ModuleType) -> None:
    flask_cls = module.Flask
    original = flask_cls.__init__
    if getattr(original, "_opensergo", False):
        return

    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        from opensergo.integrations.wsgi import instrument_flask

        instrument_flask(self)
        _governance()

    __init__._opensergo = True  # type: ignore[attr-defined]
    flask_cls.__init__ = __init__


def _asgi_init_patch(cls: type[Any]) -> None:
    original = cls.__dict__.get("__init__")
    if original is None or getattr(original, "_opensergo", False):
        return

    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        from starlette.middleware import Middleware

        from opensergo.integrations.asgi import OpenSergoMiddleware

        middleware = getattr(self, "user_middleware", None)
        if isinstance(middleware, list) and not any(m.cls is OpenSergoMiddleware for m in middleware):
            middleware.insert(0, Middleware(OpenSergoMiddleware))
        _governance()

    __init__._opensergo = True  # type: ignore[attr-defined]
    cls.__init__ = __init__


def _patch_starlette(module: ModuleType) -> None:
    _asgi_init_patch(module.Starlette)


def _patch_fastapi(module: ModuleType) -> None:
    _asgi_init_patch(module.FastAPI)


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
        _governance()
        return factory(*args, **kwargs)

    server._opensergo = True  # type: ignore[attr-defined]
    return server


def _patch_grpc(module: ModuleType) -> None:
    from opensergo.integrations.grpc_server import ServerInterceptor

    setattr(module, "server", _with_interceptor(module.server, ServerInterceptor, ServerInterceptor))  # noqa: B010


def _patch_grpc_aio(module: ModuleType) -> None:
    from opensergo.integrations.grpc_server import AioServerInterceptor

    factory = _with_interceptor(module.server, AioServerInterceptor, AioServerInterceptor)
    setattr(module, "server", factory)  # noqa: B010


PATCHES: dict[str, Callable[[ModuleType], None]] = {
    "flask.app": _patch_flask,
    "starlette.applications": _patch_starlette,
    "fastapi.applications": _patch_fastapi,
    "grpc": _patch_grpc,
    "grpc.aio": _patch_grpc_aio,
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="opensergo-run",
        description="Run a Python program with OpenSergo governance installed automatically.",
        epilog="example: opensergo-run --app foo -- python app.py",
    )
    parser.add_argument("--app", help="the app name (default: $OPENSERGO_APP or the bootstrap config)")
    parser.add_argument("--namespace", help="the namespace (default: $OPENSERGO_NAMESPACE or 'default')")
    parser.add_argument("--endpoint", help='the control plane, host:port (sets {"endpoint": ...} bootstrap)')
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
        import json

        env["OPENSERGO_BOOTSTRAP_CONFIG"] = json.dumps({"endpoint": args.endpoint})
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

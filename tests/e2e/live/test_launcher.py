"""``opensergo-run`` patches FastAPI/Starlette apps and gRPC servers in an unmodified program."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

PROGRAM = """
import asyncio, json
from concurrent import futures
import grpc, grpc.aio
from fastapi import FastAPI
from starlette.applications import Starlette
from opensergo.governance import load_rules
from opensergo.governance.runtime import current
from opensergo.integrations.asgi import OpenSergoMiddleware

# An unguarded aio client, taken before tracing wraps the function again: the launcher guards
# grpc.aio channels too, and the rule below would block the second call in the client.
unguarded_channel = getattr(grpc.aio.insecure_channel, "__wrapped__", grpc.aio.insecure_channel)

# One call a minute on /t.S/M, in the process-wide engine the interceptors guard with.
load_rules('''
apiVersion: fault-tolerance.opensergo.io/v1alpha1
kind: RateLimitStrategy
metadata: {name: one-a-minute}
spec: {threshold: 1, statDuration: 60s}
---
apiVersion: fault-tolerance.opensergo.io/v1alpha1
kind: FaultToleranceRule
metadata: {name: rule}
spec:
  targets: [{targetResourceName: /t.S/M}]
  strategies: [{name: one-a-minute, kind: RateLimitStrategy}]
''', app=None)


async def echo(request, context):
    return request


async def aio_codes():
    # The aio server keeps its interceptors inside cygrpc: call it twice and read the status codes.
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("t.S", {"M": grpc.unary_unary_rpc_method_handler(echo)}),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    codes = []
    async with unguarded_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary("/t.S/M")
        for _ in range(2):
            try:
                await call(b"x", timeout=10)
                codes.append("OK")
            except grpc.aio.AioRpcError as error:
                codes.append(error.code().name)
    await server.stop(None)
    return codes


fast, star = FastAPI(), Starlette()
server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
print(json.dumps({
    "fastapi": [m.cls is OpenSergoMiddleware for m in fast.user_middleware],
    "starlette": [m.cls is OpenSergoMiddleware for m in star.user_middleware],
    "grpc": [type(i).__name__ for i in getattr(server._state.interceptor_pipeline, "interceptors", ())],
    "grpc.aio": asyncio.run(aio_codes()),
    "governance": current() is not None and current().client.app,
}))
server.stop(None)
"""


def run(*launcher_args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "opensergo.launcher", *launcher_args, "--", "python", "-c", PROGRAM],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src"), **(env or {})},
    )


def test_launcher_instruments_asgi_apps_and_grpc_servers() -> None:
    done = run("--app", "auto-app", "--endpoint", f"127.0.0.1:{free_port()}")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {
        "fastapi": [True],
        "starlette": [True],
        "grpc": ["ServerInterceptor"],
        "grpc.aio": ["OK", "RESOURCE_EXHAUSTED"],  # the aio server got the interceptor too
        "governance": "auto-app",
    }


def test_launcher_without_bootstrap_changes_nothing() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENSERGO_")}
    done = subprocess.run(
        [sys.executable, "-m", "opensergo.launcher", "--", "python", "-c", PROGRAM],
        capture_output=True,
        text=True,
        timeout=30,
        env={**env, "PYTHONPATH": str(ROOT / "src")},
    )
    assert done.returncode == 0, done.stderr
    assert "running without governance" in done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    unpatched = {"fastapi": [], "starlette": [], "grpc": [], "grpc.aio": ["OK", "OK"], "governance": False}
    assert result == unpatched


def test_auto_instrument_0_turns_the_hooks_off() -> None:
    done = run(
        "--app", "auto-app", "--endpoint", f"127.0.0.1:{free_port()}", env={"OPENSERGO_AUTO_INSTRUMENT": "0"}
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    unpatched = {"fastapi": [], "starlette": [], "grpc": [], "grpc.aio": ["OK", "OK"], "governance": False}
    assert result == unpatched


def test_an_existing_sitecustomize_still_runs(tmp_path: Path) -> None:
    """Ours shadows the program's own ``sitecustomize`` on PYTHONPATH, and then imports it."""
    theirs = tmp_path / "site"
    theirs.mkdir()
    (theirs / "sitecustomize.py").write_text("import builtins, os\nbuiltins.THEIRS_RAN_IN = os.getpid()\n")
    program = (
        "import builtins, json, os, sys\n"
        "from fastapi import FastAPI\n"
        "print(json.dumps({'theirs': getattr(builtins, 'THEIRS_RAN_IN', None) == os.getpid(),"
        " 'ours': sys.modules['sitecustomize'].__file__, 'patched': len(FastAPI().user_middleware)}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "opensergo.launcher", "--app", "auto-app", "--endpoint",
         f"127.0.0.1:{free_port()}", "--", "python", "-c", program],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONPATH": f"{theirs}{os.pathsep}{ROOT / 'src'}"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    # Theirs ran in the program's own process, and ours is the one installed, with its hooks.
    assert result["theirs"] is True
    assert (
        Path(result["ours"]).parent.name == "sitecustomize" and Path(result["ours"]).parts[-3] == "opensergo"
    )
    assert result["patched"] == 1

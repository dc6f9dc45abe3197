"""``opensergo-run`` patches FastAPI/Starlette apps and gRPC servers in an unmodified program."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import ROOT, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

PROGRAM = """
import json
from concurrent import futures
import grpc, grpc.aio
from fastapi import FastAPI
from starlette.applications import Starlette
from opensergo.governance.runtime import current
from opensergo.integrations.asgi import OpenSergoMiddleware
from opensergo.integrations.grpc_server import AioServerInterceptor, ServerInterceptor

fast, star = FastAPI(), Starlette()
server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
aio = grpc.aio.server()
print(json.dumps({
    "fastapi": [m.cls is OpenSergoMiddleware for m in fast.user_middleware],
    "starlette": [m.cls is OpenSergoMiddleware for m in star.user_middleware],
    "grpc": [type(i).__name__ for i in getattr(server._state.interceptor_pipeline, "interceptors", ())],
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
    assert result == {"fastapi": [], "starlette": [], "grpc": [], "governance": False}

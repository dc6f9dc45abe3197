"""A FastAPI service governed live by OpenSergo fault-tolerance rules.

    OPENSERGO_BOOTSTRAP_CONFIG='{"endpoint": "127.0.0.1:10246"}' python examples/fastapi_app.py --port 8001
    opensergo apply -f examples/rules/rate-limit.yaml   # (with app: fastapi-demo)

Governance is on when OPENSERGO_BOOTSTRAP_CONFIG / OPENSERGO_BOOTSTRAP is set (off otherwise):
:func:`~opensergo.governance.runtime.enable_from_env` subscribes to the app's rules and keeps the
engine current; :class:`~opensergo.integrations.asgi.OpenSergoMiddleware` guards every request
as ``METHOD:/route/template`` (``GET:/hello``, ``GET:/users/{user_id}``). Also runs under
``uvicorn examples.fastapi_app:app`` (governance then starts with the app, without advertising
a listening address). ``GET /opensergo/status`` shows what the engine holds.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from opensergo import enable_from_env
from opensergo.client import ServiceInfo
from opensergo.governance import current
from opensergo.integrations.asgi import OpenSergoMiddleware

APP_NAME = os.environ.get("OPENSERGO_APP", "fastapi-demo")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    enable_from_env(app=APP_NAME)  # no-op when main() enabled it already, or when not configured
    yield


app = FastAPI(title="OpenSergo FastAPI demo", lifespan=lifespan)
app.add_middleware(OpenSergoMiddleware)


@app.get("/hello")
async def hello() -> dict[str, str]:
    return {"message": f"hello from {APP_NAME}"}


@app.get("/users/{user_id}")
async def user(user_id: int) -> dict[str, Any]:
    return {"id": user_id, "name": f"user-{user_id}"}


@app.get("/flaky")
async def flaky(fail: bool = False) -> JSONResponse:
    """Answers 500 when ``?fail=true``: something for a circuit breaker to count."""
    if fail:
        return JSONResponse({"error": "failed on purpose"}, status_code=500)
    return JSONResponse({"ok": True})


@app.get("/opensergo/status")
async def status() -> dict[str, Any]:
    governance = current()
    return governance.status() if governance is not None else {"governance": "off"}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    enable_from_env(
        app=APP_NAME,
        service_metadata=[ServiceInfo(protocols=["http"], listening_addresses=[f"{args.host}:{args.port}"])],
    )
    import uvicorn

    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()

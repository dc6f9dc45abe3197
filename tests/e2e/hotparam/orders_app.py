"""Run as a program: a FastAPI service on uvicorn, governed by the control plane through the
bootstrap environment; ``GET /orders?user_id=...`` is what the hot-parameter rule limits."""

from __future__ import annotations

import argparse
import os
from typing import Any

import uvicorn
from fastapi import FastAPI

from opensergo import enable_from_env
from opensergo.governance import current
from opensergo.integrations.asgi import OpenSergoMiddleware

APP_NAME = os.environ.get("OPENSERGO_APP", "orders")

app = FastAPI()
app.add_middleware(OpenSergoMiddleware)


@app.get("/orders")
async def orders(user_id: str | None = None) -> dict[str, Any]:
    return {"user": user_id, "orders": []}


@app.get("/opensergo/status")
async def status() -> dict[str, Any]:
    governance = current()
    return governance.status() if governance is not None else {"governance": "off"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    enable_from_env(app=APP_NAME)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()

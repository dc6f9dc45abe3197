"""An ordinary Flask service (no OpenSergo import): says which version answered and what it
received. ``APP_VERSION`` is the deployment's own setting."""

from __future__ import annotations

import os
import sys

from flask import Flask, request

app = Flask(__name__)


@app.get("/hello/<int:user_id>")
def hello(user_id: int) -> dict[str, object]:
    """Greets a user."""
    return {
        "version": os.environ.get("APP_VERSION", "?"),
        "pid": os.getpid(),
        "user": user_id,
        "lane": request.headers.get("x-opensergo-traffic"),
        "baggage": request.headers.get("baggage"),
        "traceparent": request.headers.get("traceparent"),
    }


@app.post("/orders")
def create_order() -> tuple[dict[str, str], int]:
    return {"status": "created"}, 201


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(sys.argv[1]), threaded=True)

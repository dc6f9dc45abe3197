"""A Flask service governed live by OpenSergo fault-tolerance rules.

    OPENSERGO_BOOTSTRAP_CONFIG='{"endpoint": "127.0.0.1:10246"}' python examples/flask_app.py --port 8002

Governance is on when OPENSERGO_BOOTSTRAP_CONFIG / OPENSERGO_BOOTSTRAP is set (off otherwise):
:func:`~opensergo.governance.runtime.enable_from_env` subscribes to the app's rules and keeps the
engine current; :func:`~opensergo.integrations.wsgi.instrument_flask` guards every request as
``METHOD:<URL rule>`` (``GET:/hello``, ``GET:/users/<user_id>``). ``--plain`` skips both (for the
``opensergo-run`` launcher, which installs them without code changes). ``GET /opensergo/status``
shows what the engine holds.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

from flask import Flask, jsonify

APP_NAME = os.environ.get("OPENSERGO_APP", "flask-demo")
PLAIN = "--plain" in sys.argv

app = Flask(__name__)


@app.get("/hello")
def hello() -> dict[str, str]:
    return {"message": f"hello from {APP_NAME}"}


@app.get("/users/<int:user_id>")
def user(user_id: int) -> dict[str, Any]:
    return {"id": user_id, "name": f"user-{user_id}"}


@app.get("/flaky")
def flaky() -> Any:
    from flask import request

    if request.args.get("fail") in ("1", "true"):
        return jsonify(error="failed on purpose"), 500
    return {"ok": True}


@app.get("/opensergo/status")
def status() -> dict[str, Any]:
    from opensergo.governance import current

    governance = current()
    return governance.status() if governance is not None else {"governance": "off"}


if not PLAIN:
    from opensergo.integrations.wsgi import instrument_flask

    instrument_flask(app)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8002)
    parser.add_argument("--plain", action="store_true", help="no OpenSergo code (for opensergo-run)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    if not args.plain:
        from opensergo import enable_from_env
        from opensergo.client import ServiceInfo

        address = f"{args.host}:{args.port}"
        enable_from_env(
            app=APP_NAME, service_metadata=[ServiceInfo(protocols=["http"], listening_addresses=[address])]
        )
    app.run(host=args.host, port=args.port, threaded=True)


if __name__ == "__main__":
    main()

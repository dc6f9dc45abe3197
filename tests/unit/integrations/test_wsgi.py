"""The WSGI middleware with a real Flask app (Flask test client) and a bare WSGI app."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask, Response, abort, stream_with_context
from werkzeug.test import Client

from opensergo.governance import Engine, FallbackResponse
from opensergo.governance.routing import lanes
from opensergo.integrations.wsgi import (
    FlaskResourceNamer,
    OpenSergoWSGIMiddleware,
    instrument_flask,
    strip_converters,
)

from .conftest import apply, concurrency, error_breaker, fallback, limit, rule

pytestmark = pytest.mark.unit


def flask_app(engine: Engine, **options: Any) -> Flask:
    app = Flask("demo")

    @app.get("/hello")
    def hello() -> dict[str, str]:
        return {"hello": "world"}

    @app.get("/users/<int:user_id>")
    def user(user_id: int) -> dict[str, int]:
        return {"id": user_id}

    @app.route("/files/<path:name>", methods=["GET", "PUT"])
    def files(name: str) -> str:
        return name

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("boom")

    @app.get("/status/<int:code>")
    def status(code: int) -> Any:
        if code == 404:
            abort(404)
        return Response("x", status=code)

    @app.get("/lane")
    def lane() -> dict[str, str | None]:
        return {"lane": lanes.current_name()}

    @app.get("/stream")
    def stream() -> Response:
        def body() -> Iterator[str]:
            yield "lane="
            yield str(lanes.current_name())

        return Response(stream_with_context(body()))

    instrument_flask(app, engine=engine, **options)
    return app


def get(c: Any, path: str, **kwargs: Any) -> Any:
    """GET, read the body and close the response, as a WSGI server does (the test client does
    not close unbuffered responses by itself)."""
    response = c.get(path, **kwargs)
    response.get_data()
    response.close()
    return response


def test_strip_converters() -> None:
    assert strip_converters("/users/<int:id>/<name>") == "/users/<id>/<name>"
    assert strip_converters("/f/<path:p>") == "/f/<p>"
    assert strip_converters("/plain") == "/plain"


def test_flask_url_rule_is_the_resource(engine: Engine) -> None:
    limit(engine, "GET:/users/<user_id>", 1)
    c = flask_app(engine).test_client()
    assert c.get("/users/1").status_code == 200
    assert c.get("/users/2").status_code == 429  # another id, same rule
    assert c.get("/hello").status_code == 200
    assert engine.block_counts() == {("GET:/users/<user_id>", "r", "rl"): 1}


def test_flask_resource_namer_falls_back_to_the_raw_path(engine: Engine) -> None:
    app = flask_app(engine)
    namer = FlaskResourceNamer(app)

    def environ(path: str, method: str = "GET") -> dict[str, Any]:
        return {"REQUEST_METHOD": method, "PATH_INFO": path, "SERVER_NAME": "x", "SERVER_PORT": "80",
                "wsgi.url_scheme": "http", "HTTP_HOST": "x"}  # fmt: skip

    assert namer(environ("/files/a/b.txt", "PUT")) == "PUT:/files/<name>"
    assert namer(environ("/nowhere")) == "GET:/nowhere"  # 404
    assert namer(environ("/hello", "DELETE")) == "DELETE:/hello"  # 405
    assert namer(environ("/users/x")) == "GET:/users/x"  # converter refuses


def test_blocked_request_gets_the_rules_fallback_action(engine: Engine) -> None:
    action = fallback(
        "busy", 503, '{"error": "busy"}', [("Content-Type", "application/json"), ("X-Reason", "busy")]
    )
    limit(engine, "GET:/hello", 1, action="busy", extra=action)
    c = flask_app(engine).test_client()
    assert c.get("/hello").status_code == 200
    blocked = c.get("/hello")
    assert blocked.status_code == 503
    assert blocked.get_json() == {"error": "busy"}
    assert blocked.headers["X-Reason"] == "busy"
    assert blocked.headers["Content-Length"] == str(len(blocked.data))


def test_default_block_response_and_its_configuration(engine: Engine) -> None:
    limit(engine, "GET:/hello", 0)
    blocked = flask_app(engine).test_client().get("/hello")
    assert (blocked.status_code, blocked.text) == (429, "Blocked by OpenSergo (flow limiting)")
    assert blocked.status == "429 Too Many Requests"
    custom = FallbackResponse(503, "later", (("Retry-After", "2"),))
    blocked = flask_app(engine, default_response=custom).test_client().get("/hello")
    assert (blocked.status_code, blocked.text, blocked.headers["Retry-After"]) == (503, "later", "2")
    handled = (
        flask_app(engine, block_handler=lambda e: FallbackResponse(299, e.kind)).test_client().get("/hello")
    )
    assert (handled.status_code, handled.text) == (299, "RateLimitStrategy")


def test_blocks_are_logged_at_debug(engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    limit(engine, "GET:/hello", 0)
    with caplog.at_level(logging.DEBUG, logger="opensergo.governance"):
        flask_app(engine).test_client().get("/hello")
    assert any("GET:/hello" in r.getMessage() for r in caplog.records)


def test_500_responses_count_as_errors(engine: Engine) -> None:
    apply(
        engine,
        error_breaker("cb", min_requests=2),
        rule("r", ["GET:/boom"], [("cb", "CircuitBreakerStrategy")]),
    )
    c = flask_app(engine).test_client()
    assert get(c, "/boom").status_code == 500  # Flask turns the exception into a 500
    assert get(c, "/boom").status_code == 500
    assert get(c, "/boom").status_code == 429
    breaker = engine.breaker("GET:/boom", "cb")
    assert breaker is not None and breaker.current_state.name == "OPEN"


def test_propagated_exceptions_count_as_errors(engine: Engine) -> None:
    apply(
        engine,
        error_breaker("cb", min_requests=2),
        rule("r", ["GET:/boom"], [("cb", "CircuitBreakerStrategy")]),
    )
    app = flask_app(engine)
    app.testing = True  # exceptions propagate through the middleware
    c = app.test_client()
    for _ in range(2):
        with pytest.raises(RuntimeError):
            c.get("/boom")
    assert c.get("/boom").status_code == 429


def test_4xx_does_not_count(engine: Engine) -> None:
    apply(
        engine,
        error_breaker("cb", min_requests=2),
        rule("r", ["GET:/status/<code>"], [("cb", "CircuitBreakerStrategy")]),
    )
    c = flask_app(engine).test_client()
    for _ in range(5):
        assert get(c, "/status/404").status_code == 404
    assert get(c, "/status/200").status_code == 200
    assert get(c, "/status/503").status_code == 503
    assert get(c, "/status/503").status_code == 503
    assert get(c, "/status/503").status_code == 503
    assert get(c, "/status/503").status_code == 503  # 4/10 errors: still closed
    assert get(c, "/status/503").status_code == 503  # 5/11 < 50%
    assert get(c, "/status/503").status_code == 503  # 6/12 = 50%: not above the ratio
    assert get(c, "/status/503").status_code == 503  # 7/13 > 50%: trips
    assert get(c, "/status/200").status_code == 429


def test_streamed_body_holds_the_slot_until_closed(engine: Engine) -> None:
    apply(engine, concurrency("one", 1), rule("r", ["GET:/stream"], [("one", "ConcurrencyLimitStrategy")]))
    c = flask_app(engine).test_client()
    first = c.get("/stream", buffered=False, headers={"x-opensergo-traffic": "gray"})
    assert engine.in_flight("GET:/stream") == 1
    assert c.get("/stream").status_code == 429
    assert b"".join(first.response) == b"lane=gray"  # the lane is current while the body is produced
    first.close()
    assert engine.in_flight("GET:/stream") == 0
    assert c.get("/stream").status_code == 200


def test_request_enters_its_lane(engine: Engine) -> None:
    c = flask_app(engine).test_client()
    assert c.get("/lane", headers={"x-opensergo-traffic": "gray"}).get_json() == {"lane": "gray"}
    assert c.get("/lane", headers={"baggage": "x-opensergo-traffic=blue"}).get_json() == {"lane": "blue"}
    assert c.get("/lane").get_json() == {"lane": None}
    assert lanes.current() is None
    assert flask_app(engine, lanes=False).test_client().get(
        "/lane", headers={"x-opensergo-traffic": "gray"}
    ).get_json() == {"lane": None}


def test_instrument_flask_is_idempotent(engine: Engine) -> None:
    app = flask_app(engine)
    first = app.wsgi_app
    assert instrument_flask(app) is first
    assert isinstance(first, OpenSergoWSGIMiddleware)


def test_bare_wsgi_app_uses_the_raw_path(engine: Engine) -> None:
    closed: list[bool] = []

    class Body:
        def __iter__(self) -> Iterator[bytes]:
            yield b"ok"

        def close(self) -> None:
            closed.append(True)

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        if environ["PATH_INFO"] == "/err":
            start_response("502 Bad Gateway", [("Content-Type", "text/plain")])
            return [b"bad"]
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Body()

    limit(engine, "GET:/items/1", 1)
    c = Client(OpenSergoWSGIMiddleware(app, engine=engine))
    response = get(c, "/items/1")
    assert (response.status_code, response.data, closed) == (200, b"ok", [True])
    assert get(c, "/items/1").status_code == 429
    assert get(c, "/items/2").status_code == 200

    apply(
        engine,
        error_breaker("cb", min_requests=2),
        rule("r2", ["GET:/err"], [("cb", "CircuitBreakerStrategy")]),
    )
    assert get(c, "/err").status_code == 502
    assert get(c, "/err").status_code == 502
    assert get(c, "/err").status_code == 429


def test_error_in_the_body_counts(engine: Engine) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [])
        yield b"part"
        raise RuntimeError("broken stream")

    apply(
        engine, error_breaker("cb", min_requests=1), rule("r", ["GET:/"], [("cb", "CircuitBreakerStrategy")])
    )
    c = Client(OpenSergoWSGIMiddleware(app, engine=engine))
    with pytest.raises(RuntimeError, match="broken stream"):
        get(c, "/")
    assert get(c, "/").status_code == 429


def test_nested_middlewares_guard_once(engine: Engine) -> None:
    limit(engine, "GET:/hello", 1)
    app = flask_app(engine)
    c = Client(OpenSergoWSGIMiddleware(app, engine=engine))
    assert get(c, "/hello").status_code == 200
    assert get(c, "/hello").status_code == 429

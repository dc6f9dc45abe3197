"""A Django project served by a real WSGI server (werkzeug's, threaded), governed by OpenSergo's
WSGI middleware with the rules of a YAML file (for tests/integration/test_django.py).

Usage: django_app.py PORT RULES_FILE [STATUS:BODY]

The app is also mounted under ``/mounted`` (SCRIPT_NAME), as a WSGI dispatcher would mount it.
``STATUS:BODY`` is the default blocked response. ``GET /_blocks`` answers the engine's block
counts. Prints ``serving`` once the socket listens.
"""

from __future__ import annotations

import sys
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import include, path, re_path
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.serving import make_server

from opensergo.governance import Engine, FallbackResponse, load_rules
from opensergo.integrations.django import governed_wsgi_application

APP = "django-demo"
engine = Engine()


def ok(request: HttpRequest, **kwargs: Any) -> HttpResponse:
    assert request.resolver_match is not None
    return JsonResponse({"view": request.resolver_match.view_name, **kwargs})


def blocks(request: HttpRequest) -> HttpResponse:
    counts = [[*key, count] for key, count in sorted(engine.block_counts().items())]
    return JsonResponse({"blocks": counts})


# This module is the project's ROOT_URLCONF.
urlpatterns = [
    path("", ok, name="index"),
    path("_blocks", blocks, name="blocks"),
    path("health", ok, name="health"),
    path("users/<int:user_id>", ok, name="user"),
    path("api/", include([path("v1/", include([path("items/<slug:slug>/", ok, name="item")]))])),
    re_path(r"^articles/(?P<year>[0-9]{4})/$", ok, name="article"),
    re_path(
        r"^legacy/",
        include(
            [
                path("orders/<int:order_id>", ok, name="order"),
                re_path(r"^pages/(?P<name>\w+)\Z", ok, name="page"),
            ]
        ),
    ),
]


def main() -> None:
    port, rules, *rest = sys.argv[1:]
    settings.configure(
        DEBUG=False,
        SECRET_KEY="opensergo-tests",
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=[],
        MIDDLEWARE=[],
        DATABASES={},
    )
    result = load_rules(rules, app=APP, engine=engine)
    if result.problems:
        raise SystemExit(f"rules: {result.problems}")
    options: dict[str, Any] = {}
    if rest:
        status, _, body = rest[0].partition(":")
        options["default_response"] = FallbackResponse(int(status), body)
    app = governed_wsgi_application(engine=engine, **options)
    server = make_server("127.0.0.1", int(port), DispatcherMiddleware(app, {"/mounted": app}), threaded=True)
    print("serving", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()

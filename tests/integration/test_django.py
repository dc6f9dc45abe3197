"""The WSGI middleware in front of a real Django project (configured in-process, driven through
werkzeug's test client like the Flask tests): resources named by Django URL routes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import include, path, re_path
from werkzeug.test import Client

from opensergo.governance import Engine, ManualClock, load_rules
from opensergo.integrations.django import DjangoResourceNamer, governed_wsgi_application, route_template
from opensergo.integrations.wsgi import OpenSergoWSGIMiddleware

pytestmark = pytest.mark.integration

APP = "django-demo"
_HEAD = "apiVersion: fault-tolerance.opensergo.io/v1alpha1\n"
_META = f"metadata: {{namespace: default, labels: {{app: {APP}}}, name: "


def ok(request: HttpRequest, **kwargs: Any) -> HttpResponse:
    return JsonResponse({"view": request.resolver_match.view_name, **kwargs})


# This module is the project's ROOT_URLCONF.
urlpatterns = [
    path("", ok, name="index"),
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


@pytest.fixture(scope="module", autouse=True)
def _django_project() -> None:
    if not settings.configured:
        settings.configure(
            DEBUG=False,
            SECRET_KEY="opensergo-tests",
            ALLOWED_HOSTS=["*"],
            ROOT_URLCONF=__name__,
            INSTALLED_APPS=[],
            MIDDLEWARE=[],
            DATABASES={},
        )
    assert __name__ == settings.ROOT_URLCONF, "Django was configured elsewhere in this process"


@pytest.fixture
def engine() -> Iterator[Engine]:
    eng = Engine(clock=ManualClock(start_ms=1_000))  # one rate-limit window for the whole test
    yield eng
    eng.close()


def rate_limit(resource: str, threshold: int, *, action: str = "") -> list[str]:
    """Rule YAML: a rate limit of ``threshold`` per second on ``resource`` (with a 503 fallback
    action of body ``action`` if given)."""
    docs = [
        f"{_HEAD}kind: RateLimitStrategy\n{_META}rl}}\n"
        f"spec: {{metricType: RequestAmount, limitMode: Local, threshold: {threshold}, statDuration: 1s}}\n",
        f"{_HEAD}kind: FaultToleranceRule\n{_META}r}}\nspec:\n"
        f"  targets: [{{targetResourceName: '{resource}'}}]\n"
        "  strategies: [{name: rl, kind: RateLimitStrategy}]\n",
    ]
    if action:
        docs[1] += "  fallbackAction: {name: busy, kind: HttpRequestFallbackAction}\n"
        docs.append(
            f"{_HEAD}kind: HttpRequestFallbackAction\n{_META}busy}}\n"
            "spec:\n  behavior: ReturnProvidedResponse\n  behaviorDesc:\n"
            f"    responseStatusCode: 503\n    responseContentBody: '{action}'\n"
            "    responseAdditionalHeaders: [{key: Content-Type, value: application/json}]\n"
        )
    return docs


def apply(engine: Engine, resource: str, threshold: int, *, action: str = "") -> None:
    result = load_rules("---\n".join(rate_limit(resource, threshold, action=action)), app=APP, engine=engine)
    assert not result.problems, result.problems


def get(c: Client, url: str, **kwargs: Any) -> Any:
    """GET, read the body and close the response, as a WSGI server does."""
    response = c.get(url, **kwargs)
    response.get_data()
    response.close()
    return response


def environ(path_info: str, method: str = "GET", script_name: str = "") -> dict[str, Any]:
    return {"REQUEST_METHOD": method, "PATH_INFO": path_info, "SCRIPT_NAME": script_name,
            "SERVER_NAME": "x", "SERVER_PORT": "80", "wsgi.url_scheme": "http", "HTTP_HOST": "x"}  # fmt: skip


def test_route_template() -> None:
    assert route_template("users/<int:id>") == "/users/<int:id>"
    assert route_template("") == "/"
    assert route_template("^articles/(?P<year>[0-9]{4})/$") == "/articles/(?P<year>[0-9]{4})/"
    assert route_template(r"^pages/(?P<name>\w+)\Z") == r"/pages/(?P<name>\w+)"
    assert route_template(r"^price/\$") == r"/price/\$"  # an escaped dollar is not an anchor
    assert route_template("api/x/$") == "/api/x/"  # a re_path inside a path include()


def test_namer_names_requests_by_their_route() -> None:
    namer = DjangoResourceNamer()
    assert namer(environ("/")) == "GET:/"
    assert namer(environ("/users/42")) == "GET:/users/<user_id>"
    assert namer(environ("/users/42", "DELETE")) == "DELETE:/users/<user_id>"  # Django ignores the method
    assert namer(environ("/api/v1/items/blue-widget/")) == "GET:/api/v1/items/<slug>/"
    assert namer(environ("/articles/2024/")) == "GET:/articles/(?P<year>[0-9]{4})/"
    assert namer(environ("/legacy/orders/7")) == "GET:/legacy/orders/<order_id>"
    assert namer(environ("/legacy/pages/about")) == r"GET:/legacy/pages/(?P<name>\w+)"
    # PATH_INFO as a WSGI server gives it (UTF-8 bytes as latin-1), decoded the way Django does.
    assert namer(environ("/legacy/pages/caf\u00c3\u00a9")) == r"GET:/legacy/pages/(?P<name>\w+)"


def test_namer_falls_back_to_the_raw_path() -> None:
    namer = DjangoResourceNamer()
    assert namer(environ("/nowhere")) == "GET:/nowhere"
    assert namer(environ("/users/abc")) == "GET:/users/abc"  # the converter refuses
    assert namer(environ("/articles/24/")) == "GET:/articles/24/"
    assert namer(environ("/users/42/")) == "GET:/users/42/"  # no APPEND_SLASH guessing
    assert namer(environ("/caf\u00c3\u00a9")) == "GET:/caf\u00c3\u00a9"  # raw PATH_INFO, as WSGI gives it


def test_namer_resolves_path_info_under_a_script_name() -> None:
    namer = DjangoResourceNamer()
    mounted = environ("/users/7", "POST", script_name="/mounted")
    assert namer(mounted) == "POST:/users/<user_id>"
    assert namer(environ("", script_name="/mounted")) == "GET:/"  # the mount point itself
    assert namer(environ("/mounted/users/7", script_name="/mounted")) == "GET:/mounted/users/7"  # 404


def test_namer_with_another_urlconf() -> None:
    import types

    other = types.ModuleType("other_urls")
    other.urlpatterns = [path("shop/<int:pk>", ok)]  # type: ignore[attr-defined]
    namer = DjangoResourceNamer(urlconf=other)
    assert namer(environ("/shop/3")) == "GET:/shop/<pk>"
    assert namer(environ("/users/3")) == "GET:/users/3"


def test_rate_limit_on_a_route_spans_its_ids(engine: Engine) -> None:
    apply(engine, "GET:/users/<user_id>", 3)
    c = Client(governed_wsgi_application(engine=engine))
    assert [get(c, f"/users/{i}").status_code for i in (1, 2, 3)] == [200, 200, 200]
    blocked = get(c, "/users/4")
    assert (blocked.status_code, blocked.text) == (429, "Blocked by OpenSergo (flow limiting)")
    assert get(c, "/users/1").status_code == 429
    # under a SCRIPT_NAME prefix: the same route, the same limit
    assert get(c, "/users/5", base_url="http://localhost/mounted").status_code == 429
    for _ in range(5):  # unrelated routes are not limited
        assert get(c, "/health").status_code == 200
        assert get(c, "/api/v1/items/x/").status_code == 200
    posted = c.post("/users/1")  # another method, another resource
    assert posted.status_code == 200
    posted.close()
    assert engine.block_counts() == {("GET:/users/<user_id>", "r", "rl"): 3}


def test_blocked_request_gets_the_fallback_action(engine: Engine) -> None:
    apply(engine, r"GET:/legacy/pages/(?P<name>\w+)", 1, action='{"error": "busy"}')
    c = Client(governed_wsgi_application(engine=engine))
    first = get(c, "/legacy/pages/about")
    assert (first.status_code, first.get_json()) == (200, {"view": "page", "name": "about"})
    blocked = get(c, "/legacy/pages/contact")
    assert (blocked.status_code, blocked.get_json()) == (503, {"error": "busy"})
    assert blocked.headers["Content-Type"] == "application/json"


def test_unmatched_paths_are_named_by_their_raw_path(engine: Engine) -> None:
    apply(engine, "GET:/nowhere", 1)
    c = Client(governed_wsgi_application(engine=engine))
    assert get(c, "/nowhere").status_code == 404  # Django's own 404
    assert get(c, "/nowhere").status_code == 429
    assert get(c, "/somewhere-else").status_code == 404
    assert get(c, "/users/1").status_code == 200


def test_governed_wsgi_application_forwards_options(engine: Engine) -> None:
    from opensergo.governance import FallbackResponse

    apply(engine, "GET:/health", 0)
    app = governed_wsgi_application(engine=engine, default_response=FallbackResponse(503, "later"))
    assert isinstance(app, OpenSergoWSGIMiddleware)
    assert isinstance(app.resource_name, DjangoResourceNamer)
    blocked = get(Client(app), "/health")
    assert (blocked.status_code, blocked.text) == (503, "later")
    raw = governed_wsgi_application(engine=engine, resource=lambda e: "GET:/fixed")
    assert raw.resource_name(environ("/health")) == "GET:/fixed"


def test_package_imports_without_django() -> None:
    code = textwrap.dedent(
        """
        import sys
        sys.modules["django"] = None  # import django -> ImportError
        import opensergo, opensergo.integrations.wsgi, opensergo.integrations.django as dj
        try:
            dj.governed_wsgi_application()
        except ImportError:
            print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "ok", out.stderr

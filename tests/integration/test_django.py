"""The WSGI middleware in front of a real Django project: resources named by Django URL routes.

The namer is checked in-process (Django configured with the URLconf below); requests go to the
same project served by a real WSGI server in its own process (tests/integration/apps/django_app.py).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.conf import settings
from django.urls import path

from opensergo.governance import Engine, ManualClock
from opensergo.integrations.django import DjangoResourceNamer, governed_wsgi_application, route_template
from opensergo.integrations.wsgi import OpenSergoWSGIMiddleware
from tests.helpers import ROOT, free_port, spawn_python, stop_processes, wait_until
from tests.integration.apps import django_app

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

APP = "django-demo"
DJANGO_APP = ROOT / "tests" / "integration" / "apps" / "django_app.py"
_HEAD = "apiVersion: fault-tolerance.opensergo.io/v1alpha1\n"
_META = f"metadata: {{namespace: default, labels: {{app: {APP}}}, name: "


# This module is the project's ROOT_URLCONF in-process: the served project's URL patterns.
urlpatterns = django_app.urlpatterns


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
    """Rule YAML: a rate limit of ``threshold`` per hour (one window for the whole test) on
    ``resource``, with a 503 fallback action of body ``action`` if given."""
    docs = [
        f"{_HEAD}kind: RateLimitStrategy\n{_META}rl}}\n"
        f"spec: {{metricType: RequestAmount, limitMode: Local, threshold: {threshold}, statDuration: 1h}}\n",
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
    other.urlpatterns = [path("shop/<int:pk>", django_app.ok)]  # type: ignore[attr-defined]
    namer = DjangoResourceNamer(urlconf=other)
    assert namer(environ("/shop/3")) == "GET:/shop/<pk>"
    assert namer(environ("/users/3")) == "GET:/users/3"


class DjangoServer:
    """tests/integration/apps/django_app.py in its own process: the Django project above, served
    by werkzeug's threaded WSGI server behind OpenSergo's middleware, with ``rules`` applied."""

    def __init__(self, root: Path, rules: str, default_response: str | None = None) -> None:
        self.port = free_port()
        self.log = root / "django.log"
        rules_file = root / "rules.yaml"
        rules_file.write_text(rules)
        extra = [default_response] if default_response else []
        self.proc = spawn_python(DJANGO_APP, str(self.port), str(rules_file), *extra, log=self.log)
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=10)
        try:
            wait_until(self._serving, timeout=60, interval=0.1, what="the Django server")
        except BaseException:
            self.stop()
            raise

    def _serving(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"django_app.py exited:\n{self.log.read_text(errors='replace')}")
        try:
            return self.http.get("/").status_code == 200
        except httpx.HTTPError:
            return False

    def get(self, url: str) -> httpx.Response:
        return self.http.get(url)

    def blocks(self) -> dict[tuple[str, str, str], int]:
        return {(r, rule, s): n for r, rule, s, n in self.http.get("/_blocks").json()["blocks"]}

    def stop(self) -> None:
        self.http.close()
        stop_processes([self.proc])


@pytest.fixture
def serve(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Callable[..., DjangoServer]]:
    started: list[DjangoServer] = []

    def start(rules: str, default_response: str | None = None) -> DjangoServer:
        server = DjangoServer(tmp_path, rules, default_response)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            print(server.log.read_text(errors="replace"))


def rules(resource: str, threshold: int, *, action: str = "") -> str:
    return "---\n".join(rate_limit(resource, threshold, action=action))


def test_rate_limit_on_a_route_spans_its_ids(serve: Callable[..., DjangoServer]) -> None:
    server = serve(rules("GET:/users/<user_id>", 3))
    assert [server.get(f"/users/{i}").status_code for i in (1, 2, 3)] == [200, 200, 200]
    blocked = server.get("/users/4")
    assert (blocked.status_code, blocked.text) == (429, "Blocked by OpenSergo (flow limiting)")
    assert server.get("/users/1").status_code == 429
    # under a SCRIPT_NAME prefix (the app mounted at /mounted): the same route, the same limit
    assert server.get("/mounted/users/5").status_code == 429
    for _ in range(5):  # unrelated routes are not limited
        assert server.get("/health").status_code == 200
        assert server.get("/api/v1/items/x/").status_code == 200
    assert server.http.post("/users/1").status_code == 200  # another method, another resource
    assert server.blocks() == {("GET:/users/<user_id>", "r", "rl"): 3}


def test_blocked_request_gets_the_fallback_action(serve: Callable[..., DjangoServer]) -> None:
    server = serve(rules(r"GET:/legacy/pages/(?P<name>\w+)", 1, action='{"error": "busy"}'))
    first = server.get("/legacy/pages/about")
    assert (first.status_code, first.json()) == (200, {"view": "page", "name": "about"})
    blocked = server.get("/legacy/pages/contact")
    assert (blocked.status_code, blocked.json()) == (503, {"error": "busy"})
    assert blocked.headers["Content-Type"] == "application/json"


def test_unmatched_paths_are_named_by_their_raw_path(serve: Callable[..., DjangoServer]) -> None:
    server = serve(rules("GET:/nowhere", 1))
    assert server.get("/nowhere").status_code == 404  # Django's own 404
    assert server.get("/nowhere").status_code == 429
    assert server.get("/somewhere-else").status_code == 404
    assert server.get("/users/1").status_code == 200


def test_governed_wsgi_application_forwards_options(
    engine: Engine, serve: Callable[..., DjangoServer]
) -> None:
    app = governed_wsgi_application(engine=engine)
    assert isinstance(app, OpenSergoWSGIMiddleware)
    assert isinstance(app.resource_name, DjangoResourceNamer)
    raw = governed_wsgi_application(engine=engine, resource=lambda e: "GET:/fixed")
    assert raw.resource_name(environ("/health")) == "GET:/fixed"
    # default_response= reaches the middleware: the server's blocked answer is the one given.
    server = serve(rules("GET:/health", 0), default_response="503:later")
    blocked = server.get("/health")
    assert (blocked.status_code, blocked.text) == (503, "later")


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

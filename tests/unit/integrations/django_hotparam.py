"""Run as a program: a Django app limited per path parameter; prints the statuses as JSON
(Django is configured once per process, so the test runs it apart)."""

from __future__ import annotations

import json

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.urls import include, path, re_path
from werkzeug.test import Client


def item(request: HttpRequest, **kwargs: object) -> HttpResponse:
    return HttpResponse("ok")


urlpatterns = [
    path("api/", include([path("items/<int:item_id>", item)])),
    re_path(r"^articles/(?P<year>[0-9]{4})/$", item),
]

HEAD = "apiVersion: fault-tolerance.opensergo.io/v1alpha1\n"


def rules() -> str:
    out = []
    for name, target, param, threshold in (
        ("api", "GET:/api/items/<item_id>", "item_id", 2),
        ("article", "GET:/articles/(?P<year>[0-9]{4})/", "year", 1),
    ):
        out.append(
            f"{HEAD}kind: HotParamRateLimitStrategy\nmetadata: {{name: {name}}}\n"
            f"spec: {{param: {{source: path, name: {param}}}, threshold: {threshold}, "
            "statDuration: 1m}\n---\n"
            f"{HEAD}kind: FaultToleranceRule\nmetadata: {{name: {name}}}\n"
            f"spec: {{targets: [{{targetResourceName: '{target}'}}], strategies: [{{name: {name}}}]}}\n"
        )
    return "---\n".join(out)


def main() -> None:
    settings.configure(SECRET_KEY="t", ALLOWED_HOSTS=["*"], ROOT_URLCONF=__name__, INSTALLED_APPS=[])
    from opensergo.governance import Engine, load_rules
    from opensergo.integrations.django import governed_wsgi_application

    engine = Engine()
    result = load_rules(rules(), app=None, engine=engine)
    assert not result.problems, result.problems
    client = Client(governed_wsgi_application(engine=engine))

    def statuses(paths: list[str]) -> list[int]:
        out = []
        for p in paths:
            response = client.get(p)
            response.get_data()
            response.close()
            out.append(response.status_code)
        return out

    print(
        json.dumps(
            {
                "api": statuses(["/api/items/1", "/api/items/1", "/api/items/1", "/api/items/2"]),
                "article": statuses(["/articles/2024/", "/articles/2024/", "/articles/2025/"]),
            }
        )
    )


if __name__ == "__main__":
    main()

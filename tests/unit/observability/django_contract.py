"""Run as a program: the contract of a small Django URLconf, printed as JSON (Django is
configured once per process, so the test runs it apart)."""

from __future__ import annotations

import json

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import include, path, re_path
from django.views import View
from google.protobuf.json_format import MessageToDict


def item(request: HttpRequest, **kwargs: object) -> HttpResponse:
    """Shows one item."""
    return JsonResponse(kwargs)


class Orders(View):
    """Lists or creates orders."""

    def get(self, request: HttpRequest) -> HttpResponse:
        return JsonResponse({})

    def post(self, request: HttpRequest) -> HttpResponse:
        return JsonResponse({})


urlpatterns = [
    path("api/", include([path("items/<int:item_id>", item, name="item")])),
    path("orders/", Orders.as_view(), name="orders"),
    re_path(r"^articles/(?P<year>[0-9]{4})/$", item, name="article"),
]


def main() -> None:
    settings.configure(SECRET_KEY="t", ALLOWED_HOSTS=["*"], ROOT_URLCONF=__name__, INSTALLED_APPS=[])
    from opensergo.integrations.contracts import django_contract

    print(json.dumps(MessageToDict(django_contract())))


if __name__ == "__main__":
    main()

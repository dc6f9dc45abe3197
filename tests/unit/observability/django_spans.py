"""Run as a program: a Django project behind ``governed_wsgi_application`` with tracing on; prints
the server span as JSON. (Django is configured once per process, so the test runs it apart.)"""

from __future__ import annotations

import io
import json
import sys
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import include, path
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


def ok(request: HttpRequest, **kwargs: Any) -> HttpResponse:
    return JsonResponse(kwargs)


urlpatterns = [path("api/", include([path("users/<int:user_id>", ok)]))]


def main() -> None:
    settings.configure(
        SECRET_KEY="t", ALLOWED_HOSTS=["*"], ROOT_URLCONF=__name__, INSTALLED_APPS=[], MIDDLEWARE=[]
    )
    from opensergo.governance import Engine
    from opensergo.integrations.django import governed_wsgi_application
    from opensergo.observability.tracing import enable_tracing

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    enable_tracing(app="django-demo", tracer_provider=provider, logs=False, environ={})
    application = governed_wsgi_application(engine=Engine())
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": sys.argv[1],
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "HTTP_HOST": "testserver",
        "HTTP_TRACEPARENT": sys.argv[2],
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
    }
    statuses: list[str] = []
    b"".join(application(environ, lambda status, headers, exc=None: statuses.append(status)))
    [span] = exporter.get_finished_spans()
    print(
        json.dumps(
            {
                "status": statuses[0],
                "name": span.name,
                "kind": span.kind.name,
                "trace_id": f"{span.context.trace_id:032x}",
                "attributes": dict(span.attributes or {}),
            }
        )
    )


if __name__ == "__main__":
    main()

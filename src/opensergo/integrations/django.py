"""Django: the WSGI middleware naming resources by the URL pattern that matches the request.

In the project's ``wsgi.py``::

    from opensergo.integrations.django import governed_wsgi_application

    application = governed_wsgi_application()

Each request is one entry of resource ``METHOD:/<route>``, the route of the URL pattern Django
resolves the request to, with the prefixes of the ``include()`` it sits in:
``path("api/", include([path("users/<int:user_id>", ...)]))`` gives ``GET:/api/users/<user_id>``
for ``/api/users/42`` (converters dropped, as for Flask, so one rule names the same route in
both). A ``re_path`` pattern is named
by its regex without the anchors (``re_path(r"^articles/(?P<year>[0-9]{4})/$", ...)`` gives
``GET:/articles/(?P<year>[0-9]{4})/``). A request that resolves to no pattern (a 404) is named by
its raw path (``GET:/no/such/page``), as with :func:`~opensergo.integrations.wsgi.raw_path_resource`.

Paths are resolved against ``settings.ROOT_URLCONF`` (or ``urlconf=``) the way Django's handler
resolves them: ``PATH_INFO`` only, so an application mounted under a ``SCRIPT_NAME`` prefix is
named without it. A URLconf chosen per request by a Django middleware (``request.urlconf``) is
not seen: the middleware runs outside Django. Nothing is cached (Django's resolver is cheap next
to the request, and paths are unbounded).

Django is imported only when this module is used; the rest of the package does not need it.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from opensergo.integrations import tracing
from opensergo.integrations.wsgi import PATH_PARAMS_KEY, Environ, OpenSergoWSGIMiddleware, strip_converters

__all__ = ["DjangoResourceNamer", "governed_wsgi_application", "route_template"]


def route_template(route: str) -> str:
    """``/`` + a ``ResolverMatch.route``: ``users/<int:id>`` -> ``/users/<int:id>``;
    ``^articles/(?P<year>[0-9]{4})/$`` -> ``/articles/(?P<year>[0-9]{4})/``."""
    route = route.removeprefix("^")
    if route.endswith("\\Z"):
        route = route[:-2]
    elif route.endswith("$") and not route.endswith("\\$"):
        route = route[:-1]
    return route if route.startswith("/") else "/" + route


class DjangoResourceNamer:
    """``METHOD:/<Django URL route>`` (``GET:/users/<user_id>``), else the raw path.

    ``urlconf``: the URLconf module (or its dotted name) to resolve against; default
    ``settings.ROOT_URLCONF``.
    """

    def __init__(self, urlconf: str | ModuleType | None = None) -> None:
        self.urlconf = urlconf

    def __call__(self, environ: Environ) -> str:
        from django.core.handlers.wsgi import get_path_info
        from django.urls import get_resolver

        method = environ.get("REQUEST_METHOD", "GET")
        try:
            match = get_resolver(self.urlconf).resolve(get_path_info(environ) or "/")
        except Exception:  # Resolver404 (no pattern matches); a broken URLconf Django then reports
            match = None
        route = match.route if match is not None else None
        if match is not None:
            environ[PATH_PARAMS_KEY] = match.kwargs  # for hot-parameter limits on path parameters
        if not isinstance(route, str):
            return f"{method}:{environ.get('PATH_INFO') or '/'}"
        template = route_template(route)
        environ[tracing.ROUTE_KEY] = template
        return f"{method}:{strip_converters(template)}"


def governed_wsgi_application(**options: Any) -> OpenSergoWSGIMiddleware:
    """Django's ``get_wsgi_application()`` wrapped in
    :class:`~opensergo.integrations.wsgi.OpenSergoWSGIMiddleware` with
    ``resource=DjangoResourceNamer()``.

    ``options`` go to the middleware (``engine``, ``resource``, ``default_response``,
    ``block_handler``, ``error_status``, ``lanes``). Call it where Django's would be called, after
    ``DJANGO_SETTINGS_MODULE`` is set.
    """
    from django.core.wsgi import get_wsgi_application

    options.setdefault("resource", DjangoResourceNamer())
    return OpenSergoWSGIMiddleware(get_wsgi_application(), **options)

"""Service contracts derived from the application itself, as the upstream ``ServiceContract``
message describes them (services, methods with their HTTP paths and methods or RPC streaming,
request and response types).

* :func:`starlette_contract`: FastAPI from its OpenAPI document (operations, parameters, request
  bodies, response models, component schemas), plain Starlette from its route table;
* :func:`flask_contract`: Flask's ``url_map`` (rules, methods, converter types);
* :func:`django_contract`: Django's URL resolver (``include()`` prefixes joined; class-based
  views by the handlers they define, function views as GET);
* :func:`grpc_contract`: gRPC services by name, from the protobuf descriptors the generated
  modules registered (the default descriptor pool, which is what server reflection serves).

HTTP paths are written as the integrations name resources (``/users/{user_id}``,
``/users/<user_id>``: converters dropped), so an endpoint of the contract is the resource a rule
targets: ``GET:/users/{user_id}``; a gRPC method is ``/package.Service/Method``. Derivation is
deterministic (same routes, same message, same hash).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from opensergo.integrations.wsgi import strip_converters
from opensergo.proto.service_contract.v1 import service_contract_pb2 as sc

__all__ = ["django_contract", "flask_contract", "grpc_contract", "merge_contracts", "starlette_contract"]

FD = sc.FieldDescriptor
_IGNORED_METHODS = {"HEAD", "OPTIONS"}
_JSON_TYPES = {
    "string": FD.TYPE_STRING,
    "integer": FD.TYPE_INT64,
    "number": FD.TYPE_DOUBLE,
    "boolean": FD.TYPE_BOOL,
    "object": FD.TYPE_MESSAGE,
}


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0].strip() if (text or "").strip() else ""


def _type_name(name: str) -> str:
    """A schema or operation name as a type name (letters, digits, ``_`` and ``.``)."""
    return re.sub(r"[^A-Za-z0-9_.]", "_", name)


def merge_contracts(contracts: Iterable[sc.ServiceContract]) -> sc.ServiceContract:
    """One contract with the services of all (types deduplicated by name, first wins)."""
    out = sc.ServiceContract()
    seen: set[str] = set()
    for contract in contracts:
        out.services.extend(contract.services)
        for t in contract.types:
            if t.name not in seen:
                seen.add(t.name)
                out.types.append(t)
    return out


# -- FastAPI / Starlette ----------------------------------------------------------------------------


def starlette_contract(app: Any, name: str | None = None) -> sc.ServiceContract:
    """The contract of a FastAPI app (its OpenAPI document) or a Starlette app (its routes)."""
    service_name = name or str(getattr(app, "title", "") or type(app).__name__)
    document = _openapi(app)
    if document is not None:
        return _from_openapi(document, service_name)
    service = sc.ServiceDescriptor(name=service_name)
    for path, methods, endpoint in _starlette_routes(getattr(app, "routes", ()), ""):
        verbs = sorted(methods - _IGNORED_METHODS) or ["GET"]
        service.methods.append(
            sc.MethodDescriptor(
                name=_endpoint_name(endpoint, path),
                description=_first_line(getattr(endpoint, "__doc__", "")),
                http_paths=[path] * len(verbs),
                http_methods=verbs,
            )
        )
    return sc.ServiceContract(services=[service])


def _openapi(app: Any) -> dict[str, Any] | None:
    try:
        from fastapi import FastAPI
        from fastapi.openapi.utils import get_openapi
    except ImportError:  # pragma: no cover - Starlette without FastAPI
        return None
    if not isinstance(app, FastAPI):
        return None
    # Computed from the routes every time (app.openapi() caches its first answer, and contracts
    # are derived again to see routes added later).
    document: dict[str, Any] = get_openapi(
        title=app.title, version=app.version, openapi_version=app.openapi_version, routes=app.routes
    )
    return document


def _starlette_routes(routes: Sequence[Any], prefix: str) -> Iterator[tuple[str, set[str], Any]]:
    from starlette.routing import Mount, Route

    from opensergo.integrations.asgi import _flatten, _original

    for route in _flatten(routes):
        original = _original(route)
        if isinstance(original, Mount):
            inner = getattr(route, "routes", None) or ()
            yield from _starlette_routes(inner, prefix + str(route.path))
        elif isinstance(original, Route) or hasattr(route, "methods"):
            path = getattr(route, "path_format", None)
            if isinstance(path, str):
                yield (
                    prefix + path,
                    set(getattr(route, "methods", None) or {"GET"}),
                    getattr(route, "endpoint", None),
                )


def _endpoint_name(endpoint: Any, path: str) -> str:
    name = getattr(endpoint, "__name__", None) or type(endpoint).__name__
    return str(name) if name and name != "function" else path


def _ref_name(schema: Mapping[str, Any]) -> str | None:
    ref = schema.get("$ref")
    if isinstance(ref, str):
        return _type_name(ref.rsplit("/", 1)[-1])
    items = schema.get("items")
    if schema.get("type") == "array" and isinstance(items, Mapping):
        return _ref_name(items)
    for key in ("anyOf", "oneOf", "allOf"):
        for option in schema.get(key) or ():
            if isinstance(option, Mapping):
                found = _ref_name(option)
                if found:
                    return found
    return None


def _field(name: str, number: int, schema: Mapping[str, Any], description: str = "") -> sc.FieldDescriptor:
    field = sc.FieldDescriptor(
        name=name, number=number, description=description or str(schema.get("description", ""))
    )
    schema_type = schema.get("type")
    if schema_type == "array":
        field.label = FD.LABEL_REPEATED
        items = schema.get("items") if isinstance(schema.get("items"), Mapping) else {}
        schema = items or {}
        schema_type = schema.get("type")
    else:
        field.label = FD.LABEL_OPTIONAL
    ref = _ref_name(schema)
    if ref is not None:
        field.type = FD.TYPE_MESSAGE
        field.type_name = ref
    else:
        options = [
            o.get("type")
            for o in schema.get("anyOf", ())
            if isinstance(o, Mapping) and o.get("type") != "null"
        ]
        field.type = _JSON_TYPES.get(
            str(schema_type or (options[0] if options else "string")), FD.TYPE_STRING
        )
    return field


def _from_openapi(document: Mapping[str, Any], service_name: str) -> sc.ServiceContract:
    service = sc.ServiceDescriptor(
        name=service_name, description=_first_line(document.get("info", {}).get("description"))
    )
    types: list[sc.TypeDescriptor] = []
    for path, operations in sorted((document.get("paths") or {}).items()):
        for verb, op in sorted(operations.items()):
            if not isinstance(op, Mapping) or verb.upper() in _IGNORED_METHODS:
                continue
            operation = _type_name(str(op.get("operationId") or f"{verb}_{path}"))
            method = sc.MethodDescriptor(
                name=operation,
                description=_first_line(op.get("description") or op.get("summary")),
                http_paths=[path],
                http_methods=[verb.upper()],
            )
            parameters = [
                p
                for p in op.get("parameters") or ()
                if isinstance(p, Mapping) and p.get("in") in ("path", "query")
            ]
            if parameters:
                params_type = sc.TypeDescriptor(name=f"{operation}Parameters")
                for number, p in enumerate(parameters, 1):
                    params_type.fields.append(
                        _field(str(p["name"]), number, p.get("schema") or {}, str(p.get("description", "")))
                    )
                types.append(params_type)
                method.input_types.append(params_type.name)
            body = (op.get("requestBody") or {}).get("content", {}).get("application/json", {}).get("schema")
            if isinstance(body, Mapping) and _ref_name(body):
                method.input_types.append(str(_ref_name(body)))
            for status in ("200", "201", "202"):
                response = (op.get("responses") or {}).get(status, {})
                schema = response.get("content", {}).get("application/json", {}).get("schema")
                if isinstance(schema, Mapping) and _ref_name(schema):
                    method.output_types.append(str(_ref_name(schema)))
                    break
            service.methods.append(method)
    for name, schema in sorted((document.get("components", {}).get("schemas") or {}).items()):
        type_ = sc.TypeDescriptor(name=_type_name(name))
        for number, (field_name, field_schema) in enumerate(
            sorted((schema.get("properties") or {}).items()), 1
        ):
            type_.fields.append(_field(field_name, number, field_schema))
        types.append(type_)
    return sc.ServiceContract(services=[service], types=types)


# -- Flask ----------------------------------------------------------------------------------------

_FLASK_CONVERTERS = {"IntegerConverter": FD.TYPE_INT64, "FloatConverter": FD.TYPE_DOUBLE}


def flask_contract(app: Any, name: str | None = None) -> sc.ServiceContract:
    """The contract of a Flask app: one method per URL rule (the ``static`` rule left out)."""
    service = sc.ServiceDescriptor(name=name or str(app.import_name))
    types: list[sc.TypeDescriptor] = []
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: (r.rule, r.endpoint)):
        if rule.endpoint == "static":
            continue
        verbs = sorted(set(rule.methods or ()) - _IGNORED_METHODS) or ["GET"]
        path = strip_converters(rule.rule)
        operation = _type_name(rule.endpoint)
        view = app.view_functions.get(rule.endpoint)
        method = sc.MethodDescriptor(
            name=operation,
            description=_first_line(inspect.getdoc(view) if view is not None else ""),
            http_paths=[path] * len(verbs),
            http_methods=verbs,
        )
        converters = getattr(rule, "_converters", {}) or {}
        if rule.arguments:
            params = sc.TypeDescriptor(name=f"{operation}Parameters")
            for number, argument in enumerate(sorted(rule.arguments), 1):
                converter = type(converters.get(argument)).__name__
                params.fields.append(
                    sc.FieldDescriptor(
                        name=argument, number=number, label=FD.LABEL_OPTIONAL,
                        type=_FLASK_CONVERTERS.get(converter, FD.TYPE_STRING),
                    )
                )  # fmt: skip
            types.append(params)
            method.input_types.append(params.name)
        service.methods.append(method)
    return sc.ServiceContract(services=[service], types=types)


# -- Django ---------------------------------------------------------------------------------------

_DJANGO_VERBS = ("get", "post", "put", "patch", "delete")
_DJANGO_CONVERTERS = {"IntConverter": FD.TYPE_INT64}


def django_contract(urlconf: Any = None, name: str | None = None) -> sc.ServiceContract:
    """The contract of a Django project: one method per URL pattern. A class-based view answers
    the methods it has a handler for; a function view is listed as GET (Django does not say)."""
    from django.conf import settings
    from django.urls import get_resolver

    from opensergo.integrations.django import route_template

    service = sc.ServiceDescriptor(name=name or str(getattr(settings, "ROOT_URLCONF", "django")))
    types: list[sc.TypeDescriptor] = []
    for route, pattern in _django_patterns(get_resolver(urlconf).url_patterns, ""):
        path = strip_converters(route_template(route))
        callback = pattern.callback
        view_class = getattr(callback, "view_class", None)
        if view_class is not None:
            verbs = [v.upper() for v in _DJANGO_VERBS if hasattr(view_class, v)] or ["GET"]
        else:
            verbs = ["GET"]
        operation = _type_name(str(pattern.name or getattr(callback, "__name__", path)))
        method = sc.MethodDescriptor(
            name=operation,
            description=_first_line(inspect.getdoc(view_class or callback)),
            http_paths=[path] * len(verbs),
            http_methods=verbs,
        )
        converters = getattr(pattern.pattern, "converters", {}) or {}
        arguments = re.findall(r"<(?:[^<>:]+:)?([^<>:]+)>", route) or re.findall(r"\(\?P<([^>]+)>", route)
        if arguments:
            params = sc.TypeDescriptor(name=f"{operation}Parameters")
            for number, argument in enumerate(arguments, 1):
                kind = type(converters.get(argument)).__name__
                params.fields.append(
                    sc.FieldDescriptor(
                        name=argument, number=number, label=FD.LABEL_OPTIONAL,
                        type=_DJANGO_CONVERTERS.get(kind, FD.TYPE_STRING),
                    )
                )  # fmt: skip
            types.append(params)
            method.input_types.append(params.name)
        service.methods.append(method)
    return sc.ServiceContract(services=[service], types=types)


def _django_patterns(patterns: Iterable[Any], prefix: str) -> Iterator[tuple[str, Any]]:
    from django.urls import URLResolver

    for pattern in patterns:
        text = str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            yield from _django_patterns(pattern.url_patterns, _join(prefix, text))
        else:
            yield _join(prefix, text), pattern


def _join(prefix: str, part: str) -> str:
    """Join route parts as Django's ResolverMatch.route does (regex anchors of inner parts dropped)."""
    if prefix and part.startswith("^"):
        part = part[1:]
    if prefix.endswith("$"):
        prefix = prefix[:-1]
    return prefix + part


# -- gRPC -----------------------------------------------------------------------------------------


def grpc_contract(service_names: Iterable[str], pool: Any = None) -> sc.ServiceContract:
    """The contract of gRPC services from their descriptors (services not in the pool, e.g.
    generic handlers without generated code, are listed by name with no method)."""
    from google.protobuf import descriptor_pool

    pool = pool or descriptor_pool.Default()
    contract = sc.ServiceContract()
    messages: dict[str, Any] = {}
    for full_name in sorted(set(service_names)):
        try:
            descriptor = pool.FindServiceByName(full_name)
        except KeyError:
            contract.services.append(sc.ServiceDescriptor(name=full_name))
            continue
        service = sc.ServiceDescriptor(name=full_name)
        for m in descriptor.methods:
            service.methods.append(
                sc.MethodDescriptor(
                    name=m.name,
                    input_types=[m.input_type.full_name],
                    output_types=[m.output_type.full_name],
                    client_streaming=bool(getattr(m, "client_streaming", False)),
                    server_streaming=bool(getattr(m, "server_streaming", False)),
                )
            )
            _collect(m.input_type, messages)
            _collect(m.output_type, messages)
        contract.services.append(service)
    for name in sorted(messages):
        contract.types.append(_message_type(messages[name]))
    return contract


def _collect(message: Any, into: dict[str, Any]) -> None:
    if message.full_name in into:
        return
    into[message.full_name] = message
    for field in message.fields:
        if field.message_type is not None and not field.message_type.GetOptions().map_entry:
            _collect(field.message_type, into)


def _message_type(message: Any) -> sc.TypeDescriptor:
    out = sc.TypeDescriptor(name=message.full_name)
    for field in message.fields:
        label = FD.LABEL_REPEATED if _is_repeated(field) else FD.LABEL_OPTIONAL
        type_name = ""
        if field.message_type is not None:
            type_name = field.message_type.full_name
        elif field.enum_type is not None:
            type_name = field.enum_type.full_name
        out.fields.append(
            sc.FieldDescriptor(
                name=field.name, number=field.number, label=label, type=field.type, type_name=type_name
            )
        )
    return out


def _is_repeated(field: Any) -> bool:
    repeated = getattr(field, "is_repeated", None)
    if isinstance(repeated, bool):
        return repeated
    return bool(field.label == field.LABEL_REPEATED)

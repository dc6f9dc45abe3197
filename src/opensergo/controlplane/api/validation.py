"""Request bodies to stored objects: decoding (JSON or YAML, under the parser limits of
:mod:`opensergo.spec.limits`), checking against the kind's model and the URL, and the
optimistic-concurrency precondition. Every write, dry run and dashboard check goes through
:func:`validate_object`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from fastapi import Request

from opensergo.controlplane.api.errors import ApiError, bad_request, beyond_limit
from opensergo.controlplane.api.redact import PLACEHOLDER, placeholder_path, restore
from opensergo.spec.errors import SpecError, format_path
from opensergo.spec.kinds import KindInfo
from opensergo.spec.limits import DEFAULT_LIMITS, LimitError, ParserLimits
from opensergo.spec.loader import load_json, load_yaml, parse_object

# Bodies larger than this are decoded on a worker thread, so the event loop (and /healthz) keeps
# answering while a large YAML text is parsed.
_THREAD_THRESHOLD = 64 * 1024


async def decode(raw: bytes | str, decoder: Callable[[Any, ParserLimits], Any], limits: ParserLimits) -> Any:
    """``decoder(raw, limits)``, off the event loop for a large text; ApiError when it fails."""
    try:
        if len(raw) > _THREAD_THRESHOLD:
            return await asyncio.to_thread(decoder, raw, limits)
        return decoder(raw, limits)
    except LimitError as err:
        raise beyond_limit(err) from None
    except ValueError as err:
        raise bad_request(f"request body is not valid JSON/YAML: {err}") from None


async def read_body(request: Request, limits: ParserLimits = DEFAULT_LIMITS) -> dict[str, Any]:
    """The request's object: JSON unless the content type says otherwise (then YAML)."""
    raw = await request.body()
    json_body = "json" in request.headers.get("content-type", "json")
    data = await decode(raw, load_json if json_body else load_yaml, limits)
    if not isinstance(data, dict):
        raise bad_request("request body must be an object")
    return data


async def read_json(request: Request, limits: ParserLimits = DEFAULT_LIMITS) -> Any:
    """The request's JSON body (any JSON value), under the parser limits."""
    return await decode(await request.body(), load_json, limits)


def _invalid(kind: KindInfo, name: str, field: str, message: str) -> ApiError:
    where = f"{field}: " if field else ""
    return ApiError(
        422,
        "Invalid",
        f"{kind.kind} {name} is invalid: {where}{message}",
        [{"field": field, "message": message}],
    )


def _mismatch(field: str, message: str) -> ApiError:
    """A body that contradicts its URL (or is unreadable at one field): 400 naming the field."""
    return bad_request(message, field)


def with_url_metadata(
    kind: KindInfo, namespace: str, body: dict[str, Any], name: str | None
) -> dict[str, Any]:
    """``body`` with the namespace and name of the URL; ApiError when it names others."""
    raw_meta = body.get("metadata")
    if raw_meta is not None and not isinstance(raw_meta, dict):
        raise _invalid(kind, "", "metadata", f"must be a map, not {type(raw_meta).__name__}")
    meta = dict(raw_meta or {})
    if meta.get("namespace") not in (None, namespace):
        raise _mismatch(
            "metadata.namespace",
            f"the namespace of the object ({meta['namespace']}) does not match the URL ({namespace})",
        )
    meta["namespace"] = namespace
    if name is not None:
        if meta.get("name") not in (None, name):
            raise _mismatch(
                "metadata.name", f"the name of the object ({meta['name']}) does not match the URL ({name})"
            )
        meta["name"] = name
    body["metadata"] = meta
    body.setdefault("apiVersion", kind.api_version)
    body.setdefault("kind", kind.kind)
    if body.get("apiVersion") != kind.api_version or body.get("kind") != kind.kind:
        field = "apiVersion" if body.get("apiVersion") != kind.api_version else "kind"
        raise _mismatch(
            field,
            f"object is {body.get('apiVersion')}/{body.get('kind')}, but the URL is for {kind.full_kind}",
        )
    return body


def validate_object(
    kind: KindInfo,
    namespace: str,
    body: dict[str, Any],
    name: str | None = None,
    current: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Check the body against the kind's model and the URL; return the body to store.

    Redacted secrets (``******``) are taken from ``current``, the stored object."""
    body = with_url_metadata(kind, namespace, restore(dict(body), current), name)
    object_name = body["metadata"].get("name", "")
    try:
        parse_object(body)
    except SpecError as err:
        raise _invalid(kind, object_name, err.field, err.message) from None
    secret = placeholder_path(body)
    if secret is not None:
        message = f"{PLACEHOLDER} is the redacted form of a secret; write the real value"
        raise _invalid(kind, object_name, format_path(secret), message)
    return body


def expected_revision(body: dict[str, Any]) -> int | None:
    """``metadata.resourceVersion`` as the revision a write expects to replace, if given."""
    value = (body.get("metadata") or {}).get("resourceVersion")
    if value in (None, ""):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise _mismatch("metadata.resourceVersion", f"{value!r} is not a number") from None

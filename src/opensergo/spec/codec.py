"""Objects <-> ``google.protobuf.Any`` payloads for the universal transport.

Two forms travel in ``DataWithVersion.data``:

* native: ``opensergo.ext.v1.Resource``, the whole object with ``spec`` as a Struct. Every kind
  has it, and it is lossless.
* upstream: the message the official SDKs decode (``FaultToleranceRule``,
  ``RouteConfiguration`` …), built in :mod:`opensergo.spec.upstream`. Only kinds with an
  upstream proto have it.

:func:`decode` accepts either one, choosing by the type URL.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import any_pb2, struct_pb2
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import DecodeError

from opensergo.proto.ext.v1 import resource_pb2
from opensergo.spec.base import Resource
from opensergo.spec.errors import SpecError
from opensergo.spec.kinds import TYPE_URL_PREFIX, KindInfo
from opensergo.spec.limits import INT64_MAX, MAX_EXACT_INTEGER
from opensergo.spec.loader import parse_object
from opensergo.spec.upstream.codec import decode_upstream, encode_upstream

__all__ = ["NATIVE_MESSAGE", "NATIVE_TYPE_URL", "decode", "encode_native", "encode_upstream"]

NATIVE_MESSAGE = resource_pb2.Resource.DESCRIPTOR.full_name
NATIVE_TYPE_URL = TYPE_URL_PREFIX + NATIVE_MESSAGE


def _resource_version(value: str | None) -> int:
    """The int64 the native payload carries; 0 for an opaque (non-numeric) or out-of-range one."""
    if not value or not (value.isascii() and value.isdigit()):  # "²".isdigit() is True too
        return 0
    number = int(value)
    return number if number <= INT64_MAX else 0


def encode_native(resource: Resource) -> any_pb2.Any:
    spec = struct_pb2.Struct()
    spec.update(resource.to_dict().get("spec") or {})
    meta = resource.metadata
    message = resource_pb2.Resource(
        api_version=resource.apiVersion,
        kind=resource.kind,
        name=meta.name,
        namespace=meta.namespace,
        labels=meta.labels,
        annotations=meta.annotations,
        resource_version=_resource_version(meta.resourceVersion),
        spec=spec,
    )
    # Deterministic bytes, so an unchanged object gives an identical payload on every push.
    payload = any_pb2.Any()
    payload.Pack(message, deterministic=True)
    return payload


def _ints(value: Any) -> Any:
    """Struct keeps every number as a double; give whole numbers back as ints. Integers beyond
    ±2**53 never travel (limits.check_exact_integers refuses them), so a whole double beyond that
    was sent as a float and stays one."""
    if isinstance(value, float) and value.is_integer() and abs(value) <= MAX_EXACT_INTEGER:
        return int(value)
    if isinstance(value, dict):
        return {k: _ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_ints(v) for v in value]
    return value


def decode(payload: any_pb2.Any, *, kind: KindInfo, namespace: str, app: str, index: int = 0) -> Resource:
    """Decode one pushed payload of ``kind``; anything that does not fit raises SpecError."""
    source = f"{kind.full_kind} payload {index}"
    message_name = payload.type_url.rsplit("/", 1)[-1]
    if message_name == NATIVE_MESSAGE:
        return _decode_native(payload, kind=kind, namespace=namespace, source=source)
    if kind.proto is not None and message_name == kind.proto.DESCRIPTOR.full_name:
        return decode_upstream(payload, kind=kind, namespace=namespace, app=app, index=index, source=source)
    expected = NATIVE_TYPE_URL if kind.type_url is None else f"{NATIVE_TYPE_URL} or {kind.type_url}"
    raise SpecError(
        f"type {payload.type_url!r} does not match kind {kind.kind} (expected {expected})", source=source
    )


def _decode_native(payload: any_pb2.Any, *, kind: KindInfo, namespace: str, source: str) -> Resource:
    message = resource_pb2.Resource()
    try:
        message.ParseFromString(payload.value)
    except DecodeError as exc:
        raise SpecError(f"cannot decode {NATIVE_MESSAGE}: {exc}", source=source) from None
    if (message.api_version, message.kind) != (kind.api_version, kind.kind):
        raise SpecError(
            f"payload holds {message.api_version}/{message.kind}, expected {kind.full_kind}", source=source
        )
    metadata: dict[str, Any] = {"name": message.name, "namespace": message.namespace or namespace}
    if message.labels:
        metadata["labels"] = dict(message.labels)
    if message.annotations:
        metadata["annotations"] = dict(message.annotations)
    if message.resource_version:
        metadata["resourceVersion"] = str(message.resource_version)
    obj = {
        "apiVersion": message.api_version,
        "kind": message.kind,
        "metadata": metadata,
        "spec": _ints(MessageToDict(message.spec)) if message.HasField("spec") else {},
    }
    return parse_object(obj, source=source)

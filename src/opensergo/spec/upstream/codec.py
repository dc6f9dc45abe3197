"""Objects <-> their upstream messages <-> ``google.protobuf.Any``.

Each kind's :class:`~opensergo.spec.upstream.form.UpstreamForm` is found through the kind
registry; a kind without one has no upstream form (:func:`to_proto` gives None).
"""

from __future__ import annotations

from typing import TypeVar, cast

from google.protobuf import any_pb2
from google.protobuf.message import DecodeError, Message

from opensergo.spec import kinds
from opensergo.spec.base import Resource
from opensergo.spec.errors import SpecError
from opensergo.spec.kinds import KindInfo
from opensergo.spec.upstream.form import UpstreamForm

R = TypeVar("R", bound=Resource)


def to_proto(resource: Resource) -> Message | None:
    """The upstream message for this object, or None when upstream defines none for its kind."""
    form = kinds.by_api_version_kind(resource.apiVersion, resource.kind).upstream
    return None if form is None else form.encode(resource)


def from_proto(model: type[R], message: Message, *, name: str, namespace: str, app: str) -> R:
    """Rebuild an object of ``model`` from its upstream message (lossy where upstream has fewer
    fields). ``name`` is used when the message has none; SpecError if it does not fit."""
    info = kinds.by_api_version_kind(model.api_version(), model.KIND)
    if info.upstream is None:
        raise SpecError(f"{model.KIND} has no upstream proto form")
    _expect(message, info.upstream)
    # The registry pairs each model with its own form, so the result is a ``model``.
    return cast(R, info.upstream.decode(message, name=name, namespace=namespace, app=app))


def _expect(message: Message, form: UpstreamForm[Resource, Message]) -> None:
    expected, got = form.message.DESCRIPTOR.full_name, message.DESCRIPTOR.full_name
    if got != expected:
        raise SpecError(f"expected {expected}, got {got}")


def encode_upstream(resource: Resource) -> any_pb2.Any | None:
    """The upstream payload of this object, or None when its kind has no upstream message."""
    message = to_proto(resource)
    if message is None:
        return None
    # Deterministic bytes, so an unchanged object gives an identical payload on every push.
    payload = any_pb2.Any()
    payload.Pack(message, deterministic=True)
    return payload


def decode_upstream(
    payload: any_pb2.Any, *, kind: KindInfo, namespace: str, app: str, index: int, source: str
) -> Resource:
    """Decode the upstream payload ``index`` of a push of ``kind``; ``source`` names it in errors."""
    if kind.upstream is None:
        raise SpecError(f"{kind.kind} has no upstream proto form", source=source)
    message = kind.upstream.message()
    try:
        message.ParseFromString(payload.value)
    except DecodeError as exc:
        raise SpecError(f"cannot decode {message.DESCRIPTOR.full_name}: {exc}", source=source) from None
    # FaultToleranceRule has no name upstream (and a strategy may arrive without one).
    suffix = "rule" if kind.kind == "FaultToleranceRule" else kind.singular
    name = getattr(message, "name", "") or f"{app}-{suffix}-{index}".lower()
    try:
        return from_proto(kind.model, message, name=name, namespace=namespace, app=app)
    except SpecError as err:
        raise err.located(source=source) from None

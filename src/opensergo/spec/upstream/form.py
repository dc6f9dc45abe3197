"""What a kind with an upstream message registers: the message class and both conversions."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from google.protobuf.message import Message
from pydantic import ValidationError

from opensergo.spec.base import APP_LABEL, Resource
from opensergo.spec.errors import from_validation_error

R = TypeVar("R", bound=Resource)
M = TypeVar("M", bound=Message)
R_co = TypeVar("R_co", bound=Resource, covariant=True)
M_contra = TypeVar("M_contra", bound=Message, contravariant=True)


class Decode(Protocol[M_contra, R_co]):
    """Rebuild an object from its upstream message (lossy where upstream has fewer fields).

    ``name`` is used when the message carries none; ``namespace`` and ``app`` are those of the
    subscription it arrived on.
    """

    def __call__(self, message: M_contra, /, *, name: str, namespace: str, app: str) -> R_co: ...


@dataclass(frozen=True)
class UpstreamForm(Generic[R, M]):
    message: type[M]
    encode: Callable[[R], M]
    decode: Decode[M, R]


def rebuild(model: type[R], *, name: str, namespace: str, app: str, spec: dict[str, Any]) -> R:
    """Validate a spec read from an upstream message; errors become SpecError."""
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if app:
        metadata["labels"] = {APP_LABEL: app}
    try:
        return model.model_validate({"metadata": metadata, "spec": spec})
    except ValidationError as exc:
        raise from_validation_error(exc, source=f"upstream {model.KIND} {name!r}") from None

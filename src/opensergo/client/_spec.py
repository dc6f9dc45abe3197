"""The client's bridge to :mod:`opensergo.spec`: kinds, payload decoding and snapshot parsing.

The client needs three things from the spec package: the registry of kinds, the codec that turns a
pushed ``google.protobuf.Any`` into a :class:`~opensergo.spec.base.Resource`, and the parser that
turns a resource dict (as written into the on-disk snapshot) back into a ``Resource``. All three are
pluggable so that the client can be used (and tested) with a custom decoder.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from google.protobuf import any_pb2

from opensergo.spec import codec, kinds, loader
from opensergo.spec.base import Resource


@runtime_checkable
class KindLike(Protocol):
    """Anything with a ``full_kind`` (``group/version/Kind``), e.g. ``opensergo.spec.kinds.KindInfo``."""

    @property
    def full_kind(self) -> str: ...


@dataclass(frozen=True)
class RawKind:
    """A kind known only by its wire string, used when the spec registry does not know it."""

    full_kind: str


class Decoder(Protocol):
    """Decode one pushed Any into a Resource; raise on an undecodable payload."""

    def __call__(
        self, any: any_pb2.Any, /, *, kind: Any, namespace: str, app: str, index: int = 0
    ) -> Resource: ...


Parser = Callable[[Mapping[str, Any]], Resource]


def _is_full_kind(name: str) -> bool:
    parts = name.split("/")
    return len(parts) == 3 and all(parts)


def _registry_lookup(name: str) -> KindLike | None:
    try:
        return kinds.lookup(name)
    except KeyError:
        return None


def resolve_kind(kind: str | KindLike) -> KindLike:
    """A kind for a user-given name: the registry's entry, else a raw full kind; ValueError otherwise."""
    if not isinstance(kind, str):
        return kind
    name = kind.strip()
    found = _registry_lookup(name)
    if found is not None:
        return found
    if _is_full_kind(name):
        return RawKind(name)
    raise ValueError(
        f"unknown kind {kind!r}: use a registered kind name or a full 'group/version/Kind' string"
    )


def full_kind(kind: str | KindLike) -> str:
    """The wire string (``group/version/Kind``) of a kind given by name or object."""
    return resolve_kind(kind).full_kind


def kind_by_full_kind(name: str) -> KindLike | None:
    """The registry entry for an exact wire string, or None."""
    try:
        return kinds.by_full_kind(name)
    except KeyError:
        return None


def default_decoder(any: any_pb2.Any, /, *, kind: Any, namespace: str, app: str, index: int = 0) -> Resource:
    """Decode with :func:`opensergo.spec.codec.decode` (native Resource payloads and upstream protos)."""
    if not isinstance(kind, kinds.KindInfo):
        raise ValueError(f"no codec for kind {kind.full_kind!r}")
    return codec.decode(any, kind=kind, namespace=namespace, app=app, index=index)


def default_parser(data: Mapping[str, Any]) -> Resource:
    """Parse a resource dict (as stored in the snapshot) with :func:`opensergo.spec.loader.parse_object`."""
    return loader.parse_object(data, source="snapshot")

"""HttpRequestFallbackAction compiled into an immutable response description."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opensergo.spec.faulttolerance import HttpRequestFallbackAction


@dataclass(frozen=True, slots=True)
class FallbackResponse:
    """What a blocked HTTP request gets back: status, body and extra headers.

    ``body`` is the text from the CR and ``body_bytes`` its UTF-8 encoding (computed once).
    ``headers`` keeps the CR's order; a name may repeat.
    """

    status: int
    body: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    name: str = ""
    body_bytes: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "body_bytes", self.body.encode("utf-8"))

    @classmethod
    def from_action(cls, action: HttpRequestFallbackAction) -> FallbackResponse:
        from opensergo.spec.faulttolerance import FallbackBehavior  # the models load with the rules

        spec = action.spec
        if spec.behavior is not FallbackBehavior.RETURN_PROVIDED_RESPONSE:  # pragma: no cover
            raise ValueError(f"unsupported fallback behavior {spec.behavior!r}")
        desc = spec.behaviorDesc
        return cls(
            status=desc.responseStatusCode,
            body=desc.responseContentBody,
            headers=tuple((h.key, h.value) for h in desc.responseAdditionalHeaders),
            name=action.metadata.name,
        )

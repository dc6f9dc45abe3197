"""What the parsers accept: one set of limits for every YAML and JSON text the code base decodes.

REST bodies, the dashboard's validate view, CLI files, the tokens file and the gRPC paths that
decode documents all go through :mod:`opensergo.spec.loader`, which applies these limits:

* YAML aliases (``*name``) are refused: a few hundred bytes of nested aliases expand to gigabytes.
* A text is at most ``max_bytes`` long, nests maps and lists at most ``max_depth`` deep and holds
  at most ``max_documents`` YAML documents.
* Numbers are finite (no ``.inf``, ``.nan``, ``1e400``) and integers fit in a signed 64-bit
  integer, the widest integer any wire type carries.
* Strings (keys too) are valid Unicode: a lone surrogate (JSON ``"\ud800"``) can be neither
  stored, encoded in protobuf, nor quoted back in an error message.

One more range applies to every object's ``spec`` (:func:`check_exact_integers`, called by
``parse_object``): integers within ±2**53, which the native wire form carries exactly.

A violation raises :class:`LimitError`, a :class:`~opensergo.spec.errors.SpecError` whose path
names the field (empty when the text as a whole is at fault).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from opensergo.spec.errors import SpecError

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
# The native wire form carries a spec as a protobuf Struct, whose numbers are doubles: beyond this,
# an integer would reach data planes as another number (2**63 - 1 arrives as 2**63).
MAX_EXACT_INTEGER = 2**53


@dataclass(frozen=True)
class ParserLimits:
    max_bytes: int = 1 << 20  # one request body, file or stdin
    max_depth: int = 64  # nesting of maps and lists
    max_documents: int = 1000  # documents in one multi-document YAML text

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_depth", "max_documents"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")


DEFAULT_LIMITS = ParserLimits()


class LimitError(SpecError):
    """A text beyond a parser limit; ``too_large`` when its size alone is the reason."""

    def __init__(self, message: str, path: Sequence[str | int] = (), *, too_large: bool = False) -> None:
        super().__init__(message, path=path)
        self.too_large = too_large


def check_size(text: str | bytes, limits: ParserLimits) -> None:
    if len(text) > limits.max_bytes:
        raise LimitError(
            f"text of {len(text)} bytes is larger than the limit of {limits.max_bytes} bytes",
            too_large=True,
        )


def check_values(value: Any, limits: ParserLimits) -> None:
    """Walk a decoded tree (iteratively: its depth is what is being checked): depth, finite
    numbers, integers in the int64 range, valid Unicode. Raises LimitError naming the first offending
    path."""
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(value, ())]
    while stack:
        node, path = stack.pop()
        if isinstance(node, dict):
            children: list[tuple[Any, tuple[str | int, ...]]] = [
                (v, (*path, k if isinstance(k, str | int) else str(k))) for k, v in node.items()
            ]
            for key in node:
                if isinstance(key, str):
                    check_text(key, path)
        elif isinstance(node, list):
            children = [(v, (*path, i)) for i, v in enumerate(node)]
        else:
            check_scalar(node, path)
            continue
        if children and len(path) >= limits.max_depth:
            raise LimitError(f"nested deeper than {limits.max_depth} levels", path)
        stack.extend(reversed(children))


def check_exact_integers(value: Any, path: Sequence[str | int]) -> None:
    """Integers of a spec (at ``path``) must survive the native wire form: |n| <= 2**53."""
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(value, tuple(path))]
    while stack:
        node, where = stack.pop()
        if isinstance(node, dict):
            stack.extend((v, (*where, str(k))) for k, v in node.items())
        elif isinstance(node, list):
            stack.extend((v, (*where, i)) for i, v in enumerate(node))
        elif isinstance(node, int) and not isinstance(node, bool) and abs(node) > MAX_EXACT_INTEGER:
            raise LimitError(
                f"integer beyond ±2**53 ({MAX_EXACT_INTEGER}): the wire form would change it", where
            )


def check_text(value: str, path: Sequence[str | int] = ()) -> None:
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise LimitError("text is not valid Unicode (a lone surrogate)", path) from None


def check_scalar(value: Any, path: Sequence[str | int] = ()) -> None:
    if isinstance(value, str):
        check_text(value, path)
        return
    if isinstance(value, bool):
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise LimitError(f"number {value!r} is not finite", path)
    if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
        raise LimitError("integer out of range (beyond a signed 64-bit integer)", path)

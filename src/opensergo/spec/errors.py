"""Validation errors that name the file, the document index and the field path."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from opensergo.spec.secrets import is_secret_name


def format_path(path: Sequence[str | int]) -> str:
    """``("spec", "strategies", 0, "kind")`` -> ``spec.strategies[0].kind``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


class SpecError(ValueError):
    """An invalid OpenSergo object.

    ``str(err)`` reads like ``rules.yaml: document 2: spec.threshold: must be >= 0``.
    """

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        document: int | None = None,
        path: Sequence[str | int] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.source = source
        self.document = document
        self.path = tuple(path)

    @property
    def field(self) -> str:
        """The dotted field path, e.g. ``spec.strategies[0].kind``."""
        return format_path(self.path)

    def located(self, *, source: str | None = None, document: int | None = None) -> SpecError:
        """A copy of this error with the source file and document index filled in."""
        return SpecError(
            self.message,
            source=source if source is not None else self.source,
            document=document if document is not None else self.document,
            path=self.path,
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "source": self.source,
            "document": self.document,
            "field": self.field,
            "message": self.message,
        }

    def __str__(self) -> str:
        parts = []
        if self.source is not None:
            parts.append(self.source)
        if self.document is not None:
            parts.append(f"document {self.document}")
        if self.path:
            parts.append(self.field)
        parts.append(self.message)
        return ": ".join(parts)


class FieldError(ValueError):
    """Raised inside model validators to blame a sub-field rather than the whole model.

    ``path`` is relative to the model that raised it; the loader appends it to the location
    pydantic reports, so a cross-field check can still point at ``spec.slowConditions``.
    """

    def __init__(self, path: Sequence[str | int], message: str) -> None:
        super().__init__(message)
        self.path = tuple(path)
        self.message = message


class SpecErrors(ValueError):
    """Several SpecErrors, e.g. every invalid document of a multi-document file."""

    def __init__(self, errors: Sequence[SpecError]) -> None:
        super().__init__("\n".join(str(e) for e in errors))
        self.errors = list(errors)


# pydantic messages reworded for people editing YAML; {name} is filled from the error context.
_MESSAGES = {
    "missing": "required field is missing",
    "extra_forbidden": "unknown field",
    "greater_than_equal": "must be >= {ge}",
    "greater_than": "must be > {gt}",
    "less_than_equal": "must be <= {le}",
    "less_than": "must be < {lt}",
    "too_short": "must have at least {min_length} item(s)",
    "string_too_short": "must not be shorter than {min_length} character(s)",
    "string_too_long": "must not be longer than {max_length} characters",
    "enum": "must be one of {expected}",
    "literal_error": "must be one of {expected}",
}


def _describe(error: Any) -> tuple[tuple[str | int, ...], str]:
    path: tuple[str | int, ...] = tuple(error["loc"])
    ctx = error.get("ctx") or {}
    cause = ctx.get("error")
    if isinstance(cause, FieldError):
        return path + cause.path, cause.message
    template = _MESSAGES.get(error["type"])
    try:
        message = template.format(**ctx) if template else str(error["msg"])
    except (KeyError, IndexError):
        message = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    # Quote what was written, unless it may be a secret (messages reach logs and API answers).
    quotable = not any(isinstance(p, str) and is_secret_name(p) for p in path)
    if error["type"] not in ("missing", "extra_forbidden") and "input" in error and template and quotable:
        message += f" (got {error['input']!r})"
    return path, message


def from_validation_error(
    exc: ValidationError,
    *,
    source: str | None = None,
    document: int | None = None,
    prefix: Sequence[str | int] = (),
) -> SpecError:
    """One SpecError for a pydantic error: the first problem's path, the others in the message."""
    problems = [_describe(e) for e in exc.errors()]
    path, message = problems[0]
    if len(problems) > 1:
        rest = "; ".join(f"{format_path(tuple(prefix) + p) or '<root>'}: {m}" for p, m in problems[1:])
        message = f"{message} (and {len(problems) - 1} more: {rest})"
    return SpecError(message, source=source, document=document, path=tuple(prefix) + path)

"""Duration strings ('500ms', '5min', '1d') and ratios ('60%', 0.6) as pydantic field types.

Both types remember what the user wrote so a parsed object dumps back to the same YAML, and both
expose the exact numeric value: :attr:`Duration.millis` and the float value of :class:`Ratio`.

Units are the ones the upstream CRD pattern allows, with exact multipliers (the Go control plane
multiplies seconds by 10 instead of 1000; see protocol.md §3.4):
ms = 1, s = 1000, m / min / minute = 60 000, h = 3 600 000, d = 86 400 000 milliseconds.
"""

from __future__ import annotations

import math
import re
from typing import Any

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

UNIT_MILLIS: dict[str, int] = {
    "ms": 1,
    "s": 1000,
    "m": 60_000,
    "min": 60_000,
    "minute": 60_000,
    "h": 3_600_000,
    "d": 86_400_000,
}

MAX_MILLIS = 2**63 - 1  # the widest wire type of a duration: int64 milliseconds
DURATION_PATTERN = r"^\d+(ms|s|m|min|minute|h|d)$"
_DURATION = re.compile(r"^(\d{1,30})(ms|s|minute|min|m|h|d)$")
_PERCENT = re.compile(r"^([0-9]+(?:\.[0-9]+)?)%$")

# Largest unit first, so a value in milliseconds is written the way a person would write it.
_PREFERRED_UNITS = (("d", 86_400_000), ("h", 3_600_000), ("min", 60_000), ("s", 1000))


def parse_duration_millis(text: str) -> int:
    """``'500ms'`` -> 500, ``'1min'`` -> 60000. Raises ValueError on anything else."""
    match = _DURATION.match(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise ValueError(
            f"invalid duration {text!r}: expected an integer followed by one of "
            "ms, s, m, min, minute, h, d (e.g. '500ms', '1s', '5min')"
        )
    millis = int(match.group(1)) * UNIT_MILLIS[match.group(2)]
    if millis > MAX_MILLIS:
        # Every wire type of a duration is at most an int64 of milliseconds.
        raise ValueError(f"invalid duration {text!r}: longer than {MAX_MILLIS} ms")
    return millis


def format_millis(millis: int) -> str:
    """The shortest exact duration string: 60000 -> '1min', 1500 -> '1500ms'."""
    for unit, size in _PREFERRED_UNITS:
        if millis and millis % size == 0:
            return f"{millis // size}{unit}"
    return f"{millis}ms"


class Duration:
    """A duration as written in YAML (``text``) plus its exact length in milliseconds.

    Equality and hashing use the length, so ``'60s'`` equals ``'1min'``.
    """

    __slots__ = ("millis", "text")

    text: str
    millis: int

    def __init__(self, text: str) -> None:
        object.__setattr__(self, "millis", parse_duration_millis(text))
        object.__setattr__(self, "text", text.strip())

    @classmethod
    def from_millis(cls, millis: int) -> Duration:
        if millis < 0:
            raise ValueError(f"invalid duration: {millis} ms is negative")
        return cls(format_millis(millis))

    @property
    def seconds(self) -> float:
        return self.millis / 1000

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Duration is immutable")

    def __reduce__(self) -> tuple[type[Duration], tuple[str]]:
        return (Duration, (self.text,))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Duration):
            return self.millis == other.millis
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.millis)

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"Duration({self.text!r})"

    @classmethod
    def _validate(cls, value: Any) -> Duration:
        if isinstance(value, Duration):
            return value
        if not isinstance(value, str):
            raise ValueError(
                f"invalid duration {value!r}: write it as a string with a unit, e.g. '500ms' or '1s'"
            )
        return cls(value)

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            cls._validate,
            serialization=core_schema.plain_serializer_function_ser_schema(lambda d: d.text),
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {"type": "string", "pattern": DURATION_PATTERN}


def parse_ratio(value: Any) -> float:
    """``'60%'`` -> 0.6; ``0.6`` / ``'0.6'`` -> 0.6. No range check here."""
    if isinstance(value, bool):
        raise ValueError(f"invalid ratio {value!r}")
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        text = value.strip()
        match = _PERCENT.match(text)
        try:
            number = float(match.group(1)) / 100 if match else float(text)
        except ValueError:
            raise ValueError(
                f"invalid ratio {value!r}: expected a percentage like '60%' or a number"
            ) from None
    else:
        raise ValueError(f"invalid ratio {value!r}: expected a percentage like '60%' or a number")
    if not math.isfinite(number):
        raise ValueError(f"invalid ratio {value!r}: must be finite")
    return number


class Ratio(float):
    """A float that remembers whether it was written as ``'60%'`` (``text``) or as a number."""

    text: str | None

    def __new__(cls, value: Any) -> Ratio:
        self = super().__new__(cls, parse_ratio(value))
        self.text = value.strip() if isinstance(value, str) else None
        return self

    def __repr__(self) -> str:
        return f"Ratio({self.text!r})" if self.text is not None else f"Ratio({float(self)!r})"

    def _serialize(self) -> str | float:
        return self.text if self.text is not None else float(self)

    @classmethod
    def _validate(cls, value: Any) -> Ratio:
        return value if isinstance(value, Ratio) else cls(value)

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            cls._validate,
            serialization=core_schema.plain_serializer_function_ser_schema(cls._serialize),
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {"anyOf": [{"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?%$"}, {"type": "number"}]}

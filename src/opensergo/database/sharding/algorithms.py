"""ShardingSphere's built-in sharding algorithms, with its semantics and props.

Standard (one column; ``precise`` for ``=``/``IN``, ``range`` for ``BETWEEN``/``<``/``>``):
``INLINE``, ``MOD``, ``HASH_MOD``, ``VOLUME_RANGE``, ``BOUNDARY_RANGE``, ``AUTO_INTERVAL``,
``INTERVAL``. Complex (several columns): ``COMPLEX_INLINE``. Hint (values from a hint, not from
the SQL): ``HINT_INLINE``. ``CLASS_BASED`` loads a Java class and is refused.

Auto-table algorithms (MOD, HASH_MOD, the ranges, AUTO_INTERVAL) compute a *suffix* and pick the
target named ``prefix + suffix`` (the suffix zero-padded to the shortest suffix of the targets),
as ShardingSphere's ``DataNodeInfo`` does; the others compute the target name itself (INLINE) or
match by suffix (INTERVAL).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Protocol

from opensergo.database.errors import ConfigurationError, UnsupportedStatementError
from opensergo.database.sharding import java
from opensergo.database.sharding.datetimes import JavaPattern, add_units, as_datetime, parse_unit
from opensergo.database.sharding.inline import ExpressionError, Template, compile_template, handle_placeholder

__all__ = [
    "ComplexAlgorithm",
    "DataNodeInfo",
    "HintAlgorithm",
    "RoutingError",
    "StandardAlgorithm",
    "ValueRange",
    "build_algorithm",
]


class RoutingError(UnsupportedStatementError):
    """A sharding value that the rule cannot route (null, no matching target, a range the
    algorithm refuses); the statement was not sent."""


@dataclass(frozen=True, slots=True)
class ValueRange:
    """A range of sharding values; a missing bound is unbounded."""

    lower: Any = None
    lower_closed: bool = True
    upper: Any = None
    upper_closed: bool = True

    @property
    def has_lower(self) -> bool:
        return self.lower is not None

    @property
    def has_upper(self) -> bool:
        return self.upper is not None


@dataclass(frozen=True, slots=True)
class DataNodeInfo:
    """How auto-table suffixes map to target names: ``prefix`` + suffix padded to ``min_length``."""

    prefix: str
    min_length: int
    padding: str = "0"

    @classmethod
    def of(cls, names: Sequence[str], logic_table: str | None = None) -> DataNodeInfo:
        first = names[0]
        if logic_table is not None and first.lower().startswith(logic_table.lower()):
            prefix = first[: len(logic_table)] + re.sub(r"\d+$", "", first[len(logic_table) :])
        else:
            prefix = re.sub(r"\d+$", "", first)
        return cls(prefix, min(len(n) - len(prefix) for n in names))

    def target(self, targets: Sequence[str], suffix: str) -> str | None:
        name = self.prefix + suffix.rjust(self.min_length, self.padding)
        return name if name in targets else None


class StandardAlgorithm(Protocol):
    type: str

    def precise(self, targets: Sequence[str], column: str, value: Any, info: DataNodeInfo) -> str | None: ...

    def range(
        self, targets: Sequence[str], column: str, values: ValueRange, info: DataNodeInfo
    ) -> list[str]: ...


class AutoTableAlgorithm(StandardAlgorithm, Protocol):
    auto_tables_amount: int


class ComplexAlgorithm(Protocol):
    type: str
    columns: tuple[str, ...]

    def shard(
        self,
        targets: Sequence[str],
        values: Mapping[str, Sequence[Any]],
        ranges: Mapping[str, ValueRange],
    ) -> list[str]: ...


class HintAlgorithm(Protocol):
    type: str

    def shard(self, targets: Sequence[str], values: Sequence[Any]) -> list[str]: ...


def _not_null(value: Any, column: str) -> None:
    if value is None:
        raise RoutingError(f"Sharding value can't be null in sql statement (column {column})", column=column)


def _int_prop(props: Mapping[str, Any], key: str, owner: str, *, default: int | None = None) -> int:
    raw = props.get(key, default)
    if raw is None:
        raise ConfigurationError(f"{owner}: prop {key} is required")
    try:
        return int(str(raw).strip())
    except ValueError:
        raise ConfigurationError(f"{owner}: prop {key} must be an integer, got {raw!r}") from None


def _flag(props: Mapping[str, Any], key: str) -> bool:
    return str(props.get(key, "false")).strip().lower() == "true"


# --- INLINE -----------------------------------------------------------------------------------


class InlineAlgorithm:
    """``algorithm-expression`` evaluated with the column bound to the value (Groovy semantics)."""

    type = "INLINE"

    def __init__(self, name: str, props: Mapping[str, Any]) -> None:
        source = str(props.get("algorithm-expression", "")).strip()
        if not source:
            raise ConfigurationError(
                f"sharding algorithm {name!r} (INLINE): algorithm-expression is required"
            )
        try:
            self.template: Template = compile_template(handle_placeholder(source))
        except ExpressionError as e:
            raise ConfigurationError(f"sharding algorithm {name!r} (INLINE): {e}") from None
        self.allow_range = _flag(props, "allow-range-query-with-inline-sharding")
        self.name = name

    @property
    def variables(self) -> frozenset[str]:
        return self.template.variables

    def precise(self, targets: Sequence[str], column: str, value: Any, info: DataNodeInfo) -> str | None:
        _not_null(value, column)
        try:
            return self.template.render({column: java.java_value(value)})
        except ExpressionError as e:
            raise RoutingError(f"sharding algorithm {self.name!r}: {e}", column=column) from None

    def range(self, targets: Sequence[str], column: str, values: ValueRange, info: DataNodeInfo) -> list[str]:
        if not self.allow_range:
            raise RoutingError(
                f"Since the property of `allow-range-query-with-inline-sharding` is false, inline sharding "
                f"algorithm {self.name!r} can not tackle with range query (column {column})",
                column=column,
            )
        return list(targets)


# --- MOD / HASH_MOD ---------------------------------------------------------------------------


def _big_integer(value: Any) -> int:
    """``BigInteger`` of a sharding value as ShardingSphere's MOD reads it."""
    value = java.java_value(value)
    if isinstance(value, java.JavaInt):
        return value.value
    if isinstance(value, Decimal | float):
        return int(value)  # Number.longValue(): truncation
    text = java.to_string(value)
    if not re.fullmatch(r"[+-]?\d+", text):
        raise RoutingError(f"MOD needs an integer sharding value, got {text!r}")
    return int(text)


class ModAlgorithm:
    type = "MOD"

    def __init__(self, name: str, props: Mapping[str, Any]) -> None:
        owner = f"sharding algorithm {name!r} (MOD)"
        self.count = _int_prop(props, "sharding-count", owner)
        if self.count <= 0:
            raise ConfigurationError(f"{owner}: sharding-count must be a positive integer")
        self.start_offset = _int_prop(props, "start-offset", owner, default=0)
        self.stop_offset = _int_prop(props, "stop-offset", owner, default=0)
        if self.start_offset < 0 or self.stop_offset < 0:
            raise ConfigurationError(f"{owner}: start-offset and stop-offset must not be negative")
        self.zero_padding = _flag(props, "zero-padding")
        self.padding_size = max(1, len(str(self.count - 1)))
        self.auto_tables_amount = self.count

    def _suffix(self, number: int) -> str:
        text = str(number % self.count)  # BigInteger.mod: never negative
        return text.zfill(self.padding_size) if self.zero_padding else text

    def _cut(self, value: Any) -> int:
        if self.start_offset == 0 and self.stop_offset == 0:
            return _big_integer(value)
        text = java.to_string(java.java_value(value))
        if len(text) - self.stop_offset <= self.start_offset:
            raise RoutingError(
                f"Sharding value {text!r} is shorter than start-offset {self.start_offset} + "
                f"stop-offset {self.stop_offset}"
            )
        return _big_integer(text[self.start_offset : len(text) - self.stop_offset])

    def precise(self, targets: Sequence[str], column: str, value: Any, info: DataNodeInfo) -> str | None:
        _not_null(value, column)
        return info.target(targets, self._suffix(self._cut(value)))

    def range(self, targets: Sequence[str], column: str, values: ValueRange, info: DataNodeInfo) -> list[str]:
        if not values.has_upper or not values.has_lower:
            return list(targets)
        lower, upper = _big_integer(values.lower), _big_integer(values.upper)
        if upper - lower >= self.count - 1:
            return list(targets)
        found: dict[str, None] = {}
        for number in range(lower, upper + 1):
            target = info.target(targets, self._suffix(number))
            if target is not None:
                found[target] = None
        return list(found)


class HashModAlgorithm:
    type = "HASH_MOD"

    def __init__(self, name: str, props: Mapping[str, Any]) -> None:
        owner = f"sharding algorithm {name!r} (HASH_MOD)"
        self.count = _int_prop(props, "sharding-count", owner)
        if self.count <= 0:
            raise ConfigurationError(f"{owner}: sharding-count must be a positive integer")
        self.auto_tables_amount = self.count

    def precise(self, targets: Sequence[str], column: str, value: Any, info: DataNodeInfo) -> str | None:
        _not_null(value, column)
        # Math.abs((long) hashCode) % count: the int hash widened to long first, so never negative.
        return info.target(targets, str(abs(java.hash_code(java.java_value(value))) % self.count))

    def range(self, targets: Sequence[str], column: str, values: ValueRange, info: DataNodeInfo) -> list[str]:
        return list(targets)


# --- VOLUME_RANGE / BOUNDARY_RANGE ------------------------------------------------------------


def _long_value(value: Any) -> int:
    text = java.to_string(java.java_value(value))
    if not re.fullmatch(r"[+-]?\d+", text):
        raise RoutingError(f"range sharding needs an integer sharding value, got {text!r}")
    return int(text)


class _RangePartitions:
    """Partitions ``i -> [low, high)`` with ``None`` for an unbounded end; suffix = partition index."""

    type = ""
    partitions: list[tuple[int | None, int | None]]

    @property
    def auto_tables_amount(self) -> int:
        return len(self.partitions)

    def partition(self, value: Any) -> int:
        number = _long_value(value)
        for index, (low, high) in enumerate(self.partitions):
            if (low is None or number >= low) and (high is None or number < high):
                return index
        raise RoutingError(f"{self.type}: no partition holds {number}")

    def precise(self, targets: Sequence[str], column: str, value: Any, info: DataNodeInfo) -> str | None:
        _not_null(value, column)
        return info.target(targets, str(self.partition(value)))

    def range(self, targets: Sequence[str], column: str, values: ValueRange, info: DataNodeInfo) -> list[str]:
        first = self.partition(values.lower) if values.has_lower else 0
        last = self.partition(values.upper) if values.has_upper else len(self.partitions) - 1
        found = (info.target(targets, str(p)) for p in range(first, last + 1))
        return list(dict.fromkeys(t for t in found if t is not None))


class VolumeRangeAlgorithm(_RangePartitions):
    type = "VOLUME_RANGE"

    def __init__(self, name: str, props: Mapping[str, Any]) -> None:
        owner = f"sharding algorithm {name!r} (VOLUME_RANGE)"
        lower = _int_prop(props, "range-lower", owner)
        upper = _int_prop(props, "range-upper", owner)
        volume = _int_prop(props, "sharding-volume", owner)
        if volume <= 0 or upper - lower < volume:
            raise ConfigurationError(f"{owner}: the range (upper - lower) can not be smaller than the volume")
        size = -((lower - upper) // volume)  # ceil((upper - lower) / volume)
        self.partitions = [(None, lower)]
        self.partitions += [(lower + i * volume, min(lower + (i + 1) * volume, upper)) for i in range(size)]
        self.partitions.append((upper, None))


class BoundaryRangeAlgorithm(_RangePartitions):
    type = "BOUNDARY_RANGE"

    def __init__(self, name: str, props: Mapping[str, Any]) -> None:
        owner = f"sharding algorithm {name!r} (BOUNDARY_RANGE)"
        raw = props.get("sharding-ranges")
        if raw is None:
            raise ConfigurationError(f"{owner}: prop sharding-ranges is required")
        bounds: list[int] = []
        for item in str(raw).split(","):
            try:
                bounds.append(int(item.strip()))
            except ValueError:
                continue  # ShardingSphere skips what does not parse as a long
        if not bounds:
            raise ConfigurationError(f"{owner}: sharding-ranges can not be empty")
        bounds.sort()
        self.partitions = [(None, bounds[0])]
        self.partitions += [(bounds[i - 1], bounds[i]) for i in range(1, len(bounds))]
        self.partitions.append((bounds[-1], None))


# --- AUTO_INTERVAL / INTERVAL -----------------------------------------------------------------

_SECONDS_PATTERN = JavaPattern("yyyy-MM-dd HH:mm:ss")


def _datetime_prop(props: Mapping[str, Any], key: str, owner: str, pattern: JavaPattern) -> dt.datetime:
    raw = props.get(key)
    if raw is None:
        raise ConfigurationError(f"{owner}: prop {key} is required")
    try:
        return pattern.parse(str(raw).strip())
    except ValueError:
        raise ConfigurationError(
            f"{owner}: prop {key} {raw!r} does not match the datetime pattern {pattern.pattern!r}"
        ) from None


class AutoIntervalAlgorithm:
    type = "AUTO_INTERVAL"

    def __init__(self, name: str, props: Mapping[str, Any]) -> None:
        owner = f"sharding algorithm {name!r} (AUTO_INTERVAL)"
        self.lower = _datetime_prop(props, "datetime-lower", owner, _SECONDS_PATTERN)
        upper = _datetime_prop(props, "datetime-upper", owner, _SECONDS_PATTERN)
        self.seconds = _int_prop(props, "sharding-seconds", owner)
        if self.seconds <= 0:
            raise ConfigurationError(f"{owner}: sharding-seconds must be positive")
        self.auto_tables_amount = math.ceil(self._since_lower(upper) / self.seconds) + 2

    def _since_lower(self, value: dt.datetime) -> int:
        delta = value - self.lower
        millis = delta.days * 86_400_000 + delta.seconds * 1000 + delta.microseconds // 1000
        return int(millis / 1000)  # Duration.toMillis() / 1000 truncates toward zero

    def _parse(self, value: Any) -> dt.datetime:
        if isinstance(value, dt.datetime):
            return value.replace(tzinfo=None, microsecond=0)
        if isinstance(value, dt.date):
            return dt.datetime(value.year, value.month, value.day)
        text = java.to_string(java.java_value(value))
        try:
            return _SECONDS_PATTERN.parse(text, prefix=True)
        except ValueError:
            raise RoutingError(f"AUTO_INTERVAL: {text!r} is not a 'yyyy-MM-dd HH:mm:ss' value") from None

    def partition(self, value: Any) -> int:
        ratio = Decimal(self._since_lower(self._parse(value))) / Decimal(self.seconds)
        position = float(ratio.quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN))  # DecimalFormat("0.00")
        return min(max(0, math.ceil(position)), self.auto_tables_amount - 1)

    def precise(self, targets: Sequence[str], column: str, value: Any, info: DataNodeInfo) -> str | None:
        _not_null(value, column)
        return info.target(targets, str(self.partition(value)))

    def range(self, targets: Sequence[str], column: str, values: ValueRange, info: DataNodeInfo) -> list[str]:
        first = self.partition(values.lower) if values.has_lower else 0
        last = self.partition(values.upper) if values.has_upper else self.auto_tables_amount - 1
        found = (info.target(targets, str(p)) for p in range(first, last + 1))
        return list(dict.fromkeys(t for t in found if t is not None))


class IntervalAlgorithm:
    """Targets named ``…<suffix>`` per step of ``datetime-interval-amount``
    ``datetime-interval-unit`` from ``datetime-lower`` to ``datetime-upper`` (default: now)."""

    type = "INTERVAL"

    def __init__(
        self, name: str, props: Mapping[str, Any], *, now: Callable[[], dt.datetime] = dt.datetime.now
    ) -> None:
        owner = f"sharding algorithm {name!r} (INTERVAL)"
        raw = props.get("datetime-pattern")
        if not raw:
            raise ConfigurationError(f"{owner}: prop datetime-pattern is required")
        self.pattern = JavaPattern(str(raw))
        if not self.pattern.kind:
            raise ConfigurationError(
                f"{owner}: datetime-pattern {raw!r} needs a year (time-only patterns are not supported)"
            )
        self.lower = self.pattern.truncate(_datetime_prop(props, "datetime-lower", owner, self.pattern))
        self.upper = (
            self.pattern.truncate(_datetime_prop(props, "datetime-upper", owner, self.pattern))
            if props.get("datetime-upper") is not None
            else None
        )
        self._now = now
        suffix = props.get("sharding-suffix-pattern")
        if not suffix:
            raise ConfigurationError(f"{owner}: prop sharding-suffix-pattern is required")
        self.suffix = JavaPattern(str(suffix))
        self.amount = _int_prop(props, "datetime-interval-amount", owner, default=1)
        if self.amount <= 0:
            raise ConfigurationError(f"{owner}: datetime-interval-amount must be positive")
        self.unit = parse_unit(str(props.get("datetime-interval-unit", "DAYS")))

    def _value(self, value: Any) -> dt.datetime:
        raw = value if isinstance(value, dt.date) else java.to_string(java.java_value(value))
        try:
            return self.pattern.truncate(as_datetime(raw, self.pattern))
        except ValueError as e:
            raise RoutingError(f"INTERVAL: {e}") from None

    def _matches(self, targets: Sequence[str], values: ValueRange) -> list[str]:
        upper_config = self.upper if self.upper is not None else self.pattern.truncate(self._now())
        low = self._value(values.lower) if values.has_lower else self.lower
        high = self._value(values.upper) if values.has_upper else upper_config
        low_closed = values.lower_closed if values.has_lower else True
        high_closed = values.upper_closed if values.has_upper else True
        if low > high or (low == high and not (low_closed and high_closed)):
            return []
        found: dict[str, None] = {}
        step = self.lower
        while step <= upper_config:
            following = add_units(step, self.amount, self.unit)
            # [step, following) meets the query range?
            meets = (high > step or (high == step and high_closed)) and low < following
            if meets:
                suffix = self.suffix.format(step)
                for target in targets:
                    if target.endswith(suffix):
                        found[target] = None
            step = following
        return list(found)

    def precise(self, targets: Sequence[str], column: str, value: Any, info: DataNodeInfo) -> str | None:
        _not_null(value, column)
        matched = self._matches(targets, ValueRange(value, True, value, True))
        return matched[0] if matched else None

    def range(self, targets: Sequence[str], column: str, values: ValueRange, info: DataNodeInfo) -> list[str]:
        return self._matches(targets, values)


# --- COMPLEX_INLINE / HINT_INLINE -------------------------------------------------------------


class ComplexInlineAlgorithm:
    type = "COMPLEX_INLINE"

    def __init__(self, name: str, props: Mapping[str, Any]) -> None:
        source = str(props.get("algorithm-expression", "")).strip()
        if not source:
            raise ConfigurationError(
                f"sharding algorithm {name!r} (COMPLEX_INLINE): algorithm-expression is required"
            )
        try:
            self.template = compile_template(source)
        except ExpressionError as e:
            raise ConfigurationError(f"sharding algorithm {name!r} (COMPLEX_INLINE): {e}") from None
        columns = str(props.get("sharding-columns", "") or "")
        self.columns = tuple(c.strip() for c in columns.split(",") if c.strip())
        self.allow_range = _flag(props, "allow-range-query-with-inline-sharding")
        self.name = name

    def shard(
        self,
        targets: Sequence[str],
        values: Mapping[str, Sequence[Any]],
        ranges: Mapping[str, ValueRange],
    ) -> list[str]:
        if ranges:
            if not self.allow_range:
                raise RoutingError(
                    "Since the property of `allow-range-query-with-inline-sharding` is false, inline "
                    f"sharding algorithm {self.name!r} can not tackle with range query"
                )
            return list(targets)
        if self.columns and len(self.columns) != len(values):
            raise RoutingError(
                f"Complex inline algorithm {self.name!r} needs values for the sharding columns "
                f"{', '.join(self.columns)}; the statement gives {', '.join(values) or 'none'}"
            )
        names = list(values)
        found: dict[str, None] = {}
        for combination in _product([list(values[n]) for n in names]):
            env = {}
            for column, value in zip(names, combination, strict=True):
                _not_null(value, column)
                env[column] = java.java_value(value)
            try:
                found[self.template.render(env)] = None
            except ExpressionError as e:
                raise RoutingError(f"sharding algorithm {self.name!r}: {e}") from None
        return list(found)


def _product(lists: list[list[Any]]) -> list[tuple[Any, ...]]:
    result: list[tuple[Any, ...]] = [()]
    for options in lists:
        result = [(*prefix, option) for prefix in result for option in options]
    return result


class HintInlineAlgorithm:
    type = "HINT_INLINE"

    def __init__(self, name: str, props: Mapping[str, Any]) -> None:
        source = str(props.get("algorithm-expression", "${value}")).strip() or "${value}"
        try:
            self.template = compile_template(source)
        except ExpressionError as e:
            raise ConfigurationError(f"sharding algorithm {name!r} (HINT_INLINE): {e}") from None
        self.name = name

    def shard(self, targets: Sequence[str], values: Sequence[Any]) -> list[str]:
        if not values:
            return list(targets)
        found: dict[str, None] = {}
        for value in values:
            try:
                found[self.template.render({"value": java.java_value(value)})] = None
            except ExpressionError as e:
                raise RoutingError(f"sharding algorithm {self.name!r}: {e}") from None
        return list(found)


# --- factory ----------------------------------------------------------------------------------

_STANDARD: dict[str, Callable[[str, Mapping[str, Any]], Any]] = {
    "INLINE": InlineAlgorithm,
    "MOD": ModAlgorithm,
    "HASH_MOD": HashModAlgorithm,
    "VOLUME_RANGE": VolumeRangeAlgorithm,
    "BOUNDARY_RANGE": BoundaryRangeAlgorithm,
    "AUTO_INTERVAL": AutoIntervalAlgorithm,
    "INTERVAL": IntervalAlgorithm,
}
AUTO_TABLE_TYPES = frozenset({"MOD", "HASH_MOD", "VOLUME_RANGE", "BOUNDARY_RANGE", "AUTO_INTERVAL"})
_COMPLEX: dict[str, Callable[[str, Mapping[str, Any]], Any]] = {"COMPLEX_INLINE": ComplexInlineAlgorithm}
_HINT: dict[str, Callable[[str, Mapping[str, Any]], Any]] = {"HINT_INLINE": HintInlineAlgorithm}
SUPPORTED = (*_STANDARD, *_COMPLEX, *_HINT)


def build_algorithm(name: str, type_name: str, props: Mapping[str, Any], strategy: str) -> Any:
    """The algorithm ``name`` for a ``strategy`` (standard, complex or hint)."""
    kind = type_name.strip().upper()
    if kind == "CLASS_BASED":
        cls = props.get("algorithmClassName", "?")
        raise ConfigurationError(
            f"sharding algorithm {name!r}: CLASS_BASED runs the Java class {cls} inside ShardingSphere; a "
            f"Python service cannot load it. Use a built-in algorithm ({', '.join(SUPPORTED)})"
        )
    table: dict[str, Callable[[str, Mapping[str, Any]], Any]] = {
        "standard": _STANDARD,
        "complex": _COMPLEX,
        "hint": _HINT,
    }[strategy]
    factory = table.get(kind)
    if factory is None:
        if any(kind in t for t in (_STANDARD, _COMPLEX, _HINT)):
            raise ConfigurationError(
                f"sharding algorithm {name!r}: {kind} cannot serve a {strategy} strategy"
            )
        raise ConfigurationError(
            f"sharding algorithm {name!r}: type {type_name!r} is not supported "
            f"({', '.join(SUPPORTED)}; CLASS_BASED is refused)"
        )
    return factory(name, props)

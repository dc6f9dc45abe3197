"""The part of Java's ``java.time`` that the INTERVAL and AUTO_INTERVAL algorithms use.

``DateTimeFormatter`` patterns are supported for the numeric fields ``y``/``u`` (year), ``M``
(month), ``d`` (day), ``H`` (hour of day), ``m``, ``s``, ``S`` (fraction), quoted literals
(``'T'``) and other non-letter characters. A datetime pattern decides the temporal type, as in
ShardingSphere: with a time of day it is a LocalDateTime, with a day a LocalDate, with year and
month a YearMonth, with a year a Year. All are held as :class:`datetime.datetime` values truncated
to that precision.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

from opensergo.database.errors import ConfigurationError

__all__ = ["JavaPattern", "TemporalKind", "add_units", "parse_unit"]

_FIELDS = {
    "y": "year",
    "u": "year",
    "M": "month",
    "L": "month",
    "d": "day",
    "H": "hour",
    "m": "minute",
    "s": "second",
    "S": "fraction",
}


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    width: int


class TemporalKind:
    DATETIME = "datetime"
    DATE = "date"
    YEAR_MONTH = "year-month"
    YEAR = "year"


class JavaPattern:
    """A compiled ``DateTimeFormatter.ofPattern`` subset: parse and format."""

    def __init__(self, pattern: str) -> None:  # noqa: C901 (complexity debt, see pyproject [tool.ruff.lint.mccabe])
        self.pattern = pattern
        self.items: list[_Field | str] = []
        i = 0
        while i < len(pattern):
            ch = pattern[i]
            if ch == "'":
                end = pattern.find("'", i + 1)
                if end < 0:
                    raise ConfigurationError(f"datetime pattern {pattern!r}: unclosed quote")
                self.items.append(pattern[i + 1 : end] if end > i + 1 else "'")
                i = end + 1
                continue
            if ch.isalpha():
                j = i
                while j < len(pattern) and pattern[j] == ch:
                    j += 1
                if ch not in _FIELDS:
                    raise ConfigurationError(f"datetime pattern {pattern!r}: letter {ch!r} is not supported")
                if ch in "ML" and j - i > 2:
                    raise ConfigurationError(f"datetime pattern {pattern!r}: month names are not supported")
                self.items.append(_Field(_FIELDS[ch], j - i))
                i = j
                continue
            self.items.append(ch)
            i += 1
        names = {item.name for item in self.items if isinstance(item, _Field)}
        self.fields = frozenset(names)
        if "hour" in names or "minute" in names or "second" in names:
            self.kind = TemporalKind.DATETIME
        elif "day" in names:
            self.kind = TemporalKind.DATE
        elif "month" in names and "year" in names:
            self.kind = TemporalKind.YEAR_MONTH
        elif "year" in names:
            self.kind = TemporalKind.YEAR
        else:
            self.kind = ""
        parts: list[str] = []
        for item in self.items:
            if isinstance(item, str):
                parts.append(re.escape(item))
            elif item.name == "year" and item.width != 2:
                parts.append(
                    rf"(?P<year>[+-]?\d{{{max(item.width, 4)},}})"
                    if item.width >= 4
                    else r"(?P<year>\d{1,9})"
                )
            elif item.name == "fraction":
                parts.append(rf"(?P<fraction>\d{{{item.width}}})")
            elif item.width == 1:
                parts.append(rf"(?P<{item.name}>\d{{1,2}})")
            else:
                parts.append(rf"(?P<{item.name}>\d{{{item.width}}})")
        try:
            self._regex = re.compile("".join(parts))
        except re.error as e:  # a field used twice
            raise ConfigurationError(f"datetime pattern {pattern!r}: {e}") from None

    def __len__(self) -> int:
        return len(self.pattern)

    def parse(self, text: str, *, prefix: bool = False) -> dt.datetime:
        """Parse ``text`` (all of it, or a prefix when ``prefix``); missing fields default low."""
        match = self._regex.match(text) if prefix else self._regex.fullmatch(text)
        if match is None:
            raise ValueError(f"{text!r} does not match the datetime pattern {self.pattern!r}")
        values = match.groupdict()
        year = int(values.get("year") or 1970)
        if "year" in values and len(values["year"] or "") == 2:
            year += 2000
        micro = 0
        if values.get("fraction"):
            micro = int((values["fraction"] + "000000")[:6])
        return dt.datetime(
            year,
            int(values.get("month") or 1),
            int(values.get("day") or 1),
            int(values.get("hour") or 0),
            int(values.get("minute") or 0),
            int(values.get("second") or 0),
            micro,
        )

    def format(self, value: dt.datetime) -> str:
        out: list[str] = []
        for item in self.items:
            if isinstance(item, str):
                out.append(item)
                continue
            if item.name == "fraction":
                out.append(f"{value.microsecond:06d}{'0' * 9}"[: item.width])
                continue
            number = getattr(value, item.name)
            if item.name == "year" and item.width == 2:
                number %= 100
            out.append(str(number).zfill(item.width))
        return "".join(out)

    def truncate(self, value: dt.datetime) -> dt.datetime:
        """``value`` at this pattern's temporal precision."""
        if self.kind == TemporalKind.DATE:
            return dt.datetime(value.year, value.month, value.day)
        if self.kind == TemporalKind.YEAR_MONTH:
            return dt.datetime(value.year, value.month, 1)
        if self.kind == TemporalKind.YEAR:
            return dt.datetime(value.year, 1, 1)
        return value


_UNITS = {
    "NANOS": ("micro", 0.001),
    "MICROS": ("micro", 1),
    "MILLIS": ("micro", 1000),
    "SECONDS": ("second", 1),
    "MINUTES": ("second", 60),
    "HOURS": ("second", 3600),
    "HALF_DAYS": ("second", 43200),
    "DAYS": ("day", 1),
    "WEEKS": ("day", 7),
    "MONTHS": ("month", 1),
    "YEARS": ("month", 12),
    "DECADES": ("month", 120),
    "CENTURIES": ("month", 1200),
    "MILLENNIA": ("month", 12000),
}


def parse_unit(name: str) -> str:
    unit = name.strip().upper()
    if unit not in _UNITS:
        raise ConfigurationError(f"datetime-interval-unit {name!r} is not a ChronoUnit ({', '.join(_UNITS)})")
    return unit


def add_units(value: dt.datetime, amount: int, unit: str) -> dt.datetime:
    """``value.plus(amount, unit)`` with Java's month arithmetic (the day is clamped)."""
    base, factor = _UNITS[unit]
    if base == "micro":
        return value + dt.timedelta(microseconds=amount * factor)
    if base == "second":
        return value + dt.timedelta(seconds=amount * factor)
    if base == "day":
        return value + dt.timedelta(days=amount * factor)
    months = value.year * 12 + (value.month - 1) + int(amount * factor)
    year, month = divmod(months, 12)
    day = min(value.day, calendar.monthrange(year, month + 1)[1])
    return value.replace(year=year, month=month + 1, day=day)


def as_datetime(value: Any, pattern: JavaPattern) -> dt.datetime:
    """A sharding value as a datetime: datetime/date objects directly, text parsed by the pattern
    (a longer text is cut to the pattern's length; a shorter one parsed with the pattern's
    beginning, as ShardingSphere does for ORMs that send shorter strings)."""
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=None)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day)
    text = str(value)
    if len(text) >= len(pattern):
        return pattern.parse(text[: len(pattern)])
    return JavaPattern(pattern.pattern[: len(text)]).parse(text)

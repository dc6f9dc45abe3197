"""Java value semantics that ShardingSphere's algorithms depend on (they run on the JVM).

A value bound from SQL becomes a "Java" value before an algorithm sees it: Python ``int`` becomes
an ``Integer`` when it fits in 32 bits, a ``Long`` when it fits in 64, else a ``BigInteger`` (as
ShardingSphere's parser types number literals); ``Decimal`` is ``BigDecimal``, ``float`` is
``Double``, ``str``/``bytes`` are ``String``, ``bool`` is ``Boolean``. The arithmetic below keeps
Java's rules where Python differs: fixed-width integers wrap, ``%`` keeps the dividend's sign,
``Math.abs(Integer.MIN_VALUE)`` stays negative, ``hashCode()`` is Java's per runtime type, and
Groovy's ``/`` on integers yields a ``BigDecimal`` (``7 / 2 == 3.5``).
"""

from __future__ import annotations

import datetime as _dt
import math
import struct
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Context, Decimal, localcontext
from fractions import Fraction
from typing import Any

__all__ = [
    "BIG",
    "INT",
    "LONG",
    "JavaError",
    "JavaInt",
    "hash_code",
    "java_value",
    "to_string",
]

INT, LONG, BIG = 32, 64, 0  # JavaInt.bits: Integer, Long, BigInteger


class JavaError(ValueError):
    """An expression failed as it would in Java/Groovy (division by zero, bad method …)."""


@dataclass(frozen=True, slots=True)
class JavaInt:
    """An integral Java value: ``Integer`` (bits 32), ``Long`` (64) or ``BigInteger`` (0)."""

    value: int
    bits: int

    def __str__(self) -> str:
        return str(self.value)


def wrap(value: int, bits: int) -> int:
    """Two's-complement wrap of ``value`` to ``bits`` (0 = unbounded)."""
    if bits == 0:
        return value
    mask = (1 << bits) - 1
    value &= mask
    return value - (1 << bits) if value >> (bits - 1) else value


def integer(value: int) -> JavaInt:
    """The boxed type Java would give this integer: Integer, Long or BigInteger by magnitude."""
    if -(1 << 31) <= value < (1 << 31):
        return JavaInt(value, INT)
    if -(1 << 63) <= value < (1 << 63):
        return JavaInt(value, LONG)
    return JavaInt(value, BIG)


def java_value(value: Any) -> Any:
    """A Python value (from a driver parameter or a SQL literal) as the Java value an algorithm sees."""
    if type(value) is int:  # the common case, first
        return integer(value)
    if value is None or isinstance(value, JavaInt | Decimal | float | str | list):
        return value
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return integer(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8")
    if isinstance(value, tuple):
        return [java_value(v) for v in value]
    if isinstance(value, _dt.datetime | _dt.date | _dt.time):
        return value.isoformat(sep=" ") if isinstance(value, _dt.datetime) else value.isoformat()
    return str(value)


# --- String.valueOf ---------------------------------------------------------------------------


def _double_string(value: float) -> str:
    """``Double.toString``: plain between 1e-3 and 1e7, else ``d.dddE<n>`` (shortest digits)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    magnitude = abs(value)
    if value == 0 or 1e-3 <= magnitude < 1e7:
        return repr(value)
    _, digits, exponent = Decimal(repr(magnitude)).normalize().as_tuple()
    text = "".join(map(str, digits))
    power = len(text) - 1 + int(exponent)
    return f"{'-' if value < 0 else ''}{text[0]}.{text[1:] or '0'}E{power}"


def to_string(value: Any) -> str:
    """``String.valueOf(value)`` (Groovy's ``toString()``)."""
    if value is None:
        return "null"
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, JavaInt):
        return str(value.value)
    if isinstance(value, Decimal):
        return str(value).replace("e", "E")
    if isinstance(value, float):
        return _double_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(to_string(v) for v in value) + "]"
    if isinstance(value, int):
        return str(value)
    return str(value)


# --- hashCode ---------------------------------------------------------------------------------


def string_hash(text: str) -> int:
    """``String.hashCode``: ``s[0]*31^(n-1) + … + s[n-1]`` over UTF-16 code units, as an int."""
    h = 0
    data = text.encode("utf-16-be")
    for i in range(0, len(data), 2):
        h = (31 * h + ((data[i] << 8) | data[i + 1])) & 0xFFFFFFFF
    return wrap(h, 32)


def _biginteger_hash(value: int) -> int:
    magnitude = abs(value)
    words: list[int] = []
    while magnitude:
        words.append(magnitude & 0xFFFFFFFF)
        magnitude >>= 32
    h = 0
    for word in reversed(words):  # big-endian int array, as BigInteger.mag
        h = (31 * h + word) & 0xFFFFFFFF
    h = wrap(h, 32)
    return wrap(h * (1 if value > 0 else -1 if value < 0 else 0), 32)


def _long_hash(value: int) -> int:
    unsigned = value & 0xFFFFFFFFFFFFFFFF
    return wrap(unsigned ^ (unsigned >> 32), 32)


def hash_code(value: Any) -> int:
    """``value.hashCode()`` for the Java runtime type of ``value`` (see :func:`java_value`)."""
    if value is None:
        raise JavaError("Cannot invoke hashCode() on null")
    if isinstance(value, str):
        return string_hash(value)
    if isinstance(value, bool):
        return 1231 if value else 1237
    if isinstance(value, JavaInt):
        if value.bits == INT:
            return value.value
        if value.bits == LONG:
            return _long_hash(value.value)
        return _biginteger_hash(value.value)
    if isinstance(value, float):
        bits = struct.unpack(">q", struct.pack(">d", value if value == value else math.nan))[0]
        return _long_hash(bits)
    if isinstance(value, Decimal):
        sign, digits, exponent = value.as_tuple()
        unscaled = int("".join(map(str, digits)) or "0") * (-1 if sign else 1)
        scale = -int(exponent)
        return wrap(31 * _biginteger_hash(unscaled) + scale, 32)
    if isinstance(value, list):
        h = 1
        for item in value:
            h = wrap(31 * h + (0 if item is None else hash_code(item)), 32)
        return h
    if isinstance(value, int):
        return hash_code(integer(value))
    raise JavaError(f"hashCode() of {type(value).__name__} is not supported")


# --- arithmetic -------------------------------------------------------------------------------

Number = JavaInt | Decimal | float


def is_number(value: Any) -> bool:
    return isinstance(value, JavaInt | Decimal | float) and not isinstance(value, bool)


_INTEGRAL_KIND = {INT: 0, LONG: 1, BIG: 2}


def _kind(value: Number) -> int:
    # Widening order: Integer < Long < BigInteger < BigDecimal < Double
    if isinstance(value, JavaInt):
        return _INTEGRAL_KIND[value.bits]
    if isinstance(value, Decimal):
        return 3
    return 4


def _to_decimal(value: Number) -> Decimal:
    if isinstance(value, JavaInt):
        return Decimal(value.value)
    if isinstance(value, float):
        return Decimal(repr(value))
    return value


def _to_float(value: Number) -> float:
    if isinstance(value, JavaInt):
        return float(value.value)
    return float(value)


def _int_result(value: int, kind: int) -> JavaInt:
    bits = (INT, LONG, BIG)[kind]
    return JavaInt(wrap(value, bits), bits)


_BIG_CONTEXT = Context(prec=100000, rounding=ROUND_HALF_UP)


def arithmetic(op: str, left: Number, right: Number) -> Number:  # noqa: C901 (complexity debt, see pyproject [tool.ruff.lint.mccabe])
    """``left op right`` with Groovy's number rules for ``+ - * / %``."""
    if type(left) is JavaInt and type(right) is JavaInt and op != "/":  # the common case, fast
        bits = BIG if BIG in (left.bits, right.bits) else max(left.bits, right.bits)
        x, y = left.value, right.value
        if op == "%":
            if y == 0:
                raise JavaError("Division by zero")
            result = abs(x) % abs(y)
            return JavaInt(-result if x < 0 else result, bits)  # |result| < |y|: no wrap needed
        value = x + y if op == "+" else x - y if op == "-" else x * y
        return JavaInt(wrap(value, bits), bits)
    kind = max(_kind(left), _kind(right))
    if kind == 4:
        a, b = _to_float(left), _to_float(right)
        if op == "+":
            return a + b
        if op == "-":
            return a - b
        if op == "*":
            return a * b
        if op == "/":
            if b == 0:
                return math.copysign(math.inf, a) if a else math.nan
            return a / b
        return math.fmod(a, b) if b else math.nan
    if op == "/":
        return groovy_divide(_to_decimal(left), _to_decimal(right))
    if kind == 3:
        dx, dy = _to_decimal(left), _to_decimal(right)
        with localcontext(_BIG_CONTEXT):
            if op == "+":
                return dx + dy
            if op == "-":
                return dx - dy
            if op == "*":
                return dx * dy
            if dy == 0:
                raise JavaError("Division by zero")
            return dx % dy  # Decimal's % keeps the dividend's sign, as BigDecimal.remainder
    assert isinstance(left, JavaInt) and isinstance(right, JavaInt)
    a, b = left.value, right.value
    if op == "+":
        return _int_result(a + b, kind)
    if op == "-":
        return _int_result(a - b, kind)
    if op == "*":
        return _int_result(a * b, kind)
    if b == 0:
        raise JavaError("Division by zero")
    return _int_result(java_remainder(a, b), kind)


def java_remainder(a: int, b: int) -> int:
    """Java's ``a % b``: truncated division, the result has the sign of ``a``."""
    result = abs(a) % abs(b)
    return -result if a < 0 else result


def java_intdiv(a: int, b: int) -> int:
    """Java's integer ``a / b``: truncated toward zero."""
    if b == 0:
        raise JavaError("Division by zero")
    q = abs(a) // abs(b)
    return -q if (a < 0) != (b < 0) else q


def _precision(value: Decimal) -> int:
    return max(1, len(value.as_tuple().digits))


def _scale(value: Decimal) -> int:
    return -int(value.as_tuple().exponent)


def groovy_divide(left: Decimal, right: Decimal) -> Decimal:
    """Groovy's ``/`` on non-floating numbers (BigDecimalMath.divideImpl): the exact quotient
    when it terminates, at the preferred scale ``left.scale - right.scale`` or the smallest
    scale that holds it; otherwise ``max(precision) + 10`` digits, HALF_UP, at most
    ``max(left.scale, right.scale, 10)`` decimals."""
    if right == 0:
        raise JavaError("Division by zero")
    fraction = Fraction(left) / Fraction(right)
    denominator = fraction.denominator
    for prime in (2, 5):
        while denominator % prime == 0:
            denominator //= prime
    if denominator == 1:
        with localcontext(_BIG_CONTEXT):
            quotient = Decimal(fraction.numerator) / Decimal(fraction.denominator)
        minimal = _scale(quotient.normalize()) if quotient != 0 else 0
        scale = max(_scale(left) - _scale(right), minimal)
        with localcontext(_BIG_CONTEXT):
            return quotient.quantize(Decimal(1).scaleb(-scale))
    precision = max(_precision(left), _precision(right)) + 10
    with localcontext(Context(prec=precision, rounding=ROUND_HALF_UP)):
        result = left / right
    scale = max(_scale(left), _scale(right), 10)
    if _scale(result) > scale:
        with localcontext(_BIG_CONTEXT):
            result = result.quantize(Decimal(1).scaleb(-scale), rounding=ROUND_HALF_UP)
    return result


def negate(value: Number) -> Number:
    if isinstance(value, JavaInt):
        return JavaInt(wrap(-value.value, value.bits), value.bits)
    return -value


def java_abs(value: Number) -> Number:
    """``Math.abs`` / Groovy ``abs()``: fixed-width MIN_VALUE stays negative."""
    if isinstance(value, JavaInt):
        return JavaInt(wrap(abs(value.value), value.bits), value.bits)
    if isinstance(value, Decimal):
        return value.copy_abs()
    return math.fabs(value)


def compare(left: Any, right: Any) -> int:
    """Groovy comparison of two values (numbers across types, strings lexicographically by UTF-16)."""
    if is_number(left) and is_number(right):
        if isinstance(left, float) or isinstance(right, float):
            a: Any = _to_float(left)
            b: Any = _to_float(right)
        else:
            a, b = _to_decimal(left), _to_decimal(right)
        return int((a > b) - (a < b))
    if isinstance(left, str) and isinstance(right, str):
        x, y = left.encode("utf-16-be"), right.encode("utf-16-be")
        return (x > y) - (x < y)
    raise JavaError(f"cannot compare {to_string(left)} with {to_string(right)}")


def equals(left: Any, right: Any) -> bool:
    """Groovy ``==``: numbers by value across types, otherwise ``equals``."""
    if left is None or right is None:
        return left is right
    if is_number(left) and is_number(right):
        return compare(left, right) == 0
    if isinstance(left, JavaInt) or isinstance(right, JavaInt):
        return False
    return bool(left == right)


def truthy(value: Any) -> bool:
    """Groovy truth: null, false, 0, "" and empty lists are false."""
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, JavaInt):
        return value.value != 0
    if isinstance(value, Decimal | float):
        return value != 0
    if isinstance(value, str | list):
        return len(value) > 0
    return True


def to_python(value: Any) -> Any:
    """A Java value back as a plain Python value (JavaInt -> int)."""
    if isinstance(value, JavaInt):
        return value.value
    if isinstance(value, list):
        return [to_python(v) for v in value]
    return value

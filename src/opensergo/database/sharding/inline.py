"""Inline expressions: ShardingSphere's Groovy row-value expressions, without a Groovy runtime.

Two uses, one grammar:

* **Expansion** of a configuration string into names: ``ds_${0..1}.t_order_${0..1}`` ->
  ``ds_0.t_order_0, ds_0.t_order_1, ds_1.t_order_0, ds_1.t_order_1``. The text splits on
  top-level commas; in each segment every ``${…}`` (or ``$->{…}``) yields a list (a range, a list
  literal, or one value) and the segment expands to their Cartesian product, leftmost slowest.
  Duplicates are dropped, order kept. ``<LITERAL>`` before the text turns expansion off (a comma
  list); ``<GROOVY>`` is accepted and ignored.
* **Evaluation** of an algorithm expression against bound column values:
  ``ds_${user_id % 2}`` with ``user_id = -3`` gives ``ds_-1``, as Groovy does.

The expression language is a safe subset of Groovy, compiled once into Python closures (never
``eval``): integer/decimal/string/boolean/null literals, lists ``['a', 'b']``, ranges ``0..3`` /
``0..<4`` / ``'a'..'c'``, ``+ - * / % **``, comparisons, ``&& || !``, ``?:`` and ``a ?: b``,
indexing ``s[0]`` / ``s[-1]`` / ``s[0..1]``, property-less method calls on values (``hashCode``,
``abs``, ``intdiv``, ``mod``, ``toString``, ``toInteger``, ``toLong``, ``toBigInteger``,
``toBigDecimal``, ``length``, ``size``, ``substring``, ``padLeft``, ``padRight``, ``toUpperCase``,
``toLowerCase``, ``trim``, ``startsWith``, ``endsWith``, ``contains``, ``charAt``, ``plus``,
``minus``, ``multiply``, ``div``, ``power``, ``max``, ``min``), and the static calls
``Math.abs/floorMod/floorDiv/max/min``, ``String.valueOf`` and ``Integer/Long.valueOf`` /
``parseInt`` / ``parseLong``. Arithmetic follows Java/Groovy (see :mod:`.java`). Anything else is
refused when the rule is compiled, with the position of the offending text.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from opensergo.database.sharding import java
from opensergo.database.sharding.java import BIG, INT, LONG, JavaError, JavaInt

__all__ = [
    "ExpressionError",
    "Template",
    "compile_expression",
    "compile_template",
    "expand",
    "handle_placeholder",
]

MAX_EXPANSION = 65536  # names one configuration string may expand to
_MAX_POWER = 4096


class ExpressionError(ValueError):
    """An inline expression that cannot be compiled or evaluated."""


Env = Mapping[str, Any]
Compiled = Callable[[Env], Any]


# --- lexer ------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<number>\d+\.\d+(?:[eE][+-]?\d+)?[gGdDfF]?|\d+(?:[eE][+-]?\d+)[dDfF]?|\d+[lLgGiIdDfF]?)
  | (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\$]|\\.)*")
  | (?P<name>[A-Za-z_][A-Za-z_0-9]*)
  | (?P<op>\.\.<|\.\.|\?:|\*\*|==|!=|<=|>=|&&|\|\||[-+*/%()\[\],.?:<>!])
    """,
    re.X,
)

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "'": "'", '"': '"', "\\": "\\", "$": "$"}


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # number | string | name | op | end
    text: str
    pos: int


def _tokens(source: str) -> list[_Token]:
    out: list[_Token] = []
    pos = 0
    while pos < len(source):
        match = _TOKEN.match(source, pos)
        if match is None:
            raise ExpressionError(f"unexpected {source[pos]!r} at position {pos} in {source!r}")
        kind = match.lastgroup or ""
        if kind != "ws":
            out.append(_Token(kind, match.group(0), pos))
        pos = match.end()
    out.append(_Token("end", "", len(source)))
    return out


def _unquote(text: str) -> str:
    body = text[1:-1]
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), body)


def _number(text: str) -> Any:
    """A Groovy number literal: Integer/Long/BigInteger by size, ``L``/``G``/``I`` suffixes,
    decimals as BigDecimal, ``d``/``f`` as Double."""
    suffix = text[-1].lower() if text[-1] in "lLgGiIdDfF" else ""
    digits = text[:-1] if suffix else text
    if suffix in ("d", "f"):
        return float(digits)
    if "." in digits or "e" in digits.lower():
        return Decimal(digits)
    value = int(digits)
    if suffix == "l":
        return JavaInt(java.wrap(value, 64), LONG)
    if suffix == "g":
        return JavaInt(value, BIG)
    if suffix == "i":
        return JavaInt(java.wrap(value, 32), INT)
    return java.integer(value)


# --- parser -> closures -----------------------------------------------------------------------


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source
        self.tokens = _tokens(source)
        self.i = 0
        self.names: set[str] = set()

    # helpers
    @property
    def tok(self) -> _Token:
        return self.tokens[self.i]

    def error(self, message: str, token: _Token | None = None) -> ExpressionError:
        at = (token or self.tok).pos
        return ExpressionError(f"{message} at position {at} in {self.source!r}")

    def accept(self, *ops: str) -> str | None:
        tok = self.tok
        if tok.kind == "op" and tok.text in ops:
            self.i += 1
            return tok.text
        return None

    def expect(self, op: str) -> None:
        if self.accept(op) is None:
            raise self.error(f"expected {op!r}")

    def parse(self) -> Compiled:
        node = self.ternary()
        if self.tok.kind != "end":
            raise self.error(f"unexpected {self.tok.text!r}")
        return node

    # grammar
    def ternary(self) -> Compiled:
        cond = self.logical_or()
        if self.accept("?:"):
            other = self.ternary()
            return lambda env: v if java.truthy(v := cond(env)) else other(env)
        if self.accept("?"):
            yes = self.ternary()
            self.expect(":")
            no = self.ternary()
            return lambda env: yes(env) if java.truthy(cond(env)) else no(env)
        return cond

    def logical_or(self) -> Compiled:
        node = self.logical_and()
        while self.accept("||"):
            node = _either(node, self.logical_and())
        return node

    def logical_and(self) -> Compiled:
        node = self.equality()
        while self.accept("&&"):
            node = _both(node, self.equality())
        return node

    def equality(self) -> Compiled:
        node = self.relational()
        while (op := self.accept("==", "!=")) is not None:
            node = _equals(node, self.relational(), negate=op == "!=")
        return node

    def relational(self) -> Compiled:
        node = self.range()
        while (op := self.accept("<", "<=", ">", ">=")) is not None:
            node = _comparison(op, node, self.range())
        return node

    def range(self) -> Compiled:
        node = self.additive()
        op = self.accept("..", "..<")
        if op is None:
            return node
        upper = self.additive()
        exclusive = op == "..<"
        return lambda env: _range(node(env), upper(env), exclusive)

    def additive(self) -> Compiled:
        node = self.multiplicative()
        while (op := self.accept("+", "-")) is not None:
            node = _binary(op, node, self.multiplicative())
        return node

    def multiplicative(self) -> Compiled:
        node = self.unary()
        while (op := self.accept("*", "/", "%")) is not None:
            node = _binary(op, node, self.unary())
        return node

    def unary(self) -> Compiled:
        if self.accept("-"):
            operand = self.unary()
            return lambda env: _negate(operand(env))
        if self.accept("+"):
            return self.unary()
        if self.accept("!"):
            operand = self.unary()
            return lambda env: not java.truthy(operand(env))
        return self.power()

    def power(self) -> Compiled:
        base = self.postfix()
        if self.accept("**"):
            exponent = self.unary()
            return lambda env: _power(base(env), exponent(env))
        return base

    def postfix(self) -> Compiled:
        tok = self.tok
        if tok.kind == "name" and tok.text in _STATICS and self.tokens[self.i + 1].text == ".":
            node = self.static_call()
        else:
            node = self.primary()
        while True:
            if self.accept("."):
                name_tok = self.tok
                if name_tok.kind != "name":
                    raise self.error("expected a method name")
                self.i += 1
                if self.tok.text != "(":
                    raise self.error(f"property access .{name_tok.text} is not supported", name_tok)
                args = self.arguments()
                method = _METHODS.get(name_tok.text)
                if method is None:
                    raise self.error(f"method {name_tok.text}() is not supported", name_tok)
                node = _method_call(method, name_tok.text, node, args)
            elif self.accept("["):
                index = self.ternary()
                self.expect("]")
                node = _index(node, index)
            else:
                return node

    def static_call(self) -> Compiled:
        owner = self.tok.text
        self.i += 2  # owner and '.'
        name_tok = self.tok
        if name_tok.kind != "name":
            raise self.error("expected a method name")
        self.i += 1
        function = _STATICS[owner].get(name_tok.text)
        if function is None:
            raise self.error(f"{owner}.{name_tok.text}() is not supported", name_tok)
        args = self.arguments()
        return lambda env: function(*[a(env) for a in args])

    def arguments(self) -> list[Compiled]:
        self.expect("(")
        args: list[Compiled] = []
        if not self.accept(")"):
            while True:
                args.append(self.ternary())
                if self.accept(")"):
                    break
                self.expect(",")
        return args

    def primary(self) -> Compiled:  # noqa: C901 (complexity debt, see pyproject [tool.ruff.lint.mccabe])
        tok = self.tok
        if tok.kind == "number":
            self.i += 1
            value = _number(tok.text)
            return lambda env: value
        if tok.kind == "string":
            self.i += 1
            text = _unquote(tok.text)
            return lambda env: text
        if tok.kind == "name":
            self.i += 1
            if tok.text in ("true", "false"):
                flag = tok.text == "true"
                return lambda env: flag
            if tok.text == "null":
                return lambda env: None
            if tok.text in _STATICS:
                raise self.error(f"{tok.text} is only usable as {tok.text}.method(…)", tok)
            name = tok.text
            self.names.add(name)

            def variable(env: Env) -> Any:
                try:
                    return env[name]
                except KeyError:
                    raise ExpressionError(f"no value for {name!r} in {self.source!r}") from None

            return variable
        if self.accept("("):
            node = self.ternary()
            self.expect(")")
            return node
        if self.accept("["):
            items: list[Compiled] = []
            if not self.accept("]"):
                while True:
                    items.append(self.ternary())
                    if self.accept("]"):
                        break
                    self.expect(",")
            return lambda env: [item(env) for item in items]
        raise self.error(f"unexpected {tok.text or 'end of expression'!r}")


# --- operations -------------------------------------------------------------------------------


def _either(left: Compiled, right: Compiled) -> Compiled:
    return lambda env: java.truthy(left(env)) or java.truthy(right(env))


def _both(left: Compiled, right: Compiled) -> Compiled:
    return lambda env: java.truthy(left(env)) and java.truthy(right(env))


def _equals(left: Compiled, right: Compiled, *, negate: bool) -> Compiled:
    return lambda env: java.equals(left(env), right(env)) != negate


_TESTS: dict[str, Callable[[int], bool]] = {
    "<": lambda c: c < 0,
    "<=": lambda c: c <= 0,
    ">": lambda c: c > 0,
    ">=": lambda c: c >= 0,
}


def _comparison(op: str, left: Compiled, right: Compiled) -> Compiled:
    test = _TESTS[op]
    return lambda env: test(java.compare(left(env), right(env)))


def _binary(op: str, left: Compiled, right: Compiled) -> Compiled:
    def run(env: Env) -> Any:
        return _apply(op, left(env), right(env))

    return run


def _apply(op: str, a: Any, b: Any) -> Any:
    if type(a) is JavaInt and type(b) is JavaInt:  # the common case (``user_id % 2``), first
        return java.arithmetic(op, a, b)
    if op == "+":
        if isinstance(a, str) or isinstance(b, str):
            if isinstance(a, list):
                return [*a, b]
            return java.to_string(a) + java.to_string(b)
        if isinstance(a, list):
            return [*a, *b] if isinstance(b, list) else [*a, b]
    if op == "-" and isinstance(a, str):
        return a.replace(java.to_string(b), "", 1)
    if java.is_number(a) and java.is_number(b):
        return java.arithmetic(op, a, b)
    if a is None or b is None:
        raise JavaError(f"Cannot execute null {op} value")
    raise JavaError(f"{op} is not defined for {java.to_string(a)!r} and {java.to_string(b)!r}")


def _negate(value: Any) -> Any:
    if java.is_number(value):
        return java.negate(value)
    raise JavaError(f"cannot negate {java.to_string(value)!r}")


def _power(base: Any, exponent: Any) -> Any:
    if not (java.is_number(base) and java.is_number(exponent)):
        raise JavaError("** needs numbers")
    if isinstance(base, JavaInt) and isinstance(exponent, JavaInt) and exponent.value >= 0:
        if exponent.value > _MAX_POWER:
            raise JavaError("exponent too large")
        result = base.value**exponent.value
        # Groovy widens an integral power to Long / BigInteger rather than overflowing.
        return java.integer(result) if base.bits != BIG else JavaInt(result, BIG)
    return float(java.to_string(base)) ** float(java.to_string(exponent))


def _range(low: Any, high: Any, exclusive: bool) -> list[Any]:
    if isinstance(low, JavaInt) and isinstance(high, JavaInt):
        step = 1 if high.value >= low.value else -1
        stop = high.value if exclusive else high.value + step
        if abs(stop - low.value) > MAX_EXPANSION:
            raise ExpressionError(f"range {low.value}..{high.value} is larger than {MAX_EXPANSION}")
        bits = max(low.bits, high.bits) if BIG not in (low.bits, high.bits) else BIG
        return [JavaInt(v, bits) for v in range(low.value, stop, step)]
    if isinstance(low, str) and isinstance(high, str) and len(low) == 1 and len(high) == 1:
        a, b = ord(low), ord(high)
        step = 1 if b >= a else -1
        stop = b if exclusive else b + step
        return [chr(c) for c in range(a, stop, step)]
    raise JavaError(f"cannot make a range from {java.to_string(low)!r} to {java.to_string(high)!r}")


def _index(target: Compiled, index: Compiled) -> Compiled:
    def run(env: Env) -> Any:
        value, at = target(env), index(env)
        if not isinstance(value, str | list):
            raise JavaError(f"cannot index {java.to_string(value)!r}")
        if isinstance(at, list):  # a range: a slice (Groovy's s[0..2])
            picked = [value[_position(value, i)] for i in at]
            return "".join(picked) if isinstance(value, str) else picked
        return value[_position(value, at)]

    return run


def _position(value: str | list[Any], at: Any) -> int:
    if not isinstance(at, JavaInt):
        raise JavaError("an index must be an integer")
    position = at.value + len(value) if at.value < 0 else at.value
    if not 0 <= position < len(value):
        raise JavaError(f"index {at.value} out of range for length {len(value)}")
    return position


def _int_arg(value: Any, what: str) -> int:
    if isinstance(value, JavaInt):
        return value.value
    raise JavaError(f"{what} needs an integer argument")


def _string_method(function: Callable[..., Any]) -> Callable[..., Any]:
    def run(target: Any, *args: Any) -> Any:
        if not isinstance(target, str):
            raise JavaError("is a String method")
        return function(target, *args)

    return run


def _to_integer(value: Any, bits: int) -> JavaInt:
    if isinstance(value, JavaInt):
        return JavaInt(java.wrap(value.value, bits), bits)
    if isinstance(value, Decimal):
        return JavaInt(java.wrap(int(value), bits), bits)  # int() truncates toward zero, as intValue()
    if isinstance(value, float):
        return JavaInt(java.wrap(int(value), bits), bits)
    if isinstance(value, str):
        try:
            parsed = int(value.strip())
        except ValueError:
            raise JavaError(f"For input string: {value!r}") from None
        if bits and java.wrap(parsed, bits) != parsed:
            raise JavaError(f"For input string: {value!r} (out of range)")
        return JavaInt(parsed, bits)
    raise JavaError(f"cannot convert {java.to_string(value)!r} to a number")


def _pad(left: bool) -> Callable[..., str]:
    def pad(target: str, size: Any, filler: Any = " ") -> str:
        width = _int_arg(size, "padLeft/padRight")
        fill = java.to_string(filler)
        missing = width - len(target)
        if missing <= 0 or not fill:
            return target
        padding = (fill * (missing // len(fill) + 1))[:missing]
        return padding + target if left else target + padding

    return pad


def _substring(target: str, start: Any, end: Any = None) -> str:
    begin = _int_arg(start, "substring")
    stop = len(target) if end is None else _int_arg(end, "substring")
    if not 0 <= begin <= stop <= len(target):
        raise JavaError(f"substring({begin}, {stop}) out of range for length {len(target)}")
    return target[begin:stop]


def _number_method(function: Callable[..., Any]) -> Callable[..., Any]:
    def run(target: Any, *args: Any) -> Any:
        if not java.is_number(target):
            raise JavaError("is a Number method")
        return function(target, *args)

    return run


def _intdiv(target: Any, other: Any) -> JavaInt:
    if not (isinstance(target, JavaInt) and isinstance(other, JavaInt)):
        raise JavaError("intdiv() needs integers")
    bits = BIG if BIG in (target.bits, other.bits) else max(target.bits, other.bits)
    return JavaInt(java.wrap(java.java_intdiv(target.value, other.value), bits), bits)


def _mod(target: Any, other: Any) -> Any:
    # Groovy's mod(): like %, but the result is never negative for a positive divisor.
    result = java.arithmetic("%", target, other)
    if isinstance(result, JavaInt) and result.value < 0 and isinstance(other, JavaInt) and other.value > 0:
        return JavaInt(java.wrap(result.value + other.value, result.bits), result.bits)
    return result


def _extreme(pick_max: bool) -> Callable[..., Any]:
    def run(a: Any, b: Any) -> Any:
        c = java.compare(a, b)
        return (a if c >= 0 else b) if pick_max else (a if c <= 0 else b)

    return run


def _floor_mod(a: Any, b: Any) -> JavaInt:
    if not (isinstance(a, JavaInt) and isinstance(b, JavaInt)):
        raise JavaError("Math.floorMod needs integers")
    if b.value == 0:
        raise JavaError("Division by zero")
    bits = max(a.bits, b.bits)
    return JavaInt(a.value % b.value, bits)  # Python's % is floor modulo


def _floor_div(a: Any, b: Any) -> JavaInt:
    if not (isinstance(a, JavaInt) and isinstance(b, JavaInt)):
        raise JavaError("Math.floorDiv needs integers")
    if b.value == 0:
        raise JavaError("Division by zero")
    bits = max(a.bits, b.bits)
    return JavaInt(java.wrap(a.value // b.value, bits), bits)


def _size(target: Any) -> JavaInt:
    if isinstance(target, str | list):
        return JavaInt(len(target), INT)
    raise JavaError("size() needs a String or a list")


_METHODS: dict[str, Callable[..., Any]] = {
    "hashCode": lambda target: JavaInt(java.hash_code(target), INT),
    "toString": lambda target: java.to_string(target),
    "abs": _number_method(java.java_abs),
    "intdiv": _intdiv,
    "mod": _mod,
    "plus": lambda a, b: _apply("+", a, b),
    "minus": lambda a, b: _apply("-", a, b),
    "multiply": lambda a, b: _apply("*", a, b),
    "div": lambda a, b: _apply("/", a, b),
    "power": _power,
    "toInteger": lambda target: _to_integer(target, INT),
    "toLong": lambda target: _to_integer(target, LONG),
    "toBigInteger": lambda target: _to_integer(target, BIG),
    "toBigDecimal": lambda target: Decimal(java.to_string(target)),
    "length": _string_method(lambda s: JavaInt(len(s.encode("utf-16-be")) // 2, INT)),
    "size": _size,
    "substring": _string_method(_substring),
    "padLeft": _string_method(_pad(True)),
    "padRight": _string_method(_pad(False)),
    "toUpperCase": _string_method(str.upper),
    "toLowerCase": _string_method(str.lower),
    "trim": _string_method(lambda s: s.strip("".join(chr(i) for i in range(33)))),
    "startsWith": _string_method(lambda s, p: s.startswith(java.to_string(p))),
    "endsWith": _string_method(lambda s, p: s.endswith(java.to_string(p))),
    "contains": lambda s, p: (
        (java.to_string(p) in s) if isinstance(s, str) else any(java.equals(x, p) for x in s)
    ),
    "charAt": _string_method(lambda s, i: s[_position(s, i)]),
    "max": _extreme(True),
    "min": _extreme(False),
}

_STATICS: dict[str, dict[str, Callable[..., Any]]] = {
    "Math": {
        "abs": lambda v: java.java_abs(v) if java.is_number(v) else _fail("Math.abs needs a number"),
        "floorMod": _floor_mod,
        "floorDiv": _floor_div,
        "max": _extreme(True),
        "min": _extreme(False),
    },
    "String": {"valueOf": lambda v: java.to_string(v)},
    "Integer": {"valueOf": lambda v: _to_integer(v, INT), "parseInt": lambda v: _to_integer(v, INT)},
    "Long": {"valueOf": lambda v: _to_integer(v, LONG), "parseLong": lambda v: _to_integer(v, LONG)},
}


def _fail(message: str) -> Any:
    raise JavaError(message)


def _method_call(method: Callable[..., Any], name: str, target: Compiled, args: list[Compiled]) -> Compiled:
    def run(env: Env) -> Any:
        value = target(env)
        if value is None:
            raise JavaError(f"Cannot invoke {name}() on null")
        return method(value, *[a(env) for a in args])

    return run


def compile_expression(source: str) -> tuple[Compiled, frozenset[str]]:
    """Compile one Groovy expression; returns the closure and the variable names it reads."""
    parser = _Parser(source)
    return parser.parse(), frozenset(parser.names)


# --- templates: text with ${…} placeholders ---------------------------------------------------


def handle_placeholder(text: str) -> str:
    """``$->{`` is an alias of ``${`` (it avoids Spring's placeholder syntax)."""
    return text.replace("$->{", "${")


def _split_placeholders(text: str) -> list[tuple[bool, str]]:  # noqa: C901 (complexity debt, see pyproject [tool.ruff.lint.mccabe])
    """``[(is_expression, text)]``: literal runs and the bodies of ``${…}``, in order."""
    parts: list[tuple[bool, str]] = []
    i = 0
    literal: list[str] = []
    while i < len(text):
        if text.startswith("${", i):
            depth, j, quote = 1, i + 2, ""
            while j < len(text) and depth:
                ch = text[j]
                if quote:
                    if ch == "\\":
                        j += 1
                    elif ch == quote:
                        quote = ""
                elif ch in "'\"":
                    quote = ch
                elif ch == "{":
                    depth += 1
                elif ch == "}":
                    depth -= 1
                j += 1
            if depth:
                raise ExpressionError(f"unclosed ${{ in {text!r}")
            if literal:
                parts.append((False, "".join(literal)))
                literal = []
            parts.append((True, text[i + 2 : j - 1]))
            i = j
        else:
            literal.append(text[i])
            i += 1
    if literal:
        parts.append((False, "".join(literal)))
    return parts


@dataclass(frozen=True, slots=True)
class Template:
    """A compiled text with placeholders, e.g. ``ds_${user_id % 2}``."""

    source: str
    parts: tuple[str | Compiled, ...]
    variables: frozenset[str]

    def render(self, env: Env) -> str:
        """The text with every placeholder replaced by its value (Groovy GString semantics)."""
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            try:
                value = part(env)
            except JavaError as e:
                raise ExpressionError(f"{self.source!r}: {e}") from None
            out.append(java.to_string(value))
        return "".join(out)

    def expand(self, env: Env | None = None) -> list[str]:
        """Every name the text denotes: placeholders yielding lists multiply out (leftmost slowest)."""
        choices: list[Sequence[str]] = []
        for part in self.parts:
            if isinstance(part, str):
                choices.append((part,))
                continue
            try:
                value = part(env or {})
            except JavaError as e:
                raise ExpressionError(f"{self.source!r}: {e}") from None
            values = value if isinstance(value, list) else [value]
            choices.append([java.to_string(v) for v in values])
        total = 1
        for options in choices:
            total *= max(1, len(options))
            if total > MAX_EXPANSION:
                raise ExpressionError(f"{self.source!r} expands to more than {MAX_EXPANSION} names")
        return ["".join(combo) for combo in itertools.product(*choices)]


def compile_template(text: str) -> Template:
    """Compile ``text`` (``$->{`` accepted) into a :class:`Template`."""
    source = handle_placeholder(text.strip())
    parts: list[str | Compiled] = []
    names: set[str] = set()
    for is_expression, body in _split_placeholders(source):
        if not is_expression:
            parts.append(body)
            continue
        compiled, used = compile_expression(body)
        parts.append(compiled)
        names |= used
    return Template(source, tuple(parts), frozenset(names))


def _split_segments(text: str) -> list[str]:
    """Split on commas outside ``${…}`` (and outside quotes inside them)."""
    segments: list[str] = []
    depth, quote, start = 0, "", 0
    i = 0
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif depth and ch in "'\"":
            quote = ch
        elif text.startswith("${", i):
            depth += 1
            i += 1
        elif ch == "{" and depth:
            depth += 1
        elif ch == "}" and depth:
            depth -= 1
        elif ch == "," and not depth:
            segments.append(text[start:i])
            start = i + 1
        i += 1
    segments.append(text[start:])
    return segments


def expand(text: str | None) -> list[str]:
    """Expand a configuration string (``actualDataNodes``, ``actualDataSources``) into names."""
    if text is None:
        return []
    source = text.strip()
    if source.startswith("<LITERAL>"):
        return list(dict.fromkeys(s.strip() for s in source[len("<LITERAL>") :].split(",") if s.strip()))
    if source.startswith("<GROOVY>"):
        source = source[len("<GROOVY>") :]
    elif source.startswith("<"):
        kind = source[1 : source.find(">")] if ">" in source else source
        raise ExpressionError(f"inline expression type <{kind}> is not supported (LITERAL, GROOVY)")
    source = handle_placeholder(source)
    names: list[str] = []
    total = 0
    for segment in _split_segments(source):
        segment = segment.strip()
        if not segment:
            continue
        expanded = compile_template(segment).expand()
        total += len(expanded)
        if total > MAX_EXPANSION:
            raise ExpressionError(f"{text!r} expands to more than {MAX_EXPANSION} names")
        names.extend(expanded)
    return list(dict.fromkeys(names))


def names_of(items: Iterable[str]) -> list[str]:
    """Expand several configuration strings in order (duplicates dropped)."""
    out: list[str] = []
    for item in items:
        out.extend(expand(item))
    return list(dict.fromkeys(out))

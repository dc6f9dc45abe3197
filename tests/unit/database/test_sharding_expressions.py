"""Java value semantics (against values produced by a JVM, java/vectors.json) and the inline
expression language: expansion of data nodes and Groovy-like evaluation, never Python eval."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from opensergo.database.sharding import java
from opensergo.database.sharding.inline import ExpressionError, compile_template, expand
from opensergo.database.sharding.java import BIG, INT, LONG, JavaInt

pytestmark = pytest.mark.unit

VECTORS: dict[str, Any] = json.loads((Path(__file__).parent / "java" / "vectors.json").read_text())


def render(expression: str, **values: Any) -> str:
    return compile_template(expression).render({k: java.java_value(v) for k, v in values.items()})


# --- against the JVM ----------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "hash_value", "hash_mod_4"), VECTORS["string_hash"])
def test_string_hash_code_matches_java(text: str, hash_value: int, hash_mod_4: int) -> None:
    assert java.string_hash(text) == hash_value
    assert abs(java.hash_code(text)) % 4 == hash_mod_4  # HASH_MOD: Math.abs((long) hashCode) % 4


@pytest.mark.parametrize(("value", "hash_value", "mod_2", "absolute"), VECTORS["int"])
def test_integer_semantics_match_java(value: int, hash_value: int, mod_2: int, absolute: int) -> None:
    boxed = JavaInt(value, INT)
    assert java.hash_code(boxed) == hash_value
    assert java.arithmetic("%", boxed, JavaInt(2, INT)) == JavaInt(mod_2, INT)  # sign of the dividend
    assert java.java_abs(boxed) == JavaInt(absolute, INT)  # Math.abs(Integer.MIN_VALUE) < 0


@pytest.mark.parametrize(("value", "hash_value", "mod_3", "absolute"), VECTORS["long"])
def test_long_semantics_match_java(value: int, hash_value: int, mod_3: int, absolute: int) -> None:
    boxed = JavaInt(value, LONG)
    assert java.hash_code(boxed) == hash_value
    assert java.arithmetic("%", boxed, JavaInt(3, INT)) == JavaInt(mod_3, LONG)
    assert java.java_abs(boxed) == JavaInt(absolute, LONG)


@pytest.mark.parametrize(("text", "hash_value"), VECTORS["big_integer"])
def test_big_integer_hash_matches_java(text: str, hash_value: int) -> None:
    assert java.hash_code(JavaInt(int(text), BIG)) == hash_value


@pytest.mark.parametrize(("text", "hash_value", "rendered"), VECTORS["big_decimal"])
def test_big_decimal_hash_and_text_match_java(text: str, hash_value: int, rendered: str) -> None:
    assert java.hash_code(Decimal(text)) == hash_value
    assert java.to_string(Decimal(text)) == rendered


@pytest.mark.parametrize(("value", "hash_value", "rendered"), VECTORS["double"])
def test_double_hash_and_text_match_java(value: float, hash_value: int, rendered: str) -> None:
    assert java.hash_code(value) == hash_value
    assert java.to_string(value) == rendered


def test_boolean_hash_matches_java() -> None:
    assert [[flag, java.hash_code(flag)] for flag in (True, False)] == VECTORS["boolean"]


@pytest.mark.parametrize(("value", "big_integer_mod", "remainder"), VECTORS["mod4"])
def test_mod_never_negative_but_percent_keeps_the_sign(
    value: int, big_integer_mod: int, remainder: int
) -> None:
    from opensergo.database.sharding.algorithms import DataNodeInfo, ModAlgorithm

    mod = ModAlgorithm("m", {"sharding-count": 4})
    info = DataNodeInfo("t_", 1)
    assert mod.precise([f"t_{i}" for i in range(4)], "id", value, info) == f"t_{big_integer_mod}"
    assert render("t_${id % 4}", id=value) == f"t_{remainder}"


# --- values as Java types -----------------------------------------------------------------------


def test_python_values_become_java_values() -> None:
    assert java.java_value(5) == JavaInt(5, INT)
    assert java.java_value(1 << 40) == JavaInt(1 << 40, LONG)
    assert java.java_value(1 << 70) == JavaInt(1 << 70, BIG)
    assert java.java_value(b"abc") == "abc"
    assert java.java_value(True) is True
    assert java.java_value(Decimal("1.5")) == Decimal("1.5")


def test_integer_arithmetic_wraps_like_java() -> None:
    assert render("${x * 2}", x=2**31 - 1) == "-2"  # Integer overflow wraps
    assert render("${x * 2}", x=2**40) == str(2**41)  # Long
    assert render("${x + 1}", x=2**63 - 1) == str(-(2**63))


def test_groovy_division_gives_big_decimal() -> None:
    assert render("${7 / 2}") == "3.5"
    assert render("${4 / 2}") == "2"
    assert render("${1 / 3}") == "0.3333333333"
    assert render("${2 / 3}") == "0.6666666667"
    assert render("${10 / 4}") == "2.5"
    assert render("${x.intdiv(2)}", x=7) == "3"
    assert render("${x.intdiv(2)}", x=-7) == "-3"
    with pytest.raises(ExpressionError, match="Division by zero"):
        render("${x % 0}", x=1)


# --- inline expressions -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "names"),
    [
        (
            "ds_${0..1}.t_order_${0..1}",
            ["ds_0.t_order_0", "ds_0.t_order_1", "ds_1.t_order_0", "ds_1.t_order_1"],
        ),
        (
            "ds_$->{0..1}.t_order_$->{0..1}",
            ["ds_0.t_order_0", "ds_0.t_order_1", "ds_1.t_order_0", "ds_1.t_order_1"],
        ),
        (
            "${['online','offline']}_table${1..3}",
            [
                "online_table1",
                "online_table2",
                "online_table3",
                "offline_table1",
                "offline_table2",
                "offline_table3",
            ],
        ),
        ("ds_0.t_${0..<2}, ds_1.t_x", ["ds_0.t_0", "ds_0.t_1", "ds_1.t_x"]),
        ("t_${3..1}", ["t_3", "t_2", "t_1"]),
        ("db${['a','b']}.t${['x']}", ["dba.tx", "dbb.tx"]),
        ("t_${0..1}, t_${1..2}", ["t_0", "t_1", "t_2"]),  # duplicates dropped, order kept
        ("<LITERAL>t_${0..1},t_2", ["t_${0..1}", "t_2"]),
        ("ds_${('a'..'c')}", ["ds_a", "ds_b", "ds_c"]),
        ("t_${(0..2).collect}".replace(".collect", ""), ["t_0", "t_1", "t_2"]),
        ("t_${[1, 2] + [3]}", ["t_1", "t_2", "t_3"]),
    ],
)
def test_expansion(text: str, names: list[str]) -> None:
    assert expand(text) == names


@pytest.mark.parametrize(
    ("expression", "values", "expected"),
    [
        ("ds_${user_id % 2}", {"user_id": 3}, "ds_1"),
        ("ds_${user_id % 2}", {"user_id": -3}, "ds_-1"),  # Groovy keeps the dividend's sign
        ("t_${Math.abs(user_id.hashCode()) % 4}", {"user_id": "user_1"}, "t_3"),
        ("t_${Math.abs(user_id.hashCode() % 4)}", {"user_id": "north"}, "t_1"),
        ("t_${user_id.hashCode() % 2}", {"user_id": -3}, "t_-1"),
        ("t_${(order_id % 4).intdiv(2)}", {"order_id": 7}, "t_1"),
        ("t_${order_id.toString()[-1]}", {"order_id": 1234}, "t_4"),
        ("t_${order_id.toString().padLeft(3, '0')}", {"order_id": 7}, "t_007"),
        ("t_${code.substring(0, 2).toUpperCase()}", {"code": "cn-north"}, "t_CN"),
        ("t_${String.valueOf(id).length() > 2 ? 'long' : 'short'}", {"id": 12345}, "t_long"),
        ("t_${id ?: 0}", {"id": None}, "t_0"),
        ("${'t_' + (id % 3)}", {"id": 8}, "t_2"),
        ("t_${id.mod(3)}", {"id": -7}, "t_2"),  # Groovy's mod() is non-negative
        ("t_${Math.floorMod(id, 3)}", {"id": -7}, "t_2"),
        ("t_${id % 2 == 0 && id > 10}", {"id": 12}, "t_true"),
        ("t_${2 ** 10}", {}, "t_1024"),
        ("t_${amount % 2}", {"amount": Decimal("5.5")}, "t_1.5"),
    ],
)
def test_evaluation(expression: str, values: dict[str, Any], expected: str) -> None:
    assert render(expression, **values) == expected


@pytest.mark.parametrize(
    "expression",
    [
        "${__import__('os').system('true')}",
        "${user_id.__class__}",
        "${exec('1')}",
        "${user_id.getClass()}",
        '${"${x}"}',
        "${Runtime.getRuntime()}",
        "${x = 1}",
    ],
)
def test_anything_outside_the_subset_is_refused(expression: str) -> None:
    with pytest.raises(ExpressionError):
        compile_template(expression).render({"user_id": java.java_value(1), "x": java.java_value(1)})


def test_expansion_limits() -> None:
    with pytest.raises(ExpressionError, match="larger than"):
        expand("t_${0..10000000}")
    with pytest.raises(ExpressionError, match="more than"):
        expand("t_${0..999}_${0..999}")
    with pytest.raises(ExpressionError, match="no value for"):
        compile_template("ds_${user_id % 2}").render({})

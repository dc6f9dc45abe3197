"""Hypothesis strategies of hostile input: values, names, YAML/JSON texts and kind documents.

Kind documents come from each kind's JSON schema (the pydantic model's), so every field of every
kind gets values of its own shape (well-formed) with hostile values mixed in at every level:
boundary and out-of-range numbers, durations and ratios that overflow, wrong types, unknown
fields, long and odd strings. ``random_document`` gives shapeless JSON with a kind's header.
"""

from __future__ import annotations

import json
import re
from functools import cache
from typing import Any, TypeVar

import yaml
from hypothesis import strategies as st

from opensergo.spec import kinds
from opensergo.spec.kinds import KindInfo

FUZZ_APP = "fuzz-app"
FUZZ_NAMESPACE = "fuzz"

INT_EDGES = [
    0, 1, -1, 2, 7, 10, 100, 1000,
    2**15, 2**16, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**53, 2**53 + 1,
    2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64, 10**30, -(10**30),
]  # fmt: skip
FLOAT_EDGES = [0.0, -0.0, 0.5, 1.5, 1e-300, 5e-324, 1e15, 1e16, 1e300, 1.7976931348623157e308, -1e308]
HOSTILE_STRINGS = [
    "", " ", "\t", "\n", "\x00", "\x7f", "\u202e", "\ufeff", "\ud800", "💥", "名前",
    "<script>alert(1)</script>", "' OR 1=1 --", "../../etc/passwd", "%2e%2e%2f", "${jndi:ldap://x}",
    "{{7*7}}", "a" * 64, "a" * 254, "a" * 5000, "-", ".", "x.", "-x", "X", "a_b", "a..b",
    "null", "~", "true", "yes", "on", "1e400", "NaN", "-Infinity", "0x1F", "0o17", "1_000",
    "99999999999999999999", "190:20:30", "2001-12-14t21:59:43.10-05:00", "******",
    "mysql://root:secret@db:3306/x?password=p", "*", "&a", "!!python/object:os.system",
]  # fmt: skip
DURATIONS = [
    "1ms", "0ms", "0s", "500ms", "1s", "5min", "1minute", "1h", "1d", "1m",
    "99999999999999999999d", "106751991167d", "106751991168d", "9223372036854775807ms",
    "9223372036854775808ms", "2147483647s", "2147483648s", "4294967296s", "-1s", "1.5s",
    "1e3s", "1 s", " 1s", "1S", "1sec", "s", "ms", "1h1m", "\u0663s", "\uff11s", "0" * 40 + "1s",
    "1" * 31 + "ms", "",
]  # fmt: skip
RATIOS = [
    "0%", "50%", "100%", "101%", "-5%", "1e309%", "nan%", "inf%", "50%%", "%", "0.5%",
    "100.0000000001%", "1" * 400 + "%", 0.5, 1.0, 1.5, -0.1, 0, 1, 2**63,
]  # fmt: skip


T = TypeVar("T")


def weighted(*choices: tuple[int, st.SearchStrategy[T]]) -> st.SearchStrategy[T]:
    """One of ``choices``, each as often as its weight (``st.one_of`` merges repeated branches,
    so repeating one does not weigh it)."""
    table = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.integers(0, len(table) - 1).flatmap(table.__getitem__)


def hostile_text(max_size: int = 80) -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(HOSTILE_STRINGS), st.text(max_size=max_size))


def hostile_int() -> st.SearchStrategy[int]:
    return st.one_of(st.sampled_from(INT_EDGES), st.integers(), st.integers(-(2**70), 2**70))


def hostile_float() -> st.SearchStrategy[float]:
    return st.one_of(st.sampled_from(FLOAT_EDGES), st.floats(allow_nan=False, allow_infinity=False))


@cache
def json_scalars() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(), st.booleans(), hostile_int(), hostile_float(), hostile_text(), st.sampled_from(DURATIONS)
    )


@cache
def json_values(max_leaves: int = 20) -> st.SearchStrategy[Any]:
    """Shapeless JSON: maps, lists and hostile scalars."""
    return st.recursive(
        json_scalars(),
        lambda children: st.one_of(
            st.lists(children, max_size=5), st.dictionaries(hostile_text(20), children, max_size=5)
        ),
        max_leaves=max_leaves,
    )


DNS_LABEL = st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?\Z")


def names() -> st.SearchStrategy[str]:
    """Object names: mostly valid (so writes happen), sometimes hostile."""
    return weighted((3, DNS_LABEL), (1, hostile_text(40)))


def namespaces() -> st.SearchStrategy[str]:
    return weighted((2, st.just(FUZZ_NAMESPACE)), (1, DNS_LABEL), (1, hostile_text(70)))


# -- documents from a kind's JSON schema ------------------------------------------------------------


@cache
def _schema(info: KindInfo) -> dict[str, Any]:
    return info.model.model_json_schema()


def _resolve(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = defs[schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def _pattern_strings(pattern: str, hostile: bool) -> st.SearchStrategy[str]:
    matching = st.from_regex(re.compile(pattern), fullmatch=True)
    if "ms|s|m" in pattern:  # a duration: the pattern allows any number of digits
        valid = [d for d in DURATIONS if re.fullmatch(pattern, d)]
        return st.one_of(st.sampled_from(DURATIONS if hostile else valid), matching)
    if "%" in pattern and hostile:
        return st.one_of(st.sampled_from([r for r in RATIOS if isinstance(r, str)]), matching)
    return matching


def _string(schema: dict[str, Any], hostile: bool) -> st.SearchStrategy[str]:
    if "pattern" in schema:
        return _pattern_strings(schema["pattern"], hostile)
    size = schema.get("maxLength", 30)
    good = st.text(min_size=schema.get("minLength", 0), max_size=size)
    if not hostile:
        return st.one_of(good, DNS_LABEL)
    return weighted((2, good), (1, st.sampled_from(DURATIONS)), (1, st.sampled_from(HOSTILE_STRINGS)))


def _integer(schema: dict[str, Any], hostile: bool) -> st.SearchStrategy[int]:
    low, high = schema.get("minimum"), schema.get("maximum")
    if "exclusiveMinimum" in schema:
        low = schema["exclusiveMinimum"] + 1
    if "exclusiveMaximum" in schema:
        high = schema["exclusiveMaximum"] - 1
    edges = [v for v in (low, high) if v is not None]
    edges += [v + d for v in edges for d in (-1, 1)]
    inside = st.integers(min_value=low, max_value=high)
    if not hostile:
        return st.one_of(inside, st.sampled_from([v for v in edges if _within(v, low, high)] or [0]))
    return weighted((2, inside), (1, st.sampled_from(edges or [0])), (1, hostile_int()))


def _within(value: int, low: int | None, high: int | None) -> bool:
    return (low is None or value >= low) and (high is None or value <= high)


def _number(schema: dict[str, Any], hostile: bool) -> st.SearchStrategy[float | int]:
    low, high = schema.get("minimum"), schema.get("maximum")
    inside = st.floats(min_value=low, max_value=high, allow_nan=False, allow_infinity=False)
    if not hostile:
        return inside
    return weighted((2, inside), (1, hostile_float()), (1, hostile_int()), (1, st.sampled_from(RATIOS)))


def from_schema(
    schema: dict[str, Any], defs: dict[str, Any], hostile: bool, depth: int = 0
) -> st.SearchStrategy[Any]:
    """Values of ``schema``'s shape. ``hostile``: hostile values at the leaves, unknown and
    missing fields, and now and then a node of another shape; else edge values within range."""
    schema = _resolve(schema, defs)
    if depth > 8:
        return json_scalars() if hostile else st.none()
    strategy = _shaped(schema, defs, hostile, depth)
    if not hostile:
        return strategy
    # One time in ~8, any node may be anything (type confusion at every level).
    return weighted((7, strategy), (1, json_values(6)))


def _shaped(  # noqa: C901 (one branch per JSON-schema type)
    schema: dict[str, Any], defs: dict[str, Any], hostile: bool, depth: int
) -> st.SearchStrategy[Any]:
    for combinator in ("anyOf", "oneOf"):
        if combinator in schema:
            return st.one_of([from_schema(s, defs, hostile, depth + 1) for s in schema[combinator]])
    if "allOf" in schema:
        return from_schema(schema["allOf"][0], defs, hostile, depth + 1)
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        if not hostile:
            return st.sampled_from(schema["enum"])
        return weighted((3, st.sampled_from(schema["enum"])), (1, hostile_text(20)))
    kind = schema.get("type")
    if isinstance(kind, list):
        return st.one_of([_shaped({**schema, "type": k}, defs, hostile, depth) for k in kind])
    if kind == "string":
        return _string(schema, hostile)
    if kind == "integer":
        return _integer(schema, hostile)
    if kind == "number":
        return _number(schema, hostile)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "array":
        items = from_schema(schema.get("items", {}), defs, hostile, depth + 1)
        low = schema.get("minItems", 0)
        many = st.lists(items, min_size=low, max_size=max(low, 4))
        if not hostile:
            return many
        return weighted((5, many), (1, st.lists(items, min_size=50, max_size=300)))
    if kind == "object" or "properties" in schema:
        return _object(schema, defs, hostile, depth)
    return json_values(8) if hostile else st.one_of(st.none(), st.booleans(), DNS_LABEL)


def _object(
    schema: dict[str, Any], defs: dict[str, Any], hostile: bool, depth: int
) -> st.SearchStrategy[dict[str, Any]]:
    properties: dict[str, Any] = schema.get("properties", {})
    required = set(schema.get("required", ()))
    fixed = {k: from_schema(v, defs, hostile, depth + 1) for k, v in properties.items() if k in required}
    optional = {
        k: from_schema(v, defs, hostile, depth + 1) for k, v in properties.items() if k not in required
    }
    extra = schema.get("additionalProperties", True)
    base = st.fixed_dictionaries(fixed, optional=optional)
    if not hostile:
        if isinstance(extra, dict) and extra:
            entries = st.dictionaries(DNS_LABEL, from_schema(extra, defs, hostile, depth + 1), max_size=3)
            return st.tuples(base, entries).map(lambda pair: {**pair[1], **pair[0]})
        return base
    if extra is False:
        unknown = st.dictionaries(hostile_text(20), json_scalars(), min_size=1, max_size=2)
    elif isinstance(extra, dict) and extra:
        unknown = st.dictionaries(hostile_text(30), from_schema(extra, defs, hostile, depth + 1), max_size=4)
    else:
        unknown = st.dictionaries(hostile_text(20), json_values(4), max_size=3)
    mixed = st.tuples(base, unknown).map(lambda pair: {**pair[1], **pair[0]})
    dropped = st.tuples(base, st.integers(0, 63)).map(lambda p: _without_one(*p))
    return weighted((6, base), (2, mixed), (1, dropped))


def _without_one(value: dict[str, Any], index: int) -> dict[str, Any]:
    """``value`` less one of its keys (a required field gone missing)."""
    if not value:
        return value
    drop = sorted(value)[index % len(value)]
    return {k: v for k, v in value.items() if k != drop}


def _header(info: KindInfo, wellformed: bool) -> st.SearchStrategy[dict[str, Any]]:
    labels = st.one_of(
        st.just({"app": FUZZ_APP}),
        st.dictionaries(hostile_text(30), hostile_text(30), max_size=3).map(lambda d: {"app": FUZZ_APP, **d}),
        json_values(4),
    )
    meta = st.fixed_dictionaries(
        {"name": names()},
        optional={
            "labels": labels,
            "annotations": st.dictionaries(hostile_text(20), hostile_text(40), max_size=3),
            "resourceVersion": st.one_of(st.none(), hostile_text(20), hostile_int().map(str)),
            "generation": json_scalars(),
            "uid": hostile_text(40),
        },
    ).map(lambda m: {**m, "labels": m.get("labels", {"app": FUZZ_APP})})
    api = st.just(info.api_version) if wellformed else st.one_of(st.just(info.api_version), hostile_text(40))
    kind = st.just(info.kind) if wellformed else st.one_of(st.just(info.kind), hostile_text(30))
    return st.fixed_dictionaries(
        {"apiVersion": api, "kind": kind, "metadata": weighted((3, meta), (1, json_values(4)))}
    )


@cache
def kind_document(info: KindInfo, hostile: bool = True) -> st.SearchStrategy[dict[str, Any]]:
    """A document of ``info``'s kind in its schema's shape: with hostile values inside, or with
    edge values within the schema's ranges (most of which the model accepts)."""
    schema = _schema(info)
    defs = schema.get("$defs", {})
    spec = from_schema(schema["properties"]["spec"], defs, hostile)
    header = _header(info, wellformed=True) if hostile else _clean_header(info)
    return st.tuples(header, spec).map(lambda p: {**p[0], "spec": p[1]})


def _clean_header(info: KindInfo) -> st.SearchStrategy[dict[str, Any]]:
    meta = st.builds(lambda name: {"name": name, "labels": {"app": FUZZ_APP}}, DNS_LABEL)
    return st.fixed_dictionaries(
        {"apiVersion": st.just(info.api_version), "kind": st.just(info.kind), "metadata": meta}
    )


@cache
def random_document(info: KindInfo) -> st.SearchStrategy[dict[str, Any]]:
    """A shapeless document with ``info``'s header (so it reaches the kind's model)."""
    return st.tuples(_header(info, wellformed=False), json_values(30)).map(lambda p: {**p[0], "spec": p[1]})


def any_kind() -> st.SearchStrategy[KindInfo]:
    return st.sampled_from(kinds.all_kinds())


@cache
def clean_document() -> st.SearchStrategy[dict[str, Any]]:
    """A document of any kind, schema-shaped with edge values within range."""
    return st.one_of(*[kind_document(info, hostile=False) for info in kinds.all_kinds()])


@cache
def any_document() -> st.SearchStrategy[dict[str, Any]]:
    """A document of any kind: schema-shaped with edge values, or with hostile values, or shapeless."""
    every = kinds.all_kinds()
    clean = [kind_document(info, hostile=False) for info in every]
    shaped = [kind_document(info) for info in every]
    shapeless = [random_document(info) for info in every]
    return st.one_of(*clean, *shaped, *shapeless)


# -- texts ------------------------------------------------------------------------------------------


def to_json(value: Any) -> str:
    """JSON as a client writes it: non-ASCII escaped, so lone surrogates travel as ``\\ud800``."""
    return json.dumps(value)


def to_yaml(value: Any) -> str:
    return yaml.safe_dump(value, allow_unicode=False, sort_keys=False)


HOSTILE_YAML = [
    "a: &a [1, 2]\nb: *a\n",
    "base: &b {x: 1}\nmerged:\n  <<: *b\n  y: 2\n",
    'a: &a ["lol","lol"]\nb: &b [*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b]\n',
    "x: !!python/object/apply:os.system ['id']\n",
    "x: !!python/name:os.system\n",
    "x: !!binary aGVsbG8=\n",
    "x: !!set {a, b}\n",
    "x: !!omap [a: 1, b: 2]\n",
    "x: !!timestamp 2001-12-14\n",
    "x: !custom 1\n",
    "x: !!float .inf\n",
    "x: .nan\n",
    "x: -.inf\n",
    "x: 1e400\n",
    "x: 0x7fffffffffffffffffff\n",
    "x: 0o7777777777777777777777777\n",
    "x: 190:20:30\n",
    "x: 1_000_000_000_000_000_000_000\n",
    "? [1, 2]\n: x\n",
    "? {a: 1}\n: x\n",
    "a: 1\na: 2\n",
    "%YAML 1.1\n---\na: 1\n",
    "%TAG ! tag:example.com,2000:\n---\na: !x 1\n",
    "\ufeffa: 1\n",
    "a:\t1\n",
    "a: 'unterminated\n",
    "a: [1, 2\n",
    "a: {b: 1\n",
    "- - - - -\n",
    "---\n---\n---\n",
    "...\n",
    "a: |\n  text\n b: 1\n",
    "a: \x00\n",
    "a: \x1b[31m\n",
    "apiVersion: fault-tolerance.opensergo.io/v1alpha1\nkind: RateLimitStrategy\nmetadata: [1, 2]\n",
    "apiVersion: fault-tolerance.opensergo.io/v1alpha1\nkind: RateLimitStrategy\nmetadata: {name: x}\n"
    "spec: {threshold: 1, statDuration: 99999999999999999999d}\n",
    "kind: List\nitems: [1, {a: b}, [c]]\n",
    "[" * 63 + "]" * 63,
    "[" * 64 + "]" * 64,
    "[" * 65 + "]" * 65,
    "[" * 2000 + "]" * 2000,
    "{a: " * 70 + "1" + "}" * 70,
    "---\n" * 1001,
    "a: 1\n---\n" * 1001,
]


def _mutate(text: str, edits: list[tuple[int, int, str]]) -> str:
    for position, length, insert in edits:
        at = position % (len(text) + 1)
        text = text[:at] + insert + text[at + length :]
    return text


def mutated(texts: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """A text with a few characters deleted, replaced or inserted at random places."""
    edits = st.lists(
        st.tuples(st.integers(0, 10_000), st.integers(0, 4), st.sampled_from(
            ["", ":", "-", " ", "\n", "[", "]", "{", "}", "&a", "*a", "!!", "'", '"', "#", "|", ">",
             "?", ",", "\t", "---\n", "1e400", "\x00", "%"]
        ) | st.text(max_size=3)),
        min_size=1,
        max_size=4,
    )  # fmt: skip
    return st.tuples(texts, edits).map(lambda p: _mutate(*p))


def deep_text(json_like: bool) -> st.SearchStrategy[str]:
    """Nesting around the depth limit, as flow YAML or JSON."""

    def build(depth: int, maps: bool) -> str:
        if maps:
            return ('{"a": ' if json_like else "{a: ") * depth + "1" + "}" * depth
        return "[" * depth + "1" + "]" * depth

    return st.tuples(st.sampled_from([1, 2, 62, 63, 64, 65, 66, 200, 5000]), st.booleans()).map(
        lambda p: build(*p)
    )


@cache
def yaml_texts() -> st.SearchStrategy[str]:
    """Texts for the YAML reader: documents of every kind, hostile snippets, and mutations."""
    documents = st.lists(any_document(), min_size=1, max_size=3).map(
        lambda docs: "---\n".join(to_yaml(d) for d in docs)
    )
    plain = st.one_of(documents, json_values().map(to_yaml), st.sampled_from(HOSTILE_YAML), deep_text(False))
    return weighted((2, plain), (1, mutated(plain)), (1, st.text(max_size=200)))


@cache
def json_texts() -> st.SearchStrategy[str]:
    plain = st.one_of(any_document().map(to_json), json_values().map(to_json), deep_text(True))
    odd = st.sampled_from(
        ["", "{", "[1,]", "NaN", "Infinity", "-Infinity", '{"a": 1e400}', '{"a": 1e-400}',
         '{"a": "\\ud800"}', '{"a": 1, "a": 2}', '"\\u0000"', "[" * 100_000, '{"a":' * 3000]
    )  # fmt: skip
    return weighted((2, plain), (1, odd), (1, mutated(plain)))

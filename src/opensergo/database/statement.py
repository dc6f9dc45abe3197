"""SQL analysis: each distinct statement is parsed once (sqlglot) and the facts kept in a bounded cache.

A :class:`Statement` holds what routing needs (is it a write, does it lock rows, which tables,
hint comments) and the parsed tree for the rules that rewrite (encryption) or read values
(shadow column algorithms). Rule modules derive their own per-statement plans from it; the
:class:`PlanCache` keys everything by the SQL string the driver receives, so an application that
repeats its statements (SQLAlchemy's compiled cache makes the strings identical) parses each one
once.

Placeholders: the drivers used here take ``%(name)s`` (and ``%s``) parameters, which sqlglot's
MySQL reader rejects. They are turned into ``:name`` / ``?`` before parsing and restored by
:func:`render` after a rewrite. In SQL that has parameters (or ``%%``), a literal percent sign is
written ``%%`` (the drivers format the string); it is parsed as ``%`` (so ``a %% 2`` is a modulo)
and doubled again by :func:`render` (``Statement.escaped``).
"""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from opensergo.database.urls import Family

__all__ = ["PlanCache", "Statement", "analyze", "hint_pairs", "parse_sql", "render", "ss_hints"]

_SQLGLOT_DIALECT: dict[Family, str] = {"mysql": "mysql", "postgresql": "postgres"}

# Statements decided by their first word, never parsed (sqlglot parses most of them only as an
# opaque Command, with a warning).
_PRIMARY_WORDS = frozenset(
    {
        "savepoint", "release", "rollback", "commit", "begin", "start", "set", "xa", "lock",
        "unlock", "call", "do", "prepare", "execute", "deallocate", "grant", "revoke", "flush",
        "analyze", "optimize", "repair", "truncate", "rename", "load", "handler", "vacuum",
        "listen", "notify", "copy", "reset", "discard",
    }
)  # fmt: skip
_READ_WORDS = frozenset({"show", "describe", "desc", "explain"})

_PLACEHOLDER = re.compile(r"%%|%\((\w+)\)s|%s")
_LEADING_COMMENT = re.compile(r"\A\s*/\*(.*?)\*/", re.S)
_COMMENT = re.compile(r"/\*(.*?)\*/", re.S)
_FIRST_WORD = re.compile(r"\A(?:\s|/\*.*?\*/|--[^\n]*\n)*([A-Za-z]+)", re.S)

log = logging.getLogger("opensergo.database")


@dataclass(slots=True)
class Statement:
    """What one SQL string is, as far as routing and rewriting care."""

    sql: str
    kind: str  # select | insert | update | delete | ddl | other
    is_write: bool
    locks: bool = False
    tables: tuple[str, ...] = ()
    tree: exp.Expression | None = None
    comments: tuple[str, ...] = ()
    positional: bool = False  # %s placeholders (numbered ``?`` in the tree, in order)
    parse_error: str | None = None
    escaped: bool = False  # literal '%' are written '%%' (the driver formats the string)
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def is_select(self) -> bool:
        return self.kind == "select"


def _to_parseable(sql: str) -> tuple[str, bool, bool]:
    """``(parseable SQL, positional placeholders?, escaped percent signs?)``."""
    positional = False
    escaped = False

    def sub(match: re.Match[str]) -> str:
        nonlocal positional, escaped
        escaped = True
        text = match.group(0)
        if text == "%%":
            return "%"
        if match.group(1) is not None:
            return f":{match.group(1)}"
        positional = True
        return "?"

    return _PLACEHOLDER.sub(sub, sql), positional, escaped


def _first_word(sql: str) -> str:
    match = _FIRST_WORD.match(sql)
    return match.group(1).lower() if match else ""


def analyze(sql: str, family: Family) -> Statement:
    """Classify and parse ``sql`` (the driver-level string, with ``%(name)s`` placeholders)."""
    comments = tuple(c.strip() for c in _COMMENT.findall(sql))
    word = _first_word(sql)
    if word in _PRIMARY_WORDS:
        return Statement(sql, "other", True, comments=comments)
    if word in _READ_WORDS:
        return Statement(sql, "select", False, comments=comments)
    parseable, positional, escaped = _to_parseable(sql)
    try:
        trees = sqlglot.parse(parseable, read=_SQLGLOT_DIALECT[family])
    except (ParseError, TokenError) as e:
        # Unknown syntax goes to the primary untouched; rules that must rewrite refuse it.
        return Statement(sql, "other", True, comments=comments, parse_error=str(e).splitlines()[0])
    if len(trees) != 1 or trees[0] is None:
        return Statement(sql, "other", True, comments=comments, parse_error="not exactly one statement")
    tree: exp.Expression = trees[0]  # type: ignore[assignment]
    kind, is_write, locks = _classify(tree)
    tables = tuple(dict.fromkeys(t.name.lower() for t in tree.find_all(exp.Table) if t.name))
    return Statement(sql, kind, is_write, locks, tables, tree, comments, positional, escaped=escaped)


def parse_sql(sql: str, family: Family) -> tuple[exp.Expression, bool, bool] | None:
    """``(tree, positional, escaped)`` of one statement, or None when it does not parse (used for
    statements :func:`analyze` does not parse, e.g. TRUNCATE on a sharded table)."""
    parseable, positional, escaped = _to_parseable(sql)
    try:
        trees = sqlglot.parse(parseable, read=_SQLGLOT_DIALECT[family])
    except (ParseError, TokenError):
        return None
    if len(trees) != 1 or not isinstance(trees[0], exp.Expression):
        return None
    return trees[0], positional, escaped


def _classify(tree: exp.Expression) -> tuple[str, bool, bool]:
    if isinstance(tree, exp.Insert):
        return "insert", True, False
    if isinstance(tree, exp.Update):
        return "update", True, False
    if isinstance(tree, exp.Delete):
        return "delete", True, False
    if isinstance(tree, exp.Create | exp.Drop | exp.Alter | exp.TruncateTable):
        return "ddl", True, False
    if isinstance(tree, exp.Query):
        # A CTE that writes (PostgreSQL ``WITH x AS (INSERT … RETURNING …) SELECT``) is a write.
        if any(isinstance(node, exp.Insert | exp.Update | exp.Delete) for node in tree.find_all(exp.DML)):
            return "select", True, False
        locks = any(bool(node.args.get("locks")) for node in tree.find_all(exp.Select))
        last_id = any(node.name.lower() == "last_insert_id" for node in tree.find_all(exp.Anonymous))
        return "select", locks or last_id, locks
    if isinstance(tree, exp.Show | exp.Describe):
        return "select", False, False
    return "other", True, False


def render(tree: exp.Expression, family: Family, positional: bool, escaped: bool = False) -> str:
    """SQL for a rewritten tree, with the driver's placeholders back in place (and literal
    percent signs doubled again when the statement was ``escaped``)."""
    names: list[str] = []

    def restore(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Placeholder):
            named = node.name and node.name != "?"
            names.append(f"%({node.name})s" if named else "%s")
            return exp.Var(this=f"\x00{len(names) - 1}\x00")
        return node

    sql = tree.transform(restore, copy=True).sql(dialect=_SQLGLOT_DIALECT[family])
    if escaped:
        sql = sql.replace("%", "%%")
    if names:
        sql = _SENTINEL.sub(lambda m: names[int(m.group(1))], sql)
    return sql


_SENTINEL = re.compile("\x00(\\d+)\x00")


def ss_hints(statement: Statement) -> dict[str, str]:
    """ShardingSphere SQL hints: ``/* SHARDINGSPHERE_HINT: K=V, … */`` at the start of the SQL.

    Keys are upper-cased; values kept as written (``WRITE_ROUTE_ONLY=true``).
    """
    match = _LEADING_COMMENT.match(statement.sql)
    if match is None:
        return {}
    body = match.group(1).strip()
    for prefix in ("SHARDINGSPHERE_HINT:", "ShardingSphere hint:"):
        if body.startswith(prefix):
            pairs: dict[str, str] = {}
            for item in body[len(prefix) :].split(","):
                key, sep, value = item.partition("=")
                if sep:
                    pairs[key.strip().upper()] = value.strip()
            return pairs
    return {}


_TRACE_CONTEXT = re.compile(r"@TRACE_CONTEXT@.*?@TRACE_CONTEXT@", re.S)


def hint_pairs(statement: Statement) -> dict[str, str]:
    """``key:value`` pairs of the statement's comments, as the SIMPLE_HINT shadow algorithm reads
    them: ``/*shadow:true,foo:bar*/`` -> ``{shadow: true, foo: bar}``."""
    pairs: dict[str, str] = {}
    for comment in statement.comments:
        body = _TRACE_CONTEXT.sub("", comment)
        for item in body.split(","):
            key, sep, value = item.partition(":")
            if sep and key.strip():
                pairs[key.strip()] = value.strip()
    return pairs


P = TypeVar("P")


class PlanCache(Generic[P]):
    """A bounded, thread-safe LRU map ``sql -> plan`` with hit/miss counters.

    ``build(sql)`` runs outside the lock (two threads may build the same plan once each; both
    results are equal), so a slow parse never blocks the statements that hit.
    """

    def __init__(self, build: Callable[[str], P], maxsize: int = 2048) -> None:
        self._build = build
        self.maxsize = maxsize
        self._items: OrderedDict[str, P] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, sql: str) -> P:
        items = self._items
        plan = items.get(sql)
        if plan is not None:
            self.hits += 1
            # Recency is refreshed only when the cache is full enough for eviction to matter.
            if len(items) > self.maxsize // 2:
                with self._lock:
                    if sql in items:
                        items.move_to_end(sql)
            return plan
        self.misses += 1
        plan = self._build(sql)
        with self._lock:
            items[sql] = plan
            while len(items) > self.maxsize:
                items.popitem(last=False)
        return plan

    def __len__(self) -> int:
        return len(self._items)

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    def stats(self) -> dict[str, float | int]:
        return {"size": len(self), "maxsize": self.maxsize, "hits": self.hits, "misses": self.misses,
                "hit_rate": round(self.hit_rate, 4)}  # fmt: skip

"""Encryption: ShardingSphere-compatible encryptors and the statement rewrite that applies them.

Encryptors (byte-compatible with ShardingSphere 5.1-5.3):

* ``AES``: key = the first 16 bytes of SHA-1(UTF-8 ``aes-key-value``); AES-128/ECB/PKCS#7 over
  the UTF-8 bytes of the value's string form; standard Base64 with padding. Decryption returns a
  string, trimmed as Java's ``String.trim()`` does. NULL stays NULL.
* ``MD5``: lowercase hex MD5 of the string form plus ``salt`` (default ""); "decrypting" returns
  the stored digest, as ShardingSphere <= 5.3 does.

The string form follows Java's ``String.valueOf`` where Python differs: booleans are ``true`` /
``false``. Other values use ``str()``.

The rewrite (:func:`plan_rewrite`) works on the parsed statement and refuses, with an
:class:`UnsupportedStatementError` naming the table and column, anything it cannot rewrite
safely; such a statement is never sent.
"""

from __future__ import annotations

import base64
import hashlib
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from sqlglot import exp

from opensergo.database.errors import ConfigurationError, UnsupportedStatementError
from opensergo.database.statement import Statement, render
from opensergo.database.urls import Family
from opensergo.spec.database import Encryption

__all__ = [
    "AESEncryptor",
    "EncryptRule",
    "Encryptor",
    "MD5Encryptor",
    "RewritePlan",
    "build_encryptor",
    "java_string",
    "plan_rewrite",
]

_JAVA_TRIM = "".join(chr(i) for i in range(33))


def java_string(value: Any) -> str:
    """``String.valueOf(value)`` for the values a driver passes (str, int, Decimal, bool)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return str(value)


class Encryptor(Protocol):
    type: str
    deterministic: bool

    def encrypt(self, value: Any) -> str | None: ...

    def decrypt(self, value: Any) -> Any: ...


class AESEncryptor:
    """AES-128/ECB/PKCS5Padding of the UTF-8 text, base64 (ShardingSphere's AES encryptor)."""

    type = "AES"
    deterministic = True

    def __init__(self, props: Mapping[str, Any]) -> None:
        key = props.get("aes-key-value")
        if key is None or str(key) == "":
            raise ConfigurationError("AES encryptor needs the prop aes-key-value")
        digest = str(props.get("digest-algorithm-name", "SHA-1")).replace("-", "").lower()
        try:
            hashed = hashlib.new(digest, str(key).encode("utf-8")).digest()
        except ValueError:
            raise ConfigurationError(f"unknown digest-algorithm-name {digest!r}") from None
        self._cipher = Cipher(algorithms.AES(hashed[:16]), modes.ECB())
        self._local = threading.local()

    def _contexts(self) -> tuple[Any, Any]:
        """This thread's (encryptor, decryptor). ECB keeps no state between whole blocks, so one
        pair serves every value, fed whole blocks only and never finalized: creating a cipher
        context per value costs more than the AES itself."""
        pair: tuple[Any, Any] | None = getattr(self._local, "pair", None)
        if pair is None:
            pair = self._local.pair = (self._cipher.encryptor(), self._cipher.decryptor())
        return pair

    def encrypt(self, value: Any) -> str | None:
        if value is None:
            return None
        data = java_string(value).encode("utf-8")
        pad = 16 - len(data) % 16  # PKCS#7: always 1..16 bytes
        encrypted: bytes = self._contexts()[0].update(data + bytes((pad,)) * pad)
        return base64.b64encode(encrypted).decode("ascii")

    def decrypt(self, value: Any) -> Any:
        if value is None:
            return None
        raw = base64.b64decode(value if isinstance(value, bytes | str) else str(value))
        if raw and len(raw) % 16 == 0:
            data: bytes = self._contexts()[1].update(raw)
            pad = data[-1]
            if 1 <= pad <= 16 and data.endswith(bytes((pad,)) * pad):
                return data[:-pad].decode("utf-8").strip(_JAVA_TRIM)
        return self._decrypt_checked(raw)  # malformed: fails as the padding checks say

    def _decrypt_checked(self, raw: bytes) -> Any:
        decryptor = self._cipher.decryptor()
        unpadder = padding.PKCS7(128).unpadder()
        data = unpadder.update(decryptor.update(raw) + decryptor.finalize()) + unpadder.finalize()
        return data.decode("utf-8").strip(_JAVA_TRIM)


class MD5Encryptor:
    type = "MD5"
    deterministic = True

    def __init__(self, props: Mapping[str, Any]) -> None:
        self._salt = str(props.get("salt", ""))

    def encrypt(self, value: Any) -> str | None:
        if value is None:
            return None
        return hashlib.md5((java_string(value) + self._salt).encode("utf-8")).hexdigest()

    def decrypt(self, value: Any) -> Any:
        return value


_ENCRYPTORS: dict[str, Callable[[Mapping[str, Any]], Encryptor]] = {"AES": AESEncryptor, "MD5": MD5Encryptor}


def build_encryptor(type_name: str, props: Mapping[str, Any]) -> Encryptor:
    factory = _ENCRYPTORS.get(type_name.upper())
    if factory is None:
        supported = ", ".join(sorted(_ENCRYPTORS))
        raise ConfigurationError(f"encryptor type {type_name!r} is not supported (supported: {supported})")
    return factory(props)


@dataclass(frozen=True, slots=True)
class EncryptedColumn:
    table: str
    logic: str
    cipher: str
    encryptor: Encryptor
    plain: str | None = None
    assisted: str | None = None
    assist: Encryptor | None = None  # assisted-query encryptor (the same as ``encryptor`` here)


@dataclass(frozen=True, slots=True)
class EncryptRule:
    """An Encryption object compiled: ``tables[table][logic column]`` (names lower-cased)."""

    tables: Mapping[str, Mapping[str, EncryptedColumn]]
    query_with_cipher: bool = True

    @classmethod
    def compile(cls, obj: Encryption) -> EncryptRule:
        spec = obj.spec
        encryptors = {name: build_encryptor(a.type, a.props) for name, a in spec.encryptors.items()}
        tables: dict[str, dict[str, EncryptedColumn]] = {}
        for table, table_spec in spec.tables.items():
            columns: dict[str, EncryptedColumn] = {}
            for logic, col in table_spec.columns.items():
                encryptor = encryptors[col.encryptorName]
                columns[logic.lower()] = EncryptedColumn(
                    table.lower(),
                    logic,
                    col.cipherColumn,
                    encryptor,
                    col.plainColumn,
                    col.assistedQueryColumn,
                    encryptor if col.assistedQueryColumn else None,
                )
            tables[table.lower()] = columns
        return cls(tables, spec.queryWithCipherColumn)

    def touches(self, statement: Statement) -> bool:
        return any(t in self.tables for t in statement.tables)


# --- the rewrite plan -------------------------------------------------------------------------

ParamFn = Callable[[Any], Any]

_REWRITTEN = "opensergo_rewritten"  # meta flag on the column nodes the rewrite produced


def _stored(name: str, table: str | None) -> exp.Column:
    node = exp.column(name, table=table or None)
    node.meta[_REWRITTEN] = True
    return node


@dataclass(slots=True)
class RewritePlan:
    """How to run one statement under an encryption rule: new SQL, parameter transforms, and the
    result columns to decrypt."""

    sql: str
    positional: bool = False
    param_count: int = 0
    # (source key, target key, transform): params[target] = transform(params[source])
    params: list[tuple[str, str, ParamFn]] = field(default_factory=list)
    decrypt: tuple[tuple[int, ParamFn], ...] = ()

    def bind(self, parameters: Any) -> Any:
        """The driver parameters for the rewritten SQL."""
        if self.positional:
            values = list(parameters or ())
            if len(values) != self.param_count:
                raise UnsupportedStatementError(
                    f"expected {self.param_count} parameters for the encrypted statement, got {len(values)}"
                )
            source: dict[str, Any] = {f"__os_p{i}": v for i, v in enumerate(values)}
        else:
            source = dict(parameters) if parameters else {}
        if not self.params:
            return source
        out = dict(source)
        for src, target, fn in self.params:
            out[target] = fn(source[src])
        return out

    def decrypt_row(self, row: Sequence[Any]) -> tuple[Any, ...]:
        values = list(row)
        for index, fn in self.decrypt:
            values[index] = fn(values[index])
        return tuple(values)


class _Rewriter:
    def __init__(self, rule: EncryptRule, statement: Statement, family: Family) -> None:
        self.rule = rule
        self.statement = statement
        self.family = family
        self.params: list[tuple[str, str, ParamFn]] = []
        self.counter = 0

    # -- helpers
    def fail(self, message: str, column: EncryptedColumn | None = None, table: str | None = None) -> None:
        where = f"{column.table}.{column.logic}" if column is not None else table or "?"
        raise UnsupportedStatementError(
            f"cannot rewrite for encryption ({where}): {message}; the statement was not sent",
            table=column.table if column is not None else table,
            column=column.logic if column is not None else None,
        )

    def new_param(self, source: str, fn: ParamFn) -> exp.Placeholder:
        self.counter += 1
        target = f"{source}__os_e{self.counter}"
        self.params.append((source, target, fn))
        return exp.Placeholder(this=target)

    def value(self, node: exp.Expression, fn: ParamFn, column: EncryptedColumn) -> exp.Expression:
        """``node`` (a value for ``column``) transformed by ``fn``."""
        if isinstance(node, exp.Placeholder):
            if not node.name or node.name == "?":
                self.fail("positional placeholder without a name", column)
            return self.new_param(node.name, fn)
        if isinstance(node, exp.Null):
            return exp.Null()
        if isinstance(node, exp.Literal):
            result = fn(node.name if node.is_string else node.this)
            return exp.Null() if result is None else exp.Literal.string(str(result))
        if isinstance(node, exp.Boolean):
            result = fn(bool(node.this))
            return exp.Null() if result is None else exp.Literal.string(str(result))
        if isinstance(node, exp.Neg) and isinstance(node.this, exp.Literal):
            result = fn(f"-{node.this.this}")
            return exp.Null() if result is None else exp.Literal.string(str(result))
        self.fail(f"the value {node.sql()!r} is not a parameter or a literal", column)
        raise AssertionError  # unreachable

    # -- scopes
    @staticmethod
    def scope_of(select: exp.Expression) -> dict[str, str]:
        """alias or name -> table name, for the tables of one SELECT/UPDATE/DELETE."""
        scope: dict[str, str] = {}
        for table in select.find_all(exp.Table):
            # only tables of this level, not of nested selects
            if table.find_ancestor(exp.Select, exp.Update, exp.Delete) is not select:
                continue
            name = table.name.lower()
            scope[name] = name
            if table.alias:
                scope[table.alias.lower()] = name
        return scope

    def resolve(self, column: exp.Column, scope: Mapping[str, str]) -> EncryptedColumn | None:
        name = column.name.lower()
        qualifier = column.table.lower() if column.table else None
        if qualifier:
            table = scope.get(qualifier, qualifier)
            return self.rule.tables.get(table, {}).get(name)
        for table in dict.fromkeys(scope.values()):
            found = self.rule.tables.get(table, {}).get(name)
            if found is not None:
                return found
        return None

    def scope_for(self, node: exp.Expression) -> dict[str, str]:
        owner = node.find_ancestor(exp.Select, exp.Update, exp.Delete)
        if owner is None:
            return {}
        scope = self.scope_of(owner)
        parent = owner.find_ancestor(exp.Select, exp.Update, exp.Delete)
        while parent is not None:  # correlated references see the outer tables
            for key, value in self.scope_of(parent).items():
                scope.setdefault(key, value)
            parent = parent.find_ancestor(exp.Select, exp.Update, exp.Delete)
        return scope

    # -- conditions
    def condition_column(self, col: EncryptedColumn) -> tuple[str, ParamFn | None]:
        """The stored column a predicate on ``col`` compares, and the value transform."""
        if not self.rule.query_with_cipher and col.plain:
            return col.plain, None
        if col.assisted and col.assist is not None:
            return col.assisted, col.assist.encrypt
        if col.encryptor.deterministic:
            return col.cipher, col.encryptor.encrypt
        self.fail("equality needs an assistedQueryColumn or a deterministic encryptor", col)
        raise AssertionError

    def rewrite_predicate(self, column: exp.Column, col: EncryptedColumn) -> None:
        parent = column.parent
        column.meta[_REWRITTEN] = True
        if isinstance(parent, exp.Is):
            column.set("this", exp.to_identifier(col.cipher))
            return
        if isinstance(parent, exp.EQ | exp.NEQ):
            other = parent.expression if parent.this is column else parent.this
            if isinstance(other, exp.Column):
                self.fail("comparing an encrypted column with another column", col)
            target, fn = self.condition_column(col)
            column.set("this", exp.to_identifier(target))
            if fn is not None:
                replaced = self.value(other, fn, col)
                other.replace(replaced)
            return
        if isinstance(parent, exp.In) and parent.this is column:
            if parent.args.get("query") is not None:
                self.fail("IN (subquery) on an encrypted column", col)
            target, fn = self.condition_column(col)
            column.set("this", exp.to_identifier(target))
            if fn is not None:
                for item in list(parent.expressions):
                    item.replace(self.value(item, fn, col))
            return
        kind = type(parent).__name__.upper() if parent is not None else "expression"
        self.fail(f"the clause {kind} is unsupported in encrypt rule", col)

    # -- statements
    def run(self) -> RewritePlan:
        tree = self.statement.tree
        assert tree is not None
        tree = tree.copy()
        positional = self.statement.positional
        count = 0
        if positional:  # give positional placeholders names, in order
            for node in tree.find_all(exp.Placeholder, bfs=False):  # in textual order
                node.set("this", f"__os_p{count}")
                count += 1
        decrypt: tuple[tuple[int, ParamFn], ...] = ()
        if isinstance(tree, exp.Insert):
            self.rewrite_insert(tree)
        elif isinstance(tree, exp.Update):
            self.rewrite_sets(tree)
        if isinstance(tree, exp.Select):
            decrypt = self.rewrite_projection(tree)
        elif isinstance(tree, exp.Query):
            for select in tree.find_all(exp.Select):
                if self.scope_touches(select):
                    self.fail(
                        "set operations over encrypted tables are not supported", table=self.first_table()
                    )
        if isinstance(tree, exp.Insert | exp.Update) and tree.args.get("returning"):
            self.fail("RETURNING with encrypted tables is not supported", table=self.first_table())
        self.rewrite_remaining(tree)
        sql = render(tree, self.family, positional, self.statement.escaped)
        return RewritePlan(sql, positional, count, self.params, decrypt)

    def first_table(self) -> str | None:
        return next((t for t in self.statement.tables if t in self.rule.tables), None)

    def scope_touches(self, select: exp.Expression) -> bool:
        return any(t in self.rule.tables for t in self.scope_of(select).values())

    def rewrite_insert(self, tree: exp.Insert) -> None:  # noqa: C901 (complexity debt, see pyproject [tool.ruff.lint.mccabe])
        target = tree.this
        table_node = target.this if isinstance(target, exp.Schema) else target
        table = table_node.name.lower() if isinstance(table_node, exp.Table) else ""
        columns = self.rule.tables.get(table)
        if not columns:
            if tree.expression is not None and isinstance(tree.expression, exp.Query):
                for select in tree.expression.find_all(exp.Select):
                    if self.scope_touches(select):
                        self.fail("INSERT … SELECT from an encrypted table", table=self.first_table())
            return
        if not isinstance(target, exp.Schema) or not target.expressions:
            self.fail("INSERT without a column list", table=table)
        values = tree.expression
        if not isinstance(values, exp.Values):
            self.fail("INSERT … SELECT into an encrypted table", table=table)
        assert isinstance(target, exp.Schema) and isinstance(values, exp.Values)
        names = [c.name.lower() for c in target.expressions]
        encrypted = [(i, columns[n]) for i, n in enumerate(names) if n in columns]
        if not encrypted:
            return
        new_columns: list[exp.Expression] = []
        for i, ident in enumerate(target.expressions):
            col = columns.get(names[i])
            if col is None:
                new_columns.append(ident)
                continue
            new_columns.append(exp.to_identifier(col.cipher))
            if col.plain:
                new_columns.append(exp.to_identifier(col.plain))
            if col.assisted:
                new_columns.append(exp.to_identifier(col.assisted))
        for row in values.expressions:
            if not isinstance(row, exp.Tuple) or len(row.expressions) != len(names):
                self.fail("INSERT rows must list one value per column", table=table)
            out: list[exp.Expression] = []
            for i, item in enumerate(row.expressions):
                col = columns.get(names[i])
                if col is None:
                    out.append(item)
                    continue
                out.append(self.value(item, col.encryptor.encrypt, col))
                if col.plain:
                    out.append(item.copy())
                if col.assisted and col.assist is not None:
                    out.append(self.value(item, col.assist.encrypt, col))
            row.set("expressions", out)
        target.set("expressions", new_columns)
        conflict = tree.args.get("conflict")
        if conflict is not None:
            for node in conflict.find_all(exp.Column):
                col = self.resolve(node, {table: table})
                if col is not None:
                    self.fail("ON DUPLICATE KEY / ON CONFLICT updating an encrypted column", col)

    def rewrite_sets(self, tree: exp.Update) -> None:
        scope = self.scope_of(tree)
        items: list[exp.Expression] = []
        for item in tree.expressions:
            if not isinstance(item, exp.EQ) or not isinstance(item.this, exp.Column):
                items.append(item)
                continue
            col = self.resolve(item.this, scope)
            if col is None:
                items.append(item)
                continue
            qualifier = item.this.table
            value = item.expression

            def assign(name: str, new_value: exp.Expression, q: str = qualifier) -> exp.EQ:
                return exp.EQ(this=_stored(name, q), expression=new_value)

            items.append(assign(col.cipher, self.value(value, col.encryptor.encrypt, col)))
            if col.plain:
                items.append(assign(col.plain, value.copy()))
            if col.assisted and col.assist is not None:
                items.append(assign(col.assisted, self.value(value, col.assist.encrypt, col)))
        tree.set("expressions", items)

    def rewrite_projection(self, select: exp.Select) -> tuple[tuple[int, ParamFn], ...]:
        scope = self.scope_of(select)
        touched = [t for t in dict.fromkeys(scope.values()) if t in self.rule.tables]
        decrypt: list[tuple[int, ParamFn]] = []
        projections: list[exp.Expression] = []
        for index, item in enumerate(select.expressions):
            inner = item.this if isinstance(item, exp.Alias) else item
            if isinstance(inner, exp.Star) or (
                isinstance(inner, exp.Column) and isinstance(inner.this, exp.Star)
            ):
                if touched:
                    self.fail("SELECT * on an encrypted table (list the columns)", table=touched[0])
                projections.append(item)
                continue
            if not isinstance(inner, exp.Column):
                projections.append(item)
                continue
            col = self.resolve(inner, scope)
            if col is None:
                projections.append(item)
                continue
            output = item.alias if isinstance(item, exp.Alias) else inner.name
            use_plain = not self.rule.query_with_cipher and col.plain
            stored = col.plain if use_plain else col.cipher
            assert stored is not None
            projections.append(exp.alias_(_stored(stored, inner.table), output))  # type: ignore[arg-type]
            if not use_plain:
                decrypt.append((index, col.encryptor.decrypt))
        select.set("expressions", projections)
        return tuple(decrypt)

    def rewrite_remaining(self, tree: exp.Expression) -> None:
        """Every other reference to an encrypted column: predicates are rewritten, the rest refused."""
        done: set[int] = set()
        for column in list(tree.find_all(exp.Column)):
            if id(column) in done or isinstance(column.this, exp.Star):
                continue
            col = self.resolve(column, self.scope_for(column))
            if col is None:
                continue
            if column.meta.get(_REWRITTEN):
                continue
            parent = column.parent
            if isinstance(parent, exp.Ordered) or column.find_ancestor(exp.Group, exp.Order):
                self.fail("ORDER BY / GROUP BY on an encrypted column", col)
            self.rewrite_predicate(column, col)
            done.add(id(column))


def plan_rewrite(rule: EncryptRule, statement: Statement, family: Family) -> RewritePlan | None:
    """The rewrite of ``statement`` under ``rule``; None when it touches no encrypted table.

    Raises :class:`UnsupportedStatementError` when the statement touches an encrypted table but
    cannot be rewritten safely (including SQL the parser does not understand).
    """
    if statement.tree is None:
        lowered = statement.sql.lower()
        for table in rule.tables:
            if table in lowered:
                raise UnsupportedStatementError(
                    f"cannot rewrite for encryption (table {table}): the statement could not be parsed"
                    f" ({statement.parse_error or statement.kind}); it was not sent",
                    table=table,
                )
        return None
    if not rule.touches(statement):
        return None
    return _Rewriter(rule, statement, family).run()

"""Read OpenSergo objects from YAML/JSON text, files, directories or stdin, like ``kubectl apply -f``.

Every problem becomes a :class:`SpecError` naming the source, the 0-based document index and the
field path. A multi-document file reports every invalid document, not just the first.

This is the code base's one YAML (and JSON) reader: :func:`load_yaml`, :func:`iter_yaml`,
:func:`load_json` and :func:`locate` decode the way objects are read everywhere (timestamps stay
strings), raise :class:`YamlSyntaxError` with the line and column of a syntax error, and apply
the parser limits of :mod:`opensergo.spec.limits` (no aliases; size, depth, document count;
finite, in-range numbers), raising :class:`~opensergo.spec.limits.LimitError` beyond them.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from opensergo.spec import kinds
from opensergo.spec.base import Resource
from opensergo.spec.errors import SpecError, SpecErrors, from_validation_error
from opensergo.spec.limits import (
    DEFAULT_LIMITS,
    LimitError,
    ParserLimits,
    check_exact_integers,
    check_size,
    check_values,
)

SUFFIXES = (".yaml", ".yml", ".json")


class _Loader(yaml.SafeLoader):
    """SafeLoader that keeps timestamps as strings (``creationTimestamp`` is a str field), refuses
    aliases and stops composing beyond ``max_depth`` nested nodes (the composer recurses), and
    scanning beyond ``max_depth`` nested flow collections."""

    max_depth = DEFAULT_LIMITS.max_depth

    def __init__(self, stream: str | bytes) -> None:
        super().__init__(stream)
        self._depth = 0

    def fetch_flow_collection_start(self, TokenClass: Any) -> None:
        # Every open flow collection ("[[[[...") is a possible simple key the scanner re-checks
        # for each token it reads ahead (up to 1,024 characters), before the composer sees a
        # node: the cost grows with the square of the nesting (2 KB of "[" took 0.3 s on the
        # event loop). Refuse deep flow nesting as it is scanned.
        if self.flow_level >= self.max_depth:
            mark = self.get_mark()
            raise yaml.scanner.ScannerError(None, None, f"nested deeper than {self.max_depth} levels", mark)
        super().fetch_flow_collection_start(TokenClass)

    def scan_flow_scalar_non_spaces(self, double: bool, start_mark: Any) -> list[str]:
        # PyYAML turns a "\\U" escape into chr(code) unchecked: a code point beyond U+10FFFF
        # escaped the parser as ValueError or OverflowError (found by make fuzz).
        try:
            return super().scan_flow_scalar_non_spaces(double, start_mark)
        except (ValueError, OverflowError):
            problem = "an escape beyond U+10FFFF"
            context = "while scanning a double-quoted scalar"
            raise yaml.scanner.ScannerError(context, start_mark, problem, self.get_mark()) from None

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except yaml.YAMLError:
            raise
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError, IndexError):
            # An explicit tag its value does not fit (``!!int abc``, ``!!bool maybe``): PyYAML's
            # constructors raise whatever the conversion raised.
            raise yaml.constructor.ConstructorError(
                None, None, f"the value does not fit its tag {_short(node.tag)}", node.start_mark
            ) from None

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed", mark)
        self._depth += 1
        try:
            # Scalars sit one level below the deepest allowed map or list.
            if self._depth > self.max_depth + 1:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise yaml.composer.ComposerError(
                    None, None, f"nested deeper than {self.max_depth} levels", mark
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _short(tag: str) -> str:
    return tag.replace("tag:yaml.org,2002:", "!!")


def _not_json(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    raise yaml.constructor.ConstructorError(
        None, None, f"tag {_short(node.tag)} is not supported: objects hold JSON values", node.start_mark
    )


# Explicit tags whose values JSON cannot carry (bytes, dates, sets, ordered pairs) are refused.
for _tag in ("binary", "timestamp", "set", "omap", "pairs"):
    _Loader.add_constructor(f"tag:yaml.org,2002:{_tag}", _not_json)


class YamlSyntaxError(ValueError):
    """Text that is not YAML; ``line`` and ``column`` (1-based) when the parser knows where."""

    def __init__(self, problem: str, line: int | None = None, column: int | None = None) -> None:
        where = f" at line {line}, column {column}" if line is not None else ""
        super().__init__(f"invalid YAML{where}: {problem}")
        self.problem = problem
        self.line = line
        self.column = column

    @property
    def position(self) -> tuple[int, int] | None:
        return (self.line, self.column) if self.line is not None and self.column is not None else None

    @classmethod
    def from_yaml(cls, err: yaml.YAMLError, text: str | bytes = "") -> YamlSyntaxError:
        if isinstance(err, yaml.reader.ReaderError):
            return cls._unreadable(err, text)
        mark = getattr(err, "problem_mark", None)
        problem = getattr(err, "problem", None) or str(err)
        if mark is None:
            return cls(problem)
        return cls(problem, mark.line + 1, mark.column + 1)

    @classmethod
    def _unreadable(cls, err: yaml.reader.ReaderError, text: str | bytes) -> YamlSyntaxError:
        """A character YAML does not allow (control characters, bad UTF-8), located in ``text``."""
        if err.encoding != "unicode":  # bytes that do not decode
            problem = f"not valid {err.encoding}: byte #x{err.character:02x} ({err.reason})"
        else:
            problem = f"unacceptable character #x{err.character:04x}: {err.reason}"
        if not text:
            return cls(problem)
        before = text[: err.position]
        if isinstance(before, bytes):
            before = before.decode("utf-8", "replace")
        newline = before.rfind("\n")
        return cls(problem, before.count("\n") + 1, len(before) - newline)


def _loader(text: str | bytes, limits: ParserLimits) -> _Loader:
    check_size(text, limits)
    try:
        loader = _Loader(text)  # reads a str at once: refuses control characters here
    except yaml.reader.ReaderError as err:
        raise YamlSyntaxError.from_yaml(err, text) from None
    loader.max_depth = limits.max_depth
    return loader


def load_yaml(text: str | bytes, limits: ParserLimits = DEFAULT_LIMITS) -> Any:
    """One YAML (or JSON) document, decoded; None for an empty text."""
    loader = _loader(text, limits)
    try:
        data = loader.get_single_data()
    except yaml.YAMLError as err:
        raise YamlSyntaxError.from_yaml(err, text) from None
    finally:
        loader.dispose()
    check_values(data, limits)
    return data


def iter_yaml(text: str | bytes, limits: ParserLimits = DEFAULT_LIMITS) -> Iterator[Any]:
    """Each document of a multi-document text in order (None for an empty one)."""
    loader = _loader(text, limits)
    count = 0
    try:
        while loader.check_data():  # type: ignore[no-untyped-call]
            count += 1
            if count > limits.max_documents:
                raise LimitError(f"more than {limits.max_documents} documents")
            data = loader.get_data()
            check_values(data, limits)
            yield data
    except yaml.YAMLError as err:
        raise YamlSyntaxError.from_yaml(err, text) from None
    finally:
        loader.dispose()


def load_json(text: str | bytes, limits: ParserLimits = DEFAULT_LIMITS) -> Any:
    """One JSON document, decoded under the same limits as YAML (ValueError when not JSON)."""
    check_size(text, limits)
    try:
        data = json.loads(text)
    except RecursionError:
        raise LimitError(f"nested deeper than {limits.max_depth} levels") from None
    check_values(data, limits)
    return data


def locate(text: str, path: Sequence[str | int]) -> tuple[int, int] | None:
    """(line, column), 1-based, of the field at ``path`` in a one-document YAML text; the deepest
    existing parent when the field itself is missing; None when the text does not parse."""
    try:
        loader = _loader(text, DEFAULT_LIMITS)
        try:
            node = loader.get_single_node()
        finally:
            loader.dispose()
    except (yaml.YAMLError, YamlSyntaxError, LimitError):
        return None
    if node is None:
        return None
    where = _position(node)
    for part in path:
        child = _child(node, part)
        if child is None:
            return where
        where, node = child
    return where


def _position(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _child(node: yaml.Node, part: str | int) -> tuple[tuple[int, int], yaml.Node] | None:
    """(where the child's key or item starts, the child's value node), or None when absent."""
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.value == str(part):
                return _position(key_node), value_node
        return None
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
        item = node.value[part]
        return _position(item), item
    return None


def parse_object(
    obj: Mapping[str, Any], *, source: str | None = None, document: int | None = None
) -> Resource:
    """Validate one decoded object into its kind's model."""

    def fail(message: str, *path: str | int) -> SpecError:
        return SpecError(message, source=source, document=document, path=path)

    if not isinstance(obj, Mapping):
        raise fail(
            f"expected an object (a map with apiVersion, kind, metadata, spec), got {type(obj).__name__}"
        )
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    if not isinstance(api_version, str) or not api_version:
        raise fail("required field is missing", "apiVersion")
    if not isinstance(kind, str) or not kind:
        raise fail("required field is missing", "kind")
    try:
        info = kinds.by_api_version_kind(api_version, kind)
    except KeyError:
        try:
            other = kinds.lookup(kind)
        except KeyError:
            known = kinds.known_kinds_text()
            raise fail(f"unknown kind {api_version}/{kind}; known kinds: {known}", "kind") from None
        raise fail(
            f"kind {other.kind} has apiVersion {other.api_version}, not {api_version}", "apiVersion"
        ) from None
    try:
        check_exact_integers(obj.get("spec"), ("spec",))
    except LimitError as err:
        raise fail(err.message, *err.path) from None
    try:
        return info.model.model_validate(dict(obj))
    except ValidationError as exc:
        raise from_validation_error(exc, source=source, document=document) from None


def _documents(text: str, source: str) -> Iterator[tuple[int, Any]]:
    """(index, decoded document) for each non-empty YAML document; syntax errors raise SpecError."""
    index = 0  # the document being read, so a syntax error can name it
    try:
        for doc in iter_yaml(text):
            if doc is not None:
                yield index, doc
            index += 1
    except YamlSyntaxError as exc:
        raise SpecError(str(exc), source=source, document=index) from None
    except LimitError as exc:
        raise exc.located(source=source, document=index) from None


def _expand(doc: Any) -> Iterator[tuple[tuple[str | int, ...], Any]]:
    """A top-level list or a ``kind: List`` holds several objects; path prefixes locate them."""
    if isinstance(doc, list):
        for i, item in enumerate(doc):
            yield (i,), item
    elif isinstance(doc, dict) and doc.get("kind") == "List" and isinstance(doc.get("items"), list):
        for i, item in enumerate(doc["items"]):
            yield ("items", i), item
    else:
        yield (), doc


def parse_documents(text: str, *, source: str = "<string>") -> list[Resource]:
    """Every object in a multi-document YAML (or JSON) text; raises SpecErrors listing all problems."""
    out: list[Resource] = []
    errors: list[SpecError] = []
    try:
        for index, doc in _documents(text, source):
            for prefix, obj in _expand(doc):
                try:
                    out.append(parse_object(obj, source=source, document=index))
                except SpecError as err:
                    errors.append(
                        SpecError(err.message, source=source, document=index, path=prefix + err.path)
                    )
    except SpecError as err:  # YAML syntax: nothing after this point can be read
        errors.append(err)
    if errors:
        raise SpecErrors(errors)
    return out


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
    return [path]


def load_paths(paths: Iterable[str | Path]) -> list[Resource]:
    """Objects from files, directories (recursive *.yaml / *.yml / *.json, sorted) and ``-`` (stdin)."""
    out: list[Resource] = []
    errors: list[SpecError] = []
    for raw in paths:
        sources: list[tuple[str, Path | None]]
        if str(raw) == "-":
            sources = [("<stdin>", None)]
        else:
            path = Path(raw)
            if not path.exists():
                errors.append(SpecError("no such file or directory", source=str(path)))
                continue
            sources = [(str(file), file) for file in _files(path)]
        for name, file in sources:
            try:
                if file is not None and file.stat().st_size > DEFAULT_LIMITS.max_bytes:
                    limit = DEFAULT_LIMITS.max_bytes
                    errors.append(SpecError(f"larger than the limit of {limit} bytes", source=name))
                    continue
                text = sys.stdin.read() if file is None else file.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                errors.append(SpecError(f"cannot read: {exc}", source=name))
                continue
            try:
                out.extend(parse_documents(text, source=name))
            except SpecErrors as exc:
                errors.extend(exc.errors)
    if errors:
        raise SpecErrors(errors)
    return out

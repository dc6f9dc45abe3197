"""Which fields hold secrets: marked in each kind's schema, and found in bodies by that marking.

A model marks a field with ``Field(json_schema_extra=...)`` (the mark also appears in the JSON
schema as ``x-opensergo-secret``):

* :data:`SECRET`: the value is a secret (``DatabaseEndpoint`` ``password``).
* :data:`SECRET_URL`: the value is a URL whose credentials are secret: the password of
  ``user:password@host`` and the values of ``password=`` / ``pwd=`` style parameters
  (``jdbc:mysql://db:3306/app?user=app&password=...``).
* :data:`SECRET_KEYS`: a free-form map (ShardingSphere ``props``, proxy settings) whose entries
  named like secrets are secrets, at any depth (``aes-key-value``, ``sm4-iv``, ``password``,
  ``Authorization``...).

:func:`opensergo.spec.kinds.secrets_of` gives the marking of a body's kind as a
:class:`SecretNode` tree that callers walk beside the body (redaction, diffs, restore of redacted
values, the SDK's snapshot). A field
whose name reads like a secret (:func:`is_secret_name`) counts as marked wherever it is, so a
body of an unknown kind, or an unmarked field named ``password``, is still covered.
"""

from __future__ import annotations

import re
import types
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel

MARK = "x-opensergo-secret"
SECRET: dict[str, Any] = {MARK: "value"}
SECRET_URL: dict[str, Any] = {MARK: "url"}
SECRET_KEYS: dict[str, Any] = {MARK: "keys"}

_SECRET_NAME = re.compile(
    r"password|passwd|secret|credential|privatekey|token$|apikey|authorization|cookie"
    r"|(^|[-_.])(key|keyvalue|key-value|pwd|iv|salt)([-_.]|$)",
    re.IGNORECASE,
)
# user:password@ in an authority, and key=value parameters whose key reads like a secret.
_URL_USERINFO = re.compile(r"(?P<pre>//[^/?#@:]*:)(?P<secret>[^/?#@]*)(?=@)")
_URL_PARAM = re.compile(
    r"(?P<pre>[?&;](?:password|passwd|pwd|secret|token|apikey|api-key|api_key|access[-_]?key|sessiontoken)=)"
    r"(?P<secret>[^&;#]*)",
    re.IGNORECASE,
)


def is_secret_name(name: str) -> bool:
    """A field or map key whose name reads like a secret (``aes-key-value``, ``dbPassword``)."""
    return bool(_SECRET_NAME.search(name)) or bool(
        _SECRET_NAME.search(name.replace("_", "").replace("-", ""))
    )


@dataclass(frozen=True)
class SecretNode:
    """The marking of one node of a body: ``mark`` for the node's own value, ``fields`` of a
    model, ``items`` for list items and map values, and ``keys`` when map entries named like
    secrets are secrets (a :data:`SECRET_KEYS` subtree)."""

    mark: str | None = None
    fields: Mapping[str, SecretNode] = field(default_factory=dict)
    items: SecretNode | None = None
    keys: bool = False

    def child(self, key: str | int) -> SecretNode:
        """The marking of a field, list item or map value below this node."""
        if isinstance(key, str) and key in self.fields:
            return self.fields[key]
        if self.items is not None:
            return self.items
        return _KEYS if self.keys else UNMARKED

    def entry_mark(self, key: str | int) -> str | None:
        """How the value under ``key`` is secret (``value`` or ``url``), or None."""
        mark = self.child(key).mark
        if mark in ("value", "url"):
            return mark
        if isinstance(key, str) and is_secret_name(key):
            return "value"
        return None


UNMARKED = SecretNode()
_KEYS = SecretNode(keys=True)


def _marking(extra: Any) -> str | None:
    if isinstance(extra, Mapping):
        mark = extra.get(MARK)
        return mark if isinstance(mark, str) else None
    return None


def _node_of_annotation(annotation: Any, seen: frozenset[type]) -> SecretNode:
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        nodes = [_node_of_annotation(a, seen) for a in get_args(annotation) if a is not type(None)]
        marked = [n for n in nodes if n != UNMARKED]
        return marked[0] if marked else UNMARKED
    if origin in (list, tuple, set, frozenset):
        args = [a for a in get_args(annotation) if a is not Ellipsis]
        item = _node_of_annotation(args[0], seen) if args else UNMARKED
        return SecretNode(items=item) if item != UNMARKED else UNMARKED
    if origin in (dict, Mapping):
        key_value = get_args(annotation)
        value = _node_of_annotation(key_value[1], seen) if len(key_value) == 2 else UNMARKED
        return SecretNode(items=value) if value != UNMARKED else UNMARKED
    if isinstance(annotation, type) and issubclass(annotation, BaseModel) and annotation not in seen:
        return _node_of_model(annotation, seen | {annotation})
    return UNMARKED


def _node_of_model(model: type[BaseModel], seen: frozenset[type]) -> SecretNode:
    fields: dict[str, SecretNode] = {}
    for name, info in model.model_fields.items():
        mark = _marking(info.json_schema_extra)
        if mark == "keys":
            node = _KEYS
        elif mark is not None:
            node = SecretNode(mark=mark)
        else:
            node = _node_of_annotation(info.annotation, seen)
        if node != UNMARKED:
            fields[info.alias or name] = node
    return SecretNode(fields=fields) if fields else UNMARKED


@cache
def model_secrets(model: type[BaseModel]) -> SecretNode:
    """The marking of a model's bodies (cached per model)."""
    return _node_of_model(model, frozenset({model}))


def url_secrets(url: str) -> list[tuple[int, int]]:
    """(start, end) of each secret inside a URL: userinfo passwords and secret parameters."""
    spans = [m.span("secret") for m in _URL_USERINFO.finditer(url)]
    spans += [m.span("secret") for m in _URL_PARAM.finditer(url)]
    return sorted(s for s in spans if s[1] > s[0])


def mask_url(url: str, placeholder: str) -> str:
    """``url`` with each secret inside it replaced by ``placeholder``."""
    out, last = [], 0
    for start, end in url_secrets(url):
        out += [url[last:start], placeholder]
        last = end
    return "".join(out) + url[last:]


def url_secret_values(url: str) -> list[str]:
    return [url[s:e] for s, e in url_secrets(url)]


def unmask_url(new: str, current: str, placeholder: str) -> str:
    """``new`` with each secret written as ``placeholder`` taken from ``current`` at the same
    position (the n-th secret of the URL), so an edited, redacted URL keeps its credentials."""
    stored = url_secret_values(current)
    out, last = [], 0
    for index, (start, end) in enumerate(url_secrets(new)):
        value = new[start:end]
        if value == placeholder and index < len(stored):
            value = stored[index]
        out += [new[last:start], value]
        last = end
    return "".join(out) + new[last:]


def secret_values(body: Any, node: SecretNode) -> Iterator[tuple[tuple[str | int, ...], Any]]:
    """(path, value) of each non-empty secret in a body marked by ``node`` (for a URL: each
    secret in it)."""
    yield from _walk(body, node, ())


def _walk(
    value: Any, node: SecretNode, path: tuple[str | int, ...]
) -> Iterator[tuple[tuple[str | int, ...], Any]]:
    if isinstance(value, Mapping):
        entries: list[tuple[str | int, Any]] = list(value.items())
    elif isinstance(value, list):
        entries = list(enumerate(value))
    else:
        return
    for key, child in entries:
        mark = node.entry_mark(key) if isinstance(value, Mapping) else node.child(key).mark
        if mark == "url" and isinstance(child, str):
            for secret in url_secret_values(child):
                yield (*path, key), secret
        elif mark == "value" and child not in (None, "") and not isinstance(child, dict | list):
            yield (*path, key), child
        else:
            yield from _walk(child, node.child(key), (*path, key))


def has_secrets(body: Any, node: SecretNode) -> bool:
    """Whether a body marked by ``node`` holds any non-empty secret."""
    return next(secret_values(body, node), None) is not None

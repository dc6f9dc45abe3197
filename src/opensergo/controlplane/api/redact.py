"""Secrets (DatabaseEndpoint passwords and the like) never leave the control plane's API.

Which fields are secret is marked in each kind's schema (:mod:`opensergo.spec.secrets`): a
secret value, the credentials inside a URL (``password=`` parameters, ``user:password@``), and
the entries named like secrets in free-form maps (``aes-key-value`` in an Encryption's props).
Every object body the API returns, in REST, watch events, history, rollback and validate
answers, diffs and the dashboard, goes through :func:`redact`: each secret becomes ``******``.
A client that writes an object back with ``******`` in a secret keeps the stored value
(:func:`restore`), so editing a redacted object does not erase its password. Stored objects and
pushes to data planes keep the real values; the control plane never logs object bodies, and its
validation messages never quote a secret.
"""

from __future__ import annotations

from typing import Any

from opensergo.spec.kinds import secrets_of
from opensergo.spec.secrets import SecretNode, mask_url, secret_values, unmask_url, url_secrets

PLACEHOLDER = "******"
CHANGED = f"{PLACEHOLDER} (changed)"


def _is_value(v: Any) -> bool:
    return v not in (None, "") and not isinstance(v, dict | list)


def redact(value: Any, node: SecretNode | None = None) -> Any:
    """A copy of an object body with every secret's non-empty value replaced by PLACEHOLDER."""
    node = secrets_of(value) if node is None else node
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            mark = node.entry_mark(k)
            if mark == "url" and isinstance(v, str):
                out[k] = mask_url(v, PLACEHOLDER)
            elif mark == "value" and _is_value(v):
                out[k] = PLACEHOLDER
            else:
                out[k] = redact(v, node.child(k))
        return out
    if isinstance(value, list):
        return [redact(v, node.child(i)) for i, v in enumerate(value)]
    return value


def redact_changes(current: Any, new: Any, *, compare: bool = True, node: SecretNode | None = None) -> Any:
    """``new`` redacted for a diff against ``current``: a secret that changes reads
    ``****** (changed)``, so a diff shows that it changes without showing it.

    ``compare=False`` is for bodies a caller wrote: any secret written in clear (not the
    placeholder) reads as changed, so the answer never tells whether a guess matches."""
    node = secrets_of(new) if node is None else node
    if isinstance(new, dict):
        cur = current if isinstance(current, dict) else {}
        out: dict[str, Any] = {}
        for k, v in new.items():
            mark = node.entry_mark(k)
            if mark == "url" and isinstance(v, str):
                same = compare and _url_secrets_equal(v, cur.get(k))
                clear = any(v[s:e] != PLACEHOLDER for s, e in url_secrets(v))
                out[k] = mask_url(v, PLACEHOLDER if same or not clear else CHANGED)
            elif mark == "value" and _is_value(v):
                unchanged = v == PLACEHOLDER or (compare and cur.get(k) == v)
                out[k] = PLACEHOLDER if unchanged else CHANGED
            else:
                out[k] = redact_changes(cur.get(k), v, compare=compare, node=node.child(k))
        return out
    if isinstance(new, list):
        cur_list = current if isinstance(current, list) else []
        return [
            redact_changes(_counterpart(v, i, cur_list), v, compare=compare, node=node.child(i))
            for i, v in enumerate(new)
        ]
    return new


def _url_secrets_equal(new: str, current: Any) -> bool:
    if not isinstance(current, str):
        return False
    return [new[s:e] for s, e in url_secrets(new)] == [current[s:e] for s, e in url_secrets(current)]


def restore(new: Any, current: Any, node: SecretNode | None = None) -> Any:
    """``new`` with each PLACEHOLDER secret replaced by the value at the same path in ``current``.

    A placeholder with nothing stored at its path stays (the caller rejects it)."""
    node = secrets_of(new) if node is None else node
    if isinstance(new, dict):
        cur = current if isinstance(current, dict) else {}
        out: dict[str, Any] = {}
        for k, v in new.items():
            mark = node.entry_mark(k)
            stored = cur.get(k)
            if mark == "url" and isinstance(v, str) and isinstance(stored, str):
                out[k] = unmask_url(v, stored, PLACEHOLDER)
            elif mark == "value" and v == PLACEHOLDER and stored not in (None, ""):
                out[k] = stored
            else:
                out[k] = restore(v, stored, node.child(k))
        return out
    if isinstance(new, list):
        cur_list = current if isinstance(current, list) else []
        return [restore(v, _counterpart(v, i, cur_list), node.child(i)) for i, v in enumerate(new)]
    return new


def _counterpart(item: Any, index: int, current: list[Any]) -> Any:
    """The stored list item that ``item`` edits: the one with the same ``name``, else by index."""
    if isinstance(item, dict) and isinstance(item.get("name"), str):
        for candidate in current:
            if isinstance(candidate, dict) and candidate.get("name") == item["name"]:
                return candidate
        return None
    return current[index] if index < len(current) else None


def placeholder_path(value: Any) -> tuple[str | int, ...] | None:
    """Where the first PLACEHOLDER secret is (a redacted value written back with nothing
    stored to restore it from), or None."""
    for path, secret in secret_values(value, secrets_of(value)):
        if secret == PLACEHOLDER:
            return path
    return None


def clear_secrets(value: Any) -> bool:
    """Whether a body a caller wrote holds any secret in clear (not the placeholder)."""
    return any(secret != PLACEHOLDER for _, secret in secret_values(value, secrets_of(value)))

"""Secrets (DatabaseEndpoint passwords and the like) never leave the control plane's API.

Every object body the API returns goes through :func:`redact`: the value of any field whose
name contains ``password``, ``secret``, ``credential`` or ``privatekey``, or is ``token`` /
``apikey`` (any case, at any depth), becomes ``******``. A client that writes an object back with
``******`` in such a field keeps the stored value (:func:`restore`), so editing a redacted object
in the dashboard does not erase its password. Stored objects and pushes to data planes keep the
real values; the control plane never logs object bodies.
"""

from __future__ import annotations

import re
from typing import Any

PLACEHOLDER = "******"
_SECRET_KEY = re.compile(r"password|passwd|secret|credential|privatekey|^token$|^apikey$", re.IGNORECASE)


def is_secret_key(key: str) -> bool:
    return bool(_SECRET_KEY.search(key.replace("_", "").replace("-", "")))


def redact(value: Any) -> Any:
    """A copy of ``value`` with every secret field's non-empty value replaced by PLACEHOLDER."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if (
                isinstance(k, str)
                and is_secret_key(k)
                and v not in (None, "")
                and not isinstance(v, dict | list)
            ):
                out[k] = PLACEHOLDER
            else:
                out[k] = redact(v)
        return out
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def redact_changes(current: Any, new: Any) -> Any:
    """``new`` redacted for a diff against ``current``: a secret that changed reads
    ``****** (changed)``, so a diff shows that it changes without showing it."""
    if isinstance(new, dict):
        cur = current if isinstance(current, dict) else {}
        out: dict[str, Any] = {}
        for k, v in new.items():
            if (
                isinstance(k, str)
                and is_secret_key(k)
                and v not in (None, "")
                and not isinstance(v, dict | list)
            ):
                out[k] = PLACEHOLDER if cur.get(k) == v or v == PLACEHOLDER else f"{PLACEHOLDER} (changed)"
            else:
                out[k] = redact_changes(cur.get(k), v)
        return out
    if isinstance(new, list):
        cur_list = current if isinstance(current, list) else []
        return [redact_changes(_counterpart(v, i, cur_list), v) for i, v in enumerate(new)]
    return new


def restore(new: Any, current: Any) -> Any:
    """``new`` with each PLACEHOLDER secret replaced by the value at the same path in ``current``.

    A placeholder with nothing stored at its path stays (the caller rejects it)."""
    if isinstance(new, dict):
        cur = current if isinstance(current, dict) else {}
        out: dict[str, Any] = {}
        for k, v in new.items():
            if isinstance(k, str) and is_secret_key(k) and v == PLACEHOLDER and cur.get(k) not in (None, ""):
                out[k] = cur[k]
            else:
                out[k] = restore(v, cur.get(k))
        return out
    if isinstance(new, list):
        cur_list = current if isinstance(current, list) else []
        return [restore(v, _counterpart(v, i, cur_list)) for i, v in enumerate(new)]
    return new


def _counterpart(item: Any, index: int, current: list[Any]) -> Any:
    """The stored list item that ``item`` edits: the one with the same ``name``, else by index."""
    if isinstance(item, dict) and isinstance(item.get("name"), str):
        for candidate in current:
            if isinstance(candidate, dict) and candidate.get("name") == item["name"]:
                return candidate
        return None
    return current[index] if index < len(current) else None


def placeholder_path(value: Any, path: tuple[str | int, ...] = ()) -> tuple[str | int, ...] | None:
    """Where the first PLACEHOLDER secret is, or None."""
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(k, str) and is_secret_key(k) and v == PLACEHOLDER:
                return (*path, k)
            found = placeholder_path(v, (*path, k))
            if found is not None:
                return found
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found = placeholder_path(v, (*path, i))
            if found is not None:
                return found
    return None

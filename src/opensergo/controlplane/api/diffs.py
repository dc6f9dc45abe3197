"""What a change to an object looks like to a person: the fields they write, rendered as YAML,
and unified diffs of them with secrets redacted (rollback and the dashboard's validate view)."""

from __future__ import annotations

import difflib
from typing import Any

import yaml

from opensergo.controlplane.api.redact import redact, redact_changes


def user_view(body: dict[str, Any]) -> dict[str, Any]:
    """The fields a person writes (no server-managed metadata, no status)."""
    meta = body.get("metadata") or {}
    out_meta: dict[str, Any] = {"name": meta.get("name"), "namespace": meta.get("namespace", "default")}
    for key in ("labels", "annotations"):
        if meta.get(key):
            out_meta[key] = meta[key]
    out: dict[str, Any] = {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": out_meta,
    }
    if "spec" in body:
        out["spec"] = body["spec"]
    return out


def to_yaml(body: Any, sort_keys: bool = False) -> str:
    return yaml.safe_dump(body, sort_keys=sort_keys, default_flow_style=False, allow_unicode=True, width=100)


def diff(current: dict[str, Any] | None, new: dict[str, Any], *, compare: bool = True) -> list[str]:
    """A unified diff of the user-facing YAML, secrets redacted (a changed one says so).

    ``compare=False`` for a body a caller wrote: its secrets are never compared with the stored
    ones (any written in clear reads as changed; see :func:`.redact.redact_changes`).

    Keys are sorted (the store keeps them sorted), which keeps apiVersion, kind, metadata and
    spec in their usual order."""
    before = to_yaml(redact(user_view(current)), True).splitlines() if current is not None else []
    after_body = redact_changes(user_view(current) if current else None, user_view(new), compare=compare)
    after = to_yaml(after_body, True).splitlines()
    return list(
        difflib.unified_diff(before, after, "stored" if current else "/dev/null", "new", lineterm="", n=3)
    )

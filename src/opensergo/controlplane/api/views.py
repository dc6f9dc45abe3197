"""Pure helpers behind the dashboard API: YAML rendering and field locations, diffs, and the
rollout of a rule version to the clients subscribed to its group."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from typing import Any

import yaml

from opensergo.controlplane.api.redact import redact, redact_changes


def body_app(body: dict[str, Any]) -> str | None:
    """The app whose data planes get the object: ``labels.app``, else ``spec.selector.app``."""
    labels = (body.get("metadata") or {}).get("labels") or {}
    if isinstance(labels, dict) and labels.get("app"):
        return str(labels["app"])
    selector = (body.get("spec") or {}).get("selector") if isinstance(body.get("spec"), dict) else None
    if isinstance(selector, dict) and selector.get("app"):
        return str(selector["app"])
    return None


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


def diff(current: dict[str, Any] | None, new: dict[str, Any]) -> list[str]:
    """A unified diff of the user-facing YAML, secrets redacted (a changed one says so).

    Keys are sorted (the store keeps them sorted), which keeps apiVersion, kind, metadata and
    spec in their usual order."""
    before = to_yaml(redact(user_view(current)), True).splitlines() if current is not None else []
    after_body = redact_changes(user_view(current) if current else None, user_view(new))
    after = to_yaml(after_body, True).splitlines()
    return list(
        difflib.unified_diff(before, after, "stored" if current else "/dev/null", "new", lineterm="", n=3)
    )


def locate(text: str, path: Sequence[str | int]) -> tuple[int, int] | None:
    """(line, column), 1-based, of the field at ``path`` in a one-document YAML text; the deepest
    existing parent when the field itself is missing; None when the text does not parse."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    if node is None:
        return None
    where = (node.start_mark.line + 1, node.start_mark.column + 1)
    for part in path:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if isinstance(key_node, yaml.ScalarNode) and key_node.value == str(part):
                    where = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                    node = value_node
                    break
            else:
                return where
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            node = node.value[part]
            where = (node.start_mark.line + 1, node.start_mark.column + 1)
        else:
            return where
    return where


def index_subscriptions(
    clients: Iterable[dict[str, Any]],
) -> dict[tuple[str, str, str], list[tuple[dict[str, Any], dict[str, Any]]]]:
    """(namespace, app, kind) -> [(client, subscription)] over connected clients."""
    out: dict[tuple[str, str, str], list[tuple[dict[str, Any], dict[str, Any]]]] = {}
    for client in clients:
        if not client.get("connected", True):
            continue
        for sub in client.get("subscriptions", []):
            out.setdefault((sub["namespace"], sub["app"], sub["kind"]), []).append((client, sub))
    return out


def client_state(sub: dict[str, Any], version: int) -> tuple[str, str]:
    """Where one subscription stands with a rule version: (state, message).

    ``acked``: the client ACKed a group version that contains this rule version;
    ``nacked``: it NACKed one (message given); ``rejected``: it answered with an error code;
    ``pending``: no answer for it yet.
    """
    acked = sub.get("ackedVersion")
    if acked is not None and acked >= version:
        return "acked", ""
    for nack in reversed(sub.get("nacks") or []):
        if nack.get("version", 0) >= version:
            return "nacked", str(nack.get("message", ""))
    pushed = sub.get("pushedVersion")
    if sub.get("state") in ("rejected", "outdated") and pushed is not None and pushed >= version:
        return str(sub["state"]), str(sub.get("message", ""))
    return "pending", ""


def rollout(
    namespace: str,
    app: str | None,
    kind: str,
    version: int,
    index: dict[tuple[str, str, str], list[tuple[dict[str, Any], dict[str, Any]]]],
) -> dict[str, Any]:
    """Which subscribed clients ACKed, NACKed (with the message) or have yet to answer ``version``."""
    summary = {"acked": 0, "nacked": 0, "pending": 0, "rejected": 0, "outdated": 0}
    clients = []
    if app:
        for client, sub in index.get((namespace, app, kind), []):
            state, message = client_state(sub, version)
            summary[state] += 1
            clients.append(
                {
                    "id": client.get("id"),
                    "identifier": client.get("identifier"),
                    "peer": client.get("peer"),
                    "replica": client.get("replica", ""),
                    "state": state,
                    "message": message,
                    "ackedVersion": sub.get("ackedVersion"),
                    "pushedVersion": sub.get("pushedVersion"),
                    "ackedAt": sub.get("ackedAt"),
                    "pushedAt": sub.get("pushedAt"),
                    "nacks": sub.get("nacks") or [],
                }
            )
    clients.sort(
        key=lambda c: ({"nacked": 0, "rejected": 1, "pending": 2}.get(c["state"], 3), c["identifier"] or "")
    )
    return {"app": app, "version": version, "summary": summary, "clients": clients}

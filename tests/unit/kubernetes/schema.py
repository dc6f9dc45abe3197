"""Turn the committed CRDs' structural OpenAPI v3 schemas into JSON Schema, to test them.

The translation follows what the API server does with a structural schema:

- ``nullable: true`` admits ``null``;
- ``x-kubernetes-int-or-string`` admits integers and strings;
- an object with ``properties`` and neither ``additionalProperties`` nor
  ``x-kubernetes-preserve-unknown-fields`` has no other fields (the API server prunes them, and
  rejects them under strict field validation, kubectl's default);
- an untyped ``x-kubernetes-preserve-unknown-fields`` node admits any type (its ``pattern`` and
  bounds still apply to the strings and numbers).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[3]
CRD_DIR = ROOT / "deploy" / "kubernetes" / "crds"


def to_json_schema(node: dict[str, Any]) -> dict[str, Any]:  # noqa: C901 (complexity debt, see pyproject [tool.ruff.lint.mccabe])
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "properties":
            out[key] = {name: to_json_schema(sub) for name, sub in value.items()}
        elif key == "items":
            out[key] = to_json_schema(value)
        elif key == "additionalProperties":
            out[key] = to_json_schema(value) if isinstance(value, dict) else value
        elif key in ("anyOf", "allOf", "oneOf"):
            out[key] = [to_json_schema(sub) for sub in value]
        elif key == "not":
            out[key] = to_json_schema(value)
        elif key.startswith("x-kubernetes-") or key in ("nullable", "format", "description"):
            continue
        else:
            out[key] = value
    preserve = node.get("x-kubernetes-preserve-unknown-fields", False)
    if node.get("x-kubernetes-int-or-string"):
        out["type"] = ["integer", "string"]
    if "properties" in node and not preserve and "additionalProperties" not in node:
        out["additionalProperties"] = False
    if node.get("nullable"):
        current = out.get("type")
        if isinstance(current, str):
            out["type"] = [current, "null"]
        elif isinstance(current, list):
            out["type"] = [*current, "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    return out


def load_crds(directory: Path = CRD_DIR) -> list[dict[str, Any]]:
    return [yaml.safe_load(path.read_text()) for path in sorted(directory.glob("*.yaml"))]


@cache
def schemas_by_type(directory: Path = CRD_DIR) -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> the JSON Schema of that kind's stored version."""
    out = {}
    for crd in load_crds(directory):
        spec = crd["spec"]
        for version in spec["versions"]:
            api_version = f"{spec['group']}/{version['name']}"
            out[(api_version, spec["names"]["kind"])] = to_json_schema(version["schema"]["openAPIV3Schema"])
    return out

"""Generate the CustomResourceDefinitions of every OpenSergo kind from the pydantic models.

    python scripts/gen_crds.py            # write deploy/kubernetes/crds/ and the Helm chart's crds/
    python scripts/gen_crds.py --check    # exit 1 when the committed files are stale

Each kind's ``Model.model_json_schema()`` is turned into a *structural* OpenAPI v3 schema
(https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/
#specifying-a-structural-schema):

- ``$ref`` is inlined (the models are not recursive);
- ``anyOf: [X, {type: null}]`` becomes ``X`` with ``nullable: true``;
- the one non-null union of the models, a ratio written as ``"60%"`` or ``0.6``, cannot be typed
  in a structural schema (a junctor may not carry ``type``), so it becomes an untyped node
  (``x-kubernetes-preserve-unknown-fields``) whose string form keeps its ``pattern`` and whose
  number form keeps its bounds; its type is checked by the control plane's models, not by the API
  server (a real kube-apiserver refuses CEL rules on an untyped node: it cannot declare a CEL type
  for it, so the whole CRD is rejected). The upstream shorthands below are untyped the same way;
- ``additionalProperties: false`` is dropped: a structural schema prunes unknown fields (and
  ``kubectl``'s strict field validation rejects them); ``additionalProperties: true`` (an open
  map) becomes ``x-kubernetes-preserve-unknown-fields: true``;
- ``title``, ``default`` and ``description`` of the pydantic models are dropped (defaults are
  applied by the control plane, not by the API server, so stored objects stay as written);
- enums, patterns, minimum/maximum, min/max lengths and items, and ``required`` are kept;
- ``metadata`` is ``type: object`` only (the API server validates ObjectMeta itself);
- ``status`` carries the rollout state (acked / nacked / pending counts) and keeps unknown fields.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from opensergo.spec.kinds import KindInfo, all_kinds

ROOT = Path(__file__).resolve().parents[1]
OUT_DIRS = (ROOT / "deploy" / "kubernetes" / "crds", ROOT / "deploy" / "helm" / "opensergo" / "crds")

_KEEP = {
    "type",
    "properties",
    "items",
    "additionalProperties",
    "required",
    "enum",
    "pattern",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "nullable",
    "format",
}
_SCALARS = {"string", "integer", "number", "boolean"}

STATUS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "x-kubernetes-preserve-unknown-fields": True,
    "properties": {
        "observedGeneration": {"type": "integer", "format": "int64"},
        "revision": {"type": "integer", "format": "int64"},
        "acked": {"type": "integer", "minimum": 0},
        "nacked": {"type": "integer", "minimum": 0},
        "pending": {"type": "integer", "minimum": 0},
        "lastError": {"type": "string"},
        "updatedAt": {"type": "string"},
    },
}


class SchemaError(ValueError):
    """The pydantic schema has a construct without a structural equivalent."""


def structural(node: dict[str, Any], defs: dict[str, Any], path: str = "") -> dict[str, Any]:
    """One pydantic JSON Schema node as a structural OpenAPI v3 schema."""
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        merged = {**defs[name], **{k: v for k, v in node.items() if k != "$ref"}}
        return structural(merged, defs, path)
    for junctor in ("anyOf", "oneOf"):
        if junctor in node:
            return _union(node, junctor, defs, path)
    if "allOf" in node:
        raise SchemaError(f"{path}: allOf is not supported")
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _KEEP:
            out.update(_keyword(key, value, defs, path))
    _complete_type(out)
    return out


def _union(node: dict[str, Any], junctor: str, defs: dict[str, Any], path: str) -> dict[str, Any]:
    """``anyOf`` / ``oneOf``: a null branch makes the node nullable; see the module docstring."""
    branches = node[junctor]
    non_null = [b for b in branches if b.get("type") != "null"]
    rest = {k: v for k, v in node.items() if k != junctor}
    if len(non_null) == 1:
        merged = structural({**rest, **non_null[0]}, defs, path)
    else:
        merged = _untyped_union([structural(b, defs, path) for b in non_null], path)
    if len(non_null) < len(branches):
        merged["nullable"] = True
    return merged


def _keyword(key: str, value: Any, defs: dict[str, Any], path: str) -> dict[str, Any]:
    """One kept keyword of a node in its structural form; empty when it is dropped."""
    if key == "properties":
        return {key: {name: structural(sub, defs, f"{path}.{name}") for name, sub in value.items()}}
    if key == "items":
        return {key: structural(value, defs, f"{path}[]")}
    if key == "additionalProperties":
        if value is True:
            return {"x-kubernetes-preserve-unknown-fields": True}
        if isinstance(value, dict):
            return {key: structural(value, defs, f"{path}{{}}")}
        return {}  # False: dropped, see the module docstring.
    if key in ("maximum", "minimum") and abs(value) > 2**53:
        return {}  # int64 bounds: implied by format int64, and not exact in float64
    if key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
        # JSON Schema 2020-12 (pydantic's gt/lt) gives the bound; OpenAPI 3.0, which the
        # kube-apiserver reads, wants the bound in minimum/maximum and a boolean flag.
        return {key.replace("exclusiveM", "m"): value, key: True}
    return {key: value}


def _complete_type(out: dict[str, Any]) -> None:
    """Type a node that has no ``type``, and keep unknown fields of an object without fields."""
    if "type" not in out and not out.get("x-kubernetes-preserve-unknown-fields"):
        if "enum" in out:
            out["type"] = "string"
        elif "properties" in out or "additionalProperties" in out:
            out["type"] = "object"
        else:  # pydantic's Any: a genuinely open value
            out["x-kubernetes-preserve-unknown-fields"] = True
    if out.get("type") == "object" and "properties" not in out and "additionalProperties" not in out:
        out["x-kubernetes-preserve-unknown-fields"] = True


def _untyped_union(branches: list[dict[str, Any]], path: str) -> dict[str, Any]:
    """A scalar that may be one of several types: untyped (see the module docstring)."""
    types = [b.get("type") for b in branches]
    if not all(t in _SCALARS for t in types):
        raise SchemaError(f"{path}: union of {types} has no structural form")
    union: dict[str, Any] = {"x-kubernetes-preserve-unknown-fields": True}
    for branch in branches:
        for key in ("pattern", "minimum", "maximum", "minLength", "maxLength"):
            if key in branch:
                if key in union:
                    raise SchemaError(f"{path}: conflicting {key} in union")
                union[key] = branch[key]  # each of these applies to one JSON type only
    return union


def _walk(node: Any) -> Any:
    """Every schema node under ``node``."""
    if isinstance(node, dict):
        yield node
        for key in ("properties",):
            for sub in node.get(key, {}).values():
                yield from _walk(sub)
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                yield from _walk(node[key])


def _object_or_string(node: dict[str, Any]) -> dict[str, Any]:
    """A field that is an object or, in an upstream sample's shorthand, a string."""
    return {
        "x-kubernetes-preserve-unknown-fields": True,
        **({"nullable": True} if node.get("nullable") else {}),
    }


def _scalar_text(node: dict[str, Any]) -> dict[str, Any]:
    """A string field that also takes a number (the models coerce it to text)."""
    out = {k: v for k, v in node.items() if k not in ("type",)}
    out["x-kubernetes-preserve-unknown-fields"] = True
    return out


def upstream_forms(info: KindInfo, spec: dict[str, Any]) -> dict[str, Any]:
    """Widen the schema where the models' ``mode="before"`` validators accept upstream spellings,
    so that every upstream sample is accepted by the API server as it is by the models."""
    props = spec.get("properties", {})
    if info.kind == "FaultToleranceRule":  # fallbackAction: fallback-foo
        props["fallbackAction"] = _object_or_string(props["fallbackAction"])
    if info.kind == "DatabaseDiscovery":  # heartbeat/type names beside the groups
        props["dataSources"]["additionalProperties"] = _object_or_string({})
    if info.kind == "TrafficLane":  # lane / traceIdBaggage indented under rules
        rules = props["rules"]["properties"]
        rules["lane"] = props["lane"]
        rules["traceIdBaggage"] = props["traceIdBaggage"]
        spec["required"] = [r for r in spec.get("required", []) if r not in ("lane", "traceIdBaggage")]
    _string_match_shorthands(spec)
    _singular_sharding_spellings(spec)
    return spec


def _string_match_shorthands(spec: dict[str, Any]) -> None:
    """StringMatch takes ``exact: 12345`` as text; a MatchMap is also a list of single-key maps."""
    string_match = {"exact", "prefix", "regex"}
    for node in list(_walk(spec)):
        names = node.get("properties", {})
        if set(names) == string_match:
            for key in string_match:
                names[key] = _scalar_text(names[key])
        for key, sub in list(names.items()):
            extra = sub.get("additionalProperties", {})
            if set(extra.get("properties", {})) == string_match:
                names[key] = {"x-kubernetes-preserve-unknown-fields": True}


def _singular_sharding_spellings(spec: dict[str, Any]) -> None:
    """Complex / hint sharding strategies also take ``shardingColumn`` / ``shardingAlgorithm``."""
    for node in _walk(spec):
        names = node.get("properties", {})
        if "shardingColumns" in names and "shardingAlgorithmName" in names:
            names.setdefault("shardingColumn", names["shardingColumns"])
            names.setdefault("shardingAlgorithm", names["shardingAlgorithmName"])
            node.pop("required", None)


def crd(info: KindInfo) -> dict[str, Any]:
    schema = info.model.model_json_schema(mode="validation")
    defs = schema.get("$defs", {})
    spec = upstream_forms(info, structural(schema["properties"]["spec"], defs, "spec"))
    spec.pop("nullable", None)
    root = {
        "type": "object",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": STATUS_SCHEMA,
        },
    }
    columns = [
        {"name": "App", "type": "string", "jsonPath": ".metadata.labels.app"},
        {"name": "Acked", "type": "integer", "jsonPath": ".status.acked"},
        {"name": "Nacked", "type": "integer", "jsonPath": ".status.nacked"},
        {"name": "Pending", "type": "integer", "jsonPath": ".status.pending"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]
    names: dict[str, Any] = {
        "kind": info.kind,
        "listKind": f"{info.kind}List",
        "plural": info.plural,
        "singular": info.singular,
        "categories": ["opensergo"],
    }
    if info.short_names:
        names["shortNames"] = list(info.short_names)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{info.plural}.{info.group}",
            "labels": {"app.kubernetes.io/part-of": "opensergo"},
        },
        "spec": {
            "group": info.group,
            "scope": "Namespaced",
            "names": names,
            "versions": [
                {
                    "name": info.version,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    "schema": {"openAPIV3Schema": root},
                }
            ],
        },
    }


def file_name(info: KindInfo) -> str:
    return f"{info.group}_{info.plural}.yaml"


def render(info: KindInfo) -> str:
    header = "# Generated by scripts/gen_crds.py from the pydantic models; do not edit.\n"
    return header + yaml.safe_dump(crd(info), sort_keys=False, width=120)


def expected_files() -> dict[str, str]:
    return {file_name(info): render(info) for info in all_kinds()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--check", action="store_true", help="fail if the committed CRDs are stale")
    args = parser.parse_args(argv)
    files = expected_files()
    stale = []
    for out in OUT_DIRS:
        if not args.check:
            out.mkdir(parents=True, exist_ok=True)
            for old in out.glob("*.yaml"):
                if old.name not in files:
                    old.unlink()
        for name, text in files.items():
            target = out / name
            if args.check:
                if not target.exists() or target.read_text() != text:
                    stale.append(str(target.relative_to(ROOT)))
            else:
                target.write_text(text)
    if stale:
        print("stale CRDs (run python scripts/gen_crds.py):", *stale, sep="\n  ", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The committed CRDs: fresh, structural, and accepting every spec sample while rejecting invalid
objects, checked with the schemas themselves (translated to JSON Schema by schema.py)."""

from __future__ import annotations

import copy
import importlib.util
import sys
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema  # type: ignore[import-untyped,unused-ignore]
import pytest
import yaml

from opensergo.spec.errors import SpecErrors
from opensergo.spec.kinds import all_kinds
from opensergo.spec.loader import parse_documents
from tests.unit.kubernetes.schema import CRD_DIR, ROOT, load_crds, schemas_by_type

pytestmark = pytest.mark.unit

SAMPLES = ROOT / "tests" / "unit" / "spec" / "samples"
HELM_CRDS = ROOT / "deploy" / "helm" / "opensergo" / "crds"


def gen_crds() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_crds", ROOT / "scripts" / "gen_crds.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("gen_crds", module)
    spec.loader.exec_module(module)
    return module


@cache
def _samples() -> tuple[dict[str, Any], ...]:
    docs: list[dict[str, Any]] = []
    for path in sorted(SAMPLES.glob("*.yaml")):
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return tuple(docs)


def samples() -> list[dict[str, Any]]:
    return copy.deepcopy(list(_samples()))


@cache
def validator(api_version: str, kind: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(schemas_by_type()[(api_version, kind)])


@pytest.mark.parametrize("directory", [CRD_DIR, HELM_CRDS], ids=["manifests", "helm"])
def test_committed_crds_are_fresh(directory: Path) -> None:
    expected = gen_crds().expected_files()
    on_disk = {p.name: p.read_text() for p in directory.glob("*.yaml")}
    assert on_disk == expected, "stale CRDs: run python scripts/gen_crds.py"


def test_one_crd_per_kind_with_names_status_and_columns() -> None:
    crds = {c["spec"]["names"]["kind"]: c for c in load_crds()}
    assert set(crds) == {k.kind for k in all_kinds()}
    for info in all_kinds():
        crd = crds[info.kind]
        assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
        assert crd["metadata"]["name"] == f"{info.plural}.{info.group}"
        spec = crd["spec"]
        assert spec["group"] == info.group and spec["scope"] == "Namespaced"
        assert spec["names"]["plural"] == info.plural
        assert spec["names"].get("shortNames", []) == list(info.short_names)
        [version] = spec["versions"]
        assert version["name"] == info.version and version["served"] and version["storage"]
        assert version["subresources"] == {"status": {}}
        status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
        assert {"acked", "nacked", "pending"} <= set(status)
        columns = {c["name"] for c in version["additionalPrinterColumns"]}
        assert {"Acked", "Nacked", "Pending", "Age"} <= columns
    assert crds["TrafficRouter"]["spec"]["names"]["shortNames"] == ["tr"]


_JUNCTORS = ("anyOf", "allOf", "oneOf", "not")
_FORBIDDEN_IN_JUNCTORS = {"type", "description", "default", "additionalProperties", "nullable"}


def _check_structural(node: dict[str, Any], path: str, in_junctor: bool = False) -> list[str]:  # noqa: C901 (complexity debt, see pyproject [tool.ruff.lint.mccabe])
    errors = []
    if in_junctor:
        bad = _FORBIDDEN_IN_JUNCTORS & set(node)
        if bad:
            errors.append(f"{path}: {sorted(bad)} inside a junctor")
    elif "type" not in node and not (
        node.get("x-kubernetes-preserve-unknown-fields") or node.get("x-kubernetes-int-or-string")
    ):
        errors.append(f"{path}: no type")
    if "properties" in node and "additionalProperties" in node:
        errors.append(f"{path}: properties and additionalProperties together")
    if node.get("additionalProperties") is False:
        errors.append(f"{path}: additionalProperties: false")
    for key in ("$ref", "$defs", "title", "const", "prefixItems"):
        if key in node:
            errors.append(f"{path}: unsupported keyword {key}")
    for name, sub in node.get("properties", {}).items():
        errors += _check_structural(sub, f"{path}.{name}", in_junctor)
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            errors += _check_structural(node[key], f"{path}.{key}", in_junctor)
    for key in _JUNCTORS:
        subs = node.get(key, [])
        for sub in subs if isinstance(subs, list) else [subs]:
            errors += _check_structural(sub, f"{path}.{key}", True)
    return errors


def test_schemas_are_structural() -> None:
    for crd in load_crds():
        root = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        assert root["properties"]["metadata"] == {"type": "object"}  # only name restrictions allowed
        assert _check_structural(root, crd["metadata"]["name"]) == []


def test_every_spec_sample_is_accepted() -> None:
    docs = samples()
    assert len(docs) >= 10
    seen = set()
    for doc in docs:
        errors = list(validator(doc["apiVersion"], doc["kind"]).iter_errors(doc))
        assert errors == [], f"{doc['kind']} {doc['metadata']['name']}: {[e.message for e in errors]}"
        seen.add(doc["kind"])
    assert len(seen) >= 10


def _first(kind: str) -> dict[str, Any]:
    return copy.deepcopy(next(d for d in samples() if d["kind"] == kind))


def _rate_limit() -> dict[str, Any]:
    return {
        "apiVersion": "fault-tolerance.opensergo.io/v1alpha1",
        "kind": "RateLimitStrategy",
        "metadata": {"name": "r"},
        "spec": {"threshold": 10, "statDuration": "1s", "limitMode": "Local"},
    }


def _mutate(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    *parents, last = path.split(".")
    node = out
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return out


_DELETE = object()

INVALID = [
    ("spec.threshold", -1, "negative threshold"),
    ("spec.threshold", "10", "threshold as a string"),
    ("spec.threshold", _DELETE, "missing required threshold"),
    ("spec.statDuration", "1 second", "duration outside the pattern"),
    ("spec.statDuration", 1000, "duration as a bare number"),
    ("spec.limitMode", "Everywhere", "enum value not allowed"),
    ("spec.unknownField", 1, "unknown field"),
    ("spec", "threshold=10", "spec not an object"),
    ("spec", _DELETE, "no spec"),
]


@pytest.mark.parametrize(("path", "value", "why"), INVALID, ids=[i[2] for i in INVALID])
def test_invalid_rate_limit_strategies_are_rejected(path: str, value: Any, why: str) -> None:
    check = validator("fault-tolerance.opensergo.io/v1alpha1", "RateLimitStrategy")
    assert check.is_valid(_rate_limit())
    assert not check.is_valid(_mutate(_rate_limit(), path, value)), why


def test_ratio_takes_a_percentage_or_a_number_only() -> None:
    check = validator("fault-tolerance.opensergo.io/v1alpha1", "CircuitBreakerStrategy")
    doc = _first("CircuitBreakerStrategy")
    for good in ("60%", "12.5%", 0.6, 1):
        assert check.is_valid(_mutate(doc, "spec.triggerRatio", good)), good
    for bad in ("60", "sixty%"):  # the string form's pattern
        assert not check.is_valid(_mutate(doc, "spec.triggerRatio", bad)), bad
    # Other types get past the API server (a real kube-apiserver refuses CEL type checks on an
    # untyped node); the control plane's model refuses them when the object is read or applied.
    for other in (True, [0.6], {"ratio": 0.6}, -0.5):
        mutated = _mutate(doc, "spec.triggerRatio", other)
        assert check.is_valid(mutated), other
        with pytest.raises(SpecErrors):
            parse_documents(yaml.safe_dump(mutated))


def test_other_kinds_reject_invalid_objects() -> None:
    router = _first("TrafficRouter")
    check = validator(router["apiVersion"], "TrafficRouter")
    assert not check.is_valid(_mutate(router, "spec.hosts", "service-provider"))  # not a list
    assert not check.is_valid(_mutate(router, "spec.http.0.route.0.weight", -5))
    assert not check.is_valid(_mutate(router, "spec.http.0.route.0.destination.color", "red"))
    instance: dict[str, Any] = {
        "apiVersion": "discovery.opensergo.io/v1alpha1",
        "kind": "ServiceInstance",
        "metadata": {"name": "i"},
        "spec": {"app": "a", "nodeId": "n", "weight": 100},
    }
    check = validator("discovery.opensergo.io/v1alpha1", "ServiceInstance")
    assert check.is_valid(instance)
    assert not check.is_valid(_mutate(instance, "spec.weight", 10_001))
    assert not check.is_valid(_mutate(instance, "spec.app", ""))


def test_upstream_shorthands_are_accepted() -> None:
    rule = _first("FaultToleranceRule")
    check = validator(rule["apiVersion"], "FaultToleranceRule")
    assert check.is_valid(_mutate(rule, "spec.fallbackAction", "fallback-foo"))
    assert check.is_valid(_mutate(rule, "spec.fallbackAction", {"name": "fallback-foo"}))
    with pytest.raises(SpecErrors):  # not by the API server: by the control plane's model
        parse_documents(yaml.safe_dump(_mutate(rule, "spec.fallbackAction", 3)))

"""spec/upstream/ holds every wire translation: the models know no protobuf or Envoy."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from envoy.config.route.v3 import route_pb2

import opensergo.spec
from opensergo.spec import SpecError, VirtualWorkload, all_kinds
from opensergo.spec.upstream.codec import from_proto

pytestmark = pytest.mark.unit

SPEC_DIR = Path(opensergo.spec.__file__).parent
MODEL_MODULES = ("base", "errors", "units", "faulttolerance", "traffic", "database", "discovery")
WIRE_PREFIXES = ("opensergo.proto", "envoy", "google.protobuf", "opensergo.spec.upstream")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("module", MODEL_MODULES)
def test_models_import_no_wire_module(module: str) -> None:
    wire = sorted(n for n in _imports(SPEC_DIR / f"{module}.py") if n.startswith(WIRE_PREFIXES))
    assert wire == [], f"spec/{module}.py imports {wire}"


def test_every_upstream_form_belongs_to_its_kind() -> None:
    with_form = {k.kind: k for k in all_kinds() if k.upstream is not None}
    assert set(with_form) == {
        "FaultToleranceRule",
        "RateLimitStrategy",
        "ThrottlingStrategy",
        "ConcurrencyLimitStrategy",
        "CircuitBreakerStrategy",
        "TrafficRouter",
    }
    for info in with_form.values():
        assert info.upstream is not None and info.proto is info.upstream.message
        # Each decoder is the one of its own module's kind, not of a neighbour.
        assert info.upstream.decode.__module__.rsplit(".", 1)[-1] == info.model.__module__.rsplit(".", 1)[-1]


def test_from_proto_needs_an_upstream_form() -> None:
    with pytest.raises(SpecError, match="VirtualWorkload has no upstream proto form"):
        from_proto(VirtualWorkload, route_pb2.RouteConfiguration(), name="x", namespace="ns", app="a")

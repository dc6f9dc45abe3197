"""The committed generated code matches proto/ (run `make proto` when this fails)."""

from __future__ import annotations

import filecmp
import importlib.util
from pathlib import Path

import pytest

from tests.helpers import ROOT

pytestmark = pytest.mark.unit


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("gen_proto", ROOT / "scripts" / "gen_proto.py")
    assert spec is not None and spec.loader is not None
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    fresh = gen.generate(tmp_path)
    committed_root = ROOT / "src"
    stale = []
    for path in fresh:
        rel = path.relative_to(tmp_path)
        committed = committed_root / rel
        if not committed.exists() or not filecmp.cmp(path, committed, shallow=False):
            stale.append(str(rel))
    extra = {
        str(p.relative_to(committed_root))
        for p in (committed_root / "opensergo" / "proto").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    } - {str(p.relative_to(tmp_path)) for p in fresh}
    assert not stale, f"stale generated files (run `make proto`): {stale}"
    assert not extra, f"generated files without a proto source: {sorted(extra)}"


def test_service_paths_and_packages() -> None:
    from opensergo.proto.service_contract.v1 import service_contract_pb2 as sc
    from opensergo.proto.transport.v1 import protocol_pb2 as pb

    transport = pb.DESCRIPTOR.services_by_name["OpenSergoUniversalTransportService"]
    assert transport.full_name == "io.opensergo.proto.transport.v1.OpenSergoUniversalTransportService"
    assert transport.methods_by_name["SubscribeConfig"].client_streaming
    metadata = sc.DESCRIPTOR.services_by_name["MetadataService"]
    assert metadata.full_name == "opensergo.proto.service_contract.v1.MetadataService"
    assert pb.SubscribeResponse.DESCRIPTOR.fields_by_name["dataWithVersion"].number == 6

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from opensergo.spec import (
    RateLimitStrategy,
    Resource,
    SpecError,
    SpecErrors,
    load_paths,
    parse_documents,
    parse_object,
)

from .conftest import EXAMPLES, SAMPLES

pytestmark = pytest.mark.unit

GOOD = """apiVersion: fault-tolerance.opensergo.io/v1alpha1
kind: RateLimitStrategy
metadata: {name: good, labels: {app: demo}}
spec: {threshold: 5, statDuration: 1s}
"""

BAD_RULE = """apiVersion: fault-tolerance.opensergo.io/v1alpha1
kind: FaultToleranceRule
metadata: {name: rule}
spec:
  targets: [{targetResourceName: a}]
  strategies: [{name: x, kind: RateLimitStrategy}, {name: y, kind: Typo}]
"""


def test_every_sample_and_example_parses(samples: list[Resource], examples: list[Resource]) -> None:
    assert len(samples) == 60
    assert len(examples) == 8
    for resource in samples + examples:
        # The YAML form round-trips through the model.
        assert parse_object(resource.to_dict()) == resource


def test_sample_specifics() -> None:
    first = load_paths([SAMPLES / "fault-tolerance.yaml"])[0]
    assert isinstance(first, RateLimitStrategy)
    assert first.to_dict()["spec"] == {
        "metricType": "RequestAmount",
        "limitMode": "Global",
        "threshold": 10,
        "statDuration": "1s",
    }
    assert first.namespace == "default" and first.app is None


def test_error_names_source_document_and_path() -> None:
    text = GOOD + "---\n---\n" + BAD_RULE + "---\n" + GOOD.replace("threshold: 5", "threshold: -1")
    with pytest.raises(SpecErrors) as info:
        parse_documents(text, source="rules.yaml")
    errors = info.value.errors
    assert [(e.source, e.document, e.field) for e in errors] == [
        ("rules.yaml", 2, "spec.strategies[1].kind"),  # document 1 is empty and skipped
        ("rules.yaml", 3, "spec.threshold"),
    ]
    assert str(errors[1]) == "rules.yaml: document 3: spec.threshold: must be >= 0 (got -1)"
    assert errors[0].to_dict()["field"] == "spec.strategies[1].kind"


def test_metadata_errors() -> None:
    with pytest.raises(SpecErrors) as info:
        parse_documents(GOOD.replace("name: good", "name: Not_Valid"))
    assert info.value.errors[0].field == "metadata.name"
    with pytest.raises(SpecErrors) as info:
        parse_documents(GOOD.replace("metadata: {name: good, labels: {app: demo}}", "metadata: {}"))
    assert info.value.errors[0].field == "metadata.name"
    assert info.value.errors[0].message == "required field is missing"


def test_unknown_kind_and_wrong_api_version() -> None:
    with pytest.raises(SpecError) as info:
        parse_object(
            {"apiVersion": "fault-tolerance.opensergo.io/v1alpha1", "kind": "Nope", "metadata": {"name": "x"}}
        )
    assert info.value.field == "kind"
    assert "RateLimitStrategy" in info.value.message  # the known kinds are listed
    with pytest.raises(SpecError) as info:
        parse_object({"apiVersion": "traffic.opensergo.io/v1alpha1", "kind": "RateLimitStrategy"})
    assert info.value.field == "apiVersion"
    assert "fault-tolerance.opensergo.io/v1alpha1" in info.value.message
    with pytest.raises(SpecError) as info:
        parse_object({"kind": "RateLimitStrategy"})
    assert info.value.field == "apiVersion"
    with pytest.raises(SpecError, match="expected an object"):
        parse_object(["not", "a", "map"])  # type: ignore[arg-type]


def test_model_checks_its_own_type() -> None:
    rls = RateLimitStrategy.model_validate({"metadata": {"name": "a"}, "spec": {"threshold": 1}})
    assert rls.apiVersion == "fault-tolerance.opensergo.io/v1alpha1" and rls.kind == "RateLimitStrategy"
    with pytest.raises(ValueError, match="must be 'RateLimitStrategy'"):
        RateLimitStrategy.model_validate(
            {
                "apiVersion": "fault-tolerance.opensergo.io/v1alpha1",
                "kind": "Other",
                "metadata": {"name": "a"},
                "spec": {"threshold": 1},
            }
        )


def test_yaml_syntax_error_has_line() -> None:
    with pytest.raises(SpecErrors) as info:
        parse_documents(GOOD + "---\nkind: [unclosed\n", source="broken.yaml")
    [error] = info.value.errors
    assert (error.source, error.document) == ("broken.yaml", 1)
    assert "line 7" in error.message and "invalid YAML" in error.message


def test_json_lists_and_kubectl_lists() -> None:
    obj = {
        "apiVersion": "fault-tolerance.opensergo.io/v1alpha1",
        "kind": "RateLimitStrategy",
        "metadata": {"name": "j"},
        "spec": {"threshold": 1},
    }
    assert [r.name for r in parse_documents(json.dumps(obj))] == ["j"]
    assert len(parse_documents(json.dumps([obj, obj]))) == 2
    bad = dict(obj, spec={"threshold": -1})
    with pytest.raises(SpecErrors) as info:
        parse_documents(json.dumps({"apiVersion": "v1", "kind": "List", "items": [obj, bad]}))
    assert info.value.errors[0].field == "items[1].spec.threshold"


def test_timestamps_stay_strings() -> None:
    text = GOOD.replace(
        "metadata: {name: good,", "metadata: {creationTimestamp: 2024-01-02T03:04:05Z, name: good,"
    )
    [resource] = parse_documents(text)
    assert resource.metadata.creationTimestamp == "2024-01-02T03:04:05Z"


def test_load_paths_directories_files_and_stdin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "two.yml").write_text(GOOD.replace("name: good", "name: two"))
    (tmp_path / "a.yaml").write_text(GOOD.replace("name: good", "name: one"))
    (tmp_path / "c.json").write_text(
        json.dumps(
            {
                "apiVersion": "fault-tolerance.opensergo.io/v1alpha1",
                "kind": "RateLimitStrategy",
                "metadata": {"name": "three"},
                "spec": {"threshold": 1},
            }
        )
    )
    (tmp_path / "notes.txt").write_text("not yaml: [")
    monkeypatch.setattr("sys.stdin", io.StringIO(GOOD.replace("name: good", "name: stdin")))
    names = [r.name for r in load_paths([tmp_path, "-", SAMPLES / "traffic.yaml"])]
    assert names == ["one", "two", "three", "stdin", "service-provider", "tag-traffic-lane-rule"]
    assert len(load_paths([EXAMPLES])) == 8


def test_load_paths_reports_every_file(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(BAD_RULE)
    (tmp_path / "b.yaml").write_text(GOOD + "---\n" + GOOD.replace("threshold: 5", "threshold: x"))
    with pytest.raises(SpecErrors) as info:
        load_paths([tmp_path, tmp_path / "missing.yaml"])
    assert [(Path(e.source or "").name, e.document, e.field) for e in info.value.errors] == [
        ("a.yaml", 0, "spec.strategies[1].kind"),
        ("b.yaml", 1, "spec.threshold"),
        ("missing.yaml", None, ""),
    ]
    assert "no such file" in info.value.errors[2].message

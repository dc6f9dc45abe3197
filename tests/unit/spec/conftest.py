"""Shared helpers for the spec tests: the upstream samples and a small YAML-to-object parser."""

from __future__ import annotations

from pathlib import Path

import pytest

from opensergo.spec import Resource, load_paths, parse_documents

SAMPLES = Path(__file__).parent / "samples"
EXAMPLES = Path(__file__).parents[3] / "examples" / "rules"


def one(text: str) -> Resource:
    """The single object in a YAML text."""
    [resource] = parse_documents(text)
    return resource


@pytest.fixture(scope="session")
def samples() -> list[Resource]:
    return load_paths([SAMPLES])


@pytest.fixture(scope="session")
def examples() -> list[Resource]:
    return load_paths([EXAMPLES])

"""``import opensergo.governance`` stays light: what an application that only guards calls loads.

Checked by the modules a fresh interpreter holds after the import (load-independent, unlike a
timing): the spec models (pydantic), protobuf, gRPC and asyncio load when something needs them
(the first rules, a token client, an awaited sleep), never with the guard API.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit

HEAVY = (
    "pydantic",
    "pydantic_core",
    "google.protobuf",
    "grpc",
    "asyncio",
    "opensergo.spec",
    "opensergo.proto",
)


def _modules_after(code: str) -> set[str]:
    script = f"import json, sys\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    return set(json.loads(out.stdout.splitlines()[-1]))


def _heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))


@pytest.mark.parametrize(
    "code",
    [
        "import opensergo.governance",
        "from opensergo import guard, BlockedError",
        # a guarded call with no rules, and a guard decorating a function, load nothing more
        "from opensergo.governance import guard\n"
        "@guard('GET:/x')\n"
        "def f() -> int:\n"
        "    return 1\n"
        "with guard('GET:/y'):\n"
        "    f()",
    ],
)
def test_the_guard_api_imports_no_models_protobuf_grpc_or_asyncio(code: str) -> None:
    assert _heavy(_modules_after(code)) == []


def test_the_models_load_with_the_first_rules_and_the_kinds_on_first_read() -> None:
    rules = (
        "from opensergo.governance import load_rules, guard\n"
        "load_rules('''\n"
        "apiVersion: fault-tolerance.opensergo.io/v1alpha1\n"
        "kind: RateLimitStrategy\n"
        "metadata: {name: rl}\n"
        "spec: {threshold: 5, statDurationSeconds: 1}\n"
        "''', app=None)"
    )
    assert "opensergo.spec.faulttolerance" in _modules_after(rules)
    kinds = (
        "from opensergo.governance.faulttolerance.engine import KINDS\nassert 'RateLimitStrategy' in KINDS"
    )
    assert "opensergo.spec.faulttolerance" in _modules_after(kinds)

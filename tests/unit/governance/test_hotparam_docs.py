"""The YAML example of docs/cache.md (its hot-parameter section) is valid and behaves as the page says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from opensergo.governance import Engine, HotParamLimitedError, load_rules
from opensergo.governance.faulttolerance.hotparam import mapping_lookup

pytestmark = pytest.mark.unit

DOC = Path(__file__).resolve().parents[3] / "docs" / "cache.md"


def test_documented_example_limits_one_user_to_threshold_plus_burst() -> None:
    section = DOC.read_text().split("## Hot-parameter limits", 1)[1]
    [example] = re.findall(r"```yaml\n(.*?)```", section, re.S)
    engine = Engine()
    result = load_rules(example, app="orders", engine=engine)
    assert result.resources == ("GET:/orders",) and not result.problems

    def codes(user: str, n: int) -> list[int]:
        out = []
        for _ in range(n):
            try:
                engine.entry("GET:/orders", params=mapping_lookup({"user_id": user})).exit()
                out.append(200)
            except HotParamLimitedError as blocked:
                assert blocked.fallback is not None
                out.append(blocked.fallback.status)
        return out

    assert codes("42", 9) == [200] * 7 + [429] * 2  # threshold 5 + burst 2
    assert codes("7", 1) == [200]
    assert codes("1337", 1) == [429]  # exception item with threshold 0
    assert codes("partner-batch", 102) == [200] * 102  # 100 + burst 2

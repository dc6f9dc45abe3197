"""Secret redaction, YAML field locations, diffs and rollout states."""

from __future__ import annotations

from typing import Any

import pytest

from opensergo.controlplane.api.diffs import diff
from opensergo.controlplane.api.redact import PLACEHOLDER, placeholder_path, redact, redact_changes, restore
from opensergo.controlplane.readmodels import body_app, client_state, index_subscriptions, rollout
from opensergo.spec.loader import locate

pytestmark = pytest.mark.unit

ENDPOINT: dict[str, Any] = {
    "apiVersion": "database.opensergo.io/v1alpha1",
    "kind": "DatabaseEndpoint",
    "metadata": {"name": "db", "namespace": "default", "labels": {"app": "shop"}},
    "spec": {"database": {"MySQL": {"url": "jdbc:mysql://db:3306/x", "username": "u", "password": "s3cret"}}},
}


def test_redact_hides_secret_fields_at_any_depth() -> None:
    out = redact(ENDPOINT)
    assert out["spec"]["database"]["MySQL"]["password"] == PLACEHOLDER
    assert out["spec"]["database"]["MySQL"]["username"] == "u"
    assert ENDPOINT["spec"]["database"]["MySQL"]["password"] == "s3cret"  # not modified in place
    assert redact({"api_key": "k", "clientSecret": "c", "token": "t", "tokens": 3, "password": ""}) == {
        "api_key": PLACEHOLDER,  # apiKey / token exactly, or *password*, *secret*, *credential*
        "clientSecret": PLACEHOLDER,
        "token": PLACEHOLDER,
        "tokens": 3,
        "password": "",
    }
    assert redact([{"passwd": "x"}]) == [{"passwd": PLACEHOLDER}]


def test_restore_takes_the_stored_secret_back() -> None:
    edited = redact(ENDPOINT)
    edited["spec"]["database"]["MySQL"]["username"] = "v"
    restored = restore(edited, ENDPOINT)
    assert restored["spec"]["database"]["MySQL"] == {
        "url": "jdbc:mysql://db:3306/x",
        "username": "v",
        "password": "s3cret",
    }
    assert placeholder_path(restored) is None
    # Nothing stored: the placeholder stays, and its path is reported.
    assert placeholder_path(restore(edited, None)) == ("spec", "database", "MySQL", "password")
    # List items match by name, not position.
    stored = {"services": [{"name": "a", "password": "pa"}, {"name": "b", "password": "pb"}]}
    new = {"services": [{"name": "b", "password": PLACEHOLDER}, {"name": "a", "password": PLACEHOLDER}]}
    assert restore(new, stored) == {
        "services": [{"name": "b", "password": "pb"}, {"name": "a", "password": "pa"}]
    }


def test_diff_shows_that_a_secret_changed_without_showing_it() -> None:
    changed = {
        **ENDPOINT,
        "spec": {"database": {"MySQL": {**ENDPOINT["spec"]["database"]["MySQL"], "password": "new"}}},
    }
    text = "\n".join(diff(ENDPOINT, changed))
    assert "s3cret" not in text and "new" not in text.replace("+++ new", "")
    assert f"+      password: '{PLACEHOLDER} (changed)'" in text
    assert redact_changes(ENDPOINT, ENDPOINT) == redact(ENDPOINT)
    created = diff(None, ENDPOINT)
    assert created[0] == "--- /dev/null" and all(line.startswith(("+", "@", "-")) for line in created)
    assert diff(ENDPOINT, ENDPOINT) == []


YAML = """\
apiVersion: fault-tolerance.opensergo.io/v1alpha1
kind: FaultToleranceRule
metadata:
  name: r
spec:
  targets:
    - targetResourceName: GET:/a
  strategies:
    - name: rl
      kind: Nope
"""


def test_locate_finds_the_line_of_a_field() -> None:
    assert locate(YAML, ("spec", "strategies", 0, "kind")) == (10, 7)
    assert locate(YAML, ("spec", "targets", 0)) == (7, 7)
    assert locate(YAML, ("metadata", "name")) == (4, 3)
    # A missing field points at its deepest existing parent.
    assert locate(YAML, ("spec", "fallbackAction", "name")) == (5, 1)
    assert locate("a: [", ("a",)) is None


def test_body_app_label_then_selector() -> None:
    assert body_app(ENDPOINT) == "shop"
    assert body_app({"metadata": {}, "spec": {"selector": {"app": "x"}}}) == "x"
    assert body_app({"metadata": {"labels": {}}, "spec": [1]}) is None


def test_rollout_states_per_client() -> None:
    def sub(acked: int | None, state: str, **more: Any) -> dict[str, Any]:
        base = {
            "namespace": "default",
            "app": "shop",
            "kind": "K",
            "ackedVersion": acked,
            "pushedVersion": 12,
        }
        return {**base, "state": state, "nacks": [], **more}

    nack = {"version": 12, "code": 4002, "message": "bad threshold"}
    clients = [
        {"id": "1", "identifier": "a", "connected": True, "subscriptions": [sub(12, "acked")]},
        {"id": "2", "identifier": "b", "connected": True, "subscriptions": [sub(5, "nacked", nacks=[nack])]},
        {"id": "3", "identifier": "c", "connected": True, "subscriptions": [sub(None, "pending")]},
        {"id": "4", "identifier": "d", "connected": False, "subscriptions": [sub(12, "acked")]},
        {
            "id": "5",
            "identifier": "e",
            "connected": True,
            "subscriptions": [sub(3, "rejected", message="decode failed")],
        },
    ]
    index = index_subscriptions(clients)
    result = rollout("default", "shop", "K", 10, index)
    assert result["summary"] == {"acked": 1, "nacked": 1, "pending": 1, "rejected": 1, "outdated": 0}
    by_id = {c["identifier"]: c for c in result["clients"]}
    assert by_id["b"]["message"] == "bad threshold"
    assert by_id["e"]["message"] == "decode failed"
    assert [c["state"] for c in result["clients"]][:2] == ["nacked", "rejected"]  # problems first
    # An older version is ACKed by a client that ACKed a newer group version.
    assert client_state(clients[1]["subscriptions"][0], 5) == ("acked", "")
    assert rollout("default", None, "K", 10, index)["clients"] == []

"""What the official SDKs must decode from tests/interop/rules.yaml, written out field by field.

The values are derived by hand from the YAML (not from our converters): durations in real
milliseconds with their time unit, enums by name, int64 fields as protojson strings. The programs
print protojson with proto field names; a field that is absent (Java) or null (Go) is dropped
before comparing, so the Go and Java outputs can also be compared with each other.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import httpx

from tests.helpers import ControlPlaneProcess, run_cli

RULES = Path(__file__).with_name("rules.yaml")

FT = "fault-tolerance.opensergo.io/v1alpha1/"
RULE = FT + "FaultToleranceRule"
RATE = FT + "RateLimitStrategy"
THROTTLING = FT + "ThrottlingStrategy"
CONCURRENCY = FT + "ConcurrencyLimitStrategy"
BREAKER = FT + "CircuitBreakerStrategy"
ROUTER = "traffic.opensergo.io/v1alpha1/TrafficRouter"
FAULT_TOLERANCE_KINDS = (RULE, RATE, THROTTLING, CONCURRENCY, BREAKER)
ALL_KINDS = (*FAULT_TOLERANCE_KINDS, ROUTER)

APP = "foo-app"
ROUTER_APP = "service-provider"
FQDN = "service-provider.default.svc.cluster.local"


def rest_token(cp: ControlPlaneProcess) -> str | None:
    """The admin token of a control plane with auth on (tests/interop/test_auth.py), else None."""
    token: str | None = getattr(cp, "rest_token", None)
    return token


def _headers(cp: ControlPlaneProcess) -> dict[str, str]:
    token = rest_token(cp)
    return {"Authorization": f"Bearer {token}"} if token else {}


def cli(cp: ControlPlaneProcess, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """`opensergo ...` against ``cp``; fails the test on a non-zero exit."""
    token = rest_token(cp)
    env = {"OPENSERGO_TOKEN": token} if token else None
    result = run_cli(*args, "--server", cp.http_url, stdin=stdin, timeout=60, env=env)
    assert result.returncode == 0, f"opensergo {' '.join(args)}: {result.stdout}\n{result.stderr}"
    return result


def apply_rules(cp: ControlPlaneProcess) -> None:
    cli(cp, "apply", "-f", str(RULES))


RATE_LIMIT_YAML = """\
apiVersion: fault-tolerance.opensergo.io/v1alpha1
kind: RateLimitStrategy
metadata:
  name: rate-limit-foo
  namespace: default
  labels:
    app: foo-app
spec:
  metricType: RequestAmount
  limitMode: Global
  threshold: {threshold}
  statDurationSeconds: 5
"""


def apply_rate_limit(cp: ControlPlaneProcess, *, threshold: int) -> None:
    """Change the threshold of rules.yaml's RateLimitStrategy with `opensergo apply -f -`."""
    result = cli(cp, "apply", "-f", "-", stdin=RATE_LIMIT_YAML.format(threshold=threshold))
    assert "rate-limit-foo" in result.stdout


def snapshot_version(cp: ControlPlaneProcess, kind: str, app: str = APP, namespace: str = "default") -> int:
    """The version the control plane holds for (namespace, app, kind)."""
    items = httpx.get(cp.http_url + "/api/v1/snapshots", timeout=5, headers=_headers(cp)).json()["items"]
    for item in items:
        if (item["namespace"], item["app"], item["kind"]) == (namespace, app, kind):
            return int(item["version"])
    raise AssertionError(f"no snapshot for {namespace}/{app} {kind}: {items}")


def clients(cp: ControlPlaneProcess) -> list[dict[str, Any]]:
    response = httpx.get(cp.http_url + "/api/v1/clients", timeout=5, headers=_headers(cp))
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def prune(value: Any) -> Any:
    """Drop null fields recursively (Go prints absent messages as null, Java leaves them out)."""
    if isinstance(value, dict):
        return {k: prune(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [prune(v) for v in value]
    return value


def by_name(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {item["name"]: prune(item) for item in items}


# --- field-by-field expectations ----------------------------------------------------------------


def check_rate_limit(items: list[dict[str, Any]], *, threshold: int = 10) -> None:
    (rate,) = [prune(i) for i in items]
    assert rate["name"] == "rate-limit-foo"
    assert rate["metric_type"] == "TYPE_REQUEST_AMOUNT"  # upstream CP: always TYPE_UNKNOWN
    assert rate["limit_mode"] == "MODE_GLOBAL"  # upstream CP: always MODE_UNKNOWN
    assert int(rate["threshold"]) == threshold  # int64: a JSON string
    assert rate["stat_duration"] == 5  # statDurationSeconds: 5
    assert rate["stat_duration_time_unit"] == "SECOND"  # upstream CP: UNKNOWN


def check_throttling(items: list[dict[str, Any]]) -> None:
    (throttling,) = [prune(i) for i in items]
    assert throttling == {
        "name": "throttling-foo",
        "min_interval_millis_of_requests": "200",  # 200ms
        "queue_timeout_millis": "5000",  # 5s (upstream CP: 50, its x10 bug)
    }


def check_concurrency(items: list[dict[str, Any]]) -> None:
    (concurrency,) = [prune(i) for i in items]
    assert concurrency == {"name": "concurrency-foo", "limit_mode": "MODE_LOCAL", "max_concurrency": "8"}


def check_breakers(items: list[dict[str, Any]]) -> None:
    breakers = by_name(items)
    assert sorted(breakers) == ["error-breaker", "slow-breaker"]
    slow = breakers["slow-breaker"]
    assert slow["strategy"] == "STRATEGY_SLOW_REQUEST_RATIO"
    assert slow["trigger_ratio"] == 0.6  # 60%
    assert slow["stat_duration"] == "60000"  # 1m; int64 (upstream CP: 600 and UNKNOWN)
    assert slow["stat_duration_time_unit"] == "MILLISECOND"
    assert slow["recovery_timeout"] == 5000  # 5s; int32
    assert slow["recovery_timeout_time_unit"] == "MILLISECOND"
    assert slow["min_request_amount"] == 5
    assert slow["slow_condition"] == {"max_allowed_rt_millis": 200}  # 200ms
    assert "error_condition" not in slow
    error = breakers["error-breaker"]
    assert error["strategy"] == "STRATEGY_ERROR_REQUEST_RATIO"
    assert error["trigger_ratio"] == 0.5
    assert error["stat_duration"] == "30000"  # 30s
    assert error["stat_duration_time_unit"] == "MILLISECOND"
    assert error["recovery_timeout"] == 3600000  # 1h
    assert error["recovery_timeout_time_unit"] == "MILLISECOND"
    assert error["min_request_amount"] == 10
    assert "slow_condition" not in error  # upstream CP: always present, -1
    assert error["error_condition"] == {}


def check_rule(items: list[dict[str, Any]]) -> None:
    (rule,) = [prune(i) for i in items]
    assert rule["targets"] == [
        {"target_resource_name": "GET:/foo"},
        {"target_resource_name": "/grpc.health.v1.Health/Check"},
    ]
    # Strategy references: metadata.name + simple kind, resolvable among the strategies pushed
    # under their own kinds for the same (namespace, app).
    assert rule["strategies"] == [
        {"name": "rate-limit-foo", "kind": "RateLimitStrategy"},
        {"name": "throttling-foo", "kind": "ThrottlingStrategy"},
        {"name": "concurrency-foo", "kind": "ConcurrencyLimitStrategy"},
        {"name": "slow-breaker", "kind": "CircuitBreakerStrategy"},
    ]
    assert "action" not in rule  # no fallbackAction in the YAML


def check_strategy_refs_resolve(pushes: dict[str, dict[str, Any]]) -> None:
    """Every strategy a rule references arrived under its own kind, by name."""
    names = {
        kind.rsplit("/", 1)[1]: {prune(i)["name"] for i in pushes[kind]["data"]}
        for kind in (RATE, THROTTLING, CONCURRENCY, BREAKER)
    }
    (rule,) = pushes[RULE]["data"]
    for ref in rule["strategies"]:
        assert ref["name"] in names[ref["kind"]], f"unresolved strategy reference {ref}"


def _header_exact(header: dict[str, Any]) -> str | None:
    # Upstream's control plane sets the deprecated exact_match; ours sets string_match.exact.
    if "exact_match" in header:
        return str(header["exact_match"])
    match = header.get("string_match", {})
    return str(match["exact"]) if "exact" in match else None


def check_router(items: list[dict[str, Any]]) -> None:
    (route_config,) = [prune(i) for i in items]
    assert route_config["name"] == "service-provider"
    (vhost,) = route_config["virtual_hosts"]
    assert vhost["name"] == "service-provider"
    assert vhost["domains"] == [FQDN]
    gray, default = vhost["routes"]
    (header,) = gray["match"]["headers"]
    assert header["name"] == "x-mse-tag" and _header_exact(header) == "v2"
    plugin = gray["route"]["inline_cluster_specifier_plugin"]["extension"]
    assert plugin["name"] == "envoy.router.cluster_specifier_plugin.cluster_fallback"
    assert plugin["typed_config"] == {
        "@type": "type.googleapis.com/io.opensergo.proto.router.v1.ClusterFallbackConfig_ClusterConfig",
        "RoutingCluster": f"outbound||v2|{FQDN}",
        "FallbackCluster": f"outbound||v1|{FQDN}",
    }
    clusters = default["route"]["weighted_clusters"]["clusters"]
    assert [(c["name"], c["weight"]) for c in clusters] == [
        (f"outbound||v1|{FQDN}", 80),
        (f"outbound||v2|{FQDN}", 20),
    ]


CHECKS = {
    RULE: check_rule,
    RATE: check_rate_limit,
    THROTTLING: check_throttling,
    CONCURRENCY: check_concurrency,
    BREAKER: check_breakers,
    ROUTER: check_router,
}


def check_all(pushes: dict[str, dict[str, Any]], cp: ControlPlaneProcess) -> None:
    """Field-by-field check of one decoded push per kind, plus its version against the control plane."""
    for kind, check in CHECKS.items():
        push = pushes[kind]
        check(push["data"])
        app = ROUTER_APP if kind == ROUTER else APP
        assert push["app"] == app and push["namespace"] == "default"
        assert int(push["version"]) == snapshot_version(cp, kind, app)
    check_strategy_refs_resolve(pushes)


def every_kind_acked(streams: list[dict[str, Any]], pushes: dict[str, dict[str, Any]]) -> bool:
    """One stream, whose subscription of every kind ACKed the version that was pushed to it."""
    if len(streams) != 1:
        return False
    states = {s["kind"]: (s["state"], s["ackedVersion"]) for s in streams[0]["subscriptions"]}
    return all(states.get(k) == ("acked", int(pushes[k]["version"])) for k in ALL_KINDS)

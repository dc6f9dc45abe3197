"""Fuzzing the HTTP API of a real control plane: request bodies (every kind, as JSON, YAML, hostile
texts and bytes that are not text), the validate view, rollback, path segments and query
parameters. Every answer is checked by :mod:`tests.fuzz.oracle`: no 5xx, and every refusal names
the field. Objects that are accepted are written (or dry-run), then pushed to two watching
streams (both encodings); at the end no push may have failed to encode and every stored object
must still validate."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from opensergo.common.protocol import CODE_UNKNOWN_ERROR, Encoding
from opensergo.spec import kinds
from opensergo.spec.kinds import KindInfo
from tests.fuzz import oracle, tally
from tests.fuzz import strategies as fs
from tests.fuzz.conftest import MARKS, FuzzedControlPlane, budget
from tests.fuzz.streams import Watcher
from tests.helpers import wait_until

pytestmark = MARKS

TIMEOUT = 30.0  # seconds; a request that takes longer is a hang


@pytest.fixture(scope="module")
def http(fuzzed_cp: FuzzedControlPlane) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fuzzed_cp.http_url, timeout=TIMEOUT) as client:
        yield client


@pytest.fixture(scope="module")
def watchers(fuzzed_cp: FuzzedControlPlane) -> Iterator[list[Watcher]]:
    started = [
        Watcher(fuzzed_cp.grpc_address, fs.FUZZ_NAMESPACE, fs.FUZZ_APP, encoding) for encoding in Encoding
    ]
    yield started
    for watcher in started:
        watcher.close()


def _seg(text: str) -> str:
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


def _collection(info: KindInfo, namespace: str) -> str:
    return f"/apis/{info.group}/{info.version}/namespaces/{_seg(namespace)}/{info.plural}"


def _send(http: httpx.Client, method: str, url: str, **kwargs: Any) -> httpx.Response:
    try:
        return http.request(method, url, **kwargs)
    except httpx.TimeoutException as err:
        raise AssertionError(f"hang: {method} {url} took more than {TIMEOUT}s") from err


def _kind_of(content: bytes, fallback: KindInfo) -> KindInfo:
    try:
        body = json.loads(content)
        return kinds.by_api_version_kind(body["apiVersion"], body["kind"])
    except (ValueError, KeyError, TypeError):
        return fallback


# -- bodies -----------------------------------------------------------------------------------------


def _as_bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")  # lone surrogates travel as they are: not UTF-8


bodies = st.one_of(
    fs.clean_document().map(lambda d: ("application/json", _as_bytes(fs.to_json(d)))),
    fs.clean_document().map(lambda d: ("application/yaml", _as_bytes(fs.to_yaml(d)))),
    fs.any_document().map(lambda d: ("application/json", _as_bytes(fs.to_json(d)))),
    fs.any_document().map(lambda d: ("application/yaml", _as_bytes(fs.to_yaml(d)))),
    fs.yaml_texts().map(lambda t: ("application/yaml", _as_bytes(t))),
    fs.json_texts().map(lambda t: ("application/json", _as_bytes(t))),
    st.binary(max_size=300).map(lambda b: ("application/yaml", b)),
    st.binary(max_size=300).map(lambda b: ("application/json", b)),
)


@given(
    info=fs.any_kind(),
    body=bodies,
    method=st.sampled_from(["POST", "PUT"]),
    dry_run=st.booleans(),
    namespace=fs.namespaces(),
    name=fs.names(),
)
@budget(ci=400, deep=14_000)
def test_object_bodies(
    http: httpx.Client,
    watchers: list[Watcher],
    info: KindInfo,
    body: tuple[str, bytes],
    method: str,
    dry_run: bool,
    namespace: str,
    name: str,
) -> None:
    content_type, content = body
    if content.startswith(b"{") and b'"apiVersion"' in content:
        info = _kind_of(content, info)  # a document goes to its own kind's URL, mostly
    url = _collection(info, namespace) + (f"/{_seg(name)}" if method == "PUT" else "")
    params = {"dryRun": "All"} if dry_run else {}
    response = _send(
        http, method, url, content=content, headers={"content-type": content_type}, params=params
    )
    outcome = oracle.http_outcome(response)
    if outcome == "accepted":
        assert response.json()["kind"] == info.kind, response.text
    tally.count("rest.bodies", outcome)


_yaml_bodies = st.fixed_dictionaries(
    {
        "yaml": st.one_of(
            fs.clean_document().map(fs.to_yaml), fs.any_document().map(fs.to_yaml), fs.yaml_texts()
        )
    },
    optional={"namespace": st.one_of(fs.namespaces(), fs.json_scalars())},
).map(fs.to_json)
validate_bodies = fs.weighted((5, _yaml_bodies), (1, fs.json_texts()), (1, fs.json_values().map(fs.to_json)))


@given(body=validate_bodies)
@budget(ci=250, deep=7_000)
def test_validate_view(http: httpx.Client, body: str) -> None:
    response = _send(
        http,
        "POST",
        "/api/v1/validate",
        content=_as_bytes(body),
        headers={"content-type": "application/json"},
    )
    tally.count("rest.validate", oracle.validate_outcome(response))


@pytest.fixture(scope="module")
def rollback_target(http: httpx.Client) -> tuple[str, list[int]]:
    """An object with two revisions to roll back: (rollback URL, its revisions)."""
    info = kinds.lookup("RateLimitStrategy")
    url = _collection(info, fs.FUZZ_NAMESPACE) + "/rollback-target"
    revisions = []
    for threshold in (1, 2):
        body = {
            "apiVersion": info.api_version,
            "kind": info.kind,
            "metadata": {"name": "rollback-target", "labels": {"app": fs.FUZZ_APP}},
            "spec": {"threshold": threshold, "statDuration": "1s"},
        }
        response = http.put(url, json=body)
        assert response.status_code in (200, 201)
        revisions.append(int(response.json()["metadata"]["resourceVersion"]))
    return url + "/rollback", revisions


@given(data=st.data(), dry_run=st.booleans())
@budget(ci=100, deep=2_500)
def test_rollback_bodies(
    http: httpx.Client, rollback_target: tuple[str, list[int]], data: st.DataObject, dry_run: bool
) -> None:
    url, revisions = rollback_target
    revision = fs.weighted(
        (2, st.sampled_from(revisions)), (1, fs.json_scalars()), (1, fs.hostile_int().map(str))
    )
    body = data.draw(
        fs.weighted(
            (4, st.fixed_dictionaries({"revision": revision}, optional={"resourceVersion": fs.json_scalars()})
             .map(fs.to_json)),
            (1, fs.json_texts()),
        )
    )  # fmt: skip
    params = {"dryRun": "All"} if dry_run else {}
    response = _send(
        http, "POST", url, content=_as_bytes(body), params=params,
        headers={"content-type": "application/json"},
    )  # fmt: skip
    tally.count("rest.rollback", oracle.http_outcome(response))


# -- paths and query parameters ---------------------------------------------------------------------

_values = st.one_of(
    fs.hostile_text(60),
    fs.hostile_int().map(str),
    st.sampled_from(["2**70", "1e400", "-1", "0", "nan", "inf", "true", "false", "", "%00", "1.5", "0x10"]),
    st.sampled_from(fs.DURATIONS),
)
_kind_names = st.one_of(
    st.sampled_from([n for k in kinds.all_kinds() for n in (k.kind, k.plural, k.full_kind)]),
    fs.hostile_text(30),
)
_PARAMS: dict[str, list[str]] = {
    "/api/v1/rules": ["namespace", "kind", "app", "q", "offset", "limit"],
    "/api/v1/metrics/apps": ["window"],
    "/api/v1/metrics/series": ["namespace", "app", "resource", "window"],
    "/api/v1/metrics/history": ["namespace", "app", "resource", "start", "end"],
    "/api/v1/instances": ["app", "namespace"],
    "/api/v1/clients": ["connected"],
    "/api/v1/snapshots": [],
    "/api/v1/apps": [],
    "/api/v1/overview": [],
    "/api/v1/namespaces": [],
    "/api/v1/whoami": [],
    "/healthz": [],
    "/metrics": [],
    "/apis": [],
}


def _path_strategy() -> st.SearchStrategy[str]:
    info = fs.any_kind()
    segment = st.one_of(fs.names(), fs.hostile_text(40))
    return st.one_of(
        st.sampled_from(sorted(_PARAMS)),
        st.tuples(info, fs.namespaces()).map(lambda p: _collection(*p)),
        st.tuples(info, fs.namespaces(), segment, st.sampled_from(["", "/history", "/rollout"])).map(
            lambda p: f"{_collection(p[0], p[1])}/{_seg(p[2])}{p[3]}"
        ),
        st.tuples(info).map(lambda p: f"/apis/{p[0].group}/{p[0].version}/{p[0].plural}"),
        st.tuples(segment, segment, segment).map(lambda p: f"/apis/{_seg(p[0])}/{_seg(p[1])}/{_seg(p[2])}"),
        st.tuples(fs.namespaces(), segment).map(lambda p: f"/api/v1/apps/{_seg(p[0])}/{_seg(p[1])}"),
    )


def _params_for(path: str) -> st.SearchStrategy[dict[str, str]]:
    known = _PARAMS.get(path, ["resourceVersion", "watch"] if "/namespaces/" in path else [])
    names = st.sampled_from(known) if known else st.nothing()
    values = st.one_of(_values, _kind_names)
    return st.dictionaries(fs.weighted((3, names), (1, fs.hostile_text(10))), values, max_size=4)


@given(request=_path_strategy().flatmap(lambda path: st.tuples(st.just(path), _params_for(path))))
@budget(ci=300, deep=8_000)
def test_paths_and_query_parameters(http: httpx.Client, request: tuple[str, dict[str, str]]) -> None:
    path, params = request
    if params.get("watch", "").lower() in ("true", "1", "yes", "on", "t", "y"):
        params["watch"] = "false"  # a watch streams until the client leaves: not a single answer
    query = [
        (k.encode("utf-8", "surrogatepass"), v.encode("utf-8", "surrogatepass")) for k, v in params.items()
    ]
    url = path + (
        "?" + "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in query) if query else ""
    )
    response = _send(http, "GET", url)
    outcome = oracle.http_outcome(response)
    if response.status_code == 422:
        causes = response.json()["details"]["causes"]
        assert all(c["field"].startswith(("query.", "path.")) for c in causes), response.text
    tally.count("rest.paths+query", outcome)


# -- afterwards: what was accepted was delivered ----------------------------------------------------


def test_accepted_objects_were_delivered(
    fuzzed_cp: FuzzedControlPlane, http: httpx.Client, watchers: list[Watcher]
) -> None:
    """Runs after the fuzzers of this module: no push failed to encode, no stored object fails
    validation, the control plane is well."""
    snapshots = http.get("/api/v1/snapshots").json()
    assert snapshots["invalid"] == [], snapshots["invalid"]
    for watcher in watchers:
        wait_until(lambda w=watcher: w.responses, timeout=30, what="the first push")  # type: ignore[misc]
        assert watcher.error is None, watcher.error
        failed = [r for r in watcher.responses if r.status.code == CODE_UNKNOWN_ERROR]
        assert not failed, failed[:3]
    fuzzed_cp.assert_healthy()

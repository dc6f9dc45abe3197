"""An in-process fake of the Kubernetes API server's REST surface that KubernetesStore uses.

It follows the API server's semantics where the store depends on them:

- one global, increasing resourceVersion (as etcd's revision) set on every write;
- list returns the collection's resourceVersion; watch (``?watch=true&resourceVersion=N``)
  streams JSON lines ``{"type": ADDED|MODIFIED|DELETED|BOOKMARK|ERROR, "object": ...}`` of the
  changes after N, then live ones; a resourceVersion older than the compacted history gets an
  ``ERROR`` event carrying a ``Status`` with code 410 (Gone), as the watch cache does;
  ``allowWatchBookmarks=true`` gets periodic BOOKMARK events; ``timeoutSeconds`` ends the watch;
- create (409 AlreadyExists), replace with ``metadata.resourceVersion`` (409 Conflict; an update
  without one is unconditional, as for custom resources), delete with
  ``preconditions.resourceVersion`` (409; success answers a ``Status``), the status
  subresource (the main resource's writes keep the status; status writes change nothing
  else), generation bumped on spec changes;
- bodies are validated against the committed CRDs' schemas (422 Invalid);
- ConfigMaps (``/api/v1/namespaces/<ns>/configmaps``) with ``labelSelector`` existence tests.

Test hooks: :meth:`compact` (forget history, so older watches get 410) and :meth:`drop_watches`
(end every open watch, as a broken connection would).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import jsonschema  # type: ignore[import-untyped,unused-ignore]
from aiohttp import web

from tests.unit.kubernetes.schema import load_crds, to_json_schema

Resource = tuple[str, str, str]  # (group, version, plural); group "" is the core API


@dataclass
class _Watch:
    resource: Resource
    namespace: str | None
    queue: asyncio.Queue[dict[str, Any] | None] = field(default_factory=asyncio.Queue)


class FakeApiServer:
    def __init__(self, *, bookmark_interval: float = 0.2, validate: bool = True) -> None:
        self.revision = 1000
        self.compacted = 0
        self.bookmark_interval = bookmark_interval
        self.objects: dict[tuple[Resource, str, str], dict[str, Any]] = {}
        self.log: list[tuple[int, Resource, str, dict[str, Any]]] = []
        self.kinds: dict[Resource, str] = {("", "v1", "configmaps"): "ConfigMap"}
        self.validators: dict[Resource, jsonschema.Draft202012Validator] = {}
        for crd in load_crds():
            spec = crd["spec"]
            for version in spec["versions"]:
                res = (spec["group"], version["name"], spec["names"]["plural"])
                self.kinds[res] = spec["names"]["kind"]
                if validate:
                    schema = to_json_schema(version["schema"]["openAPIV3Schema"])
                    self.validators[res] = jsonschema.Draft202012Validator(schema)
        self.watches: list[_Watch] = []
        self.requests: list[str] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    # --- lifecycle ---

    async def start(self) -> str:
        app = web.Application()
        for prefix in ("/apis/{group}/{version}", "/api/{version}"):
            app.router.add_route("GET", prefix + "/{plural}", self._collection)
            app.router.add_route("GET", prefix + "/namespaces/{ns}/{plural}", self._collection)
            app.router.add_route("POST", prefix + "/namespaces/{ns}/{plural}", self._create)
            app.router.add_route("GET", prefix + "/namespaces/{ns}/{plural}/{name}", self._get)
            app.router.add_route("PUT", prefix + "/namespaces/{ns}/{plural}/{name}", self._replace)
            app.router.add_route("DELETE", prefix + "/namespaces/{ns}/{plural}/{name}", self._delete)
            app.router.add_route("GET", prefix + "/namespaces/{ns}/{plural}/{name}/status", self._get)
            app.router.add_route("PUT", prefix + "/namespaces/{ns}/{plural}/{name}/status", self._put_status)
            app.router.add_route(
                "PATCH", prefix + "/namespaces/{ns}/{plural}/{name}/status", self._put_status
            )
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server: Any = site._server
        port = server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        self.drop_watches()
        if self._runner is not None:
            await self._runner.cleanup()

    # --- test hooks ---

    def compact(self) -> None:
        """Forget the history up to now: watches from an older resourceVersion get 410."""
        self.compacted = self.revision
        self.log.clear()

    def drop_watches(self) -> None:
        for watch in self.watches:
            watch.queue.put_nowait(None)
        self.watches.clear()

    # --- helpers ---

    @staticmethod
    def _failure(code: int, reason: str, message: str) -> web.Response:
        body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "status": "Failure"}
        body.update(message=message, reason=reason, code=code)
        return web.json_response(body, status=code)

    def _resource(self, request: web.Request) -> Resource | None:
        info = request.match_info
        res = (info.get("group", ""), info["version"], info["plural"])
        return res if res in self.kinds else None

    def _write(self, res: Resource, ns: str, name: str, event: str, obj: dict[str, Any] | None) -> int:
        self.revision += 1
        key = (res, ns, name)
        if obj is None:
            obj = copy.deepcopy(self.objects.pop(key))
            obj["metadata"]["resourceVersion"] = str(self.revision)
        else:
            obj["metadata"]["resourceVersion"] = str(self.revision)
            self.objects[key] = obj
        snapshot = copy.deepcopy(obj)
        self.log.append((self.revision, res, event, snapshot))
        for watch in self.watches:
            if watch.resource == res and watch.namespace in (None, ns):
                watch.queue.put_nowait({"type": event, "object": snapshot})
        return self.revision

    def _invalid(self, res: Resource, body: dict[str, Any]) -> web.Response | None:
        validator = self.validators.get(res)
        if validator is None:
            return None
        errors = sorted(validator.iter_errors(body), key=lambda e: list(e.path))
        if not errors:
            return None
        text = "; ".join(f"{'.'.join(map(str, e.path))}: {e.message}" for e in errors[:5])
        return self._failure(422, "Invalid", text)

    # --- handlers ---

    async def _collection(self, request: web.Request) -> web.StreamResponse:
        res = self._resource(request)
        if res is None:
            return self._failure(404, "NotFound", "the server could not find the requested resource")
        ns = request.match_info.get("ns")
        query = request.query
        if query.get("watch") in ("true", "1", "True"):
            return await self._watch(request, res, ns)
        selector = query.get("labelSelector")
        items = [
            copy.deepcopy(obj)
            for (r, o_ns, _), obj in sorted(self.objects.items())
            if r == res and ns in (None, o_ns) and _selected(obj, selector)
        ]
        body = {
            "apiVersion": f"{res[0]}/{res[1]}" if res[0] else res[1],
            "kind": f"{self.kinds[res]}List",
            "metadata": {"resourceVersion": str(self.revision)},
            "items": items,
        }
        return web.json_response(body)

    async def _watch(self, request: web.Request, res: Resource, ns: str | None) -> web.StreamResponse:
        query = request.query
        since = int(query.get("resourceVersion") or 0)
        bookmarks = query.get("allowWatchBookmarks") in ("true", "1", "True")
        timeout = float(query.get("timeoutSeconds") or 1800)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)

        async def send(event: dict[str, Any]) -> None:
            await response.write((json.dumps(event) + "\n").encode())

        if since < self.compacted:
            status: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 410}
            status.update(reason="Expired", message=f"too old resource version: {since} ({self.compacted})")
            await send({"type": "ERROR", "object": status})
            return response
        watch = _Watch(res, ns)
        for revision, r, event, obj in self.log:
            if revision > since and r == res and ns in (None, obj["metadata"].get("namespace")):
                watch.queue.put_nowait({"type": event, "object": obj})
        self.watches.append(watch)
        deadline = asyncio.get_running_loop().time() + timeout
        try:
            while True:
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    break
                try:
                    item = await asyncio.wait_for(watch.queue.get(), min(left, self.bookmark_interval))
                except TimeoutError:
                    if bookmarks:
                        marker: dict[str, Any] = {"kind": self.kinds[res], "apiVersion": f"{res[0]}/{res[1]}"}
                        marker["metadata"] = {"resourceVersion": str(self.revision)}
                        await send({"type": "BOOKMARK", "object": marker})
                    continue
                if item is None:
                    break
                await send(item)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            with contextlib.suppress(ValueError):
                self.watches.remove(watch)
        return response

    async def _get(self, request: web.Request) -> web.Response:
        res = self._resource(request)
        key = (res, request.match_info["ns"], request.match_info["name"])
        if res is None or key not in self.objects:
            return self._failure(404, "NotFound", f"{request.match_info['name']} not found")
        return web.json_response(self.objects[key])

    async def _create(self, request: web.Request) -> web.Response:
        res = self._resource(request)
        if res is None:
            return self._failure(404, "NotFound", "the server could not find the requested resource")
        ns = request.match_info["ns"]
        body = await request.json()
        meta = body.setdefault("metadata", {})
        name = meta.get("name", "")
        if meta.get("namespace", ns) != ns:
            return self._failure(400, "BadRequest", "the namespace of the object does not match")
        if (res, ns, name) in self.objects:
            return self._failure(409, "AlreadyExists", f'"{name}" already exists')
        if meta.get("resourceVersion"):
            return self._failure(422, "Invalid", "resourceVersion should not be set on objects to be created")
        invalid = self._invalid(res, body)
        if invalid is not None:
            return invalid
        if res[0]:
            body.pop("status", None)
        meta.update(
            namespace=ns,
            uid=str(uuid.uuid4()),
            creationTimestamp=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
        if res[0]:
            meta["generation"] = 1
        self._write(res, ns, name, "ADDED", body)
        return web.json_response(body, status=201)

    async def _replace(self, request: web.Request) -> web.Response:
        res = self._resource(request)
        ns, name = request.match_info["ns"], request.match_info["name"]
        key = (res, ns, name)
        if res is None or key not in self.objects:
            return self._failure(404, "NotFound", f"{name} not found")
        current = self.objects[key]
        body = await request.json()
        meta = body.setdefault("metadata", {})
        expected = meta.get("resourceVersion")
        if expected and expected != current["metadata"]["resourceVersion"]:
            return self._failure(
                409,
                "Conflict",
                "Operation cannot be fulfilled: the object has been modified;"
                " please apply your changes to the latest version and try again",
            )
        invalid = self._invalid(res, body)
        if invalid is not None:
            return invalid
        for owned in ("uid", "creationTimestamp", "generation"):
            if owned in current["metadata"]:
                meta[owned] = current["metadata"][owned]
        meta["namespace"] = ns
        if res[0]:
            if "status" in current:
                body["status"] = current["status"]
            else:
                body.pop("status", None)
            if body.get("spec") != current.get("spec"):
                meta["generation"] = current["metadata"].get("generation", 0) + 1
        self._write(res, ns, name, "MODIFIED", body)
        return web.json_response(body)

    async def _put_status(self, request: web.Request) -> web.Response:
        res = self._resource(request)
        ns, name = request.match_info["ns"], request.match_info["name"]
        key = (res, ns, name)
        if res is None or key not in self.objects:
            return self._failure(404, "NotFound", f"{name} not found")
        current = copy.deepcopy(self.objects[key])
        body = await request.json()
        if request.method == "PATCH":
            current["status"] = _merge(current.get("status") or {}, body.get("status") or {})
        else:
            expected = (body.get("metadata") or {}).get("resourceVersion")
            if expected and expected != current["metadata"]["resourceVersion"]:
                return self._failure(409, "Conflict", "the object has been modified")
            current["status"] = body.get("status")
        self._write(res, ns, name, "MODIFIED", current)
        return web.json_response(current)

    async def _delete(self, request: web.Request) -> web.Response:
        res = self._resource(request)
        ns, name = request.match_info["ns"], request.match_info["name"]
        key = (res, ns, name)
        if res is None or key not in self.objects:
            return self._failure(404, "NotFound", f"{name} not found")
        options = await request.json() if request.can_read_body else {}
        expected = ((options or {}).get("preconditions") or {}).get("resourceVersion")
        current = self.objects[key]
        if expected and expected != current["metadata"]["resourceVersion"]:
            return self._failure(
                409, "Conflict", "Precondition failed: ResourceVersion in precondition does not match"
            )
        self._write(res, ns, name, "DELETED", None)
        # As kube-apiserver v1.34 answers for a custom object without finalizers: a Status, not
        # the object (so the client does not learn the deletion's resourceVersion).
        return web.json_response(
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": {"name": name},
            }
        )


def _merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """RFC 7386 JSON merge patch."""
    out = dict(base)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _selected(obj: dict[str, Any], selector: str | None) -> bool:
    """Label selectors of the forms ``key`` and ``key=value`` (comma-separated)."""
    if not selector:
        return True
    labels = (obj.get("metadata") or {}).get("labels") or {}
    for term in selector.split(","):
        key, _, value = term.partition("=")
        if key not in labels or (value and labels[key] != value):
            return False
    return True

"""Reading a request's parameters for hot-parameter limits (HotParamRateLimitStrategy).

Each inbound integration hands the engine a
:data:`~opensergo.governance.faulttolerance.hotparam.ParamLookup` built from the functions here;
the engine calls it only for resources that have a hot-parameter limit, so nothing here runs for
other requests. A parameter the request lacks reads as None, and the limit lets the request pass
(as Sentinel does for a missing argument).

* ``header``: the first header of that name (case-insensitive), decoded as Latin-1.
* ``query``: the first value of that query parameter (percent-decoded, ``+`` as space).
* ``path``: the value of that parameter in the matched route template (``/users/{user_id}``,
  Flask's ``/users/<int:user_id>``); Django passes its resolver's own keyword arguments.
* ``clientIP``: the connection's peer address (behind a proxy, limit on the header the proxy
  sets instead, e.g. ``X-Real-IP``).
* ``grpcMetadata``: the first value of that metadata key (gRPC only).
* ``argument``: a named argument of a ``@guard``-decorated function (read by ``guard`` itself,
  :func:`opensergo.governance.faulttolerance.hotparam.argument_reader`).
"""

from __future__ import annotations

import re
from functools import lru_cache
from urllib.parse import unquote_plus

# {name} / {name:converter} (Starlette), <name> / <converter:name> (Flask, Django path()).
_PLACEHOLDER = re.compile(
    r"\{([A-Za-z_][A-Za-z0-9_]*)(?::([A-Za-z_]+))?\}|<(?:([A-Za-z_]+):)?([A-Za-z_][A-Za-z0-9_]*)>"
)


def query_value(query: str, name: str) -> str | None:
    """The first value of ``name`` in a raw query string (``a=1&b=2``), decoded."""
    if not query:
        return None
    for pair in query.split("&"):
        key, sep, value = pair.partition("=")
        if unquote_plus(key) == name:
            return unquote_plus(value) if sep else ""
    return None


@lru_cache(maxsize=1024)
def _template_pattern(template: str) -> re.Pattern[str] | None:
    """A regex with one named group per placeholder of a route template (None: none in it)."""
    parts: list[str] = []
    last = 0
    found = False
    for m in _PLACEHOLDER.finditer(template):
        found = True
        parts.append(re.escape(template[last : m.start()]))
        name = m.group(1) or m.group(4)
        converter = m.group(2) or m.group(3)
        parts.append(f"(?P<{name}>{'.+' if converter == 'path' else '[^/]+'})")
        last = m.end()
    if not found:
        return None
    parts.append(re.escape(template[last:]))
    try:
        return re.compile("".join(parts))
    except re.error:  # a placeholder name used twice
        return None


def path_value(template: str | None, path: str, name: str) -> str | None:
    """The value of path parameter ``name`` of ``path`` under route ``template``."""
    if not template:
        return None
    pattern = _template_pattern(template)
    if pattern is None or name not in pattern.groupindex:
        return None
    m = pattern.fullmatch(path)  # servers hand over the path already percent-decoded
    return m.group(name) if m is not None else None


def peer_host(peer: str) -> str | None:
    """The address part of a gRPC peer string (``ipv4:1.2.3.4:5``, ``ipv6:[::1]:5``)."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rpartition(":")[0] or None
    if kind == "ipv6":
        host = rest.rpartition(":")[0]
        return host.strip("[]") or None
    return rest or None

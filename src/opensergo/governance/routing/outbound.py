"""Helpers shared by the outbound integrations (httpx, requests, gRPC)."""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable, Collection
from typing import Literal

__all__ = ["PropagateLane", "default_should_route", "should_route_predicate"]

PropagateLane = Literal["routed", "all", "never"]
"""Where outbound integrations write the lane: routed requests only (default), every request, never."""


@functools.lru_cache(maxsize=4096)
def default_should_route(host: str) -> bool:
    """Single-label names (not ``localhost``, not an IP) and ``*.svc.cluster.local`` names."""
    if not host or host == "localhost":
        return False
    if host.endswith(".svc.cluster.local"):
        return True
    if "." in host or ":" in host:
        return False
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return True
    return False


def should_route_predicate(services: Collection[str] | Callable[[str], bool] | None) -> Callable[[str], bool]:
    """``services`` as a predicate: None -> :func:`default_should_route`; a collection -> membership."""
    if services is None:
        return default_should_route
    if callable(services):
        return services
    names = frozenset(services)
    return names.__contains__


def check_propagate(value: str) -> None:
    if value not in ("routed", "all", "never"):
        raise ValueError(f"propagate_lane must be 'routed', 'all' or 'never', not {value!r}")

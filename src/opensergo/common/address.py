"""Addresses both halves advertise: the SDK for its instances, the control plane for itself."""

from __future__ import annotations

import socket

__all__ = ["routable_address"]


def routable_address() -> str:
    """The local address other hosts would reach us at (no packet is sent); loopback when offline."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 1))
            return str(probe.getsockname()[0])
        except OSError:
            return "127.0.0.1"

"""Primitives both halves share (clock, sliding windows, addresses, the transport vocabulary).

The control plane imports these, never the SDK or the governance engine."""

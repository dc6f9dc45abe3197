"""Kubernetes' naming rules, for names that arrive over the wire rather than in a checked object.

A namespace is an RFC 1123 label; an app name is a (non-empty) label value, since objects select
their app with the label ``app: <name>``; label keys are qualified names (an optional DNS
subdomain prefix and ``/``). The control plane checks the namespace, app and labels of every
gRPC request with these before it authorizes or stores anything, so that a value it keeps (and
later shows in the dashboard or a selector) is one Kubernetes would accept.
"""

from __future__ import annotations

import re

__all__ = ["InvalidName", "check_app", "check_label", "check_namespace"]

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?")
_LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?")
_MAX_LABEL = 63
_MAX_SUBDOMAIN = 253
_SHOWN = 64  # characters of a refused value quoted in the error


class InvalidName(ValueError):
    """A value breaks Kubernetes' naming rules; the message names the field."""


def _quote(value: str) -> str:
    return repr(value if len(value) <= _SHOWN else value[:_SHOWN] + "...")


def check_namespace(value: str, field: str) -> str:
    """``value`` if it is an RFC 1123 label (a-z, 0-9, '-', at most 63), else InvalidName."""
    if len(value) > _MAX_LABEL or not _DNS_LABEL.fullmatch(value):
        raise InvalidName(
            f"{field}: {_quote(value)} is not a namespace name"
            " (lowercase RFC 1123 label: a-z, 0-9, '-'; at most 63 characters)"
        )
    return value


def check_app(value: str, field: str) -> str:
    """``value`` if it is a non-empty label value, else InvalidName."""
    if not value or not _is_label_value(value):
        raise InvalidName(
            f"{field}: {_quote(value)} is not an app name (a Kubernetes label value: A-Z, a-z, 0-9,"
            " '-', '_', '.', beginning and ending with a letter or digit; at most 63 characters)"
        )
    return value


def check_label(key: str, value: str, field: str) -> None:
    """InvalidName unless ``key`` is a qualified name and ``value`` a label value (may be empty)."""
    if not _is_qualified_name(key):
        raise InvalidName(
            f"{field}: key {_quote(key)} is not a label key ([prefix/]name: name as a label value,"
            " prefix a DNS subdomain)"
        )
    if not _is_label_value(value):
        raise InvalidName(
            f"{field}: the value {_quote(value)} of {key!r} is not a label value (A-Z, a-z, 0-9, '-',"
            " '_', '.', beginning and ending with a letter or digit; at most 63 characters)"
        )


def _is_label_value(value: str) -> bool:
    return len(value) <= _MAX_LABEL and _LABEL_VALUE.fullmatch(value) is not None


def _is_qualified_name(key: str) -> bool:
    prefix, slash, name = key.rpartition("/")
    if slash and (len(prefix) > _MAX_SUBDOMAIN or not _DNS_SUBDOMAIN.fullmatch(prefix)):
        return False
    return bool(name) and _is_label_value(name)

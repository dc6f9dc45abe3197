"""Imported by Python at start-up when ``opensergo-run`` launched the process.

Installs OpenSergo's import hooks (:func:`opensergo.launcher.bootstrap`), then runs the
``sitecustomize`` this one shadows, if there is one. Never lets an error stop the program.
"""

from __future__ import annotations

import sys


def _run() -> None:
    try:
        from opensergo.launcher import bootstrap, chain_sitecustomize

        bootstrap()
    except Exception as exc:  # pragma: no cover - reported, never fatal
        print(f"opensergo-run: auto-instrumentation disabled: {exc!r}", file=sys.stderr)
        return
    chain_sitecustomize(__file__)


_run()

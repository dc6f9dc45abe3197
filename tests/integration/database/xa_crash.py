"""A process that dies with SIGKILL in the middle of an XA commit (run by test_xa_recovery.py).

Usage: python -m tests.integration.database.xa_crash RULES_FILE LOG_DIR MODE MARKER

MODE ``before-decision``: killed after every branch is prepared, before the commit decision is
logged (recovery must roll back). ``after-first-commit``: killed after the decision is logged and
the first branch committed (recovery must commit the rest). ``recover``: just start an engine
(the restart) and exit.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from opensergo.database import create_engine
from opensergo.database.engine import state_of
from opensergo.database.rules import DatabaseRules
from opensergo.spec.loader import parse_documents


def _die(*_: Any) -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    rules_file, log_dir, mode, marker = sys.argv[1:5]
    rules = DatabaseRules()
    rules.replace(parse_documents(Path(rules_file).read_text(), source=rules_file), namespace="default")
    engine = create_engine("sharding_db", rules=rules, transaction_log_dir=log_dir)
    if mode == "recover":
        print("recovered", flush=True)
        return
    coordinator: Any = state_of(engine).current().coordinator
    if mode == "before-decision":
        coordinator.log.decide = _die
    elif mode == "after-first-commit":
        coordinator.after_branch_commit = _die
    else:
        raise SystemExit(f"unknown mode {mode}")
    with engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO t_order (user_id, status) VALUES (:u, :s)"),
            [{"u": 0, "s": marker}, {"u": 1, "s": marker}],  # one row on each data source
        )
    print("not killed", flush=True)


if __name__ == "__main__":
    main()

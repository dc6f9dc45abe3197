"""Fixtures for the interop tests: the Go and Java programs (built once per session) and their output.

The builds run offline (``GOPROXY=off``, ``mvn -o``): the dependency caches must be warm
(``python interop/build.py warm``, which CI runs first). Tests are skipped only when the ``go`` or
``mvn``/``java`` binaries are absent; a failing build is an error, not a skip.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.helpers import ROOT, ControlPlaneProcess, stop_processes

BUILD_SCRIPT = ROOT / "interop" / "build.py"


def _load_build() -> ModuleType:
    spec = importlib.util.spec_from_file_location("opensergo_interop_build", BUILD_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


build = _load_build()


def _go_available() -> bool:
    try:
        build.go_binary()
    except build.BuildError:
        return False
    return True


@pytest.fixture(scope="session")
def go_client(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Go interop client binary (interop/go), built once per session."""
    if not _go_available():
        pytest.fail("go is not installed (make test installs it; a missing tool fails, it never skips)")
    if shutil.which("mvn") is None:
        # the Go build takes the upstream .proto files from the Java SDK jar in the Maven cache
        pytest.fail("mvn is not installed (the Go build needs the Java SDK jar from the Maven cache)")
    return Path(build.build_go(tmp_path_factory.mktemp("go-bin")))


@pytest.fixture(scope="session")
def java_client() -> Any:
    """How to run the Java interop client (interop/java), compiled once per session."""
    if shutil.which("mvn") is None or shutil.which("java") is None:
        pytest.fail("mvn/java is not installed (make test installs them)")
    return build.build_java()


class ProgramRun:
    """A running interop program whose stdout is JSON lines, collected by a reader thread."""

    def __init__(self, name: str, cmd: list[str], log_dir: Path, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.cmd = cmd
        self.stderr_path = log_dir / f"{name}.stderr"
        self.stdout_path = log_dir / f"{name}.stdout"
        self.lines: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._stderr = self.stderr_path.open("wb")
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=self._stderr, env={**os.environ, **(env or {})}
        )
        self._reader = threading.Thread(target=self._read, name=f"{name}-stdout", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        with self.stdout_path.open("wb") as raw:
            for line in self.proc.stdout:
                raw.write(line)
                raw.flush()
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                with self._lock:
                    self.lines.append(event)

    def events(self, event: str | None = None, **match: Any) -> list[dict[str, Any]]:
        with self._lock:
            lines = list(self.lines)
        found: list[dict[str, Any]] = [
            line
            for line in lines
            if (event is None or line.get("event") == event)
            and all(line.get(k) == v for k, v in match.items())
        ]
        return found

    def pushes(self, kind: str, *, applied_only: bool = True) -> list[dict[str, Any]]:
        found = self.events("push", kind=kind)
        return [p for p in found if p.get("applied", True)] if applied_only else found

    def wait_push(
        self,
        kind: str,
        predicate: Callable[[dict[str, Any]], bool] = lambda _: True,
        timeout: float = 20.0,
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for push in reversed(self.pushes(kind)):
                if predicate(push):
                    found: dict[str, Any] = push
                    return found
            if self.proc.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.05)
        raise AssertionError(
            f"{self.name}: no matching push for {kind} within {timeout}s; pushes: "
            f"{self.pushes(kind, applied_only=False)}\nstderr:\n{self.stderr()[-4000:]}"
        )

    def stderr(self) -> str:
        if not self._stderr.closed:
            self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")

    def wait_exit(self, timeout: float) -> int:
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return code

    def stop(self) -> None:
        stop_processes([self.proc])
        self._reader.join(timeout=5)
        self._stderr.close()

    def dump(self) -> str:
        out = self.stdout_path.read_text(errors="replace") if self.stdout_path.exists() else ""
        return f"--- {self.name} stdout ---\n{out}\n--- {self.name} stderr ---\n{self.stderr()}"


@pytest.fixture
def run_program(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Callable[..., ProgramRun]]:
    """Start interop programs; stops exactly the processes it started and prints their output on failure."""
    runs: list[ProgramRun] = []
    log_dir = tmp_path / "programs"
    log_dir.mkdir()

    def start(name: str, cmd: list[str], env: dict[str, str] | None = None) -> ProgramRun:
        run = ProgramRun(name, [str(c) for c in cmd], log_dir, env)
        runs.append(run)
        return run

    yield start
    for run in runs:
        run.stop()
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        for run in runs:
            print(run.dump())


def go_command(binary: Path, cp: ControlPlaneProcess, *args: str) -> list[str]:
    return [str(binary), "-host", "127.0.0.1", "-port", str(cp.grpc_port), *args]

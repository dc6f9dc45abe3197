"""The README quick start, as a new user runs it: `make run` in a terminal, the CLI walk-through in
another, then Ctrl-C.

`make run` runs on a pseudo-terminal that is its controlling terminal, and Ctrl-C is the byte
0x03 typed into it: the terminal driver sends SIGINT to its foreground process group, exactly as
for a person at a keyboard. Ports and the data directory come from the environment variables that
scripts/run_demo.py reads, so the test does not collide with a `make run` already on this machine.
"""

from __future__ import annotations

import fcntl
import os
import pty
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import ROOT, free_port, stop_processes, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

VENV = Path(sys.prefix)
# The walk-through the README gives after `make run` (each is checked to be in the README).
README_COMMANDS = (
    "make run",
    "opensergo apply -f examples/rules/rate-limit.yaml",
    "opensergo get clients",
    "opensergo get instances",
)


class Terminal:
    """A command on a new pseudo-terminal (its controlling terminal); everything it prints is kept."""

    def __init__(self, cmd: list[str], env: dict[str, str], cwd: Path) -> None:
        self.master, slave = pty.openpty()

        def controlling_terminal() -> None:  # in the child, after stdin became the slave side
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.proc = subprocess.Popen(
            cmd,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            cwd=cwd,
            env=env,
            preexec_fn=controlling_terminal,  # only setsid and an ioctl: safe after fork
        )
        os.close(slave)
        self._output = bytearray()
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 4096)
            except OSError:  # EIO: every process holding the slave side has exited
                return
            if not chunk:
                return
            with self._lock:
                self._output += chunk

    @property
    def output(self) -> str:
        with self._lock:
            return self._output.decode(errors="replace").replace("\r\n", "\n")

    def ctrl_c(self) -> None:
        os.write(self.master, b"\x03")

    def close(self) -> None:
        stop_processes([self.proc])
        self._reader.join(timeout=5)
        os.close(self.master)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    ports = {"OPENSERGO_GRPC_PORT": free_port(), "OPENSERGO_HTTP_PORT": free_port(), "DEMO_PORT": free_port()}
    return {
        **os.environ,
        **{name: str(port) for name, port in ports.items()},
        "OPENSERGO_DATA_DIR": str(tmp_path / "data"),
        # What `. .venv/bin/activate` does for the second terminal.
        "PATH": f"{VENV / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "OPENSERGO_SERVER": f"http://127.0.0.1:{ports['OPENSERGO_HTTP_PORT']}",
        "TERM": "xterm",
    }


def make_run_command() -> list[str]:
    cmd = ["make", "--no-print-directory", "run"]
    if VENV != ROOT / ".venv":
        # Running from another checkout's venv (a worktree): use it as is, never reinstall into it.
        cmd += [f"VENV={VENV}", "-o", f"{VENV}/.installed-stamp"]
    return cmd


@pytest.fixture
def make_run(env: dict[str, str], request: pytest.FixtureRequest) -> Iterator[Terminal]:
    terminal = Terminal(make_run_command(), env, ROOT)
    yield terminal
    terminal.close()
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        print(terminal.output)


def cli(env: dict[str, str], command: str) -> subprocess.CompletedProcess[str]:
    """A README command in the second terminal, word for word."""
    return subprocess.run(
        command.split(), cwd=ROOT, env={**env, "COLUMNS": "200"}, capture_output=True, text=True, timeout=60
    )


def test_the_readme_commands_are_the_ones_tested() -> None:
    readme = (ROOT / "README.md").read_text()
    for command in README_COMMANDS:
        assert command in readme, command


def test_make_run_walkthrough_then_ctrl_c_stops_everything_cleanly(
    make_run: Terminal, env: dict[str, str]
) -> None:
    demo = f"http://127.0.0.1:{env['DEMO_PORT']}"
    wait_until(lambda: "Press Ctrl-C to stop." in make_run.output, timeout=120, interval=0.2, what="make run")

    applied = cli(env, "opensergo apply -f examples/rules/rate-limit.yaml")
    assert applied.returncode == 0, applied
    # The demo app prints each rule set it receives, and guards GET /hello with it.
    wait_until(
        lambda: "GET:/hello" in httpx.get(f"{demo}/", timeout=2).text,
        timeout=30,
        interval=0.2,
        what="the rule",
    )

    def sees_429() -> bool:
        codes = [httpx.get(f"{demo}/hello", timeout=5).status_code for _ in range(8)]
        return 429 in codes and 200 in codes

    wait_until(sees_429, timeout=20, interval=1.1, what="429s from the demo app")

    instances = cli(env, "opensergo get instances")
    assert instances.returncode == 0 and "demo-app" in instances.stdout, instances
    clients = cli(env, "opensergo get clients")
    assert clients.returncode == 0 and "demo-app" in clients.stdout, clients

    make_run.ctrl_c()
    make_run.proc.wait(timeout=30)
    time.sleep(0.2)  # the last lines still in the terminal
    output = make_run.output
    assert make_run.proc.returncode == 0, output
    assert "make: ***" not in output
    assert "Traceback" not in output
    # Nothing is left listening.
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{demo}/hello", timeout=2)
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{env['OPENSERGO_SERVER']}/healthz", timeout=2)

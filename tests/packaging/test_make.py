"""`make test` installs and warms everything itself; CI only calls it (Makefile dry runs)."""

from __future__ import annotations

import subprocess

import pytest

from tests.helpers import ROOT

pytestmark = pytest.mark.integration


def dry_run(*targets: str) -> list[str]:
    """The commands `make TARGETS` would run, in order (make -n; nothing is executed)."""
    result = subprocess.run(
        ["make", "--no-print-directory", "-n", *targets, "VENV=/nonexistent/venv"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def index_of(lines: list[str], fragment: str) -> int:
    found = [i for i, line in enumerate(lines) if fragment in line]
    assert found, f"no command containing {fragment!r} in:\n" + "\n".join(lines)
    return found[0]


def test_make_test_installs_and_warms_everything_before_pytest() -> None:
    lines = dry_run("test")
    pytest_at = index_of(lines, "-m pytest")
    for step in (
        "pip install --quiet -c constraints.txt -e",  # the venv, at the locked versions
        "scripts/system-deps.sh",  # etcd, Chromium, Maven, ...
        "scripts/build-kube-apiserver.sh",  # the real kube-apiserver
        "interop/build.py warm",  # the Maven and Go caches of the interop programs
    ):
        assert index_of(lines, step) < pytest_at, step


def test_ci_only_calls_make_test() -> None:
    script = (ROOT / ".ci" / "run").read_text()
    make_commands = [line.strip() for line in script.splitlines() if line.strip().startswith("make")]
    assert make_commands == ["make test"]
    assert "interop/build.py" not in script
    assert "pytest" not in script


def test_install_uses_the_constraints_and_keeps_the_opentelemetry_proto_fix() -> None:
    lines = dry_run("install")
    install = lines[index_of(lines, "pip install --quiet -c constraints.txt -e")]
    assert "controlplane" in install and "dev" in install
    reinstall = lines[index_of(lines, "--force-reinstall --no-deps")]
    assert "^opentelemetry-proto==" in reinstall and "constraints.txt" in reinstall
    pinned = [
        line
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if line.lower().startswith("opentelemetry-proto==")
    ]
    assert len(pinned) == 1

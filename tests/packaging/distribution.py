"""What users get: the sdist and wheel built from this tree, installed into new virtual environments.

Shared by the packaging tests and ``benchmarks/footprint.py``. Dependencies come from a wheelhouse
(the exact versions of constraints.txt, downloaded once from PyPI into ~/.cache/opensergo/wheelhouse
and keyed by constraints.txt and pyproject.toml), so every later build and install runs offline
and takes seconds, not minutes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONSTRAINTS = ROOT / "constraints.txt"
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "opensergo" / "wheelhouse"
# Every extra the tests install, and what the example apps bring themselves.
EXTRAS = "controlplane,etcd,kubernetes,otel"
APP_FRAMEWORKS = ("fastapi", "uvicorn", "flask")
# What building our sdist and wheel needs (pyproject.toml's [build-system]).
BUILD_REQUIREMENTS = ("setuptools>=77",)
# The packages that install pip itself into a venv; not part of what we bring in.
VENV_TOOLING = frozenset({"pip", "setuptools", "wheel"})

Progress = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for a process of a new venv: without our PYTHONPATH (it must import the
    installed wheel, not this tree) and with pip kept off the network."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PIP_", "VIRTUAL_ENV"))}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env.update(extra)
    return env


def _run(cmd: Sequence[str | Path], *, env: dict[str, str] | None = None, timeout: float = 600) -> str:
    result = subprocess.run(
        [str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, env=env or clean_env()
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(map(str, cmd))} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return result.stdout


def wheelhouse(progress: Progress = _stderr) -> Path:
    """Wheels of every dependency at the versions of constraints.txt (downloaded once, online)."""
    key = hashlib.sha256(CONSTRAINTS.read_bytes() + (ROOT / "pyproject.toml").read_bytes()).hexdigest()[:16]
    house = CACHE / key
    done = house / ".complete"
    if done.is_file():
        return house
    started = time.monotonic()
    progress(f"wheelhouse: fetching wheels of constraints.txt's versions into {house} (once, online)")
    if house.exists():
        shutil.rmtree(house)
    house.mkdir(parents=True)
    # The project's own requirements, read by pip from this tree, plus the apps' frameworks and
    # the build backend; then our own wheel is removed: each run installs the one it just built.
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "-c",
            CONSTRAINTS,
            "--wheel-dir",
            house,
            f"{ROOT}[{EXTRAS}]",
            *APP_FRAMEWORKS,
            *BUILD_REQUIREMENTS,
            "pip",
        ],
    )
    for own in house.glob("opensergo-*"):
        own.unlink()
    for stale in CACHE.iterdir():
        if stale.is_dir() and stale != house:
            shutil.rmtree(stale, ignore_errors=True)
    done.write_text(f"{time.monotonic() - started:.0f} s\n")
    progress(f"wheelhouse: ready in {time.monotonic() - started:.0f} s")
    return house


@dataclass(frozen=True)
class Distributions:
    sdist: Path
    wheel: Path


def build(out_dir: Path, house: Path, progress: Progress = _stderr) -> Distributions:
    """``python -m build``: the sdist, then the wheel built from that sdist (so the sdist is whole)."""
    started = time.monotonic()
    _run(
        [sys.executable, "-m", "build", "--outdir", out_dir, ROOT],
        env=clean_env(PIP_NO_INDEX="1", PIP_FIND_LINKS=str(house)),
    )
    (sdist,) = out_dir.glob("opensergo-*.tar.gz")
    (wheel,) = out_dir.glob("opensergo-*.whl")
    progress(f"built {sdist.name} and {wheel.name} in {time.monotonic() - started:.0f} s")
    return Distributions(sdist, wheel)


@dataclass(frozen=True)
class Venv:
    path: Path

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    def bin(self, name: str) -> Path:
        return self.path / "bin" / name

    def site_packages(self) -> Path:
        (found,) = self.path.glob("lib/python*/site-packages")
        return found

    def distributions(self) -> dict[str, int]:
        """Installed distribution (normalized name) -> bytes on disk, without pip/setuptools.

        The bytes are those of the files in the distribution's RECORD, which lists the .pyc files
        pip compiled at install time too."""
        script = (
            "import importlib.metadata as m, json, os\n"
            "sizes = {}\n"
            "for d in m.distributions():\n"
            "    paths = [f.locate() for f in d.files or ()]\n"
            "    sizes[d.metadata['Name']] = sum(os.path.getsize(p) for p in paths if os.path.isfile(p))\n"
            "print(json.dumps(sizes))\n"
        )
        found: dict[str, int] = json.loads(_run([self.python, "-c", script]))
        sizes = {normalize(name): size for name, size in found.items()}
        return {name: size for name, size in sizes.items() if name not in VENV_TOOLING}


def normalize(name: str) -> str:
    """A distribution's canonical name (PEP 503): lower case, runs of -_. as one dash."""
    return re.sub(r"[-_.]+", "-", name).lower()


def new_venv(
    path: Path, house: Path, *requirements: str | Path, compile: bool = False, progress: Progress = _stderr
) -> Venv:
    """A new, empty venv (no system site-packages), then ``requirements`` installed offline.

    ``compile``: byte-compile at install time as a plain ``pip install`` does (slower to install;
    what an import-time measurement needs). Without it, modules compile on first import."""
    started = time.monotonic()
    _run([sys.executable, "-m", "venv", "--without-pip", path])
    venv = Venv(path)
    # pip from the wheelhouse, so the venv's pip is the locked one and nothing is fetched.
    (pip_wheel,) = house.glob("pip-*.whl")
    _run([venv.python, f"{pip_wheel}/pip", "install", "--quiet", "--no-index", pip_wheel])
    _run(
        [
            venv.python,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-index",
            "--find-links",
            house,
            "-c",
            CONSTRAINTS,
            "--compile" if compile else "--no-compile",
            *requirements,
        ]
    )
    installed = ", ".join(map(_short, requirements))
    progress(f"venv {path.name}: installed {installed} in {time.monotonic() - started:.0f} s")
    return venv


def _short(requirement: str | Path) -> str:
    text = str(requirement)
    return Path(text).name if "/" in text else text


def wheel_names(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        return archive.namelist()


def wheel_metadata(wheel: Path) -> str:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        return archive.read(name).decode()

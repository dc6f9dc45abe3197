"""What `pip install opensergo` costs an application: install size, import time, start-up.

Builds the wheel from this tree, installs it (base only, no extras) into a new venv from the
wheelhouse of constraints.txt's versions (see tests/packaging/distribution.py), then measures:

  * the distributions it brings in and their size on disk (with the .pyc files pip compiles);
  * that none of them is a web framework or a store client (the control plane's extras);
  * ``import opensergo.governance`` in a fresh interpreter: wall and CPU time, first run and best
    of N, plus the ``-X importtime`` breakdown (best of N per module) by package;
  * start-up: from ``enable_from_env()`` to the first rule applied in the engine, against a real
    control plane process (run from this tree) that already holds a rate-limit rule for the app.

Targets: no web framework and no store client in the base install; the governance import
<= 150 ms. The machine may be shared, so CPU time and best-of-N are printed beside wall time.

Usage: python benchmarks/footprint.py [--runs N] [--no-startup]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.helpers import ControlPlaneProcess  # noqa: E402
from tests.packaging.distribution import Venv, build, clean_env, new_venv, wheelhouse  # noqa: E402

WEB_FRAMEWORKS = frozenset({"fastapi", "starlette", "uvicorn", "flask", "werkzeug", "django", "aiohttp"})
STORE_CLIENTS = frozenset({"aiosqlite", "aetcd", "kubernetes-asyncio", "etcd3"})
IMPORT_TARGET_MS = 150.0
APP = "footprint-app"

IMPORT_PROBE = """
import json, time
wall, cpu = time.perf_counter(), time.process_time()
import opensergo.governance
print(json.dumps({"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu}))
"""

# Runs in the base venv: the import, then enable_from_env() until the engine holds the rule.
STARTUP_PROBE = """
import json, sys, time
t0 = time.perf_counter()
from opensergo.governance.runtime import enable_from_env
t1 = time.perf_counter()
governance = enable_from_env(app=sys.argv[1])
deadline = t1 + 30
while "GET:/hello" not in governance.engine.resources:
    if time.perf_counter() > deadline:
        sys.exit("no rule within 30 s")
    time.sleep(0.0005)
t2 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "first_rule": t2 - t1}))
"""

RULES = """\
apiVersion: fault-tolerance.opensergo.io/v1alpha1
kind: RateLimitStrategy
metadata: {name: footprint, labels: {app: %(app)s}}
spec: {metricType: RequestAmount, limitMode: Local, threshold: 5, statDuration: 1s}
---
apiVersion: fault-tolerance.opensergo.io/v1alpha1
kind: FaultToleranceRule
metadata: {name: footprint, labels: {app: %(app)s}}
spec:
  targets: [{targetResourceName: "GET:/hello"}]
  strategies: [{name: footprint, kind: RateLimitStrategy}]
"""


def mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


def report_install(venv: Venv) -> bool:
    sizes = venv.distributions()
    total = sum(sizes.values())
    print(f"\nbase install: {len(sizes)} distributions (opensergo + {len(sizes) - 1}), {mib(total)} on disk")
    for name, size in sorted(sizes.items(), key=lambda item: -item[1]):
        print(f"  {name:<28} {mib(size):>10}")
    unwanted = sorted((WEB_FRAMEWORKS | STORE_CLIENTS) & sizes.keys())
    verdict = "met" if not unwanted else f"MISSED: {', '.join(unwanted)}"
    print(f"target: no web framework, no store client: {verdict}")
    return not unwanted


def _python(venv: Venv, *args: str) -> str:
    result = subprocess.run(
        [str(venv.python), *args], capture_output=True, text=True, env=clean_env(), timeout=120
    )
    if result.returncode != 0:
        raise RuntimeError(f"{args} failed:\n{result.stderr}")
    return result.stdout + result.stderr


def importtime_by_package(venv: Venv, runs: int) -> dict[str, float]:
    """Self time (ms, best of ``runs`` per module): each opensergo module on its own (where the
    import cost is ours to cut), third-party modules summed by their top-level package."""
    best: dict[str, int] = {}
    for _ in range(runs):
        output = _python(venv, "-X", "importtime", "-c", "import opensergo.governance")
        for line in output.splitlines():
            if not line.startswith("import time:") or "self [us]" in line:
                continue
            self_us, _cumulative, name = (part.strip() for part in line[len("import time:") :].split("|"))
            best[name] = min(best.get(name, 1 << 62), int(self_us))
    by_package: dict[str, float] = defaultdict(float)
    for name, self_us in best.items():
        key = name if name.startswith("opensergo.") else name.split(".")[0]
        by_package[key] += self_us / 1000
    return dict(by_package)


def report_import(venv: Venv, runs: int) -> bool:
    samples = [json.loads(_python(venv, "-c", IMPORT_PROBE)) for _ in range(runs)]
    walls = [s["wall"] * 1000 for s in samples]
    cpus = [s["cpu"] * 1000 for s in samples]
    print(f"\nimport opensergo.governance (fresh interpreter, {runs} runs):")
    print(f"  first run      wall {walls[0]:7.1f} ms   cpu {cpus[0]:7.1f} ms")
    print(f"  best           wall {min(walls):7.1f} ms   cpu {min(cpus):7.1f} ms")
    print(f"  median         wall {statistics.median(walls):7.1f} ms   cpu {statistics.median(cpus):7.1f} ms")
    packages = importtime_by_package(venv, runs)
    print(f"  -X importtime, self time by module (best of {runs}), top 20:")
    for name, ms in sorted(packages.items(), key=lambda item: -item[1])[:20]:
        print(f"    {name:<36} {ms:7.1f} ms")
    met = min(cpus) <= IMPORT_TARGET_MS
    verdict = "met" if met else "MISSED"
    print(f"target: import <= {IMPORT_TARGET_MS:.0f} ms (best CPU time {min(cpus):.0f} ms): {verdict}")
    return met


def report_startup(venv: Venv, runs: int, tmp: Path) -> None:
    (tmp / "logs").mkdir()
    cp = ControlPlaneProcess(tmp / "cp-data", tmp / "logs")
    cp.start()
    try:
        rules = tmp / "rules.yaml"
        rules.write_text(RULES % {"app": APP})
        _python(venv, "-m", "opensergo.cli", "apply", "-f", str(rules), "--server", cp.http_url)
        samples = []
        for n in range(runs):
            bootstrap = json.dumps({"endpoint": cp.grpc_address})
            env = clean_env(
                OPENSERGO_BOOTSTRAP_CONFIG=bootstrap, OPENSERGO_SNAPSHOT_DIR=str(tmp / f"snapshots-{n}")
            )
            result = subprocess.run(
                [str(venv.python), "-c", STARTUP_PROBE, APP],
                capture_output=True,
                text=True,
                env=env,
                timeout=60,
            )
            if result.returncode != 0:
                raise RuntimeError(f"start-up probe failed:\n{result.stderr}\n{cp.logs()}")
            samples.append(json.loads(result.stdout))
    finally:
        cp.stop()
    imports = [s["import"] * 1000 for s in samples]
    firsts = [s["first_rule"] * 1000 for s in samples]
    print(f"\nstart-up against a real control plane ({runs} runs, fresh process each):")
    for label, values in (
        ("import opensergo.governance.runtime", imports),
        ("enable_from_env() -> first rule applied", firsts),
    ):
        print(f"  {label:<40} best {min(values):7.1f} ms   median {statistics.median(values):7.1f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=7, help="fresh interpreters per measurement")
    parser.add_argument("--no-startup", action="store_true", help="skip the control-plane start-up run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="opensergo-footprint-") as name:
        tmp = Path(name)
        house = wheelhouse()
        wheel = build(tmp / "dist", house).wheel
        # Byte-compiled at install, as a plain `pip install` does: imports then load .pyc files.
        venv = new_venv(tmp / "base", house, wheel, compile=True)
        report_install(venv)
        report_import(venv, args.runs)
        if not args.no_startup:
            report_startup(venv, max(3, args.runs // 2), tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())

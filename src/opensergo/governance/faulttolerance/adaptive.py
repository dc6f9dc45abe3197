"""AdaptiveOverloadProtectionStrategy: CPU and load protection with optional BBR admission.

A :class:`SystemSampler` reads CPU usage and the 1-minute load average every second on a daemon
thread, off the request path; checks only read two floats. CPU usage is a fraction in [0, 1] of
the CPUs this process may use: the cgroup's quota when one is set (v2 ``cpu.max`` or v1
``cpu.cfs_quota_us``), else the CPUs in the affinity mask; usage is the larger of the process's
own CPU time and the cgroup's (or, without cgroups, the whole machine's ``/proc/stat``), as
Sentinel Java takes the larger of process and system usage. Until the first full interval has
been measured a metric reads -1 and never blocks (Sentinel Go).

Check (Sentinel Go ``core/system/slot.go``; Java checks load before CPU): for each metric with a
rule, if ``value > triggerThreshold`` the request is refused, unless the strategy is BBR and the
resource is not over its admission estimate: ``inFlight <= 1`` or
``inFlight <= maxSuccessQps * minRt / 1000`` (Little's law on the resource's 1 s window of
completions; Sentinel's BBR). Only inbound entries are checked.

Several rules of one metric on a resource merge into the lowest threshold (Sentinel's system rule
manager takes the minimum); on a tie, NONE wins over BBR (it is the stricter).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from opensergo.common.stats import Window
from opensergo.governance.errors import BlockedError, OverloadedError
from opensergo.governance.faulttolerance.ref import RuleRef

if TYPE_CHECKING:
    from pathlib import Path  # imported when a sampler starts: the guard API does not need it

    from opensergo.governance.faulttolerance.compiling import Compilation
    from opensergo.governance.faulttolerance.node import ResourceNode
    from opensergo.spec.faulttolerance import AdaptiveOverloadProtectionStrategy

log = logging.getLogger("opensergo.governance")

NOT_SAMPLED = -1.0


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _cgroup_paths(lines: list[str]) -> tuple[dict[str, str], str | None]:
    """From /proc/self/cgroup: the v1 path of each controller, and the v2 path (if any)."""
    v1: dict[str, str] = {}
    v2_path: str | None = None
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":
            v2_path = path
        for name in controllers.split(","):
            v1[name] = path
    return v1, v2_path


def _pick(base: Path, rel: str, marker: str) -> Path | None:
    """The cgroup directory holding ``marker``: this process's own, else the mount's root."""
    for candidate in (base / rel.lstrip("/"), base):
        if (candidate / marker).exists():
            return candidate
    return None


def _cgroup_dirs() -> tuple[Path | None, Path | None, bool]:
    """(cpu controller dir, cpu accounting dir, is_v2) for this process, or Nones."""
    from pathlib import Path

    root = Path("/sys/fs/cgroup")
    try:
        v1, v2_path = _cgroup_paths(Path("/proc/self/cgroup").read_text().splitlines())
    except OSError:
        return None, None, False
    if "cpuacct" in v1 or "cpu" in v1:
        cpu = _pick(root / "cpu", v1.get("cpu", "/"), "cpu.cfs_quota_us")
        acct = _pick(root / "cpuacct", v1.get("cpuacct", "/"), "cpuacct.usage")
        if acct is not None:
            return cpu, acct, False
    if v2_path is not None:
        d = _pick(root, v2_path, "cpu.stat")
        if d is not None:
            return d, d, True
    return None, None, False


class CpuUsageReader:
    """CPU usage since the previous call, as a fraction of the CPUs this process may use."""

    def __init__(self) -> None:
        self._cpu_dir, self._acct_dir, self._v2 = _cgroup_dirs()
        self._prev: tuple[int, int, int | None] | None = None  # (wall ns, process ns, group ns)
        self._prev_stat: tuple[int, int] | None = None

    def cores(self) -> float:
        quota: float | None = None
        if self._cpu_dir is not None:
            if self._v2:
                try:
                    q, p = (self._cpu_dir / "cpu.max").read_text().split()[:2]
                    if q != "max":
                        quota = int(q) / int(p)
                except (OSError, ValueError):
                    quota = None
            else:
                q1 = _read_int(self._cpu_dir / "cpu.cfs_quota_us")
                p1 = _read_int(self._cpu_dir / "cpu.cfs_period_us")
                if q1 is not None and p1 and q1 > 0:
                    quota = q1 / p1
        try:
            available = float(len(os.sched_getaffinity(0)))
        except (AttributeError, OSError):
            available = float(os.cpu_count() or 1)
        return min(quota, available) if quota else available

    def _group_ns(self) -> int | None:
        if self._acct_dir is not None:
            if self._v2:
                try:
                    for line in (self._acct_dir / "cpu.stat").read_text().splitlines():
                        key, _, value = line.partition(" ")
                        if key == "usage_usec":
                            return int(value) * 1000
                except (OSError, ValueError):
                    return None
                return None
            return _read_int(self._acct_dir / "cpuacct.usage")
        return None

    @staticmethod
    def _proc_stat() -> tuple[int, int] | None:
        """(busy, total) jiffies of the whole machine."""
        try:
            with open("/proc/stat") as stat:
                fields = stat.read().splitlines()[0].split()[1:]
            values = [int(v) for v in fields]
        except (OSError, ValueError, IndexError):
            return None
        idle = values[3] + (values[4] if len(values) > 4 else 0)
        total = sum(values[:8])
        return total - idle, total

    def __call__(self) -> float:
        wall = time.monotonic_ns()
        t = os.times()
        proc = int((t.user + t.system) * 1e9)
        group = self._group_ns()
        stat = None if group is not None else self._proc_stat()
        prev = self._prev
        self._prev = (wall, proc, group)
        prev_stat = self._prev_stat
        self._prev_stat = stat
        if prev is None or wall <= prev[0]:
            return NOT_SAMPLED
        elapsed = wall - prev[0]
        cores = self.cores()
        usage = (proc - prev[1]) / elapsed / cores
        if group is not None and prev[2] is not None:
            usage = max(usage, (group - prev[2]) / elapsed / cores)
        elif stat is not None and prev_stat is not None and stat[1] > prev_stat[1]:
            usage = max(usage, (stat[0] - prev_stat[0]) / (stat[1] - prev_stat[1]))
        return min(1.0, max(0.0, usage))


def read_load1() -> float:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return NOT_SAMPLED


class SystemSampler:
    """CPU usage and load average, refreshed every ``interval_s`` by a daemon thread.

    ``cpu`` and ``load`` read -1 until measured. Tests pass their own readers and call
    :meth:`sample` by hand instead of starting the thread.
    """

    def __init__(
        self,
        *,
        interval_s: float = 1.0,
        read_cpu: Callable[[], float] | None = None,
        read_load: Callable[[], float] | None = None,
    ) -> None:
        self.interval_s = interval_s
        self.cpu = NOT_SAMPLED
        self.load = NOT_SAMPLED
        self._read_cpu = read_cpu if read_cpu is not None else CpuUsageReader()
        self._read_load = read_load if read_load is not None else read_load1
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._guard = threading.Lock()

    def sample(self) -> None:
        try:
            self.cpu = float(self._read_cpu())
        except Exception:  # a broken reader must not kill the sampler
            log.exception("CPU usage sampling failed")
        try:
            self.load = float(self._read_load())
        except Exception:
            log.exception("load average sampling failed")

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        with self._guard:
            if self.running:
                return
            self._stop = threading.Event()
            stop = self._stop
            self._thread = threading.Thread(
                target=self._run, args=(stop,), name="opensergo-system-sampler", daemon=True
            )
            self._thread.start()

    def _run(self, stop: threading.Event) -> None:
        self.sample()  # primes the CPU delta; the first real value comes one interval later
        while not stop.wait(self.interval_s):
            self.sample()

    def stop(self) -> None:
        with self._guard:
            thread, self._thread = self._thread, None
            self._stop.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)


class AdaptiveCheck:
    """The merged adaptive rules of one resource (inbound entries only)."""

    __slots__ = (
        "cpu_bbr",
        "cpu_ref",
        "cpu_threshold",
        "load_bbr",
        "load_ref",
        "load_threshold",
        "sampler",
        "window",
    )

    def __init__(self, sampler: SystemSampler, window: Window) -> None:
        self.sampler = sampler
        self.window = window
        self.cpu_ref: RuleRef | None = None
        self.cpu_threshold = 0.0
        self.cpu_bbr = False
        self.load_ref: RuleRef | None = None
        self.load_threshold = 0.0
        self.load_bbr = False

    def add(self, strategy: AdaptiveOverloadProtectionStrategy, ref: RuleRef) -> None:
        # The spec models (pydantic) are imported with the first rules, not with this module.
        from opensergo.spec.faulttolerance import AdaptiveMetricType, AdaptiveStrategy

        spec = strategy.spec
        threshold = float(spec.triggerThreshold)
        bbr = spec.adaptiveStrategy is AdaptiveStrategy.BBR
        if spec.metricType is AdaptiveMetricType.CPU_PERCENTAGE:
            if (
                self.cpu_ref is None
                or threshold < self.cpu_threshold
                or (threshold == self.cpu_threshold and self.cpu_bbr and not bbr)
            ):
                self.cpu_ref, self.cpu_threshold, self.cpu_bbr = ref, threshold, bbr
        elif (
            self.load_ref is None
            or threshold < self.load_threshold
            or (threshold == self.load_threshold and self.load_bbr and not bbr)
        ):
            self.load_ref, self.load_threshold, self.load_bbr = ref, threshold, bbr

    @property
    def uses_bbr(self) -> bool:
        return (self.cpu_ref is not None and self.cpu_bbr) or (self.load_ref is not None and self.load_bbr)

    def bbr_ok(self, now: int, threads: int) -> bool:
        """BBR's admission: ``threads`` (the requests in flight, this one not counted) within
        ``maxSuccessQps * minRt``."""
        if threads <= 1:
            return True
        w = self.window
        return threads <= w.max_success_per_second(now) * w.min_rt_ms(now) / 1000

    def refusal(self, now: int, in_flight: int) -> BlockedError | None:
        """None to pass, else the refusal by the first refusing metric (load, then CPU);
        ``in_flight`` counts the other requests of the resource in flight."""
        sampler = self.sampler
        ref = self.load_ref
        if ref is not None:
            load = sampler.load
            if load > self.load_threshold and not (self.load_bbr and self.bbr_ok(now, in_flight)):
                return OverloadedError.from_ref(ref, f"load {load:.2f} > {self.load_threshold:g}")
        ref = self.cpu_ref
        if ref is not None:
            cpu = sampler.cpu
            if cpu > self.cpu_threshold and not (self.cpu_bbr and self.bbr_ok(now, in_flight)):
                return OverloadedError.from_ref(ref, f"cpu {cpu:.2f} > {self.cpu_threshold:g}")
        return None


def compile_check(
    strategies: Sequence[tuple[AdaptiveOverloadProtectionStrategy, RuleRef]],
    node: ResourceNode,
    build: Compilation,
) -> AdaptiveCheck | None:
    """The merged adaptive rules of one resource (None: none applies)."""
    if not strategies:
        return None
    check = AdaptiveCheck(build.system_sampler(), node.metrics_window())
    for strategy, ref in strategies:
        check.add(strategy, ref)
    return check

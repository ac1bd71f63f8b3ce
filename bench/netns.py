"""Low-level pieces of the testbed: commands, network namespaces, tc tbf, the robot's CPU cgroup.

Everything here shells out to iproute2 (``ip``, ``tc``) or writes cgroup files, so it needs root. Every removal
is idempotent (a missing namespace or cgroup is not an error), because teardown runs after partial setups and
``python -m bench.testbed cleanup`` runs after crashes.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

NETNS_DIR = Path("/run/netns")
CGROUP_ROOT = Path("/sys/fs/cgroup")
_CLONE_NEWNET = 0x40000000

CgroupKind = Literal["v1", "v2"]


class TestbedError(RuntimeError):
    """A testbed command failed."""


class TestbedUnavailable(TestbedError):
    """This machine cannot host the testbed (not root, no iproute2, no cpu cgroup controller)."""


def sh(*argv: str, check: bool = True) -> str:
    """Run a command, return its stdout; a failure raises TestbedError with the command's stderr."""
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise TestbedError(f"`{' '.join(argv)}` failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


# --- network namespaces ---------------------------------------------------------------------------------------


def netns_exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def list_netns() -> list[str]:
    if not NETNS_DIR.is_dir():
        return []
    return sorted(p.name for p in NETNS_DIR.iterdir())


def netns_pids(name: str) -> list[int]:
    if not netns_exists(name):
        return []
    return [int(p) for p in sh("ip", "netns", "pids", name, check=False).split()]


def delete_netns(name: str) -> None:
    """Kill whatever still runs in the namespace, then delete it (deleting it also removes its veth end)."""
    for pid in netns_pids(name):
        kill_pid(pid, signal.SIGKILL)
    if netns_exists(name):
        sh("ip", "netns", "del", name, check=False)


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, _CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"setns failed: {os.strerror(errno)}")


@contextmanager
def inside_netns(name: str | None) -> Iterator[None]:
    """Move the calling thread (only it: a network namespace is per thread) into ``name`` and back.

    Threads started inside inherit the namespace, so a ThreadPoolExecutor created in the block talks from there.
    ``None`` stays where it is (the loopback runs use the same code without namespaces).
    """
    if name is None:
        yield
        return
    with open("/proc/thread-self/ns/net", "rb") as home, open(NETNS_DIR / name, "rb") as target:
        _setns(target.fileno())
        try:
            yield
        finally:
            _setns(home.fileno())


# --- tc tbf ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shaper:
    """A tbf qdisc on one veth end; ``rate_mbit=None`` means no qdisc (the veth's own speed)."""

    netns: str
    dev: str
    burst: str
    latency: str

    def apply(self, rate_mbit: float | None, current: float | None) -> None:
        base = ("ip", "netns", "exec", self.netns, "tc", "qdisc")
        if rate_mbit is None:
            if current is not None:
                sh(*base, "del", "dev", self.dev, "root")
            return
        # `change` keeps the qdisc (and the services' open connections) and only swaps the rate.
        verb = "add" if current is None else "change"
        sh(
            *base,
            verb,
            "dev",
            self.dev,
            "root",
            "tbf",
            "rate",
            f"{rate_mbit:g}mbit",
            "burst",
            self.burst,
            "latency",
            self.latency,
        )

    def show(self) -> str:
        return sh("ip", "netns", "exec", self.netns, "tc", "qdisc", "show", "dev", self.dev, check=False).strip()


def qdisc_drops(netns: str, dev: str) -> int:
    """Packets the root qdisc of ``dev`` dropped so far (tbf drops what overflows its ``latency`` worth of queue)."""
    qdiscs = json.loads(sh("ip", "netns", "exec", netns, "tc", "-s", "-j", "qdisc", "show", "dev", dev) or "[]")
    return sum(int(q.get("drops", 0)) for q in qdiscs if q.get("root"))


def link_bytes(netns: str, dev: str) -> tuple[int, int]:
    """(tx, rx) byte counters of one interface, frames as the link carries them (IP, TCP and HTTP included)."""
    info = json.loads(sh("ip", "-n", netns, "-s", "-j", "link", "show", "dev", dev))
    stats = info[0]["stats64"]
    return int(stats["tx"]["bytes"]), int(stats["rx"]["bytes"])


# --- CPU cgroup -----------------------------------------------------------------------------------------------


def detect_cgroup() -> CgroupKind | None:
    """v1 when a cpu controller hierarchy is mounted at /sys/fs/cgroup/cpu, v2 when the unified root offers cpu."""
    if (CGROUP_ROOT / "cpu" / "cpu.cfs_quota_us").exists():
        return "v1"
    controllers = CGROUP_ROOT / "cgroup.controllers"
    if controllers.exists() and "cpu" in controllers.read_text().split():
        return "v2"
    return None


@dataclass(frozen=True)
class BenchCgroups:
    """``<name>/`` weighted above ordinary processes, holding ``main`` (this process and its children: the edge,
    the splitter, the loopback stack) and ``robot`` (capped at ``robot_percent`` of one core).

    The cap alone is only an upper bound: on a machine that others load too (a shared 2-core VM) the robot would
    get less than its quota and the edge less than its cores, and every figure would measure the neighbours. The
    weight (``shares``, 1024 = one ordinary process) makes the benchmark's processes win that contest, so the
    robot really gets its X% and the edge what is left; ``shares=1024`` turns it off.

    The period is 10 ms, not CFS's usual 100 ms: the quota is granted per period, so with 100 ms a robot that sat
    idle (waiting on a slow link) runs the next 50 ms of work at full speed, and its compute time came out 40%
    lower at 2 Mbit/s than at 200 Mbit/s for the same head. A short period makes it a uniformly slower core.
    """

    name: str
    kind: CgroupKind
    robot_percent: float
    period_us: int = 10_000
    shares: int = 32768

    @property
    def top(self) -> Path:
        return cgroup_path(self.kind, self.name)

    @property
    def main(self) -> Path:
        return self.top / "main"

    @property
    def robot(self) -> Path:
        return self.top / "robot"

    @property
    def quota_us(self) -> int:
        return max(1000, round(self.period_us * self.robot_percent / 100.0))

    def create(self) -> None:
        if self.kind == "v2":
            _enable_cpu(CGROUP_ROOT)
        self.top.mkdir(exist_ok=True)
        if self.kind == "v1":
            (self.top / "cpu.shares").write_text(str(self.shares))
        else:
            (self.top / "cpu.weight").write_text(str(min(10000, max(1, round(self.shares * 100 / 1024)))))
            _enable_cpu(self.top)  # cgroup v2: children get the controller only through the parent
        self.main.mkdir(exist_ok=True)
        self.robot.mkdir(exist_ok=True)
        if self.kind == "v1":
            (self.robot / "cpu.cfs_period_us").write_text(str(self.period_us))
            (self.robot / "cpu.cfs_quota_us").write_text(str(self.quota_us))
        else:
            (self.robot / "cpu.max").write_text(f"{self.quota_us} {self.period_us}")

    def enter(self) -> None:
        """Move this process into ``main``; every process it starts from now on is born there."""
        (self.main / "cgroup.procs").write_text(str(os.getpid()))

    def wrap_robot(self, argv: list[str]) -> list[str]:
        """``argv`` run so that it is in ``robot`` from its first instruction (the shell joins, then execs)."""
        return ["sh", "-c", 'echo $$ > "$0" && exec "$@"', str(self.robot / "cgroup.procs"), *argv]

    def robot_members(self) -> list[int]:
        return cgroup_members(self.robot)

    def robot_stat(self) -> dict[str, int]:
        """cpu.stat of the robot: how often and how long the quota throttled it (proof the cap bit)."""
        path = self.robot / "cpu.stat"
        if not path.exists():
            return {}
        pairs = (line.split() for line in path.read_text().splitlines())
        return {key: int(value) for key, value in pairs}

    def remove(self) -> None:
        remove_cgroup_tree(self.kind, self.name)


def _enable_cpu(path: Path) -> None:
    control = path / "cgroup.subtree_control"
    if "cpu" not in control.read_text().split():
        control.write_text("+cpu")


def cgroup_path(kind: CgroupKind, name: str) -> Path:
    return CGROUP_ROOT / "cpu" / name if kind == "v1" else CGROUP_ROOT / name


def cgroup_members(path: Path) -> list[int]:
    procs = path / "cgroup.procs"
    if not procs.exists():
        return []
    return [int(p) for p in procs.read_text().split()]


def remove_cgroup_tree(kind: CgroupKind, name: str) -> None:
    """Leave it (if this process is inside), kill the other members, rmdir children then the top. Idempotent."""
    top = cgroup_path(kind, name)
    if not top.exists():
        return
    root_procs = cgroup_path(kind, "cgroup.procs")
    for child in [*sorted(p for p in top.iterdir() if p.is_dir()), top]:
        for pid in cgroup_members(child):
            if pid == os.getpid():
                root_procs.write_text(str(pid))
            else:
                kill_pid(pid, signal.SIGKILL)
        _rmdir_when_empty(child)


def _rmdir_when_empty(path: Path) -> None:
    """rmdir fails with EBUSY until the last member has really exited, a moment after SIGKILL."""
    deadline = time.monotonic() + 10.0
    while True:
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


# --- processes ------------------------------------------------------------------------------------------------


def kill_pid(pid: int, sig: signal.Signals) -> None:
    with suppress(ProcessLookupError):
        os.kill(pid, sig)


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs; a zombie (killed, not yet reaped by its parent) counts as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def missing_prerequisites() -> list[str]:
    """What keeps this machine from hosting the testbed; empty when it can."""
    problems = []
    if os.geteuid() != 0:
        problems.append("the testbed must run as root (network namespaces, tc and cgroups need it)")
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            problems.append(f"`{tool}` is missing: install iproute2")
    if detect_cgroup() is None:
        problems.append("no cgroup cpu controller: neither /sys/fs/cgroup/cpu (v1) nor cpu in cgroup.controllers (v2)")
    return problems

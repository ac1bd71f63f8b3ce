"""The emulated robot-edge link: two network namespaces joined by a veth pair, capped by tc tbf.

::

    ns <tag>-robot                                  ns <tag>-edge
      robot_inference  10.77.0.1:8001  ---veth---   10.77.0.2:8002  edge_inference
      (cpu cgroup: X% of one core)     tbf R Mbit/s 10.77.0.2:8000  model_splitter
      bench clients (threads moved in with setns)

The services start exactly as ``tools.local_stack`` starts them on loopback (``python -m <package>``,
configured only by environment), prefixed by ``ip netns exec`` and, for the robot, by a shell that joins the cgroup
before it execs. The splitter sits beside the edge, so bundles reach the robot over the same veth: deploys run with
the link uncapped. All names carry ``sbb<pid>`` so that concurrent runs do not collide and ``cleanup`` can tell a
crashed run's leftovers (owner pid gone) from a live one.

``python -m bench.testbed up`` builds it and waits for Ctrl-C; ``python -m bench.testbed cleanup`` removes leftovers.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType

from bench.netns import (
    BenchCgroups,
    Shaper,
    TestbedError,
    TestbedUnavailable,
    cgroup_path,
    delete_netns,
    detect_cgroup,
    inside_netns,
    link_bytes,
    list_netns,
    missing_prerequisites,
    pid_alive,
    qdisc_drops,
    remove_cgroup_tree,
    sh,
)
from tools.local_stack import STARTUP_TIMEOUT_S, ServiceProcess

PREFIX = "sbb"
ROBOT_IP = "10.77.0.1"
EDGE_IP = "10.77.0.2"
SUBNET_BITS = 30
SPLITTER_PORT, ROBOT_PORT, EDGE_PORT = 8000, 8001, 8002
_OWNED = re.compile(rf"^{PREFIX}(\d+)")


@dataclass(frozen=True)
class TestbedConfig:
    robot_cpu_percent: float = 50.0
    cpu_period_us: int = 10_000
    cpu_shares: int = 32768
    burst: str = "32kbit"
    tbf_latency: str = "50ms"
    robot_threads: int = 1
    edge_threads: int = 2
    allow_spinning: bool = False
    python: str = sys.executable
    keep_data: bool = False


@dataclass(frozen=True)
class Names:
    tag: str

    @classmethod
    def for_pid(cls, pid: int) -> Names:
        return cls(f"{PREFIX}{pid}")

    @property
    def robot_ns(self) -> str:
        return f"{self.tag}-robot"

    @property
    def edge_ns(self) -> str:
        return f"{self.tag}-edge"

    @property
    def robot_veth(self) -> str:  # interface names are limited to 15 characters
        return f"{self.tag}r"

    @property
    def edge_veth(self) -> str:
        return f"{self.tag}e"


@dataclass
class NamespacedService(ServiceProcess):
    """A ServiceProcess started inside a network namespace, optionally inside a CPU cgroup."""

    netns: str = ""
    cgroups: BenchCgroups | None = None

    def start(self, python: str) -> None:
        import subprocess

        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        argv = ["ip", "netns", "exec", self.netns, python, "-m", self.module]
        if self.cgroups is not None:
            argv = self.cgroups.wrap_robot(argv)
        with open(self.log_path, "ab") as log:
            # `ip netns exec` and the cgroup shell both exec, so the pid we hold is the service's own.
            self.process = subprocess.Popen(
                argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def wait_healthy(self, deadline: float) -> None:
        with inside_netns(self.netns):
            super().wait_healthy(deadline)


@dataclass
class Testbed:
    config: TestbedConfig = field(default_factory=TestbedConfig)
    names: Names = field(default_factory=lambda: Names.for_pid(os.getpid()))
    data_dir: Path | None = None
    rate_mbit: float | None = None
    services: dict[str, NamespacedService] = field(default_factory=dict)
    cgroups: BenchCgroups | None = None
    _created_data_dir: bool = False
    _own_cgroups: bool = False

    splitter_url = f"http://{EDGE_IP}:{SPLITTER_PORT}"
    robot_url = f"http://{ROBOT_IP}:{ROBOT_PORT}"
    edge_url = f"http://{EDGE_IP}:{EDGE_PORT}"

    # --- lifecycle --------------------------------------------------------------------------------------------

    def __enter__(self) -> Testbed:
        try:
            self.up()
        except BaseException as exc:
            if not isinstance(exc, (KeyboardInterrupt, TestbedUnavailable)):
                self.print_logs()
            self.down()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        if error is not None and not isinstance(error, KeyboardInterrupt):
            self.print_logs()
        self.down()

    def up(self) -> None:
        problems = missing_prerequisites()
        if problems:
            raise TestbedUnavailable("cannot build the robot-edge testbed:\n  " + "\n  ".join(problems))
        if self.data_dir is None:
            self.data_dir = Path(tempfile.mkdtemp(prefix=f"{self.names.tag}-"))
            self._created_data_dir = True
        try:
            self._build_link()
        except TestbedError as exc:  # EPERM without CAP_NET_ADMIN / CAP_SYS_ADMIN, e.g. in an unprivileged container
            raise TestbedUnavailable(f"cannot build the robot-edge link: {exc}") from exc
        if self.cgroups is None:
            self.cgroups = make_cgroups(self.names.tag, self.config)
            self.cgroups.enter()  # the edge and the splitter are born weighted like the robot
            self._own_cgroups = True
        self.start_services()

    def _build_link(self) -> None:
        n = self.names
        for ns in (n.robot_ns, n.edge_ns):
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "link", "add", n.robot_veth, "type", "veth", "peer", "name", n.edge_veth)
        for ns, dev, ip in ((n.robot_ns, n.robot_veth, ROBOT_IP), (n.edge_ns, n.edge_veth, EDGE_IP)):
            sh("ip", "link", "set", dev, "netns", ns)
            sh("ip", "-n", ns, "addr", "add", f"{ip}/{SUBNET_BITS}", "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")

    @property
    def shapers(self) -> tuple[Shaper, Shaper]:
        n, c = self.names, self.config
        return (
            Shaper(n.robot_ns, n.robot_veth, c.burst, c.tbf_latency),
            Shaper(n.edge_ns, n.edge_veth, c.burst, c.tbf_latency),
        )

    def set_rate(self, rate_mbit: float | None) -> None:
        """Cap both directions at ``rate_mbit`` (None: uncapped). The services keep running."""
        if rate_mbit == self.rate_mbit:
            return
        for shaper in self.shapers:
            shaper.apply(rate_mbit, self.rate_mbit)
        self.rate_mbit = rate_mbit

    def link_counters(self) -> tuple[int, int, int]:
        """Bytes the robot's veth end sent (to the edge) and received so far, and packets tbf dropped both ways."""
        n = self.names
        up, down = link_bytes(n.robot_ns, n.robot_veth)
        return up, down, qdisc_drops(n.robot_ns, n.robot_veth) + qdisc_drops(n.edge_ns, n.edge_veth)

    # --- services ---------------------------------------------------------------------------------------------

    def _env(self, prefix: str, values: dict[str, str]) -> dict[str, str]:
        env = dict(os.environ)
        env.update({f"{prefix}_{key.upper()}": value for key, value in values.items()})
        return env

    def _build_services(self) -> dict[str, NamespacedService]:
        assert self.data_dir is not None
        n, c, logs = self.names, self.config, self.data_dir / "logs"
        spin = "true" if c.allow_spinning else "false"
        common = {"providers": "cpu", "allow_spinning": spin, "splitter_url": self.splitter_url}
        edge_env = {
            "host": EDGE_IP,
            "port": str(EDGE_PORT),
            "data_dir": str(self.data_dir / "edge"),
            "intra_op_threads": str(c.edge_threads),
            **common,
        }
        robot_env = {
            "host": ROBOT_IP,
            "port": str(ROBOT_PORT),
            "data_dir": str(self.data_dir / "robot"),
            "intra_op_threads": str(c.robot_threads),
            "edge_url": self.edge_url,
            # A 4-bit conv1 cut of resnet50 at 2 Mbit/s takes seconds: don't let the default 10 s bite.
            "edge_timeout_s": "120",
            **common,
        }
        splitter_env = {
            "host": EDGE_IP,
            "port": str(SPLITTER_PORT),
            "data_dir": str(self.data_dir / "splitter"),
            "robot_url": self.robot_url,
            "edge_url": self.edge_url,
        }
        return {
            "edge": NamespacedService(
                "edge", "edge_inference", self.edge_url, self._env("EDGE", edge_env), logs / "edge.log", netns=n.edge_ns
            ),
            "robot": NamespacedService(
                "robot",
                "robot_inference",
                self.robot_url,
                self._env("ROBOT", robot_env),
                logs / "robot.log",
                netns=n.robot_ns,
                cgroups=self.cgroups,
            ),
            "splitter": NamespacedService(
                "splitter",
                "model_splitter",
                self.splitter_url,
                self._env("SPLITTER", splitter_env),
                logs / "splitter.log",
                netns=n.edge_ns,
            ),
        }

    def start_services(self, which: tuple[str, ...] = ("edge", "robot", "splitter")) -> None:
        built = self._build_services()
        for name in which:
            self.services[name] = built[name]
            built[name].start(self.config.python)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        for name in which:
            self.services[name].wait_healthy(deadline)
        pid = self.robot_pid()
        cgroups = self.cgroups
        if "robot" in which and pid is not None and cgroups is not None and pid not in cgroups.robot_members():
            raise TestbedError(f"the robot (pid {pid}) is not in cgroup {cgroups.robot}")

    def restart_runtime(self) -> None:
        """Fresh robot and edge (empty bundle stores), so one model's sessions don't pile onto the next's."""
        assert self.data_dir is not None
        for name in ("robot", "edge"):
            service = self.services.pop(name, None)
            if service is not None:
                service.stop()
            shutil.rmtree(self.data_dir / name, ignore_errors=True)
        self.start_services(("edge", "robot"))

    def robot_pid(self) -> int | None:
        robot = self.services.get("robot")
        return robot.process.pid if robot is not None and robot.process is not None else None

    def print_logs(self) -> None:
        for service in self.services.values():
            print(f"--- {service.name} log ({service.log_path}) ---\n{service.log_tail()}", file=sys.stderr)

    def down(self) -> None:
        """Stop the services, delete the namespaces (and with them the veth pair), remove the cgroup. Idempotent."""
        with signals_ignored():
            for service in reversed(list(self.services.values())):
                try:
                    service.stop()
                except Exception as exc:  # teardown goes on whatever one step does
                    print(f"stopping {service.name}: {exc}", file=sys.stderr)
            self.services.clear()
            remove_leftovers(self.names.tag, cgroups=self._own_cgroups)
            self.rate_mbit = None
            if self._created_data_dir and self.data_dir is not None and not self.config.keep_data:
                shutil.rmtree(self.data_dir, ignore_errors=True)


def make_cgroups(tag: str, config: TestbedConfig) -> BenchCgroups:
    kind = detect_cgroup()
    if kind is None:
        raise TestbedUnavailable("no cgroup cpu controller (see bench.netns.missing_prerequisites)")
    cgroups = BenchCgroups(tag, kind, config.robot_cpu_percent, config.cpu_period_us, config.cpu_shares)
    try:
        cgroups.create()
    except OSError as exc:  # root without CAP_SYS_ADMIN, a read-only cgroupfs
        remove_cgroup_tree(kind, tag)
        raise TestbedUnavailable(f"cannot create the CPU cgroups: {exc}") from exc
    return cgroups


def remove_leftovers(tag: str, cgroups: bool = True) -> list[str]:
    """Everything named ``tag``: namespaces (and processes in them), veths, cgroups; returns what went."""
    removed = []
    for ns in list_netns():
        if ns in (f"{tag}-robot", f"{tag}-edge"):
            delete_netns(ns)
            removed.append(f"netns {ns}")
    for dev in (f"{tag}r", f"{tag}e"):  # a veth left in the root namespace by a setup that broke halfway
        if sh("ip", "link", "show", "dev", dev, check=False):
            sh("ip", "link", "del", dev, check=False)
            removed.append(f"veth {dev}")
    kind = detect_cgroup()
    if cgroups and kind is not None and cgroup_path(kind, tag).exists():
        remove_cgroup_tree(kind, tag)
        removed.append(f"cgroup {cgroup_path(kind, tag)}")
    return removed


def stale_tags(force: bool = False) -> list[str]:
    """Tags of testbeds whose owner process is gone (all of them with ``force``)."""
    candidates: set[str] = set()
    for ns in list_netns():
        match = _OWNED.match(ns)
        if match:
            candidates.add(f"{PREFIX}{match.group(1)}")
    kind = detect_cgroup()
    if kind is not None and cgroup_path(kind, "x").parent.is_dir():
        for entry in cgroup_path(kind, "x").parent.iterdir():
            match = _OWNED.fullmatch(entry.name)
            if match and entry.is_dir():
                candidates.add(entry.name)
    for dev in sh("ip", "-o", "link", "show", check=False).splitlines():
        match = re.search(rf"\d+: ({PREFIX}(\d+))[re][@:]", dev)
        if match:
            candidates.add(match.group(1))
    return sorted(tag for tag in candidates if force or not pid_alive(int(tag[len(PREFIX) :])))


def cleanup(force: bool = False) -> list[str]:
    removed: list[str] = []
    for tag in stale_tags(force):
        removed.extend(remove_leftovers(tag))
        for leftover in Path(tempfile.gettempdir()).glob(f"{tag}-*"):
            shutil.rmtree(leftover, ignore_errors=True)
            removed.append(f"dir {leftover}")
    return removed


# --- signals --------------------------------------------------------------------------------------------------


@contextmanager
def signals_raise() -> Iterator[None]:
    """SIGTERM and SIGHUP raise KeyboardInterrupt like Ctrl-C does, so every ``finally`` tears down."""

    def _raise(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    # A signal the caller ignores stays ignored (nohup's SIGHUP, SIGINT of a background job); SIGINT, when it is
    # not, already raises KeyboardInterrupt.
    wanted = [signal.SIGTERM] + [s for s in (signal.SIGHUP,) if signal.getsignal(s) is not signal.SIG_IGN]
    previous = {sig: signal.signal(sig, _raise) for sig in wanted}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextmanager
def signals_ignored() -> Iterator[None]:
    """A second Ctrl-C during teardown would leave half a testbed behind: hold signals until it is done."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    sigs = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in sigs}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# --- CLI ------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The emulated robot-edge testbed.")
    sub = parser.add_subparsers(dest="command", required=True)
    clean = sub.add_parser("cleanup", help="remove namespaces, veths, cgroups and temp dirs of crashed runs")
    clean.add_argument("--force", action="store_true", help="also those of runs whose owner process still lives")
    up = sub.add_parser("up", help="build the testbed, start the services, wait for Ctrl-C")
    up.add_argument("--rate", type=float, default=None, help="Mbit/s (default: uncapped)")
    up.add_argument("--robot-cpu", type=float, default=50.0, help="percent of one core for the robot")
    args = parser.parse_args(argv)
    if args.command == "cleanup":
        removed = cleanup(force=args.force)
        print("\n".join(removed) if removed else "nothing to clean up")
        return 0
    try:
        with signals_raise(), Testbed(TestbedConfig(robot_cpu_percent=args.robot_cpu)) as bed:
            bed.set_rate(args.rate)
            print(
                f"robot {bed.robot_url} in netns {bed.names.robot_ns}; edge {bed.edge_url}, splitter "
                f"{bed.splitter_url} in netns {bed.names.edge_ns}; link {args.rate or 'uncapped'} Mbit/s. "
                f"Try: ip netns exec {bed.names.robot_ns} curl {bed.robot_url}/health   Ctrl-C stops.",
                flush=True,
            )
            while True:
                time.sleep(1.0)
    except KeyboardInterrupt:
        print("stopped; testbed removed.")
    except TestbedUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

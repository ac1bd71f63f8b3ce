"""Benchmarks of the three services on an emulated robot-edge link (``make bench``, ``make bench-quick``).

``bench.run`` is the entry point; ``bench.testbed`` builds the link (network namespaces, veth, tc tbf, a CPU
cgroup for the robot) and ``python -m bench.testbed cleanup`` removes what a crashed run left behind.
"""

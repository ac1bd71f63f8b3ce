"""Container HEALTHCHECK for one service: exit 0 when ``GET /health/live`` on its own port answers 200.

``python healthcheck.py ROBOT`` asks ``http://127.0.0.1:$ROBOT_PORT/health/live`` (8001 if unset); standard library
only, so the images need neither curl nor wget. Liveness, not readiness: compose starts the robot once the edge is
healthy, and the edge holds a split only after the splitter deploys one, so "ready" here would never come.
``/health/ready`` is for load balancers and Kubernetes readiness probes (docs/deployment.md).
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

DEFAULT_PORTS = {"SPLITTER": 8000, "ROBOT": 8001, "EDGE": 8002}


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[1] not in DEFAULT_PORTS:
        print(f"usage: {argv[0]} {'|'.join(DEFAULT_PORTS)}", file=sys.stderr)
        return 2
    prefix = argv[1]
    port = os.environ.get(f"{prefix}_PORT") or str(DEFAULT_PORTS[prefix])
    url = f"http://127.0.0.1:{port}/health/live"
    try:
        with urllib.request.urlopen(url, timeout=8.0) as response:
            status = response.status
    except (urllib.error.URLError, OSError) as error:
        print(f"{url}: {error}", file=sys.stderr)
        return 1
    if status != 200:
        print(f"{url}: HTTP {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

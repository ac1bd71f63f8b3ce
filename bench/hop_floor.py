"""What one loopback hop costs before any of our code runs: a bare ASGI server, three clients, warm and after idle.

    python -m bench.hop_floor [--requests 300] [--idle-ms 0,20] [--out bench/results/hop-floor-<date>-<host>.json]

A bare ASGI app under uvicorn (uvloop, httptools, websockets: what the services run on) answers every POST and
every WebSocket message with the length of the body it got. The benchmark sends 50,278 bytes (a resnet18
``layer2.0.add`` frame at 4 bits) from ``http.client`` (the benchmark's camera), ``httpx`` (what the services use
between each other) and a ``websockets`` sync client (the robot's frame socket), each request after ``idle-ms`` of
sleep. With 0 the server's CPU is warm; with 20 ms, about what a process waits while the other side computes in
the loopback overhead runs, it has gone idle and its caches cold, as it has on every hop of a real request.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import connect

from tools.local_stack import free_port

REPO = Path(__file__).resolve().parents[1]
BODY_BYTES = 50_278
Message = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[Message], Any]


async def echo_app(scope: Message, receive: Receive, send: Send) -> None:
    """Answers the length of what it received; nothing else (no routing, no middleware)."""
    if scope["type"] == "lifespan":
        await receive()  # lifespan.startup
        await send({"type": "lifespan.startup.complete"})
        await receive()  # lifespan.shutdown
        await send({"type": "lifespan.shutdown.complete"})
    elif scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        while (message := await receive())["type"] == "websocket.receive":
            await send({"type": "websocket.send", "text": str(len(message.get("bytes") or b""))})
    else:
        size = 0
        while True:
            message = await receive()
            size += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        answer = str(size).encode()
        headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(answer)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": answer})


def _median_ms(call: Callable[[], None], requests: int, idle_s: float) -> float:
    for _ in range(10):
        call()
    times = []
    for _ in range(requests):
        time.sleep(idle_s)
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000.0)
    return round(statistics.median(times), 3)


def _check(answer: bytes, expected: bytes) -> None:
    if answer != expected:
        raise RuntimeError(f"the echo server answered {answer[:50]!r}, not {expected!r}")


def measure(requests: int, idle_ms: list[float]) -> list[dict[str, Any]]:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "bench.hop_floor:echo_app", "--port", str(port), "--log-level", "warning"],
        cwd=REPO,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("the echo server did not start") from None
                time.sleep(0.1)
        body = b"x" * BODY_BYTES
        echoed = str(BODY_BYTES).encode()
        headers = {"content-type": "application/octet-stream"}
        stdlib = http.client.HTTPConnection("127.0.0.1", port)
        pooled = httpx.Client(base_url=f"http://127.0.0.1:{port}")

        def with_stdlib() -> None:
            stdlib.request("POST", "/", body=body, headers=headers)
            _check(stdlib.getresponse().read(), echoed)

        def with_httpx() -> None:
            _check(pooled.post("/", content=body, headers=headers).content, echoed)

        rows = []
        with connect(f"ws://127.0.0.1:{port}/", compression=None, max_size=None) as frames:

            def with_socket() -> None:
                frames.send(body)
                _check(str(frames.recv()).encode(), echoed)

            clients = {"http.client": with_stdlib, "httpx": with_httpx, "websocket": with_socket}
            for idle in idle_ms:
                for name, call in clients.items():
                    rows.append({"client": name, "idle_ms": idle, "p50_ms": _median_ms(call, requests, idle / 1000)})
        stdlib.close()
        pooled.close()
        return rows
    finally:
        server.terminate()
        server.wait(timeout=30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--idle-ms", default="0,20", help="sleep before each request, comma list")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    idle = [float(v) for v in args.idle_ms.split(",") if v.strip()]
    rows = measure(args.requests, idle)
    print(f"| client | idle before each request | p50 round trip of {BODY_BYTES:,} bytes, ms |")
    print("| --- | --- | --- |")
    for row in rows:
        print(f"| {row['client']} | {row['idle_ms']:g} ms | {row['p50_ms']:.3f} |")
    stem = f"hop-floor-{dt.date.today().isoformat()}-{socket.gethostname()}.json"
    out = args.out or REPO / "bench" / "results" / stem
    result = {"host": socket.gethostname(), "started_at": dt.datetime.now().isoformat(timespec="seconds")}
    out.write_text(json.dumps({**result, "body_bytes": BODY_BYTES, "requests": args.requests, "rows": rows}, indent=1))
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmark: clicks per second and latency over real WebSockets, against a bare echo socket.

Starts `flowengine serve` (the embedded store in memory, in a SQLite file with `--data-dir`, or
Redis with `--redis-url`) and, as a baseline in the same run,
a bare Starlette echo WebSocket on the same uvicorn settings. N concurrent clients then click
through the size guide (menu -> answer -> "another category" -> ...), each waiting for the ack
of one click before the next, for a fixed time. Prints clicks/s, p50/p99 latency (send -> ack),
the ratio to the echo baseline, and the server's memory per idle socket.

    python bench/ws_clicks.py [--sessions 50] [--seconds 10] [--idle 500]
                              [--data-dir DIR | --redis-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import websockets
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

ROOT = Path(__file__).resolve().parent.parent
UVICORN = [
    "--ws",
    "websockets-sansio",
    "--ws-per-message-deflate",
    "false",
    "--log-level",
    "warning",
]


async def _echo(ws: WebSocket) -> None:
    await ws.accept()
    try:
        while True:
            await ws.send_text(await ws.receive_text())
    except Exception:
        return


echo_app = Starlette(routes=[WebSocketRoute("/ws", _echo)])


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(port: int, path: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=0.5)
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("server did not start")


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def _flow_client(url: str, until: float, latencies: list[float]) -> int:
    cycle = ["tops", "another", "bottoms", "another", "shoes", "another", "between", "another"]
    clicks = 0
    async with websockets.connect(url, compression=None) as ws:
        await ws.send(json.dumps({"type": "hello", "session": None, "last_seq": 0}))
        while json.loads(await ws.recv())["type"] != "message":
            pass
        await ws.send(json.dumps({"type": "choose", "id": "s", "option": "sizes"}))
        while json.loads(await ws.recv())["type"] != "ack":
            pass
        i = 0
        while time.monotonic() < until:
            frame_id = f"c{i}"
            began = time.perf_counter()
            await ws.send(
                json.dumps({"type": "choose", "id": frame_id, "option": cycle[i % len(cycle)]})
            )
            while True:
                reply = json.loads(await ws.recv())
                if reply["type"] == "ack" and reply["id"] == frame_id:
                    break
                if reply["type"] == "error":
                    raise RuntimeError(reply)
            latencies.append(time.perf_counter() - began)
            clicks += 1
            i += 1
    return clicks


async def _echo_client(url: str, until: float, latencies: list[float]) -> int:
    n = 0
    async with websockets.connect(url, compression=None) as ws:
        while time.monotonic() < until:
            began = time.perf_counter()
            await ws.send(json.dumps({"type": "choose", "id": f"c{n}", "option": "tops"}))
            await ws.recv()
            latencies.append(time.perf_counter() - began)
            n += 1
    return n


async def _load(client, url: str, sessions: int, seconds: float) -> tuple[float, list[float]]:  # type: ignore[no-untyped-def]
    latencies: list[float] = []
    until = time.monotonic() + seconds
    began = time.monotonic()
    counts = await asyncio.gather(*[client(url, until, latencies) for _ in range(sessions)])
    return sum(counts) / (time.monotonic() - began), latencies


async def _idle(url: str, pid: int, count: int, hello: bool) -> float:
    before = _rss_kib(pid)
    sockets = []
    for _ in range(count):
        ws = await websockets.connect(url, compression=None)
        if hello:
            await ws.send(json.dumps({"type": "hello", "session": None, "last_seq": 0}))
            while json.loads(await ws.recv())["type"] != "message":
                pass
        sockets.append(ws)
    await asyncio.sleep(1.0)
    per = (_rss_kib(pid) - before) / count
    await asyncio.gather(*[ws.close() for ws in sockets])
    return per


def _pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] * 1000 if len(values) > 1 else 0.0


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--idle", type=int, default=500)
    parser.add_argument("--redis-url", default=None)
    parser.add_argument("--data-dir", default=None, help="the embedded store in a file there")
    args = parser.parse_args()

    fe_port, echo_port = _port(), _port()
    # One client machine plays many shoppers clicking flat out: lift the per-IP and per-socket
    # limits that protect a real server from one abusive client.
    cmd = [
        sys.executable,
        "-m",
        "flowengine",
        "serve",
        "--port",
        str(fe_port),
        "--log-level",
        "warning",
        "--socket-rate",
        "100000",
        "--ip-rate",
        "1000000",
        "--max-sockets-per-ip",
        "100000",
        "--new-sessions-per-minute",
        "1000000",
    ]
    if args.redis_url:
        cmd += ["--redis-url", args.redis_url]
    elif args.data_dir:
        cmd += ["--data-dir", args.data_dir]
    else:
        cmd += ["--memory"]
    fe = subprocess.Popen(cmd, cwd=ROOT)
    echo = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--app-dir",
            str(ROOT / "bench"),
            "ws_clicks:echo_app",
            "--port",
            str(echo_port),
            *UVICORN,
        ],
        cwd=ROOT,
    )
    try:
        _wait(fe_port, "/healthz")
        _wait(echo_port, "/")
        fe_url, echo_url = f"ws://127.0.0.1:{fe_port}/ws", f"ws://127.0.0.1:{echo_port}/ws"
        echo_rate, echo_lat = await _load(_echo_client, echo_url, args.sessions, args.seconds)
        fe_rate, fe_lat = await _load(_flow_client, fe_url, args.sessions, args.seconds)
        fe_idle = await _idle(fe_url, fe.pid, args.idle, hello=True)
        echo_idle = await _idle(echo_url, echo.pid, args.idle, hello=False)
    finally:
        fe.terminate()
        echo.terminate()
        fe.wait()
        echo.wait()
    store = "redis" if args.redis_url else "SQLite" if args.data_dir else "memory"
    print(f"{args.sessions} concurrent sessions, {args.seconds:.0f} s each, {os.cpu_count()} cores")
    print(
        f"flowengine ({store}): {fe_rate:8,.0f} clicks/s  p50 {_pct(fe_lat, 50):6.2f} ms  "
        f"p99 {_pct(fe_lat, 99):6.2f} ms"
    )
    print(
        f"bare echo socket:       {echo_rate:8,.0f} msgs/s   p50 {_pct(echo_lat, 50):6.2f} ms  "
        f"p99 {_pct(echo_lat, 99):6.2f} ms"
    )
    print(f"flowengine / echo throughput: {fe_rate / echo_rate:.2f}")
    print(
        f"memory per idle socket: flowengine {fe_idle:.1f} KiB (after hello), "
        f"echo {echo_idle:.1f} KiB"
    )


if __name__ == "__main__":
    asyncio.run(main())

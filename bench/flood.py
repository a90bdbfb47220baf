"""Benchmark: does the server stay responsive while one address floods it?

Starts `flowengine serve` (embedded store, default limits) and measures `/healthz` latency on a
keep-alive connection: first quiet (the baseline, same run), then while a separate process
floods from one address with `--sockets` WebSockets (within the per-address socket cap), each
sending frames as fast as it can (reading what comes back, or with `--no-read` never reading)
and reconnecting at once whenever the server closes or refuses it, and then again after the
flood. Prints p50/p99/max per phase, the ratio to the quiet baseline, what the flood achieved
(frames sent, sockets closed for flooding, reconnects refused) and the server's CPU use.

    python bench/flood.py [--sockets 10] [--seconds 10] [--no-read] [--pings]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import websockets

ROOT = Path(__file__).resolve().parent.parent
SERVE = [sys.executable, "-m", "flowengine", "serve", "--memory", "--log-level", "error"]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _flooder(url: str, until: float, read: bool, pings: bool, stats: dict[str, int]) -> None:
    frame = json.dumps({"type": "choose", "id": "x", "option": "nothing-like-this"})
    while time.monotonic() < until:
        try:
            async with websockets.connect(url, compression=None, open_timeout=5) as ws:
                await ws.send(json.dumps({"type": "hello", "session": None, "last_seq": 0}))
                reader = asyncio.create_task(_drain(ws)) if read else None
                try:
                    while time.monotonic() < until:
                        if pings:  # WebSocket pings: answered by the protocol, not the app
                            await ws.ping(stats["frames"].to_bytes(8, "big"))
                        else:
                            await ws.send(frame)
                        stats["frames"] += 1
                finally:
                    if reader is not None:
                        reader.cancel()
        except websockets.InvalidStatus:
            stats["refused"] += 1
        except (websockets.ConnectionClosed, OSError, TimeoutError):
            stats["closed"] += 1


async def _drain(ws: websockets.ClientConnection) -> None:
    async for _ in ws:
        pass


def _flood(
    url: str,
    sockets: int,
    seconds: float,
    read: bool,
    pings: bool,
    out: multiprocessing.Queue,  # type: ignore[type-arg]
) -> None:
    stats = {"frames": 0, "closed": 0, "refused": 0}

    async def main() -> None:
        until = time.monotonic() + seconds
        await asyncio.gather(*(_flooder(url, until, read, pings, stats) for _ in range(sockets)))

    asyncio.run(main())
    out.put(stats)


def _healthz(port: int, seconds: float, every: float = 0.02) -> list[float]:
    """Latencies of GET /healthz over one keep-alive connection, one every `every` s."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    latencies: list[float] = []
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        began = time.perf_counter()
        conn.request("GET", "/healthz")
        response = conn.getresponse()
        response.read()
        assert response.status == 200
        latencies.append(time.perf_counter() - began)
        time.sleep(every)
    conn.close()
    return latencies


def _row(name: str, latencies: list[float], base: float) -> str:
    ms = sorted(x * 1000 for x in latencies)
    p50 = statistics.median(ms)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return (
        f"| {name} | {len(ms)} | {p50:.2f} ms | {p99:.2f} ms | {ms[-1]:.2f} ms "
        f"| {p99 / base:.1f}× |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sockets", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--no-read", action="store_true", help="flooders never read replies")
    parser.add_argument("--pings", action="store_true", help="flood WebSocket pings, not frames")
    args = parser.parse_args()

    port = _port()
    server = subprocess.Popen(
        [*SERVE, "--port", str(port)],
        cwd=ROOT,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                _get(port, "/healthz")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        quiet = _healthz(port, 5.0)
        base = sorted(quiet)[int(len(quiet) * 0.99)] * 1000

        out: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
        flood = multiprocessing.Process(
            target=_flood,
            args=(
                f"ws://127.0.0.1:{port}/ws",
                args.sockets,
                args.seconds,
                not args.no_read,
                args.pings,
                out,
            ),
        )
        cpu_before = _cpu_seconds(server.pid)
        flood.start()
        time.sleep(0.2)
        during = _healthz(port, args.seconds - 0.5)
        cpu = (_cpu_seconds(server.pid) - cpu_before) / args.seconds
        flood.join()
        stats = out.get()
        after = _healthz(port, 3.0)
        metrics = _get(port, "/metrics")
        refused = [m for m in metrics.splitlines() if m.startswith("flowengine_refused_total{")]
    finally:
        server.terminate()
        server.wait(15)

    mode = ("pings, " if args.pings else "frames, ") + (
        "never reading" if args.no_read else "reading"
    )
    print(f"/healthz while one address floods with {args.sockets} sockets ({mode}):\n")
    print("| phase | requests | p50 | p99 | max | p99 / quiet p99 |")
    print("|---|---|---|---|---|---|")
    print(_row("quiet (baseline)", quiet, base))
    print(_row(f"during the flood ({args.seconds:.0f} s)", during, base))
    print(_row("after it", after, base))
    print(
        f"\nflood: {stats['frames']:,} frames sent, {stats['closed']} sockets closed by the "
        f"server, {stats['refused']} reconnects refused (429); server CPU {cpu:.0%} of a core"
    )
    for line in refused:
        print("  " + line)
    return 0


def _get(port: int, path: str) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        return conn.getresponse().read().decode()
    finally:
        conn.close()


if __name__ == "__main__":
    sys.exit(main())

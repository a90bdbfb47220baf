"""Benchmark: clicks per second and latency over real WebSockets, against bare baselines.

In one run, on the same uvicorn settings and the same Redis:

* a bare Starlette echo WebSocket (the ceiling for the embedded store);
* a bare socket that makes the one Redis write a click needs per message (one EVALSHA: bump a
  revision, store a state, append the event, set the TTLs; redis-py asyncio, one pool) — the
  ceiling for flowengine on Redis;
* `flowengine serve` on the embedded store (in memory, or a SQLite file with `--data-dir`) and on
  Redis, with 1 and 2 workers: N concurrent clients click through the size guide
  (menu -> answer -> "another category" -> ...), each waiting for the ack of one click before
  the next, for a fixed time;
* flowengine on Redis with many sessions clicking at a person's pace (one click every 2 s each),
  timed once every session is open;
* the server's memory per idle socket with a session, on both stores, on the fresh process.

The flowengine clients ask for `batch` frames in their hello (docs/protocol.md), as the widget
does: an answer is one message.

It prints clicks/s, p50/p99 (send -> ack) and every ratio the goals in docs/benchmarks.md are
stated in. Without `--redis-url` it starts its own `redis-server` (no persistence) on a free port.

    python bench/ws_clicks.py [--sessions 100] [--seconds 10] [--idle 1000] [--human 1000]
                              [--data-dir DIR] [--redis-url URL] [--only NAME,...]
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

import redis.asyncio as aioredis
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

# The one write a click needs, as a naive server would make it: one script call per message.
_ONE_WRITE = """
local rev = redis.call('HINCRBY', KEYS[1], 'rev', 1)
redis.call('HSET', KEYS[1], 'state', ARGV[1])
redis.call('RPUSH', KEYS[2], ARGV[2])
redis.call('PEXPIRE', KEYS[1], 1800000)
redis.call('PEXPIRE', KEYS[2], 1800000)
return rev
"""
_redis: aioredis.Redis | None = None


async def _write_echo(ws: WebSocket) -> None:
    global _redis
    if _redis is None:
        pool = aioredis.BlockingConnectionPool.from_url(
            os.environ["FE_BENCH_REDIS"], max_connections=32
        )
        _redis = aioredis.Redis(connection_pool=pool)
    script = _redis.register_script(_ONE_WRITE)
    await ws.accept()
    sid = os.urandom(8).hex()
    keys = [f"bench:{{{sid}}}:s", f"bench:{{{sid}}}:log"]
    try:
        while True:
            text = await ws.receive_text()
            await script(keys=keys, args=[text, text])
            await ws.send_text(text)
    except Exception:
        return


write_app = Starlette(routes=[WebSocketRoute("/ws", _write_echo)])


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


def _cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a process and all its descendants (`--workers` children)."""
    tick = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    times: dict[int, float] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        child = int(stat.parent.name)
        children.setdefault(int(fields[1]), []).append(child)
        times[child] = (int(fields[11]) + int(fields[12])) / tick
    total, todo = 0.0, [pid]
    while todo:
        one = todo.pop()
        total += times.get(one, 0.0)
        todo.extend(children.get(one, []))
    return total


def _redis_cpu_seconds(redis_url: str | None) -> float:
    if redis_url is None:
        return 0.0
    import redis

    info = redis.Redis.from_url(redis_url).info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def _frames(raw: str | bytes) -> list[dict]:  # type: ignore[type-arg]
    """The frames of one message: a `batch` frame's, or the frame itself (docs/protocol.md)."""
    frame = json.loads(raw)
    return frame["frames"] if frame["type"] == "batch" else [frame]


def _types(raw: str | bytes) -> set[str]:
    return {f["type"] for f in _frames(raw)}


async def _flow_client(url: str, until: float, latencies: list[float]) -> int:
    cycle = ["tops", "another", "bottoms", "another", "shoes", "another", "between", "another"]
    clicks = 0
    async with websockets.connect(url, compression=None) as ws:
        await ws.send(json.dumps({"type": "hello", "session": None, "last_seq": 0, "batch": True}))
        while "message" not in _types(await ws.recv()):
            pass
        await ws.send(json.dumps({"type": "choose", "id": "s", "option": "sizes"}))
        while "ack" not in _types(await ws.recv()):
            pass
        i = 0
        while time.monotonic() < until:
            frame_id = f"c{i}"
            began = time.perf_counter()
            await ws.send(
                json.dumps({"type": "choose", "id": frame_id, "option": cycle[i % len(cycle)]})
            )
            while True:
                replies = _frames(await ws.recv())
                if any(r["type"] == "ack" and r["id"] == frame_id for r in replies):
                    break
                if any(r["type"] == "error" for r in replies):
                    raise RuntimeError(replies)
            latencies.append(time.perf_counter() - began)
            clicks += 1
            i += 1
    return clicks


def _human(sessions: int, seconds: float):  # type: ignore[no-untyped-def]
    """Clients at a person's pace: each opens its session, then, once all of them are open
    (steady state: the opening burst of `sessions` hellos is not a person's pace), clicks
    every ~2 s (spread, so the load is even) for `seconds`, each click timed."""
    import random

    everyone = asyncio.Barrier(sessions)
    start: list[float] = []

    async def client(url: str, _until: float, latencies: list[float]) -> int:
        cycle = ["tops", "another", "bottoms", "another"]
        clicks = 0
        async with websockets.connect(url, compression=None, open_timeout=60) as ws:
            await ws.send(
                json.dumps({"type": "hello", "session": None, "last_seq": 0, "batch": True})
            )
            while "message" not in _types(await ws.recv()):
                pass
            await ws.send(json.dumps({"type": "choose", "id": "s", "option": "sizes"}))
            while "ack" not in _types(await ws.recv()):
                pass
            await everyone.wait()
            if not start:
                start.append(time.monotonic())
            until = start[0] + seconds
            await asyncio.sleep(random.uniform(0, 2.0))
            i = 0
            while time.monotonic() < until:
                frame_id = f"c{i}"
                began = time.perf_counter()
                await ws.send(
                    json.dumps({"type": "choose", "id": frame_id, "option": cycle[i % 4]})
                )
                while not any(
                    r["type"] == "ack" and r["id"] == frame_id for r in _frames(await ws.recv())
                ):
                    pass
                latencies.append(time.perf_counter() - began)
                clicks += 1
                i += 1
                await asyncio.sleep(max(0.0, 2.0 - (time.perf_counter() - began)))
        return clicks

    return client


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
            await ws.send(
                json.dumps({"type": "hello", "session": None, "last_seq": 0, "batch": True})
            )
            while "message" not in _types(await ws.recv()):
                pass
        sockets.append(ws)
    await asyncio.sleep(1.0)
    per = (_rss_kib(pid) - before) / count
    await asyncio.gather(*[ws.close() for ws in sockets])
    return per


def _pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] * 1000 if len(values) > 1 else 0.0


def _serve(port: int, store: list[str], workers: int = 1) -> subprocess.Popen[bytes]:
    # One client machine plays many shoppers clicking flat out: lift the per-IP and per-socket
    # limits that protect a real server from one abusive client.
    cmd = [
        sys.executable,
        "-m",
        "flowengine",
        "serve",
        "--port",
        str(port),
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
        "--workers",
        str(workers),
        *store,
    ]
    return subprocess.Popen(cmd, cwd=ROOT)


def _baseline(port: int, app: str, redis_url: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--app-dir",
            str(ROOT / "bench"),
            f"ws_clicks:{app}",
            "--port",
            str(port),
            *UVICORN,
        ],
        cwd=ROOT,
        env={**os.environ, "FE_BENCH_REDIS": redis_url},
    )


def _redis_server() -> tuple[subprocess.Popen[bytes], str]:
    port = _port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc, f"redis://127.0.0.1:{port}/0"
        time.sleep(0.05)
    raise RuntimeError("redis-server did not start")


class Run:
    """One measured server: its clicks/s, latencies and memory per idle socket."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.rate = 0.0
        self.latencies: list[float] = []
        self.idle_kib: float | None = None
        # CPU time per message, in µs, during the load: the server (with its workers), this
        # client, and redis-server (when the run uses it).
        self.cpu_us: dict[str, float] = {}

    def line(self) -> str:
        idle = f"  {self.idle_kib:5.1f} KiB/idle socket" if self.idle_kib is not None else ""
        cpu = "  CPU µs/msg " + " ".join(f"{k} {v:.0f}" for k, v in self.cpu_us.items())
        return (
            f"{self.name:<44} {self.rate:8,.0f}/s  p50 {_pct(self.latencies, 50):7.2f} ms  "
            f"p99 {_pct(self.latencies, 99):7.2f} ms{idle}{cpu}"
        )


async def _measure(  # type: ignore[no-untyped-def]
    name: str,
    proc: subprocess.Popen[bytes],
    port: int,
    client,
    sessions: int,
    seconds: float,
    idle: int = 0,
    hello: bool = True,
    redis_url: str | None = None,
) -> Run:
    run = Run(name)
    try:
        _wait(port, "/healthz")
        url = f"ws://127.0.0.1:{port}/ws"
        # Idle sockets first, on the fresh process: measured after the load, the first few
        # hundred would reuse memory the load freed and read as cheaper than they are.
        if idle:
            run.idle_kib = await _idle(url, proc.pid, idle, hello=hello)
        began = (
            _cpu_seconds(proc.pid),
            time.process_time(),
            _redis_cpu_seconds(redis_url),
        )
        run.rate, run.latencies = await _load(client, url, sessions, seconds)
        ended = (_cpu_seconds(proc.pid), time.process_time(), _redis_cpu_seconds(redis_url))
        messages = len(run.latencies) or 1
        for key, a, b in zip(("server", "client", "redis"), began, ended, strict=True):
            if redis_url is not None or key != "redis":
                run.cpu_us[key] = (b - a) * 1e6 / messages
    finally:
        proc.terminate()
        proc.wait()
    print(run.line(), flush=True)
    return run


def _ratio(a: Run | None, b: Run | None) -> str:
    return f"{a.rate / b.rate:.2f}" if a and b and b.rate else "-"


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--idle", type=int, default=1000)
    parser.add_argument("--human", type=int, default=1000, help="sessions at a person's pace")
    parser.add_argument("--redis-url", default=None, help="default: a redis-server of its own")
    parser.add_argument("--data-dir", default=None, help="the embedded store in a file there")
    parser.add_argument(
        "--only",
        default="echo,write,embedded,redis,redis2,human",
        help="which runs, comma-separated",
    )
    args = parser.parse_args()
    only = set(args.only.split(","))
    own_redis = None
    redis_url = args.redis_url
    if redis_url is None:
        own_redis, redis_url = _redis_server()
    embedded = ["--data-dir", args.data_dir] if args.data_dir else ["--memory"]
    n, secs = args.sessions, args.seconds
    print(
        f"{n} sessions clicking flat out, {secs:.0f} s a run, {os.cpu_count()} cores; "
        f"Redis {redis_url}"
    )
    runs: dict[str, Run] = {}
    try:
        if "echo" in only:
            port = _port()
            proc = _baseline(port, "echo_app", redis_url)
            runs["echo"] = await _measure(
                "bare echo socket", proc, port, _echo_client, n, secs, args.idle, hello=False
            )
        if "write" in only:
            port = _port()
            proc = _baseline(port, "write_app", redis_url)
            runs["write"] = await _measure(
                "bare socket + one Redis write",
                proc,
                port,
                _echo_client,
                n,
                secs,
                redis_url=redis_url,
            )
        if "embedded" in only:
            port = _port()
            proc = _serve(port, embedded)
            name = f"flowengine, embedded ({'SQLite' if args.data_dir else 'memory'})"
            runs["embedded"] = await _measure(name, proc, port, _flow_client, n, secs, args.idle)
        if "redis" in only:
            port = _port()
            proc = _serve(port, ["--redis-url", redis_url])
            runs["redis"] = await _measure(
                "flowengine, Redis, 1 worker",
                proc,
                port,
                _flow_client,
                n,
                secs,
                args.idle,
                redis_url=redis_url,
            )
        if "redis2" in only:
            port = _port()
            proc = _serve(port, ["--redis-url", redis_url], workers=2)
            runs["redis2"] = await _measure(
                "flowengine, Redis, 2 workers",
                proc,
                port,
                _flow_client,
                n,
                secs,
                redis_url=redis_url,
            )
        if "human" in only:
            port = _port()
            proc = _serve(port, ["--redis-url", redis_url])
            runs["human"] = await _measure(
                f"flowengine, Redis, {args.human} at a person's pace",
                proc,
                port,
                _human(args.human, max(secs, 10.0)),
                args.human,
                max(secs, 10.0),
            )
    finally:
        if own_redis is not None:
            own_redis.terminate()
            own_redis.wait()
    r = runs.get
    print()
    print(f"embedded / bare echo:               {_ratio(r('embedded'), r('echo'))}  (goal >= 0.6)")
    print(f"Redis / bare socket + one write:    {_ratio(r('redis'), r('write'))}  (goal >= 1.0)")
    print(f"Redis, 2 workers / 1 worker:        {_ratio(r('redis2'), r('redis'))}")
    if r("redis"):
        print(
            f"p99 at {n} saturating, Redis: "
            f"{_pct(runs['redis'].latencies, 99):.1f} ms  (goal <= 50)"
        )
    if r("human"):
        print(
            f"p99 at {args.human} at a person's pace: "
            f"{_pct(runs['human'].latencies, 99):.1f} ms  (goal <= 25)"
        )
    for mine, base in (("embedded", "echo"), ("redis", "write")):
        a, b = r(mine), r(base)
        if a and b:
            print(
                f"server CPU per message, {mine} / {base}: "
                f"{a.cpu_us['server'] / b.cpu_us['server']:.1f}x  "
                f"({a.cpu_us['server']:.0f} / {b.cpu_us['server']:.0f} µs)"
            )
    for key in ("embedded", "redis"):
        run = r(key)
        if run and run.idle_kib is not None:
            print(f"memory per idle socket, {key}: {run.idle_kib:.1f} KiB  (goal <= 16)")


if __name__ == "__main__":
    asyncio.run(main())

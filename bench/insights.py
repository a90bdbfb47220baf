"""Benchmark: what the insights consumer costs per click, against a click, in one run.

For each store (memory, a SQLite file, Redis), `flowengine`'s app is served in this process with
the consumer's timer off; a load generator in another process (so its CPU is not counted) clicks
through the shipped flows over real WebSockets (N sessions at once, each waiting for its ack; at
a conversation's end it restarts). Measured:

* a click: this process's CPU time (every thread: the event loop, the SQLite writer) plus, on
  Redis, redis-server's CPU time (INFO cpu), during the clicks, divided by the clicks; the
  analytics batcher's writes are part of it, as in production;
* the consumer: the same CPU times while `Insights.catch_up()` folds everything those clicks
  logged into the counters, divided by the same clicks.

It prints both per click and their ratio (the goal in docs/benchmarks.md: under 5 %). Without
`--redis-url` it starts its own `redis-server` (no persistence) on a free port.

    python bench/insights.py [--sessions 20] [--clicks 4000] [--only memory,sqlite,redis]
                             [--redis-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

AVOID = ("person", "agent", "human", "talk", "handoff", "message")  # options that leave the bot


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- the load generator (a separate process) ----------------------------------------------------


async def _session(url: str, budget: list[int]) -> int:
    import websockets

    clicks = 0
    turn = 0
    async with websockets.connect(url, compression=None, max_size=2**22) as ws:
        await ws.send(json.dumps({"type": "hello", "session": None, "last_seq": 0}))
        options: list[str] = []
        ended = False
        while True:  # up to the first prompt
            frame = json.loads(await ws.recv())
            if frame["type"] == "message" and frame.get("options"):
                options = [o["id"] for o in frame["options"]]
                break
        while budget[0] > 0:
            budget[0] -= 1
            turn += 1
            usable = [o for o in options if not any(a in o for a in AVOID)]
            if ended or not usable:
                action: dict[str, Any] = {"type": "restart"}
            else:
                action = {"type": "choose", "option": usable[turn % len(usable)]}
            action["id"] = f"c{turn}"
            await ws.send(json.dumps(action))
            options, ended = [], False
            while True:
                frame = json.loads(await ws.recv())
                if frame["type"] == "message" and frame.get("options"):
                    options = [o["id"] for o in frame["options"]]
                if frame["type"] == "ended" or frame.get("ended"):
                    ended = True
                if frame["type"] == "error":
                    raise RuntimeError(frame)
                if frame["type"] == "ack" and frame.get("id") == action["id"]:
                    break
            clicks += 1
    return clicks


async def _load(url: str, sessions: int, clicks: int) -> dict[str, Any]:
    budget = [clicks]
    began = time.perf_counter()
    done = await asyncio.gather(*(_session(url, budget) for _ in range(sessions)))
    return {"clicks": sum(done), "seconds": time.perf_counter() - began}


# -- the server under test (this process) -------------------------------------------------------


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _scripts(url: str | None) -> str:
    """How long Redis ran the consumer's scripts (each blocks Redis while it runs)."""
    if url is None:
        return ""
    import redis

    stats = redis.Redis.from_url(url).info("commandstats").get("cmdstat_evalsha")
    if not stats:
        return ""
    return f"; Redis ran {stats['calls']} scripts, {stats['usec_per_call']:.0f} µs each on average"


def _redis_cpu(url: str | None) -> float:
    if url is None:
        return 0.0
    import redis

    info = redis.Redis.from_url(url).info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def _measure(store: str, args: argparse.Namespace, redis_url: str | None) -> dict[str, Any]:
    import redis
    import uvicorn

    from flowengine.server.app import create_app
    from flowengine.server.config import ServerConfig

    data = tempfile.mkdtemp(prefix="fe-bench-") if store == "sqlite" else None
    url = redis_url if store == "redis" else None
    if url is not None:
        redis.Redis.from_url(url).flushall()
    config = ServerConfig(
        flows_dir=str(ROOT / "flows"),
        redis_url=url,
        data_dir=data,
        insights_interval=1e9,  # the consumer runs when measured, not on its timer
        socket_rate=1e6,
        socket_burst=10**6,
        ip_rate=1e6,
        ip_burst=10**6,
        max_sockets_per_ip=10**6,
        new_sessions_per_minute=1e9,
        handoff_config=None,
    )
    app = create_app(config)
    runtime = app.state.runtime
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        cpu, rcpu = _cpu(), _redis_cpu(url)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--client", f"ws://127.0.0.1:{port}/ws",
            "--sessions", str(args.sessions), "--clicks", str(args.clicks),
            stdout=subprocess.PIPE,
        )  # fmt: skip
        out, _ = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"the load generator failed ({proc.returncode})")
        load = json.loads(out)
        await runtime.analytics.flush()  # what the clicks logged, all of it in the log
        click_cpu = (_cpu() - cpu) + (_redis_cpu(url) - rcpu)
        events = len(await runtime.store.read_events(10**6))
        if url is not None:
            redis.Redis.from_url(url).config_resetstat()
        cpu, rcpu = _cpu(), _redis_cpu(url)
        began = time.perf_counter()
        entries = await runtime.insights.catch_up()
        fold_wall = time.perf_counter() - began
        fold_cpu = (_cpu() - cpu) + (_redis_cpu(url) - rcpu)
        scripts = _scripts(url)
    finally:
        server.should_exit = True
        await task
        if data is not None:
            shutil.rmtree(data, ignore_errors=True)
    n = load["clicks"]
    return {
        "store": store,
        "clicks": n,
        "clicks_per_s": n / load["seconds"],
        "events": events,
        "entries": entries,
        "click_us": click_cpu / n * 1e6,
        "consumer_us": fold_cpu / n * 1e6,
        "consumer_wall_s": fold_wall,
        "ratio": fold_cpu / click_cpu,
        "scripts": scripts,
    }


def _start_redis() -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed; give --redis-url or --only memory,sqlite")
    port = _free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            break
        except OSError:
            time.sleep(0.05)
    return proc, f"redis://127.0.0.1:{port}/0"


async def _main(args: argparse.Namespace) -> None:
    stores = [s.strip() for s in args.only.split(",") if s.strip()]
    redis_proc = None
    redis_url = args.redis_url
    if "redis" in stores and redis_url is None:
        redis_proc, redis_url = _start_redis()
    try:
        print(
            f"{os.cpu_count()} cores, Python {sys.version.split()[0]}, "
            f"{args.sessions} sessions, {args.clicks} clicks per store"
        )
        print(
            "store   clicks  clicks/s  events  click CPU  consumer CPU  per click ratio  "
            "(consumer wall)"
        )
        for store in stores:
            r = await _measure(store, args, redis_url)
            print(
                f"{r['store']:<7} {r['clicks']:>6} {r['clicks_per_s']:>9,.0f} {r['events']:>7}"
                f" {r['click_us']:>8.0f}µs {r['consumer_us']:>11.1f}µs {r['ratio']:>15.2%}"
                f"  ({r['consumer_wall_s']:.2f} s for {r['entries']} log entries{r['scripts']})"
            )
    finally:
        if redis_proc is not None:
            redis_proc.terminate()
            redis_proc.wait()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sessions", type=int, default=20)
    p.add_argument("--clicks", type=int, default=4000)
    p.add_argument("--only", default="memory,sqlite,redis")
    p.add_argument("--redis-url", default=None)
    p.add_argument("--client", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.client:
        print(json.dumps(asyncio.run(_load(args.client, args.sessions, args.clicks))))
        return
    asyncio.run(_main(args))


if __name__ == "__main__":
    main()

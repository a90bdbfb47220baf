"""A real redis-server for the tests, on a free port, that a test can stop and start again.

It keeps an append-only file, as a production Redis should, so data survives a restart."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cluster_port() -> int:
    """A free port in 17000-17999 whose cluster bus port (+10000) is free too."""
    import random

    for port in random.sample(range(17000, 18000), 1000):
        try:
            for p in (port, port + 10000):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port for a cluster node")


class RedisServer:
    def __init__(self, workdir: Path, *extra: str) -> None:
        """`extra`: more redis-server options (`--replicaof`, `--requirepass`, `--sentinel`,
        `--cluster-enabled` ...)."""
        self.extra = extra
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (bash .ci/run installs it)")
        self.binary = binary
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--dir",
                str(self.workdir),
                *self.extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as c:
                    c.sendall(b"PING\r\n")
                    if c.recv(16).startswith((b"+PONG", b"-NOAUTH")):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None

    def flush(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as c:
            c.sendall(b"FLUSHALL\r\n")
            c.recv(16)


def start_servers(root: Path, count: int, *extra: str) -> list[RedisServer]:
    """`count` redis-servers, each in its own directory under `root` (cluster nodes on ports
    whose bus port, +10000, is a port too)."""
    servers = []
    for i in range(count):
        workdir = root / f"redis-{i}"
        workdir.mkdir(parents=True, exist_ok=True)
        server = RedisServer(workdir, *extra)
        if "--cluster-enabled" in extra:
            server.port = cluster_port()
        server.start()
        servers.append(server)
    return servers


def stop_all(servers: list[RedisServer]) -> None:
    for server in servers:
        with contextlib.suppress(Exception):
            if server.proc is not None:
                server.proc.kill()
                server.proc.wait(timeout=10)
                server.proc = None


class Proxy:
    """A TCP proxy on a free port to whichever Redis `target` names now (a DNS name or a load
    balancer in front of "the primary"): connections made before a change stay where they were.
    Runs in the test's event loop."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> Proxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.close()
            return

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            with contextlib.suppress(Exception):
                dst.close()

        for t in (pipe(reader, up_writer), pipe(up_reader, writer)):
            task = asyncio.create_task(t)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()


class SentinelServer(RedisServer):
    """A redis-server in Sentinel mode watching `primary` as `service` (quorum 2, a primary is
    down after 1 s)."""

    def __init__(self, workdir: Path, primary: int, service: str = "mymaster") -> None:
        super().__init__(workdir)
        self.primary = primary
        self.service = service

    def start(self) -> None:
        conf = self.workdir / f"sentinel-{self.port}.conf"
        conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self.workdir}\n"
            f"sentinel monitor {self.service} 127.0.0.1 {self.primary} 2\n"
            f"sentinel down-after-milliseconds {self.service} 1000\n"
            f"sentinel failover-timeout {self.service} 5000\n"
        )
        self.proc = subprocess.Popen(
            [self.binary, str(conf), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as c:
                    c.sendall(b"PING\r\n")
                    if c.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-sentinel did not start")

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


class Cluster:
    """A Redis Cluster of `primaries` primaries, each with `replicas` replicas (`redis-cli
    --cluster create`), whose nodes call a silent node failed after `node_timeout` ms (a
    replica then takes over its slots)."""

    def __init__(
        self, root: Path, primaries: int = 3, replicas: int = 0, node_timeout: int = 1000
    ) -> None:
        self.root = root
        self.primaries = primaries
        self.replicas = replicas
        self.node_timeout = node_timeout
        self.nodes: list[RedisServer] = []

    @property
    def url(self) -> str:
        """A few of the nodes (the client learns the rest)."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes[:3]) + "/0"

    def start(self) -> Cluster:
        count = self.primaries * (1 + self.replicas)
        options = ("--cluster-enabled", "yes", "--cluster-node-timeout", str(self.node_timeout))
        self.nodes = start_servers(self.root, count, *options)
        create = subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *[f"127.0.0.1:{n.port}" for n in self.nodes],
                "--cluster-replicas",
                str(self.replicas),
                "--cluster-yes",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if create.returncode != 0:
            raise RuntimeError("redis-cli --cluster create failed:\n" + create.stdout)
        self.wait_until_ok()
        return self

    def live(self) -> list[RedisServer]:
        return [n for n in self.nodes if n.proc is not None]

    def wait_until_ok(self, timeout: float = 30.0) -> None:
        """Until every live node says the cluster is ok, sees the same primaries, and every
        primary has its replicas in sync (what WAIT counts)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self._ok():
                    return
            except (OSError, RuntimeError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the cluster is not ok")
            time.sleep(0.1)

    def _ok(self) -> bool:
        views = set()
        for node in self.live():
            if "cluster_state:ok" not in command(node.port, "CLUSTER", "INFO"):
                return False
            views.add(tuple(sorted(p.port for p in self.primary_nodes(node))))
        if len(views) != 1:
            return False
        roles = {n.port: replication(n.port) for n in self.live()}
        for port, info in roles.items():
            if info["role"] == "master":
                wanted = [r for r in roles.values() if r.get("master_port") == str(port)]
                online = sum(1 for k, v in info.items() if k.startswith("slave") and "online" in v)
                if online < len(wanted) or len(wanted) < min(self.replicas, 1):
                    return False
            elif info.get("master_link_status") != "up":
                return False
        return True

    def primary_nodes(self, asked: RedisServer | None = None) -> list[RedisServer]:
        """The primaries serving slots, as `asked` (a live node) sees them."""
        asked = asked or self.live()[0]
        ports = set()
        for line in command(asked.port, "CLUSTER", "NODES").splitlines():
            fields = line.split()
            if "master" in fields[2] and "fail" not in fields[2] and len(fields) > 8:
                ports.add(int(fields[1].split(":")[1].split("@")[0]))
        return [n for n in self.nodes if n.port in ports]

    def owner(self, key: str) -> RedisServer:
        """The primary holding `key`'s slot now."""
        slot = int(command(self.live()[0].port, "CLUSTER", "KEYSLOT", key))
        for node in self.live():
            if replication(node.port)["role"] != "master":
                continue
            for line in command(node.port, "CLUSTER", "NODES").splitlines():
                fields = line.split()
                if "myself" not in fields[2]:
                    continue
                for r in fields[8:]:
                    lo, _, hi = r.partition("-")
                    if not lo.startswith("[") and int(lo) <= slot <= int(hi or lo):
                        return node
        raise RuntimeError(f"no primary holds slot {slot}")

    def replica_of(self, primary: RedisServer) -> RedisServer:
        for node in self.live():
            if replication(node.port).get("master_port") == str(primary.port):
                return node
        raise RuntimeError(f"no replica of {primary.port}")

    def kill(self, node: RedisServer) -> None:
        """kill -9: no shutdown, no goodbye to the other nodes."""
        assert node.proc is not None
        node.proc.kill()
        node.proc.wait(timeout=10)
        node.proc = None

    def stop(self) -> None:
        stop_all(self.nodes)


def command(port: int, *args: str) -> str:
    """One command by redis-cli (blocking; for set-up and checks, not under test)."""
    done = subprocess.run(
        ["redis-cli", "-p", str(port), *args], capture_output=True, text=True, timeout=10
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr)
    return done.stdout


def replication(port: int) -> dict[str, str]:
    """INFO replication, as a dict (role, master_port, master_link_status, slave0 ...)."""
    lines = command(port, "INFO", "replication").splitlines()
    return dict(line.strip().split(":", 1) for line in lines if ":" in line)

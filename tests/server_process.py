"""Run `flowengine serve` as a real process for the tests, and talk to it as a client would."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import httpx
import websockets

from tests.redis_server import free_port

ROOT = Path(__file__).resolve().parent.parent


class Listening:
    """A server on this machine's loopback, at `port`."""

    port: int

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"


class ServerProcess(Listening):
    def __init__(
        self, *args: str, flows: Path | None = None, env: dict[str, str] | None = None
    ) -> None:
        self.port = free_port()
        self.args = args
        self.flows = flows or ROOT / "flows"
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[str] | None = None
        self.log = ""

    def start(self) -> ServerProcess:
        cmd = [
            sys.executable,
            "-m",
            "flowengine",
            "serve",
            "--port",
            str(self.port),
            "--flows",
            str(self.flows),
            "--log-level",
            "warning",
            *self.args,
        ]
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    "server exited:\n" + (self.proc.stdout.read() if self.proc.stdout else "")
                )
            try:
                with urllib.request.urlopen(self.http + "/healthz", timeout=0.5) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("server did not start")

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.http + path, timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def signal(self, sig: int = signal.SIGHUP) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if self.proc is not None and self.proc.stdout is not None:
            self.log = self.proc.stdout.read()
        self.proc = None


class _Socket:
    """A client socket that keeps every frame it received, in order.

    `until(predicate)` returns the first frame after the last one `until` returned that
    satisfies `predicate`, whether it has already arrived (say, before an ack that `act`
    waited for) or is still to come; the shopper and the agent clients share it.
    """

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []
        self._n = 0
        self._cursor = 0

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        frame = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        self.frames.append(frame)
        return frame

    async def until(self, predicate: Any, timeout: float = 8.0) -> dict[str, Any]:
        while self._cursor < len(self.frames):
            frame = self.frames[self._cursor]
            self._cursor += 1
            if predicate(frame):
                return frame
        deadline = time.monotonic() + timeout
        while True:
            frame = await self.recv(max(0.01, deadline - time.monotonic()))
            self._cursor = len(self.frames)
            if predicate(frame):
                return frame

    async def close(self) -> None:
        await self.ws.close()


class Client(_Socket):
    """A shopper socket."""

    def __init__(self, ws: Any) -> None:
        super().__init__(ws)
        self.session: str | None = None

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        session: str | None = None,
        last_seq: int = 0,
        locale: str = "en",
        context: dict[str, Any] | None = None,
        origin: str | None = None,
    ) -> Client:
        headers = {"Origin": origin} if origin else None
        ws = await websockets.connect(url, additional_headers=headers, max_size=2**22)
        client = cls(ws)
        await client.send(
            {
                "type": "hello",
                "session": session,
                "last_seq": last_seq,
                "locale": locale,
                "context": context or {},
            }
        )
        frame = await client.next("session")
        client.session = frame["session"]
        return client

    async def send(self, frame: dict[str, Any] | str) -> None:
        await self.ws.send(frame if isinstance(frame, str) else json.dumps(frame))

    async def next(self, type_: str, timeout: float = 5.0) -> dict[str, Any]:
        while True:
            frame = await self.recv(timeout)
            if frame["type"] == type_:
                return frame

    async def act(self, frame: dict[str, Any]) -> dict[str, Any]:
        """Send an action and wait for its ack or error; returns that frame."""
        self._n += 1
        frame = {"id": f"a{self._n}-{time.monotonic_ns()}", **frame}
        await self.send(frame)
        while True:
            reply = await self.recv()
            if reply["type"] in ("ack", "error") and reply.get("id") == frame["id"]:
                return reply

    @property
    def events(self) -> list[dict[str, Any]]:
        return [f for f in self.frames if "seq" in f and f["type"] != "ack"]

    def last_message(self) -> dict[str, Any]:
        return [f for f in self.events if f["type"] == "message" and f["from"] != "shopper"][-1]


class Agent(_Socket):
    """An agent console as a client: logs in over HTTP, then talks on /agent/ws."""

    def __init__(self, ws: Any, token: str) -> None:
        super().__init__(ws)
        self.token = token

    @classmethod
    async def login(cls, server: Listening, username: str, password: str) -> Agent:
        """Log in over HTTP (without blocking the loop: the server may run in it), then open
        the console socket."""
        async with httpx.AsyncClient() as http:
            r = await http.post(
                server.http + "/agent/api/login",
                json={"username": username, "password": password},
                timeout=10,
            )
        r.raise_for_status()
        return await cls.connect(server, r.json()["token"])

    async def logout(self, server: Listening) -> None:
        async with httpx.AsyncClient() as http:
            r = await http.post(
                server.http + "/agent/api/logout",
                headers={"Authorization": f"Bearer {self.token}"},
                timeout=10,
            )
        r.raise_for_status()

    @classmethod
    async def connect(cls, server: Listening, token: str) -> Agent:
        """Another console (a second tab, another box) on an existing login."""
        ws = await websockets.connect(f"ws://127.0.0.1:{server.port}/agent/ws")
        agent = cls(ws, token)
        await ws.send(json.dumps({"type": "auth", "token": token}))
        await agent.until(lambda f: f["type"] == "welcome")
        return agent

    async def act(self, frame: dict[str, Any]) -> dict[str, Any]:
        self._n += 1
        frame = {"id": f"g{self._n}", **frame}
        await self.ws.send(json.dumps(frame))
        return await self.until(
            lambda f: f.get("id") == frame["id"] and f["type"] in ("ack", "error")
        )


def add_agent(
    username: str,
    *,
    teams: str = "general,orders,returns,sales",
    role: str = "agent",
    redis_url: str | None = None,
    agents_file: Path | None = None,
    password: str = "correct-horse-battery",
) -> str:
    args = [
        sys.executable,
        "-m",
        "flowengine",
        "agents",
        "add",
        username,
        "--name",
        username.capitalize(),
        "--teams",
        teams,
        "--role",
        role,
        "--password-stdin",
    ]
    if redis_url:
        args += ["--redis-url", redis_url]
    if agents_file:
        args += ["--agents-file", str(agents_file)]
    subprocess.run(
        args, input=password + "\n", text=True, check=True, cwd=ROOT, capture_output=True
    )
    return password

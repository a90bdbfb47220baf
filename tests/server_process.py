"""Talk to a server as its clients do (`Client`: a shopper socket, `Agent`: an agent console),
whether it runs in this process (`tests/app_server.py`) or as `ServerProcess`: a real
`flowengine serve`, where the process is the point (signals, the command line)."""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
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
        self,
        *args: str,
        flows: Path | None = None,
        env: dict[str, str] | None = None,
        data_dir: Path | None = None,
    ) -> None:
        """`data_dir`: the embedded store keeps its file there (a restarted process on the same
        one resumes); without it (and without `--redis-url`), `--memory`: nothing is written."""
        self.port = free_port()
        if data_dir is not None:
            args = ("--data-dir", str(data_dir), *args)
        elif "--redis-url" not in args and "--data-dir" not in args:
            args = ("--memory", *args)
        self.args = args
        self.flows = flows or ROOT / "flows"
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[str] | None = None
        self._output: list[str] = []
        self._reader: threading.Thread | None = None

    @property
    def log(self) -> str:
        """Everything the process wrote (stdout and stderr) so far."""
        return "".join(self._output)

    async def logged(self, text: str, timeout: float = 10.0) -> None:
        """Wait until the process has written `text` (a log line is the only sign of some
        things, such as a refused reload)."""
        await eventually(lambda: text in self.log, timeout)

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
        self._reader = threading.Thread(target=self._read, args=(self.proc,), daemon=True)
        self._reader.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._reader.join(5)
                raise RuntimeError("server exited:\n" + self.log)
            try:
                with urllib.request.urlopen(self.http + "/healthz", timeout=0.5) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("server did not start")

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self._output.append(line)

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.http + path, timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def signal(self, sig: int = signal.SIGHUP) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL: the process ends at once, with no shutdown of any kind (a crash)."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)
        self.stop()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if self._reader is not None:
            self._reader.join(5)
        self.proc = None


async def eventually(check: Callable[[], Any], timeout: float = 5.0) -> Any:
    """Poll `check` (a function or a coroutine function) until it returns something truthy, and
    return that; fail if it has not within `timeout` seconds. For what no frame announces (a
    webhook received, a server ready again); a frame is waited for with `until`."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if inspect.isawaitable(got):
            got = await got
        if got:
            return got
        assert time.monotonic() < deadline, f"not within {timeout} s: {check}"
        await asyncio.sleep(0.02)


class _Socket:
    """A client socket (the shopper's or an agent console's) that keeps every frame it received,
    in order, in `frames`. Three ways to wait, the same for both kinds:

    - `until(predicate)`: the first frame satisfying `predicate` after the last one `until`
      returned, whether it has already arrived (say, before the ack `act` waited for: an
      action's events come before its ack) or is still to come;
    - `act(frame)`: send an action with a fresh id; its ack or error (it does not move where
      `until` looks next);
    - `next(type)`: the next frame of that type still to come (after a raw `send`).
    """

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []
        self._n = 0
        self._cursor = 0

    async def send(self, frame: dict[str, Any] | str | bytes) -> None:
        await self.ws.send(frame if isinstance(frame, str | bytes) else json.dumps(frame))

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        frame = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        self.frames.append(frame)
        return frame

    async def next(self, type_: str, timeout: float = 5.0) -> dict[str, Any]:
        while True:
            frame = await self.recv(timeout)
            if frame["type"] == type_:
                return frame

    async def act(self, frame: dict[str, Any], timeout: float = 8.0) -> dict[str, Any]:
        # Unique across sockets: two tabs of one session must not send the same action id.
        self._n += 1
        frame = {"id": f"a{self._n}-{time.monotonic_ns()}", **frame}
        await self.send(frame)
        deadline = time.monotonic() + timeout
        while True:
            reply = await self.recv(max(0.01, deadline - time.monotonic()))
            if reply["type"] in ("ack", "error") and reply.get("id") == frame["id"]:
                return reply

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
        await agent.send({"type": "auth", "token": token})
        await agent.until(lambda f: f["type"] == "welcome")
        return agent


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

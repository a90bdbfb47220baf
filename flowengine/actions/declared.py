"""Running the actions a project declares (`actions:` in flowengine.yaml): each an HTTP request.

    call: stock.check, with: {sku: TEE-WHT-L, size: M}
      -> GET https://shop.example/api/stock/TEE-WHT-L?size=M
         Authorization: Bearer <$STOCK_API_TOKEN>
      <- 200 {"in_stock": true, "stock": {"qty": 3}}
      -> ok {available: true, quantity: 3}      keep: {available: in_stock, quantity: stock.qty}

The request comes from the declaration in the flow version the session runs (a session is pinned
to the version it started on, and a version holds its declared actions), filled with the call's
arguments: percent-encoded into the url, as JSON values into the body; `${NAME}` in a header is
read from the environment at each call. The status picks the exit: `answer.ok`, `not_found`,
anything else `error`. A timeout (the shorter of the action's and the step's, at most 30 s), a
connection failure, a redirect (never followed: headers hold secrets), an answer over 256 KiB or
that is not JSON, and kept fields over 32 KiB are the error exit too. Logs name the action, the
method, the host and what went wrong; never the url's path or query, a header or a body, which
carry secrets and shoppers' data.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from ..engine import model as m
from ..language import ir
from ..language.templates import Expression

log = logging.getLogger("flowengine.actions")

MAX_TIMEOUT = 30.0  # seconds for a whole request, whatever the action and the step say
MAX_ANSWER_BYTES = 256 * 1024  # read before any JSON parsing; more is the error exit
MAX_KEPT_BYTES = 32 * 1024  # the kept fields, as JSON: they live in the session's state
MAX_URL = 8 * 1024
DEFAULT_HEADERS = {
    "Accept": "application/json",
    "Accept-Encoding": "identity",  # the size cap counts what the API sends
    "User-Agent": "flowengine",
}

ProjectOf = Callable[[str], Awaitable[ir.Project]]


class RequestProblem(Exception):
    """The request cannot be built (a missing environment variable, a url too long). The
    message is logged: it names no value."""


class _TooLarge(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    url: str
    headers: dict[str, str]
    content: bytes | None

    @property
    def where(self) -> str:
        """The method and host, which is all a log line says about a request."""
        return f"{self.method} {httpx.URL(self.url).host}"


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    return json.dumps(value, ensure_ascii=False, default=str)


def encode(value: Any) -> str:
    """A value as one path segment or query value: everything but letters, digits and `-._~`
    percent-encoded, and `.` / `..` too (they would climb the path)."""
    text = _text(value)
    if text and set(text) == {"."}:
        return "%2E" * len(text)
    return quote(text, safe="")


def render(
    text: ir.RequestText,
    args: Mapping[str, Any],
    environ: Mapping[str, str],
    escape: Callable[[Any], str] = _text,
) -> str:
    out = []
    for piece in text.pieces:
        if isinstance(piece, str):
            out.append(piece)
        elif isinstance(piece, Expression):
            out.append(escape(piece.evaluate(args)))
        else:
            value = environ.get(piece.name)
            if not value:
                raise RequestProblem(f"the environment variable {piece.name} is not set")
            out.append(value)
    return "".join(out)


def _body(value: Any, args: Mapping[str, Any]) -> Any:
    if isinstance(value, ir.RequestText):
        single = value.single
        return single.evaluate(args) if single is not None else render(value, args, {})
    if isinstance(value, dict):
        return {k: _body(v, args) for k, v in value.items()}
    if isinstance(value, list):
        return [_body(v, args) for v in value]
    return value


def build(
    action: ir.DeclaredAction, args: Mapping[str, Any], environ: Mapping[str, str]
) -> Request:
    """The request for a call of `action` with `args` (only its params are read)."""
    args = {k: v for k, v in args.items() if k in action.required | action.optional}
    url = render(action.url, args, environ, encode)
    if len(url) > MAX_URL:
        raise RequestProblem(f"the url is over {MAX_URL} characters")
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        raise RequestProblem("the url is not a valid url") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise RequestProblem("the url is not an http(s) url with a host")
    headers = dict(DEFAULT_HEADERS)
    for name, value in action.headers.items():
        text = render(value, args, environ)
        if any(c in text for c in "\r\n\0"):
            raise RequestProblem(f"the header {name} would hold a line break")
        headers[name] = text
    content = None
    if action.body is not None:
        body = _body(action.body, args)
        content = json.dumps(body, ensure_ascii=False, default=str).encode()
        headers["Content-Type"] = "application/json"
    return Request(action.method, url, headers, content)


def pick(answer: Any, path: tuple[str, ...]) -> Any:
    """The value at `path` in a JSON answer (`items.0.sku`), or None when it is not there."""
    for part in path:
        if isinstance(answer, dict) and part in answer:
            answer = answer[part]
        elif isinstance(answer, list) and part.isdigit() and int(part) < len(answer):
            answer = answer[int(part)]
        else:
            return None
    return answer


def missing_environment(
    project: ir.Project, environ: Mapping[str, str] = os.environ
) -> dict[str, list[str]]:
    """Environment variables the project's declared actions read and the server lacks (set but
    empty counts as missing), each with the actions that need it."""
    missing: dict[str, list[str]] = {}
    for name, action in sorted(project.actions.items()):
        for var in sorted(action.env):
            if not environ.get(var):
                missing.setdefault(var, []).append(name)
    return missing


def environment_problem(project: ir.Project, environ: Mapping[str, str] = os.environ) -> str | None:
    """Why a server must not start with `project` (a variable its actions need is not set)."""
    missing = missing_environment(project, environ)
    if not missing:
        return None
    needs = ", ".join(f"{var} (for {', '.join(names)})" for var, names in sorted(missing.items()))
    return (
        f"the actions declared in flowengine.yaml need environment variables that are not set: "
        f"{needs}; set them before serving"
    )


class DeclaredActions:
    """Runs calls of declared actions (the effect runner's `DeclaredPort`) over one HTTP client.

    `project_of(sid)` is the flow version the session runs, whose declarations are used.
    """

    def __init__(
        self,
        project_of: ProjectOf,
        *,
        environ: Mapping[str, str] = os.environ,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.project_of = project_of
        self.environ = environ
        self.transport = transport
        self._client: httpx.AsyncClient | None = None

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def perform_declared(self, sid: str, call: m.CallAction) -> m.ActionResult:
        try:
            project = await self.project_of(sid)
        except Exception:
            log.exception("action %s: the session's flows are unavailable", call.action)
            return m.ActionResult(call.call_id, "error", {"reason": "flows_unavailable"})
        action = project.actions.get(call.action)
        if action is None:
            log.error("unknown action %s", call.action)
            return m.ActionResult(call.call_id, "error", {"reason": "unknown_action"})
        try:
            return await self.run(action, call)
        except Exception:  # a bug here must not end the conversation
            log.exception("action %s raised", call.action)
            return m.ActionResult(call.call_id, "error", {"reason": "internal"})

    async def run(self, action: ir.DeclaredAction, call: m.CallAction) -> m.ActionResult:
        def error(reason: str) -> m.ActionResult:
            return m.ActionResult(call.call_id, "error", {"reason": reason})

        try:
            request = build(action, call.args, self.environ)
        except RequestProblem as exc:
            log.warning("action %s not sent: %s", action.name, exc)
            return error("request")
        timeout = min(call.timeout, action.timeout, MAX_TIMEOUT)
        try:
            status, body = await asyncio.wait_for(self._send(action, request, timeout), timeout)
        except (TimeoutError, httpx.TimeoutException):
            log.warning("action %s: %s timed out after %.1fs", action.name, request.where, timeout)
            return error("timeout")
        except _TooLarge:
            log.warning(
                "action %s: %s answered more than %d bytes",
                action.name,
                request.where,
                MAX_ANSWER_BYTES,
            )
            return error("too_large")
        except httpx.HTTPError as exc:  # its message may hold the url: only its kind is logged
            log.warning("action %s: %s failed: %s", action.name, request.where, type(exc).__name__)
            return error("connection")
        if status in action.not_found:
            return m.ActionResult(call.call_id, "not_found", None)
        if status not in action.ok or body is None:
            log.warning("action %s: %s answered %d", action.name, request.where, status)
            return m.ActionResult(call.call_id, "error", {"reason": "status", "status": status})
        try:
            answer = json.loads(body) if body.strip() else None
        except (ValueError, RecursionError):
            log.warning("action %s: %s answered with invalid JSON", action.name, request.where)
            return error("invalid_json")
        kept = {name: pick(answer, path) for name, path in action.keep.items()}
        if len(json.dumps(kept, default=str)) > MAX_KEPT_BYTES:
            log.warning("action %s: the kept fields are over %d bytes", action.name, MAX_KEPT_BYTES)
            return error("too_large")
        return m.ActionResult(call.call_id, "ok", kept)

    async def _send(
        self, action: ir.DeclaredAction, request: Request, timeout: float
    ) -> tuple[int, bytes | None]:
        """The status, and the body (None unless the status is ok), at most MAX_ANSWER_BYTES."""
        if self._client is None:
            self._client = httpx.AsyncClient(follow_redirects=False, transport=self.transport)
        async with self._client.stream(
            request.method,
            request.url,
            headers=request.headers,
            content=request.content,
            timeout=timeout,
        ) as response:
            if response.status_code not in action.ok:
                return response.status_code, None
            length = response.headers.get("content-length", "")
            if length.isdigit() and int(length) > MAX_ANSWER_BYTES:
                raise _TooLarge()
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_ANSWER_BYTES:
                    raise _TooLarge()
            return response.status_code, bytes(body)

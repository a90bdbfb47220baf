"""Sending a JSON frame on a socket that may already be gone, and stopping background tasks."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState


async def send_frame(ws: WebSocket, frame: dict[str, Any]) -> bool:
    """Send one frame; False (and no exception) if the socket is closed or closing."""
    if ws.application_state != WebSocketState.CONNECTED:
        return False
    try:
        await ws.send_text(json.dumps(frame, ensure_ascii=False, separators=(",", ":")))
    except (RuntimeError, OSError, WebSocketDisconnect):
        return False
    return True


async def stop_task(task: asyncio.Task[Any] | None) -> None:
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task

"""Webhooks: JSON with the handoff packet, signed with HMAC-SHA256, delivered at least once.

Deliveries go into the store's outbox first, so a crash does not lose them; a worker per process
takes one at a time (moved to in-flight), POSTs it, and retries with exponential backoff
(1 s, 2 s, 4 s ... up to `MAX_ATTEMPTS`). Every attempt is written to the delivery log. Receivers
should use the `X-Flowengine-Delivery` id to ignore repeats.

    X-Flowengine-Event: handoff.created
    X-Flowengine-Delivery: 5b0f...
    X-Flowengine-Signature: sha256=<hex HMAC of the raw body with the webhook's secret>
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import os
import secrets
import time
from collections.abc import Callable
from typing import Any

import httpx

from ..cancellation import raise_if_cancelled
from ..server.tasks import stop_task
from ..store.base import HandoffStore
from .config import Webhook

log = logging.getLogger("flowengine.webhooks")

MAX_ATTEMPTS = 8


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class Webhooks:
    def __init__(
        self,
        store: HandoffStore,
        hooks: tuple[Webhook, ...],
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.hooks = hooks
        self.clock = clock
        self._client = httpx.AsyncClient(timeout=5.0, transport=transport, follow_redirects=False)
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    def wants(self, event: str) -> bool:
        """Does any webhook subscribe to `event`? (Then building its payload is worth it.)"""
        return any(event in hook.events for hook in self.hooks)

    async def emit(self, event: str, data: dict[str, Any]) -> None:
        for i, hook in enumerate(self.hooks):
            if event in hook.events:
                await self.store.push_webhook(
                    {
                        "id": secrets.token_hex(12),
                        "hook": i,
                        "event": event,
                        "attempt": 0,
                        "due": 0.0,
                        "body": {"event": event, "sent_at": self.clock(), "data": data},
                    }
                )
        self._wake.set()

    async def deliver_one(self) -> bool:
        """Take one due delivery and try it; False when there was none."""
        item = await self.store.take_webhook()
        if item is None:
            return False
        if item["due"] > self.clock():
            await self.store.done_webhook(item)
            await self.store.push_webhook({k: v for k, v in item.items() if k != "_raw"})
            return False
        hook = self.hooks[item["hook"]] if item["hook"] < len(self.hooks) else None
        status: int | str = "dropped"
        if hook is not None:
            body = json.dumps(item["body"], separators=(",", ":"), ensure_ascii=False).encode()
            headers = {
                "Content-Type": "application/json",
                "X-Flowengine-Event": item["event"],
                "X-Flowengine-Delivery": item["id"],
            }
            secret = os.environ.get(hook.secret_env) if hook.secret_env else None
            if secret:
                headers["X-Flowengine-Signature"] = signature(secret, body)
            try:
                response = await self._client.post(hook.url, content=body, headers=headers)
                status = response.status_code
            except httpx.HTTPError as exc:
                status = type(exc).__name__
        ok = isinstance(status, int) and 200 <= status < 300
        await self.store.log_webhook(
            {
                "id": item["id"],
                "event": item["event"],
                "url": hook.url if hook else None,
                "status": status,
                "attempt": item["attempt"] + 1,
                "at": self.clock(),
                "ok": ok,
            }
        )
        await self.store.done_webhook(item)
        if not ok and hook is not None and item["attempt"] + 1 < MAX_ATTEMPTS:
            retry = {k: v for k, v in item.items() if k != "_raw"}
            retry["attempt"] += 1
            retry["due"] = self.clock() + 2 ** item["attempt"]
            await self.store.push_webhook(retry)
        elif not ok:
            log.warning(
                "webhook %s to %s failed for good", item["event"], hook.url if hook else "-"
            )
        return True

    async def run(self) -> None:
        with contextlib.suppress(Exception):
            await self.store.recover_webhooks()
        while True:
            try:
                delivered = await self.deliver_one()
            except Exception as exc:  # the store may be down: try again soon
                raise_if_cancelled()
                log.debug("webhook worker: %s", exc)
                delivered = False
            if not delivered:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), 0.5)

    def start(self) -> None:
        if self.hooks:
            self._task = asyncio.create_task(self.run())

    async def stop(self) -> None:
        await stop_task(self._task)
        await self._client.aclose()

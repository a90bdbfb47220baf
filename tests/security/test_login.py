"""Guessing console passwords: failures are limited per account across addresses and per
address, the counters live in the store (every instance agrees), and no spray of other names
or addresses wipes them. A real app behind a trusted proxy (so each request can come from its
own address), on the embedded store and on a real redis-server."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from flowengine.handoff.accounts import Account
from flowengine.handoff.passwords import hash_password
from flowengine.handoff.service import LOGIN_FAILURES_PER_ADDRESS, LOGIN_FAILURES_PER_USER
from flowengine.server.config import ServerConfig
from tests.app_server import AppServer

PASSWORD = "correct-horse-battery"


@functools.cache
def _hash() -> str:
    return hash_password(PASSWORD)


@pytest.fixture(params=["memory", "redis"])
async def box(request: Any, tmp_path: Path) -> AsyncIterator[AppServer]:
    redis_url = None
    if request.param == "redis":
        redis = request.getfixturevalue("redis_server")
        redis.flush()
        redis_url = redis.url
    config = ServerConfig(
        redis_url=redis_url, handoff_config=None, agents_file=str(tmp_path / "agents.json")
    )
    # Requests come from 127.0.0.1, a trusted proxy: X-Forwarded-For names the shopper.
    async with AppServer(config, forwarded_allow_ips="127.0.0.1") as app:
        app.runtime.handoffs.accounts.put(Account("alice", "Alice", "agent", ("general",), _hash()))
        yield app


async def _login(app: AppServer, password: str, address: str, user: str = "alice") -> int:
    async with httpx.AsyncClient() as http:
        r = await http.post(
            app.http + "/agent/api/login",
            json={"username": user, "password": password},
            headers={"X-Forwarded-For": address},
            timeout=10,
        )
    return r.status_code


async def test_one_account_guessed_from_many_addresses_is_locked(box: AppServer) -> None:
    statuses = [
        await _login(box, f"guess-{i}", f"198.51.100.{i}")
        for i in range(LOGIN_FAILURES_PER_USER + 3)
    ]
    assert statuses == [401] * LOGIN_FAILURES_PER_USER + [429] * 3
    # The right password from yet another address: still refused until the window ends.
    assert await _login(box, PASSWORD, "203.0.113.9") == 429


async def test_one_address_guessing_many_accounts_is_locked(box: AppServer) -> None:
    statuses = [
        await _login(box, "wrong", "198.51.100.7", user=f"user{i}")
        for i in range(LOGIN_FAILURES_PER_ADDRESS + 1)
    ]
    assert statuses == [401] * LOGIN_FAILURES_PER_ADDRESS + [429]
    assert await _login(box, PASSWORD, "198.51.100.7") == 429  # alice, from that address
    assert await _login(box, PASSWORD, "198.51.100.8") == 200  # from another: fine


async def test_a_spray_of_other_addresses_does_not_wipe_the_counters(box: AppServer) -> None:
    for i in range(LOGIN_FAILURES_PER_ADDRESS):
        assert await _login(box, "wrong", "198.51.100.7", user=f"user{i}") == 401
    # Other addresses fail once each (counted as the login counts them; through HTTP each
    # would cost a password hash): past the embedded store's 100,000-entry tidy-up, which may
    # only forget what has expired; Redis forgets each key on its own.
    store = box.runtime.store
    spray = 100_050 if box.runtime.store.kind == "memory" else 10_050
    for i in range(spray):
        await store.add_failure([f"addr:10.{i // 65536}.{i // 256 % 256}.{i % 256}"], 300.0)
    assert await _login(box, "wrong", "198.51.100.7", user="someone") == 429


async def test_a_burst_of_guesses_at_once_still_gets_five(box: AppServer) -> None:
    """Each attempt is counted before its password is checked: thirty at once from thirty
    addresses used to all read "under the limit" (99 of 100 were checked, on Redis)."""
    statuses = await asyncio.gather(
        *(_login(box, f"guess-{i}", f"198.51.100.{i}") for i in range(30))
    )
    assert sorted(statuses) == [401] * LOGIN_FAILURES_PER_USER + [429] * 25
    assert await _login(box, PASSWORD, "203.0.113.9") == 429


async def test_logins_that_succeed_leave_nothing_counted(box: AppServer) -> None:
    for _ in range(LOGIN_FAILURES_PER_USER + 2):
        assert await _login(box, PASSWORD, "198.51.100.1") == 200
    counted = await box.runtime.store.failures(["user:alice", "addr:198.51.100.1"])
    assert counted == [0, 0]

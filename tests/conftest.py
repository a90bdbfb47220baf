from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import pytest_asyncio

from flowengine.language import ir, load_project

if TYPE_CHECKING:
    from playwright.async_api import Browser

    from tests.browser import Pages
    from tests.server_process import ServerProcess

ROOT = Path(__file__).resolve().parent.parent
FLOWS = ROOT / "flows"


@pytest.fixture(scope="session")
def project() -> ir.Project:
    result = load_project([FLOWS])
    assert result.ok, result.render()
    assert result.project is not None
    return result.project


# The day the tests live on: the demo orders' ages (returnable, cancellable) are counted from it.
TODAY = date(2026, 11, 22)


@pytest.fixture
def today() -> date:
    return TODAY


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from tests.redis_server import RedisServer

    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    """`flowengine serve` as a real process, with the shipped flows, shared by a module."""
    from tests.server_process import ServerProcess

    # Every shopper of a module's tests comes from 127.0.0.1: lift the budget of new sessions
    # per address (tests/security/test_flood.py tests it).
    proc = ServerProcess("--new-sessions-per-minute", "100000").start()
    yield proc
    proc.stop()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser() -> AsyncIterator[Browser]:
    """One headless Chromium for the session (tests/browser.py); its tests run on the session's
    loop."""
    from playwright.async_api import async_playwright

    from tests.browser import ARGS, CHROMIUM

    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        await b.close()


@pytest_asyncio.fixture(loop_scope="session")
async def pages(browser: Browser) -> AsyncIterator[Pages]:
    """The pages a test opens; closed after it, failing it on any script error or dialog."""
    from tests.browser import Pages

    opened = Pages(browser)
    yield opened
    await opened.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    """A test (its setup, call or teardown) still running after 100 s prints what each of its
    asyncio tasks waits on (the thread stacks that `faulthandler_timeout` dumps show only the
    event loop's select)."""

    def dump() -> None:
        for loop in _loops():
            print(f"\n--- {item.nodeid}: asyncio tasks still waiting ---", file=sys.stderr)
            for task in list(asyncio.all_tasks(loop)):
                task.print_stack(limit=12, file=sys.stderr)

    timer = threading.Timer(100, dump)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def _loops() -> list[asyncio.AbstractEventLoop]:
    import gc

    return [
        o for o in gc.get_objects() if isinstance(o, asyncio.AbstractEventLoop) and o.is_running()
    ]

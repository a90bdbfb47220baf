from __future__ import annotations

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

    proc = ServerProcess().start()
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

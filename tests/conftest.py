from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from flowengine.language import ir, load_project

if TYPE_CHECKING:
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

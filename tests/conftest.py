from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from flowengine.language import ir, load_project

ROOT = Path(__file__).resolve().parent.parent
FLOWS = ROOT / "flows"


@pytest.fixture(scope="session")
def project() -> ir.Project:
    result = load_project([FLOWS])
    assert result.ok, result.render()
    assert result.project is not None
    return result.project


@pytest.fixture
def today() -> date:
    return date(2026, 11, 22)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from tests.redis_server import RedisServer

    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()

"""One contract, four backends: every shipped conversation test runs on the demo orders, on a
merchant's HTTP API, on Shopify and on WooCommerce (local stand-ins answering in each platform's
documented shapes, seeded with the same orders), and must take the same path through the flows:
the same steps, the same exits (ok, not_found, error, throttled), the same end.

Texts may differ where the platforms do (a return's number is `#1005-R1` on Shopify,
`RMA-1005-001` on the demo); the path may not.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from flowengine.actions.orders import OrderBackend
from flowengine.language import load_project
from flowengine.testing.runner import Report, load_tests, run_case
from flowengine.testing.runner import TestCase as Case
from tests.platforms.order_api import LocalOrderApi
from tests.platforms.shopify import LocalShopify
from tests.platforms.woocommerce import LocalWooCommerce

ROOT = Path(__file__).resolve().parent.parent
TODAY = date.today()

Backend = Callable[[], contextlib.AbstractAsyncContextManager[OrderBackend]]


@contextlib.asynccontextmanager
async def _demo() -> AsyncIterator[OrderBackend]:
    from flowengine.actions.demo_backend import DemoBackend

    yield DemoBackend(TODAY)


def _served(local: Any) -> Backend:
    """A backend talking to a fresh local stand-in (`local(today)`, served in this loop)."""

    @contextlib.asynccontextmanager
    async def backend() -> AsyncIterator[OrderBackend]:
        async with local(TODAY) as shop:
            made = shop.backend()
            try:
                yield made
            finally:
                await made.aclose()

    return backend


BACKENDS: dict[str, Backend] = {
    "http": _served(LocalOrderApi),
    "shopify": _served(LocalShopify),
    "woocommerce": _served(LocalWooCommerce),
}


def _cases() -> tuple[Any, list[Case]]:
    loaded = load_project([str(ROOT / "flows")])
    assert loaded.project is not None
    cases: list[Case] = []
    for path in sorted((ROOT / "flows" / "tests").glob("*.test.yaml")):
        found, problems = load_tests(path, loaded.project)
        assert not problems
        cases.extend(found)
    return loaded.project, cases


PROJECT, CASES = _cases()


async def _path(case: Case, backend: Backend) -> tuple[list[str], list[tuple[str, ...]]]:
    """The case's failures and the steps it visited, in its first locale, on a fresh shop."""
    report = Report()
    async with backend() as orders:
        outcome = await run_case(case, PROJECT, case.locales[0], TODAY, report, orders)
    return outcome.failures, sorted(report.visited)


@pytest.mark.parametrize("kind", list(BACKENDS))
async def test_every_conversation_takes_the_same_path_on_every_backend(kind: str) -> None:
    differ = []
    for case in CASES:
        expected_failures, expected = await _path(case, _demo)
        assert not expected_failures, (case.name, expected_failures)
        _texts, visited = await _path(case, BACKENDS[kind])
        if visited != expected:
            only_demo = sorted(set(expected) - set(visited))
            only_here = sorted(set(visited) - set(expected))
            differ.append(f"{case.file}:{case.line} {case.name}: {only_demo} / {only_here}")
    assert not differ, "\n".join(differ)

"""Every module imports on its own, first: no import cycle hides behind the order in which the
app happens to import things (`import flowengine.actions.orders` once failed, first)."""

from __future__ import annotations

import importlib
import pkgutil
import sys

import pytest

import flowengine

MODULES = sorted(
    m.name
    for m in pkgutil.walk_packages(flowengine.__path__, "flowengine.")
    if not m.name.endswith("__main__")
)


@pytest.fixture
def fresh() -> None:
    """Forget every flowengine module (and put them back after), so the next import is first."""
    saved = {k: v for k, v in sys.modules.items() if k.startswith("flowengine")}
    for name in saved:
        del sys.modules[name]
    yield
    for name in [k for k in sys.modules if k.startswith("flowengine")]:
        del sys.modules[name]
    sys.modules.update(saved)


@pytest.mark.parametrize("module", MODULES)
def test_a_module_imports_first(module: str, fresh: None) -> None:
    importlib.import_module(module)

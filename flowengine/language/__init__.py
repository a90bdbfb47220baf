"""The flow language: YAML source -> schema check -> IR graph -> semantic checks.

`load_project` and `LoadResult` are imported when first asked for: the project loader checks
calls against the action registry, whose actions use this package's validators, so importing
the loader here at once would make `import flowengine.actions.orders` circular.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .diagnostics import Diagnostic, Severity

if TYPE_CHECKING:
    from .project import LoadResult, load_project

__all__ = ["Diagnostic", "LoadResult", "Severity", "load_project"]


def __getattr__(name: str) -> Any:
    if name in ("LoadResult", "load_project"):
        from . import project

        return getattr(project, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

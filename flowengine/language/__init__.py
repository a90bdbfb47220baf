"""The flow language: YAML source -> schema check -> IR graph -> semantic checks."""

from .diagnostics import Diagnostic, Severity
from .project import LoadResult, load_project

__all__ = ["Diagnostic", "LoadResult", "Severity", "load_project"]

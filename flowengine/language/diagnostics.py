"""Diagnostics: what the loader and the checks report, as data.

Every problem is a `Diagnostic` (code, severity, file, line, column, message, hint). Nothing
raises on a bad flow; all problems of a run are collected and printed together, like a compiler:

    flows/track_order.yaml:12:7: error[E104]: next step 'lookupp' does not exist
       12 |     next: lookupp
          |           ^^^^^^^
       = hint: did you mean 'lookup'?
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, slots=True)
class Position:
    """A 1-based line and column in a source file; `length` is how many characters to underline."""

    line: int
    column: int
    length: int = 1


UNKNOWN_POSITION = Position(1, 1)


@dataclass(frozen=True, slots=True)
class Diagnostic:
    code: str
    message: str
    file: str
    position: Position = UNKNOWN_POSITION
    severity: Severity = Severity.ERROR
    hint: str | None = None

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def headline(self) -> str:
        p = self.position
        return f"{self.file}:{p.line}:{p.column}: {self.severity}[{self.code}]: {self.message}"

    def render(self, source_lines: list[str] | None = None) -> str:
        """The headline, the offending line with a caret under it, and the hint."""
        out = [self.headline()]
        p = self.position
        if source_lines and 1 <= p.line <= len(source_lines):
            text = source_lines[p.line - 1].rstrip("\n")
            gutter = f"{p.line:>5} | "
            out.append(gutter + text)
            width = max(1, min(p.length, len(text) - p.column + 1))
            out.append(" " * (len(gutter) - 2) + "| " + " " * (p.column - 1) + "^" * width)
        if self.hint:
            out.append(f"      = hint: {self.hint}")
        return "\n".join(out)

    def to_dict(self) -> dict[str, object]:
        return {
            "code": self.code,
            "severity": str(self.severity),
            "file": self.file,
            "line": self.position.line,
            "column": self.position.column,
            "message": self.message,
            "hint": self.hint,
        }


def closest(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate a misspelt name most likely meant, or None when nothing is close."""
    matches = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return matches[0] if matches else None


def did_you_mean(word: str, candidates: Iterable[str]) -> str | None:
    """A 'did you mean' hint for a misspelt name, or None when nothing is close."""
    match = closest(word, candidates)
    return f"did you mean '{match}'?" if match else None


def sort_key(d: Diagnostic) -> tuple[str, int, int, str]:
    return (d.file, d.position.line, d.position.column, d.code)

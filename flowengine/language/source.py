"""YAML text -> plain Python data plus the source position of every key and value.

PyYAML's composer gives nodes with marks; we build the data ourselves so that every value (and
every mapping key) keeps its line and column, addressed by its path from the document root
(`("steps", 3, "next")`). Duplicate keys, which PyYAML silently collapses, are reported, and
alias expansion is bounded so a "billion laughs" document cannot blow up memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from .diagnostics import Diagnostic, Position

Path = tuple[str | int, ...]

MAX_SOURCE_BYTES = 1024 * 1024
MAX_NODES = 100_000

try:  # the C loader is much faster where libyaml is present; both give the same marks
    _Loader: type[yaml.SafeLoader | yaml.CSafeLoader] = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - depends on how PyYAML was built
    _Loader = yaml.SafeLoader


@dataclass
class SourceMap:
    """Where each value and each mapping key of a document stands in its file."""

    file: str
    lines: list[str]
    values: dict[Path, Position] = field(default_factory=dict)
    keys: dict[Path, Position] = field(default_factory=dict)

    def value(self, path: Path) -> Position:
        """The position of the value at `path`, or of its nearest ancestor that has one."""
        while path not in self.values and path:
            path = path[:-1]
        return self.values.get(path, Position(1, 1))

    def key(self, path: Path) -> Position:
        """The position of the key that holds the value at `path` (falls back to the value)."""
        return self.keys.get(path) or self.value(path)


@dataclass
class Document:
    data: Any
    source: SourceMap


class _TooLarge(Exception):
    pass


def _position(node: yaml.Node) -> Position:
    start, end = node.start_mark, node.end_mark
    length = end.column - start.column if end.line == start.line else 1
    return Position(start.line + 1, start.column + 1, max(1, length))


def load_document(text: str, file: str) -> tuple[Document | None, list[Diagnostic]]:
    """Parse one YAML document. Returns (document, []) or (None, [diagnostics])."""
    lines = text.splitlines()
    smap = SourceMap(file=file, lines=lines)
    if len(text.encode("utf-8", "surrogatepass")) > MAX_SOURCE_BYTES:
        return None, [
            Diagnostic("E002", f"file is larger than {MAX_SOURCE_BYTES // 1024} KiB", file)
        ]
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        problem = exc.problem or exc.context or "invalid YAML"
        # "end of stream" is found at the bottom of the file; what is unclosed started earlier.
        mark = exc.problem_mark
        if exc.context_mark is not None and (mark is None or "end of stream" in problem):
            mark = exc.context_mark
            if exc.context:
                problem = f"{problem} ({exc.context})"
        pos = Position(mark.line + 1, mark.column + 1) if mark else Position(1, 1)
        tab = _indenting_tab(lines, pos.line)
        if tab is not None:  # PyYAML names it "a character that cannot start any token"
            return None, [
                Diagnostic(
                    "E001",
                    "tab character in indentation; YAML uses spaces",
                    file,
                    tab,
                    hint="replace the tab with spaces (set your editor to indent with spaces)",
                )
            ]
        return None, [
            Diagnostic(
                "E001",
                f"YAML syntax error: {problem}",
                file,
                pos,
                hint=_syntax_hint(problem),
            )
        ]
    except yaml.YAMLError as exc:
        return None, [Diagnostic("E001", f"YAML syntax error: {exc}", file)]
    finally:
        loader.dispose()
    if node is None:
        return None, [Diagnostic("E002", "the file is empty", file)]

    problems: list[Diagnostic] = []
    budget = [MAX_NODES]

    def build(n: yaml.Node, path: Path) -> Any:
        budget[0] -= 1
        if budget[0] < 0:
            raise _TooLarge
        smap.values.setdefault(path, _position(n))
        if isinstance(n, yaml.MappingNode):
            out: dict[str, Any] = {}
            for key_node, value_node in n.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    problems.append(
                        Diagnostic("E012", "a key must be plain text", file, _position(key_node))
                    )
                    continue
                key = str(loader.construct_object(key_node))
                if key == "<<":
                    problems.append(
                        Diagnostic(
                            "E012",
                            "merge keys ('<<') are not supported",
                            file,
                            _position(key_node),
                            hint="write the keys out, or use an anchor for a whole value",
                        )
                    )
                    continue
                child = (*path, key)
                if key in out:
                    hint = (
                        f"'{key}' is already set at line {smap.keys[child].line}; "
                        "YAML would silently keep only the last one"
                    )
                    if n.flow_style:
                        hint = (
                            "inside {...} a comma starts a new key: put text that has a "
                            "comma in quotes"
                        )
                    problems.append(
                        Diagnostic(
                            "E003", f"duplicate key '{key}'", file, _position(key_node), hint=hint
                        )
                    )
                    continue
                smap.keys[child] = _position(key_node)
                out[key] = build(value_node, child)
            return out
        if isinstance(n, yaml.SequenceNode):
            return [build(item, (*path, i)) for i, item in enumerate(n.value)]
        value = loader.construct_object(n)
        # Dates and binary are not part of the flow language: keep what the author wrote.
        if not isinstance(value, str | int | float | bool | type(None)):
            return str(n.value)
        return value

    try:
        data = build(node, ())
    except _TooLarge:
        return None, [
            Diagnostic(
                "E002",
                f"the document expands to more than {MAX_NODES} values",
                file,
                hint="anchors and aliases that repeat each other multiply; write the flow out",
            )
        ]
    return Document(data, smap), problems


def _indenting_tab(lines: list[str], number: int) -> Position | None:
    """The tab in the indentation of line `number` (where YAML gave up), if there is one."""
    line = lines[number - 1] if 1 <= number <= len(lines) else ""
    indent = line[: len(line) - len(line.lstrip(" \t"))]
    return Position(number, indent.index("\t") + 1) if "\t" in indent else None


def _syntax_hint(problem: str) -> str | None:
    if "mapping values are not allowed" in problem:
        return "a ':' inside text starts a new key; put the text in quotes"
    if "found character '\\t'" in problem or "tab" in problem:
        return "YAML indents with spaces, not tabs"
    if "expected <block end>" in problem:
        return "check the indentation of this line against the lines above it"
    if "found undefined alias" in problem:
        return "an '*alias' needs an '&anchor' above it"
    return None

"""Load a project: every flow file of a directory (or the files given), checked together.

    result = load_project(["flows"])
    if result.ok: engine runs result.project
    else:         print(result.render())  # every problem, file:line:col, at once

A directory may hold `flowengine.yaml` (project settings: start flow, locales, handoff defaults,
the actions the project declares);
flow files are `*.yaml` / `*.yml` beside it; `*.test.yaml` files and `tests/` hold conversation
tests and are not flows.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..actions.registry import ACTIONS, ActionSpec
from . import checks, ir
from .compiler import compile_actions, compile_flow
from .diagnostics import Diagnostic, Severity, did_you_mean, sort_key
from .schema import check_schema
from .source import Document, load_document

PROJECT_FILE = "flowengine.yaml"
# A flow's name as written on its own line, read from a file that is not valid YAML.
_FLOW_NAME = re.compile(
    r"""^flow:[ \t]*["']?(?P<name>[A-Za-z_][A-Za-z0-9_]*)["']?[ \t]*(?:#.*)?$""", re.M
)


@dataclass
class LoadResult:
    project: ir.Project | None
    diagnostics: list[Diagnostic] = field(default_factory=list)
    sources: dict[str, list[str]] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)  # every file read, as text
    files: list[str] = field(default_factory=list)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.is_error]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if not d.is_error]

    @property
    def ok(self) -> bool:
        return self.project is not None and not self.errors

    def render(self, *, include_warnings: bool = True) -> str:
        shown = [d for d in self.diagnostics if include_warnings or d.is_error]
        return "\n\n".join(d.render(self.sources.get(d.file)) for d in shown)


def is_test_file(path: Path) -> bool:
    return path.name.endswith((".test.yaml", ".test.yml"))


def flow_files(paths: Iterable[str | Path]) -> tuple[list[Path], Path | None]:
    """The flow files named by `paths` (files or directories) and the project file, if any."""
    files: list[Path] = []
    project_file: Path | None = None
    for p in map(Path, paths):
        if p.is_dir():
            if (p / PROJECT_FILE).is_file():
                project_file = p / PROJECT_FILE
            for f in sorted([*p.glob("*.yaml"), *p.glob("*.yml")]):
                if f.name != PROJECT_FILE and not is_test_file(f):
                    files.append(f)
        elif p.name == PROJECT_FILE:
            project_file = p
        else:
            files.append(p)
            if project_file is None and (p.parent / PROJECT_FILE).is_file():
                project_file = p.parent / PROJECT_FILE
    return files, project_file


def _read_text(path: Path, result: LoadResult) -> str | None:
    try:
        return path.read_text("utf-8")
    except FileNotFoundError:
        result.diagnostics.append(Diagnostic("E002", "file not found", str(path)))
    except (OSError, UnicodeDecodeError) as exc:
        result.diagnostics.append(Diagnostic("E002", f"cannot read the file: {exc}", str(path)))
    return None


def _parse(name: str, text: str, result: LoadResult) -> Document | None:
    result.sources[name] = text.splitlines()
    result.texts[name] = text
    doc, problems = load_document(text, name)
    result.diagnostics.extend(problems)
    if doc is not None and not isinstance(doc.data, dict):
        result.diagnostics.append(
            Diagnostic("E002", "a flow file must be a mapping (flow: ..., steps: ...)", name)
        )
        return None
    return doc


def _settings(
    source: tuple[str, str] | None, result: LoadResult
) -> tuple[ir.ProjectSettings, Document | None, Document | None]:
    """The settings, the project file when its settings are valid, and the project file (its
    declared actions are compiled one by one, so a broken one does not hide the others)."""
    if source is None:
        return ir.ProjectSettings(), None, None
    doc = _parse(*source, result)
    if doc is None:
        return ir.ProjectSettings(), None, None
    problems = check_schema(doc.data, doc.source, "project")
    result.diagnostics.extend(problems)
    if problems:
        return ir.ProjectSettings(), None, doc
    data = doc.data
    handoff = data.get("handoff", {})
    default = ir.ProjectSettings()
    return (
        ir.ProjectSettings(
            start=data.get("start", default.start),
            locales=tuple(data.get("locales", default.locales)),
            handoff_queue=handoff.get("queue", default.handoff_queue),
            handoff_priority=handoff.get("priority", default.handoff_priority),
            on_offline=handoff.get("on_offline"),
            on_timeout=handoff.get("on_timeout"),
            handoff_csat=bool(handoff.get("csat", default.handoff_csat)),
            misses_before_person=data.get("intents", {}).get(
                "misses_before_person", default.misses_before_person
            ),
            keep_unmatched=bool(data.get("intents", {}).get("keep_unmatched", False)),
        ),
        doc,
        doc,
    )


def load_project(
    paths: Iterable[str | Path], actions: Mapping[str, ActionSpec] = ACTIONS
) -> LoadResult:
    """Read, schema-check, compile and check every flow; all problems are collected."""
    given = [Path(p) for p in paths]
    named = [p for p in given if p.is_file() and p.name != PROJECT_FILE]
    # A file of a project is checked with its sibling flows, so links to them resolve;
    # only the named files' problems are reported.
    context = [p.parent for p in named if (p.parent / PROJECT_FILE).is_file()]
    files, project_path = flow_files([*given, *dict.fromkeys(context)])
    # The same file reached as named and through its directory is read once, as named.
    unique: dict[Path, Path] = {}
    for f in files:
        unique.setdefault(f.resolve(), f)
    files = list(unique.values())
    result = LoadResult(project=None, files=[str(f) for f in files])
    texts = {str(f): t for f in files if (t := _read_text(f, result)) is not None}
    settings_source = None
    if project_path is not None and (t := _read_text(project_path, result)) is not None:
        settings_source = (str(project_path), t)
    compile_sources(texts, settings_source, result, actions)
    if context:
        focus = {p.resolve() for p in named}
        result.files = [str(p) for p in named]
        result.diagnostics = [d for d in result.diagnostics if Path(d.file).resolve() in focus]
    result.diagnostics.sort(key=sort_key)
    return result


def compile_sources(
    texts: Mapping[str, str],
    settings_source: tuple[str, str] | None = None,
    result: LoadResult | None = None,
    actions: Mapping[str, ActionSpec] = ACTIONS,
) -> LoadResult:
    """Compile flows given as {file name: YAML text} (and the project file), checked together.

    This is how a server rebuilds a pinned flow version from the sources kept in the store.
    """
    result = result or LoadResult(project=None, files=list(texts))
    settings, settings_doc, project_doc = _settings(settings_source, result)
    declared: dict[str, ir.DeclaredAction] = {}
    if project_doc is not None:
        declared, specs, problems = compile_actions(project_doc, actions)
        result.diagnostics.extend(problems)
        actions = {**actions, **specs}
    flows: dict[str, ir.Flow] = {}
    docs: dict[str, Document] = {}
    # Flows that failed their own checks: still known by name, so what links to them reports
    # no follow-on errors (checks.py).
    broken: set[str] = set()
    for name, text in texts.items():
        doc = _parse(name, text, result)
        if doc is None:
            if (m := _FLOW_NAME.search(text)) is not None:  # a YAML error: its name, as written
                broken.add(m["name"])
            continue
        schema_problems = check_schema(doc.data, doc.source)
        result.diagnostics.extend(schema_problems)
        if schema_problems:
            if isinstance(doc.data.get("flow"), str):
                broken.add(doc.data["flow"])
            continue
        flow, problems = compile_flow(doc, settings, actions)
        result.diagnostics.extend(problems)
        if flow is None:
            continue
        if any(d.is_error for d in problems):
            broken.add(flow.name)
        if flow.name in flows:
            first = flows[flow.name]
            result.diagnostics.append(
                Diagnostic(
                    "E102",
                    f"duplicate flow name '{flow.name}'",
                    flow.file,
                    doc.source.value(("flow",)),
                    hint=f"'{flow.name}' is already the name of {first.file}",
                )
            )
            continue
        flows[flow.name] = flow
        docs[flow.name] = doc

    if settings_source is None and settings.start not in flows and flows:
        # Flows checked without a project file: the first one is where a conversation starts.
        settings = replace(settings, start=next(iter(flows)))
    # A declared action is part of the version: a session pinned to it keeps its requests.
    declarations = project_doc.data.get("actions") if project_doc is not None else None
    version = hashlib.sha256(
        "".join(f"{n}:{f.version};" for n, f in sorted(flows.items())).encode()
        + repr(settings).encode()
        + (json.dumps(declarations, sort_keys=True, default=str).encode() if declarations else b"")
    ).hexdigest()[:12]
    project = ir.Project(flows, settings, version, declared)
    known_broken = frozenset(broken)
    for flow in flows.values():
        for check in checks.FLOW_CHECKS:
            result.diagnostics.extend(check(flow, project, known_broken))
        for document_check in checks.DOCUMENT_CHECKS:
            result.diagnostics.extend(document_check(flow, project, docs[flow.name]))
    result.diagnostics.extend(checks.check_busy_loops(project))
    result.diagnostics.extend(checks.check_intents(project))
    if settings_doc is not None:
        result.diagnostics.extend(_check_settings(settings, project, settings_doc, known_broken))
    result.diagnostics.sort(key=sort_key)
    if texts or flows:
        result.project = project
    return result


def _check_settings(
    settings: ir.ProjectSettings, project: ir.Project, doc: Document, broken: frozenset[str]
) -> Iterable[Diagnostic]:
    """E117: the project's start or fallback flow does not exist (a broken one exists)."""
    wanted = [
        (("start",), settings.start),
        (("handoff", "on_offline"), settings.on_offline),
        (("handoff", "on_timeout"), settings.on_timeout),
    ]
    for path, flow in wanted:
        if flow is not None and flow not in project.flows and flow not in broken:
            name = ".".join(path)
            yield Diagnostic(
                "E117",
                f"{name} flow '{flow}' does not exist",
                doc.source.file,
                doc.source.value(path),
                severity=Severity.ERROR,
                hint=did_you_mean(flow, project.flows)
                or "flows: " + ", ".join(sorted(project.flows)),
            )

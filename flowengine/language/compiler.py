"""A schema-valid flow document -> the IR graph (`ir.Flow`), reporting what cannot be lowered.

Lowering gives every step a key, compiles its text, templates and conditions, and resolves every
target. Inline branch steps (`cases: {shipped: {say: ...}}`) become steps of their own that
continue after the branching step. Problems found here (duplicate ids, unknown targets, a template
that does not parse, a branch without a default, a step list that runs off its end) are reported
with the position of the offending key; the graph-wide checks live in `checks.py`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..actions.registry import ACTIONS, ActionSpec
from . import ir
from .diagnostics import Diagnostic, did_you_mean
from .source import Document, Path
from .templates import Expression, Template, TemplateProblem, expression, template
from .templates import value as template_value
from .text import Text, normalise_locale
from .validators import BUILTIN, NAMES, number_validator, regex_problem, regex_validator


@dataclass(frozen=True, slots=True)
class _Key:
    """A continuation that is already a step key."""

    key: str


@dataclass(frozen=True, slots=True)
class _UserTarget:
    """A continuation the author wrote, still to be resolved."""

    raw: str
    path: Path
    field: str


Continuation = _Key | _UserTarget | None


class _Lowering:
    def __init__(
        self, doc: Document, settings: ir.ProjectSettings, actions: Mapping[str, ActionSpec]
    ) -> None:
        self.doc = doc
        self.data: dict[str, Any] = doc.data
        self.src = doc.source
        self.file = doc.source.file
        self.settings = settings
        self.actions = actions
        self.problems: list[Diagnostic] = []
        self.steps: dict[str, ir.AnyStep] = {}
        # One lowering per registered step kind (ir.STEP_KINDS).
        self.lowering: dict[str, Callable[[dict[str, Any], Path, str], ir.AnyStep]] = {
            "say": self.lower_say,
            "menu": self.lower_menu,
            "ask": self.lower_ask,
            "call": self.lower_call,
            "switch": self.lower_switch,
            "if": self.lower_if,
            "set": self.lower_set,
            "goto": self.lower_goto,
            "link": self.lower_link,
            "handoff": self.lower_handoff,
            "end": self.lower_end,
        }
        self.ids: dict[str, Path] = {}
        self.duplicates: set[Path] = set()
        self.pending: list[tuple[ir.Step, str, _UserTarget]] = []

    # -- diagnostics ---------------------------------------------------------------------
    def error(
        self, code: str, message: str, path: Path, *, key: bool = False, hint: str | None = None
    ) -> None:
        pos = self.src.key(path) if key else self.src.value(path)
        self.problems.append(Diagnostic(code, message, self.file, pos, hint=hint))

    # -- values --------------------------------------------------------------------------
    def text(self, value: str | Mapping[str, str], path: Path) -> Text:
        """Compile text; a template that does not parse is reported at its own locale."""
        items = {"*": value} if isinstance(value, str) else dict(value)
        good: dict[str, str] = {}
        for locale, source in items.items():
            try:
                template(source).check()
                good[locale] = source
            except TemplateProblem as exc:
                self.error(
                    "E113",
                    f"template error: {exc}",
                    path if locale == "*" else (*path, locale),
                    hint=exc.hint or "write variables as {{ name }} and conditions as {% if ... %}",
                )
        return Text.of(good or "")

    def template(
        self, value: Any, path: Path, *, native: bool = False
    ) -> Template | Expression | Any:
        if not isinstance(value, str):
            return value
        try:
            return (template_value(value) if native else template(value)).check()
        except TemplateProblem as exc:
            self.error("E113", f"template error: {exc}", path, hint=exc.hint)
            return template("")

    def expression(self, source: str, path: Path) -> Expression | None:
        try:
            return expression(source).check()
        except TemplateProblem as exc:
            self.error(
                "E113",
                f"expression error: {exc}",
                path,
                hint=exc.hint or "write conditions like order.status == 'shipped'",
            )
            return None

    # -- structure -----------------------------------------------------------------------
    def claim(self, item: dict[str, Any], path: Path, generated: str) -> str:
        """The key of the step at `path`: its id, or `generated` when it has none (or when the
        id is reserved or already taken, which `lower_step` reports)."""
        ident = item.get("id")
        if ident is None or ident in ir.RESERVED_TARGETS:
            return generated
        if ident in self.ids:
            self.duplicates.add(path)
            return generated
        self.ids[ident] = path
        return str(ident)

    def keys_for(self, items: list[dict[str, Any]], path: Path, prefix: str) -> list[str]:
        return [self.claim(item, (*path, i), f"{prefix}[{i}]") for i, item in enumerate(items)]

    def lower_list(
        self, items: list[dict[str, Any]], path: Path, prefix: str, cont: Continuation
    ) -> str:
        keys = self.keys_for(items, path, prefix)
        for i, (item, key) in enumerate(zip(items, keys, strict=True)):
            after: Continuation = _Key(keys[i + 1]) if i + 1 < len(items) else cont
            self.lower_step(item, (*path, i), key, after)
        return keys[0]

    def lower_branch(
        self, value: Any, path: Path, key: str, cont: Continuation, step: ir.Step, label: str
    ) -> None:
        if isinstance(value, str):
            self.pending.append((step, label, _UserTarget(value, path, label.split(":")[0])))
        elif isinstance(value, dict):
            key = self.claim(value, path, key)
            self.lower_step(value, path, key, cont)
            step.edges[label] = key
        else:
            step.edges[label] = self.lower_list(value, path, key, cont)

    def connect(self, step: ir.Step, label: str, cont: Continuation) -> None:
        if isinstance(cont, _Key):
            step.edges[label] = cont.key
        elif isinstance(cont, _UserTarget):
            self.pending.append((step, label, cont))
        else:
            step.edges[label] = ir.END
            self.error(
                "E106",
                f"dead end: step '{step.key}' is the last step and nothing says what comes next",
                step.path,
                hint="add `next: <step>`, `next: end`, an `end: resolved` step, or a menu after it",
            )

    def target_field(self, raw: dict[str, Any], name: str, path: Path) -> _UserTarget | None:
        if name in raw:
            return _UserTarget(raw[name], (*path, name), name)
        return None

    def lower_step(self, raw: dict[str, Any], path: Path, key: str, cont: Continuation) -> None:
        if "id" in raw:
            ident = raw["id"]
            if ident in ir.RESERVED_TARGETS:
                self.error(
                    "E116",
                    f"'{ident}' is reserved and cannot be a step id",
                    (*path, "id"),
                    hint="`end` and `handoff` are targets every flow has; pick another name",
                )
            elif path in self.duplicates:
                first = self.src.value((*self.ids[ident], "id"))
                self.error(
                    "E101",
                    f"duplicate step id '{ident}'",
                    (*path, "id"),
                    hint=f"'{ident}' is already the id of the step at line {first.line}",
                )
        kind = next(k for k in ir.STEP_KINDS if k.key in raw)  # the schema checked there is one
        step = self.lowering[kind.key](raw, path, key)
        self.steps[key] = step
        if kind.falls_through:
            explicit = self.target_field(raw, "next", path)
            after = explicit or cont
            self.finish(kind.key, raw, path, key, step, after)

    def finish(
        self,
        kind: str,
        raw: dict[str, Any],
        path: Path,
        key: str,
        step: ir.Step,
        after: Continuation,
    ) -> None:
        if kind == "switch":
            for value, branch in raw["cases"].items():
                label = f"case:{value}"
                self.lower_branch(
                    branch, (*path, "cases", value), f"{key}.cases.{value}", after, step, label
                )
            if "default" in raw:
                self.lower_branch(
                    raw["default"], (*path, "default"), f"{key}.default", after, step, "default"
                )
            else:
                self.error(
                    "E107",
                    f"switch '{key}' has no default branch",
                    path,
                    key=True,
                    hint="add `default:`; a value no case expects would strand the shopper",
                )
                step.edges["default"] = ir.HANDOFF
            return
        if kind == "if":
            self.lower_branch(raw["then"], (*path, "then"), f"{key}.then", after, step, "then")
            if "else" in raw:
                self.lower_branch(raw["else"], (*path, "else"), f"{key}.else", after, step, "else")
            else:
                self.error(
                    "E107",
                    f"if '{key}' has no else branch",
                    path,
                    key=True,
                    hint="add `else:` (it may be `else: <next step id>`)",
                )
                step.edges["else"] = ir.HANDOFF
            return
        self.connect(step, "next", after)
        if kind == "ask":
            self.connect(step, "fail", self.target_field(raw, "on_fail", path) or _Key(ir.HANDOFF))
        elif kind == "call":
            on_error = self.target_field(raw, "on_error", path)
            self.connect(
                step, "not_found", self.target_field(raw, "on_not_found", path) or on_error
            )
            on_throttled = self.target_field(raw, "on_throttled", path)
            spec = self.actions.get(raw["call"])
            if on_throttled is not None or (spec is not None and spec.verifies):
                self.connect(step, "throttled", on_throttled or on_error)
            self.connect(step, "error", on_error)
        elif kind == "handoff":
            for field in ("on_offline", "on_timeout"):
                target = self.target_field(raw, field, path)
                if target is not None:
                    self.connect(step, field.removeprefix("on_"), target)

    # -- step kinds ----------------------------------------------------------------------
    def lower_say(self, raw: dict[str, Any], path: Path, key: str) -> ir.AnyStep:
        return ir.Say(key, path, text=self.text(raw["say"], (*path, "say")))

    def lower_menu(self, raw: dict[str, Any], path: Path, key: str) -> ir.AnyStep:
        step = ir.Menu(key, path, text=self.text(raw["menu"], (*path, "menu")))
        if not raw["options"]:
            self.error(
                "E112",
                f"menu '{key}' has no options",
                (*path, "options"),
                hint="a menu waits for a click; give it at least one option",
            )
        seen: dict[str, Path] = {}
        for i, opt in enumerate(raw["options"]):
            opath = (*path, "options", i)
            action = next(a for a in ("goto", "flow", "url", "handoff", "end") if a in opt)
            value = opt[action]
            derived = {
                "goto": value,
                "flow": value,
                "url": f"link{i + 1}",
                "handoff": "handoff",
                "end": f"end_{value}",
            }[action]
            oid = opt.get("id") or derived
            if oid in seen:
                if "id" in opt:
                    self.error(
                        "E101", f"duplicate option id '{oid}' in menu '{key}'", (*opath, "id")
                    )
                oid = f"{oid}_{i + 1}"
            seen[oid] = opath
            handoff = None
            if action == "handoff":
                handoff = self.handoff_spec(value)
                value = None
            option = ir.Option(
                id=oid,
                label=self.text(opt["label"], (*opath, "label")),
                action=action,
                value=value if action != "goto" else None,
                condition=self.expression(opt["if"], (*opath, "if")) if "if" in opt else None,
                handoff=handoff,
                path=opath,
            )
            step.options.append(option)
            label = f"option:{oid}"
            if action == "goto":
                self.pending.append(
                    (step, label, _UserTarget(opt["goto"], (*opath, "goto"), "goto"))
                )
            elif action == "handoff":
                step.edges[label] = ir.HANDOFF
            elif action == "end":
                step.edges[label] = ir.END
        if step.options and all(o.condition is not None for o in step.options):
            self.error(
                "E112",
                f"every option of menu '{key}' has an `if`",
                (*path, "options"),
                hint="keep at least one option without `if` so the shopper always has a way on",
            )
        return step

    def lower_ask(self, raw: dict[str, Any], path: Path, key: str) -> ir.AnyStep:
        step = ir.Ask(key, path, var=raw["ask"], prompt=self.text(raw["prompt"], (*path, "prompt")))
        step.max_tries = raw.get("max_tries", 3)
        retry = raw.get("retry")
        if retry is not None:
            items = retry if isinstance(retry, list) else [retry]
            base = (*path, "retry")
            step.retry = [
                self.text(t, (*base, i) if isinstance(retry, list) else base)
                for i, t in enumerate(items)
            ]
        for i, c in enumerate(raw.get("choices", [])):
            cpath = (*path, "choices", i)
            if isinstance(c, dict):
                label = c.get("label", str(c["value"]))
                step.choices.append(ir.Choice(str(c["value"]), self.text(label, (*cpath, "label"))))
            else:
                step.choices.append(ir.Choice(str(c), self.text(str(c), cpath)))
        if "choices_from" in raw:
            cf = raw["choices_from"]
            cpath = (*path, "choices_from")
            source = self.expression(cf["items"], (*cpath, "items"))
            label = self.template(cf["label"], (*cpath, "label"))
            value = self.template(cf["value"], (*cpath, "value"))
            if source is not None and isinstance(label, Template) and isinstance(value, Template):
                step.choices_from = ir.ChoicesFrom(source, label, value)
        has_choices = bool(step.choices) or "choices_from" in raw
        spec = raw.get("validate")
        vpath = (*path, "validate")
        if spec is None:
            step.validator = None if has_choices else BUILTIN["text"]
        elif isinstance(spec, str):
            if spec == "one_of":
                if not has_choices:
                    self.error(
                        "E118", "`validate: one_of` needs `choices` or `choices_from`", vpath
                    )
                step.validator = None
            elif spec in BUILTIN:
                step.validator = BUILTIN[spec]
            else:
                self.error(
                    "E109",
                    f"unknown validator '{spec}'",
                    vpath,
                    hint=did_you_mean(spec, NAMES)
                    or "validators: " + ", ".join(NAMES) + ", or {regex: '...'}",
                )
                step.validator = BUILTIN["text"]
        elif "regex" in spec:
            problem = regex_problem(spec["regex"])
            if problem:
                self.error(
                    "E114",
                    problem,
                    (*vpath, "regex"),
                    hint="simplify the pattern; it runs on text shoppers type",
                )
                step.validator = BUILTIN["text"]
            else:
                step.validator = regex_validator(spec["regex"])
        else:
            bounds = spec["number"]
            step.validator = number_validator(bounds.get("min"), bounds.get("max"))
        if has_choices and step.validator is not None and spec is not None:
            self.error(
                "E118",
                "an ask with `choices` checks the answer against them; drop `validate`",
                vpath,
            )
        return step

    def lower_call(self, raw: dict[str, Any], path: Path, key: str) -> ir.AnyStep:
        name = raw["call"]
        args = raw.get("with", {})
        step = ir.Call(
            key,
            path,
            action=name,
            save_as=raw.get("save_as"),
            timeout=float(raw.get("timeout", 5.0)),
        )
        step.args = {k: self.template(v, (*path, "with", k), native=True) for k, v in args.items()}
        spec = self.actions.get(name)
        if spec is None:
            self.error(
                "E108",
                f"unknown action '{name}'",
                (*path, "call"),
                hint=did_you_mean(name, self.actions)
                or "actions: " + ", ".join(sorted(self.actions)),
            )
        else:
            for missing in sorted(spec.required - set(args)):
                self.error(
                    "E115",
                    f"action '{name}' needs the argument '{missing}'",
                    (*path, "call"),
                    hint=f"add it under `with:`; {name} takes " + ", ".join(sorted(spec.params)),
                )
            for extra in sorted(set(args) - spec.params):
                self.error(
                    "E115",
                    f"action '{name}' takes no argument '{extra}'",
                    (*path, "with", extra),
                    key=True,
                    hint=did_you_mean(extra, spec.params)
                    or f"{name} takes " + ", ".join(sorted(spec.params)),
                )
        return step

    def lower_switch(self, raw: dict[str, Any], path: Path, key: str) -> ir.AnyStep:
        step = ir.Switch(key, path, subject=self.expression(raw["switch"], (*path, "switch")))
        step.cases = {str(v): f"case:{v}" for v in raw["cases"]}
        return step

    def lower_if(self, raw: dict[str, Any], path: Path, key: str) -> ir.AnyStep:
        return ir.If(key, path, condition=self.expression(raw["if"], (*path, "if")))

    def lower_set(self, raw: dict[str, Any], path: Path, key: str) -> ir.AnyStep:
        return ir.Set(
            key,
            path,
            values={
                k: self.template(v, (*path, "set", k), native=True) for k, v in raw["set"].items()
            },
        )

    def lower_goto(self, raw: dict[str, Any], path: Path, key: str) -> ir.AnyStep:
        step = ir.Goto(key, path)
        self.pending.append((step, "next", _UserTarget(raw["goto"], (*path, "goto"), "goto")))
        return step

    def lower_link(self, raw: dict[str, Any], path: Path, key: str) -> ir.AnyStep:
        return ir.Link(key, path, flow=raw["link"])

    def handoff_spec(self, value: Any) -> ir.HandoffSpec:
        if value is True:
            return ir.HandoffSpec(self.settings.handoff_queue, self.settings.handoff_priority)
        return ir.HandoffSpec(
            queue=value.get("queue", self.settings.handoff_queue),
            priority=value.get("priority", self.settings.handoff_priority),
            reason=value.get("reason"),
        )

    def lower_handoff(self, raw: dict[str, Any], path: Path, key: str) -> ir.AnyStep:
        return ir.Handoff(key, path, spec=self.handoff_spec(raw["handoff"]))

    def lower_end(self, raw: dict[str, Any], path: Path, key: str) -> ir.AnyStep:
        return ir.End(key, path, resolution=raw["end"])

    # -- resolution ----------------------------------------------------------------------
    def resolve(self) -> None:
        ids = list(self.ids)
        reported: set[Path] = set()
        for step, label, target in self.pending:
            if target.raw in ir.RESERVED_TARGETS or target.raw in self.ids:
                step.edges[label] = target.raw
                continue
            step.edges[label] = ir.END
            if target.path in reported:  # one target can serve two edges (on_error, not_found)
                continue
            reported.add(target.path)
            self.error(
                "E104",
                f"{target.field} step '{target.raw}' does not exist",
                target.path,
                hint=did_you_mean(target.raw, ids)
                or "targets are step ids of this flow, `end` or `handoff`",
            )

    def run(self) -> ir.Flow | None:
        data = self.data
        steps = data["steps"]
        first = self.lower_list(steps, ("steps",), "steps", None)
        self.resolve()
        start = data.get("start", first)
        if start not in self.steps and start not in ir.RESERVED_TARGETS:
            self.error(
                "E104",
                f"start step '{start}' does not exist",
                ("start",),
                hint=did_you_mean(start, self.ids),
            )
            start = first
        locales = tuple(normalise_locale(x) for x in data.get("locales", self.settings.locales))
        title = self.text(data.get("title", data["flow"]), ("title",))
        canonical = json.dumps(data, sort_keys=True, ensure_ascii=False, default=str)
        version = hashlib.sha256(canonical.encode()).hexdigest()[:12]
        return ir.Flow(
            name=data["flow"],
            file=self.file,
            title=title,
            locales=locales,
            start=start,
            steps=self.steps,
            source=self.src,
            version=version,
        )


def compile_flow(
    doc: Document,
    settings: ir.ProjectSettings | None = None,
    actions: Mapping[str, ActionSpec] = ACTIONS,
) -> tuple[ir.Flow | None, list[Diagnostic]]:
    """Lower one schema-valid document; the flow comes back even with errors, for more checks."""
    lowering = _Lowering(doc, settings or ir.ProjectSettings(), actions)
    flow = lowering.run()
    return flow, lowering.problems

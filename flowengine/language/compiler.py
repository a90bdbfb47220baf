"""A schema-valid flow document -> the IR graph (`ir.Flow`), reporting what cannot be lowered.

Lowering gives every step a key, compiles its text, templates and conditions, and resolves every
target. Inline branch steps (`cases: {shipped: {say: ...}}`) become steps of their own that
continue after the branching step. Problems found here (duplicate ids, unknown targets, a template
that does not parse, a branch without a default, a step list that runs off its end) are reported
with the position of the offending key; the graph-wide checks live in `checks.py`.

`compile_actions` lowers the project file's `actions:` the same way: each declared HTTP action's
request strings cut into text, `{{ expression }}`s over its params and `${NAME}`s, every problem
(an undeclared name in a template, a host that is not written out) at its position.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..actions.registry import ACTIONS, ActionSpec
from . import ir
from .diagnostics import Diagnostic, Severity, closest, did_you_mean
from .schema import is_valid
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
            "csat": self.lower_csat,
            "end": self.lower_end,
        }
        self.ids: dict[str, Path] = {}
        self.duplicates: set[Path] = set()
        self.texts = _texts_tables(self.data.get("texts") or {})
        self.locales = tuple(
            normalise_locale(x) for x in self.data.get("locales", settings.locales)
        )
        self.pending: list[tuple[ir.Step, str, _UserTarget]] = []

    # -- diagnostics ---------------------------------------------------------------------
    def error(
        self,
        code: str,
        message: str,
        path: Path,
        *,
        key: bool = False,
        hint: str | None = None,
        severity: Severity = Severity.ERROR,
    ) -> None:
        pos = self.src.key(path) if key else self.src.value(path)
        self.problems.append(Diagnostic(code, message, self.file, pos, severity, hint=hint))

    # -- values --------------------------------------------------------------------------
    def text(self, value: str | Mapping[str, str], path: Path) -> Text:
        """Compile text; a template that does not parse is reported at its own locale."""
        items = {"*": value} if isinstance(value, str) else dict(value)
        good: dict[str, str] = {}
        for locale, source in items.items():
            try:
                here = path if locale == "*" else (*path, locale)
                self.check_tables(template(source).check(), here)
                good[locale] = source
            except TemplateProblem as exc:
                self.error(
                    "E113",
                    f"template error: {exc}",
                    path if locale == "*" else (*path, locale),
                    hint=exc.hint or "write variables as {{ name }} and conditions as {% if ... %}",
                )
        return Text.of(good or "")

    def check_tables(self, compiled: Template | Expression, path: Path) -> None:
        """E113 for `translate('x')` when the flow has no `texts: {x: ...}` table."""
        for table in sorted(compiled.tables - set(self.texts)):
            self.error(
                "E113",
                f"`translate('{table}')` reads a texts table this flow does not declare",
                path,
                hint=did_you_mean(table, self.texts)
                or f"declare it at the top of the flow: `texts: {{{table}: {{value: text}}}}`",
            )

    def template(
        self, value: Any, path: Path, *, native: bool = False
    ) -> Template | Expression | Any:
        if not isinstance(value, str):
            return value
        try:
            compiled = (template_value(value) if native else template(value)).check()
            self.check_tables(compiled, path)
            return compiled
        except TemplateProblem as exc:
            self.error("E113", f"template error: {exc}", path, hint=exc.hint)
            return template("")

    def expression(self, source: str, path: Path) -> Expression | None:
        try:
            compiled = expression(source).check()
            self.check_tables(compiled, path)
            return compiled
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
            spec = self.actions.get(raw["call"])
            self.never_taken(raw, path, spec)
            on_not_found = self.target_field(raw, "on_not_found", path)
            # An exit only where the action can take it (coverage counts every edge).
            if on_not_found is not None or spec is None or spec.has_not_found:
                self.connect(step, "not_found", on_not_found or on_error)
            on_throttled = self.target_field(raw, "on_throttled", path)
            if on_throttled is not None or (spec is not None and spec.verifies):
                self.connect(step, "throttled", on_throttled or on_error)
            self.connect(step, "error", on_error)
        elif kind == "csat":
            for answer in ir.CSAT_EXITS.get(raw["csat"], ()):
                target = self.target_field(raw, f"on_{answer}", path)
                if target is not None:
                    self.connect(step, answer, target)
        elif kind == "handoff":
            for field in ("on_offline", "on_timeout"):
                target = self.target_field(raw, field, path)
                if target is not None:
                    self.connect(step, field.removeprefix("on_"), target)

    def never_taken(self, raw: dict[str, Any], path: Path, spec: ActionSpec | None) -> None:
        """An `on_not_found` on an action that never answers not_found (a 404 would take the
        error exit instead: a mistyped code told "the system is down"), an `on_throttled` on
        one that checks no order: the author meant something that cannot happen."""
        if spec is None:
            return
        declared = spec.name not in ACTIONS
        hints = {
            "on_not_found": "remove it, or give the action `answer: {not_found: [404]}`"
            if declared
            else "remove it: this built-in action has no not_found exit",
            "on_throttled": "remove it: only order checks (a number with an email) are throttled",
        }
        for field, possible in (
            ("on_not_found", spec.has_not_found),
            ("on_throttled", spec.verifies),
        ):
            if field in raw and not possible:
                self.error(
                    "W202",
                    f"'{raw['call']}' never answers {field.removeprefix('on_')}, so "
                    f"`{field}` is never taken",
                    (*path, field),
                    key=True,
                    hint=hints[field],
                    severity=Severity.WARNING,
                )

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
                values=self.set_values(opt.get("set", {}), (*opath, "set")),
                intents=self.intents(opt.get("intents", {}), (*opath, "intents")),
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
                step.choices.append(
                    ir.Choice(
                        str(c["value"]),
                        self.text(label, (*cpath, "label")),
                        self.expression(c["if"], (*cpath, "if")) if "if" in c else None,
                    )
                )
            else:
                step.choices.append(ir.Choice(str(c), self.text(str(c), cpath)))
        if "choices_from" in raw:
            cf = raw["choices_from"]
            cpath = (*path, "choices_from")
            source = self.expression(cf["items"], (*cpath, "items"))
            label = self.template(cf["label"], (*cpath, "label"))
            value = self.template(cf["value"], (*cpath, "value"))
            only = self.expression(cf["if"], (*cpath, "if")) if "if" in cf else None
            if source is not None and isinstance(label, Template) and isinstance(value, Template):
                step.choices_from = ir.ChoicesFrom(source, label, value, only)
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
        elif "date" in spec:
            step.validator = BUILTIN["date"]
            step.date_bounds = self.date_bounds(spec["date"], (*vpath, "date"))
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
        spec = self.actions.get(name)
        step = ir.Call(
            key,
            path,
            action=name,
            save_as=raw.get("save_as"),
            timeout=float(raw.get("timeout", spec.timeout if spec else 5.0)),
        )
        step.args = {k: self.template(v, (*path, "with", k), native=True) for k, v in args.items()}
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
        return ir.Set(key, path, values=self.set_values(raw["set"], (*path, "set")))

    def set_values(self, raw: dict[str, Any], path: Path) -> dict[str, Any]:
        """A `set:` mapping (of a step or an option): each value kept typed or rendered."""
        return {k: self.template(v, (*path, k), native=True) for k, v in raw.items()}

    def intents(self, raw: Mapping[str, list[str]], path: Path) -> ir.Examples:
        """`intents:` (of the flow or an option): examples per locale the flow is written in."""
        out: ir.Examples = {}
        for locale, phrases in raw.items():
            loc = normalise_locale(locale)
            if loc not in self.locales:
                self.error(
                    "E121",
                    f"intents in '{locale}', a locale this flow is not written in",
                    (*path, locale),
                    key=True,
                    hint=did_you_mean(loc, self.locales)
                    or "the flow's locales: " + ", ".join(self.locales),
                )
                continue
            out[loc] = tuple(phrases)
        return out

    def date_bounds(self, raw: dict[str, Any], path: Path) -> ir.DateBounds:
        """`{past: true}`, `{future: true}`, `{min: -365, max: 0}` (days from today)."""
        low = raw.get("min", 0 if raw.get("future") else None)
        high = raw.get("max", 0 if raw.get("past") else None)
        contradiction = (raw.get("past") and raw.get("future")) or (
            low is not None and high is not None and low > high
        )
        if contradiction:
            self.error(
                "E118",
                "no date can pass these bounds"
                + (f" (min {low} is after max {high})" if not raw.get("future") else ""),
                path,
                hint="`past: true` is up to today, `future: true` from today; "
                "`min`/`max` are days from today (min -365, max 0: within the last year)",
            )
            return ir.DateBounds()
        return ir.DateBounds(low, high)

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

    def lower_csat(self, raw: dict[str, Any], path: Path, key: str) -> ir.AnyStep:
        scale = raw["csat"]
        for other, answers in ir.CSAT_EXITS.items():
            for answer in answers:
                field = f"on_{answer}"
                if other != scale and answer not in ir.CSAT_EXITS[scale] and field in raw:
                    self.error(
                        "E119",
                        f"`{field}` is an exit of `csat: {other}`, not of `csat: {scale}`",
                        (*path, field),
                        key=True,
                        hint=f"`csat: {scale}` has "
                        + ", ".join(f"`on_{a}`" for a in ir.CSAT_EXITS[scale])
                        + "; every other answer takes `next`",
                    )
        prompt = self.text(raw["prompt"], (*path, "prompt")) if "prompt" in raw else None
        return ir.Csat(key, path, scale=scale, prompt=prompt)

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
            # Checked on as if the typo were fixed (or, with no close id, as leading to a step
            # nobody knows), so it causes no follow-on errors (E105, E110).
            step.edges[label] = closest(target.raw, ids) or target.raw
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
        title = self.text(data.get("title", data["flow"]), ("title",))
        canonical = json.dumps(data, sort_keys=True, ensure_ascii=False, default=str)
        version = hashlib.sha256(canonical.encode()).hexdigest()[:12]
        return ir.Flow(
            name=data["flow"],
            file=self.file,
            title=title,
            locales=self.locales,
            start=start,
            steps=self.steps,
            source=self.src,
            version=version,
            texts=self.texts,
            intents=self.intents(data.get("intents", {}), ("intents",)),
            titled="title" in data,
        )


def _texts_tables(raw: Mapping[str, Any]) -> dict[str, dict[str, dict[str, str]]]:
    """`texts:` -> table -> value -> locale -> text (a plain string: the same in every locale)."""

    def by_locale(text: str | Mapping[str, str]) -> dict[str, str]:
        if isinstance(text, str):
            return {"*": text}
        return {normalise_locale(k): text[k] for k in text}

    return {table: {str(v): by_locale(t) for v, t in rows.items()} for table, rows in raw.items()}


def compile_flow(
    doc: Document,
    settings: ir.ProjectSettings | None = None,
    actions: Mapping[str, ActionSpec] = ACTIONS,
) -> tuple[ir.Flow | None, list[Diagnostic]]:
    """Lower one schema-valid document; the flow comes back even with errors, for more checks."""
    lowering = _Lowering(doc, settings or ir.ProjectSettings(), actions)
    flow = lowering.run()
    return flow, lowering.problems


# -- actions the project declares (`actions:` in flowengine.yaml) -----------------------------

ACTION_NAME = re.compile(r"[a-z_]+\.[a-z_]+")  # what a `call:` can name (flow.schema.json)
FIELD_NAME = re.compile(r"[a-z_][a-z0-9_]*")  # params and kept fields: variables in templates
ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")
HEADER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")
RESERVED_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
DEFAULT_ACTION_TIMEOUT = 5.0
# `{{ expression }}`, `${NAME}`, or the start of something a request string cannot hold.
_REQUEST_TOKEN = re.compile(
    r"\{\{(?P<expr>.*?)\}\}|\$\{(?P<env>[^{}$]*)\}|(?P<bad>\{\{|\{%|\{#|\$\{)", re.DOTALL
)
# `$NAME` without braces: meant as an environment variable, but text to a request.
_BARE_ENV = re.compile(r"\$([A-Z_][A-Z0-9_]*)")
# A url's scheme and host, written out: a value can only ever land after them.
_URL_HOST = re.compile(r"https?://(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::\d{1,5})?(?=[/?]|$)")


class _ActionLowering:
    """The project file's `actions:` -> `ir.DeclaredAction`s, reporting what cannot work."""

    def __init__(self, doc: Document, builtin: Mapping[str, ActionSpec]) -> None:
        self.src = doc.source
        self.raw: dict[str, Any] = doc.data.get("actions") or {}
        self.builtin = builtin
        self.problems: list[Diagnostic] = []

    def error(
        self, code: str, message: str, path: Path, *, key: bool = False, hint: str | None = None
    ) -> None:
        pos = self.src.key(path) if key else self.src.value(path)
        self.problems.append(Diagnostic(code, message, self.src.file, pos, hint=hint))

    def run(self) -> tuple[dict[str, ir.DeclaredAction], dict[str, ActionSpec]]:
        declared: dict[str, ir.DeclaredAction] = {}
        specs: dict[str, ActionSpec] = {}
        if not isinstance(self.raw, dict):  # the schema said so
            return declared, specs
        for name, raw in self.raw.items():
            path: Path = ("actions", name)
            if not ACTION_NAME.fullmatch(name):
                self.error(
                    "E012",
                    f"action name '{name}' is not namespace.name",
                    path,
                    key=True,
                    hint="lower-case letters and _ around one dot, as `call:` takes them: "
                    "stock.check, shop.exchange",
                )
            elif name in self.builtin:
                self.error(
                    "E102",
                    f"'{name}' is already the name of a built-in action",
                    path,
                    key=True,
                    hint="declare it in your own namespace (stock.check, shop.lookup); "
                    "built-in: " + ", ".join(sorted(self.builtin)),
                )
            elif not is_valid(raw, "project", "action"):
                # Its problems are reported by the schema; calls of it are still checked
                # against the params it names, without follow-on "unknown action" errors.
                params = raw.get("params") if isinstance(raw, dict) else None
                specs[name] = _spec(name, params if isinstance(params, dict) else {}, False, 5.0)
            else:
                action = self.action(name, raw, path)
                declared[name] = action
                specs[name] = declared_spec(action)
        return declared, specs

    def action(self, name: str, raw: dict[str, Any], path: Path) -> ir.DeclaredAction:
        params: dict[str, str] = raw.get("params", {})
        for param in params:
            if not FIELD_NAME.fullmatch(param):
                self.error(
                    "E012",
                    f"param name '{param}' is not a name",
                    (*path, "params", param),
                    key=True,
                    hint="lower-case letters, digits and _, starting with a letter or _",
                )
        known = frozenset(params)
        request = raw["request"]
        rpath = (*path, "request")
        method = request.get("method", "GET")
        url = self.text(request["url"], (*rpath, "url"), name, known, env=False)
        self.check_url(url, (*rpath, "url"))
        headers = {}
        for header, value in request.get("headers", {}).items():
            hpath = (*rpath, "headers", header)
            if not HEADER_NAME.fullmatch(header):
                self.error("E012", f"'{header}' is not a header name", hpath, key=True)
            elif header.lower() in RESERVED_HEADERS:
                self.error(
                    "E012",
                    f"the header '{header}' is flowengine's to set",
                    hpath,
                    key=True,
                    hint="the host comes from `url`, the length from `body`",
                )
            headers[header] = self.text(value, hpath, name, known, env=True)
        body = None
        if "body" in request:
            if method not in BODY_METHODS:
                self.error(
                    "E012",
                    f"a {method} request has no body",
                    (*rpath, "body"),
                    key=True,
                    hint="send a body with POST, PUT or PATCH; with GET, put values in the url",
                )
            body = self.body(request["body"], (*rpath, "body"), name, known)
        answer = raw["answer"]
        apath = (*path, "answer")
        ok = frozenset(answer.get("ok", [200]))
        not_found = frozenset(answer.get("not_found", []))
        for status in sorted(ok & not_found):
            self.error(
                "E012",
                f"status {status} is both ok and not_found",
                (*apath, "not_found"),
                hint="a status takes one exit",
            )
        keep = {}
        for result_field, where in answer["keep"].items():
            if not FIELD_NAME.fullmatch(result_field):
                self.error(
                    "E012",
                    f"result field '{result_field}' is not a name",
                    (*apath, "keep", result_field),
                    key=True,
                    hint="flows read it as `{{ saved.field }}`: lower-case letters, digits, _",
                )
            keep[result_field] = tuple(where.split("."))
        return ir.DeclaredAction(
            name=name,
            required=frozenset(p for p, v in params.items() if v == "required"),
            optional=frozenset(p for p, v in params.items() if v != "required"),
            method=method,
            url=url,
            headers=headers,
            body=body,
            timeout=float(request.get("timeout", DEFAULT_ACTION_TIMEOUT)),
            ok=ok,
            not_found=not_found,
            keep=keep,
            description=raw.get("description", ""),
        )

    def text(
        self, source: str, path: Path, action: str, params: frozenset[str], *, env: bool
    ) -> ir.RequestText:
        """Cut a request string into text, `{{ expression }}`s and (in headers) `${NAME}`s."""
        pieces: list[str | Expression | ir.Env] = []
        at, bad_reported = 0, False  # what cannot be in a request: reported once per string
        for m in _REQUEST_TOKEN.finditer(source):
            if m.start() > at:
                pieces.append(source[at : m.start()])
            at = m.end()
            if m["expr"] is not None:
                try:
                    expr = expression(m["expr"].strip()).check()
                except TemplateProblem as exc:
                    self.error("E113", f"template error: {exc}", path, hint=exc.hint)
                    continue
                for unknown in sorted(expr.names - params):
                    self.error(
                        "E110",
                        f"the request of '{action}' uses '{unknown}', which is not one of "
                        "its params",
                        path,
                        hint=did_you_mean(unknown, params)
                        or "a request sees only the call's arguments: declare it under "
                        f"`actions.{action}.params`",
                    )
                pieces.append(expr)
            elif m["env"] is not None:
                if not env:
                    self.error(
                        "E012",
                        "`${...}` is read from the environment in `headers` only",
                        path,
                        hint='keep secrets in headers (Authorization: "Bearer ${API_TOKEN}")',
                    )
                elif not ENV_NAME.fullmatch(m["env"]):
                    self.error(
                        "E012",
                        f"'${{{m['env']}}}' is not an environment variable",
                        path,
                        hint="write it as ${NAME}: capital letters, digits and _",
                    )
                else:
                    pieces.append(ir.Env(m["env"]))
            elif bad_reported:
                continue
            elif m["bad"] == "${":
                bad_reported = True
                self.error("E012", "`${` without `}`", path, hint="write ${NAME}")
            else:
                bad_reported = True
                self.error(
                    "E113",
                    f"template error: '{m['bad']}' in a request",
                    path,
                    hint="a request holds text and {{ expression }} only (no {% %}, {# #}); "
                    "close every {{ with }}",
                )
        if at < len(source):
            pieces.append(source[at:])
        for piece in pieces:
            bare = _BARE_ENV.search(piece) if isinstance(piece, str) else None
            if bare is not None:  # a shell habit: sent as the letters `$TOKEN`, not the secret
                self.error(
                    "E012",
                    f"'{bare[0]}' would be sent as it is written",
                    path,
                    hint=f"to read it from the environment write ${{{bare[1]}}}"
                    + ("" if env else " (in `headers`)"),
                )
                break
        return ir.RequestText(tuple(pieces))

    def check_url(self, url: ir.RequestText, path: Path) -> None:
        """Values go into the path and the query, never into the scheme or the host."""
        start, values_follow = "", False
        for piece in url.pieces:
            if not isinstance(piece, str):
                values_follow = True
                break
            start += piece
        host = _URL_HOST.match(start)
        if host is None or (host.end() == len(start) and values_follow):
            self.error(
                "E012",
                "a url starts with http:// or https:// and its host, written out",
                path,
                hint="values go after the host: https://shop.example/api/stock/{{ sku }}",
            )

    def body(self, value: Any, path: Path, action: str, params: frozenset[str]) -> Any:
        if isinstance(value, str):
            return self.text(value, path, action, params, env=False)
        if isinstance(value, dict):
            return {k: self.body(v, (*path, k), action, params) for k, v in value.items()}
        if isinstance(value, list):
            return [self.body(v, (*path, i), action, params) for i, v in enumerate(value)]
        return value


def _spec(name: str, params: Mapping[str, Any], has_not_found: bool, timeout: float) -> ActionSpec:
    return ActionSpec(
        name,
        frozenset(p for p, v in params.items() if v == "required"),
        frozenset(p for p, v in params.items() if v != "required"),
        None,
        has_not_found=has_not_found,
        timeout=timeout,
    )


def declared_spec(action: ir.DeclaredAction) -> ActionSpec:
    """What the validator checks `call:` steps of a declared action against."""
    return ActionSpec(
        action.name,
        action.required,
        action.optional,
        None,
        has_not_found=bool(action.not_found),
        timeout=action.timeout,
    )


def compile_actions(
    doc: Document, builtin: Mapping[str, ActionSpec] = ACTIONS
) -> tuple[dict[str, ir.DeclaredAction], dict[str, ActionSpec], list[Diagnostic]]:
    """The project file's declared actions, the specs `call:` steps are checked against (also
    for an action the schema refused, so its calls report no follow-on errors), and problems."""
    lowering = _ActionLowering(doc, builtin)
    declared, specs = lowering.run()
    return declared, specs, lowering.problems

"""JSON Schema check of a flow document, with errors placed at file:line:col.

jsonschema reports a failed `oneOf` as "is not valid under any of the given schemas", which
tells an author nothing. A step is a `oneOf` of step kinds, so we pick the kind by the key that
names it (`say`, `menu`, ...) and report that kind's own errors; a step with no kind key, or two,
gets its own message.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from .diagnostics import Diagnostic, did_you_mean
from .ir import KIND_KEYS
from .source import Path, SourceMap

STEP_KINDS = KIND_KEYS
OPTION_ACTIONS = ("goto", "flow", "url", "handoff", "end")


@cache
def load_schema(name: str = "flow") -> dict[str, Any]:
    text = resources.files("flowengine.schema").joinpath(f"{name}.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@cache
def _validator(name: str, ref: str | None) -> Draft202012Validator:
    schema = load_schema(name)
    if ref is not None:
        schema = {**schema, "$ref": f"#/$defs/{ref}"}
        for key in ("type", "required", "properties", "additionalProperties"):
            schema.pop(key, None)
    return Draft202012Validator(schema)


def is_valid(data: Any, schema: str, ref: str) -> bool:
    """Does `data` pass the schema's definition `ref` (`$defs/ref`)? For a part of a document
    whose problems `check_schema` has already reported."""
    return bool(_validator(schema, ref).is_valid(data))


def check_schema(data: Any, source: SourceMap, schema: str = "flow") -> list[Diagnostic]:
    out = list(_explain(schema, None, data, (), source))
    # One diagnostic per place and code: nested alternatives can repeat themselves.
    seen: set[tuple[int, int, str, str]] = set()
    unique = []
    for d in out:
        key = (d.position.line, d.position.column, d.code, d.message)
        if key not in seen:
            seen.add(key)
            unique.append(d)
    return unique


def _explain(
    schema: str, ref: str | None, instance: Any, base: Path, source: SourceMap
) -> Iterator[Diagnostic]:
    for error in _validator(schema, ref).iter_errors(instance):
        yield from _diagnose(schema, error, base, source)


def _diagnose(
    schema: str, error: ValidationError, base: Path, source: SourceMap
) -> Iterator[Diagnostic]:
    path: Path = (*base, *error.absolute_path)
    inst = error.instance
    file = source.file
    if error.validator in ("oneOf", "anyOf"):
        schema_ref = error.schema.get("oneOf", [{}]) if isinstance(error.schema, dict) else []
        refs = [s.get("$ref", "") for s in schema_ref if isinstance(s, dict)]
        if any(r.endswith("Step") for r in refs) or any(r.endswith("/step") for r in refs):
            yield from _diagnose_step_like(schema, inst, path, source, refs)
            return
        is_option = (
            "goto" in (error.schema.get("properties") or {})
            if isinstance(error.schema, dict)
            else False
        )
        if isinstance(inst, dict) and is_option:
            actions = [k for k in OPTION_ACTIONS if k in inst]
            if len(actions) == 1:  # the option's own keys are wrong; explain those
                best = _closest(error)
                if best is not None:
                    yield from _diagnose(schema, best, base, source)
                return
            if not actions:
                yield Diagnostic(
                    "E013",
                    "option does nothing: give it one of " + ", ".join(OPTION_ACTIONS),
                    file,
                    source.value(path),
                    hint="e.g. `goto: some_step` or `flow: track_order`",
                )
            elif len(actions) > 1:
                yield Diagnostic(
                    "E013",
                    f"option has both '{actions[0]}' and '{actions[1]}'; give it exactly one",
                    file,
                    source.key((*path, actions[1])),
                )
            return
        # Another alternative (text, validator, choice...): show the closest branch's errors.
        best = _closest(error)
        if best is not None:
            yield from _diagnose(schema, best, base, source)
            return
    schema_here = error.schema if isinstance(error.schema, Mapping) else {}
    if error.validator == "additionalProperties" and isinstance(inst, dict):
        allowed = list((schema_here.get("properties") or {}).keys())
        known = set(allowed)
        for key in inst:
            if key in known or _matches_pattern_props(schema_here, key):
                continue
            hint = did_you_mean(key, allowed)
            if schema_here.get("patternProperties"):
                hint = (
                    "keys of a text map are locales (en, cs, fr-CA); inside {...} a comma "
                    "starts a new key, so quote text that has a comma"
                )
            elif hint is None and allowed:
                hint = "allowed here: " + ", ".join(allowed)
            yield Diagnostic(
                "E010", f"unknown key '{key}'", file, source.key((*path, key)), hint=hint
            )
        return
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        yield Diagnostic(
            "E011",
            f"missing required key '{missing}'",
            file,
            source.key(path) if path else source.value(path),
        )
        return
    yield Diagnostic(
        "E012", _value_message(error), file, source.value(path), hint=_value_hint(error)
    )


def _diagnose_step_like(
    schema: str, inst: Any, path: Path, source: SourceMap, refs: list[str]
) -> Iterator[Diagnostic]:
    file = source.file
    if isinstance(inst, str):
        # A branch given as text must be a valid target.
        yield from _explain(schema, "target", inst, path, source)
        return
    if isinstance(inst, list):
        for i, item in enumerate(inst):
            yield from _explain(schema, "step", item, (*path, i), source)
        return
    if not isinstance(inst, dict):
        yield Diagnostic(
            "E012",
            f"expected a step (a mapping such as `say: ...`), found {_type_name(inst)}",
            file,
            source.value(path),
        )
        return
    kinds = [k for k in STEP_KINDS if k in inst]
    if not kinds:
        guesses = [(k, did_you_mean(k, STEP_KINDS)) for k in inst if k not in ("id", "note")]
        guess = next(((k, g) for k, g in guesses if g), None)
        pos = source.key((*path, guess[0])) if guess else source.value(path)
        hint = guess[1] if guess else "a step is one of: " + ", ".join(STEP_KINDS)
        yield Diagnostic(
            "E013",
            "step has no kind: it needs one of " + ", ".join(STEP_KINDS),
            file,
            pos,
            hint=hint,
        )
        return
    if len(kinds) > 1:
        yield Diagnostic(
            "E013",
            f"step has two kinds, '{kinds[0]}' and '{kinds[1]}'",
            file,
            source.key((*path, kinds[1])),
            hint="split it into two steps, one after the other",
        )
        return
    yield from _explain(schema, f"{kinds[0]}Step", inst, path, source)


def _closest(error: ValidationError) -> ValidationError | None:
    if not error.context:
        return None
    # Prefer the alternative whose type matched (its errors are about content, not type).
    typed = [e for e in error.context if e.validator != "type" and e.validator != "const"]
    pool = typed or list(error.context)
    return max(pool, key=lambda e: len(e.absolute_path))


def _matches_pattern_props(schema: Mapping[str, Any], key: str) -> bool:
    return any(re.search(p, key) for p in (schema.get("patternProperties") or {}))


def _type_name(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    return {
        bool: "true/false",
        int: "a number",
        float: "a number",
        str: "text",
        list: "a list",
        dict: "a mapping",
    }.get(type(value), type(value).__name__)


def _value_message(error: ValidationError) -> str:
    v, inst = error.validator, error.instance
    if v == "type":
        want: Any = error.validator_value
        want_text = " or ".join(want) if isinstance(want, list) else want
        names = {
            "string": "text",
            "object": "a mapping",
            "array": "a list",
            "integer": "a whole number",
            "number": "a number",
            "boolean": "true/false",
            "null": "null",
        }
        if isinstance(want, list):
            want_text = " or ".join(names.get(str(w), str(w)) for w in want)
        else:
            want_text = names.get(str(want), str(want))
        return f"expected {want_text}, found {_type_name(inst)}"
    if v == "pattern":
        return f"'{inst}' is not a valid name here (it must match {error.validator_value})"
    if v == "enum":
        choices: Any = error.validator_value
        return f"'{inst}' is not one of: " + ", ".join(map(str, choices))
    if v == "const":
        return f"expected {error.validator_value!r}"
    if v in ("minItems", "minProperties"):
        return "must not be empty"
    if v in ("maxLength", "maximum", "minimum", "exclusiveMinimum", "minLength"):
        return error.message
    return error.message


def _value_hint(error: ValidationError) -> str | None:
    inst = error.instance
    if error.validator == "type" and isinstance(inst, bool):
        return "YAML reads yes/no/on/off/true/false as true/false; put the text in quotes"
    if error.validator == "enum" and isinstance(inst, str):
        choices: Any = error.validator_value
        return did_you_mean(inst, map(str, choices))
    if error.validator == "pattern" and isinstance(inst, str):
        return "names use letters, digits and underscores, and start with a letter"
    return None

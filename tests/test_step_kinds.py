"""Adding a step kind is one registry (`ir.STEP_KINDS`): the compiler lowers every registered
kind, the JSON Schema editors use knows exactly those kinds, and the engine and the graph
drawer match over the closed union (`assert_never`, so mypy names what must learn a new one)."""

from __future__ import annotations

import json
from importlib import resources

from flowengine.language import ir
from flowengine.language.compiler import _Lowering
from flowengine.language.source import load_document


def _schema_kinds() -> set[str]:
    """The kind each `oneOf` alternative of a step requires."""
    schema = json.loads(
        resources.files("flowengine.schema").joinpath("flow.schema.json").read_text("utf-8")
    )
    defs = schema["$defs"]
    refs = [alt["$ref"].rsplit("/", 1)[-1] for alt in defs["step"]["oneOf"]]
    return {defs[r]["required"][0] for r in refs}


def test_the_registry_names_every_ir_class_once() -> None:
    classes = [k.cls for k in ir.STEP_KINDS]
    assert len(set(classes)) == len(classes) == len(ir.AnyStep.__args__)  # type: ignore[attr-defined]
    assert set(classes) == set(ir.AnyStep.__args__)  # type: ignore[attr-defined]
    assert all(k.cls.kind == k.key for k in ir.STEP_KINDS)


def test_the_compiler_lowers_every_registered_kind() -> None:
    doc, problems = load_document("flow: x\nsteps:\n  - say: hi\n", "x.yaml")
    assert doc is not None and not problems
    compiler = _Lowering(doc, ir.ProjectSettings(), {})
    assert set(compiler.lowering) == set(ir.KIND_KEYS)


def test_the_schema_knows_exactly_the_registered_kinds() -> None:
    assert _schema_kinds() == set(ir.KIND_KEYS)

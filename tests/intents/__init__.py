"""The intent data sets: the training examples are the shipped flows' own `intents:` (flows/*.yaml,
and the main menu's "talk to a person" option), read from the compiled project, so the tests, the
benchmark and the server match against the same examples; the out-of-scope texts tuning checks
beside them (tests/intents/out_of_scope.yaml); held-out texts per locale
(tests/intents/heldout.<locale>.yaml). Read the same way by the tests and the benchmark."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from flowengine.language import ir, load_project

HERE = Path(__file__).resolve().parent
FLOWS = HERE.parent.parent / "flows"
LOCALES = ("en", "cs", "th", "id", "ro")


@dataclass(frozen=True)
class TrainingSet:
    intents: dict[str, dict[str, list[str]]]  # intent -> locale -> phrases
    out_of_scope: dict[str, list[str]]  # locale -> texts


@dataclass(frozen=True)
class HeldOut:
    locale: str
    expect: dict[str, list[str]]  # intent -> texts
    out_of_scope: list[str]


def _load(name: str) -> Any:
    with (HERE / name).open(encoding="utf-8") as file:
        return yaml.safe_load(file)


def shipped_intents() -> dict[str, dict[str, list[str]]]:
    """Every shipped intent's examples: a flow's by its name, a menu option's by its id."""
    result = load_project([FLOWS])
    assert result.ok and result.project is not None, result.render()
    intents: dict[str, dict[str, list[str]]] = {}
    for name, flow in sorted(result.project.flows.items()):
        if flow.intents:
            intents[name] = {loc: list(p) for loc, p in flow.intents.items()}
        for step in flow.steps.values():
            if isinstance(step, ir.Menu):
                for option in step.options:
                    if option.intents:
                        intents[option.id] = {loc: list(p) for loc, p in option.intents.items()}
    return intents


def training_set() -> TrainingSet:
    return TrainingSet(intents=shipped_intents(), out_of_scope=_load("out_of_scope.yaml"))


def held_out(locale: str) -> HeldOut:
    data = _load(f"heldout.{locale}.yaml")
    assert data["locale"] == locale, f"heldout.{locale}.yaml says locale {data['locale']}"
    return HeldOut(locale, data["expect"], data["out_of_scope"])

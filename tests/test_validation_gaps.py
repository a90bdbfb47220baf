"""The gaps a merchant hit writing flows from the docs (#11): templates that reach for Python's
insides or that double a value, text too long for where it is shown, a tab in the indentation,
and one broken file making every file that links to it report errors too."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from flowengine.language import load_project
from flowengine.language.checks import (
    BUTTON_LABEL_MAX,
    MENU_TEXT_MAX,
    MESSAGE_MAX,
    TEXT_LIMITS,
    TITLE_MAX,
)
from flowengine.language.diagnostics import Diagnostic

ROOT = Path(__file__).resolve().parent.parent
FLOWS = ROOT / "flows"


def _load(tmp_path: Path, text: str, name: str = "a.yaml") -> list[Diagnostic]:
    (tmp_path / name).write_text(text, "utf-8")
    return load_project([tmp_path]).diagnostics


def _at(diagnostics: list[Diagnostic], code: str) -> list[tuple[int, int, str]]:
    return [(d.position.line, d.position.column, d.message) for d in diagnostics if d.code == code]


# -- templates ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "needle", "message"),
    [
        ('  - say: "Hi {{ shopper.__class__ }}"', "__class__", "'__class__' is private"),
        ('  - say: "Hi {{ shopper.name.__mro__ }}"', "__mro__", "'__mro__' is private"),
        ('  - say: "Hi {{ shopper._private }}"', "_private", "'_private' is private"),
        ("  - say: \"Hi {{ shopper['__class__'] }}\"", "__class__", "'__class__' is private"),
        ('  - say: "{{ range(10**9) | join }}"', "range", "there is no 'range'"),
    ],
)
def test_a_template_reaching_for_python_is_refused_at_its_column(
    tmp_path: Path, line: str, needle: str, message: str
) -> None:
    diagnostics = _load(tmp_path, f"flow: a\nsteps:\n{line}\n    next: end\n")
    found = _at(diagnostics, "E113")
    assert len(found) == 1, found
    assert [d.code for d in diagnostics if d.is_error] == ["E113"]  # not also E110 for `range`
    assert found[0][:2] == (3, line.index(needle) + 1)
    assert found[0][2].startswith(f"template error: {message}")


def test_a_condition_and_a_set_value_reaching_for_python_are_refused(tmp_path: Path) -> None:
    text = (
        "flow: a\nsteps:\n"
        "  - if: shopper.__class__\n"  # line 3
        "    then: end\n    else: next\n"
        "  - id: next\n"
        '    set: {copy: "{{ shopper.__init__ }}"}\n'  # line 7
        "    next: end\n"
    )
    found = _at(_load(tmp_path, text), "E113")
    assert [(line, col) for line, col, _ in found] == [(3, 17), (7, 29)]


def test_a_value_built_from_itself_twice_is_refused(tmp_path: Path) -> None:
    text = (
        "flow: a\nsteps:\n"
        "  - set: {s: x}\n"
        "  - id: grow\n"
        '    set: {s: "{{ s ~ s }}"}\n'  # line 5
        "    next: ask\n"
        "  - id: ask\n    menu: Again?\n    options:\n"
        "      - {label: Again, goto: grow}\n      - {label: Stop, end: resolved}\n"
    )
    found = _at(_load(tmp_path, text), "E113")
    assert found and found[0][:2] == (5, 18)
    assert "'s' is built from itself twice" in found[0][2]


def test_a_huge_repetition_is_refused(tmp_path: Path) -> None:
    found = _at(_load(tmp_path, "flow: a\nsteps:\n  - say: \"{{ 'ab' * 100000 }}\"\n"), "E113")
    assert found and found[0][0] == 3
    assert "repetition is too large" in found[0][2]


@pytest.mark.parametrize(
    "line",
    [
        '  - say: "Hi {{ shopper.name }}, {{ order.items[0].sku }}"',
        "  - set: {greeting: \"{{ shopper.first ~ ' ' ~ shopper.last }}\"}",
        "  - set: {s: \"{{ s ~ '!' if s is defined else '!' }}\"}",
        "  - say: Prices from 10 EUR; a_b_c is just text with __underscores__",
    ],
)
def test_ordinary_templates_are_not_refused(tmp_path: Path, line: str) -> None:
    found = _load(tmp_path, f"flow: a\nsteps:\n{line}\n    next: end\n")
    assert _at(found, "E113") == []


# -- text length ----------------------------------------------------------------------------


def _menu(label: str) -> str:
    return (
        "flow: a\nlocales: [en, cs]\nsteps:\n"
        "  - menu: {en: Pick one, cs: Vyberte}\n"
        "    options:\n"
        f'      - label: {{en: Sure, cs: "{label}"}}\n'  # line 6
        "        end: resolved\n"
    )


def test_a_147_character_button_is_refused_at_its_locale(tmp_path: Path) -> None:
    label = "Ano, " + "x" * 142
    assert len(label) == 147
    found = _at(_load(tmp_path, _menu(label)), "E120")
    assert found == [
        (6, 31, f"a button label is 147 characters long; at most {BUTTON_LABEL_MAX}"),
    ]


def test_a_button_at_the_limit_passes_and_one_over_it_does_not(tmp_path: Path) -> None:
    assert _at(_load(tmp_path, _menu("x" * BUTTON_LABEL_MAX)), "E120") == []
    assert len(_at(_load(tmp_path, _menu("x" * (BUTTON_LABEL_MAX + 1))), "E120")) == 1


def test_template_tags_do_not_count_toward_a_length(tmp_path: Path) -> None:
    label = "{{ order.number }} " + "x" * (BUTTON_LABEL_MAX - 1)
    assert _at(_load(tmp_path, _menu(label)), "E120") == []


@pytest.mark.parametrize(
    ("kind", "limit", "flow"),
    [
        ("message", MESSAGE_MAX, "flow: a\nsteps:\n  - say: {text}\n    next: end\n"),
        (
            "message",
            MESSAGE_MAX,
            "flow: a\nsteps:\n  - ask: x\n    prompt: {text}\n    next: end\n",
        ),
        (
            "menu text",
            MENU_TEXT_MAX,
            "flow: a\nsteps:\n  - menu: {text}\n    options: [{label: Ok, end: resolved}]\n",
        ),
        ("title", TITLE_MAX, "flow: a\ntitle: {text}\nsteps:\n  - end: resolved\n"),
        (
            "button label",
            BUTTON_LABEL_MAX,
            "flow: a\nsteps:\n  - ask: size\n    prompt: Size?\n    choices: [{text}]\n"
            "    next: end\n",
        ),
    ],
)
def test_each_kind_of_text_has_its_own_limit(
    tmp_path: Path, kind: str, limit: int, flow: str
) -> None:
    assert _at(_load(tmp_path, flow.replace("{text}", "y" * limit)), "E120") == []
    found = _at(_load(tmp_path, flow.replace("{text}", "y" * (limit + 1))), "E120")
    assert [m for _, _, m in found] == [f"a {kind} is {limit + 1} characters long; at most {limit}"]


def test_the_limits_are_the_ones_the_docs_give() -> None:
    docs = (ROOT / "docs" / "flow-language.md").read_text("utf-8")
    table = dict(re.findall(r"^\| (a [a-z ]+) \| .*?\| (\d+) \|", docs, re.M))
    assert {what: limit for what, limit in TEXT_LIMITS.values()} == {
        k: int(v) for k, v in table.items()
    }


def test_the_shipped_flows_fit_the_limits() -> None:
    assert [d for d in load_project([FLOWS]).diagnostics if d.code == "E120"] == []


# -- tabs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "col"),
    [
        ("flow: a\nsteps:\n\t- say: hi\n", 3, 1),
        ("flow: a\nsteps:\n  - say: hi\n\tnext: end\n", 4, 1),
        ("flow: a\nsteps:\n  - say: hi\n  \t next: end\n", 4, 3),
        ("flow: a\nsteps:\n  - say:\n\t\thi there\n", 4, 1),
    ],
)
def test_a_tab_in_the_indentation_is_named_as_such(
    tmp_path: Path, text: str, line: int, col: int
) -> None:
    found = _at(_load(tmp_path, text), "E001")
    assert found == [(line, col, "tab character in indentation; YAML uses spaces")]


def test_a_tab_inside_text_is_not_an_error(tmp_path: Path) -> None:
    text = 'flow: a\nsteps:\n  - say: "a\\tb and\tc"\n  - say: |\n      col1\tcol2\n'
    assert [d for d in _load(tmp_path, text) if d.is_error and d.code == "E001"] == []


def test_another_syntax_error_keeps_its_own_message(tmp_path: Path) -> None:
    found = _at(_load(tmp_path, "flow: a\nsteps:\n  - say: [unclosed\n"), "E001")
    assert len(found) == 1 and "tab" not in found[0][2]


# -- one root cause, one error --------------------------------------------------------------


@pytest.fixture
def flows(tmp_path: Path) -> Path:
    target = tmp_path / "flows"
    shutil.copytree(FLOWS, target, ignore=shutil.ignore_patterns("tests"))
    return target


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text("utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new, 1), "utf-8")


def _errors(flows: Path) -> list[str]:
    return [
        f"{Path(d.file).name}:{d.position.line} {d.code}"
        for d in load_project([flows]).diagnostics
        if d.is_error
    ]


def test_a_typo_in_a_linked_flow_is_one_error_not_22(flows: Path) -> None:
    # identify_order sets `order` for every flow that links to it; with the typo its exit
    # looked like an early end, so every reader of `order` in five files said "may be unset".
    _edit(flows / "identify_order.yaml", "      next: lookup\n", "      next: lookupp\n")
    assert [e.split(":")[0] + " " + e.split(" ")[1] for e in _errors(flows)] == [
        "identify_order.yaml E104"
    ]


def test_a_typo_with_no_close_step_does_not_make_the_rest_unreachable(flows: Path) -> None:
    _edit(
        flows / "track_order.yaml",
        "    link: identify_order\n",
        "    link: identify_order\n    next: lookupp\n",
    )
    assert [e.split(" ")[1] for e in _errors(flows)] == ["E104"]


def test_a_schema_error_in_a_flow_is_not_repeated_by_the_flows_that_link_to_it(
    flows: Path,
) -> None:
    _edit(flows / "identify_order.yaml", "      next: lookup\n", "      nxt: lookup\n")
    assert _errors(flows) == ["identify_order.yaml:29 E010"]


def test_a_yaml_error_in_a_flow_is_not_repeated_by_the_flows_that_link_to_it(
    flows: Path,
) -> None:
    _edit(flows / "leave_message.yaml", "steps:\n", "steps:\n  - say: [unclosed\n")
    errors = _errors(flows)
    assert [e.split(" ")[1] for e in errors] == ["E001"]  # no E103 in main, no E117
    assert errors[0].startswith("leave_message.yaml:")


def test_the_start_flow_broken_is_not_also_missing(flows: Path) -> None:
    _edit(flows / "main.yaml", "steps:", "stepz:")
    codes = {e.split(" ")[1] for e in _errors(flows)}
    assert "E117" not in codes and "E103" not in codes
    assert codes <= {"E010", "E011"}


def test_a_real_second_problem_is_still_reported(flows: Path) -> None:
    _edit(flows / "identify_order.yaml", "      next: lookup\n", "      nxt: lookup\n")
    _edit(flows / "main.yaml", "flow: track_order", "flow: track_ordr")
    assert sorted(e.split(" ")[1] for e in _errors(flows)) == ["E010", "E103"]


def test_validate_on_the_command_line_counts_one_error(flows: Path) -> None:
    _edit(flows / "identify_order.yaml", "      next: lookup\n", "      next: lookupp\n")
    out = subprocess.run(
        [sys.executable, "-m", "flowengine", "validate", str(flows)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 1
    assert "error[E104]: next step 'lookupp' does not exist" in out.stdout + out.stderr
    assert ", 1 error(s)," in out.stdout + out.stderr

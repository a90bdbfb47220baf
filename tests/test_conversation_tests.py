"""The conversation-test runner (`flowengine test`): what a test says an action answers (stubs),
text expectations in every locale a test runs in, and transition coverage of the shipped flows."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from flowengine.language import ir, load_project
from flowengine.testing import runner
from tests.conftest import FLOWS, ROOT, TODAY


async def _run(tmp_path: Path, text: str, project: ir.Project) -> runner.Report:
    f = tmp_path / "case.test.yaml"
    f.write_text(text, "utf-8")
    return await runner.run_tests([f], project, TODAY)


def _failures(report: runner.Report) -> dict[str, list[str]]:
    return {f"{o.case.name} [{o.locale}]": o.failures for o in report.outcomes if o.failures}


# -- text expectations in a locale that is not the default ----------------------------------

PROMPT = "Jaké je číslo vaší objednávky"  # track_order's first question, in Czech


async def _expect_text(
    tmp_path: Path, project: ir.Project, locales: str, text: str
) -> runner.Report:
    """The report of one conversation test of track_order in `locales` expecting `text`."""
    return await _run(
        tmp_path,
        f"flow: track_order\nlocales: {locales}\ntests:\n"
        f"  - name: t\n    steps:\n      - expect: {{text: {text}}}\n",
        project,
    )


@pytest.mark.parametrize(
    ("locales", "text"),
    [
        ("[cs]", '"NOT IN THE MESSAGE"'),  # a string, in a test that runs only in cs
        ("[cs-CZ]", "{cs: NOT IN THE MESSAGE}"),  # cs-CZ reads the cs entry
        ("[cs]", "{CS: NOT IN THE MESSAGE}"),  # locale keys are not case-sensitive
        ("all", "{en: order number, cs: NOT IN THE MESSAGE, th: '', id: '', ro: ''}"),
    ],
)
async def test_a_wrong_text_in_a_non_default_locale_fails(
    tmp_path: Path, project: ir.Project, locales: str, text: str
) -> None:
    report = await _expect_text(tmp_path, project, locales, text)
    failures = [f for fs in _failures(report).values() for f in fs]
    assert len(failures) == 1, failures
    assert "expected a message containing 'NOT IN THE MESSAGE'" in failures[0]


@pytest.mark.parametrize(
    ("locales", "text"),
    [
        ("[cs]", f'"{PROMPT}"'),
        ("[cs-CZ]", f"{{cs: {PROMPT}}}"),
        ("[cs]", f"{{CS: {PROMPT}}}"),
    ],
)
async def test_the_right_text_in_a_non_default_locale_passes(
    tmp_path: Path, project: ir.Project, locales: str, text: str
) -> None:
    report = await _expect_text(tmp_path, project, locales, text)
    assert _failures(report) == {} and report.passed == 1


async def test_a_text_map_without_the_locale_a_test_runs_in_fails(
    tmp_path: Path, project: ir.Project
) -> None:
    report = await _run(
        tmp_path,
        "flow: track_order\nlocales: [en, cs]\ntests:\n"
        "  - name: t\n    steps:\n      - expect: {text: {en: order number}}\n",
        project,
    )
    assert _failures(report) == {
        "t [cs]": [
            "line 6: expect.text has no text for locale 'cs' (the test runs in it): add cs: ... "
            "to the map"
        ]
    }


async def test_a_string_is_the_default_locale_text_in_a_test_of_every_locale(
    tmp_path: Path, project: ir.Project
) -> None:
    # "order number" is English: checked in en, where it is, not in the other four.
    report = await _run(
        tmp_path,
        "flow: track_order\nlocales: all\ntests:\n"
        "  - name: t\n    steps:\n      - expect: {text: order number}\n",
        project,
    )
    assert _failures(report) == {} and report.passed == 5


# -- what an action answers -----------------------------------------------------------------

CANCEL = """\
flow: cancel_order
tests:
  - name: t
    action_results:
      orders.cancel: {answer}
    steps:
      - type: "1001"
      - type: anna.novak@example.com
      - click: confirm
      - expect: {expect}
"""


@pytest.mark.parametrize(
    ("answer", "edge", "then", "step"),
    [
        ("{outcome: ok, data: {cancelled: true}}", "next", ("cancelled", "then"), "anything_else"),
        ("{outcome: ok, data: {cancelled: false}}", "next", ("cancelled", "else"), "anything_else"),
        ("{outcome: not_found}", "not_found", ("failed", "next"), "anything_else"),
        ("{outcome: error, data: {reason: timeout}}", "error", ("failed", "next"), "anything_else"),
        ("{outcome: throttled}", "throttled", None, "too_many_tries"),
    ],
)
async def test_a_stub_answers_the_action_and_takes_its_exit(
    tmp_path: Path,
    project: ir.Project,
    answer: str,
    edge: str,
    then: tuple[str, str] | None,
    step: str,
) -> None:
    report = await _run(
        tmp_path,
        CANCEL.replace("{answer}", answer).replace("{expect}", f"{{step: {step}}}"),
        project,
    )
    assert _failures(report) == {}
    assert ("cancel_order", "do_cancel", edge) in report.visited
    if then is not None:
        assert ("cancel_order", *then) in report.visited


async def test_a_stub_of_an_ok_answer_is_what_save_as_keeps(
    tmp_path: Path, project: ir.Project
) -> None:
    report = await _run(
        tmp_path,
        CANCEL.replace("{answer}", "{outcome: ok, data: {cancelled: true, note: stubbed}}").replace(
            "{expect}", "{vars: {cancellation.note: stubbed}}"
        ),
        project,
    )
    assert _failures(report) == {}
    wrong = await _run(
        tmp_path,
        CANCEL.replace("{answer}", "{outcome: ok, data: {cancelled: true}}").replace(
            "{expect}", "{vars: {cancellation.note: stubbed}}"
        ),
        project,
    )
    assert _failures(wrong) == {
        "t [en]": ["line 10: expected variable cancellation.note = 'stubbed'; it is not set"]
    }


async def test_answers_in_a_list_are_given_in_turn_and_the_last_repeats(
    tmp_path: Path, project: ir.Project
) -> None:
    text = """\
flow: identify_order
tests:
  - name: t
    action_results:
      orders.lookup: [{outcome: not_found}, {outcome: error}]
    steps:
      - type: "1003"
      - type: chloe.pop@example.com
      - expect: {step: not_found}
      - click: retry
      - type: "1003"
      - type: chloe.pop@example.com
      - expect: {step: backend_down}
      - click: retry
      - expect: {step: backend_down}
"""
    report = await _run(tmp_path, text, project)
    assert _failures(report) == {} and report.passed == 1


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ("tickets.create: {outcome: not_found}", "'tickets.create' never answers not_found"),
        (
            "tickets.create: [{outcome: ok}, {outcome: throttled}]",
            "'tickets.create' is never throttled",
        ),
    ],
)
async def test_an_answer_the_action_can_never_give_is_refused_at_its_line(
    tmp_path: Path, project: ir.Project, answer: str, message: str
) -> None:
    text = (
        "flow: report_problem\ntests:\n  - name: t\n    action_results:\n"
        f"      {answer}\n    steps:\n      - type: '1003'\n"
    )
    report = await _run(tmp_path, text, project)
    assert report.outcomes == []  # not run: it would take the error exit and pass by accident
    assert [(d.code, d.position.line, d.message) for d in report.diagnostics] == [
        ("E012", 5, message)
    ]


def test_a_stub_of_a_declared_action_names_only_fields_it_keeps(tmp_path: Path) -> None:
    (tmp_path / "flowengine.yaml").write_text(
        "start: main\nactions:\n  stock.check:\n    params: {sku: required}\n"
        "    request: {url: 'https://shop.example/stock/{{ sku }}'}\n"
        "    answer: {keep: {available: in_stock}}\n"
    )
    (tmp_path / "main.yaml").write_text(
        "flow: main\nsteps:\n  - call: stock.check\n    with: {sku: TEE}\n    save_as: stock\n"
        '    on_error: end\n  - say: "{{ stock.available }}"\n    next: end\n'
    )
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "main.test.yaml").write_text(
        "tests:\n  - name: t\n    action_results:\n"
        "      stock.check: {outcome: ok, data: {availabel: true}}\n"
        "    steps:\n      - expect: {ended: null}\n"
    )
    out = subprocess.run(
        [sys.executable, "-m", "flowengine", "test", "--flows", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert out.returncode == 1
    assert "main.test.yaml:4:41: error[E012]: 'stock.check' keeps no field 'availabel'" in (
        out.stderr
    ), out.stderr
    assert "did you mean 'available'?" in out.stderr


# -- coverage -------------------------------------------------------------------------------


def test_an_ask_no_answer_can_fail_has_no_fail_exit_to_cover() -> None:
    result = load_project([FLOWS])
    assert result.project is not None
    leave = runner.transitions(result.project.flows["leave_message"])
    assert ("message", "fail") not in leave  # `validate: text`: a blank message is refused
    assert ("ask_email", "fail") in leave  # `validate: email` can fail


def test_the_shipped_tests_walk_every_transition() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "flowengine", "test", "-v"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    coverage = out.stdout.split("transition coverage:")[1].split("\n\n")[0].strip().splitlines()
    assert len(coverage) == len(list(FLOWS.glob("*.yaml"))) - 1  # all but flowengine.yaml
    assert [line for line in coverage if "(100.0%)" not in line] == []

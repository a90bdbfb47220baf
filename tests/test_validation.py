"""One failing fixture per diagnostic code: each must be reported at the line and column its
`# expect:` comment names, with the file name, as `file:line:col: severity[CODE]: message`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from flowengine.language import load_project
from flowengine.language.diagnostics import Severity

FIXTURES = Path(__file__).parent / "fixtures" / "invalid"
EXPECT = re.compile(r"# expect: (?P<code>[EW]\d{3}) (?P<line>\d+):(?P<col>\d+)")


def _cases() -> list[tuple[Path, Path, str, int, int]]:
    cases = []
    for entry in sorted(FIXTURES.iterdir()):
        files = sorted(entry.glob("*.yaml")) if entry.is_dir() else [entry]
        for f in files:
            m = EXPECT.search(f.read_text("utf-8"))
            if m:
                cases.append((entry, f, m["code"], int(m["line"]), int(m["col"])))
    return cases


CASES = _cases()


def test_every_code_has_a_fixture() -> None:
    documented = set(
        re.findall(
            r"\| `([EW]\d{3})`", (FIXTURES.parents[2] / "docs" / "flow-language.md").read_text()
        )
    )
    covered = {code for _, _, code, _, _ in CASES}
    assert documented, "docs/flow-language.md lists the diagnostic codes"
    assert documented <= covered, f"codes without a failing fixture: {sorted(documented - covered)}"


@pytest.mark.parametrize(
    ("target", "file", "code", "line", "col"), CASES, ids=[c[2] for c in CASES]
)
def test_fixture_reports_its_code_at_its_position(
    target: Path, file: Path, code: str, line: int, col: int
) -> None:
    result = load_project([target])
    found = [d for d in result.diagnostics if d.code == code]
    assert found, f"{code} not reported; got:\n{result.render()}"
    d = found[0]
    assert Path(d.file).name == file.name
    assert (d.position.line, d.position.column) == (line, col), d.headline()
    assert d.headline().startswith(f"{d.file}:{line}:{col}: ")
    if code.startswith("E"):
        assert not result.ok
    else:
        assert d.severity is Severity.WARNING


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        "flow: a\nsteps:\n  - say: hi\n    next: nowhere\n  - ask: x\n    prompt: p\n"
        "    validate: emial\n    next: lookupp\n"
    )
    result = load_project([tmp_path])
    codes = sorted(d.code for d in result.errors)
    # The ask after `next: nowhere` is not also "never reached": the typo is the one cause.
    assert codes == ["E104", "E104", "E109"]


def test_rendering_shows_the_line_a_caret_and_a_hint(tmp_path: Path) -> None:
    f = tmp_path / "track.yaml"
    f.write_text("flow: track\nsteps:\n  - id: lookup\n    say: Looking.\n    next: lookupp\n")
    out = load_project([f]).render()
    assert f"{f}:5:11: error[E104]: next step 'lookupp' does not exist" in out
    assert "    5 |     next: lookupp" in out
    assert "      |           ^^^^^^^" in out
    assert "hint: did you mean 'lookup'?" in out


def test_yaml_bool_trap_gets_a_hint(tmp_path: Path) -> None:
    f = tmp_path / "a.yaml"
    f.write_text(
        "flow: a\nsteps:\n  - menu: Sure?\n    options:\n      - {label: No, end: resolved}\n"
    )
    result = load_project([f])
    d = next(d for d in result.errors if d.code == "E012")
    assert "quotes" in (d.hint or "")


def test_billion_laughs_is_refused(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        prev = f"*a{i - 1}"
        lines.append(f"a{i}: &a{i} [{', '.join([prev] * 10)}]")
    f = tmp_path / "bomb.yaml"
    f.write_text("\n".join(lines) + "\n")
    result = load_project([f])
    assert any(d.code == "E002" and "expands" in d.message for d in result.errors)


def test_shipped_flows_are_clean(project: object) -> None:
    result = load_project([FIXTURES.parents[2] / "flows"])
    assert result.ok
    assert result.warnings == []


def test_a_file_of_a_project_is_checked_with_its_siblings() -> None:
    named = FIXTURES.parents[2] / "flows" / "track_order.yaml"
    result = load_project([named])
    assert result.ok, result.render()
    assert result.files == [str(named)]
    assert result.project is not None and "identify_order" in result.project.flows

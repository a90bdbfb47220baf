"""handoff.yaml is checked like a flow: one failing fixture per H-code, reported at the line and
column its `# expect:` comment names; every problem of a file in one run; the shipped file
clean; and the command line (`validate`, `serve`, `agents`) as real processes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator

from flowengine.handoff.config import (
    WEBHOOK_EVENTS,
    HandoffConfig,
    HandoffConfigError,
    Rule,
    Webhook,
    check,
    load,
)
from flowengine.language.diagnostics import Severity
from flowengine.language.schema import load_schema
from tests.redis_server import free_port

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "handoff"
EXPECT = re.compile(r"# expect: (?P<code>[EHW]\d{3}) (?P<line>\d+):(?P<col>\d+)")


def _cases() -> list[tuple[Path, str, int, int]]:
    cases = []
    for f in sorted(FIXTURES.glob("*.yaml")):
        m = EXPECT.search(f.read_text("utf-8"))
        if m:
            cases.append((f, m["code"], int(m["line"]), int(m["col"])))
    return cases


CASES = _cases()


def test_every_code_has_a_fixture() -> None:
    documented = set(re.findall(r"\| `(H\d{3})`", (ROOT / "docs" / "handoff.md").read_text()))
    covered = {code for _, code, _, _ in CASES}
    assert documented, "docs/handoff.md lists the H-codes"
    assert documented <= covered, f"codes without a failing fixture: {sorted(documented - covered)}"


@pytest.mark.parametrize(("file", "code", "line", "col"), CASES, ids=[c[0].stem for c in CASES])
def test_fixture_reports_its_code_at_its_position(
    file: Path, code: str, line: int, col: int
) -> None:
    config, diagnostics = check(file)
    assert [d.code for d in diagnostics] == [code], "\n".join(d.render() for d in diagnostics)
    d = diagnostics[0]
    assert d.headline().startswith(f"{file}:{line}:{col}: {d.severity}[{code}]: ")
    assert d.hint, "every diagnostic says what to do"
    if d.severity is Severity.WARNING:
        assert config is not None  # a warning does not stop the server
    else:
        assert config is None
        with pytest.raises(HandoffConfigError) as exc:
            load(str(file))
        assert exc.value.diagnostics == diagnostics
        assert str(exc.value) == d.render(file.read_text().splitlines())


def test_messages_say_what_to_do() -> None:
    def only(name: str) -> str:
        (d,) = check(FIXTURES / name)[1]
        return d.render()

    assert "routing to unknown team 'order'" in only("H102_unknown_team.yaml")
    assert "did you mean 'orders'?" in only("H102_unknown_team.yaml")
    assert "did you mean 'Europe/Prague'?" in only("H104_bad_timezone.yaml")
    assert "events: " + ", ".join(WEBHOOK_EVENTS) in only("H110_unknown_webhook_event.yaml")
    assert "did you mean 'queue_timeout'?" in only("E010_unknown_key.yaml")
    assert "the rule at line 4" in only("H103_rule_never_matches.yaml")


def test_every_problem_of_a_file_in_one_run() -> None:
    file = FIXTURES / "several_problems.yaml"
    config, diagnostics = check(file)
    assert config is None
    assert [(d.code, d.position.line, d.position.column) for d in diagnostics] == [
        ("H102", 3, 31),
        ("E012", 4, 51),
        ("H104", 6, 13),
        ("H105", 8, 10),
        ("H106", 9, 10),
        ("H107", 11, 11),
        ("H108", 12, 16),
        ("H110", 15, 14),
        ("E010", 16, 5),
    ]
    with pytest.raises(HandoffConfigError) as exc:
        load(str(file))
    rendered = str(exc.value)
    assert f"{file}:11:11: error[H107]: capacity must be a positive whole number" in rendered
    assert "   11 | capacity: three\n      |           ^^^^^" in rendered


def test_the_shipped_handoff_yaml_is_clean_and_names_its_schema() -> None:
    shipped = ROOT / "handoff.yaml"
    config, diagnostics = check(shipped)
    assert diagnostics == [] and config is not None
    assert config.teams == ("general", "orders", "returns", "sales")
    assert config.timezone == "Europe/Prague" and config.hours == {}
    first = shipped.read_text().splitlines()[0]
    assert first == "# yaml-language-server: $schema=flowengine/schema/handoff.schema.json"
    assert (ROOT / first.split("$schema=")[1]).is_file()


def test_the_docs_example_is_clean_and_its_diagnostics_are_real(tmp_path: Path) -> None:
    doc = (ROOT / "docs" / "handoff.md").read_text()
    example = doc.split("## handoff.yaml", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "handoff.yaml").write_text(example)
    assert check(tmp_path / "handoff.yaml") == (load(str(tmp_path / "handoff.yaml")), [])
    shown = doc[doc.index("handoff.yaml:3:31") :].split("```", 1)[0].rstrip("\n")
    broken = tmp_path / "several" / "handoff.yaml"
    broken.parent.mkdir()
    broken.write_text((FIXTURES / "several_problems.yaml").read_text())
    lines = broken.read_text().splitlines()
    diagnostics = [d for d in check(broken)[1] if d.code in ("H102", "H104", "H110")]
    rendered = "\n\n".join(d.render(lines) for d in diagnostics)
    assert rendered.replace(str(broken), "handoff.yaml") == shown


def test_the_schema_is_what_editors_see() -> None:
    schema = load_schema("handoff")
    Draft202012Validator.check_schema(schema)
    editor = Draft202012Validator(schema)
    assert not list(editor.iter_errors(yaml.safe_load((ROOT / "handoff.yaml").read_text())))
    for name in ("H105_hours_format.yaml", "H107_capacity.yaml", "H110_unknown_webhook_event.yaml"):
        assert list(editor.iter_errors(yaml.safe_load((FIXTURES / name).read_text()))), name


def test_the_config_means_what_it_meant(tmp_path: Path) -> None:
    f = tmp_path / "handoff.yaml"
    f.write_text(
        "teams: [general, orders]\n"
        "routing:\n"
        "  - {reason: Unavailable, team: orders, priority: urgent}\n"
        "  - {flow: track_order, team: orders}\n"
        "schedule:\n"
        "  timezone: Europe/Prague\n"
        "  hours:\n"
        '    mon: "08:00 - 18:00"\n'
        '    sat: ["09:00-12:00", "13:00-24:00"]\n'
        "    sun:\n"
        "mode: auto\n"
        "capacity: 2\n"
        "queue_timeout: 1.5\n"
        "canned:\n"
        "  - {title: Hi, text: Hello!}\n"
        "webhooks:\n"
        "  - url: https://x.example/hook\n"
        "    secret_env: HOOK_SECRET\n"
        "  - url: http://y.example/hook\n"
        "    events: [ticket.created]\n"
    )
    assert load(str(f)) == HandoffConfig(
        teams=("general", "orders"),
        rules=(
            Rule("orders", "urgent", None, "Unavailable"),
            Rule("orders", None, "track_order", None),
        ),
        timezone="Europe/Prague",
        hours={"mon": ((480, 1080),), "sat": ((540, 720), (780, 1440)), "sun": ()},
        mode="auto",
        capacity=2,
        queue_timeout=1.5,
        canned=({"title": "Hi", "text": "Hello!"},),
        webhooks=(
            Webhook("https://x.example/hook", WEBHOOK_EVENTS, "HOOK_SECRET"),
            Webhook("http://y.example/hook", ("ticket.created",), None),
        ),
    )
    f.write_text("# everything commented out\n# teams: [a]\n")
    assert load(str(f)) == HandoffConfig()
    assert load(None) == HandoffConfig() and load(str(tmp_path / "absent.yaml")) == HandoffConfig()
    _, missing = check(tmp_path / "absent.yaml")
    assert [(d.code, d.message) for d in missing] == [("E002", "file not found")]
    f.write_text("teams: [general\nmode: pull\n")
    (syntax,) = check(f)[1]
    assert syntax.code == "E001" and syntax.headline().startswith(f"{f}:")


# -- the command line, as real processes -------------------------------------------------------


def flowengine(*args: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "flowengine", *args],
        cwd=cwd,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_validate_checks_handoff_yaml_with_the_flows(tmp_path: Path) -> None:
    flows = str(ROOT / "flows")
    (tmp_path / "handoff.yaml").write_text(
        "teams: [general, orders]\nrouting:\n  - {team: order}\n"
    )
    r = flowengine("validate", flows, cwd=tmp_path)
    assert r.returncode == 1
    assert "handoff.yaml:3:12: error[H102]: routing to unknown team 'order'" in r.stderr
    assert "did you mean 'orders'?" in r.stderr
    assert "FAILED: 10 file(s), 1 error(s), 0 warning(s); also checked handoff.yaml" in r.stderr

    r = flowengine("validate", "--format", "json", flows, cwd=tmp_path)
    assert r.returncode == 1
    assert [(d["file"], d["code"], d["line"], d["column"]) for d in json.loads(r.stdout)] == [
        ("handoff.yaml", "H102", 3, 12)
    ]

    (tmp_path / "handoff.yaml").write_text((ROOT / "handoff.yaml").read_text())
    r = flowengine("validate", "--strict", flows, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "ok: 10 file(s), 0 error(s), 0 warning(s); also checked handoff.yaml" in r.stdout

    other = tmp_path / "elsewhere.yaml"
    other.write_text("teams: [general]\nroutes: []\n")
    r = flowengine("validate", "--handoff-config", str(other), flows, cwd=tmp_path)
    assert r.returncode == 1 and f"{other}:2:1: error[E010]: unknown key 'routes'" in r.stderr

    r = flowengine("validate", "--handoff-config", str(tmp_path / "nope.yaml"), flows, cwd=tmp_path)
    assert r.returncode == 2
    assert f"--handoff-config: no such file: {tmp_path / 'nope.yaml'}" in r.stderr

    (tmp_path / "handoff.yaml").unlink()  # none here: only the flows are checked
    r = flowengine("validate", flows, cwd=tmp_path)
    assert r.returncode == 0 and "also checked" not in r.stdout


def test_serve_refuses_paths_that_are_not_there(tmp_path: Path) -> None:
    port = str(free_port())
    flows = str(ROOT / "flows")
    cases = [
        (["--handoff-config", "/nonexistent"], "--handoff-config: no such file: /nonexistent"),
        (["--agents-file", "/nonexistent/x.json"], "--agents-file: no such file"),
        (["--flows", "/nonexistent"], "--flows: no such directory: /nonexistent"),
    ]
    for args, message in cases:
        r = flowengine("serve", "--port", port, "--flows", flows, *args, cwd=tmp_path)
        assert r.returncode == 2, r.stderr
        assert message in r.stderr and "Uvicorn running" not in r.stderr + r.stdout
    # The defaults may be absent (built-in defaults): this run gets as far as the worker check.
    r = flowengine("serve", "--port", port, "--flows", flows, "--workers", "2", cwd=tmp_path)
    assert r.returncode == 2 and "needs --redis-url" in r.stderr


def test_serve_prints_every_handoff_problem(tmp_path: Path) -> None:
    (tmp_path / "handoff.yaml").write_text("teams: [a]\ncapacity: 0\nmode: manual\n")
    r = flowengine(
        "serve", "--port", str(free_port()), "--flows", str(ROOT / "flows"), cwd=tmp_path
    )
    assert r.returncode == 1
    assert "handoff.yaml:2:11: error[H107]" in r.stderr
    assert "handoff.yaml:3:7: error[E012]: 'manual' is not one of: pull, auto" in r.stderr
    assert "    2 | capacity: 0\n      |           ^" in r.stderr
    assert "handoff.yaml does not validate; not serving" in r.stderr


def test_agents_may_create_the_file_but_not_its_directory(tmp_path: Path) -> None:
    book = tmp_path / "agents.json"
    r = flowengine(
        "agents", "add", "dana", "--password-stdin", "--agents-file", str(book),
        cwd=tmp_path, stdin="long-enough-password\n",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "dana" in json.loads(book.read_text())
    r = flowengine(
        "agents", "add", "dana", "--password-stdin", "--agents-file", "/nonexistent/x.json",
        cwd=tmp_path, stdin="long-enough-password\n",
    )  # fmt: skip
    assert r.returncode == 2 and "--agents-file: no such directory: /nonexistent" in r.stderr

"""The author's command line, run as a real process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INVALID = ROOT / "tests" / "fixtures" / "invalid"


def flowengine(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flowengine", *args],
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_validate_shipped_flows() -> None:
    r = flowengine("validate", "flows")
    assert r.returncode == 0, r.stderr
    assert "ok: 10 file(s), 0 error(s), 0 warning(s)" in r.stdout


def test_validate_refuses_with_file_and_line() -> None:
    r = flowengine("validate", str(INVALID / "E104_unknown_step.yaml"))
    assert r.returncode == 1
    assert (
        "E104_unknown_step.yaml:7:11: error[E104]: next step 'lookupp' does not exist" in r.stderr
    )
    assert "did you mean 'lookup'?" in r.stderr
    r = flowengine("validate", str(INVALID / "E001_yaml_syntax.yaml"))
    assert r.returncode == 1 and "E001_yaml_syntax.yaml:4:10: error[E001]" in r.stderr
    r = flowengine("validate", str(INVALID / "E010_unknown_key.yaml"))
    assert (
        r.returncode == 1
        and "E010_unknown_key.yaml:5:5: error[E010]: unknown key 'nxt'" in r.stderr
    )


def test_strict_fails_on_warnings() -> None:
    w = str(INVALID / "W201_missing_translation.yaml")
    assert flowengine("validate", w).returncode == 0
    assert flowengine("validate", "--strict", w).returncode == 1


def test_validate_json_and_missing_paths() -> None:
    r = flowengine("validate", "--format", "json", str(INVALID / "E108_unknown_action.yaml"))
    data = json.loads(r.stdout)
    assert r.returncode == 1 and data[0]["code"] == "E108" and data[0]["line"] == 4
    r = flowengine("validate", "no/such/dir")
    assert r.returncode == 1


def test_graph_mermaid_and_dot() -> None:
    r = flowengine("graph", "track_order")
    assert r.returncode == 0 and r.stdout.startswith("flowchart TD")
    assert "n_status -->|case:shipped| n_status_cases_shipped" in r.stdout
    r = flowengine("graph", "cancel_order", "--format", "dot")
    assert r.returncode == 0 and r.stdout.startswith('digraph "cancel_order"')
    assert 'n_do_cancel -> n_failed [label="error"];' in r.stdout
    assert flowengine("graph", "nope").returncode == 2


def test_conversation_tests_pass_and_report_coverage() -> None:
    r = flowengine("test")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "transition coverage:" in r.stdout
    assert r.stdout.strip().splitlines()[-1].endswith("passed, 0 failed")


def test_a_failing_conversation_test_names_its_line(tmp_path: Path) -> None:
    f = tmp_path / "bad.test.yaml"
    f.write_text(
        "flow: size_guide\ntests:\n  - name: wrong\n    steps:\n      - click: tops\n"
        "      - expect: {text: Bananas}\n"
    )
    r = flowengine("test", str(f))
    assert r.returncode == 1
    assert (
        "FAIL wrong [en]" in r.stdout
        and "line 6: expected a message containing 'Bananas'" in r.stdout
    )
    f.write_text("tests:\n  - name: x\n    steps:\n      - clik: tops\n")
    r = flowengine("test", str(f))
    assert r.returncode == 1 and "bad.test.yaml:4:" in r.stderr


def test_serve_refuses_workers_without_redis_and_a_broken_handoff_config(tmp_path: Path) -> None:
    r = flowengine("serve", "--workers", "2")
    assert r.returncode == 2 and "needs --redis-url" in r.stderr
    bad = tmp_path / "handoff.yaml"
    bad.write_text("teams: [a]\nrouting:\n  - {flow: x, team: nope}\n")
    r = flowengine("serve", "--handoff-config", str(bad))
    assert r.returncode == 1 and "unknown team 'nope'" in r.stderr


def test_chat_in_the_terminal() -> None:
    script = "1\n1003\nchloe.pop@example.com\n/person\n/agent handed_back\n/quit\n"
    r = flowengine("chat", "--locale", "cs", stdin=script)
    assert r.returncode == 0, r.stderr
    assert "Dobrý den! S čím vám mohu pomoci?" in r.stdout
    assert "na cestě s dopravcem DHL" in r.stdout
    assert "handoff to queue 'general'" in r.stdout


def test_a_missing_translation_fails_the_conversation_test(tmp_path: Path) -> None:
    flows = tmp_path / "flows"
    (flows / "tests").mkdir(parents=True)
    (flows / "flowengine.yaml").write_text("start: hello\nlocales: [en, cs]\n")
    (flows / "hello.yaml").write_text(
        "flow: hello\nsteps:\n  - menu: {en: Hi, cs: Ahoj}\n    options:\n"
        "      - {label: {en: Bye}, end: resolved}\n"
    )
    (flows / "tests" / "hello.test.yaml").write_text(
        "locales: all\ntests:\n  - name: bye\n    steps:\n      - click: end_resolved\n"
        "      - expect: {ended: resolved}\n"
    )
    r = flowengine("test", "--flows", str(flows))
    assert r.returncode == 1
    assert "FAIL bye [cs]" in r.stdout and "text fell back to 'en' in locale 'cs'" in r.stdout
    assert "1 passed, 1 failed" in r.stdout


def test_agent_accounts(tmp_path: Path) -> None:
    book = str(tmp_path / "agents.json")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "flowengine",
            "agents",
            "add",
            "dana",
            "--name",
            "Dana",
            "--teams",
            "orders,returns",
            "--role",
            "admin",
            "--password-stdin",
            "--agents-file",
            book,
        ],
        input="long-enough-password\n",
        text=True,
        capture_output=True,
        cwd=ROOT,
    )
    assert r.returncode == 0, r.stderr
    stored = json.loads(Path(book).read_text())["dana"]
    assert (
        stored["password_hash"].startswith("scrypt$")
        and "long-enough" not in Path(book).read_text()
    )
    assert "dana" in flowengine("agents", "list", "--agents-file", book).stdout
    short = subprocess.run(
        [
            sys.executable,
            "-m",
            "flowengine",
            "agents",
            "add",
            "eve",
            "--password-stdin",
            "--agents-file",
            book,
        ],
        input="short\n",
        text=True,
        capture_output=True,
        cwd=ROOT,
    )
    assert short.returncode == 2 and "at least 10" in short.stderr
    assert flowengine("agents", "add", "Bad Name!", "--agents-file", book).returncode == 2
    assert flowengine("agents", "remove", "dana", "--agents-file", book).returncode == 0
    assert flowengine("agents", "remove", "dana", "--agents-file", book).returncode == 1

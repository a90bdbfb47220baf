"""`flowengine serve` says, at start and at each reload, which flows lack which of their locales:
one log line per flow and locale, with how many steps and the first few of them."""

from __future__ import annotations

import re
import shutil
import signal
from pathlib import Path

from flowengine.language import load_project
from flowengine.language.checks import missing_translations
from tests.conftest import FLOWS
from tests.server_process import ServerProcess, eventually

LINE = re.compile(r"flow (\w+): (\d+) step\(s\) without a '(\w+)' translation \(([^)]*)\)")


def _drop(path: Path, pattern: str, in_steps: tuple[str, ...] | None = None) -> None:
    """Delete the lines matching `pattern` (only in the steps `in_steps`, when given)."""
    out, step = [], None
    for line in path.read_text("utf-8").splitlines(keepends=True):
        if m := re.match(r"  - id: (\w+)", line):
            step = m[1]
        if re.match(pattern, line) and (in_steps is None or step in in_steps):
            continue
        out.append(line)
    path.write_text("".join(out), "utf-8")


def test_the_missing_translations_are_named_per_flow_and_locale(tmp_path: Path) -> None:
    flows = tmp_path / "flows"
    shutil.copytree(FLOWS, flows, ignore=shutil.ignore_patterns("tests"))
    _drop(flows / "shipping.yaml", r"      cs: ", ("cz", "eu"))
    result = load_project([flows])
    assert result.project is not None
    assert missing_translations(result.project) == {("shipping", "cs"): ["cz", "eu"]}
    # validate warns about the same texts, one W201 each
    w201 = [d for d in result.warnings if d.code == "W201"]
    assert [(Path(d.file).name, d.message) for d in w201] == [
        ("shipping.yaml", "missing translation for cs")
    ] * 2


async def test_serve_logs_missing_translations_at_start_and_at_reload(tmp_path: Path) -> None:
    flows = tmp_path / "flows"
    shutil.copytree(FLOWS, flows, ignore=shutil.ignore_patterns("tests"))
    _drop(flows / "shipping.yaml", r"      cs: ", ("cz", "eu"))
    proc = ServerProcess(flows=flows).start()
    try:
        assert LINE.findall(proc.log) == [("shipping", "2", "cs", "cz, eu")]
        assert "shoppers reading cs see the default locale there" in proc.log

        # Thai gone from six steps: the line names the first five. Czech is back.
        shutil.copy(FLOWS / "shipping.yaml", flows / "shipping.yaml")
        _drop(flows / "shipping.yaml", r"      th: ")
        proc.signal(signal.SIGHUP)
        expected = ("shipping", "6", "th", "where, cz, eu, asia, world, ...")
        await eventually(lambda: expected in LINE.findall(proc.log), timeout=20)
        assert LINE.findall(proc.log) == [("shipping", "2", "cs", "cz, eu"), expected]

        # A reload that is refused keeps the old flows and logs no translations.
        (flows / "main.yaml").write_text("flow: main\nsteps: [\n", "utf-8")
        proc.signal(signal.SIGHUP)
        await proc.logged("flow reload refused", timeout=20)
        assert len(LINE.findall(proc.log)) == 2
    finally:
        proc.stop()


def test_serve_logs_nothing_for_flows_that_are_translated(tmp_path: Path) -> None:
    proc = ServerProcess().start()
    try:
        assert LINE.findall(proc.log) == []
    finally:
        proc.stop()

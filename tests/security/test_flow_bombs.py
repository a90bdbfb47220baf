"""Flows cannot be made to hang or bloat the server (part of a security issue: a flow's
`validate: {regex: "((\\w)+)+"}` was accepted and a 26-character answer blocked the event loop for
4.1 s; `{{ '%0300000000d' % 1 }}` validated and allocated 300 MB per render).

Author regexes run on RE2, linear in the answer whatever the pattern; what RE2 cannot run, and
repeated groups that repeat, are refused by `validate`. Templates cannot format or repeat into huge
values: bounds are checked before a value is built, refused by `validate` when constants alone
break them, and at run time the text renders as nothing and the conversation goes on. Flows are
loaded from YAML by the project loader and run by the engine; one runs on a real server.
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest

from flowengine.engine import model as m
from flowengine.engine.step import start, step
from flowengine.language import ir, load_project
from flowengine.language.diagnostics import Diagnostic
from flowengine.server.config import ServerConfig
from tests.app_server import AppServer
from tests.server_process import Client


def _load(tmp_path: Path, text: str) -> tuple[list[Diagnostic], ir.Project | None]:
    (tmp_path / "main.yaml").write_text(text, "utf-8")
    result = load_project([tmp_path])
    return list(result.diagnostics), result.project if result.ok else None


def _project(tmp_path: Path, text: str) -> ir.Project:
    diagnostics, project = _load(tmp_path, text)
    assert project is not None, "\n".join(d.headline() for d in diagnostics)
    return project


def _refused(tmp_path: Path, text: str, code: str) -> Diagnostic:
    diagnostics, project = _load(tmp_path, text)
    assert project is None
    found = [d for d in diagnostics if d.code == code]
    assert found, "\n".join(d.headline() for d in diagnostics)
    return found[0]


def _bot(result: m.Result) -> list[str]:
    return [msg.text for msg in result.messages if msg.sender == "bot"]


# -- regexes -------------------------------------------------------------------------------------

ASK = r"""flow: main
steps:
  - ask: code
    prompt: Your code?
    validate: {regex: '%s'}
    retry: [Not a code.]
    max_tries: 5
  - say: "Code {{ code }}."
    next: end
"""


@pytest.mark.parametrize("pattern", [r"((\w)+)+", r"(a+)+$", r"(x*)*", r"([a-z]+\d*)+"])
def test_a_repeated_group_that_repeats_is_refused_at_its_position(
    tmp_path: Path, pattern: str
) -> None:
    d = _refused(tmp_path, ASK % pattern, "E114")
    assert (d.position.line, d.position.column) == (5, 23), d.headline()
    assert d.headline().startswith(f"{tmp_path / 'main.yaml'}:5:23: error[E114]: ")
    assert "repeated group that itself repeats" in d.message


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        (r"(\w+)-\1", r"invalid escape sequence: \1"),  # a backreference
        (r"(?=.*\d)\w+", "invalid perl operator: (?="),  # lookahead
        (r"(?<!x)y", "invalid perl operator: (?<"),  # lookbehind
    ],
)
def test_what_a_linear_time_engine_cannot_run_is_refused_saying_why(
    tmp_path: Path, pattern: str, why: str
) -> None:
    d = _refused(tmp_path, ASK % pattern, "E114")
    assert (d.position.line, d.position.column) == (5, 23), d.headline()
    assert why in d.message
    assert "linear-time engine" in d.message and "backreferences, lookaround" in d.message


def test_a_pattern_that_backtracks_exponentially_in_python_answers_a_hostile_text(
    tmp_path: Path,
) -> None:
    # `(a|aa)+b` passes the nested-group check, and Python's `re` takes ~18 s on 40 a's (the
    # test on a real server below fails then); RE2 is linear. The whole answer must match.
    project = _project(tmp_path, ASK % "(a|aa)+b")
    s = start(project, now=0).state
    r = step(project, s, m.Text("a" * 40), 1)
    assert _bot(r) == ["Not a code."]
    assert _bot(step(project, r.state, m.Text("xaab"), 2)) == ["Not a code."]  # no search
    r = step(project, r.state, m.Text("  aaab "), 3)
    assert _bot(r) == ["Code aaab."]


def test_regexes_are_re2_syntax_with_unicode_classes(tmp_path: Path) -> None:
    project = _project(tmp_path, ASK % r"[\p{L} -]{2,40}")
    s = start(project, now=0).state
    assert _bot(step(project, s, m.Text("Příliš Žluťoučký"), 1)) == ["Code Příliš Žluťoučký."]


async def test_a_hostile_answer_on_a_real_server_is_answered_and_the_session_goes_on(
    tmp_path: Path,
) -> None:
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "main.yaml").write_text(ASK % "(a|aa)+b", "utf-8")
    config = ServerConfig(
        flows_dir=str(flows), handoff_config=None, agents_file=str(tmp_path / "agents.json")
    )
    async with AppServer(config) as server:
        shopper = await Client.connect(server.ws_url)
        await shopper.until(lambda f: f.get("text") == "Your code?")
        # A backtracking engine would hold the server's event loop (this test's own) for ~18 s
        # here, and the reply would miss the client's ordinary wait.
        await shopper.act({"type": "text", "text": "a" * 40})
        await shopper.until(lambda f: f.get("text") == "Not a code.", timeout=5)
        await shopper.act({"type": "text", "text": "aab"})
        await shopper.until(lambda f: f.get("text") == "Code aab.", timeout=5)
        await shopper.close()


# -- templates: refused by `validate` when constants break a bound -------------------------------

SAY = """flow: main
steps:
  - say: "%s"
    next: end
"""


@pytest.mark.parametrize(
    ("source", "why"),
    [
        ("{{ '%0300000000d' % 1 }}", "format width or precision 300000000 is over the limit"),
        ("{{ '%.300000000f' % 1 }}", "format width or precision 300000000 is over the limit"),
        ("{{ '%(n)-300000000s' % {'n': 1} }}", "300000000 is over the limit"),
        ("{{ '%*d' % (300000000, 1) }}", "width taken from a value"),
        ("{{ '{:>300000000}'.format('x') }}", "300000000 is over the limit"),
        ("{{ '{a:>300000000}'.format_map({'a': 1}) }}", "300000000 is over the limit"),
        ("{{ '{:{}}'.format('x', 300000000) }}", "width taken from a value"),
        ("{{ 'x' * 10**9 }}", "repetition is too large"),
        ("{{ ['x'] * 10**9 }}", "repetition is too large"),
        ("{{ [[0] * 100] * 1000 }}", "repetition is too large"),  # nested items count
        ("{{ ([0] * 10000) | join('x' * 100) }}", "join would build"),
        ("{{ ([[0]] * 10000) | sum(start=[]) }}", "sum adds numbers"),
        ("{{ 9 ** 9 ** 9 }}", "power is too large"),
        ("{{ 'x'.center(300000000) }}", "method '.center()' is not allowed"),
        ("{{ 'x'.ljust(300000000) }}", "method '.ljust()' is not allowed"),
        ("{{ 'x' | center(300000000) }}", "No filter named 'center'"),
        ("{{ 'x' | indent(300000000) }}", "No filter named 'indent'"),
        ("{{ 'x' | wordwrap(300000000) }}", "No filter named 'wordwrap'"),
        # A format repeating a field multiplies what it is given (9,000,000 characters):
        ("{{ ('{0}' * 1000).format('x' * 9000) }}", "format would build more than 4,000"),
        ("{{ ('{0}' * 3000).format(('{0}' * 3000).format('x')) }}", "format would build"),
        ("{{ ('%(a)s' * 2000) % {'a': 'x' * 9000} }}", "format would build more than 4,000"),
    ],
)
def test_a_template_bomb_made_of_constants_is_refused_at_its_position(
    tmp_path: Path, source: str, why: str
) -> None:
    d = _refused(tmp_path, SAY % source, "E113")
    assert d.headline().startswith(f"{tmp_path / 'main.yaml'}:3:10: error[E113]: "), d.headline()
    assert why in d.message


def test_bombs_in_values_conditions_and_labels_are_refused_where_they_are(tmp_path: Path) -> None:
    text = """flow: main
steps:
  - set: {pad: "{{ '%0300000000d' % 1 }}"}
  - if: "('x' * 10**9) == ''"
    then: {say: Yes.}
    else: {say: No.}
  - menu: Pick
    options:
      - {label: {en: "{{ '{:>300000000}'.format(1) }}"}, end: resolved}
"""
    (tmp_path / "main.yaml").write_text(text, "utf-8")
    found = [
        (d.position.line, d.position.column)
        for d in load_project([tmp_path]).diagnostics
        if d.code == "E113"
    ]
    assert found == [(3, 16), (4, 9), (9, 22)]


def test_range_does_not_exist(tmp_path: Path) -> None:
    d = _refused(tmp_path, SAY % "{{ range(300000000) | list }}", "E113")
    assert "'range'" in d.message


# -- templates: what authors write still works ---------------------------------------------------


def test_ordinary_formatting_repetition_and_joins_render(tmp_path: Path) -> None:
    text = """flow: main
steps:
  - set:
      price: 12.5
      n: 1234567
      items: "{{ [{'name': 'Tee', 'qty': 2}, {'name': 'Cap', 'qty': 1}] }}"
  - say: "{{ '%.2f' % price }} {{ '{:,}'.format(n) }} [{{ '{:>3}'.format(7) }}] {{ '%05d' % 42 }}"
  - say: "{{ '-' * 5 }} {{ items | map(attribute='name') | join(', ') }} {{ 2 ** 10 }}"
  - say: "{{ items | map(attribute='qty') | sum }} {{ '%s%%' % 10 }} {{ 10 % 3 }}"
    next: end
"""
    project = _project(tmp_path, text)
    assert _bot(start(project, now=0)) == [
        "12.50 1,234,567 [  7] 00042",
        "----- Tee, Cap 1024",
        "3 10% 1",
    ]


# -- templates: a bound broken at run time, by what the shopper typed ----------------------------

WIDTH = """flow: main
steps:
  - id: ask_n
    ask: n
    prompt: How wide?
    validate: number
  - set: {bar: "{{ '=' * n }}"}
  - say: "[{{ ('%0' ~ n ~ 'd') % 7 }}]"
  - say: "[{{ ('{:>' ~ n ~ '}').format('x') }}]"
  - say: "[{{ '-' * n }}][{{ ([0] * n) | join(', ') }}][{{ bar }}]"
  - say: "{% if bar is none %}no bar{% else %}bar {{ bar | length }}{% endif %}"
  - menu: Again?
    options:
      - {id: again, label: Again, goto: ask_n}
      - {id: done, label: Done, end: resolved}
"""


def _answer(project: ir.Project, state: m.State, text: str, now: int) -> m.Result:
    r = step(project, state, m.Text(text), now)
    assert r.error is None
    return r


def test_a_width_or_count_the_shopper_typed_is_bounded_and_the_session_goes_on(
    tmp_path: Path,
) -> None:
    project = _project(tmp_path, WIDTH)
    s = start(project, now=0).state
    r = _answer(project, s, "3", 1)
    assert _bot(r) == ["[007]", "[  x]", "[---][0, 0, 0][===]", "bar 3", "Again?"]

    r = step(project, r.state, m.Choose("again"), 2)
    tracemalloc.start()
    try:
        r = _answer(project, r.state, "300000000", 3)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # Each bound is checked before the value is built: nothing near 300 MB is ever allocated.
    assert peak < 10_000_000, peak
    assert _bot(r) == ["", "", "", "no bar", "Again?"]  # each such text shows nothing
    assert r.state.waiting == "click"

    r = step(project, r.state, m.Choose("again"), 4)
    assert _bot(_answer(project, r.state, "2", 5))[:3] == ["[07]", "[ x]", "[--][0, 0][==]"]


def test_values_built_from_values_are_cut_like_text(tmp_path: Path) -> None:
    text = """flow: main
steps:
  - set: {s: "{{ 'ab' * 1500 }}"}
  - id: grow
    set: {t: "{{ s }}"}
  - set: {s: "{{ s ~ t }}"}
  - menu: "{{ s | length }}"
    options:
      - {id: again, label: Again, goto: grow}
      - {id: done, label: Done, end: resolved}
"""
    project = _project(tmp_path, text)
    r = start(project, now=0)
    assert _bot(r) == ["4000"]
    for now in range(1, 4):
        r = step(project, r.state, m.Choose("again"), now)
        assert _bot(r) == ["4000"]


@pytest.mark.parametrize(
    ("pattern", "answer", "kept"),
    [
        (r"\w+", "Žluťoučký", True),
        (r"\w+", "สวัสดี", True),  # combining vowels are marks, not letters
        (r"[\w-]{3,}", "Ștefan-Ionuț", True),
        (r"\w+", "two words", False),
        (r"\d{4}", "1001", True),
        (r"\S+@\S+", "anna@example.cz", True),
        (r"[^\W]+", "abc", True),  # a negated class keeps RE2's meaning, and still works
    ],
)
def test_regex_classes_mean_any_script(pattern: str, answer: str, kept: bool) -> None:
    from flowengine.language.validators import regex_validator

    assert (regex_validator(pattern).check(answer) == answer) is kept


@pytest.mark.parametrize(
    "source",
    [
        "{{ ('{0}' * 3000).format(('{0}' * 3000).format(a)) }}",
        "{{ ('%(a)s' * 1500) % {'a': a} }}",
        "{{ ('{0}{1}' * 1000).format(a, a) }}",
    ],
)
def test_a_format_fed_by_the_shopper_stops_before_it_builds(source: str) -> None:
    """Valid (nothing constant to refuse), then fed a 500-character answer: it stopped at
    4,000 characters instead of building 4.5e9 (7.9 s and 4.4 GB, on a server)."""
    from flowengine.language.templates import template

    tracemalloc.start()
    try:
        out = template(source).check().render({"a": "y" * 500})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert out == "" and peak < 2_000_000

"""Typed text at menus and asks, routed by intents: the pure engine, in en, cs and th."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowengine.engine import model as m
from flowengine.engine.step import start, step
from flowengine.insights import fold
from flowengine.language import ir, load_project

PROJECT = """\
start: main
locales: [en, cs, th]
intents: {misses_before_person: 2}
"""

MAIN = """\
flow: main
steps:
  - id: menu
    menu: {en: How can I help?, cs: S čím pomohu?, th: มีอะไรให้ช่วยไหมคะ}
    options:
      - id: track
        label: {en: Track my order, cs: Kde je objednávka, th: ติดตามคำสั่งซื้อ}
        flow: track_order
      - id: cancel
        label: {en: Cancel an order, cs: Zrušit objednávku, th: ยกเลิกคำสั่งซื้อ}
        flow: cancel_order
      - id: person
        label: {en: Talk to a person, cs: Mluvit s člověkem, th: คุยกับเจ้าหน้าที่}
        handoff: true
        intents:
          en: [talk to a person, i want a human, connect me with an agent]
          cs: [chci mluvit s člověkem, spojte mě s operátorem]
          th: [ขอคุยกับเจ้าหน้าที่, ขอคุยกับคนจริง]
"""

TRACK = """\
flow: track_order
intents:
  en: [where is my order, track my parcel, has my package shipped, about my order]
  cs: [kde je moje objednávka, sledovat zásilku, kdy přijde balík, moje objednávka]
  th: [ติดตามคำสั่งซื้อ, พัสดุถึงไหนแล้ว, ส่งของหรือยัง, เรื่องคำสั่งซื้อ]
steps:
  - id: number
    ask: order
    prompt: {en: Your order number?, cs: Číslo objednávky?, th: หมายเลขคำสั่งซื้อคะ}
    validate: order_number
    max_tries: 3
  - id: done
    say: {en: "Order {{ order }}.", cs: "Objednávka {{ order }}.", th: "คำสั่งซื้อ {{ order }}"}
  - end: resolved
"""

CANCEL = """\
flow: cancel_order
intents:
  en: [cancel my order, i want to cancel, stop my order please, about my order]
  cs: [zrušit objednávku, chci zrušit objednávku, stornovat, moje objednávka]
  th: [ยกเลิกคำสั่งซื้อ, ขอยกเลิกออเดอร์, ไม่เอาแล้วค่ะ, เรื่องคำสั่งซื้อ]
steps:
  - menu: {en: Cancel which?, cs: Kterou zrušit?, th: ยกเลิกอันไหนคะ}
    options:
      - label: {en: The last one, cs: Poslední, th: อันล่าสุด}
        end: resolved
"""

RETURNS = """\
flow: return_order
title: {en: Return an item, cs: Vrátit zboží, th: คืนสินค้า}
intents:
  en: [return my shoes, i want a refund, send it back]
  cs: [chci vrátit boty, vrácení peněz, poslat zpět]
  th: [คืนสินค้า, ขอเงินคืน, ส่งของคืน]
steps:
  - say: {en: Returns., cs: Vrácení., th: การคืนสินค้า}
  - end: resolved
"""


def _compiled(root: Path, project: str = PROJECT) -> ir.Project:
    """The four flows below under `root`, with `project` as the project file."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "flowengine.yaml").write_text(project)
    for name, text in (
        ("main", MAIN),
        ("track_order", TRACK),
        ("cancel_order", CANCEL),
        ("return_order", RETURNS),
    ):
        (root / f"{name}.yaml").write_text(text)
    result = load_project([root])
    assert result.ok, result.render()
    assert result.project is not None
    return result.project


@pytest.fixture
def typed(tmp_path: Path) -> ir.Project:
    return _compiled(tmp_path)


def _events(r: m.Result, kind: str) -> list[dict[str, object]]:
    return [e for e in r.events if e["type"] == kind]


@pytest.mark.parametrize(
    ("locale", "text", "flow"),
    [
        ("en", "where is my order??", "track_order"),
        ("cs", "chci zrusit objednavku", "cancel_order"),
        ("th", "ขอยกเลิกคำสั่งซื้อค่ะ", "cancel_order"),
        ("cs", "chci vrátit boty", "return_order"),
        ("th", "ขอเงินคืนค่ะ", "return_order"),
    ],
)
def test_a_confident_match_starts_the_flow(
    typed: ir.Project, locale: str, text: str, flow: str
) -> None:
    s = start(typed, now=0, locale=locale).state
    r = step(typed, s, m.Text(text), 1)
    assert r.error is None
    assert r.state.flow == flow
    assert r.messages[0] == m.Message("shopper", text)  # what they typed, as typed
    [matched] = _events(r, "text_matched")
    assert matched["flow"] == "main" and matched["step"] == "menu"
    assert matched["target"] == flow and matched["kind"] == "flow"
    assert matched["clarified"] is False
    assert isinstance(matched["score"], float) and 0 < matched["score"] <= 1
    assert text not in repr(r.events)  # never the text
    assert [e["flow"] for e in _events(r, "flow_started")] == [flow]


def test_a_flow_on_the_menu_starts_as_a_click_on_its_option_would(typed: ir.Project) -> None:
    s = start(typed, now=0, locale="en").state
    r = step(typed, s, m.Text("where is my order"), 1)
    [chosen] = _events(r, "option_chosen")
    assert chosen["option"] == "track"
    assert ("main", "menu", "option:track") in r.visited
    # not on the menu: the flow starts like a `flow:` option would, ending the current one
    r = step(typed, s, m.Text("i want a refund"), 1)
    assert _events(r, "option_chosen") == []
    assert [e["flow"] for e in _events(r, "flow_ended")] == ["main", "return_order"]
    assert r.state.flow == "return_order" and r.state.waiting == "ended"


def test_an_option_intent_picks_the_option(typed: ir.Project) -> None:
    s = start(typed, now=0, locale="cs").state
    r = step(typed, s, m.Text("chci mluvit s clovekem prosim"), 1)
    assert r.error is None
    assert r.state.waiting == "agent"
    [matched] = _events(r, "text_matched")
    assert (matched["kind"], matched["target"]) == ("option", "person")
    assert [type(e) for e in r.effects] == [m.RequestHandoff]


def test_an_exact_label_still_picks_its_option(typed: ir.Project) -> None:
    s = start(typed, now=0, locale="th").state
    r = step(typed, s, m.Text("ติดตามคำสั่งซื้อ"), 1)  # also an example of track_order
    assert r.state.flow == "track_order"
    assert _events(r, "text_matched") == []  # a click, not a match
    assert _events(r, "option_chosen")[0]["option"] == "track"


def test_no_match_says_so_in_the_shoppers_language_and_shows_the_menu_again(
    typed: ir.Project,
) -> None:
    sorry = {"en": "Sorry, I did not get that.", "cs": "Promiňte", "th": "ขออภัยค่ะ"}
    for locale, text in (
        ("en", "qwerty uiop"),
        ("cs", "jaké bude počasí"),
        ("th", "qwerty"),
    ):
        s = start(typed, now=0, locale=locale).state
        r = step(typed, s, m.Text(text), 1)
        assert r.error is None
        assert r.state.flow == "main" and r.state.step == "menu" and r.state.waiting == "click"
        said = [msg for msg in r.messages if msg.sender == "bot"]
        assert said[0].text.startswith(sorry[locale]) and said[0].locale == locale
        assert [o["id"] for o in said[1].options] == ["track", "cancel", "person"]
        assert _events(r, "text_unmatched") == [
            {
                "type": "text_unmatched",
                "at": 1,
                "flow": "main",
                "step": "menu",
                "version": typed.version,
                "locale": locale,
            }
        ]
        assert r.state.misses == 1


def test_after_two_misses_in_a_row_a_person_is_offered(typed: ir.Project) -> None:
    # cancel_order's menu has no option leading to a person: the engine adds one
    s = start(typed, now=0, locale="th").state
    s = step(typed, s, m.Text("ยกเลิกคำสั่งซื้อ"), 1).state
    assert s.flow == "cancel_order" and s.waiting == "click"
    first = step(typed, s, m.Text("asdf"), 2)
    assert m.OFFER_PERSON not in dict(first.state.options)
    second = step(typed, first.state, m.Text("zzzz"), 3)
    options = dict(second.state.options)
    assert options[m.OFFER_PERSON] == "คุยกับเจ้าหน้าที่"
    assert second.messages[-1].locale == "th"
    r = step(typed, second.state, m.Choose(m.OFFER_PERSON), 4)
    assert r.error is None and r.state.waiting == "agent"
    assert _events(r, "handoff_requested")[0]["reason"] == "asked"
    # a click in between starts the count again
    s = step(typed, first.state, m.Choose("end_resolved"), 5).state
    assert s.misses == 0 and s.resolution == "resolved"


def test_the_person_is_not_offered_twice_where_the_menu_has_one(typed: ir.Project) -> None:
    s = start(typed, now=0, locale="en").state
    for i in range(3):
        s = step(typed, s, m.Text("qwerty"), i + 1).state
    assert s.misses == 3
    assert [oid for oid, _ in s.options] == ["track", "cancel", "person"]


def test_two_close_candidates_get_a_clarifying_menu(typed: ir.Project) -> None:
    s = start(typed, now=0, locale="en").state
    r = step(typed, s, m.Text("about my order"), 1)  # an example of track_order and cancel_order
    assert r.error is None
    assert r.state.step == "menu" and r.state.waiting == "click"
    question = r.messages[-1]
    assert question.text == "Did you mean one of these?"
    ids = [o["id"] for o in question.options]
    assert set(ids[:2]) == {"flow:track_order", "flow:cancel_order"}
    assert ids[2] == m.SOMETHING_ELSE
    assert question.options[2]["label"] == "Something else"
    assert _events(r, "text_matched") == [] and _events(r, "text_unmatched") == []
    # picking a candidate starts it, counted as a clarified match
    picked = step(typed, r.state, m.Choose("flow:cancel_order"), 2)
    assert picked.state.flow == "cancel_order"
    [matched] = _events(picked, "text_matched")
    assert matched["clarified"] is True and matched["target"] == "cancel_order"
    assert matched["score"] == round(dict(r.state.clarify)["flow:cancel_order"], 3)
    assert picked.state.clarify == ()
    # "Something else" shows the menu again and counts as a miss
    other = step(typed, r.state, m.Choose(m.SOMETHING_ELSE), 2)
    assert other.state.step == "menu" and other.state.misses == 1
    assert [o["id"] for o in other.messages[-1].options] == ["track", "cancel", "person"]
    assert len(_events(other, "text_unmatched")) == 1
    # a menu option no longer shown is refused, and the state is kept
    refused = step(typed, r.state, m.Choose("track"), 2)
    assert refused.error is not None and refused.error.code == "unknown_option"
    assert refused.state is r.state


def test_a_clarifying_menu_names_flows_by_title_in_the_shoppers_language(
    typed: ir.Project,
) -> None:
    for locale, text, names in (
        ("cs", "moje objednavka", ["Kde je objednávka", "Zrušit objednávku", "Něco jiného"]),
        ("th", "เรื่องคำสั่งซื้อค่ะ", ["ติดตามคำสั่งซื้อ", "ยกเลิกคำสั่งซื้อ", "เรื่องอื่น"]),
    ):
        s = start(typed, now=0, locale=locale).state
        r = step(typed, s, m.Text(text), 1)
        question = r.messages[-1]
        assert question.locale == locale and r.state.clarify
        # the flows have no title: named as the main menu's options that lead to them
        assert sorted(o["label"] for o in question.options[:2]) == sorted(names[:2])
        assert question.options[2]["label"] == names[2]
    titles = typed.intents.titles
    assert titles["return_order"].render(("cs",), {})[0] == "Vrátit zboží"  # its own title
    assert titles["cancel_order"].render(("th",), {})[0] == "ยกเลิกคำสั่งซื้อ"  # the menu's label


def test_a_failed_answer_that_asks_for_another_flow_switches_to_it(typed: ir.Project) -> None:
    s = start(typed, now=0, locale="cs").state
    s = step(typed, s, m.Choose("track"), 1).state
    assert s.step == "number" and s.waiting == "text"
    r = step(typed, s, m.Text("chci zrušit objednávku"), 2)
    assert r.error is None
    assert r.state.flow == "cancel_order"
    assert [e["valid"] for e in _events(r, "text_given")] == [False]
    [matched] = _events(r, "text_matched")
    assert (matched["flow"], matched["step"], matched["target"]) == (
        "track_order",
        "number",
        "cancel_order",
    )
    assert [e["flow"] for e in _events(r, "flow_ended")] == ["track_order"]


def test_a_failed_answer_that_asks_for_nothing_is_retried_as_before(typed: ir.Project) -> None:
    s = start(typed, now=0, locale="th").state
    s = step(typed, s, m.Choose("track"), 1).state
    for text in ("abc", "พัสดุถึงไหนแล้ว"):  # nothing; the flow it is in already
        r = step(typed, s, m.Text(text), 2)
        assert r.error is None
        assert r.state.flow == "track_order" and r.state.step == "number"
        assert r.state.tries == 1
        assert _events(r, "text_matched") == []
    ok = step(typed, s, m.Text("1003"), 3)
    assert ok.state.vars["order"] == "1003"


def test_without_intents_typed_text_at_a_menu_is_refused_as_before(tmp_path: Path) -> None:
    (tmp_path / "main.yaml").write_text(
        "flow: main\nsteps:\n  - menu: Hi\n    options:\n"
        "      - label: Bye\n        end: resolved\n"
    )
    project = load_project([tmp_path]).project
    assert project is not None and project.intents.flows is None
    s = start(project, now=0).state
    r = step(project, s, m.Text("hello"), 1)
    assert r.error is not None and r.error.code == "expected_choice"
    assert r.state is s


@pytest.mark.parametrize(
    "text", ["👍", "1003", "x" * 301, "where is my order " * 20, "\x00\x01", "\ud800"]
)
def test_hostile_text_at_a_menu_is_a_miss_not_a_failure(typed: ir.Project, text: str) -> None:
    s = start(typed, now=0, locale="en").state
    r = step(typed, s, m.Text(text), 1)
    assert r.error is None
    assert r.state.step == "menu" and r.state.misses == 1


def test_the_new_state_survives_json(typed: ir.Project) -> None:
    s = start(typed, now=0, locale="en").state
    s = step(typed, s, m.Text("qwerty"), 1).state
    s = step(typed, s, m.Text("about my order"), 2).state
    assert s.clarify and s.misses == 1
    again = m.State.from_json(s.to_json())
    assert again == s
    assert m.State.from_json({**s.to_json(), "misses": 0}).misses == 0
    old = {k: v for k, v in s.to_json().items() if k not in ("misses", "clarify")}
    assert m.State.from_json(old).clarify == ()  # a state stored before intents


def test_intents_in_a_locale_the_flow_is_not_written_in_are_an_error(tmp_path: Path) -> None:
    (tmp_path / "flowengine.yaml").write_text("locales: [en, cs]\n")
    (tmp_path / "f.yaml").write_text(
        "flow: f\nintents:\n  en: [hi]\n  de: [hallo]\nsteps:\n  - end: resolved\n"
    )
    result = load_project([tmp_path])
    [problem] = [d for d in result.errors if d.code == "E121"]
    assert (problem.position.line, problem.position.column) == (4, 3)
    assert "'de'" in problem.message


def test_misses_before_person_must_be_a_positive_number(tmp_path: Path) -> None:
    (tmp_path / "flowengine.yaml").write_text("intents: {misses_before_person: 0}\n")
    (tmp_path / "f.yaml").write_text("flow: f\nsteps:\n  - end: resolved\n")
    result = load_project([tmp_path])
    assert [d.code for d in result.errors] == ["E012"]
    assert result.errors[0].position.line == 1


def test_insights_count_unmatched_texts_per_step_and_matches_per_target(
    typed: ir.Project,
) -> None:
    s = start(typed, now=86400, locale="cs").state
    missed = step(typed, s, m.Text("jaké bude počasí"), 86401)
    matched = step(typed, missed.state, m.Text("chci vrátit boty"), 86402)
    counted = [k for e in (*missed.events, *matched.events) for k in fold.keys(e)]
    assert [
        (k.metric, k.flow, k.step, k.detail) for k in counted if k.metric == fold.UNMATCHED
    ] == [(fold.UNMATCHED, "main", "menu", "")]
    assert [(k.metric, k.step, k.detail) for k in counted if k.metric == fold.MATCHED] == [
        (fold.MATCHED, "menu", "flow:return_order")
    ]
    increments = fold.fold([*missed.events, *matched.events])
    unmatched = fold.Key("1970-01-02", fold.UNMATCHED, "main", typed.version, "cs", "menu")
    assert increments[("1970-01-02", unmatched.field)] == 1


def test_typing_again_at_a_clarifying_menu_is_matched_afresh(typed: ir.Project) -> None:
    s = start(typed, now=0, locale="en").state
    s = step(typed, s, m.Text("about my order"), 1).state
    assert s.clarify
    r = step(typed, s, m.Text("cancel my order"), 2)
    assert r.state.flow == "cancel_order" and r.state.clarify == ()
    [matched] = _events(r, "text_matched")
    assert matched["clarified"] is False
    # the clarifying menu's own label, typed, is its click
    label = dict(s.options)["flow:track_order"]
    r = step(typed, s, m.Text(label.upper()), 2)
    assert r.state.flow == "track_order"
    assert _events(r, "text_matched")[0]["clarified"] is True


def test_restart_forgets_the_misses(typed: ir.Project) -> None:
    s = start(typed, now=0, locale="en").state
    s = step(typed, s, m.Text("qwerty"), 1).state
    assert s.misses == 1
    assert step(typed, s, m.Restart(), 2).state.misses == 0


def test_misses_before_person_is_the_projects_to_set(typed: ir.Project, tmp_path: Path) -> None:
    assert typed.settings.misses_before_person == 2
    (tmp_path / "flowengine.yaml").write_text(PROJECT.replace("2}", "3}"))
    for name, text in (("main", MAIN), ("track_order", TRACK), ("cancel_order", CANCEL)):
        (tmp_path / f"{name}.yaml").write_text(text)
    project = load_project([tmp_path]).project
    assert project is not None and project.settings.misses_before_person == 3
    assert project.version != typed.version
    s = step(project, start(project, now=0, locale="en").state, m.Text("cancel my order"), 1).state
    for i, offered in enumerate((False, False, True)):
        s = step(project, s, m.Text("qwerty"), i + 2).state
        assert (m.OFFER_PERSON in dict(s.options)) is offered


def test_a_flow_with_intents_needs_a_name_for_the_clarifying_menu(tmp_path: Path) -> None:
    (tmp_path / "flowengine.yaml").write_text("start: main\n")
    (tmp_path / "main.yaml").write_text(
        "flow: main\nsteps:\n  - menu: Hi\n    options:\n"
        "      - {label: Returns, flow: returns}\n      - {label: Bye, end: resolved}\n"
    )
    flow = "steps:\n  - end: resolved\n"
    (tmp_path / "returns.yaml").write_text(f"flow: returns\nintents: {{en: [return it]}}\n{flow}")
    (tmp_path / "hidden.yaml").write_text(f"flow: hidden\nintents: {{en: [secret]}}\n{flow}")
    result = load_project([tmp_path])
    # returns is named by the main menu's option; hidden by nothing
    assert [(Path(d.file).name, d.code) for d in result.errors] == [("hidden.yaml", "E122")]
    assert result.project is not None
    label = result.project.intents.titles["returns"]
    assert label.render(("en",), {})[0] == "Returns"


# -- the shipped flows: their intents come from flows/*.yaml --------------------------------


@pytest.mark.parametrize(
    ("locale", "text", "flow"),
    [
        ("en", "where is my package", "track_order"),
        ("cs", "chci vrátit boty", "return_order"),
        ("th", "อยากยกเลิกออเดอร์ค่ะ", "cancel_order"),
        ("th", "ยกเลิกคำสั่งซื้อ", "cancel_order"),  # the option's label: a click
        ("cs", "jaké máte slevové kódy", "discounts"),
        ("th", "ค่าส่งเท่าไหร่คะ", "shipping"),
    ],
)
def test_the_shipped_main_menu_routes_typed_text(
    project: ir.Project, locale: str, text: str, flow: str
) -> None:
    s = start(project, now=0, locale=locale).state
    r = step(project, s, m.Text(text), 1)
    assert r.error is None
    started = [e["flow"] for e in _events(r, "flow_started")]
    assert started[0] == flow


def test_the_shipped_person_option_is_picked_by_what_shoppers_type(project: ir.Project) -> None:
    for locale, text in (("en", "can i talk to a real person"), ("th", "ขอคุยกับเจ้าหน้าที่หน่อยค่ะ")):
        s = start(project, now=0, locale=locale).state
        r = step(project, s, m.Text(text), 1)
        assert r.state.waiting == "agent", (locale, text)
        assert _events(r, "text_matched")[0]["kind"] == "option"


@pytest.fixture
def keeping(tmp_path: Path) -> ir.Project:
    """The same flows, in a project that keeps unmatched texts (masked)."""
    project = _compiled(tmp_path / "keeping", PROJECT.replace("2}", "2, keep_unmatched: true}"))
    assert project.settings.keep_unmatched
    return project


def test_unmatched_texts_are_kept_masked_only_when_the_project_opts_in(
    typed: ir.Project, keeping: ir.Project
) -> None:
    text = "jaké bude počasí? pište na jan.novak@seznam.cz tel 777\u00a0123\u00a0456, obj. 1003"
    kept = "jaké bude počasí? pište na [email] tel [number] [number] [number], obj. [number]"
    assert not typed.settings.keep_unmatched  # off unless opted in
    off = step(typed, start(typed, now=0, locale="cs").state, m.Text(text), 1)
    [event] = _events(off, "text_unmatched")
    assert "text" not in event and "1003" not in repr(off.events)
    on = step(keeping, start(keeping, now=0, locale="cs").state, m.Text(text), 1)
    [event] = _events(on, "text_unmatched")
    assert event["text"] == kept
    for secret in ("jan.novak", "seznam", "777", "123", "456", "1003"):
        assert secret not in repr(on.events)
    # what the fold keeps: the count per step, and the masked text as the counter's detail
    [key] = [k for k in fold.keys(event) if k.metric == fold.UNMATCHED]
    assert (key.flow, key.step, key.detail, key.locale) == ("main", "menu", kept, "cs")
    # matched texts are never kept, even when opted in
    matched = step(keeping, start(keeping, now=0, locale="cs").state, m.Text("chci vrátit boty"), 1)
    assert "vrátit" not in repr(matched.events)


def test_something_else_keeps_the_text_the_clarifying_menu_answered(keeping: ir.Project) -> None:
    s = start(keeping, now=0, locale="en").state
    r = step(keeping, s, m.Text("about my order 1003"), 1)
    assert r.messages[-1].text == "Did you mean one of these?"
    assert r.state.clarify_text == "about my order [number]"
    assert m.State.from_json(r.state.to_json()) == r.state  # survives the store
    other = step(keeping, r.state, m.Choose(m.SOMETHING_ELSE), 2)
    [event] = _events(other, "text_unmatched")
    assert event["text"] == "about my order [number]"
    assert other.state.clarify_text == ""  # gone with its menu
    picked = step(keeping, r.state, m.Choose("flow:track_order"), 2)
    assert picked.state.clarify_text == "" and "about my" not in repr(picked.events)


@pytest.mark.parametrize(
    "text",
    [
        "a" * 2000,
        "\u202eevil\u0000\x1b[31m\nnext line\x1f",
        '=HYPERLINK("http://x")',
        "ติดต่อ ๐๘๑๒๓๔๕๖๗๘ ค่ะ",
    ],
)
def test_a_kept_text_is_short_single_line_and_masked(keeping: ir.Project, text: str) -> None:
    r = step(keeping, start(keeping, now=0, locale="th").state, m.Text(text), 1)
    unmatched = _events(r, "text_unmatched")
    if not unmatched:  # matched something: nothing kept
        return
    kept = str(unmatched[0]["text"])
    assert len(kept) <= 120 and "\n" not in kept and "\x1b" not in kept and "\x1f" not in kept
    assert not any(c.isdigit() for c in kept)
